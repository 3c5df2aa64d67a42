//! Sending one provider request with bounded retries.
//!
//! Retried: 408, 429 and 5xx answers, and failures to connect; with exponential backoff and
//! jitter, honouring `Retry-After` (and OpenAI's `retry-after-ms`) up to a cap. Not retried:
//! 401/403 (the key is wrong; retrying only repeats it), other 4xx, and timeouts (a slow
//! upstream would only be slow three times). Only status codes are logged: an upstream body
//! may echo the key back, so it is never read on an error path.

use std::{future::Future, time::Duration};

use rand::Rng;
use reqwest::{Response, StatusCode, header::HeaderMap};

use super::ProviderError;

/// The first backoff; each retry doubles it.
const BASE_DELAY: Duration = Duration::from_millis(200);
/// No single backoff is longer than this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A `Retry-After` longer than this is not waited for: the call fails instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How one attempt went before any status was seen.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be made (refused, DNS, TLS, connect timeout): worth retrying.
    Connect,
    /// The upstream did not answer in time.
    Timeout,
    /// Anything else, e.g. the connection broke mid-request.
    Other,
}

impl From<reqwest::Error> for SendError {
    fn from(err: reqwest::Error) -> Self {
        if err.is_connect() {
            SendError::Connect
        } else if err.is_timeout() {
            SendError::Timeout
        } else {
            SendError::Other
        }
    }
}

/// Runs `attempt` until it yields a 2xx response, a final error, or the retries run out.
pub(crate) async fn with_retries<F, Fut>(
    max_retries: u32,
    timeout: Duration,
    mut attempt: F,
) -> Result<Response, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Response, SendError>>,
{
    let attempts = max_retries.saturating_add(1);
    let mut n: u32 = 0;
    loop {
        n += 1;
        let last = n >= attempts;
        let failure = match attempt().await {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => {
                let status = response.status();
                tracing::warn!(
                    status = status.as_u16(),
                    attempt = n,
                    "provider answered with an error status"
                );
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    return Err(ProviderError::Rejected {
                        status: status.as_u16(),
                    });
                }
                if !is_retryable(status) {
                    return Err(ProviderError::Failed(refused_message(status)));
                }
                let failed = || {
                    ProviderError::Failed(format!(
                        "the provider answered HTTP {} ({n} attempt{})",
                        status.as_u16(),
                        if n == 1 { "" } else { "s" }
                    ))
                };
                if last {
                    return Err(failed());
                }
                match retry_after(response.headers()) {
                    Some(wait) if wait > MAX_RETRY_AFTER => {
                        tracing::warn!(
                            wait_s = wait.as_secs(),
                            "provider asked to wait longer than the cap; giving up"
                        );
                        return Err(failed());
                    }
                    wait => backoff(n).max(wait.unwrap_or_default()),
                }
            }
            Err(SendError::Connect) => {
                tracing::warn!(attempt = n, "could not connect to the provider");
                if last {
                    return Err(ProviderError::Failed(format!(
                        "could not connect to the provider ({n} attempt{})",
                        if n == 1 { "" } else { "s" }
                    )));
                }
                backoff(n)
            }
            Err(SendError::Timeout) => {
                tracing::warn!(attempt = n, "provider timed out");
                return Err(timed_out(timeout));
            }
            Err(SendError::Other) => {
                tracing::warn!(attempt = n, "request to the provider failed");
                return Err(ProviderError::Failed(
                    "the request to the provider failed".into(),
                ));
            }
        };
        tokio::time::sleep(failure).await;
    }
}

pub(crate) fn timed_out(timeout: Duration) -> ProviderError {
    ProviderError::Failed(format!(
        "the provider did not answer within {}",
        human_duration(timeout)
    ))
}

pub(crate) fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn refused_message(status: StatusCode) -> String {
    if status.is_redirection() {
        format!(
            "the provider answered with a redirect (HTTP {}), which is not followed",
            status.as_u16()
        )
    } else {
        format!(
            "the provider refused the request (HTTP {})",
            status.as_u16()
        )
    }
}

/// Backoff before attempt `n + 1`: 200 ms, 400 ms, 800 ms… times a jitter in [0.5, 1.5).
fn backoff(n: u32) -> Duration {
    let exp = BASE_DELAY
        .saturating_mul(1u32 << (n - 1).min(16))
        .min(MAX_BACKOFF);
    exp.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// `retry-after-ms` (OpenAI), else `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "3")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Sun, 06 Nov 1994 08:49:37 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for _ in 0..50 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(300));
            let second = backoff(2);
            assert!(second >= Duration::from_millis(200) && second < Duration::from_millis(600));
            assert!(backoff(40) < MAX_BACKOFF.mul_f64(1.5));
        }
    }
}
