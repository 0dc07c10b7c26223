//! One error type for every API failure, carrying what a person needs to act on it.
//!
//! An `ApiError` keeps the endpoint it came from, the HTTP status, and the API's own `type`/`code`/`message`
//! when the server sent an error body. The errno a filesystem call returns is decided here, in one table
//! (CONTRACT.md Part 1 item 7), so the core never guesses. `Display` never contains the API token: nothing that
//! builds an `ApiError` ever sees it.

use std::fmt;

use super::models::ErrorDetail;

/// What kind of failure this was; decides the errno and whether a retry may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The server answered with an HTTP error status (see `status` and `detail`).
    Http,
    /// The request never got a complete answer: connection refused or reset, DNS, TLS, a deadline passed.
    Transport,
    /// The server answered 2xx but the body was not what the contract says (bad JSON, wrong types, HTML).
    InvalidResponse,
    /// Not sent: the API is known to be out of reach (`http::health`); it may answer later.
    Offline,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    /// `METHOD /v1/path` of the request, without the query string (which may name ids but never the token).
    pub endpoint: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The API's error object, when the body was one (boxed: errors travel in every `Result`, keep them small).
    pub detail: Option<Box<ErrorDetail>>,
    /// A sentence saying what went wrong, for logs and for the user.
    pub message: String,
}

impl ApiError {
    pub fn http(endpoint: &str, status: u16, detail: Option<ErrorDetail>, message: String) -> Self {
        ApiError {
            kind: ApiErrorKind::Http,
            endpoint: endpoint.to_string(),
            status: Some(status),
            detail: detail.map(Box::new),
            message,
        }
    }

    pub fn transport(endpoint: &str, message: String) -> Self {
        ApiError {
            kind: ApiErrorKind::Transport,
            endpoint: endpoint.to_string(),
            status: None,
            detail: None,
            message,
        }
    }

    pub fn invalid_response(endpoint: &str, message: String) -> Self {
        ApiError {
            kind: ApiErrorKind::InvalidResponse,
            endpoint: endpoint.to_string(),
            status: None,
            detail: None,
            message,
        }
    }

    /// A call that was not sent because the API is known to be out of reach.
    pub fn offline(endpoint: &str, message: String) -> Self {
        ApiError {
            kind: ApiErrorKind::Offline,
            endpoint: endpoint.to_string(),
            status: None,
            detail: None,
            message,
        }
    }

    /// The errno a filesystem operation fails with (CONTRACT.md Part 1 item 7).
    pub fn errno(&self) -> i32 {
        match (self.kind, self.status) {
            (ApiErrorKind::Http, Some(401 | 403)) => libc::EACCES,
            (ApiErrorKind::Http, Some(404)) => libc::ENOENT,
            (ApiErrorKind::Http, Some(400 | 422)) => libc::EINVAL,
            (ApiErrorKind::Http, Some(409)) => libc::EEXIST,
            (ApiErrorKind::Http, Some(429)) => libc::EAGAIN,
            (ApiErrorKind::Http, Some(413)) => libc::EFBIG,
            (ApiErrorKind::Http, Some(507)) => libc::ENOSPC,
            _ => libc::EIO,
        }
    }

    /// Whether the same idempotent request may succeed if sent again: 5xx, 429, transport failures, and a call
    /// held back while the API is out of reach (once it answers again).
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ApiErrorKind::Transport | ApiErrorKind::Offline => true,
            ApiErrorKind::Http => matches!(self.status, Some(429 | 500..=599)),
            ApiErrorKind::InvalidResponse => false,
        }
    }

    /// The API's message when it sent one, else our own sentence.
    pub fn user_message(&self) -> &str {
        self.detail
            .as_ref()
            .map(|d| d.message.as_str())
            .unwrap_or(&self.message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.endpoint)?;
        match (&self.status, &self.detail) {
            (Some(status), Some(d)) => {
                write!(f, "HTTP {status} {} ({}): {}", d.kind, d.code, d.message)
            }
            (Some(status), None) => write!(f, "HTTP {status}: {}", self.message),
            _ => write!(f, "{}", self.message),
        }?;
        match self.status {
            Some(401) => write!(f, " (check the API token in VM0_API_KEY)")?,
            Some(413) => write!(f, " (the server refuses data this large)")?,
            Some(507) => write!(f, " (the server has no room left to store it)")?,
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_and_no_room_are_efbig_and_enospc_with_a_reason() {
        let too_large = ApiError::http("PUT /upload", 413, None, "Payload Too Large".into());
        assert_eq!(too_large.errno(), libc::EFBIG);
        assert!(
            too_large
                .to_string()
                .ends_with("(the server refuses data this large)")
        );
        let full = ApiError::http("POST /v1/volumes/v/commit", 507, None, "full".into());
        assert_eq!(full.errno(), libc::ENOSPC);
        assert!(full.to_string().contains("no room left"), "{full}");
    }

    #[test]
    fn other_server_failures_stay_eio() {
        for status in [500, 502, 503] {
            let e = ApiError::http("GET /v1/runs", status, None, "down".into());
            assert_eq!(e.errno(), libc::EIO, "{status}");
        }
    }
}
