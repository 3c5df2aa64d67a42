//! A two-step destructive button: the first press asks, the second does it. No
//! `window.confirm`, so it works the same for keyboards, screen readers and tests.

use leptos::prelude::*;

#[component]
pub fn ConfirmButton(
    /// The label of the first button, e.g. "Delete".
    label: &'static str,
    /// The question shown once pressed, e.g. "Delete this config?".
    question: String,
    /// Runs on confirmation.
    #[prop(into)]
    on_confirm: Callback<()>,
    /// `data-test` prefix: `{test}`, `{test}-confirm`, `{test}-cancel`.
    test: &'static str,
    #[prop(into, optional)] pending: Signal<bool>,
) -> impl IntoView {
    let asking = RwSignal::new(false);
    let confirm_ref = NodeRef::<leptos::html::Button>::new();
    // move focus to the confirm button so a keyboard user lands on the question
    Effect::new(move |_| {
        if asking.get()
            && let Some(button) = confirm_ref.get()
        {
            let _ = button.focus();
        }
    });
    view! {
        <Show
            when=move || asking.get()
            fallback=move || {
                view! {
                    <button type="button" class="danger" data-test=test on:click=move |_| asking.set(true)>
                        {label}
                    </button>
                }
            }
        >
            <span class="confirm" role="group" aria-label=question.clone()>
                <span class="confirm-question">{question.clone()}</span>
                <button
                    type="button"
                    class="danger"
                    node_ref=confirm_ref
                    data-test=format!("{test}-confirm")
                    disabled=move || pending.get()
                    on:click=move |_| on_confirm.run(())
                >
                    {move || {
                        if pending.get() { "Working…".to_owned() } else { format!("Yes, {}", label.to_lowercase()) }
                    }}
                </button>
                <button type="button" data-test=format!("{test}-cancel") on:click=move |_| asking.set(false)>
                    "Cancel"
                </button>
            </span>
        </Show>
    }
}
