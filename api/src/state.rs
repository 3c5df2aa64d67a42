//! `AppState`: what every request needs. Cheap to clone.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::{FailedAuthThrottle, TokenCache};
use crate::crypto::{Keyring, SealedBoxKeys};
use crate::keys::TenantKeys;
use crate::providers::{ProviderSettings, Providers};
use crate::settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub keyring: Arc<Keyring>,
    pub sealed_keys: Arc<SealedBoxKeys>,
    /// Tenant data keys over the keyring: the rings each tenant's values use.
    pub tenant_keys: Arc<TenantKeys>,
    pub settings: Arc<Settings>,
    pub auth_throttle: Arc<FailedAuthThrottle>,
    /// Verified bearer tokens; kept in step with the store by `auth::cache::listen`.
    pub token_cache: Arc<TokenCache>,
    pub providers: Providers,
}

impl AppState {
    pub fn new(db: DatabaseConnection, keyring: Keyring, settings: Settings) -> Self {
        let sealed_keys = SealedBoxKeys::derive(&keyring);
        let keyring = Arc::new(keyring);
        let providers = Providers::new(ProviderSettings {
            extra_hosts: settings.provider_hosts.clone(),
            env_allow: settings.env_allow.clone(),
            request_timeout: settings.limits.provider_timeout,
            ..ProviderSettings::default()
        });
        Self {
            db,
            providers,
            auth_throttle: Arc::new(FailedAuthThrottle::new(
                settings.limits.auth_failures_per_minute,
            )),
            token_cache: Arc::new(TokenCache::new()),
            tenant_keys: Arc::new(TenantKeys::new(keyring.clone(), settings.store.tenant_keys)),
            keyring,
            sealed_keys: Arc::new(sealed_keys),
            settings: Arc::new(settings),
        }
    }
}
