//! The configs list: search, tag filter and cursor pagination.

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
    model::{ConfigSummary, Connection, short_time},
};

const PAGE_SIZE: i64 = 20;

const CONFIGS_QUERY: &str =
    "query Configs($first: Int, $after: String, $search: String, $tag: String) {
  configs(first: $first, after: $after, search: $search, tag: $tag) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id name description tenant tags version updatedAt }
  }
}";

#[derive(Deserialize)]
struct ConfigsData {
    configs: Connection<ConfigSummary>,
}

fn non_empty(s: String) -> Option<String> {
    let s = s.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[component]
pub fn ConfigList() -> impl IntoView {
    set_title("Configs");
    let cursor = Cursor::new();
    // the applied filters, and the drafts in the form
    let search = RwSignal::new(String::new());
    let tag = RwSignal::new(String::new());
    let search_draft = RwSignal::new(String::new());
    let tag_draft = RwSignal::new(String::new());

    let configs = LocalResource::new(move || {
        let variables = json!({
            "first": PAGE_SIZE,
            "after": cursor.after(),
            "search": non_empty(search.get()),
            "tag": non_empty(tag.get()),
        });
        async move {
            gql::<ConfigsData>(CONFIGS_QUERY, variables)
                .await
                .map(|d| d.configs)
        }
    });

    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        cursor.reset();
        search.set(search_draft.get_untracked());
        tag.set(tag_draft.get_untracked());
    };
    let filter_by_tag = move |t: String| {
        cursor.reset();
        tag_draft.set(t.clone());
        tag.set(t);
    };
    let clear = move |_| {
        cursor.reset();
        search_draft.set(String::new());
        tag_draft.set(String::new());
        search.set(String::new());
        tag.set(String::new());
    };

    view! {
        <section class="page" data-test="configs-page">
            <div class="page-head">
                <h1>"Configs"</h1>
                <A href=url("/configs/new") attr:class="button primary" attr:data-test="new-config">"New config"</A>
            </div>
            <form class="filters" role="search" on:submit=apply data-test="config-filters">
                <div class="field">
                    <label for="config-search">"Search"</label>
                    <input
                        id="config-search"
                        type="search"
                        data-test="config-search"
                        placeholder="name or description"
                        prop:value=move || search_draft.get()
                        on:input:target=move |ev| search_draft.set(ev.target().value())
                    />
                </div>
                <div class="field">
                    <label for="config-tag">"Tag"</label>
                    <input
                        id="config-tag"
                        type="text"
                        data-test="config-tag"
                        placeholder="exact tag"
                        prop:value=move || tag_draft.get()
                        on:input:target=move |ev| tag_draft.set(ev.target().value())
                    />
                </div>
                <div class="field actions">
                    <button type="submit" class="primary" data-test="config-filter-apply">"Apply"</button>
                    <button type="button" on:click=clear data-test="config-filter-clear">"Clear"</button>
                </div>
            </form>
            <Loader>
                {move || Suspend::new(async move {
                    configs.await.map(|conn| {
                        let shown = conn.nodes.len();
                        let rows = conn.nodes.into_iter().map(|c| {
                            let href = url(format!("/configs/{}", c.id));
                            let tags = c.tags.into_iter().map(|t| {
                                let label = format!("Show configs tagged {t}");
                                view! {
                                    <li>
                                        <button
                                            type="button"
                                            class="tag"
                                            aria-label=label
                                            data-test="tag-chip"
                                            on:click={
                                                let t = t.clone();
                                                move |_| filter_by_tag(t.clone())
                                            }
                                        >
                                            {t.clone()}
                                        </button>
                                    </li>
                                }
                            }).collect_view();
                            view! {
                                <tr data-test="config-row" data-id=c.id.clone()>
                                    <td data-label="Name">
                                        <A href=href attr:data-test="config-link">{c.name}</A>
                                        <div class="muted small">{c.description.unwrap_or_default()}</div>
                                    </td>
                                    <td data-label="Tenant">{c.tenant}</td>
                                    <td data-label="Tags"><ul class="tags">{tags}</ul></td>
                                    <td data-label="Version">{c.version}</td>
                                    <td data-label="Updated"><time datetime=c.updated_at.clone()>{short_time(&c.updated_at)}</time></td>
                                </tr>
                            }
                        }).collect_view();
                        view! {
                            <Show when=move || { shown == 0 }>
                                <p class="empty" data-test="configs-empty">"No configs match. "
                                    <A href=url("/configs/new")>"Create one"</A> "."
                                </p>
                            </Show>
                            <div class="table-wrap">
                                <table class="data" data-test="configs-table">
                                    <caption class="sr-only">"Configs"</caption>
                                    <thead>
                                        <tr>
                                            <th scope="col">"Name"</th>
                                            <th scope="col">"Tenant"</th>
                                            <th scope="col">"Tags"</th>
                                            <th scope="col">"Version"</th>
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
