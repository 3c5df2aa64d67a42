//! The HTTP half shared by every remote provider: a [`Wire`] describes one provider's
//! request and reply formats; [`Upstream`] sends, retries, times out and streams.
//!
//! Streams are parsed with `eventsource-stream` over reqwest's byte stream. The returned
//! stream owns the HTTP response, so dropping it drops the connection and cancels the
//! upstream request.

use std::{sync::Arc, time::Duration};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{StreamExt, stream::BoxStream};
use reqwest::{RequestBuilder, Url, header::HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{
    ProviderError, Turn,
    retry::{self, SendError},
};

/// One provider's wire format.
pub(crate) trait Wire: Send + Sync + 'static {
    /// Where requests go; shown in `Debug`.
    fn endpoint(&self) -> &Url;
    /// The whole request for one turn (headers included), without sending it.
    fn request(
        &self,
        http: &reqwest::Client,
        model: &str,
        transcript: &[Turn],
        stream: bool,
    ) -> Result<RequestBuilder, ProviderError>;
    /// The assistant's text from a non-streamed reply; `None` when the reply is not of the
    /// expected shape.
    fn reply_text(&self, reply: &serde_json::Value) -> Option<String>;
    /// What one server-sent event means.
    fn stream_event(&self, event: &Event) -> Result<Step, ProviderError>;
}

/// One server-sent event, read.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Text to pass on (may be empty).
    pub text: String,
    /// The provider said the reply is complete (a stop reason); the stream may now end.
    pub finished: bool,
    /// The terminal event: stop reading.
    pub done: bool,
}

impl Step {
    pub(crate) fn ignore() -> Self {
        Self::default()
    }
    pub(crate) fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }
    pub(crate) fn finished() -> Self {
        Self {
            finished: true,
            ..Self::default()
        }
    }
    pub(crate) fn done() -> Self {
        Self {
            finished: true,
            done: true,
            ..Self::default()
        }
    }
}

/// The shared client and the limits every call obeys.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub http: reqwest::Client,
    pub request_timeout: Duration,
    pub max_retries: u32,
}

impl Upstream {
    /// One non-streamed call: the whole exchange must finish within `request_timeout`.
    pub(crate) async fn send(
        &self,
        wire: &dyn Wire,
        model: &str,
        transcript: &[Turn],
    ) -> Result<String, ProviderError> {
        let timeout = self.request_timeout;
        let http = &self.http;
        let response = retry::with_retries(self.max_retries, timeout, move || async move {
            let request = wire
                .request(http, model, transcript, false)
                .map_err(|_| SendError::Other)?;
            Ok(request.timeout(timeout).send().await?)
        })
        .await?;
        // The per-request timeout covers reading the body too.
        let reply: serde_json::Value = response.json().await.map_err(|err| {
            if err.is_timeout() {
                retry::timed_out(timeout)
            } else {
                tracing::warn!("provider reply is not JSON");
                malformed()
            }
        })?;
        wire.reply_text(&reply).ok_or_else(|| {
            tracing::warn!("provider reply has no text where expected");
            malformed()
        })
    }

    /// A streamed call: the response head must arrive within `request_timeout`, and so must
    /// each event after it.
    pub(crate) async fn stream(
        &self,
        wire: Arc<dyn Wire>,
        model: &str,
        transcript: &[Turn],
    ) -> Result<BoxStream<'static, Result<String, ProviderError>>, ProviderError> {
        let timeout = self.request_timeout;
        let http = &self.http;
        let w: &dyn Wire = &*wire;
        let response = retry::with_retries(self.max_retries, timeout, move || async move {
            let request = w
                .request(http, model, transcript, true)
                .map_err(|_| SendError::Other)?;
            match tokio::time::timeout(timeout, request.send()).await {
                Ok(sent) => Ok(sent?),
                Err(_) => Err(SendError::Timeout),
            }
        })
        .await?;

        let deltas = async_stream::stream! {
            let mut events = response.bytes_stream().eventsource();
            let mut finished = false;
            loop {
                let next = match tokio::time::timeout(timeout, events.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::warn!("provider stream went idle");
                        yield Err(ProviderError::Failed(format!(
                            "the provider's stream stalled for {}",
                            retry::human_duration(timeout)
                        )));
                        return;
                    }
                };
                match next {
                    Some(Ok(event)) => match wire.stream_event(&event) {
                        Ok(step) => {
                            finished |= step.finished;
                            if !step.text.is_empty() {
                                yield Ok(step.text);
                            }
                            if step.done {
                                return;
                            }
                        }
                        Err(err) => {
                            yield Err(err);
                            return;
                        }
                    },
                    Some(Err(err)) => {
                        yield Err(broken_stream(&err));
                        return;
                    }
                    None if finished => return,
                    None => {
                        tracing::warn!("provider stream ended before the reply was complete");
                        yield Err(ProviderError::Failed(
                            "the provider's stream ended before the reply was complete".into(),
                        ));
                        return;
                    }
                }
            }
        };
        Ok(deltas.boxed())
    }
}

fn malformed() -> ProviderError {
    ProviderError::Failed("the provider's reply could not be read".into())
}

/// Never formats the error itself: a parser error carries the offending input.
fn broken_stream(err: &EventStreamError<reqwest::Error>) -> ProviderError {
    match err {
        EventStreamError::Transport(err) if err.is_timeout() => {
            ProviderError::Failed("the provider's stream timed out".into())
        }
        EventStreamError::Transport(_) => {
            tracing::warn!("provider stream broke off");
            ProviderError::Failed("the provider's stream broke off".into())
        }
        EventStreamError::Utf8(_) | EventStreamError::Parser(_) => {
            tracing::warn!("provider stream is not valid server-sent events");
            ProviderError::Failed("the provider's stream could not be read".into())
        }
    }
}

/// A header value made from a key, marked sensitive so the HTTP stack never logs it or
/// indexes it in HTTP/2 header compression.
pub(crate) fn secret_header(
    prefix: &str,
    key: &SecretString,
) -> Result<HeaderValue, ProviderError> {
    let text = Zeroizing::new(format!("{prefix}{}", key.expose_secret()));
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        ProviderError::BadConfig(
            "config.api_key: contains characters not allowed in an HTTP header".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `base` plus `path`, with exactly one `/` between them.
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let joined = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    // Joining a path onto a valid http(s) base always yields a valid URL.
    Url::parse(&joined).unwrap_or_else(|_| base.clone())
}
