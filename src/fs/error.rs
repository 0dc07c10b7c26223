//! The filesystem core's error: an errno, a sentence, the failure underneath, and how loud it is.
//!
//! Every failure a FUSE request can meet becomes an `Error` with the errno the kernel gets and a message that is
//! logged. The errno is decided where the failure is understood (the API error table in `api::error`, the cache's
//! own table, or here for the namespace's cases), so the adapter only forwards it. The underlying error (API,
//! cache, I/O) is kept as `source`, so the log can show the whole chain of causes, and `level` says how loud the
//! adapter logs it: a name or an attribute that does not exist is an expected answer (debug), a refused change
//! or a failed download a warning, and a failure that loses what the user wrote (an upload) an error.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use tracing::Level;

use crate::api::ApiError;
use crate::cache::CacheError;
use crate::stage::{PublishError, StageError};

#[derive(Debug, Clone)]
pub struct Error {
    pub errno: i32,
    pub message: String,
    /// The failure underneath, when there is one (shared: handles keep an outcome that every flush returns).
    pub source: Option<Arc<dyn StdError + Send + Sync>>,
    /// How loud the adapter logs it.
    pub level: Level,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with the level its errno deserves (`ENOENT` and `ENODATA` at debug, the rest as warnings).
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        let level = if errno == libc::ENOENT || errno == libc::ENODATA {
            Level::DEBUG
        } else {
            Level::WARN
        };
        Error {
            errno,
            message: message.into(),
            source: None,
            level,
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::new(libc::ENOENT, format!("{what}: no such file or directory"))
    }

    pub fn read_only(what: impl fmt::Display) -> Self {
        Error::new(
            libc::EROFS,
            format!("{what}: this part of the VM0 tree is read-only"),
        )
    }

    /// Keeps `cause` as the failure underneath this one.
    pub fn caused_by(mut self, cause: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    /// Logs this error at `level` rather than the one its errno gives.
    pub fn at_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// The message followed by each cause underneath that it does not already say, for the log.
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut cause: Option<&(dyn StdError + 'static)> = self.source.as_deref().map(|e| e as _);
        while let Some(e) = cause {
            // An io error in people's words: without Rust's ` (os error N)`.
            let text = match e.downcast_ref::<std::io::Error>() {
                Some(io) => io_message(io),
                None => e.to_string(),
            };
            if !out.contains(&text) {
                out.push_str(": caused by: ");
                out.push_str(&text);
            }
            cause = e.source();
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::new(e.errno(), e.to_string()).caused_by(e)
    }
}

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        Error::new(e.errno(), e.to_string()).caused_by(e)
    }
}

impl From<StageError> for Error {
    fn from(e: StageError) -> Self {
        Error::new(e.errno(), e.message)
    }
}

impl From<PublishError> for Error {
    fn from(e: PublishError) -> Self {
        Error::new(e.errno(), e.message)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e.raw_os_error().unwrap_or(libc::EIO), io_message(&e)).caused_by(e)
    }
}

/// An io error as a sentence for people: the system's words without Rust's ` (os error N)` suffix.
pub fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match (e.raw_os_error(), text.rfind(" (os error ")) {
        (Some(_), Some(at)) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_name_is_quiet_and_a_failure_is_not() {
        assert_eq!(Error::not_found("agents/x").level, Level::DEBUG);
        assert_eq!(
            Error::new(libc::ENODATA, "no attribute").level,
            Level::DEBUG
        );
        assert_eq!(Error::read_only("runs").level, Level::WARN);
        let loud = Error::new(libc::EIO, "upload failed").at_level(Level::ERROR);
        assert_eq!(loud.level, Level::ERROR);
    }

    #[test]
    fn an_io_error_says_what_happened_without_its_number() {
        let e = Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.errno, libc::ENOSPC);
        assert_eq!(e.chain(), "No space left on device");
    }

    #[test]
    fn the_chain_names_every_cause_once() {
        let api = ApiError::http("PUT /v1/volumes/v1", 507, None, "full".into());
        let cache = CacheError::Api {
            archive: "volumes/data@1234abcd".into(),
            source: Box::new(api.clone()),
        };
        let error = Error::new(libc::ENOSPC, "volumes/data: the upload failed").caused_by(cache);
        let chain = error.chain();
        assert!(chain.starts_with("volumes/data: the upload failed: caused by: "));
        assert!(chain.contains("volumes/data@1234abcd"), "{chain}");
        assert_eq!(chain.matches(&api.to_string()).count(), 1, "{chain}");
        let direct = Error::from(api.clone());
        assert_eq!(
            direct.chain(),
            api.to_string(),
            "a cause the message already says"
        );
        assert!(direct.source.is_some());
    }
}
