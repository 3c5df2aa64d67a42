//! What an app needs to seal a value for Keyward, so that the plaintext of a secret never
//! travels (CONTRACT section 3): the server's public key as `encryptionKey { publicKey }`
//! returns it, its key id, libsodium sealed boxes (`crypto_box_seal`), and the rules for
//! which values the server treats as secrets.
//!
//! ```
//! # let server_public_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
//! let public = keyward_seal::parse_public_key(server_public_key).unwrap();
//! let sealed = keyward_seal::seal(&public, b"sk-my-provider-key");
//! assert!(sealed.starts_with("sealed:630dcd2966c43366:"));
//! ```
//!
//! The server (`keyward`) uses this crate for its `seal` and key ids, and the admin
//! console (wasm) to seal secrets in the browser, so both agree by construction.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_box::aead::OsRng;
use serde_json::Value;
use sha2::{Digest, Sha256};

mod sensitive;

pub use crypto_box::PublicKey;
pub use sensitive::{is_sensitive_key, looks_like_credential};

/// The prefix of a value sealed to the server's public key: `sealed:<keyId>:<base64>`.
pub const SEALED_PREFIX: &str = "sealed:";
/// The prefix of a value encrypted with the server's Fernet key: `enc:<token>`.
pub const ENC_PREFIX: &str = "enc:";

/// A public key that is not 32 bytes in standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPublicKey;

impl std::fmt::Display for InvalidPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the public key is not 32 bytes in standard base64")
    }
}

impl std::error::Error for InvalidPublicKey {}

/// Reads the server's public key: the 32 raw bytes, standard base64 (`encryptionKey`'s
/// `publicKey`).
pub fn parse_public_key(base64: &str) -> Result<PublicKey, InvalidPublicKey> {
    let bytes: [u8; 32] = STANDARD
        .decode(base64.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(InvalidPublicKey)?;
    Ok(PublicKey::from(bytes))
}

/// The key id of a public key (`encryptionKey`'s `keyId`): the first 16 hex digits of
/// SHA-256 over its raw bytes.
pub fn fingerprint(public: &PublicKey) -> String {
    hex::encode(&Sha256::digest(public.as_bytes())[..8])
}

/// Seals `plaintext` to `public`: `sealed:<keyId>:<standard base64>`, which only the
/// holder of the matching secret key (the server) can open.
pub fn seal(public: &PublicKey, plaintext: &[u8]) -> String {
    let sealed = public
        .seal(&mut OsRng, plaintext)
        .expect("sealing to a valid key cannot fail");
    format!(
        "{SEALED_PREFIX}{}:{}",
        fingerprint(public),
        STANDARD.encode(sealed)
    )
}

/// True for an environment reference, `${NAME}`: stored as is, never encrypted.
pub fn is_env_reference(value: &str) -> bool {
    value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
        .is_some_and(|name| {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// True when the server would encrypt this string, found under a sensitive key (at any
/// depth) or not: a plaintext secret, not empty, not `${NAME}`, not already `enc:` or
/// `sealed:`.
pub fn needs_sealing(value: &str, under_sensitive_key: bool) -> bool {
    !(value.is_empty()
        || value.starts_with(ENC_PREFIX)
        || value.starts_with(SEALED_PREFIX)
        || is_env_reference(value))
        && (under_sensitive_key || looks_like_credential(value))
}

/// Replaces every string of `doc` that [`needs_sealing`] with a value sealed to `public`,
/// so the document can be sent without one plaintext secret in it. Returns how many.
pub fn seal_secrets(doc: &mut Value, public: &PublicKey) -> usize {
    fn walk(value: &mut Value, sensitive: bool, public: &PublicKey, count: &mut usize) {
        match value {
            Value::String(s) if needs_sealing(s, sensitive) => {
                *s = seal(public, s.as_bytes());
                *count += 1;
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, sensitive, public, count);
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    walk(item, sensitive || is_sensitive_key(key), public, count);
                }
            }
            _ => {}
        }
    }
    let mut count = 0;
    walk(doc, false, public, &mut count);
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::SecretKey;
    use serde_json::json;

    fn open(secret: &SecretKey, sealed: &str) -> Vec<u8> {
        let (key_id, body) = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .expect("sealed:<keyId>:<base64>");
        assert_eq!(key_id, fingerprint(&secret.public_key()));
        secret.unseal(&STANDARD.decode(body).unwrap()).unwrap()
    }

    #[test]
    fn key_ids_are_the_first_16_hex_digits_of_sha256_of_the_public_key() {
        // Fixed: changing this algorithm would change every existing key id.
        let public = parse_public_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        assert_eq!(
            public.as_bytes(),
            &std::array::from_fn::<u8, 32, _>(|i| i as u8)
        );
        assert_eq!(fingerprint(&public), "630dcd2966c43366");
    }

    #[test]
    fn only_32_bytes_of_standard_base64_are_a_public_key() {
        assert!(parse_public_key(" AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").is_ok());
        for bad in ["", "AAECAw==", "not base64!", &STANDARD.encode([0u8; 33])] {
            assert_eq!(parse_public_key(bad).unwrap_err(), InvalidPublicKey);
        }
    }

    #[test]
    fn a_sealed_value_opens_with_the_secret_key_and_only_with_it() {
        let secret = SecretKey::generate(&mut OsRng);
        let sealed = seal(&secret.public_key(), b"sk-sealed");
        assert_eq!(open(&secret, &sealed), b"sk-sealed");
        assert_ne!(
            seal(&secret.public_key(), b"sk-sealed"),
            sealed,
            "randomised"
        );
        let other = SecretKey::generate(&mut OsRng);
        let body = sealed.rsplit(':').next().unwrap();
        assert!(other.unseal(&STANDARD.decode(body).unwrap()).is_err());
    }

    #[test]
    fn what_needs_sealing_is_what_the_server_would_encrypt() {
        for (value, under_sensitive_key) in [
            ("sk-anything", true),
            ("p", true),
            ("sk-abcdefghijklmnopqrstuvwxyz012345", false),
        ] {
            assert!(needs_sealing(value, under_sensitive_key), "{value}");
        }
        for (value, under_sensitive_key) in [
            ("", true),
            ("${OPENAI_API_KEY}", true),
            ("enc:gAAAAA", true),
            ("sealed:630dcd2966c43366:AAAA", true),
            ("echo-1", false),
            ("sk-short", false),
        ] {
            assert!(!needs_sealing(value, under_sensitive_key), "{value}");
        }
        assert!(is_env_reference("${_A1}") && !is_env_reference("${1A}"));
        assert!(!is_env_reference("${A-B}") && !is_env_reference("$A"));
    }

    #[test]
    fn every_secret_of_a_document_is_sealed_and_nothing_else_changes() {
        let secret = SecretKey::generate(&mut OsRng);
        let mut doc = json!({
            "providers": [{
                "module": "provider-echo",
                "config": { "api_key": "sk-typed", "model": "echo-1", "max_tokens": 256 }
            }],
            "credentials": { "user": "u", "list": ["a", "", 1] },
            "notes": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "env": { "token": "${TOKEN}" },
            "kept": { "password": "enc:gAAAAA" },
        });
        assert_eq!(seal_secrets(&mut doc, &secret.public_key()), 4);
        let opened = |v: &Value| String::from_utf8(open(&secret, v.as_str().unwrap())).unwrap();
        assert_eq!(
            opened(&doc["providers"][0]["config"]["api_key"]),
            "sk-typed"
        );
        assert_eq!(opened(&doc["credentials"]["user"]), "u");
        assert_eq!(opened(&doc["credentials"]["list"][0]), "a");
        assert_eq!(
            opened(&doc["notes"]),
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
        );
        assert_eq!(doc["credentials"]["list"][1], "");
        assert_eq!(doc["credentials"]["list"][2], 1);
        assert_eq!(doc["providers"][0]["config"]["model"], "echo-1");
        assert_eq!(doc["providers"][0]["config"]["max_tokens"], 256);
        assert_eq!(doc["env"]["token"], "${TOKEN}");
        assert_eq!(doc["kept"]["password"], "enc:gAAAAA");
        assert_eq!(
            seal_secrets(&mut doc, &secret.public_key()),
            0,
            "idempotent"
        );
    }
}
