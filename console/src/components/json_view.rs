//! Pretty-printed `configData` with its sensitive values marked. In the stored view each
//! secret is shown as ••••• (never the `enc:` token, which is useless to a reader and
//! only invites copy-paste); in the revealed view the plaintext is highlighted instead.

use leptos::prelude::*;
use serde_json::Value;

const MASK: &str = "•••••";

/// One run of text in the pretty-printed document.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Whitespace and punctuation.
    Punct(String),
    /// An object key, quoted; `sensitive` when its value is (or holds) a secret.
    Key { text: String, sensitive: bool },
    /// A string that is not a secret, quoted.
    Str(String),
    /// A number, boolean or null.
    Lit(String),
    /// A secret string at `path`: masked (`None`) or in plaintext.
    Secret {
        path: String,
        plaintext: Option<String>,
    },
}

/// Does `path` equal one of the sensitive paths or lie below one?
pub fn is_sensitive(path: &str, sensitive: &[String]) -> bool {
    sensitive.iter().any(|p| {
        path == p
            || (path.starts_with(p.as_str())
                && matches!(path.as_bytes().get(p.len()), Some(b'.') | Some(b'[')))
    })
}

/// Flattens `value` into pieces, pretty-printed with two-space indents.
pub fn pieces(value: &Value, sensitive: &[String], revealed: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    walk(value, "", 0, sensitive, revealed, &mut out);
    out
}

fn push_punct(out: &mut Vec<Piece>, text: &str) {
    if let Some(Piece::Punct(last)) = out.last_mut() {
        last.push_str(text);
    } else {
        out.push(Piece::Punct(text.to_owned()));
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn walk(
    value: &Value,
    path: &str,
    indent: usize,
    sensitive: &[String],
    revealed: bool,
    out: &mut Vec<Piece>,
) {
    let pad = |n: usize| " ".repeat(n);
    match value {
        Value::Object(map) if !map.is_empty() => {
            push_punct(out, "{\n");
            let len = map.len();
            for (i, (key, child)) in map.iter().enumerate() {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                push_punct(out, &pad(indent + 2));
                out.push(Piece::Key {
                    text: quoted(key),
                    sensitive: holds_secret(child, &child_path, sensitive),
                });
                push_punct(out, ": ");
                walk(child, &child_path, indent + 2, sensitive, revealed, out);
                push_punct(out, if i + 1 < len { ",\n" } else { "\n" });
            }
            push_punct(out, &pad(indent));
            push_punct(out, "}");
        }
        Value::Array(items) if !items.is_empty() => {
            push_punct(out, "[\n");
            let len = items.len();
            for (i, child) in items.iter().enumerate() {
                push_punct(out, &pad(indent + 2));
                walk(
                    child,
                    &format!("{path}[{i}]"),
                    indent + 2,
                    sensitive,
                    revealed,
                    out,
                );
                push_punct(out, if i + 1 < len { ",\n" } else { "\n" });
            }
            push_punct(out, &pad(indent));
            push_punct(out, "]");
        }
        Value::Object(_) => push_punct(out, "{}"),
        Value::Array(_) => push_punct(out, "[]"),
        Value::String(s) if is_secret_string(s, path, sensitive) => out.push(Piece::Secret {
            path: path.to_owned(),
            plaintext: revealed.then(|| quoted(s)),
        }),
        Value::String(s) => out.push(Piece::Str(quoted(s))),
        other => out.push(Piece::Lit(other.to_string())),
    }
}

/// A string is shown as a secret when it sits at a sensitive path, or is an `enc:` value
/// anyway. `${NAME}` references and empty strings are stored as they are and shown so.
fn is_secret_string(s: &str, path: &str, sensitive: &[String]) -> bool {
    if s.starts_with("enc:") {
        return true;
    }
    let env_ref = s.starts_with("${") && s.ends_with('}');
    !s.is_empty() && !env_ref && is_sensitive(path, sensitive)
}

fn holds_secret(value: &Value, path: &str, sensitive: &[String]) -> bool {
    match value {
        Value::String(s) => is_secret_string(s, path, sensitive),
        Value::Object(_) | Value::Array(_) => is_sensitive(path, sensitive),
        _ => false,
    }
}

/// The document, masked unless `revealed`.
#[component]
pub fn JsonView(
    value: Value,
    sensitive: Vec<String>,
    #[prop(optional)] revealed: bool,
) -> impl IntoView {
    let parts = pieces(&value, &sensitive, revealed)
        .into_iter()
        .map(|piece| match piece {
            Piece::Punct(text) => text.into_any(),
            Piece::Key { text, sensitive } => view! {
                <span class="j-key" class:j-sensitive=sensitive>{text}</span>
            }
            .into_any(),
            Piece::Str(text) => view! { <span class="j-str">{text}</span> }.into_any(),
            Piece::Lit(text) => view! { <span class="j-lit">{text}</span> }.into_any(),
            Piece::Secret { path, plaintext } => {
                let masked = plaintext.is_none();
                let label = if masked {
                    format!("secret at {path}, encrypted and hidden")
                } else {
                    format!("secret at {path}, decrypted")
                };
                view! {
                    <span
                        class="j-secret"
                        class:masked=masked
                        class:revealed=!masked
                        data-test="secret-value"
                        data-path=path
                        title=label.clone()
                        aria-label=label
                    >
                        {plaintext.unwrap_or_else(|| MASK.to_owned())}
                    </span>
                }
                .into_any()
            }
        })
        .collect_view();
    view! {
        <pre
            class="json"
            class:json-revealed=revealed
            data-test=if revealed { "config-json-plain" } else { "config-json" }
            tabindex="0"
        >
            {parts}
        </pre>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_path_below_a_sensitive_one_is_sensitive() {
        let paths = vec![
            "providers[0].config.api_key".to_owned(),
            "credentials".to_owned(),
        ];
        assert!(is_sensitive("providers[0].config.api_key", &paths));
        assert!(is_sensitive("credentials.user", &paths));
        assert!(is_sensitive("credentials[1]", &paths));
        assert!(!is_sensitive("providers[0].config.api_key_id", &paths));
        assert!(!is_sensitive("providers[0].config.model", &paths));
    }

    #[test]
    fn the_masked_view_never_contains_the_stored_token() {
        let doc = json!({"providers": [{"config": {"api_key": "enc:gAAAAsecret", "model": "m"}}]});
        let paths = vec!["providers[0].config.api_key".to_owned()];
        let out = pieces(&doc, &paths, false);
        let text = format!("{out:?}");
        assert!(!text.contains("gAAAA"));
        assert!(out.contains(&Piece::Secret {
            path: "providers[0].config.api_key".into(),
            plaintext: None
        }));
    }

    #[test]
    fn env_references_and_empty_strings_are_shown_as_they_are() {
        let doc = json!({"token": "${TOKEN}", "password": ""});
        let paths = vec!["token".to_owned(), "password".to_owned()];
        let out = pieces(&doc, &paths, false);
        assert!(out.contains(&Piece::Str("\"${TOKEN}\"".into())));
        assert!(out.contains(&Piece::Str("\"\"".into())));
    }
}
