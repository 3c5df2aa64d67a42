//! Create and edit a config. The JSON is checked in the browser (it must parse, and be an
//! object) before anything is sent; the server's `BAD_USER_INPUT` is shown next to the
//! field it concerns, and an edit carries `expectedVersion` so a concurrent change comes
//! back as `CONFLICT` instead of being overwritten.
//!
//! Secrets are sealed in the browser: before a save, the form fetches `encryptionKey` and
//! replaces every plaintext string the server would encrypt (under a sensitive key, or
//! credential-looking; not empty, `${NAME}`, `enc:` or `sealed:`) with a `sealed:` value
//! made by `keyward-seal`, so the plaintext of a new secret never travels in the request.

use leptos::prelude::*;
use leptos_router::{
    NavigateOptions,
    components::A,
    hooks::{use_navigate, use_params_map},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    api::gql,
    app::{set_title, url},
    auth::use_auth,
    components::status::{ErrorBanner, FieldError, Loader},
    error::ConsoleError,
    model::Config,
    pages::config_detail::load_config,
};

const CREATE_MUTATION: &str = "mutation CreateConfig($input: CreateConfigInput!) {
  createConfig(input: $input) { id version }
}";

const UPDATE_MUTATION: &str = "mutation UpdateConfig($id: ID!, $input: UpdateConfigInput!) {
  updateConfig(id: $id, input: $input) { id version }
}";

const KEY_QUERY: &str = "query EncryptionKey { encryptionKey { keyId publicKey } }";

const EXAMPLE: &str = r#"{
  "providers": [
    {
      "module": "provider-echo",
      "config": { "api_key": "sk-replace-me", "model": "echo-1" }
    }
  ]
}"#;

#[derive(Deserialize)]
struct Saved {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateData {
    create_config: Saved,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateData {
    update_config: Saved,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyData {
    encryption_key: ServerKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerKey {
    key_id: String,
    public_key: String,
}

/// Seals every plaintext secret of `doc` to the server's public key, fetched for each
/// save so that a rotated key is picked up.
async fn seal_secrets(doc: &mut Value) -> Result<(), ConsoleError> {
    let key = gql::<KeyData>(KEY_QUERY, json!({})).await?.encryption_key;
    let public = keyward_seal::parse_public_key(&key.public_key)
        .ok()
        .filter(|public| keyward_seal::fingerprint(public) == key.key_id)
        .ok_or_else(|| {
            ConsoleError::Network(
                "The server's encryption key is not usable: nothing was sent.".into(),
            )
        })?;
    keyward_seal::seal_secrets(doc, &public);
    Ok(())
}

/// Which input an error belongs next to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Description,
    Tags,
    Tenant,
    Data,
}

fn field_of(error: &ConsoleError) -> Option<Field> {
    match error {
        ConsoleError::BadUserInput { message, field } => {
            let named = field.as_deref().unwrap_or_default().to_ascii_lowercase();
            let lead = message.to_ascii_lowercase();
            let is = |word: &str| named == word || (named.is_empty() && lead.starts_with(word));
            Some(if is("name") {
                Field::Name
            } else if is("description") {
                Field::Description
            } else if is("tags") || is("tag") {
                Field::Tags
            } else if is("tenant") {
                Field::Tenant
            } else {
                // the document is where nearly every input error is: a path, a provider, a host
                Field::Data
            })
        }
        ConsoleError::Invalid(_) => Some(Field::Data),
        _ => None,
    }
}

/// Parses the editor's text; the error names the line and column.
fn parse_document(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("The config data must be a JSON object ({ … }).".into()),
        Err(e) => Err(format!("Not valid JSON: {e}")),
    }
}

fn parse_tags(text: &str) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for tag in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    tags
}

#[component]
pub fn ConfigNew() -> impl IntoView {
    set_title("New config");
    view! {
        <section class="page" data-test="config-new-page">
            <p class="breadcrumb"><A href=url("/configs")>"← Configs"</A></p>
            <h1>"New config"</h1>
            <ConfigForm existing=None/>
        </section>
    }
}

#[component]
pub fn ConfigEdit() -> impl IntoView {
    set_title("Edit config");
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let config = LocalResource::new(move || load_config(id.get()));
    view! {
        <section class="page" data-test="config-edit-page">
            <p class="breadcrumb">
                <A href=move || url(format!("/configs/{}", id.get()))>"← Back to the config"</A>
            </p>
            <h1>"Edit config"</h1>
            <Loader>
                {move || Suspend::new(async move {
                    config.await.map(|c| {
                        let reload = Callback::new(move |()| config.refetch());
                        view! { <ConfigForm existing=Some(c) reload/> }
                    })
                })}
            </Loader>
        </section>
    }
}

#[component]
fn ConfigForm(
    existing: Option<Config>,
    #[prop(optional)] reload: Option<Callback<()>>,
) -> impl IntoView {
    let auth = use_auth();
    let navigate = use_navigate();
    let editing = existing.as_ref().map(|c| (c.id.clone(), c.version));

    let name = RwSignal::new(
        existing
            .as_ref()
            .map(|c| c.name.clone())
            .unwrap_or_default(),
    );
    let description = RwSignal::new(
        existing
            .as_ref()
            .and_then(|c| c.description.clone())
            .unwrap_or_default(),
    );
    let tags = RwSignal::new(
        existing
            .as_ref()
            .map(|c| c.tags.join(", "))
            .unwrap_or_default(),
    );
    let tenant = RwSignal::new(String::new());
    let data = RwSignal::new(
        existing
            .as_ref()
            .map(|c| serde_json::to_string_pretty(&c.config_data).unwrap_or_default())
            .unwrap_or_else(|| EXAMPLE.to_owned()),
    );

    let error = RwSignal::new(None::<ConsoleError>);
    let error_at = move |field: Field| {
        Signal::derive(move || {
            error.with(|e| {
                e.as_ref()
                    .filter(|e| field_of(e) == Some(field))
                    .map(|e| e.message().to_owned())
            })
        })
    };

    let save = Action::new_local({
        let editing = editing.clone();
        move |input: &Value| {
            let mut input = input.clone();
            let editing = editing.clone();
            async move {
                seal_secrets(&mut input["configData"]).await?;
                match editing {
                    Some((id, _)) => {
                        gql::<UpdateData>(UPDATE_MUTATION, json!({ "id": id, "input": input }))
                            .await
                            .map(|d| d.update_config.id)
                    }
                    None => gql::<CreateData>(CREATE_MUTATION, json!({ "input": input }))
                        .await
                        .map(|d| d.create_config.id),
                }
            }
        }
    });
    Effect::new(move |_| match save.value().get() {
        Some(Ok(id)) => navigate(&format!("/configs/{id}"), NavigateOptions::default()),
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });

    let is_edit = editing.is_some();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        let document = match parse_document(&data.get_untracked()) {
            Ok(doc) => doc,
            Err(message) => {
                error.set(Some(ConsoleError::Invalid(message)));
                focus("config-data");
                return;
            }
        };
        let name_value = name.get_untracked().trim().to_owned();
        if name_value.is_empty() {
            error.set(Some(ConsoleError::BadUserInput {
                message: "A name is required.".into(),
                field: Some("name".into()),
            }));
            focus("config-name");
            return;
        }
        let description_value = description.get_untracked().trim().to_owned();
        let mut input = json!({
            "name": name_value,
            "tags": parse_tags(&tags.get_untracked()),
            "configData": Value::Object(document),
        });
        match &editing {
            Some((_, version)) => {
                input["description"] = json!(description_value);
                input["expectedVersion"] = json!(version);
            }
            None => {
                if !description_value.is_empty() {
                    input["description"] = json!(description_value);
                }
                let tenant_value = tenant.get_untracked().trim().to_owned();
                if !tenant_value.is_empty() {
                    input["tenant"] = json!(tenant_value);
                }
            }
        }
        save.dispatch(input);
    };

    let conflict = move || {
        error.with(|e| matches!(e, Some(ConsoleError::Conflict(_)))).then(|| {
            let message = error.with(|e| e.as_ref().map(|e| e.message().to_owned()).unwrap_or_default());
            let text = if is_edit {
                "Someone changed this config since you opened it, so your edit was not saved. \
                 Copy your changes if you need them, then load the latest version."
            } else {
                "A config with this name already exists."
            };
            view! {
                <div class="error-banner conflict" role="alert" data-test="conflict">
                    <strong>"Conflict"</strong>
                    <span class="code">"CONFLICT"</span>
                    <p>{text}</p>
                    <p class="muted">{message}</p>
                    {reload.map(|reload| view! {
                        <button type="button" data-test="reload-latest" on:click=move |_| reload.run(())>
                            "Load the latest version"
                        </button>
                    })}
                </div>
            }
        })
    };
    let other_error = move || {
        error
            .get()
            .filter(|e| field_of(e).is_none() && !matches!(e, ConsoleError::Conflict(_)))
            .map(|e| view! { <ErrorBanner error=e/> })
    };

    view! {
        <form class="card config-form" on:submit=submit novalidate data-test="config-form">
            {conflict}
            {other_error}
            <div class="field">
                <label for="config-name">"Name"</label>
                <input
                    id="config-name"
                    type="text"
                    required
                    maxlength="200"
                    data-test="config-name-input"
                    aria-describedby="config-name-error"
                    aria-invalid=move || error_at(Field::Name).get().is_some().to_string()
                    prop:value=move || name.get()
                    on:input:target=move |ev| name.set(ev.target().value())
                />
                <FieldError error=error_at(Field::Name) id="config-name-error"/>
            </div>
            <div class="field">
                <label for="config-description">"Description"</label>
                <textarea
                    id="config-description"
                    rows="2"
                    data-test="config-description-input"
                    aria-describedby="config-description-error"
                    prop:value=move || description.get()
                    on:input:target=move |ev| description.set(ev.target().value())
                ></textarea>
                <FieldError error=error_at(Field::Description) id="config-description-error"/>
            </div>
            <div class="field">
                <label for="config-tags">"Tags"</label>
                <input
                    id="config-tags"
                    type="text"
                    data-test="config-tags-input"
                    placeholder="comma-separated, e.g. prod, anthropic"
                    aria-describedby="config-tags-error"
                    prop:value=move || tags.get()
                    on:input:target=move |ev| tags.set(ev.target().value())
                />
                <FieldError error=error_at(Field::Tags) id="config-tags-error"/>
            </div>
            <Show when=move || !is_edit && auth.is_admin()>
                <div class="field">
                    <label for="config-tenant">"Tenant"</label>
                    <input
                        id="config-tenant"
                        type="text"
                        data-test="config-tenant-input"
                        placeholder="default"
                        aria-describedby="config-tenant-error"
                        prop:value=move || tenant.get()
                        on:input:target=move |ev| tenant.set(ev.target().value())
                    />
                    <FieldError error=error_at(Field::Tenant) id="config-tenant-error"/>
                </div>
            </Show>
            <div class="field">
                <label for="config-data">"Config data (JSON object)"</label>
                <textarea
                    id="config-data"
                    class="code-input"
                    rows="16"
                    spellcheck="false"
                    autocomplete="off"
                    data-test="config-data-input"
                    aria-describedby="config-data-help config-data-error"
                    aria-invalid=move || error_at(Field::Data).get().is_some().to_string()
                    prop:value=move || data.get()
                    on:input:target=move |ev| data.set(ev.target().value())
                ></textarea>
                <FieldError error=error_at(Field::Data) id="config-data-error"/>
                <p id="config-data-help" class="help">
                    "Values under sensitive keys (api_key, secret, password, token…) are sealed in your browser before they are sent, and stored encrypted. "
                    {is_edit.then_some(
                        "Values shown as enc:… are already encrypted: leave them to keep them, or type a new plaintext value to replace one.",
                    )}
                </p>
            </div>
            <div class="actions">
                <button type="submit" class="primary" data-test="config-save" disabled=move || save.pending().get()>
                    {move || if save.pending().get() { "Saving…" } else if is_edit { "Save changes" } else { "Create config" }}
                </button>
            </div>
        </form>
    }
}

fn focus(id: &str) {
    use wasm_bindgen::JsCast;
    if let Some(element) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = element.focus();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_accepts_only_a_json_object() {
        assert!(parse_document(r#"{"a": 1}"#).is_ok());
        assert!(
            parse_document("[1, 2]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(parse_document("{\"a\": ").unwrap_err().contains("line 1"));
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated_in_order() {
        assert_eq!(parse_tags(" prod, ai ,, prod,x "), vec!["prod", "ai", "x"]);
    }

    #[test]
    fn input_errors_go_next_to_the_field_they_name() {
        let named = |field: Option<&str>, message: &str| {
            field_of(&ConsoleError::BadUserInput {
                message: message.into(),
                field: field.map(Into::into),
            })
        };
        assert!(named(Some("name"), "too long") == Some(Field::Name));
        assert!(named(None, "name must not be empty") == Some(Field::Name));
        assert!(
            named(
                None,
                "configData.providers[0].config.base_url: host not allowed"
            ) == Some(Field::Data)
        );
        assert!(field_of(&ConsoleError::Conflict("stale".into())).is_none());
    }
}
