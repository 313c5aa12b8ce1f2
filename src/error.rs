//! The crate's error type and its one mapping to the wire: HTTP status, the
//! JSON error code of PROTOCOL.md, and `Retry-After` where one applies.

use std::time::Duration;

/// Everything that can go wrong, typed at the boundary where it happens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed request (body, field, value).
    #[error("{0}")]
    BadRequest(String),
    /// Wrong password, unknown or disabled user.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// No valid session.
    #[error("not logged in")]
    Unauthenticated,
    /// The Origin rule refused the request.
    #[error("origin not allowed")]
    ForbiddenOrigin,
    /// No such route.
    #[error("not found")]
    NotFound,
    /// The route exists with other methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// `GET /ws` without an `Upgrade` header.
    #[error("this endpoint speaks WebSocket only")]
    UpgradeRequired,
    /// A socket limit (per user or global) is reached.
    #[error("{0}")]
    TooManySockets(&'static str),
    /// `POST /publish` without the right API key.
    #[error("missing or wrong API key")]
    BadApiKey,
    /// The request body did not arrive in time.
    #[error("request body timed out")]
    Timeout,
    /// The body is larger than the route's limit.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body's content type is not one the route accepts.
    #[error("unsupported content type; use {0}")]
    UnsupportedMediaType(&'static str),
    /// Too many failed logins.
    #[error("too many failed logins; retry later")]
    RateLimited(Duration),
    /// The login queue is over its budget.
    #[error("the gateway is busy checking passwords; retry later")]
    Overloaded(Duration),
    /// The store did not answer in time (locked, pool exhausted, down).
    #[error("the database is busy; retry later")]
    StoreBusy,
    /// The store failed in a way that is not contention.
    #[error("store error: {0}")]
    Store(String),
    /// A username outside PROTOCOL.md's rules.
    #[error("{0}")]
    InvalidUsername(String),
    /// Creating a user whose name exists (ignoring ASCII case).
    #[error("user {0:?} already exists")]
    DuplicateUser(String),
    /// A command named a user that does not exist.
    #[error("no user named {0:?}")]
    UnknownUser(String),
    /// Invalid configuration or a startup failure.
    #[error("{0}")]
    Config(String),
    /// An I/O failure of our own (key file, socket bind).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Something that should not happen; details stay in the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::InvalidUsername(_) => 400,
            Self::InvalidCredentials | Self::Unauthenticated | Self::BadApiKey => 401,
            Self::ForbiddenOrigin => 403,
            Self::NotFound | Self::UnknownUser(_) => 404,
            Self::MethodNotAllowed(_) => 405,
            Self::Timeout => 408,
            Self::UpgradeRequired => 426,
            Self::DuplicateUser(_) => 409,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::RateLimited(_) => 429,
            Self::Overloaded(_) | Self::StoreBusy | Self::Store(_) | Self::TooManySockets(_) => 503,
            Self::Config(_) | Self::Io { .. } | Self::Internal(_) => 500,
        }
    }

    /// The machine-readable `error` code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidUsername(_) => "invalid_username",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthenticated => "unauthenticated",
            Self::ForbiddenOrigin => "forbidden_origin",
            Self::NotFound => "not_found",
            Self::UnknownUser(_) => "unknown_user",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Timeout => "timeout",
            Self::UpgradeRequired => "upgrade_required",
            Self::TooManySockets(_) => "too_many_connections",
            Self::BadApiKey => "invalid_api_key",
            Self::DuplicateUser(_) => "duplicate_user",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited(_) => "rate_limited",
            Self::Overloaded(_) => "overloaded",
            Self::StoreBusy | Self::Store(_) => "unavailable",
            Self::Config(_) | Self::Io { .. } | Self::Internal(_) => "internal",
        }
    }

    /// The human message sent to clients. Internal details never leave the
    /// process: store and internal errors get a generic text.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(_) | Self::StoreBusy => "the database is busy; retry later".to_owned(),
            Self::Config(_) | Self::Io { .. } | Self::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// `Retry-After` in whole seconds (at least 1), for 429 and 503.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(d) | Self::Overloaded(d) => Some(whole_seconds(*d)),
            Self::StoreBusy | Self::Store(_) | Self::TooManySockets(_) => Some(1),
            _ => None,
        }
    }
}

/// Rounds up to whole seconds, at least 1.
pub fn whole_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(
            Error::RateLimited(Duration::from_secs(3)).retry_after(),
            Some(3)
        );
        assert_eq!(Error::StoreBusy.retry_after(), Some(1));
        assert_eq!(Error::InvalidCredentials.retry_after(), None);
    }

    #[test]
    fn internals_do_not_leak() {
        let e = Error::Store("disk I/O error at /secret/path".into());
        assert_eq!(e.status(), 503);
        assert!(!e.public_message().contains("secret"));
    }
}
