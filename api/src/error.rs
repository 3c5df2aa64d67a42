//! `AppError`: the one error type of the server, its `extensions.code`, and the message a
//! client may see. Details ride in `#[source]` and reach the log, never the client.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// The codes of CONTRACT section 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    DecryptionFailed,
    ProviderError,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::Conflict => "CONFLICT",
            Self::DecryptionFailed => "DECRYPTION_FAILED",
            Self::ProviderError => "PROVIDER_ERROR",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// UNAUTHENTICATED: no token, or one the server does not know.
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// FORBIDDEN: the token is known but its role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// NOT_FOUND: missing, or belongs to another tenant (the two are indistinguishable).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// BAD_USER_INPUT: the request is wrong; the message says how (never with a secret).
    #[error("{0}")]
    BadUserInput(String),
    /// CONFLICT: a version check or a uniqueness rule refused the write.
    #[error("{0}")]
    Conflict(String),
    /// DECRYPTION_FAILED: a stored value does not open with the keyring.
    #[error("the stored value at {path} does not decrypt with this server's keys")]
    DecryptionFailed { path: String },
    /// PROVIDER_ERROR: the AI provider refused or failed.
    #[error("{0}")]
    Provider(String),
    /// UNAVAILABLE: a dependency (the database) is down or timed out; retry later.
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(#[source] Source),
    /// INTERNAL: a bug. The detail is logged only.
    #[error("internal error")]
    Internal(#[source] Source),
}

impl AppError {
    pub fn code(&self) -> Code {
        match self {
            Self::Unauthenticated => Code::Unauthenticated,
            Self::Forbidden(_) => Code::Forbidden,
            Self::NotFound(_) => Code::NotFound,
            Self::BadUserInput(_) => Code::BadUserInput,
            Self::Conflict(_) => Code::Conflict,
            Self::DecryptionFailed { .. } => Code::DecryptionFailed,
            Self::Provider(_) => Code::ProviderError,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput(message.into())
    }

    pub fn internal(source: impl Into<Source>) -> Self {
        Self::Internal(source.into())
    }

    /// The server's fault, worth logging with its source chain.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Internal(_))
    }
}

/// Every database error goes through here: a unique violation is a CONFLICT, a
/// connection problem is UNAVAILABLE, anything else is INTERNAL.
impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return Self::Conflict("a record with the same unique value already exists".into());
        }
        if is_unavailable(&err) {
            Self::Unavailable(Box::new(err))
        } else {
            Self::Internal(Box::new(err))
        }
    }
}

fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            use sea_orm::sqlx::Error as E;
            matches!(
                &**e,
                E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_)
            ) || is_lock_timeout(e)
        }
        _ => false,
    }
}

/// SQLite's "database is locked" after the busy timeout: the store is saturated, not broken.
fn is_lock_timeout(e: &sea_orm::sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.message().contains("database is locked"))
}

impl From<crate::crypto::IngestError> for AppError {
    fn from(err: crate::crypto::IngestError) -> Self {
        Self::BadUserInput(err.to_string())
    }
}

impl From<crate::providers::ProviderError> for AppError {
    fn from(err: crate::providers::ProviderError) -> Self {
        use crate::providers::ProviderError as P;
        match err {
            P::BadConfig(message) => Self::BadUserInput(message),
            other => Self::Provider(other.to_string()),
        }
    }
}
