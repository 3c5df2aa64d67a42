//! Re-encryption of a stored document under a ring's primary key, value by value.

use serde_json::Value;

use super::{ENC_PREFIX, Keyring};

/// How many values a rotation pass touched, by outcome.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotationCounts {
    /// Re-encrypted under the writing ring's primary key.
    pub reencrypted: u64,
    /// Already under that key: left as they were.
    pub already_current: u64,
    /// Opened by no key: left as they were.
    pub failed: u64,
}

impl std::ops::AddAssign for RotationCounts {
    fn add_assign(&mut self, other: Self) {
        self.reencrypted += other.reencrypted;
        self.already_current += other.already_current;
        self.failed += other.failed;
    }
}

/// Rewrites, in place, every `enc:` value that `reads` opens and `writes`' primary key did
/// not make, under that primary key.
pub fn reencrypt_document(doc: &mut Value, reads: &Keyring, writes: &Keyring) -> RotationCounts {
    let mut counts = RotationCounts::default();
    visit(doc, reads, writes, &mut counts);
    counts
}

/// Counts a document's `enc:` values by the position of the key that made them
/// (index `keyring.len()` counts values no key opens).
pub fn count_by_key(doc: &Value, keyring: &Keyring, counts: &mut [u64]) {
    match doc {
        Value::String(s) => {
            if let Some(token) = s.strip_prefix(ENC_PREFIX) {
                let i = keyring.key_index_of(token).unwrap_or(keyring.len());
                counts[i] += 1;
            }
        }
        Value::Array(items) => items.iter().for_each(|v| count_by_key(v, keyring, counts)),
        Value::Object(map) => map.values().for_each(|v| count_by_key(v, keyring, counts)),
        _ => {}
    }
}

fn visit(value: &mut Value, reads: &Keyring, writes: &Keyring, counts: &mut RotationCounts) {
    match value {
        Value::String(s) => {
            let Some(token) = s.strip_prefix(ENC_PREFIX) else {
                return;
            };
            if writes.key_index_of(token) == Some(0) {
                counts.already_current += 1;
            } else if let Ok(plain) = reads.decrypt(token) {
                *s = format!("{ENC_PREFIX}{}", writes.encrypt(&plain));
                counts.reencrypted += 1;
            } else {
                counts.failed += 1;
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| visit(v, reads, writes, counts)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| visit(v, reads, writes, counts)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::encrypt_value;
    use super::*;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;

    #[test]
    fn old_values_move_to_the_primary_and_the_rest_are_counted() {
        let (old, new, lost) = (
            Keyring::generate_key(),
            Keyring::generate_key(),
            Keyring::generate_key(),
        );
        let parse = |keys: &[&SecretString]| {
            Keyring::parse(&SecretString::from(
                keys.iter()
                    .map(|k| k.expose_secret())
                    .collect::<Vec<_>>()
                    .join(","),
            ))
            .unwrap()
        };
        let (before, after, gone) = (parse(&[&old]), parse(&[&new, &old]), parse(&[&lost]));
        let mut doc = json!({
            "a": encrypt_value(&before, "one"),
            "b": [encrypt_value(&after, "two")],
            "c": encrypt_value(&gone, "three"),
            "d": "plain",
        });
        let counts = reencrypt_document(&mut doc, &after, &after);
        assert_eq!(
            counts,
            RotationCounts {
                reencrypted: 1,
                already_current: 1,
                failed: 1
            }
        );
        let a = doc["a"].as_str().unwrap().strip_prefix(ENC_PREFIX).unwrap();
        assert_eq!(after.key_index_of(a), Some(0));
        assert_eq!(&*after.decrypt(a).unwrap(), b"one");
        let mut by_key = vec![0; after.len() + 1];
        count_by_key(&doc, &after, &mut by_key);
        assert_eq!(by_key, [2, 0, 1]);
    }

    #[test]
    fn values_move_from_the_reading_ring_to_the_writing_one() {
        let (master, data) = (Keyring::generate_key(), Keyring::generate_key());
        let master = Keyring::parse(&master).unwrap();
        let data = Keyring::parse(&data).unwrap();
        let reads = data.chain(&master);
        let mut doc =
            json!({"legacy": encrypt_value(&master, "one"), "new": encrypt_value(&data, "two")});
        let counts = reencrypt_document(&mut doc, &reads, &data);
        assert_eq!((counts.reencrypted, counts.already_current), (1, 1));
        let legacy = doc["legacy"]
            .as_str()
            .unwrap()
            .strip_prefix(ENC_PREFIX)
            .unwrap();
        assert_eq!(data.key_index_of(legacy), Some(0));
        // And back, when tenant keys are switched off.
        let counts = reencrypt_document(&mut doc, &reads, &master);
        assert_eq!(counts.reencrypted, 2);
    }
}
