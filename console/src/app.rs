//! The router: `/console` is the base, every page but sign-in needs a token, and the
//! audit log and API tokens need an ADMIN one.

use leptos::prelude::*;
use leptos_router::{
    components::{A, ProtectedRoute, Redirect, Route, Router, Routes},
    path,
};

use crate::{
    auth::{Auth, use_auth},
    components::{nav::Nav, status::Loading},
    pages::{
        audit::AuditLog,
        chat::Chat,
        config_detail::ConfigDetail,
        config_form::{ConfigEdit, ConfigNew},
        configs::ConfigList,
        sessions::SessionList,
        signin::SignIn,
        tokens::Tokens,
    },
};

/// Where the server serves the console; the router strips it from every path.
pub const BASE: &str = "/console";

#[component]
pub fn App() -> impl IntoView {
    let auth = Auth::provide();
    let signed_in = move || auth.signed_in();
    let admin = move || auth.admin();

    view! {
        <Router base=BASE>
            <Nav/>
            <main id="main" tabindex="-1">
                <Routes fallback=NotFound>
                    <Route path=path!("/signin") view=SignIn/>
                    <ProtectedRoute
                        path=path!("/")
                        condition=signed_in
                        redirect_path=to_sign_in
                        fallback=checking
                        view=|| view! { <Redirect path="/configs"/> }
                    />
                    <ProtectedRoute path=path!("/configs") condition=signed_in redirect_path=to_sign_in fallback=checking view=ConfigList/>
                    <ProtectedRoute path=path!("/configs/new") condition=signed_in redirect_path=to_sign_in fallback=checking view=ConfigNew/>
                    <ProtectedRoute path=path!("/configs/:id") condition=signed_in redirect_path=to_sign_in fallback=checking view=ConfigDetail/>
                    <ProtectedRoute path=path!("/configs/:id/edit") condition=signed_in redirect_path=to_sign_in fallback=checking view=ConfigEdit/>
                    <ProtectedRoute path=path!("/sessions") condition=signed_in redirect_path=to_sign_in fallback=checking view=SessionList/>
                    <ProtectedRoute path=path!("/sessions/:id") condition=signed_in redirect_path=to_sign_in fallback=checking view=Chat/>
                    <ProtectedRoute path=path!("/audit") condition=admin redirect_path=to_home fallback=checking view=AuditLog/>
                    <ProtectedRoute path=path!("/tokens") condition=admin redirect_path=to_home fallback=checking view=Tokens/>
                </Routes>
            </main>
        </Router>
    }
}

/// Shown while the token kept in this tab is being checked.
fn checking() -> impl IntoView {
    view! { <Loading label="Checking your token…"/> }
}

/// The sign-in page, remembering where the user was going.
fn to_sign_in() -> String {
    let here = web_sys::window()
        .and_then(|w| {
            let location = w.location();
            Some(format!(
                "{}{}",
                location.pathname().ok()?,
                location.search().ok()?
            ))
        })
        .unwrap_or_default();
    let here = here.strip_prefix(BASE).unwrap_or("/");
    if here.is_empty() || here == "/" || here.starts_with("/signin") {
        "/signin".into()
    } else {
        format!(
            "/signin?next={}",
            String::from(js_sys::encode_uri_component(here))
        )
    }
}

/// Signed in but not an ADMIN (or not signed in at all: `/configs` sends on to sign-in).
fn to_home() -> &'static str {
    "/configs"
}

/// An in-app path as an `href`: `<A>` does not add the router base to absolute paths,
/// so links carry it themselves (`navigate` adds it on its own).
pub fn url(path: impl AsRef<str>) -> String {
    format!("{BASE}{}", path.as_ref())
}

/// Sets the tab title: "Configs · Keyward".
pub fn set_title(title: &str) {
    if let Some(document) = web_sys::window().and_then(|w| w.document()) {
        document.set_title(&format!("{title} · Keyward"));
    }
}

#[component]
fn NotFound() -> impl IntoView {
    set_title("Not found");
    let auth = use_auth();
    view! {
        <section class="page" data-test="not-found">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            {move || if auth.principal.with(Option::is_some) {
                view! { <A href=url("/configs")>"Back to configs"</A> }.into_any()
            } else {
                view! { <A href=url("/signin")>"Sign in"</A> }.into_any()
            }}
        </section>
    }
}
