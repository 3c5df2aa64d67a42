//! Keyward's admin console: a client-side Leptos app served by the server under
//! `/console/`. It is an ordinary GraphQL client of the same server (see `api`), holds
//! the bearer token only in `sessionStorage`, and never keeps decrypted config values
//! anywhere but the one component that shows them.

mod api;
mod app;
mod auth;
mod components;
mod error;
mod model;
mod pages;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
