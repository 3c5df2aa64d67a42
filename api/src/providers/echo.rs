//! `provider-echo`: offline, no HTTP, no key. Replies with the last user turn's text, for
//! demos and tests.

use futures::stream::{self, BoxStream, StreamExt};

use super::{ProviderError, Turn, TurnRole};

pub(crate) const DEFAULT_MODEL: &str = "echo";

/// The last user turn's text, or nothing.
pub(crate) fn reply(transcript: &[Turn]) -> String {
    transcript
        .iter()
        .rev()
        .find(|turn| turn.role == TurnRole::User)
        .map(|turn| turn.content.clone())
        .unwrap_or_default()
}

/// The reply word by word (each chunk keeps its trailing whitespace), so the chunks
/// concatenate to exactly [`reply`].
pub(crate) fn stream(transcript: &[Turn]) -> BoxStream<'static, Result<String, ProviderError>> {
    let chunks = chunks(&reply(transcript));
    stream::iter(chunks.into_iter().map(Ok)).boxed()
}

fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if !c.is_whitespace() && in_space {
            out.push(std::mem::take(&mut current));
        }
        in_space = c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_concatenate_to_the_text() {
        for text in [
            "",
            "one",
            "Hello  wide\tworld\n",
            "  leading",
            "ünïcode wörds ok",
        ] {
            assert_eq!(chunks(text).concat(), text);
        }
        assert_eq!(chunks("a bc  d"), ["a ", "bc  ", "d"]);
    }
}
