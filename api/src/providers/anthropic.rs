//! `provider-anthropic`: the Anthropic Messages API.
//!
//! Spec followed: <https://docs.anthropic.com/en/api/messages> and
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>. The key goes in
//! `x-api-key` and nowhere else.

use eventsource_stream::Event;
use reqwest::{RequestBuilder, Url};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{
    ProviderError, Turn,
    upstream::{self, Step, Wire},
};

pub(crate) const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub(crate) const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// The API requires `max_tokens`; this is sent when the config has none.
pub(crate) const DEFAULT_MAX_TOKENS: u32 = 1024;
const API_VERSION: &str = "2023-06-01";

pub(crate) struct Anthropic {
    pub endpoint: Url,
    pub api_key: SecretString,
    pub max_tokens: u32,
    pub system: Option<String>,
    pub temperature: Option<f64>,
}

impl Anthropic {
    /// `{base}/v1/messages`; a base that already ends in `/v1` is not given a second one.
    pub(crate) fn endpoint(base: &Url) -> Url {
        if base.path().trim_end_matches('/').ends_with("/v1") {
            upstream::join(base, "messages")
        } else {
            upstream::join(base, "v1/messages")
        }
    }
}

impl Wire for Anthropic {
    fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    fn request(
        &self,
        http: &reqwest::Client,
        model: &str,
        transcript: &[Turn],
        stream: bool,
    ) -> Result<RequestBuilder, ProviderError> {
        let messages: Vec<Value> = transcript
            .iter()
            .map(|turn| json!({"role": turn.role.as_str(), "content": turn.content}))
            .collect();
        let mut body = json!({
            "model": model,
            "max_tokens": self.max_tokens,
            "messages": messages,
        });
        if let Some(system) = &self.system {
            body["system"] = json!(system);
        }
        if let Some(temperature) = self.temperature {
            body["temperature"] = json!(temperature);
        }
        if stream {
            body["stream"] = json!(true);
        }
        let request = http
            .post(self.endpoint.clone())
            .header("x-api-key", upstream::secret_header("", &self.api_key)?)
            .header("anthropic-version", API_VERSION)
            .json(&body);
        Ok(if stream {
            request.header("accept", "text/event-stream")
        } else {
            request
        })
    }

    fn reply_text(&self, reply: &Value) -> Option<String> {
        let blocks = reply.get("content")?.as_array()?;
        Some(
            blocks
                .iter()
                .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect(),
        )
    }

    fn stream_event(&self, event: &Event) -> Result<Step, ProviderError> {
        match event.event.as_str() {
            "content_block_delta" => {
                let data = parse(&event.data)?;
                let delta = &data["delta"];
                Ok(match delta["type"].as_str() {
                    Some("text_delta") => Step::text(delta["text"].as_str().unwrap_or_default()),
                    // thinking, signature and tool-input deltas are not reply text.
                    _ => Step::ignore(),
                })
            }
            "content_block_start" => {
                let data = parse(&event.data)?;
                let block = &data["content_block"];
                Ok(match block["type"].as_str() {
                    Some("text") => Step::text(block["text"].as_str().unwrap_or_default()),
                    _ => Step::ignore(),
                })
            }
            "message_delta" => {
                let data = parse(&event.data)?;
                Ok(if data["delta"]["stop_reason"].is_string() {
                    Step::finished()
                } else {
                    Step::ignore()
                })
            }
            "message_stop" => Ok(Step::done()),
            "error" => {
                let kind = parse(&event.data)
                    .ok()
                    .and_then(|data| safe_error_type(&data["error"]["type"]));
                tracing::warn!(
                    error_type = kind.as_deref().unwrap_or("unknown"),
                    "provider sent an error event"
                );
                Err(ProviderError::Failed(match kind {
                    Some(kind) => format!("the provider reported an error mid-stream ({kind})"),
                    None => "the provider reported an error mid-stream".into(),
                }))
            }
            // message_start, content_block_stop, ping, and event types added later.
            _ => Ok(Step::ignore()),
        }
    }
}

fn parse(data: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(data).map_err(|_| {
        tracing::warn!("provider stream event is not JSON");
        ProviderError::Failed("the provider's stream could not be read".into())
    })
}

/// The error's type (`overloaded_error`…) if it looks like an identifier, so no free text
/// from the upstream ever reaches a message.
fn safe_error_type(value: &Value) -> Option<String> {
    let kind = value.as_str()?;
    (!kind.is_empty()
        && kind.len() <= 40
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    .then(|| kind.to_owned())
}
