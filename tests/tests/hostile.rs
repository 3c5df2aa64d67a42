//! Hostile input (issue 7 point 1): every shape a careless or malicious client can send
//! gets a clear refusal with `extensions.code = BAD_USER_INPUT` and never a 5xx, fast,
//! while the server keeps serving everyone else. The defaults are checked against
//! CONTRACT section 2: depth over 64, more than 1,000 fields or aliases, and a body over
//! 4 MiB are refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{Db, TestApp};

/// What a refusal looks like from the outside.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    took: Duration,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    /// A clear refusal: BAD_USER_INPUT, a message, no data, not a 5xx, and quick.
    #[track_caller]
    fn assert_refused(&self, what: &str) {
        assert!(
            !self.status.is_server_error(),
            "{what}: a 5xx ({}) for a client's mistake: {}",
            self.status,
            self.body
        );
        assert_eq!(
            self.code(),
            Some("BAD_USER_INPUT"),
            "{what}: wrong code ({}): {}",
            self.status,
            truncated(&self.body)
        );
        assert!(
            !self.message().is_empty(),
            "{what}: a refusal says why: {}",
            truncated(&self.body)
        );
        assert!(
            self.body["data"].is_null(),
            "{what}: a refused request runs nothing: {}",
            truncated(&self.body)
        );
        assert!(
            self.took < Duration::from_secs(5),
            "{what}: the refusal took {:?}",
            self.took
        );
    }
}

fn truncated(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 600 {
        format!("{}…", s.chars().take(600).collect::<String>())
    } else {
        s
    }
}

/// POSTs raw bytes to /graphql as the admin, with the given content type.
async fn post_raw(app: &TestApp, content_type: &str, body: Vec<u8>) -> Answer {
    let started = Instant::now();
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.admin_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let status = res.status();
    let bytes = res.bytes().await.expect("a body");
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        took: started.elapsed(),
    }
}

async fn post_json(app: &TestApp, body: &Value) -> Answer {
    post_raw(app, "application/json", serde_json::to_vec(body).unwrap()).await
}

async fn query(app: &TestApp, q: &str) -> Answer {
    post_json(app, &json!({ "query": q })).await
}

/// `{ __type(name: "Query") { ofType { ofType … { name } } } }`: `depth` levels of fields.
fn nested_type_query(depth: usize) -> String {
    assert!(depth >= 2);
    let inner = depth - 2;
    format!(
        "{{ __type(name: \"Query\") {{ {} name {} }} }}",
        "ofType { ".repeat(inner),
        "}".repeat(inner)
    )
}

/// The same depth built from a chain of fragments, each shallow on its own, so that only
/// the depth limit (not the parser's nesting limit) can see it.
fn fragment_chain_query(depth: usize) -> String {
    let mut q = String::from("{ __type(name: \"Query\") { ...F0 } }\n");
    for i in 0..depth {
        if i + 1 < depth {
            q.push_str(&format!(
                "fragment F{i} on __Type {{ name ofType {{ ...F{} }} }}\n",
                i + 1
            ));
        } else {
            q.push_str(&format!("fragment F{i} on __Type {{ name }}\n"));
        }
    }
    q
}

/// `n` aliases of one cheap field.
fn aliases_query(n: usize) -> String {
    let fields: String = (0..n).map(|i| format!(" a{i}: __typename")).collect();
    format!("{{{fields} }}")
}

/// A body of exactly `size` bytes that is a valid GraphQL request apart from its size.
fn padded_body(size: usize) -> Vec<u8> {
    let head = br#"{"query":"{ me { name } }","variables":{"pad":""#;
    let tail = br#""}}"#;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    body.resize(size - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

const ME: &str = "{ me { name role } }";

async fn me_works(app: &TestApp) {
    let ok = query(app, ME).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["data"]["me"]["role"], "ADMIN", "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_deeper_than_the_limit_are_refused_however_they_are_built() {
    let app = TestApp::spawn(Db::Sqlite).await;
    // Within the default limit: served, so the refusals below are about depth.
    let shallow = query(&app, &nested_type_query(8)).await;
    assert_eq!(shallow.status, StatusCode::OK);
    assert_eq!(
        shallow.body["data"]["__type"]["ofType"],
        Value::Null,
        "{}",
        shallow.body
    );
    let chain = query(&app, &fragment_chain_query(6)).await;
    assert_eq!(
        chain.body["data"]["__type"]["name"], "Query",
        "{}",
        chain.body
    );

    for depth in [65, 100, 1_000] {
        query(&app, &nested_type_query(depth))
            .await
            .assert_refused(&format!("nested fields {depth} deep"));
        query(&app, &fragment_chain_query(depth))
            .await
            .assert_refused(&format!("a chain of {depth} fragments"));
    }
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depth_limit_set_in_settings_is_the_one_applied() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| s.limits.max_query_depth = 5).await;
    let ok = query(&app, &nested_type_query(5)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.get("errors").is_none(), "{}", ok.body);
    query(&app, &nested_type_query(6))
        .await
        .assert_refused("one level over a depth limit of 5");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_nested_far_beyond_any_limit_is_refused_without_harm() {
    let app = TestApp::spawn(Db::Sqlite).await;
    // Deep enough to overflow a recursive parser's stack if nothing stopped it first.
    for n in [10_000, 200_000] {
        let braces = format!("{}{}", "{ a ".repeat(n), "}".repeat(n));
        query(&app, &braces)
            .await
            .assert_refused(&format!("{n} nested selection sets"));
        let lists = format!(
            "{{ config(id: \"x\", reason: {}\"r\"{}) {{ id }} }}",
            "[".repeat(n),
            "]".repeat(n)
        );
        query(&app, &lists)
            .await
            .assert_refused(&format!("a literal list nested {n} deep"));
        let objects = format!(
            "mutation {{ createConfig(input: {{ name: \"n\", configData: {}1{} }}) {{ id }} }}",
            "{a: ".repeat(n),
            "}".repeat(n)
        );
        query(&app, &objects)
            .await
            .assert_refused(&format!("a literal object nested {n} deep"));
        let parens = format!("{{ me{} }}", "(".repeat(n));
        query(&app, &parens)
            .await
            .assert_refused(&format!("{n} unbalanced parentheses"));
    }
    // JSON variables nested beyond the JSON parser's own limit.
    let deep_json = format!(
        r#"{{"query":"{{ me {{ name }} }}","variables":{{"v":{}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    post_raw(&app, "application/json", deep_json.into_bytes())
        .await
        .assert_refused("JSON variables nested 100,000 deep");
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_fields_or_aliases_are_refused_and_a_thousand_are_served() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let ok = query(&app, &aliases_query(1_000)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["data"]["a999"], "Query", "{}", truncated(&ok.body));
    for n in [1_001, 5_000, 50_000] {
        query(&app, &aliases_query(n))
            .await
            .assert_refused(&format!("{n} aliases"));
    }
    // The same field repeated without aliases: one response key, still 5,000 selections.
    let repeated = format!("{{{} }}", " me { name }".repeat(5_000));
    query(&app, &repeated)
        .await
        .assert_refused("one field selected 5,000 times");
    // Nested lists of fields multiply: 40 × 40 selections.
    let wide = format!(
        "{{ configs {{ nodes {{ {} }} }} {} }}",
        (0..40).map(|i| format!("f{i}: id ")).collect::<String>(),
        (0..40)
            .map(|i| format!("c{i}: __typename "))
            .collect::<String>()
    );
    assert!(query(&app, &wide).await.status.is_success());
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_fields_weigh_the_nodes_they_may_return() {
    let app = TestApp::spawn(Db::Sqlite).await;
    const FULL: &str = "nodes { id name description tenant tags configData encrypted \
        sensitivePaths version createdAt updatedAt } pageInfo { hasNextPage endCursor } totalCount";
    // A full page of 100 configs with every field: served.
    let page = query(&app, &format!("{{ configs(first: 100) {{ {FULL} }} }}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", truncated(&page.body));
    assert!(
        page.body.get("errors").is_none(),
        "{}",
        truncated(&page.body)
    );
    // Ten of them in one operation names under 200 fields, but asks for a thousand
    // documents: refused.
    let pages: String = (0..10)
        .map(|i| format!(" p{i}: configs(first: 100) {{ {FULL} }}"))
        .collect();
    query(&app, &format!("{{{pages} }}"))
        .await
        .assert_refused("ten pages of 100");
    // The page size counts when it comes in a variable too.
    let pages: String = (0..10)
        .map(|i| format!(" p{i}: configs(first: $n) {{ {FULL} }}"))
        .collect();
    let text = format!("query($n: Int) {{{pages} }}");
    post_json(&app, &json!({ "query": text, "variables": { "n": 100 } }))
        .await
        .assert_refused("ten pages of $n = 100");
    let small = post_json(&app, &json!({ "query": text, "variables": { "n": 5 } })).await;
    assert_eq!(small.status, StatusCode::OK, "{}", truncated(&small.body));
    assert!(
        small.body.get("errors").is_none(),
        "{}",
        truncated(&small.body)
    );
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_that_multiply_are_refused_quickly() {
    let app = TestApp::spawn(Db::Sqlite).await;
    // F0 has two fields; each Fk spreads F(k-1) ten times: F9 stands for 2e9 selections,
    // which a validator that expands fragments would walk one by one.
    let mut q = String::from("query { ...F9 }\nfragment F0 on Query { __typename me { name } }\n");
    for k in 1..10 {
        let spreads = format!(" ...F{}", k - 1).repeat(10);
        q.push_str(&format!("fragment F{k} on Query {{{spreads} }}\n"));
    }
    let answer = query(&app, &q).await;
    answer.assert_refused("a fragment bomb");
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_directives_are_refused() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let on_one_field = format!("{{ me{} {{ name }} }}", " @include(if: true)".repeat(5_000));
    query(&app, &on_one_field)
        .await
        .assert_refused("5,000 directives on one field");
    let spread_out = format!(
        "{{ {} }}",
        (0..5_000)
            .map(|i| format!("a{i}: __typename @skip(if: false)"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    query(&app, &spread_out)
        .await
        .assert_refused("5,000 fields with a directive each");
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_limit_are_refused_and_a_full_batch_is_served() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let one = json!({ "query": ME });
    let full = post_json(&app, &Value::Array(vec![one.clone(); 10])).await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.body);
    let answers = full.body.as_array().expect("a batch answer is an array");
    assert_eq!(answers.len(), 10);
    assert!(answers.iter().all(|a| a["data"]["me"]["role"] == "ADMIN"));

    for n in [11, 10_000] {
        post_json(&app, &Value::Array(vec![one.clone(); n]))
            .await
            .assert_refused(&format!("a batch of {n}"));
    }
    post_json(&app, &json!([]))
        .await
        .assert_refused("an empty batch");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_four_mebibytes_is_refused_with_413() {
    let app = TestApp::spawn(Db::Sqlite).await;
    assert_eq!(app.settings.limits.max_body_bytes, 4 * 1024 * 1024);
    // Just under the limit: read, parsed and served.
    let under = post_raw(&app, "application/json", padded_body(4 * 1024 * 1024 - 64)).await;
    assert_eq!(under.status, StatusCode::OK, "{}", truncated(&under.body));
    assert_eq!(
        under.body["data"]["me"]["name"],
        "admin",
        "{}",
        truncated(&under.body)
    );

    for size in [4 * 1024 * 1024 + 1, 8 * 1024 * 1024] {
        let over = post_raw(&app, "application/json", padded_body(size)).await;
        assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes");
        over.assert_refused(&format!("a body of {size} bytes"));
    }

    // Announcing a gigabyte is enough to be refused: the answer comes before a byte of
    // the body is sent (a client that waits for it, as with Expect: 100-continue).
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.admin_token,
        1u64 << 30
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("an answer without the body")
        .expect("a readable answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"BAD_USER_INPUT""#), "{answer}");
    me_works(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_a_configured_limit_is_refused_even_without_a_content_length() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| s.limits.max_body_bytes = 1024).await;
    // A chunked upload announces no length: the limit must hold while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = padded_body(64 * 1024)
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_and_non_requests_are_refused_with_400() {
    let app = TestApp::spawn(Db::Sqlite).await;
    for (what, body) in [
        ("truncated JSON", &br#"{"query": "{ me { name } }""#[..]),
        ("not JSON at all", b"query { me { name } }"),
        ("an empty body", b""),
        ("invalid UTF-8", b"{\"query\": \"\xff\xfe\"}"),
        ("a string", br#""{ me { name } }""#),
        ("a number", b"42"),
        ("null", b"null"),
        ("a query that is not a string", br#"{"query": 7}"#),
        (
            "variables that are not an object",
            br#"{"query": "{ me { name } }", "variables": [1]}"#,
        ),
        ("a batch of non-requests", b"[1, 2, 3]"),
    ] {
        let answer = post_raw(&app, "application/json", body.to_vec()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            answer.body
        );
        answer.assert_refused(what);
    }
    // A JSON object without a query (it might name a persisted one) and text that is not
    // GraphQL: refused by GraphQL, still BAD_USER_INPUT.
    post_raw(&app, "application/json", br#"{"hello": "world"}"#.to_vec())
        .await
        .assert_refused("JSON that is not a request");
    query(&app, "{ me { name }")
        .await
        .assert_refused("unbalanced GraphQL");
    query(&app, "").await.assert_refused("an empty query");
    query(&app, "{ nosuchfield }")
        .await
        .assert_refused("an unknown field");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_content_type_is_refused_with_415() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let body = serde_json::to_vec(&json!({ "query": ME })).unwrap();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        "application/jsonx",
        "application/json-patch+json",
    ] {
        let answer = post_raw(&app, content_type, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {}",
            answer.body
        );
        answer.assert_refused(content_type);
    }
    for accepted in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
    ] {
        let answer = post_raw(&app, accepted, body.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{accepted}: {}", answer.body);
        assert_eq!(answer.body["data"]["me"]["role"], "ADMIN");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_data_over_the_size_limit_is_refused_and_nothing_is_stored() {
    let app = TestApp::spawn(Db::Sqlite).await;
    let create = "mutation($i: CreateConfigInput!) { createConfig(input: $i) { id } }";
    // Default limit 1 MiB: 1.5 MiB of configData in a body well under 4 MiB.
    let big = "x".repeat(1024 * 1024 + 512 * 1024);
    let answer = post_json(
        &app,
        &json!({ "query": create, "variables": { "i": { "name": "big", "configData": { "notes": big } } } }),
    )
    .await;
    answer.assert_refused("1.5 MiB of configData");
    assert!(
        !answer.message().contains("xxxx"),
        "the value is not echoed"
    );
    let count = app.gql("{ configs { totalCount } }", json!({})).await;
    assert_eq!(count.data("configs")["totalCount"], 0);
    app.stop().await;

    // A configured limit is the one applied, to creates and to updates.
    let app = TestApp::spawn_with(Db::Sqlite, |s| s.limits.max_config_bytes = 2048).await;
    let small = app
        .create_config(
            &app.admin_token,
            "small",
            json!({ "notes": "y".repeat(1000) }),
        )
        .await;
    let answer = post_json(
        &app,
        &json!({ "query": create, "variables": { "i": { "name": "big", "configData": { "notes": "y".repeat(4096) } } } }),
    )
    .await;
    answer.assert_refused("4 KiB of configData over a 2 KiB limit");
    let update = "mutation($id: ID!, $i: UpdateConfigInput!) { updateConfig(id: $id, input: $i) { version } }";
    let answer = post_json(
        &app,
        &json!({ "query": update, "variables": { "id": small["id"], "i": { "configData": { "notes": "y".repeat(4096) } } } }),
    )
    .await;
    answer.assert_refused("an update over the limit");
    let count = app.gql("{ configs { totalCount } }", json!({})).await;
    assert_eq!(count.data("configs")["totalCount"], 1);
    app.stop().await;
}

/// Every hostile shape at once, several times over, while a well-behaved client keeps
/// asking: each of its requests is answered correctly and promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_serving_others_while_it_refuses_hostile_requests() {
    let app = Arc::new(TestApp::spawn(Db::Sqlite).await);
    let done = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));

    let bystander = {
        let (app, done, served) = (app.clone(), done.clone(), served.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::SeqCst) {
                let answer = query(&app, ME).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                assert_eq!(
                    answer.body["data"]["me"]["role"], "ADMIN",
                    "{}",
                    answer.body
                );
                slowest = slowest.max(answer.took);
                served.fetch_add(1, Ordering::SeqCst);
            }
            slowest
        })
    };

    let mut fragment_bomb =
        String::from("query { ...F9 }\nfragment F0 on Query { __typename me { name } }\n");
    for k in 1..10 {
        let spreads = format!(" ...F{}", k - 1).repeat(10);
        fragment_bomb.push_str(&format!("fragment F{k} on Query {{{spreads} }}\n"));
    }
    let shapes: Vec<(&str, &str, Vec<u8>)> = vec![
        ("deep", "application/json", serde_json::to_vec(&json!({ "query": nested_type_query(100) })).unwrap()),
        ("fragments", "application/json", serde_json::to_vec(&json!({ "query": fragment_chain_query(100) })).unwrap()),
        ("bomb", "application/json", serde_json::to_vec(&json!({ "query": fragment_bomb })).unwrap()),
        ("aliases", "application/json", serde_json::to_vec(&json!({ "query": aliases_query(20_000) })).unwrap()),
        ("braces", "application/json", serde_json::to_vec(&json!({ "query": "{ a ".repeat(100_000) })).unwrap()),
        ("directives", "application/json", serde_json::to_vec(&json!({ "query": format!("{{ me{} {{ name }} }}", " @include(if: true)".repeat(5_000)) })).unwrap()),
        ("batch", "application/json", serde_json::to_vec(&Value::Array(vec![json!({ "query": ME }); 5_000])).unwrap()),
        ("body", "application/json", padded_body(6 * 1024 * 1024)),
        ("json", "application/json", b"{\"query\": ".to_vec()),
        ("type", "text/plain", serde_json::to_vec(&json!({ "query": ME })).unwrap()),
    ];
    let mut attacks = Vec::new();
    for round in 0..3 {
        for (name, content_type, body) in &shapes {
            let (app, content_type, body) = (app.clone(), content_type.to_string(), body.clone());
            let what = format!("{name} (round {round})");
            attacks.push(tokio::spawn(async move {
                post_raw(&app, &content_type, body)
                    .await
                    .assert_refused(&what);
            }));
        }
    }
    let deadline =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(attacks))
            .await
            .expect("every hostile request is answered within a minute");
    for attack in deadline {
        attack.expect("each hostile request gets a clear refusal");
    }
    // The bystander must have been answered while the attacks ran, not only after.
    let during = served.load(Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    let slowest = bystander
        .await
        .expect("the bystander's requests all succeed");
    assert!(
        during >= 1,
        "no ordinary request was served during the attack"
    );
    assert!(
        slowest < Duration::from_secs(5),
        "an ordinary request waited {slowest:?} behind hostile ones"
    );
    Arc::into_inner(app).expect("no other owner").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_cut_off_at_the_request_timeout() {
    let app = TestApp::spawn_with(Db::Sqlite, |s| {
        s.limits.request_timeout = Duration::from_secs(1)
    })
    .await;
    // The headers promise a body, then one byte arrives and nothing more.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(b"{".to_vec())).await.unwrap();
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let started = Instant::now();
    let res = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    let took = started.elapsed();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    drop(tx);
    me_works(&app).await;
    app.stop().await;
}

/// The same limits hold over the WebSocket transport: a message over the body limit closes
/// the socket, and a hostile subscription document is refused as BAD_USER_INPUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_transport_applies_the_same_limits() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let app = TestApp::spawn_with(Db::Sqlite, |s| s.limits.max_body_bytes = 64 * 1024).await;
    let connect = || async {
        let mut request = format!("ws://127.0.0.1:{}/graphql/ws", app.port)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", app.admin_token) } });
        socket
            .send(Message::Text(init.to_string().into()))
            .await
            .unwrap();
        loop {
            let message = socket.next().await.expect("an ack").expect("a message");
            if let Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(event["type"], "connection_ack", "{event}");
                break;
            }
        }
        socket
    };
    let subscribe = |query: String| {
        Message::Text(
            json!({ "id": "1", "type": "subscribe", "payload": { "query": query } })
                .to_string()
                .into(),
        )
    };

    // Over the limit: the server closes the connection instead of reading on.
    let mut socket = connect().await;
    let huge = format!("{{ me {{ name }} }}{}", " ".repeat(128 * 1024));
    let _ = socket.send(subscribe(huge)).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(&text).unwrap();
                    assert_ne!(event["type"], "next", "an oversized message was executed");
                }
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the socket is closed within 10 s");
    assert!(closed);

    // A fragment bomb over a fresh socket: refused like over HTTP.
    let mut socket = connect().await;
    let mut bomb =
        String::from("query { ...F9 }\nfragment F0 on Query { __typename me { name } }\n");
    for k in 1..10 {
        let spreads = format!(" ...F{}", k - 1).repeat(10);
        bomb.push_str(&format!("fragment F{k} on Query {{{spreads} }}\n"));
    }
    socket.send(subscribe(bomb)).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                panic!("the socket closed before an answer");
            };
            let event: Value = serde_json::from_str(&text).unwrap();
            match event["type"].as_str() {
                Some("error") => return event["payload"][0]["extensions"]["code"].clone(),
                Some("next") => return event["payload"]["errors"][0]["extensions"]["code"].clone(),
                _ => {}
            }
        }
    })
    .await
    .expect("an answer within 10 s");
    assert_eq!(code, "BAD_USER_INPUT");
    me_works(&app).await;
    app.stop().await;
}
