//! One module per screen.

pub mod audit;
pub mod chat;
pub mod config_detail;
pub mod config_form;
pub mod configs;
pub mod sessions;
pub mod signin;
pub mod tokens;
