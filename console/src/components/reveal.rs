//! The config document, masked, with the ADMIN-only "Reveal secrets" control.
//!
//! The plaintext answer lives in exactly one place: the value signal of this component's
//! reveal action. It is never copied into a shared resource, the URL or storage, and it
//! is dropped when the user hides it again or leaves the page (the component, and the
//! signal with it, is disposed; the request is aborted if still in flight).

use leptos::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::gql,
    auth::use_auth,
    components::{
        json_view::JsonView,
        status::{ErrorBanner, FieldError},
    },
    error::ConsoleError,
};

const REVEAL_QUERY: &str = "query RevealConfig($id: ID!, $reason: String) {
  config(id: $id, decrypt: true, reason: $reason) { configData sensitivePaths encrypted }
}";

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plain {
    config_data: Value,
    sensitive_paths: Vec<String>,
}

#[derive(Deserialize)]
struct RevealData {
    config: Option<Plain>,
}

#[component]
pub fn SecretsPanel(id: String, config_data: Value, sensitive_paths: Vec<String>) -> impl IntoView {
    let auth = use_auth();
    let asking = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    let reason_error = RwSignal::new(None::<String>);

    let reveal = Action::new_local(move |reason: &String| {
        let variables = json!({ "id": id, "reason": reason });
        async move {
            let data: RevealData = gql(REVEAL_QUERY, variables).await?;
            data.config
                .ok_or_else(|| ConsoleError::NotFound("This config no longer exists.".into()))
        }
    });
    let plain = reveal.value();
    let revealed = move || plain.with(|p| matches!(p, Some(Ok(_))));

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let text = reason.get_untracked().trim().to_owned();
        if text.is_empty() {
            reason_error.set(Some(
                "Say why you need the plaintext: the reason is recorded.".into(),
            ));
            return;
        }
        reason_error.set(None);
        asking.set(false);
        reveal.dispatch(text);
    };
    let hide = move |_| {
        plain.set(None);
        reason.set(String::new());
    };

    let masked = {
        let config_data = config_data.clone();
        let sensitive_paths = sensitive_paths.clone();
        move || view! { <JsonView value=config_data.clone() sensitive=sensitive_paths.clone()/> }
    };
    let secret_count = sensitive_paths.len();
    let has_secrets = secret_count != 0;

    view! {
        <section class="panel" aria-labelledby="config-data-title">
            <div class="panel-head">
                <h2 id="config-data-title">"Config data"</h2>
                <span class="muted" data-test="secret-count">
                    {format!("{secret_count} encrypted value{}", if secret_count == 1 { "" } else { "s" })}
                </span>
                <Show when=move || auth.is_admin() && has_secrets>
                    <Show
                        when=revealed
                        fallback=move || {
                            view! {
                                <button
                                    type="button"
                                    class="warn"
                                    data-test="reveal"
                                    aria-expanded=move || asking.get().to_string()
                                    aria-controls="reveal-form"
                                    disabled=move || reveal.pending().get()
                                    on:click=move |_| asking.update(|a| *a = !*a)
                                >
                                    "Reveal secrets"
                                </button>
                            }
                        }
                    >
                        <button type="button" data-test="hide-secrets" on:click=hide>
                            "Hide secrets"
                        </button>
                    </Show>
                </Show>
            </div>
            <Show when=move || asking.get()>
                <form id="reveal-form" class="reveal-form" novalidate on:submit=submit data-test="reveal-form">
                    <p class="notice" role="note">
                        <strong>"This read is audited."</strong>
                        " Your name, the reason you give and the time are recorded in the audit log "
                        "(action " <code>"config.decrypt"</code> ")."
                    </p>
                    <label for="reveal-reason">"Reason"</label>
                    <input
                        id="reveal-reason"
                        type="text"
                        data-test="reveal-reason"
                        required
                        maxlength="500"
                        placeholder="e.g. rotating the provider key, ticket OPS-123"
                        aria-describedby="reveal-reason-error"
                        prop:value=move || reason.get()
                        on:input:target=move |ev| reason.set(ev.target().value())
                    />
                    <FieldError error=reason_error id="reveal-reason-error"/>
                    <div class="actions">
                        <button type="submit" class="warn" data-test="reveal-confirm">
                            "Reveal (audited)"
                        </button>
                        <button type="button" on:click=move |_| asking.set(false)>"Cancel"</button>
                    </div>
                </form>
            </Show>
            {move || reveal.pending().get().then(|| view! {
                <p class="loading" role="status">"Decrypting (audited)…"</p>
            })}
            {move || match plain.get() {
                Some(Ok(p)) => view! {
                    <p class="notice revealed-notice" role="status" data-test="revealed-notice">
                        "Plaintext shown. This read was recorded in the audit log; "
                        "it is hidden again when you leave this page."
                    </p>
                    <JsonView value=p.config_data sensitive=p.sensitive_paths revealed=true/>
                }
                .into_any(),
                Some(Err(error)) => view! {
                    <ErrorBanner error=error/>
                    {masked()}
                }
                .into_any(),
                None => masked().into_any(),
            }}
        </section>
    }
}
