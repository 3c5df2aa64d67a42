//! The JSON walks: seal a document for storage, open it for an authorised reader, and list
//! where its secrets are. CONTRACT section 3 is the spec; every rule lives here.

use std::collections::HashSet;

use secrecy::SecretString;
use serde_json::{Map, Value};

use keyward_seal::is_env_reference;

use super::sealed_box::SealedError;
use super::{
    DecryptError, Keyring, Plaintext, SealedBoxKeys, is_sensitive_key, looks_like_credential,
};

/// The stored form of an encrypted value: `enc:` followed by a Fernet token.
pub const ENC_PREFIX: &str = "enc:";
const SEALED_PREFIX: &str = "sealed:";

/// A value the server refused to store, by path. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configData.{path} {reason}")]
pub struct IngestError {
    pub path: String,
    pub reason: IngestReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestReason {
    #[error("starts with enc: but does not decrypt with this server's keys")]
    NotDecryptable,
    #[error("is a sealed value that {0}")]
    Sealed(SealedError),
}

/// Encrypts one value: `enc:<token>`.
pub fn encrypt_value(keyring: &Keyring, plaintext: &str) -> String {
    format!("{ENC_PREFIX}{}", keyring.encrypt(plaintext.as_bytes()))
}

/// Decrypts one `enc:` value.
pub fn decrypt_value(keyring: &Keyring, stored: &str) -> Result<SecretString, DecryptError> {
    let token = stored.strip_prefix(ENC_PREFIX).ok_or(DecryptError)?;
    let bytes = keyring.decrypt(token)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| DecryptError)?;
    Ok(SecretString::from(text))
}

/// A document ready for storage, and where its secrets are.
#[derive(Debug)]
pub struct SealedDocument {
    pub doc: Value,
    /// Every encrypted value's path, in document order.
    pub paths: Vec<String>,
    /// Paths whose value arrived as a `sealed:` box (the subset of `paths`).
    pub arrived_sealed: Vec<String>,
    /// Paths whose value arrived as new `enc:` ciphertext, encrypted app-side.
    pub arrived_encrypted: Vec<String>,
}

/// Seals a document for storage.
///
/// Every string under a sensitive key, or that looks like a credential, is encrypted;
/// `enc:` values are kept as sent once they are shown to decrypt; `sealed:` values are
/// opened and re-encrypted; `${NAME}` references and empty strings stay as they are.
/// Idempotent: sealing a sealed document changes nothing.
pub fn seal_document(
    doc: Value,
    keyring: &Keyring,
    sealed_keys: &SealedBoxKeys,
) -> Result<SealedDocument, IngestError> {
    reseal_document(doc, None, keyring, sealed_keys)
}

/// [`seal_document`] for a document replacing `previous`: an `enc:` value that `previous`
/// already holds (an unchanged secret sent back by an editor) is kept without a check, so
/// a value stored under an older key stays writable until rotation moves it.
pub fn reseal_document(
    doc: Value,
    previous: Option<&Value>,
    keyring: &Keyring,
    sealed_keys: &SealedBoxKeys,
) -> Result<SealedDocument, IngestError> {
    let mut kept = HashSet::new();
    if let Some(previous) = previous {
        stored_values(previous, &mut kept);
    }
    let mut walk = Sealer {
        keyring,
        sealed_keys,
        kept,
        path: String::new(),
        out: SealedDocument {
            doc: Value::Null,
            paths: Vec::new(),
            arrived_sealed: Vec::new(),
            arrived_encrypted: Vec::new(),
        },
    };
    walk.out.doc = walk.value(doc, false)?;
    Ok(walk.out)
}

fn stored_values<'v>(value: &'v Value, out: &mut HashSet<&'v str>) {
    match value {
        Value::String(s) if s.starts_with(ENC_PREFIX) => {
            out.insert(s);
        }
        Value::Array(items) => items.iter().for_each(|v| stored_values(v, out)),
        Value::Object(map) => map.values().for_each(|v| stored_values(v, out)),
        _ => {}
    }
}

/// Opens every `enc:` value of a stored document. The error names the first path that
/// would not open.
pub fn decrypt_document(doc: &Value, keyring: &Keyring) -> Result<Plaintext<Value>, String> {
    let mut path = String::new();
    open(doc, keyring, &mut path)
        .map(Plaintext::new)
        .map_err(|_| path)
}

/// The paths of a stored document's encrypted values, in document order.
pub fn sensitive_paths(doc: &Value) -> Vec<String> {
    fn visit(value: &Value, path: &mut String, out: &mut Vec<String>) {
        match value {
            Value::String(s) if s.starts_with(ENC_PREFIX) => out.push(path.clone()),
            Value::Array(items) => each_item(items, path, |v, p| visit(v, p, out)),
            Value::Object(map) => each_entry(map, path, |_, v, p| visit(v, p, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    visit(doc, &mut String::new(), &mut out);
    out
}

/// The path of the first object key or string value that holds U+0000, if any.
///
/// PostgreSQL's text and JSONB cannot store that character, so a stored document must not
/// hold one in the clear (an encrypted value may: its plaintext never reaches the store).
pub fn nul_path(doc: &Value) -> Option<String> {
    fn visit(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                push_index(path, i);
                let found = visit(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(key, item)| {
                let len = path.len();
                push_key(path, key);
                let found = key.contains('\0') || visit(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    visit(doc, &mut path).then_some(path)
}

struct Sealer<'a> {
    keyring: &'a Keyring,
    sealed_keys: &'a SealedBoxKeys,
    /// `enc:` values of the document being replaced.
    kept: HashSet<&'a str>,
    path: String,
    out: SealedDocument,
}

impl Sealer<'_> {
    fn value(&mut self, value: Value, sensitive: bool) -> Result<Value, IngestError> {
        Ok(match value {
            Value::String(s) => Value::String(self.string(s, sensitive)?),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let len = self.path.len();
                    push_index(&mut self.path, i);
                    out.push(self.value(item, sensitive)?);
                    self.path.truncate(len);
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (key, item) in map {
                    let len = self.path.len();
                    push_key(&mut self.path, &key);
                    let below = sensitive || is_sensitive_key(&key);
                    out.insert(key, self.value(item, below)?);
                    self.path.truncate(len);
                }
                Value::Object(out)
            }
            other => other,
        })
    }

    fn string(&mut self, s: String, sensitive: bool) -> Result<String, IngestError> {
        if s.starts_with(ENC_PREFIX) {
            if !self.kept.contains(s.as_str()) {
                decrypt_value(self.keyring, &s)
                    .map_err(|_| self.refuse(IngestReason::NotDecryptable))?;
                self.out.arrived_encrypted.push(self.path.clone());
            }
            self.out.paths.push(self.path.clone());
            return Ok(s);
        }
        if let Some(body) = s.strip_prefix(SEALED_PREFIX) {
            let opened = self
                .sealed_keys
                .open(body)
                .map_err(|e| self.refuse(IngestReason::Sealed(e)))?;
            self.out.arrived_sealed.push(self.path.clone());
            self.out.paths.push(self.path.clone());
            return Ok(format!("{ENC_PREFIX}{}", self.keyring.encrypt(&opened)));
        }
        if s.is_empty() || is_env_reference(&s) || !(sensitive || looks_like_credential(&s)) {
            return Ok(s);
        }
        self.out.paths.push(self.path.clone());
        let sealed = encrypt_value(self.keyring, &s);
        drop(Plaintext::new(s));
        Ok(sealed)
    }

    fn refuse(&self, reason: IngestReason) -> IngestError {
        IngestError {
            path: self.path.clone(),
            reason,
        }
    }
}

fn open(value: &Value, keyring: &Keyring, path: &mut String) -> Result<Value, DecryptError> {
    Ok(match value {
        Value::String(s) if s.starts_with(ENC_PREFIX) => {
            let token = &s[ENC_PREFIX.len()..];
            let bytes = keyring.decrypt(token)?;
            Value::String(String::from_utf8(bytes.to_vec()).map_err(|_| DecryptError)?)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                push_index(path, i);
                out.push(open(item, keyring, path)?);
                path.truncate(len);
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, item) in map {
                let len = path.len();
                push_key(path, key);
                out.insert(key.clone(), open(item, keyring, path)?);
                path.truncate(len);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn each_item(items: &[Value], path: &mut String, mut f: impl FnMut(&Value, &mut String)) {
    for (i, item) in items.iter().enumerate() {
        let len = path.len();
        push_index(path, i);
        f(item, path);
        path.truncate(len);
    }
}

fn each_entry(
    map: &Map<String, Value>,
    path: &mut String,
    mut f: impl FnMut(&str, &Value, &mut String),
) {
    for (key, item) in map {
        let len = path.len();
        push_key(path, key);
        f(key, item, path);
        path.truncate(len);
    }
}

fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write;
    let _ = write!(path, "[{i}]");
}

/// `a.b` for plain keys; `a["odd key"]` when a key would make the path ambiguous.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

#[cfg(test)]
mod tests {
    use super::super::sealed_box::seal;
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn keys() -> (Keyring, SealedBoxKeys) {
        let ring = Keyring::parse(&Keyring::generate_key()).unwrap();
        let sealed = SealedBoxKeys::derive(&ring);
        (ring, sealed)
    }

    /// The stored document and its encrypted paths.
    fn pair(
        doc: Value,
        ring: &Keyring,
        sealed: &SealedBoxKeys,
    ) -> Result<(Value, Vec<String>), IngestError> {
        seal_document(doc, ring, sealed).map(|s| (s.doc, s.paths))
    }

    fn at<'v>(doc: &'v Value, pointer: &str) -> &'v str {
        doc.pointer(pointer).and_then(Value::as_str).unwrap()
    }

    #[test]
    fn sensitive_strings_are_encrypted_and_listed() {
        let (ring, sealed) = keys();
        let doc = json!({"providers": [{"module": "provider-openai", "config": {"api_key": "sk-1", "model": "gpt"}}]});
        let (out, paths) = pair(doc, &ring, &sealed).unwrap();
        assert!(at(&out, "/providers/0/config/api_key").starts_with("enc:gAAAAA"));
        assert_eq!(at(&out, "/providers/0/config/model"), "gpt");
        assert_eq!(paths, ["providers[0].config.api_key"]);
        assert_eq!(
            decrypt_document(&out, &ring).unwrap().expose()["providers"][0]["config"]["api_key"],
            "sk-1"
        );
    }

    #[test]
    fn every_string_below_a_sensitive_key_is_encrypted_at_any_depth() {
        let (ring, sealed) = keys();
        let doc = json!({"credentials": {"user": "u", "pass": "p", "list": ["a", 1, true, null]}});
        let (out, mut paths) = pair(doc, &ring, &sealed).unwrap();
        paths.sort();
        assert_eq!(
            paths,
            [
                "credentials.list[0]",
                "credentials.pass",
                "credentials.user"
            ]
        );
        for p in [
            "/credentials/user",
            "/credentials/pass",
            "/credentials/list/0",
        ] {
            assert!(at(&out, p).starts_with("enc:"), "{p}");
        }
        assert_eq!(out["credentials"]["list"][1], 1);
        assert_eq!(out["credentials"]["list"][2], true);
        assert_eq!(out["credentials"]["list"][3], Value::Null);
    }

    #[test]
    fn numbers_booleans_null_and_empty_strings_are_never_encrypted() {
        let (ring, sealed) = keys();
        let doc = json!({"max_tokens": 4096, "token_ok": true, "secret": null, "password": ""});
        let (out, paths) = pair(doc.clone(), &ring, &sealed).unwrap();
        assert_eq!(out, doc);
        assert!(paths.is_empty());
    }

    #[test]
    fn env_references_are_stored_as_they_are() {
        let (ring, sealed) = keys();
        let doc = json!({"api_key": "${OPENAI_API_KEY}", "secret": "${not a ref"});
        let (out, paths) = pair(doc, &ring, &sealed).unwrap();
        assert_eq!(out["api_key"], "${OPENAI_API_KEY}");
        assert!(at(&out, "/secret").starts_with("enc:"));
        assert_eq!(paths, ["secret"]);
    }

    #[test]
    fn app_side_ciphertext_is_kept_as_sent_when_it_decrypts() {
        let (ring, sealed) = keys();
        let app_side = encrypt_value(&ring, "sk-app");
        let doc = json!({"api_key": app_side.clone(), "note": app_side.clone()});
        let (out, paths) = pair(doc, &ring, &sealed).unwrap();
        assert_eq!(out["api_key"], app_side.as_str());
        assert_eq!(out["note"], app_side.as_str());
        assert_eq!(paths, ["api_key", "note"]);
    }

    #[test]
    fn how_each_secret_arrived_is_reported() {
        let (ring, sealed) = keys();
        let doc = json!({
            "plain": {"api_key": "sk-plain"},
            "app": {"api_key": encrypt_value(&ring, "sk-app")},
            "boxed": {"api_key": seal(&sealed.primary().public_key(), b"sk-box")},
        });
        let mut out = seal_document(doc, &ring, &sealed).unwrap();
        out.paths.sort();
        assert_eq!(out.paths, ["app.api_key", "boxed.api_key", "plain.api_key"]);
        assert_eq!(out.arrived_encrypted, ["app.api_key"]);
        assert_eq!(out.arrived_sealed, ["boxed.api_key"]);
    }

    #[test]
    fn stored_values_sent_back_unchanged_are_kept_without_a_check() {
        let (ring, sealed) = keys();
        let (old, _) = keys();
        // Stored under a key this ring no longer has: an editor sends it back untouched.
        let stored = encrypt_value(&old, "sk-stored");
        let previous = json!({"api_key": stored.clone()});
        let doc = json!({"api_key": stored.clone(), "model": "m"});
        let out = reseal_document(doc.clone(), Some(&previous), &ring, &sealed).unwrap();
        assert_eq!(out.doc["api_key"], stored.as_str());
        assert_eq!(out.paths, ["api_key"]);
        assert!(out.arrived_encrypted.is_empty());
        // Without the previous document it is foreign ciphertext.
        assert!(seal_document(doc, &ring, &sealed).is_err());
    }

    #[test]
    fn foreign_ciphertext_is_refused_by_path_without_the_value() {
        let (ring, sealed) = keys();
        let (other, _) = keys();
        let foreign = encrypt_value(&other, "sk-foreign");
        let doc = json!({"providers": [{"config": {"api_key": foreign.clone()}}]});
        let err = pair(doc, &ring, &sealed).unwrap_err();
        assert_eq!(err.path, "providers[0].config.api_key");
        assert_eq!(err.reason, IngestReason::NotDecryptable);
        assert!(!err.to_string().contains(&foreign));
        assert!(
            err.to_string()
                .contains("configData.providers[0].config.api_key")
        );
    }

    #[test]
    fn sealed_values_are_opened_and_stored_encrypted_under_any_key() {
        let (ring, sealed) = keys();
        let value = seal(&sealed.primary().public_key(), b"sk-sealed");
        let (out, paths) = pair(json!({"anything": value}), &ring, &sealed).unwrap();
        assert_eq!(paths, ["anything"]);
        assert_eq!(
            decrypt_value(&ring, at(&out, "/anything"))
                .unwrap()
                .expose_secret(),
            "sk-sealed"
        );
    }

    #[test]
    fn unopenable_sealed_values_are_refused_by_path() {
        let (ring, sealed) = keys();
        let (_, other) = keys();
        let value = seal(&other.primary().public_key(), b"x");
        let err = pair(json!({"a": [value]}), &ring, &sealed).unwrap_err();
        assert_eq!(err.path, "a[0]");
        assert_eq!(err.reason, IngestReason::Sealed(SealedError::UnknownKeyId));
    }

    #[test]
    fn credentials_are_encrypted_wherever_they_stand() {
        let (ring, sealed) = keys();
        let doc =
            json!({"notes": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123", "model": "claude"});
        let (out, paths) = pair(doc, &ring, &sealed).unwrap();
        assert_eq!(paths, ["notes"]);
        assert_eq!(out["model"], "claude");
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        let (ring, sealed) = keys();
        let (_, mut paths) = pair(
            json!({"a.b": {"api_key": "x"}, "": {"token": "y"}}),
            &ring,
            &sealed,
        )
        .unwrap();
        paths.sort();
        assert_eq!(paths, [r#"[""].token"#, r#"["a.b"].api_key"#]);
    }

    #[test]
    fn sealing_is_idempotent() {
        let (ring, sealed) = keys();
        let (once, paths_once) = pair(
            json!({"token": "t", "x": [{"secret": "s"}]}),
            &ring,
            &sealed,
        )
        .unwrap();
        let (twice, paths_twice) = pair(once.clone(), &ring, &sealed).unwrap();
        assert_eq!(once, twice);
        assert_eq!(paths_once, paths_twice);
        assert_eq!(sensitive_paths(&once), paths_once);
    }

    #[test]
    fn a_stored_value_that_does_not_open_is_named_by_path() {
        let (ring, _) = keys();
        let (other, _) = keys();
        let doc = json!({"p": [{"api_key": encrypt_value(&other, "x")}]});
        assert_eq!(decrypt_document(&doc, &ring).unwrap_err(), "p[0].api_key");
    }

    #[test]
    fn nul_characters_are_found_by_path_in_keys_and_values() {
        assert_eq!(
            nul_path(&json!({"a": [1, {"b": "x\u{0}y"}]})).as_deref(),
            Some("a[1].b")
        );
        assert_eq!(
            nul_path(&json!({"ok": "v", "k\u{0}": 1})).as_deref(),
            Some(r#"["k\u0000"]"#)
        );
        assert_eq!(nul_path(&json!({"a": ["x", {"b": "y"}], "c": null})), None);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        "[a-z_]{0,10}",
                        Just("api_key".to_owned()),
                        Just("clientSecret".to_owned())
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every plaintext string that stands under a sensitive key, by path.
    fn secrets_of(value: &Value, sensitive: bool, out: &mut Vec<String>) {
        match value {
            Value::String(s) if sensitive && !s.is_empty() && !is_env_reference(s) => {
                out.push(s.clone())
            }
            Value::Array(items) => items.iter().for_each(|v| secrets_of(v, sensitive, out)),
            Value::Object(map) => map
                .iter()
                .for_each(|(k, v)| secrets_of(v, sensitive || is_sensitive_key(k), out)),
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn decrypt_of_encrypt_is_the_identity(doc in arb_json()) {
            let (ring, sealed) = keys();
            // Strings that already look like stored forms are not plaintext input.
            prop_assume!(!doc.to_string().contains("enc:") && !doc.to_string().contains("sealed:"));
            let (out, _) = pair(doc.clone(), &ring, &sealed).unwrap();
            let opened = decrypt_document(&out, &ring).unwrap();
            prop_assert_eq!(opened.expose(), &doc);
        }

        #[test]
        fn no_plaintext_under_a_sensitive_key_survives(doc in arb_json()) {
            let (ring, sealed) = keys();
            prop_assume!(!doc.to_string().contains("enc:") && !doc.to_string().contains("sealed:"));
            let (out, paths) = pair(doc.clone(), &ring, &sealed).unwrap();
            let mut secrets = Vec::new();
            secrets_of(&doc, false, &mut secrets);
            let mut left = Vec::new();
            secrets_of(&out, false, &mut left);
            for s in &left {
                prop_assert!(s.starts_with(ENC_PREFIX), "plaintext survived under a sensitive key");
            }
            prop_assert!(paths.len() >= secrets.len());
        }
    }
}
