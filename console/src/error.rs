//! The console's one error type: what a request, a subscription or a form check can
//! fail with. Server errors keep the server's (already safe) message and are sorted by
//! their `extensions.code`, so pages can react to the kind (sign in again, show a
//! conflict, put a message next to a field) without parsing text.

use std::fmt;

/// One failure, with a message fit to show to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// `UNAUTHENTICATED`: no token, an unknown one, or a revoked one.
    Unauthenticated(String),
    /// `FORBIDDEN`: the token's role may not do this.
    Forbidden(String),
    /// `NOT_FOUND` (or a read that answered `null`).
    NotFound(String),
    /// `BAD_USER_INPUT`, with the input field the server named, when it named one.
    BadUserInput {
        message: String,
        field: Option<String>,
    },
    /// `CONFLICT`: a stale `expectedVersion`, or a name already taken.
    Conflict(String),
    /// `DECRYPTION_FAILED`: a stored value no key of the keyring opens.
    DecryptionFailed(String),
    /// `PROVIDER_ERROR`: the AI provider refused or failed.
    Provider(String),
    /// `UNAVAILABLE`: the server is up but not ready (database, keyring).
    Unavailable(String),
    /// `INTERNAL`, or a code this console does not know.
    Server { code: String, message: String },
    /// The request never got a GraphQL answer (offline, proxy error, bad body).
    Network(String),
    /// Checked in the browser before anything was sent (e.g. the JSON does not parse).
    Invalid(String),
    /// The request was cancelled because its page went away.
    Aborted,
}

impl ConsoleError {
    /// Sorts a GraphQL error by its `extensions.code`.
    pub fn from_code(code: &str, message: String, field: Option<String>) -> Self {
        match code {
            "UNAUTHENTICATED" => Self::Unauthenticated(message),
            "FORBIDDEN" => Self::Forbidden(message),
            "NOT_FOUND" => Self::NotFound(message),
            "BAD_USER_INPUT" => Self::BadUserInput { message, field },
            "CONFLICT" => Self::Conflict(message),
            "DECRYPTION_FAILED" => Self::DecryptionFailed(message),
            "PROVIDER_ERROR" => Self::Provider(message),
            "UNAVAILABLE" => Self::Unavailable(message),
            other => Self::Server {
                code: other.to_owned(),
                message,
            },
        }
    }

    /// The `extensions.code` this error stands for (or a console-side name).
    pub fn code(&self) -> &str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::DecryptionFailed(_) => "DECRYPTION_FAILED",
            Self::Provider(_) => "PROVIDER_ERROR",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Server { code, .. } => code,
            Self::Network(_) => "NETWORK",
            Self::Invalid(_) => "INVALID",
            Self::Aborted => "ABORTED",
        }
    }

    /// The message alone, without the code.
    pub fn message(&self) -> &str {
        match self {
            Self::Unauthenticated(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::BadUserInput { message: m, .. }
            | Self::Conflict(m)
            | Self::DecryptionFailed(m)
            | Self::Provider(m)
            | Self::Unavailable(m)
            | Self::Server { message: m, .. }
            | Self::Network(m)
            | Self::Invalid(m) => m,
            Self::Aborted => "The request was cancelled.",
        }
    }

    /// A short headline for the kind of failure, for error banners.
    pub fn title(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "Not signed in",
            Self::Forbidden(_) => "Not allowed",
            Self::NotFound(_) => "Not found",
            Self::BadUserInput { .. } | Self::Invalid(_) => "Invalid input",
            Self::Conflict(_) => "Conflict",
            Self::DecryptionFailed(_) => "Decryption failed",
            Self::Provider(_) => "Provider error",
            Self::Unavailable(_) => "Service unavailable",
            Self::Server { .. } => "Server error",
            Self::Network(_) => "Network error",
            Self::Aborted => "Cancelled",
        }
    }
}

impl fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.title(), self.code(), self.message())
    }
}

impl std::error::Error for ConsoleError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_code_maps_to_its_variant_and_back() {
        for code in [
            "UNAUTHENTICATED",
            "FORBIDDEN",
            "NOT_FOUND",
            "BAD_USER_INPUT",
            "CONFLICT",
            "DECRYPTION_FAILED",
            "PROVIDER_ERROR",
            "UNAVAILABLE",
            "INTERNAL",
        ] {
            let error = ConsoleError::from_code(code, "m".into(), None);
            assert_eq!(error.code(), code);
            assert_eq!(error.message(), "m");
        }
        assert!(matches!(
            ConsoleError::from_code("SOMETHING_NEW", "m".into(), None),
            ConsoleError::Server { .. }
        ));
    }
}
