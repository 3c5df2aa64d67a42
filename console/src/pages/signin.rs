//! Sign in with an API token. The token is checked with `me` before it is kept.

use leptos::prelude::*;
use leptos_router::{
    NavigateOptions,
    components::A,
    hooks::{use_navigate, use_query_map},
};

use crate::{
    app::{set_title, url},
    auth::use_auth,
    components::status::ErrorBanner,
    error::ConsoleError,
};

#[component]
pub fn SignIn() -> impl IntoView {
    set_title("Sign in");
    let auth = use_auth();
    let query = use_query_map();
    let navigate = use_navigate();
    let token = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ConsoleError>);

    // only same-app paths: never navigate to another origin from a query parameter
    let next = move || {
        query
            .read_untracked()
            .get("next")
            .filter(|n| n.starts_with('/') && !n.starts_with("//"))
            .unwrap_or_else(|| "/configs".into())
    };

    let sign_in = Action::new_local(move |candidate: &String| {
        let candidate = candidate.clone();
        async move { auth.sign_in(&candidate).await }
    });
    Effect::new(move |_| match sign_in.value().get() {
        Some(Ok(_)) => {
            token.set(String::new());
            navigate(
                &next(),
                NavigateOptions {
                    replace: true,
                    ..Default::default()
                },
            );
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        error.set(None);
        auth.notice.set(None);
        sign_in.dispatch(token.get_untracked());
    };

    view! {
        <section class="page narrow" data-test="signin-page">
            <h1>"Sign in"</h1>
            {move || auth.principal.get().map(|p| view! {
                <p class="notice" data-test="already-signed-in">
                    "You are signed in as " <strong>{p.name}</strong> ". "
                    <A href=url("/configs")>"Go to configs"</A>
                </p>
            })}
            {move || auth.notice.get().map(|n| view! { <p class="notice" role="status" data-test="signin-notice">{n}</p> })}
            <form class="card" novalidate on:submit=submit data-test="signin-form">
                <label for="token">"API token"</label>
                <input
                    id="token"
                    name="token"
                    type="password"
                    autocomplete="off"
                    spellcheck="false"
                    required
                    data-test="token-input"
                    aria-describedby="token-help"
                    prop:value=move || token.get()
                    on:input:target=move |ev| token.set(ev.target().value())
                />
                <p id="token-help" class="help">
                    "An ADMIN or MEMBER token (from " <code>"keyward token create"</code>
                    " or an ADMIN's API tokens page). It stays in this tab only and is forgotten when you sign out or close it."
                </p>
                <button type="submit" class="primary" data-test="signin-submit" disabled=move || sign_in.pending().get()>
                    {move || if sign_in.pending().get() { "Checking…" } else { "Sign in" }}
                </button>
            </form>
            {move || error.get().map(|e| {
                let bad_token = matches!(e, ConsoleError::Unauthenticated(_));
                view! {
                    <div data-test="signin-error">
                        {bad_token.then(|| view! {
                            <p class="error-lead">"That token was not accepted: it is unknown, revoked or mistyped."</p>
                        })}
                        <ErrorBanner error=e no_sign_in_link=true/>
                    </div>
                }
            })}
            <p class="muted">
                "Prefer raw GraphQL? Open " <a href="/graphql" rel="external">"GraphiQL"</a> "."
            </p>
        </section>
    }
}
