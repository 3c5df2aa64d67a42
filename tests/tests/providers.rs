//! The provider clients against fake Anthropic and OpenAI servers that speak the real wire
//! formats, through the public `keyward::providers` API only.

use std::time::{Duration, Instant};

use futures::StreamExt;
use keyward::providers::{ProviderClient, ProviderError, ProviderSettings, Providers, Turn};
use serde_json::{Value, json};
use tests::fake_providers::{FakeProvider, Flavor, RecordedRequest};

const KEY: &str = "sk-test-KEYWARD-0123456789-do-not-leak";

fn settings_for(fake: &FakeProvider) -> ProviderSettings {
    ProviderSettings {
        extra_hosts: vec![fake.host_port()],
        request_timeout: Duration::from_secs(10),
        ..ProviderSettings::default()
    }
}

fn providers_for(fake: &FakeProvider) -> Providers {
    Providers::new(settings_for(fake))
}

fn module(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Anthropic => "provider-anthropic",
        Flavor::OpenAi => "provider-openai",
    }
}

/// A decrypted entry pointing at `fake`, with `extra` merged into its config.
fn entry(fake: &FakeProvider, extra: Value) -> Value {
    let mut config =
        json!({"api_key": KEY, "base_url": fake.base_url(), "model": "configured-model"});
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    json!({"module": module(fake.flavor()), "config": config})
}

fn client(fake: &FakeProvider) -> ProviderClient {
    providers_for(fake)
        .client(&entry(fake, json!({})), None)
        .expect("a client for the fake")
}

fn transcript() -> Vec<Turn> {
    vec![
        Turn::user("Hi there"),
        Turn::assistant("Hello! How can I help?"),
        Turn::user("Tell me a joke"),
    ]
}

async fn fakes() -> [FakeProvider; 2] {
    [
        FakeProvider::anthropic().await,
        FakeProvider::openai().await,
    ]
}

async fn collect(client: &ProviderClient, turns: &[Turn]) -> Result<Vec<String>, ProviderError> {
    let mut stream = client.stream(turns).await?;
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    Ok(chunks)
}

fn only_request(fake: &FakeProvider) -> RecordedRequest {
    let mut requests = fake.requests();
    assert_eq!(requests.len(), 1, "exactly one request: {requests:?}");
    requests.remove(0)
}

fn assert_bad_config(result: Result<ProviderClient, ProviderError>, path: &str) -> String {
    match result {
        Err(err @ ProviderError::BadConfig(_)) => {
            let message = err.to_string();
            assert!(message.contains(path), "{message:?} names {path}");
            assert_eq!(err.code(), "BAD_USER_INPUT");
            message
        }
        other => panic!("expected BadConfig naming {path}, got {other:?}"),
    }
}

#[tokio::test]
async fn anthropic_receives_the_key_only_in_the_x_api_key_header() {
    let fake = FakeProvider::anthropic().await;
    let client = client(&fake);
    client.send(&transcript()).await.unwrap();
    collect(&client, &transcript()).await.unwrap();

    for request in fake.requests() {
        assert_eq!(request.header("x-api-key"), Some(KEY));
        assert!(
            !request.everything_except_header("x-api-key").contains(KEY),
            "{request:?}"
        );
        assert_eq!(request.header("authorization"), None);
    }
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn openai_receives_the_key_only_as_a_bearer_token() {
    let fake = FakeProvider::openai().await;
    let client = client(&fake);
    client.send(&transcript()).await.unwrap();
    collect(&client, &transcript()).await.unwrap();

    for request in fake.requests() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(
            !request
                .everything_except_header("authorization")
                .contains(KEY),
            "{request:?}"
        );
        assert_eq!(request.header("x-api-key"), None);
    }
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn anthropic_gets_the_whole_transcript_the_model_and_its_api_version() {
    let fake = FakeProvider::anthropic().await;
    let reply = client(&fake).send(&transcript()).await.unwrap();
    assert_eq!(reply, "Hello from fake-anthropic");

    let request = only_request(&fake);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.body["model"], "configured-model");
    assert_eq!(
        request.body["messages"],
        json!([
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke"},
        ])
    );
}

#[tokio::test]
async fn openai_gets_the_whole_transcript_and_the_model() {
    let fake = FakeProvider::openai().await;
    let reply = client(&fake).send(&transcript()).await.unwrap();
    assert_eq!(reply, "Hello from fake-openai");

    let request = only_request(&fake);
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.body["model"], "configured-model");
    assert_eq!(
        request.body["messages"],
        json!([
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke"},
        ])
    );
    assert_eq!(
        request.body.get("max_tokens"),
        None,
        "openai gets max_tokens only when configured"
    );
}

#[tokio::test]
async fn a_model_override_wins_over_the_configured_model() {
    for fake in fakes().await {
        let client = providers_for(&fake)
            .client(&entry(&fake, json!({})), Some("override-model"))
            .unwrap();
        assert_eq!(client.model(), Some("override-model"));
        client.send(&transcript()).await.unwrap();
        assert_eq!(only_request(&fake).body["model"], "override-model");
    }
}

#[tokio::test]
async fn a_default_model_is_sent_when_none_is_configured() {
    for fake in fakes().await {
        let entry = json!({"module": module(fake.flavor()), "config": {"api_key": KEY, "base_url": fake.base_url()}});
        let client = providers_for(&fake).client(&entry, None).unwrap();
        let model = client.model().expect("a default model").to_owned();
        assert!(!model.is_empty());
        client.send(&transcript()).await.unwrap();
        assert_eq!(only_request(&fake).body["model"], model.as_str());
    }
}

#[tokio::test]
async fn anthropic_gets_a_default_max_tokens_when_none_is_configured() {
    let fake = FakeProvider::anthropic().await;
    client(&fake).send(&transcript()).await.unwrap();
    let max_tokens = only_request(&fake).body["max_tokens"].as_u64();
    assert!(
        max_tokens.is_some_and(|n| n > 0),
        "max_tokens: {max_tokens:?}"
    );
}

#[tokio::test]
async fn a_configured_max_tokens_is_sent_to_both_providers() {
    for fake in fakes().await {
        let client = providers_for(&fake)
            .client(&entry(&fake, json!({"max_tokens": 77})), None)
            .unwrap();
        client.send(&transcript()).await.unwrap();
        assert_eq!(only_request(&fake).body["max_tokens"], 77);
    }
}

#[tokio::test]
async fn streamed_chunks_arrive_in_order_and_concatenate_to_the_reply() {
    for fake in fakes().await {
        let chunks = [
            "The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dög.",
        ];
        fake.set_chunks(chunks);
        let got = collect(&client(&fake), &transcript()).await.unwrap();
        assert_eq!(got, chunks, "{:?}", fake.flavor());
        assert_eq!(got.concat(), fake.reply());
        assert_eq!(fake.completed_streams(), 1);
    }
}

#[tokio::test]
async fn streaming_sends_stream_true_and_a_plain_send_does_not() {
    for fake in fakes().await {
        let client = client(&fake);
        client.send(&transcript()).await.unwrap();
        collect(&client, &transcript()).await.unwrap();
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body.get("stream"), None);
        assert_eq!(requests[1].body["stream"], true);
        // Everything else is the same request.
        assert_eq!(requests[1].body["messages"], requests[0].body["messages"]);
    }
}

#[tokio::test]
async fn a_401_or_403_is_rejected_with_a_message_that_contains_no_key() {
    for fake in fakes().await {
        for status in [401, 403] {
            let client = client(&fake);
            fake.fail_next(1, status);
            let err = client.send(&transcript()).await.unwrap_err();
            assert!(
                matches!(err, ProviderError::Rejected { status: s } if s == status),
                "{err:?}"
            );
            assert_eq!(err.code(), "PROVIDER_ERROR");
            assert!(!err.to_string().contains(KEY), "{err}");
            assert!(!format!("{err:?}").contains(KEY), "{err:?}");
            assert!(
                err.to_string().contains("rejected the credentials"),
                "{err}"
            );

            fake.fail_next(1, status);
            let err = client
                .stream(&transcript())
                .await
                .err()
                .expect("a rejected stream");
            assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
            assert!(!err.to_string().contains(KEY));
        }
        // Rejections are final: one request each, no retries.
        assert_eq!(fake.request_count(), 4);
    }
}

#[tokio::test]
async fn a_429_is_retried_a_bounded_number_of_times_then_fails() {
    let fake = FakeProvider::anthropic().await;
    fake.fail_next(10, 429);
    let err = client(&fake).send(&transcript()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
    assert!(err.to_string().contains("429"), "{err}");
    assert!(!err.to_string().contains(KEY), "{err}");
    assert_eq!(fake.request_count(), 3, "max_retries 2 means 3 attempts");
}

#[tokio::test]
async fn a_500_is_retried_a_bounded_number_of_times_then_fails() {
    let fake = FakeProvider::openai().await;
    let settings = ProviderSettings {
        max_retries: 1,
        ..settings_for(&fake)
    };
    fake.fail_next(10, 500);
    let client = Providers::new(settings)
        .client(&entry(&fake, json!({})), None)
        .unwrap();
    let err = client.send(&transcript()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
    assert!(err.to_string().contains("500"), "{err}");
    assert!(!err.to_string().contains(KEY), "{err}");
    assert_eq!(fake.request_count(), 2, "max_retries 1 means 2 attempts");
}

#[tokio::test]
async fn a_success_after_one_500_succeeds() {
    for fake in fakes().await {
        let client = client(&fake);
        fake.fail_next(1, 500);
        assert_eq!(client.send(&transcript()).await.unwrap(), fake.reply());
        assert_eq!(fake.request_count(), 2);

        fake.fail_next(1, 503);
        assert_eq!(
            collect(&client, &transcript()).await.unwrap().concat(),
            fake.reply()
        );
        assert_eq!(fake.request_count(), 4);
    }
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let fake = FakeProvider::openai().await;
    fake.fail_next(1, 400);
    let err = client(&fake).send(&transcript()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
    assert!(!err.to_string().contains(KEY));
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_retried_then_fails() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let providers = Providers::new(ProviderSettings {
        extra_hosts: vec!["127.0.0.1".into()],
        ..ProviderSettings::default()
    });
    let entry = json!({"module": "provider-openai", "config": {"api_key": KEY, "base_url": format!("http://127.0.0.1:{port}/v1")}});
    let err = providers
        .client(&entry, None)
        .unwrap()
        .send(&transcript())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
    assert!(err.to_string().contains("3 attempts"), "{err}");
}

#[tokio::test]
async fn a_slow_upstream_hits_the_configured_timeout() {
    for fake in fakes().await {
        fake.set_delay(Duration::from_secs(3));
        let settings = ProviderSettings {
            request_timeout: Duration::from_millis(300),
            ..settings_for(&fake)
        };
        let client = Providers::new(settings)
            .client(&entry(&fake, json!({})), None)
            .unwrap();

        let started = Instant::now();
        let err = client.send(&transcript()).await.unwrap_err();
        assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
        assert!(err.to_string().contains("300 ms"), "{err}");
        let err = client
            .stream(&transcript())
            .await
            .err()
            .expect("a stream that never starts");
        assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "timed out promptly"
        );
        assert_eq!(fake.request_count(), 2, "a timeout is not retried");
    }
}

#[tokio::test]
async fn a_stalled_stream_fails_after_the_idle_timeout() {
    let fake = FakeProvider::anthropic().await;
    fake.set_chunk_delay(Duration::from_secs(3));
    let settings = ProviderSettings {
        request_timeout: Duration::from_millis(300),
        ..settings_for(&fake)
    };
    let client = Providers::new(settings)
        .client(&entry(&fake, json!({})), None)
        .unwrap();

    let started = Instant::now();
    let err = collect(&client, &transcript()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_upstream_request() {
    for fake in fakes().await {
        let words: Vec<String> = (0..50).map(|i| format!("word{i} ")).collect();
        fake.set_chunks(words);
        fake.set_chunk_delay(Duration::from_millis(40));
        let client = client(&fake);

        let mut stream = client.stream(&transcript()).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "word0 ");
        drop(stream);

        assert!(
            fake.wait_for_cancelled_stream(Duration::from_secs(5)).await,
            "the fake saw its {:?} stream cancelled",
            fake.flavor()
        );
        assert_eq!(fake.completed_streams(), 0);
    }
}

#[tokio::test]
async fn a_provider_error_mid_stream_fails_the_stream_after_the_chunks_before_it() {
    for fake in fakes().await {
        fake.fail_streams_midway(true);
        let mut stream = client(&fake).stream(&transcript()).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "Hello ");
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(matches!(err, ProviderError::Failed(_)), "{err:?}");
        assert!(
            stream.next().await.is_none(),
            "the stream ends after its error"
        );
    }
}

#[tokio::test]
async fn a_base_url_host_not_in_the_allowlist_is_bad_config() {
    let fake = FakeProvider::openai().await;
    let providers = Providers::new(ProviderSettings::default());
    let entry = entry(&fake, json!({}));

    let message = assert_bad_config(providers.client(&entry, None), "config.base_url");
    assert!(!message.contains(KEY));
    match providers.check_entry(&entry) {
        Err(ProviderError::BadConfig(message)) => {
            assert!(message.contains("config.base_url"), "{message}")
        }
        other => panic!("expected BadConfig, got {other:?}"),
    }
    for base_url in [
        "https://evil.example/v1",
        "https://api.openai.com.evil.example/v1",
    ] {
        let entry =
            json!({"module": "provider-openai", "config": {"api_key": KEY, "base_url": base_url}});
        assert_bad_config(providers.client(&entry, None), "config.base_url");
        assert!(providers.check_entry(&entry).is_err());
    }
    assert_eq!(fake.request_count(), 0);

    // The built-in hosts are allowed, over https.
    let entry = json!({"module": "provider-anthropic", "config": {"api_key": "enc:gAAAA", "base_url": "https://API.anthropic.com"}});
    providers.check_entry(&entry).unwrap();
}

#[tokio::test]
async fn a_host_port_entry_allows_only_that_port() {
    let fake = FakeProvider::anthropic().await;
    let other = FakeProvider::anthropic().await;
    let providers = providers_for(&fake); // allows 127.0.0.1:<fake's port> only

    providers.client(&entry(&fake, json!({})), None).unwrap();
    assert_bad_config(
        providers.client(&entry(&other, json!({})), None),
        "config.base_url",
    );

    let any_port = Providers::new(ProviderSettings {
        extra_hosts: vec!["127.0.0.1".into()],
        ..ProviderSettings::default()
    });
    any_port.client(&entry(&other, json!({})), None).unwrap();
}

#[tokio::test]
async fn plain_http_to_a_built_in_host_and_urls_with_credentials_are_refused() {
    let providers = Providers::new(ProviderSettings {
        extra_hosts: vec!["127.0.0.1".into()],
        ..ProviderSettings::default()
    });
    for base_url in [
        "http://api.openai.com/v1",
        "http://user:hunter2@127.0.0.1:9/v1",
        "ftp://api.openai.com/v1",
    ] {
        let entry =
            json!({"module": "provider-openai", "config": {"api_key": KEY, "base_url": base_url}});
        let message = assert_bad_config(providers.client(&entry, None), "config.base_url");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(providers.check_entry(&entry).is_err(), "{base_url}");
    }
}

#[tokio::test]
async fn an_env_reference_not_in_env_allow_is_refused_and_never_reaches_the_provider() {
    let secret = std::env::var("PATH").expect("PATH is set for tests");
    for fake in fakes().await {
        let providers = providers_for(&fake); // env_allow is empty
        for config in [
            json!({"api_key": "${PATH}"}),
            json!({"extra": {"nested": ["${PATH}"]}}),
        ] {
            let entry = entry(&fake, config);
            let result = providers.client(&entry, None);
            let message = match result {
                Err(ProviderError::BadConfig(message)) => message,
                other => panic!("expected BadConfig, got {other:?}"),
            };
            assert!(message.starts_with("config."), "{message}");
            assert!(message.contains("KEYWARD_ENV_ALLOW"), "{message}");
            assert!(!message.contains(&secret));
        }
        assert_eq!(fake.request_count(), 0);
        assert!(
            fake.requests()
                .iter()
                .all(|r| !r.everything().contains(&secret))
        );
    }
}

#[tokio::test]
async fn an_env_reference_in_env_allow_resolves_from_the_process_environment() {
    let value = std::env::var("PATH").expect("PATH is set for tests");
    let fake = FakeProvider::openai().await;
    let providers = Providers::new(ProviderSettings {
        env_allow: vec!["PATH".into()],
        ..settings_for(&fake)
    });
    let client = providers
        .client(&entry(&fake, json!({"api_key": "${PATH}"})), None)
        .unwrap();
    client.send(&transcript()).await.unwrap();
    assert_eq!(
        only_request(&fake).header("authorization"),
        Some(format!("Bearer {value}").as_str())
    );
}

#[tokio::test]
async fn an_env_reference_in_env_allow_resolves_everywhere_it_is_used() {
    let fake = FakeProvider::anthropic().await;
    let base_url = fake.base_url();
    let providers = Providers::new(ProviderSettings {
        env_allow: vec![
            "ANTHROPIC_KEY".into(),
            "ANTHROPIC_URL".into(),
            "UNSET".into(),
        ],
        ..settings_for(&fake)
    })
    .with_env_lookup(move |name| match name {
        "ANTHROPIC_KEY" => Some(KEY.to_owned()),
        "ANTHROPIC_URL" => Some(base_url.clone()),
        _ => None,
    });
    let entry = json!({"module": "provider-anthropic", "config": {"api_key": "${ANTHROPIC_KEY}", "base_url": "${ANTHROPIC_URL}"}});
    providers.check_entry(&entry).unwrap();
    providers
        .client(&entry, None)
        .unwrap()
        .send(&transcript())
        .await
        .unwrap();
    assert_eq!(only_request(&fake).header("x-api-key"), Some(KEY));

    // Allowed but not set on the server: refused, by path.
    let unset = json!({"module": "provider-anthropic", "config": {"api_key": "${UNSET}", "base_url": "${ANTHROPIC_URL}"}});
    let message = assert_bad_config(providers.client(&unset, None), "config.api_key");
    assert!(message.contains("not set"), "{message}");
}

#[tokio::test]
async fn the_model_cannot_be_an_env_reference_because_clients_see_it() {
    let fake = FakeProvider::openai().await;
    let providers = Providers::new(ProviderSettings {
        env_allow: vec!["MODEL".into()],
        ..settings_for(&fake)
    })
    .with_env_lookup(|_| Some("gpt-secret".into()));
    let entry = entry(&fake, json!({"model": "${MODEL}"}));
    assert_bad_config(providers.client(&entry, None), "config.model");
    assert!(
        providers.check_entry(&entry).is_err(),
        "refused at write time too"
    );
}

#[tokio::test]
async fn echo_replies_offline_with_the_last_user_turn() {
    let providers = Providers::new(ProviderSettings::default());
    let client = providers
        .client(&json!({"module": "provider-echo"}), None)
        .unwrap();
    assert_eq!(client.module(), "provider-echo");
    assert_eq!(client.model(), Some("echo"));
    assert_eq!(client.send(&transcript()).await.unwrap(), "Tell me a joke");

    let chunks = collect(&client, &transcript()).await.unwrap();
    assert!(chunks.len() > 1, "streamed in several chunks: {chunks:?}");
    assert_eq!(chunks.concat(), "Tell me a joke");

    let with_config =
        json!({"module": "provider-echo", "config": {"api_key": KEY, "model": "parrot"}});
    let client = providers.client(&with_config, None).unwrap();
    assert_eq!(client.model(), Some("parrot"));
    assert_eq!(
        client.send(&[Turn::user("only this")]).await.unwrap(),
        "only this"
    );
}

#[tokio::test]
async fn debug_of_a_provider_client_does_not_contain_the_key() {
    for fake in fakes().await {
        let client = client(&fake);
        let debug = format!("{client:?} {client:#?}");
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
        assert!(debug.contains(module(fake.flavor())), "{debug}");
    }
}

#[tokio::test]
async fn unusable_entries_are_bad_config_naming_the_path() {
    let providers = Providers::new(ProviderSettings::default());
    let cases = [
        (
            json!({"module": "provider-gemini", "config": {"api_key": KEY}}),
            "module",
        ),
        (json!({"config": {"api_key": KEY}}), "module"),
        (
            json!({"module": "provider-openai", "config": {"model": "gpt-4o"}}),
            "config.api_key",
        ),
        (
            json!({"module": "provider-openai", "config": {"api_key": ""}}),
            "config.api_key",
        ),
        (
            json!({"module": "provider-openai", "config": {"api_key": "enc:gAAAAB"}}),
            "config.api_key",
        ),
        (
            json!({"module": "provider-anthropic", "config": {"api_key": "bad\nkey"}}),
            "config.api_key",
        ),
        (
            json!({"module": "provider-anthropic", "config": {"api_key": KEY, "max_tokens": 0}}),
            "config.max_tokens",
        ),
        (
            json!({"module": "provider-anthropic", "config": "not an object"}),
            "config",
        ),
    ];
    for (entry, path) in cases {
        let message = assert_bad_config(providers.client(&entry, None), path);
        assert!(!message.contains(KEY), "{message}");
    }
    let err = providers
        .client(&json!({"module": "provider-openai"}), None)
        .unwrap_err();
    assert_eq!(
        err.in_entry("providers[2]").to_string(),
        "providers[2].config.api_key: is missing"
    );
    let err = providers
        .client(&json!("provider-openai"), None)
        .unwrap_err();
    assert_eq!(
        err.in_entry("providers[0]").to_string(),
        "providers[0]: must be an object"
    );
}

#[tokio::test]
async fn a_base_url_with_a_trailing_slash_is_joined_without_doubling_it() {
    for fake in fakes().await {
        let entry = entry(&fake, json!({"base_url": format!("{}/", fake.base_url())}));
        providers_for(&fake)
            .client(&entry, None)
            .unwrap()
            .send(&transcript())
            .await
            .unwrap();
        let path = only_request(&fake).path;
        assert!(
            path == "/v1/messages" || path == "/v1/chat/completions",
            "{path}"
        );
    }
}

#[tokio::test]
async fn provider_calls_can_run_on_any_thread() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let fake = FakeProvider::openai().await;
    let client = client(&fake);
    // Resolvers and spawned tasks need Send futures and streams.
    let turns = transcript();
    let task = tokio::spawn({
        let client = client.clone();
        async move { client.send(&turns).await }
    });
    assert_eq!(task.await.unwrap().unwrap(), fake.reply());
    let stream = client.stream(&transcript()).await.unwrap();
    assert_send(&stream);
    assert_send(&providers_for(&fake));
}
