//! Loading and error states: every request shows one or the other while it is not done.

use leptos::{error::Errors, prelude::*};
use leptos_router::components::A;

use crate::{app::url, error::ConsoleError};

/// A polite "loading" line for `Transition` fallbacks and pending buttons.
#[component]
pub fn Loading(#[prop(optional, into)] label: Option<String>) -> impl IntoView {
    let label = label.unwrap_or_else(|| "Loading…".into());
    view! {
        <p class="loading" role="status" aria-live="polite" data-test="loading">
            <span class="spinner" aria-hidden="true"></span>
            {label}
        </p>
    }
}

/// One error, with its code, announced to screen readers.
#[component]
pub fn ErrorBanner(
    error: ConsoleError,
    /// Leave out the "Sign in again" link (on the sign-in page itself).
    #[prop(optional)]
    no_sign_in_link: bool,
) -> impl IntoView {
    let signed_out = matches!(error, ConsoleError::Unauthenticated(_)) && !no_sign_in_link;
    view! {
        <div class="error-banner" role="alert" data-test="error" data-code=error.code().to_owned()>
            <strong>{error.title()}</strong>
            <span class="code">{error.code().to_owned()}</span>
            <p>{error.message().to_owned()}</p>
            {signed_out.then(|| view! { <A href=url("/signin")>"Sign in again"</A> })}
        </div>
    }
}

/// The `ErrorBoundary` fallback: each error as a banner.
pub fn error_fallback(errors: ArcRwSignal<Errors>) -> impl IntoView {
    move || {
        errors
            .read()
            .iter()
            .map(|(_, error)| match error.downcast_ref::<ConsoleError>() {
                Some(error) => view! { <ErrorBanner error=error.clone()/> }.into_any(),
                None => view! { <ErrorBanner error=ConsoleError::Server {
                    code: "INTERNAL".into(),
                    message: error.to_string(),
                }/> }
                .into_any(),
            })
            .collect_view()
    }
}

/// `Transition` + `ErrorBoundary` around async content: keeps the previous content while
/// reloading, shows a spinner the first time, and the errors if it failed.
#[component]
pub fn Loader(children: Children) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <Loading/> }>
            <ErrorBoundary fallback=error_fallback>{children()}</ErrorBoundary>
        </Transition>
    }
}

/// An inline error under a form field (or nothing).
#[component]
pub fn FieldError(#[prop(into)] error: Signal<Option<String>>, id: &'static str) -> impl IntoView {
    move || {
        error.get().map(|message| {
            view! {
                <p class="field-error" id=id role="alert" data-test=id>{message}</p>
            }
        })
    }
}
