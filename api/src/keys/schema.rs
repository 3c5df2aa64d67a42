use async_graphql::{Context, Object, SimpleObject};

use crate::crypto::SEALED_BOX_ALGORITHM;
use crate::state::AppState;

#[derive(SimpleObject)]
pub struct PublicEncryptionKey {
    /// Fingerprint of the public key; goes in `sealed:<keyId>:<base64>`.
    key_id: String,
    /// The 32 raw bytes of the X25519 public key, standard base64.
    public_key: String,
    algorithm: String,
}

#[derive(Default)]
pub struct KeysQuery;

#[Object]
impl KeysQuery {
    /// The server's public key for sealed-box app-side encryption.
    async fn encryption_key(&self, ctx: &Context<'_>) -> PublicEncryptionKey {
        let key = ctx.data_unchecked::<AppState>().sealed_keys.primary();
        PublicEncryptionKey {
            key_id: key.key_id().to_owned(),
            public_key: key.public_key_base64(),
            algorithm: SEALED_BOX_ALGORITHM.to_owned(),
        }
    }
}
