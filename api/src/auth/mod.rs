//! Who is calling: bearer tokens, the principal they resolve to, and the guards that say
//! what a principal may do. Never logs or returns a token's secret.

pub mod cache;
mod guard;
mod principal;
pub mod schema;
mod throttle;
pub mod token;

pub use cache::TokenCache;
pub use guard::RequireAdmin;
pub use principal::{DEFAULT_TENANT, Principal, RequestMeta};
pub use throttle::FailedAuthThrottle;
