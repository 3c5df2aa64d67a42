//! `provider-openai`: the OpenAI Chat Completions API, and any server that speaks it.
//!
//! Spec followed: <https://platform.openai.com/docs/api-reference/chat/create> and
//! <https://platform.openai.com/docs/api-reference/chat-streaming>. The key goes in
//! `Authorization: Bearer` and nowhere else.

use eventsource_stream::Event;
use reqwest::{RequestBuilder, Url};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{
    ProviderError, Turn,
    upstream::{self, Step, Wire},
};

/// Already includes `/v1`, as OpenAI-compatible base URLs do.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub(crate) const DEFAULT_MODEL: &str = "gpt-4o-mini";

pub(crate) struct OpenAi {
    pub endpoint: Url,
    pub api_key: SecretString,
    pub max_tokens: Option<u32>,
    pub system: Option<String>,
    pub temperature: Option<f64>,
}

impl OpenAi {
    /// `{base}/chat/completions`.
    pub(crate) fn endpoint(base: &Url) -> Url {
        upstream::join(base, "chat/completions")
    }
}

impl Wire for OpenAi {
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
        let system = self
            .system
            .iter()
            .map(|system| json!({"role": "system", "content": system}));
        let turns = transcript
            .iter()
            .map(|turn| json!({"role": turn.role.as_str(), "content": turn.content}));
        let messages: Vec<Value> = system.chain(turns).collect();
        let mut body = json!({"model": model, "messages": messages});
        if let Some(max_tokens) = self.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if let Some(temperature) = self.temperature {
            body["temperature"] = json!(temperature);
        }
        if stream {
            body["stream"] = json!(true);
        }
        let request = http
            .post(self.endpoint.clone())
            .header(
                "authorization",
                upstream::secret_header("Bearer ", &self.api_key)?,
            )
            .json(&body);
        Ok(if stream {
            request.header("accept", "text/event-stream")
        } else {
            request
        })
    }

    fn reply_text(&self, reply: &Value) -> Option<String> {
        let message = reply.get("choices")?.get(0)?.get("message")?;
        match message.get("content") {
            Some(Value::String(text)) => Some(text.clone()),
            // A refusal comes instead of content.
            Some(Value::Null) | None => Some(
                message
                    .get("refusal")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Some(_) => None,
        }
    }

    fn stream_event(&self, event: &Event) -> Result<Step, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(Step::done());
        }
        if data.is_empty() {
            return Ok(Step::ignore());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| {
            tracing::warn!("provider stream event is not JSON");
            ProviderError::Failed("the provider's stream could not be read".into())
        })?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            tracing::warn!("provider sent an error in its stream");
            return Err(ProviderError::Failed(
                "the provider reported an error mid-stream".into(),
            ));
        }
        // A usage-only chunk has no choices.
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return Ok(Step::ignore());
        };
        let mut step = Step::text(choice["delta"]["content"].as_str().unwrap_or_default());
        step.finished = choice["finish_reason"].is_string();
        Ok(step)
    }
}
