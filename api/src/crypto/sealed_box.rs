//! Sealed boxes (libsodium `crypto_box_seal`: X25519 + XSalsa20-Poly1305) for apps that
//! must not hold the Fernet key: they seal to the server's public key, the server opens.
//!
//! The key pairs are derived from the keyring (one per master key), so nothing new needs
//! storing or backing up, and removing a master key retires its sealed-box key with it.
//! The app side (key ids, sealing) is the `keyward-seal` crate, shared with the console.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use crypto_box::{PublicKey, SecretKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use keyward_seal::{fingerprint, seal};

use super::Keyring;

pub const ALGORITHM: &str = "X25519-XSalsa20-Poly1305 (libsodium crypto_box_seal)";
const DERIVATION_LABEL: &[u8] = b"keyward/sealed-box/x25519/v1";

/// One derived key pair and its id (a fingerprint of the public key).
pub struct SealedBoxKey {
    key_id: String,
    secret: SecretKey,
}

impl SealedBoxKey {
    fn derive(master: &[u8; 32]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes any key length");
        mac.update(DERIVATION_LABEL);
        let bytes = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        let secret = SecretKey::from_bytes(*bytes);
        let key_id = fingerprint(&secret.public_key());
        Self { key_id, secret }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }

    /// The public key's 32 raw bytes, standard base64.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.public_key().as_bytes())
    }
}

/// Why a `sealed:` value was refused. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    #[error("is not of the form sealed:<keyId>:<base64>")]
    Malformed,
    #[error("names a key id this server does not have (fetch encryptionKey again)")]
    UnknownKeyId,
    #[error("cannot be opened with this server's key")]
    CannotOpen,
}

/// Every sealed-box key the keyring implies, primary first.
pub struct SealedBoxKeys {
    keys: Vec<SealedBoxKey>,
}

impl SealedBoxKeys {
    pub fn derive(keyring: &Keyring) -> Self {
        Self {
            keys: keyring.raw_keys().map(SealedBoxKey::derive).collect(),
        }
    }

    /// The key apps should seal to.
    pub fn primary(&self) -> &SealedBoxKey {
        &self.keys[0]
    }

    /// Opens the part after `sealed:`, i.e. `<keyId>:<base64>`.
    pub fn open(&self, body: &str) -> Result<Zeroizing<Vec<u8>>, SealedError> {
        let (key_id, payload) = body.split_once(':').ok_or(SealedError::Malformed)?;
        let ciphertext = decode_any_base64(payload).ok_or(SealedError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.key_id == key_id)
            .ok_or(SealedError::UnknownKeyId)?;
        key.secret
            .unseal(&ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| SealedError::CannotOpen)
    }
}

/// Standard or URL-safe alphabet, padding optional (CONTRACT section 3).
fn decode_any_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::aead::OsRng;
    use secrecy::{ExposeSecret, SecretString};

    fn keyring(keys: &[&SecretString]) -> Keyring {
        let joined = keys
            .iter()
            .map(|k| k.expose_secret())
            .collect::<Vec<_>>()
            .join(",");
        Keyring::parse(&SecretString::from(joined)).unwrap()
    }

    #[test]
    fn a_value_sealed_to_the_public_key_opens() {
        let keys = SealedBoxKeys::derive(&keyring(&[&Keyring::generate_key()]));
        let sealed = seal(&keys.primary().public_key(), b"sk-sealed");
        let body = sealed.strip_prefix("sealed:").unwrap();
        assert_eq!(&*keys.open(body).unwrap(), b"sk-sealed");
    }

    #[test]
    fn derivation_is_stable_and_follows_the_master_key() {
        let (a, b) = (Keyring::generate_key(), Keyring::generate_key());
        let once = SealedBoxKeys::derive(&keyring(&[&a]));
        let again = SealedBoxKeys::derive(&keyring(&[&a]));
        assert_eq!(once.primary().key_id(), again.primary().key_id());
        let rotated = SealedBoxKeys::derive(&keyring(&[&b, &a]));
        assert_ne!(rotated.primary().key_id(), once.primary().key_id());
        // A value sealed to the old primary still opens after rotation.
        let sealed = seal(&once.primary().public_key(), b"v");
        assert_eq!(
            &*rotated
                .open(sealed.strip_prefix("sealed:").unwrap())
                .unwrap(),
            b"v"
        );
    }

    #[test]
    fn url_safe_and_unpadded_base64_are_accepted() {
        let keys = SealedBoxKeys::derive(&keyring(&[&Keyring::generate_key()]));
        let raw = keys.primary().public_key().seal(&mut OsRng, b"v").unwrap();
        let id = keys.primary().key_id();
        for encoded in [
            URL_SAFE_NO_PAD.encode(&raw),
            URL_SAFE.encode(&raw),
            STANDARD_NO_PAD.encode(&raw),
        ] {
            assert_eq!(&*keys.open(&format!("{id}:{encoded}")).unwrap(), b"v");
        }
    }

    #[test]
    fn unknown_ids_and_garbage_are_refused() {
        let keys = SealedBoxKeys::derive(&keyring(&[&Keyring::generate_key()]));
        let other = SealedBoxKeys::derive(&keyring(&[&Keyring::generate_key()]));
        let foreign = seal(&other.primary().public_key(), b"v");
        assert_eq!(
            keys.open(foreign.strip_prefix("sealed:").unwrap())
                .unwrap_err(),
            SealedError::UnknownKeyId
        );
        let id = keys.primary().key_id();
        assert_eq!(
            keys.open(&format!("{id}:AAAA")).unwrap_err(),
            SealedError::CannotOpen
        );
        assert_eq!(
            keys.open(&format!("{id}:***")).unwrap_err(),
            SealedError::Malformed
        );
        assert_eq!(keys.open("no-colon").unwrap_err(), SealedError::Malformed);
    }
}
