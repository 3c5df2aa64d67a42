use zeroize::Zeroize;

/// A decrypted value (a JSON document or a string) that never prints.
///
/// `Debug` says `[REDACTED]`; there is no `Display` and no `Serialize`, so the only way
/// out is [`Plaintext::expose`], which a grep can audit. Every string inside is zeroized on
/// drop.
pub struct Plaintext<T: Scrub>(T);

impl<T: Scrub> Plaintext<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Scrub> std::fmt::Debug for Plaintext<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plaintext([REDACTED])")
    }
}

impl<T: Scrub> Drop for Plaintext<T> {
    fn drop(&mut self) {
        self.0.scrub();
    }
}

/// Overwrites every string a value holds.
pub trait Scrub {
    fn scrub(&mut self);
}

impl Scrub for String {
    fn scrub(&mut self) {
        self.zeroize();
    }
}

impl Scrub for serde_json::Value {
    fn scrub(&mut self) {
        match self {
            serde_json::Value::String(s) => s.zeroize(),
            serde_json::Value::Array(items) => items.iter_mut().for_each(Scrub::scrub),
            serde_json::Value::Object(map) => map.values_mut().for_each(Scrub::scrub),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let p = Plaintext::new(serde_json::json!({"api_key": "sk-live-123"}));
        assert_eq!(format!("{p:?}"), "Plaintext([REDACTED])");
    }
}
