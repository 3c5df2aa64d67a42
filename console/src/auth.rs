//! Who is signed in. The bearer token lives in `sessionStorage` (gone when the tab
//! closes, never in `localStorage` or a cookie); the principal (`me`) lives in one
//! reactive context. Signing out, or any `UNAUTHENTICATED` answer, clears both, and the
//! protected routes then send the user back to the sign-in page.

use std::cell::Cell;

use leptos::{prelude::*, task::spawn_local};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::gql,
    error::ConsoleError,
    model::{Principal, Role},
};

const TOKEN_KEY: &str = "keyward.token";

pub const ME_QUERY: &str = "query Me { me { name role tenant } }";

#[derive(Deserialize)]
pub struct MeData {
    pub me: Principal,
}

/// The signed-in state, shared through context (and with [`crate::api`], which must be
/// able to sign the user out when the server stops accepting the token).
#[derive(Clone, Copy)]
pub struct Auth {
    /// `Some` once `me` answered for the stored token.
    pub principal: RwSignal<Option<Principal>>,
    /// False until the stored token (if any) has been checked at start-up.
    pub checked: RwSignal<bool>,
    /// A message for the sign-in page (e.g. "your session ended").
    pub notice: RwSignal<Option<String>>,
}

thread_local! {
    static AUTH: Cell<Option<Auth>> = const { Cell::new(None) };
}

impl Auth {
    /// Creates the state, provides it as context and checks a token left in this tab.
    pub fn provide() -> Self {
        let auth = Self {
            principal: RwSignal::new(None),
            checked: RwSignal::new(false),
            notice: RwSignal::new(None),
        };
        AUTH.with(|cell| cell.set(Some(auth)));
        provide_context(auth);
        if token().is_some() {
            spawn_local(async move {
                match gql::<MeData>(ME_QUERY, json!({})).await {
                    Ok(data) => auth.principal.set(Some(data.me)),
                    Err(ConsoleError::Unauthenticated(_)) => forget_token(),
                    Err(error) => auth.notice.set(Some(error.to_string())),
                }
                auth.checked.set(true);
            });
        } else {
            auth.checked.set(true);
        }
        auth
    }

    /// Reactive: is the signed-in principal an ADMIN?
    pub fn is_admin(&self) -> bool {
        self.principal
            .with(|p| p.as_ref().is_some_and(|p| p.role == Role::Admin))
    }

    /// Reactive: `None` while the stored token is being checked, then whether anyone is
    /// signed in (the shape `ProtectedRoute` wants).
    pub fn signed_in(&self) -> Option<bool> {
        self.checked
            .get()
            .then(|| self.principal.with(Option::is_some))
    }

    /// Reactive: like [`Self::signed_in`], but only an ADMIN passes.
    pub fn admin(&self) -> Option<bool> {
        self.checked.get().then(|| self.is_admin())
    }

    /// Tries a token: keeps it only if `me` accepts it.
    pub async fn sign_in(&self, candidate: &str) -> Result<Principal, ConsoleError> {
        let candidate = candidate.trim();
        if candidate.is_empty() {
            return Err(ConsoleError::Invalid("Paste an API token first.".into()));
        }
        set_token(candidate);
        match gql::<MeData>(ME_QUERY, json!({})).await {
            Ok(data) => {
                self.notice.set(None);
                self.principal.set(Some(data.me.clone()));
                Ok(data.me)
            }
            Err(error) => {
                forget_token();
                self.principal.set(None);
                Err(error)
            }
        }
    }

    pub fn sign_out(&self) {
        forget_token();
        self.principal.set(None);
    }
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

/// The server no longer accepts the token: forget it and say why on the sign-in page.
pub fn expire() {
    forget_token();
    if let Some(auth) = AUTH.with(Cell::get)
        && auth.principal.get_untracked().is_some()
    {
        auth.notice.set(Some(
            "Your session ended (the token is no longer accepted). Sign in again.".into(),
        ));
        auth.principal.set(None);
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok().flatten()
}

/// The bearer token of this tab, if signed in.
pub fn token() -> Option<String> {
    storage()?
        .get_item(TOKEN_KEY)
        .ok()
        .flatten()
        .filter(|t| !t.is_empty())
}

fn set_token(token: &str) {
    if let Some(storage) = storage() {
        let _ = storage.set_item(TOKEN_KEY, token);
    }
}

fn forget_token() {
    if let Some(storage) = storage() {
        let _ = storage.remove_item(TOKEN_KEY);
    }
}
