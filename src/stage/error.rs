//! The stage's errors, each carrying the errno the filesystem answers with and a sentence naming the volume.
//!
//! One vocabulary for the whole write path: a staging operation refused (`StageError`), a rebase that stopped
//! (`RebaseError`, a `StageError` that may pass when tried again) and a publish that did not happen
//! (`PublishError`, which also says whether trying again may succeed and at which step it stopped); each answers
//! `errno()`. The conversion into the filesystem's error lives beside the filesystem's own (`fs/error.rs`).

use crate::api::ApiError;

/// A refused or failed staging operation: the errno, and a sentence naming the volume and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError {
    pub errno: i32,
    pub message: String,
}

impl StageError {
    pub(super) fn new(errno: i32, message: String) -> StageError {
        StageError { errno, message }
    }

    /// An I/O failure about `what` (a path or a label).
    pub(super) fn io(what: &str, e: std::io::Error) -> StageError {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        StageError::new(errno, format!("{what}: {e}"))
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type Result<T> = std::result::Result<T, StageError>;

/// An I/O failure about `what` (a path or a label).
pub(super) fn io_error(what: &str, e: std::io::Error) -> StageError {
    StageError::io(what, e)
}

/// Why a publish did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    pub errno: i32,
    pub message: String,
    /// Whether trying again later may succeed (network, server errors, a change during the publish).
    pub retryable: bool,
    pub(super) step: &'static str,
}

impl PublishError {
    /// The API refused or failed `step` of a publish of `label` (`volumes/<name>`).
    pub(super) fn api(label: &str, step: &'static str, e: &ApiError) -> PublishError {
        PublishError {
            errno: e.errno(),
            message: format!("{label}: {step} failed: {e}"),
            retryable: e.is_retryable() || e.status == Some(403),
            step,
        }
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A rebase that stopped: why, and whether trying again later may succeed (the tree changed meanwhile).
#[derive(Debug)]
pub struct RebaseError {
    pub error: StageError,
    pub retryable: bool,
}

impl RebaseError {
    pub fn errno(&self) -> i32 {
        self.error.errno
    }
}

impl From<StageError> for RebaseError {
    fn from(error: StageError) -> Self {
        RebaseError {
            error,
            retryable: false,
        }
    }
}

impl From<RebaseError> for PublishError {
    fn from(e: RebaseError) -> Self {
        PublishError {
            errno: e.errno(),
            message: e.error.message,
            retryable: e.retryable,
            step: "rebase",
        }
    }
}
