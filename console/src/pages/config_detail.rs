//! One config: its metadata, its document with secrets masked (and, for ADMINs, the
//! audited reveal), and delete with confirmation.

use leptos::prelude::*;
use leptos_router::{
    NavigateOptions,
    components::A,
    hooks::{use_navigate, use_params_map},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::gql,
    app::{set_title, url},
    components::{
        confirm::ConfirmButton,
        reveal::SecretsPanel,
        status::{ErrorBanner, Loader},
    },
    error::ConsoleError,
    model::{Config, short_time},
};

pub const CONFIG_QUERY: &str = "query Config($id: ID!) {
  config(id: $id) {
    id name description tenant tags configData sensitivePaths version createdAt updatedAt
  }
}";

const DELETE_MUTATION: &str = "mutation DeleteConfig($id: ID!) { deleteConfig(id: $id) }";

#[derive(Deserialize)]
pub struct ConfigData {
    pub config: Option<Config>,
}

/// Loads one config (stored form); a `null` answer is "not found" (missing, or another
/// tenant's: the server does not say which, and neither do we).
pub async fn load_config(id: String) -> Result<Config, ConsoleError> {
    let data: ConfigData = gql(CONFIG_QUERY, json!({ "id": id })).await?;
    data.config.ok_or_else(|| {
        ConsoleError::NotFound(format!(
            "No config with id {id} (or it is not visible to you)."
        ))
    })
}

#[derive(Deserialize)]
struct DeleteData {
    #[serde(rename = "deleteConfig")]
    delete_config: bool,
}

#[component]
pub fn ConfigDetail() -> impl IntoView {
    set_title("Config");
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let config = LocalResource::new(move || load_config(id.get()));

    let navigate = use_navigate();
    let delete = Action::new_local(move |id: &String| {
        let variables = json!({ "id": id });
        async move {
            let data: DeleteData = gql(DELETE_MUTATION, variables).await?;
            if data.delete_config {
                Ok(())
            } else {
                Err(ConsoleError::NotFound(
                    "The config was already gone.".into(),
                ))
            }
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = delete.value().get() {
            navigate(
                "/configs",
                NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            );
        }
    });

    view! {
        <section class="page" data-test="config-page">
            <p class="breadcrumb"><A href=url("/configs")>"← Configs"</A></p>
            <Loader>
                {move || Suspend::new(async move {
                    config.await.map(|c| {
                        set_title(&c.name);
                        let edit = url(format!("/configs/{}/edit", c.id));
                        let start = url(format!("/sessions?configId={}", c.id));
                        let question = format!("Delete {}? This cannot be undone.", c.name);
                        let delete_id = c.id.clone();
                        let tags = c.tags.iter().map(|t| view! { <li class="tag">{t.clone()}</li> }).collect_view();
                        view! {
                            <div class="page-head">
                                <h1 data-test="config-name">{c.name.clone()}</h1>
                                <div class="actions">
                                    <A href=edit attr:class="button" attr:data-test="edit-config">"Edit"</A>
                                    <A href=start attr:class="button" attr:data-test="start-session">"Start a session"</A>
                                    <ConfirmButton
                                        label="Delete"
                                        question=question
                                        test="delete-config"
                                        pending=delete.pending()
                                        on_confirm=move |_| { delete.dispatch(delete_id.clone()); }
                                    />
                                </div>
                            </div>
                            {move || delete.value().get().and_then(Result::err).map(|e| view! { <ErrorBanner error=e/> })}
                            <p class="description">{c.description.clone().unwrap_or_default()}</p>
                            <dl class="meta">
                                <div><dt>"ID"</dt><dd><code data-test="config-id">{c.id.clone()}</code></dd></div>
                                <div><dt>"Tenant"</dt><dd data-test="config-tenant">{c.tenant.clone()}</dd></div>
                                <div><dt>"Version"</dt><dd data-test="config-version">{c.version}</dd></div>
                                <div><dt>"Created"</dt><dd>{short_time(&c.created_at)}</dd></div>
                                <div><dt>"Updated"</dt><dd>{short_time(&c.updated_at)}</dd></div>
                                <div><dt>"Tags"</dt><dd><ul class="tags">{tags}</ul></dd></div>
                            </dl>
                            <SecretsPanel id=c.id config_data=c.config_data sensitive_paths=c.sensitive_paths/>
                        }
                    })
                })}
            </Loader>
        </section>
    }
}
