//! The audit log (ADMIN only): every decrypt, write, session, token and denial, newest
//! first, filtered by config, action and actor.

use leptos::prelude::*;
use leptos_router::components::A;
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::gql,
    app::{set_title, url},
    components::{
        pager::{Cursor, Pager},
        status::Loader,
    },
    model::{AuditEvent, Connection, short_time},
};

const PAGE_SIZE: i64 = 50;

const AUDIT_QUERY: &str =
    "query Audit($first: Int, $after: String, $configId: ID, $action: String, $actor: String) {
  auditEvents(first: $first, after: $after, configId: $configId, action: $action, actor: $actor) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id at action actor tenant configId success requestId clientIp }
  }
}";

/// The actions the contract names, for the filter's choices.
const ACTIONS: [&str; 10] = [
    "config.decrypt",
    "config.create",
    "config.update",
    "config.delete",
    "session.create",
    "token.create",
    "token.revoke",
    "key.rotate",
    "key.export",
    "auth.denied",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditData {
    audit_events: Connection<AuditEvent>,
}

fn non_empty(s: String) -> Option<String> {
    let s = s.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[derive(Clone, Default, PartialEq)]
struct Filters {
    config_id: String,
    action: String,
    actor: String,
}

#[component]
pub fn AuditLog() -> impl IntoView {
    set_title("Audit log");
    let cursor = Cursor::new();
    let applied = RwSignal::new(Filters::default());
    let config_draft = RwSignal::new(String::new());
    let action_draft = RwSignal::new(String::new());
    let actor_draft = RwSignal::new(String::new());

    let events = LocalResource::new(move || {
        let f = applied.get();
        let variables = json!({
            "first": PAGE_SIZE,
            "after": cursor.after(),
            "configId": non_empty(f.config_id),
            "action": non_empty(f.action),
            "actor": non_empty(f.actor),
        });
        async move {
            gql::<AuditData>(AUDIT_QUERY, variables)
                .await
                .map(|d| d.audit_events)
        }
    });

    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        cursor.reset();
        applied.set(Filters {
            config_id: config_draft.get_untracked(),
            action: action_draft.get_untracked(),
            actor: actor_draft.get_untracked(),
        });
    };

    view! {
        <section class="page" data-test="audit-page">
            <div class="page-head">
                <h1>"Audit log"</h1>
                <button type="button" data-test="audit-refresh" on:click=move |_| events.refetch()>"Refresh"</button>
            </div>
            <form class="filters" on:submit=apply data-test="audit-filters">
                <div class="field">
                    <label for="audit-config">"Config ID"</label>
                    <input
                        id="audit-config"
                        type="text"
                        data-test="audit-config-filter"
                        prop:value=move || config_draft.get()
                        on:input:target=move |ev| config_draft.set(ev.target().value())
                    />
                </div>
                <div class="field">
                    <label for="audit-action">"Action"</label>
                    <select
                        id="audit-action"
                        data-test="audit-action-filter"
                        on:change:target=move |ev| action_draft.set(ev.target().value())
                    >
                        <option value="">"Any"</option>
                        {ACTIONS.iter().map(|a| view! { <option value=*a>{*a}</option> }).collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="audit-actor">"Actor"</label>
                    <input
                        id="audit-actor"
                        type="text"
                        data-test="audit-actor-filter"
                        placeholder="token name"
                        prop:value=move || actor_draft.get()
                        on:input:target=move |ev| actor_draft.set(ev.target().value())
                    />
                </div>
                <div class="field actions">
                    <button type="submit" class="primary" data-test="audit-filter-apply">"Apply"</button>
                </div>
            </form>
            <Loader>
                {move || Suspend::new(async move {
                    events.await.map(|conn| {
                        let shown = conn.nodes.len();
                        let rows = conn.nodes.into_iter().map(|e| {
                            let outcome = if e.success { "ok" } else { "failed" };
                            let config = e.config_id.clone().map(|id| {
                                let href = url(format!("/configs/{id}"));
                                let short = id.split('-').next().unwrap_or_default().to_owned();
                                view! { <A href=href attr:title=id><code>{short}</code></A> }
                            });
                            view! {
                                <tr data-test="audit-row" data-action=e.action.clone() class:failed=!e.success>
                                    <td data-label="At"><time datetime=e.at.clone()>{short_time(&e.at)}</time></td>
                                    <td data-label="Action"><code>{e.action.clone()}</code></td>
                                    <td data-label="Actor">{e.actor.clone()}</td>
                                    <td data-label="Tenant">{e.tenant.clone().unwrap_or_default()}</td>
                                    <td data-label="Config">{config}</td>
                                    <td data-label="Success">
                                        <span class=format!("outcome outcome-{outcome}") data-test="audit-success">{outcome}</span>
                                    </td>
                                    <td data-label="Request"><code class="small">{e.request_id.clone().unwrap_or_default()}</code></td>
                                    <td data-label="Client IP">{e.client_ip.clone().unwrap_or_default()}</td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            {(shown == 0).then(|| view! { <p class="empty" data-test="audit-empty">"No events match."</p> })}
                            <div class="table-wrap">
                                <table class="data" data-test="audit-table">
                                    <caption class="sr-only">"Audit events"</caption>
                                    <thead>
                                        <tr>
                                            <th scope="col">"At (UTC)"</th>
                                            <th scope="col">"Action"</th>
                                            <th scope="col">"Actor"</th>
                                            <th scope="col">"Tenant"</th>
                                            <th scope="col">"Config"</th>
                                            <th scope="col">"Success"</th>
                                            <th scope="col">"Request ID"</th>
                                            <th scope="col">"Client IP"</th>
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
