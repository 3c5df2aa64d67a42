//! Which values are secrets: by the name of the key they stand under (CONTRACT section 3),
//! or by looking like a well-known credential wherever they stand.

/// Name fragments, already normalised (lower case, no `-` or `_`).
const SENSITIVE_FRAGMENTS: &[&str] = &[
    "apikey",
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "privatekey",
    "accesskey",
    "authorization",
];

/// True when an object key names a secret: compared case-insensitively with `-`, `_`
/// and camelCase boundaries ignored, so `apiKey`, `API-KEY` and `x_auth_token` all match.
pub fn is_sensitive_key(key: &str) -> bool {
    let normalised: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SENSITIVE_FRAGMENTS.iter().any(|f| normalised.contains(f))
}

/// True when a string looks like a credential of a well-known format, whatever its key:
/// a pasted key must not end up in plaintext because it sat under `notes`.
pub fn looks_like_credential(value: &str) -> bool {
    let v = value.trim();
    if v.contains("-----BEGIN")
        && (v.contains("PRIVATE KEY-----") || v.contains("PRIVATE KEY BLOCK-----"))
    {
        return true;
    }
    // Provider key prefixes followed by a long run of token characters.
    const PREFIXES: &[(&str, usize)] = &[
        ("sk-ant-", 20),
        ("sk-proj-", 20),
        ("sk-", 20),
        ("ghp_", 36),
        ("gho_", 36),
        ("ghs_", 36),
        ("ghu_", 36),
        ("ghr_", 36),
        ("github_pat_", 40),
        ("xoxb-", 20),
        ("xoxp-", 20),
        ("xoxa-", 20),
        ("xoxr-", 20),
        ("xoxs-", 20),
        ("xoxe-", 20),
        ("xapp-", 20),
        ("sk_live_", 20),
        ("sk_test_", 20),
        ("rk_live_", 20),
        ("rk_test_", 20),
        ("hf_", 30),
        ("gsk_", 40),
        ("AIza", 35),
    ];
    let token_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if v.chars().any(char::is_whitespace) {
        return false;
    }
    for (prefix, min_rest) in PREFIXES {
        if let Some(rest) = v.strip_prefix(prefix) {
            return rest.len() >= *min_rest && rest.chars().all(token_char);
        }
    }
    // AWS access key ids: AKIA/ASIA + 16 upper-case alphanumerics.
    if (v.starts_with("AKIA") || v.starts_with("ASIA")) && v.len() == 20 {
        return v[4..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    }
    is_jwt(v) || has_url_password(v)
}

/// A JSON Web Token: three base64url segments, the first a JSON object (`eyJ`).
fn is_jwt(v: &str) -> bool {
    let segments: Vec<&str> = v.split('.').collect();
    let base64url = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    v.starts_with("eyJ")
        && segments.len() == 3
        && segments.iter().all(|s| s.len() >= 10 && base64url(s))
}

/// A URL with a password in it: `scheme://user:password@host…` (connection strings).
fn has_url_password(v: &str) -> bool {
    let Some((scheme, rest)) = v.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let valid_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid_scheme
        && authority
            .rsplit_once('@')
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .is_some_and(|(_, password)| !password.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_examples_are_sensitive() {
        for key in [
            "api_key",
            "apiKey",
            "API-KEY",
            "apikey",
            "client_secret",
            "credentials",
            "x_auth_token",
            "password",
            "db_passwd",
            "privateKey",
            "aws_access_key_id",
            "Authorization",
            "max_tokens",
        ] {
            assert!(is_sensitive_key(key), "{key} should be sensitive");
        }
    }

    #[test]
    fn ordinary_keys_are_not_sensitive() {
        for key in [
            "model",
            "base_url",
            "name",
            "user",
            "temperature",
            "api",
            "key",
            "auth",
        ] {
            assert!(!is_sensitive_key(key), "{key} should not be sensitive");
        }
    }

    #[test]
    fn well_known_credential_formats_are_detected() {
        for value in [
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "sk-abcdefghijklmnopqrstuvwxyz012345",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz0123456789",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----",
        ] {
            assert!(
                looks_like_credential(value),
                "{value} should look like a credential"
            );
        }
    }

    #[test]
    fn near_misses_stay_plain() {
        for value in [
            "sk-",
            "sk-short",
            "skeleton-key-for-the-demo",
            "a sk-abcdefghijklmnopqrstuvwxyz012345 in a sentence",
            "AKIA",
            "AKIAIOSFODNN7EXAMPL",
            "akiaiosfodnn7example",
            "ghp_short",
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----",
            "claude-sonnet-4-5",
            "https://api.openai.com/v1",
        ] {
            assert!(!looks_like_credential(value), "{value} should stay plain");
        }
    }

    /// More of the formats the detector claims, and the near misses next to each of them
    /// (issue 7 point 4): one character short, a character outside the alphabet, the
    /// prefix alone, public material, a case change.
    #[test]
    fn every_claimed_format_is_detected_and_its_near_misses_are_not() {
        let detected = [
            "gho_abcdefghijklmnopqrstuvwxyz0123456789",
            "ghs_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            "ghu_abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx",
            "xoxp-123456789012-123456789012-abcdefabcdef",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "ASIAIOSFODNN7EXAMPLE",
            "sk-ant-admin01-abcdefghijklmnopqrstuvwxyz_0123",
            "  sk-proj-abcdefghijklmnopqrstuvwxyz012345\n",
            "-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----",
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOY\n-----END PGP PRIVATE KEY BLOCK-----",
            "ghr_abcdefghijklmnopqrstuvwxyz0123456789",
            "xoxa-2-123456789012-abcdefabcdef",
            "xoxe-1-abcdefghijklmnopqrstuvwxyz",
            "xapp-1-A0123456789-0123456789-abcdef",
            "sk_live_51Habcdefghijklmnopqrstuv",
            "rk_test_51Habcdefghijklmnopqrstuv",
            "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
            "gsk_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "postgres://app:s3cr3t@db.internal:5432/keyward",
            "redis://:hunter2@cache:6379",
            "amqps://guest:guest@broker/vhost?heartbeat=30",
        ];
        for value in detected {
            assert!(
                looks_like_credential(value),
                "{value:?} should look like a credential"
            );
        }
        let near_misses = [
            "sk-ant-",
            "sk-ant-short",
            "sk-abcdefghijklmnopqrs",
            "sk-abcdefghijklmnopqrstuvwxyz!012345",
            "ghp_abcdefghijklmnopqrstuvwxyz012345678",
            "https://github.com/ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "AKIAIOSFODNN7EXAMPLE1",
            "AKIAIOSFODNN7EXAMPLe",
            "AKIA IOSFODNN7EXAMP",
            "Asia/Tokyo",
            "AIzaSyA1234567890abcdefghijklmnopqrstu",
            "xoxb-short",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----",
            "-----BEGIN CERTIFICATE REQUEST-----",
            "-----BEGIN RSA PUBLIC KEY-----",
            "private key",
            "gpt-4o-mini",
            "",
            "sk_live_short",
            "rk_live_",
            "ghr_abc",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0",
            "version 1.2.3",
            "postgres://app@db.internal:5432/keyward",
            "postgres://db.internal:5432/keyward",
            "https://example.com/a:b@c",
            "https://user:@host",
            "mailto:someone@example.com",
            "see https://docs.example.com:8443/path for details",
        ];
        for value in near_misses {
            assert!(!looks_like_credential(value), "{value:?} should stay plain");
        }
    }
}
