//! API tokens (ADMIN only): list, create (the secret is shown once, here, and kept
//! nowhere else), revoke.

use leptos::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::gql,
    app::set_title,
    components::{
        confirm::ConfirmButton,
        copy::CopyButton,
        status::{ErrorBanner, Loader},
    },
    error::ConsoleError,
    model::{ApiToken, short_time},
};

const TOKENS_QUERY: &str =
    "query ApiTokens { apiTokens { id name role tenant createdAt lastUsedAt revoked } }";

const CREATE_MUTATION: &str = "mutation CreateApiToken($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token apiToken { id } }
}";

const REVOKE_MUTATION: &str = "mutation RevokeApiToken($id: ID!) { revokeApiToken(id: $id) }";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokensData {
    api_tokens: Vec<ApiToken>,
}

#[derive(Clone, Deserialize)]
struct Created {
    token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateData {
    create_api_token: Created,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeData {
    revoke_api_token: bool,
}

#[component]
pub fn Tokens() -> impl IntoView {
    set_title("API tokens");
    let tokens = LocalResource::new(|| async {
        gql::<TokensData>(TOKENS_QUERY, json!({}))
            .await
            .map(|d| d.api_tokens)
    });

    let name = RwSignal::new(String::new());
    let role = RwSignal::new(String::from("MEMBER"));
    let tenant = RwSignal::new(String::new());
    let invalid = RwSignal::new(None::<String>);

    // the new secret lives only in this action's value, until the page is left
    let create = Action::new_local(|input: &Value| {
        let variables = json!({ "input": input });
        async move {
            gql::<CreateData>(CREATE_MUTATION, variables)
                .await
                .map(|d| d.create_api_token)
        }
    });
    let revoke = Action::new_local(|id: &String| {
        let variables = json!({ "id": id });
        async move {
            let data: RevokeData = gql(REVOKE_MUTATION, variables).await?;
            if data.revoke_api_token {
                Ok(())
            } else {
                Err(ConsoleError::NotFound(
                    "That token was already revoked or is gone.".into(),
                ))
            }
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            name.set(String::new());
            tenant.set(String::new());
            tokens.refetch();
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = revoke.value().get() {
            tokens.refetch();
        }
    });

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name_value = name.get_untracked().trim().to_owned();
        if name_value.is_empty() {
            invalid.set(Some(
                "A name is required (it is the actor in the audit log).".into(),
            ));
            return;
        }
        invalid.set(None);
        let mut input = json!({ "name": name_value, "role": role.get_untracked() });
        let tenant_value = tenant.get_untracked().trim().to_owned();
        if !tenant_value.is_empty() {
            input["tenant"] = json!(tenant_value);
        }
        create.dispatch(input);
    };

    view! {
        <section class="page" data-test="tokens-page">
            <h1>"API tokens"</h1>
            <form class="card" novalidate on:submit=submit data-test="token-form">
                <h2>"Create a token"</h2>
                <div class="row">
                    <div class="field grow">
                        <label for="token-name">"Name"</label>
                        <input
                            id="token-name"
                            type="text"
                            required
                            data-test="token-name"
                            aria-describedby="token-name-error"
                            prop:value=move || name.get()
                            on:input:target=move |ev| name.set(ev.target().value())
                        />
                    </div>
                    <div class="field">
                        <label for="token-role">"Role"</label>
                        <select id="token-role" data-test="token-role" on:change:target=move |ev| role.set(ev.target().value())>
                            <option value="MEMBER" selected>"MEMBER"</option>
                            <option value="ADMIN">"ADMIN"</option>
                        </select>
                    </div>
                    <div class="field">
                        <label for="token-tenant">"Tenant"</label>
                        <input
                            id="token-tenant"
                            type="text"
                            data-test="token-tenant"
                            placeholder="default"
                            prop:value=move || tenant.get()
                            on:input:target=move |ev| tenant.set(ev.target().value())
                        />
                    </div>
                </div>
                {move || invalid.get().map(|m| view! { <p class="field-error" id="token-name-error" role="alert">{m}</p> })}
                <button type="submit" class="primary" data-test="token-create" disabled=move || create.pending().get()>
                    {move || if create.pending().get() { "Creating…" } else { "Create token" }}
                </button>
                {move || match create.value().get() {
                    Some(Ok(created)) => view! {
                        <div class="secret-once" role="status" data-test="new-token">
                            <p><strong>"Copy this token now: it is shown once and cannot be shown again."</strong></p>
                            <div class="secret-line">
                                <code data-test="new-token-value">{created.token.clone()}</code>
                                <CopyButton value=created.token test="copy-token"/>
                            </div>
                            <button type="button" class="link-button" on:click=move |_| create.value().set(None)>
                                "I have stored it: hide"
                            </button>
                        </div>
                    }
                    .into_any(),
                    Some(Err(e)) => view! { <ErrorBanner error=e/> }.into_any(),
                    None => ().into_any(),
                }}
            </form>
            {move || revoke.value().get().and_then(Result::err).map(|e| view! { <ErrorBanner error=e/> })}
            <Loader>
                {move || Suspend::new(async move {
                    tokens.await.map(|list| {
                        let rows = list.into_iter().map(|t| {
                            let question = format!("Revoke {}? Clients using it stop working at once.", t.name);
                            let id = t.id.clone();
                            view! {
                                <tr data-test="token-row" data-id=t.id.clone() class:revoked=t.revoked>
                                    <td data-label="Name">{t.name.clone()}</td>
                                    <td data-label="Role">{t.role.as_str()}</td>
                                    <td data-label="Tenant">{t.tenant.clone().unwrap_or_else(|| "all".into())}</td>
                                    <td data-label="Created">{short_time(&t.created_at)}</td>
                                    <td data-label="Last used">{t.last_used_at.as_deref().map(short_time).unwrap_or_else(|| "never".into())}</td>
                                    <td data-label="State">
                                        {if t.revoked {
                                            view! { <span class="outcome outcome-failed" data-test="token-revoked">"revoked"</span> }.into_any()
                                        } else {
                                            view! {
                                                <ConfirmButton
                                                    label="Revoke"
                                                    question=question
                                                    test="revoke-token"
                                                    pending=revoke.pending()
                                                    on_confirm=move |_| { revoke.dispatch(id.clone()); }
                                                />
                                            }.into_any()
                                        }}
                                    </td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <div class="table-wrap">
                                <table class="data" data-test="tokens-table">
                                    <caption class="sr-only">"API tokens"</caption>
                                    <thead>
                                        <tr>
                                            <th scope="col">"Name"</th>
                                            <th scope="col">"Role"</th>
                                            <th scope="col">"Tenant"</th>
                                            <th scope="col">"Created"</th>
                                            <th scope="col">"Last used"</th>
                                            <th scope="col">"State"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                            </div>
                        }
                    })
                })}
            </Loader>
        </section>
    }
}
