//! The Fernet keyring: one or more keys, the first encrypts, every one decrypts.
//!
//! Fernet spec: <https://github.com/fernet/spec/blob/master/Spec.md>. Tokens never expire
//! here (no TTL is checked): a value encrypted long ago stays valid.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fernet::Fernet;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::DecryptError;

/// Why a keyring could not be built. Names the entry's position, never its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("the keyring is empty: set CONFIG_ENCRYPTION_KEY to one or more Fernet keys")]
    Empty,
    #[error(
        "key {position} of the keyring is not a Fernet key (32 bytes, URL-safe base64; make one with `keyward keygen`)"
    )]
    InvalidKey { position: usize },
}

/// An ordered set of Fernet keys. Cheap to clone behind an `Arc` in the app state.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<KeyEntry>,
}

#[derive(Clone)]
struct KeyEntry {
    fernet: Fernet,
    /// The raw 32 key bytes, kept to derive the sealed-box key pair and fingerprints.
    raw: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Parses `CONFIG_ENCRYPTION_KEY`: keys separated by commas, white space ignored.
    pub fn parse(keys: &SecretString) -> Result<Self, KeyringError> {
        Self::from_keys(
            keys.expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty()),
        )
    }

    /// One encoded Fernet key per item, the first being the primary.
    pub fn from_keys<K: AsRef<str>>(
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Self, KeyringError> {
        let keys = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                KeyEntry::parse(k.as_ref()).ok_or(KeyringError::InvalidKey { position: i + 1 })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Self { keys })
    }

    /// `self`'s keys, then `then`'s: opens values that stand under either; `self`'s
    /// primary encrypts.
    pub fn chain(&self, then: &Keyring) -> Keyring {
        Keyring {
            keys: self.keys.iter().chain(&then.keys).cloned().collect(),
        }
    }

    /// A fresh random key in the standard encoding (URL-safe base64 of 32 bytes).
    pub fn generate_key() -> SecretString {
        SecretString::from(Fernet::generate_key())
    }

    /// Encrypts under the primary (first) key; returns the bare Fernet token.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        self.keys[0].fernet.encrypt(plaintext)
    }

    /// Decrypts a bare Fernet token with whichever key made it.
    pub fn decrypt(&self, token: &str) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        self.keys
            .iter()
            .find_map(|k| k.fernet.decrypt(token).ok())
            .map(Zeroizing::new)
            .ok_or(DecryptError)
    }

    /// Which key (0 = primary) decrypts a token, if any.
    pub fn key_index_of(&self, token: &str) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.fernet.decrypt(token).is_ok())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A short public name for each key, primary first: safe to show and log, useless
    /// to an attacker (an HMAC of a label under the key, not the key's own hash).
    pub fn fingerprints(&self) -> Vec<String> {
        use hmac::{Hmac, Mac};
        self.raw_keys()
            .map(|raw| {
                let mut mac =
                    Hmac::<sha2::Sha256>::new_from_slice(raw).expect("HMAC takes any key length");
                mac.update(b"keyward/key-fingerprint/v1");
                hex::encode(&mac.finalize().into_bytes()[..8])
            })
            .collect()
    }

    /// The raw bytes of each key, primary first, for deriving other keys from them.
    pub(crate) fn raw_keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.keys.iter().map(|k| &*k.raw)
    }
}

impl KeyEntry {
    fn parse(encoded: &str) -> Option<Self> {
        let fernet = Fernet::new(encoded)?;
        // The same decoding Fernet::new just accepted: exactly 32 bytes.
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?);
        let raw: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self {
            fernet,
            raw: Zeroizing::new(raw),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&SecretString]) -> Keyring {
        let joined = keys
            .iter()
            .map(|k| k.expose_secret())
            .collect::<Vec<_>>()
            .join(",");
        Keyring::parse(&SecretString::from(joined)).unwrap()
    }

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
        let before = ring(&[&old]);
        let token = before.encrypt(b"sk-old");
        let after = ring(&[&new, &old]);
        assert_eq!(&*after.decrypt(&token).unwrap(), b"sk-old");
        assert_eq!(after.key_index_of(&token), Some(1));
        let fresh = after.encrypt(b"sk-new");
        assert_eq!(after.key_index_of(&fresh), Some(0));
        assert!(
            before.decrypt(&fresh).is_err(),
            "a token under the new key needs the new key"
        );
    }

    #[test]
    fn bad_keys_are_refused_by_position_without_echoing_them() {
        let err = Keyring::parse(&SecretString::from(format!(
            "{}, not-a-key",
            Keyring::generate_key().expose_secret()
        )))
        .unwrap_err();
        assert_eq!(err, KeyringError::InvalidKey { position: 2 });
        assert!(!err.to_string().contains("not-a-key"));
        assert_eq!(
            Keyring::parse(&SecretString::from(" , ")).unwrap_err(),
            KeyringError::Empty
        );
    }

    #[test]
    fn keys_without_padding_are_accepted() {
        let key = Keyring::generate_key();
        let unpadded = key.expose_secret().trim_end_matches('=').to_owned();
        let a = ring(&[&key]);
        let b = Keyring::parse(&SecretString::from(unpadded)).unwrap();
        assert_eq!(&*b.decrypt(&a.encrypt(b"x")).unwrap(), b"x");
        assert_eq!(a.raw_keys().next(), b.raw_keys().next());
    }

    #[test]
    fn a_chain_encrypts_with_its_head_and_opens_with_every_key() {
        let (data, master) = (Keyring::generate_key(), Keyring::generate_key());
        let (data, master) = (ring(&[&data]), ring(&[&master]));
        let chained = data.chain(&master);
        assert_eq!(chained.len(), 2);
        let legacy = master.encrypt(b"legacy");
        assert_eq!(&*chained.decrypt(&legacy).unwrap(), b"legacy");
        assert_eq!(data.key_index_of(&chained.encrypt(b"new")), Some(0));
        assert_eq!(chained.fingerprints()[1], master.fingerprints()[0]);
    }

    #[test]
    fn debug_does_not_print_keys() {
        let key = Keyring::generate_key();
        let shown = format!("{:?}", ring(&[&key]));
        assert!(!shown.contains(key.expose_secret()));
    }
}
