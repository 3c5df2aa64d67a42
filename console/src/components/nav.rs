//! The top bar: where you can go, who you are, and the way out.

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_navigate};

use crate::{app::url, auth::use_auth};

#[component]
pub fn Nav() -> impl IntoView {
    let auth = use_auth();
    let navigate = use_navigate();
    let sign_out = move |_| {
        auth.sign_out();
        navigate("/signin", Default::default());
    };
    view! {
        <header class="topbar">
            <a class="skip-link" href="#main">"Skip to content"</a>
            <A href=url("/configs") attr:class="brand">"Keyward"</A>
            <Show when=move || auth.principal.with(Option::is_some)>
                <nav class="mainnav" aria-label="Main">
                    <A href=url("/configs") attr:data-test="nav-configs">"Configs"</A>
                    <A href=url("/sessions") attr:data-test="nav-sessions">"Sessions"</A>
                    <Show when=move || auth.is_admin()>
                        <A href=url("/audit") attr:data-test="nav-audit">"Audit log"</A>
                        <A href=url("/tokens") attr:data-test="nav-tokens">"API tokens"</A>
                    </Show>
                    <a href="/graphql" rel="external" data-test="nav-graphiql">"GraphiQL"</a>
                </nav>
            </Show>
            <div class="whoami">
                {move || auth.principal.get().map(|p| {
                    let tenant = p.tenant.clone().unwrap_or_else(|| "all tenants".into());
                    view! {
                        <span data-test="whoami" title="Signed in as">
                            <strong data-test="whoami-name">{p.name}</strong>
                            " "
                            <span class="role" data-test="whoami-role">{p.role.as_str()}</span>
                            " "
                            <span class="tenant" data-test="whoami-tenant">{tenant}</span>
                        </span>
                    }
                })}
                <Show when=move || auth.principal.with(Option::is_some)>
                    <button type="button" class="link-button" data-test="sign-out" on:click=sign_out.clone()>
                        "Sign out"
                    </button>
                </Show>
            </div>
        </header>
    }
}
