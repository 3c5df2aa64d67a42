//! Chat sessions: the list (by config and status) and starting a new one from a config.

use leptos::prelude::*;
use leptos_router::{
    NavigateOptions,
    components::A,
    hooks::{use_navigate, use_query_map},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    api::gql,
    app::{set_title, url},
    components::{
        pager::{Cursor, Pager},
        status::{ErrorBanner, Loader},
    },
    error::ConsoleError,
    model::{Connection, SessionSummary, short_time},
};

const PAGE_SIZE: i64 = 20;

const SESSIONS_QUERY: &str =
    "query Sessions($first: Int, $after: String, $configId: ID, $status: SessionStatus) {
  sessions(first: $first, after: $after, configId: $configId, status: $status) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id configId tenant provider model status messageCount updatedAt }
  }
}";

const CONFIG_CHOICES_QUERY: &str =
    "query ConfigChoices { configs(first: 100) { nodes { id name tenant } } }";

const CREATE_SESSION: &str =
    "mutation CreateSession($input: CreateSessionInput!) { createSession(input: $input) { id } }";

#[derive(Deserialize)]
struct SessionsData {
    sessions: Connection<SessionSummary>,
}

#[derive(Clone, Deserialize)]
struct Choice {
    id: String,
    name: String,
    tenant: String,
}

#[derive(Deserialize)]
struct Choices {
    nodes: Vec<Choice>,
}

#[derive(Deserialize)]
struct ChoicesData {
    configs: Choices,
}

#[derive(Deserialize)]
struct CreatedId {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateData {
    create_session: CreatedId,
}

#[component]
pub fn SessionList() -> impl IntoView {
    set_title("Sessions");
    let query = use_query_map();
    let preset = query.read_untracked().get("configId").unwrap_or_default();

    let cursor = Cursor::new();
    let config_filter = RwSignal::new(preset.clone());
    let status_filter = RwSignal::new(String::new());
    let config_draft = RwSignal::new(preset.clone());
    let status_draft = RwSignal::new(String::new());

    let sessions = LocalResource::new(move || {
        let config_id = config_filter.get();
        let status = status_filter.get();
        let variables = json!({
            "first": PAGE_SIZE,
            "after": cursor.after(),
            "configId": (!config_id.trim().is_empty()).then(|| config_id.trim().to_owned()),
            "status": (!status.is_empty()).then_some(status),
        });
        async move {
            gql::<SessionsData>(SESSIONS_QUERY, variables)
                .await
                .map(|d| d.sessions)
        }
    });

    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        cursor.reset();
        config_filter.set(config_draft.get_untracked());
        status_filter.set(status_draft.get_untracked());
    };

    view! {
        <section class="page" data-test="sessions-page">
            <h1>"Sessions"</h1>
            <NewSession preset/>
            <h2>"All sessions"</h2>
            <form class="filters" on:submit=apply data-test="session-filters">
                <div class="field">
                    <label for="session-config">"Config ID"</label>
                    <input
                        id="session-config"
                        type="text"
                        data-test="session-config-filter"
                        prop:value=move || config_draft.get()
                        on:input:target=move |ev| config_draft.set(ev.target().value())
                    />
                </div>
                <div class="field">
                    <label for="session-status">"Status"</label>
                    <select
                        id="session-status"
                        data-test="session-status-filter"
                        on:change:target=move |ev| status_draft.set(ev.target().value())
                    >
                        <option value="">"Any"</option>
                        <option value="ACTIVE">"Active"</option>
                        <option value="CLOSED">"Closed"</option>
                        <option value="FAILED">"Failed"</option>
                    </select>
                </div>
                <div class="field actions">
                    <button type="submit" class="primary">"Apply"</button>
                </div>
            </form>
            <Loader>
                {move || Suspend::new(async move {
                    sessions.await.map(|conn| {
                        let shown = conn.nodes.len();
                        let rows = conn.nodes.into_iter().map(|s| {
                            let href = url(format!("/sessions/{}", s.id));
                            let config_href = url(format!("/configs/{}", s.config_id));
                            let status = s.status.as_str();
                            let short_session = short_id(&s.id);
                            let full_id = s.id.clone();
                            let short_config = short_id(&s.config_id);
                            view! {
                                <tr data-test="session-row" data-id=s.id.clone()>
                                    <td data-label="Session"><A href=href attr:data-test="session-link"><code title=full_id>{short_session}</code></A></td>
                                    <td data-label="Config"><A href=config_href><code>{short_config}</code></A></td>
                                    <td data-label="Provider">{s.provider}</td>
                                    <td data-label="Model">{s.model.unwrap_or_else(|| "default".into())}</td>
                                    <td data-label="Status"><span class=format!("status status-{}", status.to_ascii_lowercase())>{status}</span></td>
                                    <td data-label="Messages">{s.message_count}</td>
                                    <td data-label="Tenant">{s.tenant}</td>
                                    <td data-label="Updated">{short_time(&s.updated_at)}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            {(shown == 0).then(|| view! { <p class="empty" data-test="sessions-empty">"No sessions yet."</p> })}
                            <div class="table-wrap">
                                <table class="data" data-test="sessions-table">
                                    <caption class="sr-only">"Sessions"</caption>
                                    <thead>
                                        <tr>
                                            <th scope="col">"Session"</th>
                                            <th scope="col">"Config"</th>
                                            <th scope="col">"Provider"</th>
                                            <th scope="col">"Model"</th>
                                            <th scope="col">"Status"</th>
                                            <th scope="col">"Messages"</th>
                                            <th scope="col">"Tenant"</th>
                                            <th scope="col">"Updated"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                            </div>
                            <Pager cursor page_info=conn.page_info total=conn.total_count shown/>
                        }
                    })
                })}
            </Loader>
        </section>
    }
}

/// The first block of a UUID, enough to tell rows apart (the full id is in the title).
fn short_id(id: &str) -> String {
    id.split('-').next().unwrap_or(id).to_owned()
}

#[component]
fn NewSession(preset: String) -> impl IntoView {
    let navigate = use_navigate();
    let choices = LocalResource::new(|| async {
        gql::<ChoicesData>(CONFIG_CHOICES_QUERY, json!({}))
            .await
            .map(|d| d.configs.nodes)
    });
    let config_id = RwSignal::new(preset.clone());
    let provider = RwSignal::new(String::from("0"));
    let model = RwSignal::new(String::new());

    let create = Action::new_local(move |input: &Value| {
        let variables = json!({ "input": input });
        async move {
            gql::<CreateData>(CREATE_SESSION, variables)
                .await
                .map(|d| d.create_session.id)
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(id)) = create.value().get() {
            navigate(&format!("/sessions/{id}"), NavigateOptions::default());
        }
    });
    let invalid = RwSignal::new(None::<ConsoleError>);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        invalid.set(None);
        let config = config_id.get_untracked();
        if config.is_empty() {
            invalid.set(Some(ConsoleError::Invalid("Choose a config first.".into())));
            return;
        }
        let Ok(index) = provider.get_untracked().trim().parse::<u32>() else {
            invalid.set(Some(ConsoleError::Invalid(
                "The provider index is a whole number (0 for the first).".into(),
            )));
            return;
        };
        let model_value = model.get_untracked().trim().to_owned();
        let mut input = json!({ "configId": config, "provider": index });
        if !model_value.is_empty() {
            input["model"] = json!(model_value);
        }
        create.dispatch(input);
    };

    view! {
        <form class="card new-session" novalidate on:submit=submit data-test="new-session-form">
            <h2>"Start a session"</h2>
            <div class="row">
                <div class="field grow">
                    <label for="new-session-config">"Config"</label>
                    <Transition fallback=|| view! { <select id="new-session-config" disabled><option>"Loading…"</option></select> }>
                        {move || {
                            let preset = preset.clone();
                            Suspend::new(async move { match choices.await {
                                Ok(list) => view! {
                                    <select
                                        id="new-session-config"
                                        data-test="new-session-config"
                                        required
                                        on:change:target=move |ev| config_id.set(ev.target().value())
                                    >
                                        <option value="" selected=preset.is_empty()>"Choose a config…"</option>
                                        {list.into_iter().map(|c| {
                                            let selected = c.id == preset;
                                            view! {
                                                <option value=c.id.clone() selected=selected>
                                                    {format!("{} ({})", c.name, c.tenant)}
                                                </option>
                                            }
                                        }).collect_view()}
                                    </select>
                                }.into_any(),
                                Err(e) => view! { <ErrorBanner error=e/> }.into_any(),
                            } })
                        }}
                    </Transition>
                </div>
                <div class="field small">
                    <label for="new-session-provider">"Provider #"</label>
                    <input
                        id="new-session-provider"
                        type="number"
                        min="0"
                        step="1"
                        inputmode="numeric"
                        data-test="new-session-provider"
                        prop:value=move || provider.get()
                        on:input:target=move |ev| provider.set(ev.target().value())
                    />
                </div>
                <div class="field">
                    <label for="new-session-model">"Model (optional)"</label>
                    <input
                        id="new-session-model"
                        type="text"
                        data-test="new-session-model"
                        placeholder="the config's default"
                        prop:value=move || model.get()
                        on:input:target=move |ev| model.set(ev.target().value())
                    />
                </div>
            </div>
            <p class="help">"The provider is the index into the config's " <code>"providers"</code> " list."</p>
            <button type="submit" class="primary" data-test="new-session-submit" disabled=move || create.pending().get()>
                {move || if create.pending().get() { "Starting…" } else { "Start session" }}
            </button>
            {move || invalid.get().map(|e| view! { <ErrorBanner error=e/> })}
            {move || create.value().get().and_then(Result::err).map(|e| view! { <ErrorBanner error=e/> })}
        </form>
    }
}
