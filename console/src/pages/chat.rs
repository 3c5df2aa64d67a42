//! A chat session: its history, a composer whose replies stream in over the
//! `streamMessage` subscription, and closing the session.

use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_params_map};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{SubEvent, Subscription, gql, subscribe},
    app::{set_title, url},
    components::status::{ErrorBanner, Loader},
    error::ConsoleError,
    model::{Message, MessageChunk, Session, SessionStatus, short_time},
};

const SESSION_QUERY: &str = "query Session($id: ID!) {
  session(id: $id) {
    id configId tenant provider model status
    messages { id role content createdAt }
  }
}";

const CLOSE_MUTATION: &str =
    "mutation CloseSession($id: ID!) { closeSession(id: $id) { id status } }";

const STREAM_SUBSCRIPTION: &str = "subscription StreamMessage($sessionId: ID!, $content: String!) {
  streamMessage(sessionId: $sessionId, content: $content) {
    delta done message { id role content createdAt }
  }
}";

#[derive(Deserialize)]
struct SessionData {
    session: Option<Session>,
}

#[derive(Deserialize)]
struct Closed {
    status: SessionStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloseData {
    close_session: Closed,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamData {
    stream_message: MessageChunk,
}

#[component]
pub fn Chat() -> impl IntoView {
    set_title("Session");
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let session = LocalResource::new(move || {
        let id = id.get();
        async move {
            let data: SessionData = gql(SESSION_QUERY, json!({ "id": id })).await?;
            data.session.ok_or_else(|| {
                ConsoleError::NotFound(format!(
                    "No session with id {id} (or it is not visible to you)."
                ))
            })
        }
    });
    view! {
        <section class="page chat-page" data-test="chat-page">
            <p class="breadcrumb"><A href=url("/sessions")>"← Sessions"</A></p>
            <Loader>
                {move || Suspend::new(async move { session.await.map(|s| view! { <ChatRoom session=s/> }) })}
            </Loader>
        </section>
    }
}

#[component]
fn ChatRoom(session: Session) -> impl IntoView {
    let session_id = session.id.clone();
    let messages = RwSignal::new(session.messages);
    let status = RwSignal::new(session.status);
    let draft = RwSignal::new(String::new());
    // the assistant's reply while it streams in
    let streaming = RwSignal::new(None::<String>);
    let stream_error = RwSignal::new(None::<ConsoleError>);
    // the live subscription; replaced by the next send, dropped (socket closed) with the page
    let live = StoredValue::new_local(None::<Subscription>);
    let list_ref = NodeRef::<leptos::html::Ol>::new();
    let local_ids = StoredValue::new(0_u32);

    // keep the newest message in view
    Effect::new(move |_| {
        messages.track();
        streaming.track();
        if let Some(list) = list_ref.get() {
            list.set_scroll_top(list.scroll_height());
        }
    });

    let send = {
        let session_id = session_id.clone();
        move || {
            let content = draft.get_untracked().trim().to_owned();
            if content.is_empty() || streaming.with_untracked(Option::is_some) {
                return;
            }
            stream_error.set(None);
            local_ids.update_value(|n| *n += 1);
            messages.update(|m| {
                m.push(Message {
                    id: format!("local-{}", local_ids.get_value()),
                    role: "user".into(),
                    content: content.clone(),
                    created_at: String::new(),
                })
            });
            draft.set(String::new());
            streaming.set(Some(String::new()));

            let variables = json!({ "sessionId": session_id, "content": content });
            let started = subscribe(STREAM_SUBSCRIPTION, variables, move |event| match event {
                SubEvent::Next(data) => match serde_json::from_value::<StreamData>(data) {
                    Ok(StreamData {
                        stream_message: chunk,
                    }) => {
                        streaming.try_update(|s| {
                            if let Some(s) = s {
                                s.push_str(&chunk.delta);
                            }
                        });
                        if chunk.done {
                            finish(messages, streaming, chunk.message);
                        }
                    }
                    Err(e) => {
                        stream_error.try_set(Some(ConsoleError::Network(format!(
                            "Unexpected chunk: {e}"
                        ))));
                        finish(messages, streaming, None);
                    }
                },
                SubEvent::Error(error) => {
                    stream_error.try_set(Some(error));
                    finish(messages, streaming, None);
                }
                SubEvent::Complete => finish(messages, streaming, None),
            });
            match started {
                Ok(subscription) => live.set_value(Some(subscription)),
                Err(error) => {
                    stream_error.set(Some(error));
                    streaming.set(None);
                }
            }
        }
    };

    let submit = {
        let send = send.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            send();
        }
    };
    // Enter sends, Shift+Enter adds a line (as in most chat tools)
    let keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            send();
        }
    };

    let close = Action::new_local(move |id: &String| {
        let variables = json!({ "id": id });
        async move {
            gql::<CloseData>(CLOSE_MUTATION, variables)
                .await
                .map(|d| d.close_session.status)
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(new_status)) = close.value().get() {
            status.set(new_status);
        }
    });

    let active = move || status.get() == SessionStatus::Active;
    let config_href = url(format!("/configs/{}", session.config_id));
    let close_id = session_id.clone();
    set_title(&format!(
        "Session {}",
        session_id.split('-').next().unwrap_or_default()
    ));

    view! {
        <div class="page-head">
            <h1>"Chat"</h1>
            <div class="actions">
                <span class=move || format!("status status-{}", status.get().as_str().to_ascii_lowercase()) data-test="session-status">
                    {move || status.get().as_str()}
                </span>
                <Show when=active>
                    <button
                        type="button"
                        data-test="close-session"
                        disabled=move || close.pending().get() || streaming.with(Option::is_some)
                        on:click={
                            let close_id = close_id.clone();
                            move |_| { close.dispatch(close_id.clone()); }
                        }
                    >
                        "Close session"
                    </button>
                </Show>
            </div>
        </div>
        <dl class="meta">
            <div><dt>"Session"</dt><dd><code data-test="session-id">{session_id.clone()}</code></dd></div>
            <div><dt>"Config"</dt><dd><A href=config_href><code>{session.config_id.clone()}</code></A></dd></div>
            <div><dt>"Provider"</dt><dd>{session.provider.clone()}</dd></div>
            <div><dt>"Model"</dt><dd>{session.model.clone().unwrap_or_else(|| "default".into())}</dd></div>
            <div><dt>"Tenant"</dt><dd>{session.tenant.clone()}</dd></div>
        </dl>
        {move || close.value().get().and_then(Result::err).map(|e| view! { <ErrorBanner error=e/> })}
        <ol class="messages" node_ref=list_ref aria-live="polite" aria-label="Messages" tabindex="0" data-test="messages">
            <For each=move || messages.get() key=|m| m.id.clone() let(m)>
                <li class=format!("msg msg-{}", m.role.to_ascii_lowercase()) data-test="message" data-role=m.role.clone()>
                    <span class="msg-role">{m.role.clone()}</span>
                    <div class="msg-content">{m.content.clone()}</div>
                    {(!m.created_at.is_empty()).then(|| view! { <time class="msg-time" datetime=m.created_at.clone()>{short_time(&m.created_at)}</time> })}
                </li>
            </For>
            {move || streaming.get().map(|text| view! {
                <li class="msg msg-assistant streaming" data-test="streaming" aria-busy="true">
                    <span class="msg-role">"assistant"</span>
                    <div class="msg-content">{text}<span class="caret" aria-hidden="true">"▍"</span></div>
                </li>
            })}
            {move || messages.with(Vec::is_empty).then(|| view! { <li class="empty">"No messages yet: say hello."</li> })}
        </ol>
        {move || stream_error.get().map(|e| view! { <ErrorBanner error=e/> })}
        <Show
            when=active
            fallback=|| view! { <p class="notice" data-test="session-closed">"This session is closed: start a new one to keep chatting."</p> }
        >
            <form class="composer" on:submit=submit.clone() data-test="composer">
                <label for="composer-input" class="sr-only">"Message"</label>
                <textarea
                    id="composer-input"
                    rows="3"
                    data-test="composer-input"
                    placeholder="Write a message (Enter sends, Shift+Enter for a new line)"
                    prop:value=move || draft.get()
                    on:input:target=move |ev| draft.set(ev.target().value())
                    on:keydown=keydown.clone()
                ></textarea>
                <button type="submit" class="primary" data-test="send" disabled=move || streaming.with(Option::is_some)>
                    {move || if streaming.with(Option::is_some) { "Replying…" } else { "Send" }}
                </button>
            </form>
        </Show>
    }
}

/// Ends the streamed reply: the stored message if the server sent it, else what arrived.
fn finish(
    messages: RwSignal<Vec<Message>>,
    streaming: RwSignal<Option<String>>,
    stored: Option<Message>,
) {
    let partial = streaming.try_update(Option::take).flatten();
    let message = match (stored, partial) {
        (Some(message), _) => Some(message),
        (None, Some(text)) if !text.is_empty() => Some(Message {
            id: format!("partial-{}", js_sys::Date::now()),
            role: "assistant".into(),
            content: text,
            created_at: String::new(),
        }),
        _ => None,
    };
    if let Some(message) = message {
        messages.try_update(|m| m.push(message));
    }
}
