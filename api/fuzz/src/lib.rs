//! The checks each fuzz target runs on one input, kept apart from libFuzzer so that they
//! read as plain properties. Every check panics on a violation; a panic is a finding.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use keyward::crypto::{
    Keyring, SealedBoxKeys, decrypt_document, decrypt_value, encrypt_value, is_sensitive_key,
    looks_like_credential, seal, seal_document, sensitive_paths,
};
use libfuzzer_sys::arbitrary::{self, Unstructured};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// One fixed keyring (and its sealed-box keys) for the whole run.
pub struct Keys {
    pub ring: Keyring,
    pub sealed: SealedBoxKeys,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = URL_SAFE.encode([7u8; 32]);
        let ring = Keyring::parse(&SecretString::from(key)).expect("a valid key");
        let sealed = SealedBoxKeys::derive(&ring);
        Keys { ring, sealed }
    })
}

/// True when some string value (not key) starts with a stored-form prefix.
fn has_stored_forms(value: &Value) -> bool {
    match value {
        Value::String(s) => s.starts_with("enc:") || s.starts_with("sealed:"),
        Value::Array(items) => items.iter().any(has_stored_forms),
        Value::Object(map) => map.values().any(has_stored_forms),
        _ => false,
    }
}

/// Every string under a sensitive key that is neither empty, an `${NAME}` reference
/// nor encrypted: must be none in a sealed document.
fn plaintext_under_sensitive_keys(value: &Value, sensitive: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s)
            if sensitive && !s.is_empty() && !s.starts_with("enc:") && !is_reference(s) =>
        {
            out.push(s.clone())
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| plaintext_under_sensitive_keys(v, sensitive, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            plaintext_under_sensitive_keys(v, sensitive || is_sensitive_key(k), out)
        }),
        _ => {}
    }
}

fn is_reference(s: &str) -> bool {
    s.strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .is_some_and(|name| {
            let mut chars = name.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Arbitrary JSON through the encryption walk: sealing never panics; a document without
/// stored forms always seals, and opens back to itself; sealing is idempotent; the paths
/// returned are the encrypted ones; no plaintext is left under a sensitive key.
///
/// The first byte picks how the rest becomes a document: parsed as JSON text (so the
/// parser's odd corners are reached), or built from the bytes with a vocabulary of
/// sensitive and ordinary keys and credential-like, reference and stored-form values (so
/// the walk's own branches are reached without the fuzzer first learning JSON).
pub fn seal_roundtrip(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let doc = if mode % 2 == 0 {
        let Ok(doc) = serde_json::from_slice::<Value>(rest) else {
            return;
        };
        doc
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(doc) = arbitrary_document(&mut u, 0) else {
            return;
        };
        doc
    };
    let k = keys();
    let stored_forms = has_stored_forms(&doc);
    let (sealed, paths) = match seal_document(doc.clone(), &k.ring, &k.sealed) {
        Ok(out) => (out.doc, out.paths),
        Err(e) => {
            assert!(stored_forms, "a plain document was refused: {e}");
            return;
        }
    };
    assert_eq!(
        sensitive_paths(&sealed),
        paths,
        "listed paths are the encrypted ones"
    );
    let mut left = Vec::new();
    plaintext_under_sensitive_keys(&sealed, false, &mut left);
    assert!(left.is_empty(), "plaintext survived under a sensitive key");
    let again =
        seal_document(sealed.clone(), &k.ring, &k.sealed).expect("a sealed document re-seals");
    assert_eq!(again.doc, sealed, "sealing is idempotent");
    assert_eq!(again.paths, paths);
    let opened = decrypt_document(&sealed, &k.ring).expect("a sealed document opens");
    if !stored_forms {
        assert_eq!(opened.expose(), &doc, "open(seal(doc)) == doc");
    }
}

/// Stored-form parsers on arbitrary input: `enc:` values (raw, and as well-formed base64
/// of arbitrary bytes so the Fernet token parser sees every shape), `sealed:` bodies (raw,
/// and with the right key id and arbitrary ciphertext), keyrings, and a document holding
/// such a value. Nothing panics, nothing forged opens, refusals never carry the value,
/// and what we encrypt or seal ourselves opens to what went in.
pub fn stored_values(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let k = keys();
    let text = String::from_utf8_lossy(rest);
    match mode % 7 {
        0 => {
            let _ = decrypt_value(&k.ring, &text);
        }
        1 => {
            let forged = format!("enc:{}", URL_SAFE.encode(rest));
            assert!(
                decrypt_value(&k.ring, &forged).is_err(),
                "a forged token opened"
            );
        }
        2 => {
            let _ = k.sealed.open(&text);
        }
        3 => {
            let body = format!("{}:{}", k.sealed.primary().key_id(), STANDARD.encode(rest));
            assert!(k.sealed.open(&body).is_err(), "a forged sealed box opened");
        }
        4 => {
            let _ = Keyring::parse(&SecretString::from(text.into_owned()));
        }
        5 => {
            let value = if rest.first().is_some_and(|b| b % 2 == 0) {
                format!("enc:{text}")
            } else {
                format!("sealed:{text}")
            };
            let doc = serde_json::json!({ "providers": [{ "config": { "api_key": value } }] });
            if let Err(e) = seal_document(doc, &k.ring, &k.sealed) {
                // The refusal is the path and a fixed reason: nothing of the value.
                assert_eq!(e.path, "providers[0].config.api_key");
                assert_eq!(
                    e.to_string(),
                    format!("configData.providers[0].config.api_key {}", e.reason)
                );
                let reason = e.reason.to_string();
                assert!(
                    [
                        "starts with enc: but does not decrypt with this server's keys",
                        "is a sealed value that is not of the form sealed:<keyId>:<base64>",
                        "is a sealed value that names a key id this server does not have (fetch encryptionKey again)",
                        "is a sealed value that cannot be opened with this server's key",
                    ]
                    .contains(&reason.as_str()),
                    "an unexpected refusal: {reason}"
                );
            }
        }
        _ => {
            let stored = encrypt_value(&k.ring, &text);
            let opened = decrypt_value(&k.ring, &stored).expect("our own token opens");
            assert_eq!(opened.expose_secret(), text.as_ref());
            let boxed = seal(&k.sealed.primary().public_key(), rest);
            let body = boxed.strip_prefix("sealed:").expect("the sealed: prefix");
            assert_eq!(&*k.sealed.open(body).expect("our own box opens"), rest);
        }
    }
}

/// Text that arrives from outside: Authorization headers, key names and values the
/// detector looks at, durations from the environment, GraphQL query text. Nothing
/// panics, and a bearer token found is a trimmed part of the header.
pub fn text_inputs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = keyward::http::bearer_token(text) {
        assert!(text.contains(token));
        assert_eq!(token, token.trim());
    }
    let _ = is_sensitive_key(text);
    let _ = looks_like_credential(text);
    let _ = keyward::settings::parse_duration(text);
    assert!(keyward::auth::token::secrets_equal(text, text));
    let _ = keyward::schema::check_query_shape(text, &keyward::settings::Limits::default());
}

const KEYS: &[&str] = &[
    "api_key",
    "apiKey",
    "API-KEY",
    "client_secret",
    "credentials",
    "x_auth_token",
    "Authorization",
    "private_key",
    "max_tokens",
    "model",
    "name",
    "providers",
    "config",
    "notes",
    "",
    "a.b",
    "[0]",
];

const VALUES: &[&str] = &[
    "",
    "plain",
    "${OPENAI_API_KEY}",
    "${not a ref",
    "${}",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123",
    "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
    "enc:",
    "enc:gAAAAABh",
    "sealed:",
    "sealed:0011223344556677:AAAA",
];

/// A document of at most six levels, from the fuzzer's bytes.
fn arbitrary_document(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let top = if depth >= 6 { 4 } else { 7 };
    Ok(match u.int_in_range(0..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        4 => Value::String(arbitrary_string(u)?),
        5 | 6 => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=5)? {
                let key = if u.ratio(3, 4)? {
                    (*u.choose(KEYS)?).to_owned()
                } else {
                    u.arbitrary::<String>()?
                };
                map.insert(key, arbitrary_document(u, depth + 1)?);
            }
            Value::Object(map)
        }
        _ => Value::Array(
            (0..u.int_in_range(0..=5)?)
                .map(|_| arbitrary_document(u, depth + 1))
                .collect::<arbitrary::Result<_>>()?,
        ),
    })
}

fn arbitrary_string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 => (*u.choose(VALUES)?).to_owned(),
        1 => format!("{}{}", u.choose(VALUES)?, u.arbitrary::<String>()?),
        _ => u.arbitrary::<String>()?,
    })
}
