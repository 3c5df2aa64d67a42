//! Subscriptions over WebSocket (`graphql-transport-ws`), on async-graphql's protocol
//! machine, with what a credential-bearing socket needs beyond it:
//!
//! - `connection_init` must arrive within a deadline, else close 4408 (the protocol's code):
//!   an idle unauthenticated socket holds nothing for long;
//! - the protocol's close codes where async-graphql has its own: 4403 Forbidden for a
//!   refused token (not 1002), 4401 for a subscribe before the handshake (not 1011), 4400
//!   for a message that is not one of the protocol's (not 1002);
//! - the token is checked again before every `subscribe`, so a token revoked while its
//!   socket is open starts nothing more: the socket closes with 4403.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_graphql::Data;
use async_graphql::http::{WebSocket as ProtocolMachine, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::{HeaderMap, header};
use futures::{SinkExt, StreamExt, future};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::{Principal, RequestMeta};
use crate::error::AppError;
use crate::http::authenticate_bearer;
use crate::schema::KeywardSchema;
use crate::state::AppState;

const BAD_MESSAGE: u16 = 4400;
const UNAUTHORIZED: u16 = 4401;
const FORBIDDEN: u16 = 4403;
const INIT_TIMEOUT: u16 = 4408;

/// Who the socket acts for, once `connection_init` has been accepted.
#[derive(Default)]
struct Session {
    /// The token presented in `connection_init`, to check again.
    bearer: Option<SecretString>,
    /// Set when the socket must close with 4403: the token was refused or revoked.
    forbidden: bool,
}

pub async fn serve(
    socket: WebSocket,
    schema: KeywardSchema,
    protocol: WebSocketProtocols,
    state: AppState,
    peer: IpAddr,
    meta: RequestMeta,
) {
    let init_timeout = state.settings.limits.ws_init_timeout;
    let session = Arc::new(Mutex::new(Session::default()));
    let (mut sink, stream) = socket.split();

    // Client messages, with each `subscribe` held until the token is known still good.
    let input = {
        let (state, session, meta) = (state.clone(), session.clone(), meta.clone());
        stream
            .take_while(|res| future::ready(res.is_ok()))
            .filter_map(|msg| {
                future::ready(match msg {
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => Some(msg.into_data()),
                    _ => None,
                })
            })
            .then(move |data| {
                let (state, session, meta) = (state.clone(), session.clone(), meta.clone());
                async move {
                    let allowed =
                        !is_subscribe(&data) || still_valid(&state, &session, peer, &meta).await;
                    (data, allowed)
                }
            })
            .take_while(|(_, allowed)| future::ready(*allowed))
            .map(|(data, _)| data)
    };

    let on_init = {
        let session = session.clone();
        move |payload: serde_json::Value| async move {
            let bearer = bearer_of(&payload);
            match authenticate_bearer(&state, peer, bearer.as_deref(), &meta).await {
                Ok(principal) => {
                    session.lock().expect("never poisoned").bearer = bearer.map(SecretString::from);
                    let mut data = Data::default();
                    data.insert::<Principal>(principal);
                    data.insert(meta);
                    Ok(data)
                }
                Err(_) => {
                    session.lock().expect("never poisoned").forbidden = true;
                    Err(AppError::Unauthenticated.into())
                }
            }
        }
    };
    let mut output =
        std::pin::pin!(ProtocolMachine::new(schema, input, protocol).on_connection_init(on_init));

    let deadline = tokio::time::sleep(init_timeout);
    tokio::pin!(deadline);
    loop {
        let initialised = session.lock().expect("never poisoned").bearer.is_some();
        let next = tokio::select! {
            next = output.next() => next,
            () = &mut deadline, if !initialised => {
                let _ = sink.send(close(INIT_TIMEOUT, "Connection initialisation timeout")).await;
                return;
            }
        };
        let Some(message) = next else { break };
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => {
                let forbidden = session.lock().expect("never poisoned").forbidden;
                let code = match code {
                    _ if forbidden => FORBIDDEN,
                    1011 if !initialised => UNAUTHORIZED,
                    1002 => BAD_MESSAGE,
                    other => other,
                };
                let _ = sink.send(close(code, &reason)).await;
                return;
            }
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    // The input ended: the client left, or a subscribe came with a revoked token.
    if session.lock().expect("never poisoned").forbidden {
        let _ = sink
            .send(close(FORBIDDEN, "the bearer token is no longer valid"))
            .await;
    }
}

/// The subprotocol the client asked for, if Keyward speaks it (what async-graphql-axum's
/// `GraphQLProtocol` extracts, but keeps private).
pub fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
}

/// A close frame. Its reason is cut to the 123 bytes a frame can carry: a longer one
/// fails the send, and the client would see the connection drop with no code at all.
fn close(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].into(),
    }))
}

/// `{"Authorization": "Bearer …"}` (either case of the key; the scheme is optional).
fn bearer_of(payload: &serde_json::Value) -> Option<String> {
    ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))
        .map(|v| crate::http::bearer_token(v).unwrap_or(v.trim()).to_owned())
}

fn is_subscribe(data: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    serde_json::from_slice::<Kind>(data).is_ok_and(|m| matches!(m.kind, "subscribe" | "start"))
}

/// Checks the socket's token again. Before `connection_init` there is nothing to check:
/// the protocol machine refuses a subscribe without a handshake itself.
async fn still_valid(
    state: &AppState,
    session: &Mutex<Session>,
    peer: IpAddr,
    meta: &RequestMeta,
) -> bool {
    let bearer = session
        .lock()
        .expect("never poisoned")
        .bearer
        .as_ref()
        .map(|b| b.expose_secret().to_owned());
    let Some(bearer) = bearer else { return true };
    let valid = authenticate_bearer(state, peer, Some(&bearer), meta)
        .await
        .is_ok();
    if !valid {
        session.lock().expect("never poisoned").forbidden = true;
    }
    valid
}
