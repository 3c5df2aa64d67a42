//! A "Copy" button for a value shown once (a new API token).

use leptos::{prelude::*, task::spawn_local};
use wasm_bindgen_futures::JsFuture;

#[component]
pub fn CopyButton(value: String, #[prop(default = "copy")] test: &'static str) -> impl IntoView {
    let status = RwSignal::new(None::<&'static str>);
    let copy = move |_| {
        let value = value.clone();
        spawn_local(async move {
            let Some(window) = web_sys::window() else {
                return;
            };
            let promise = window.navigator().clipboard().write_text(&value);
            let outcome = match JsFuture::from(promise).await {
                Ok(_) => "Copied",
                Err(_) => "Copy failed: select the text and copy it by hand",
            };
            status.try_set(Some(outcome));
        });
    };
    view! {
        <button type="button" data-test=test on:click=copy>"Copy"</button>
        <span class="copy-status" role="status" aria-live="polite">{move || status.get()}</span>
    }
}
