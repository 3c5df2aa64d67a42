//! The encryption core: the Fernet keyring, the sensitive-field rules, the JSON walks that
//! seal and open config documents, and sealed boxes for apps that must not hold a key.
//!
//! No HTTP and no database in here. Plaintext leaves this module only inside types that
//! never print ([`Plaintext`], [`secrecy::SecretString`]).

mod keyring;
mod plaintext;
mod rotate;
mod sealed_box;
mod walk;

pub use keyring::{Keyring, KeyringError};
pub use keyward_seal::{is_sensitive_key, looks_like_credential};
pub use plaintext::Plaintext;
pub use rotate::{RotationCounts, count_by_key, reencrypt_document};
pub use sealed_box::{
    ALGORITHM as SEALED_BOX_ALGORITHM, SealedBoxKey, SealedBoxKeys, SealedError, seal,
};
pub use walk::{
    ENC_PREFIX, IngestError, SealedDocument, decrypt_document, decrypt_value, encrypt_value,
    nul_path, reseal_document, seal_document, sensitive_paths,
};

/// Why a stored value could not be opened. Deliberately carries no detail: the caller
/// knows the path, and the value itself must never travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value does not decrypt with this server's keys")]
pub struct DecryptError;
