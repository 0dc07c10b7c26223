//! What can go wrong when the cache fetches an archive, and the errno each failure becomes.
//!
//! Two layers: `Failure` is what one download attempt reports (internal; it says whether a retry may help),
//! and `CacheError` is what `fetch` returns after retries (public; `Clone` because every thread waiting on the
//! same single-flight download receives the same error). The errno table lives here, in `CacheError::errno`,
//! so the filesystem core never guesses: a limit the user can raise is `EFBIG`, a full disk keeps `ENOSPC`,
//! an API answer keeps its own errno, and a download that kept failing is `EIO`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::{ApiError, ApiErrorKind};

/// Why `fetch` could not provide the extracted tree of an archive version.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The version id is not 8 to 64 lowercase hex digits; it is never used as a path.
    #[error("invalid archive version id {version:?}: expected 8 to 64 lowercase hex characters")]
    InvalidVersionId { version: String },

    /// The API refused the download with an answer that retrying will not change (404, 401, ...).
    #[error("cannot download {archive}: {source}")]
    Api {
        archive: String,
        source: Box<ApiError>,
    },

    /// Every attempt failed with a transient error (network, 5xx, truncated stream).
    #[error(
        "downloading {archive} failed {attempts} times, last: {reason}; \
         check the network connection and try again"
    )]
    DownloadFailed {
        archive: String,
        attempts: u32,
        reason: String,
    },

    /// The bytes are not a valid gzip-compressed tar archive.
    #[error("{archive} is not a valid tar.gz archive: {reason}")]
    Corrupt { archive: String, reason: String },

    /// The API says the version holds more than the size limit: refused before anything is downloaded.
    #[error(
        "{archive} holds {size} bytes, more than --max-archive-size ({limit} bytes); \
         raise --max-archive-size to read it"
    )]
    LargerThanLimit {
        archive: String,
        size: u64,
        limit: u64,
    },

    /// Extraction stopped at the size limit (protects the disk from gzip bombs).
    #[error(
        "{archive} holds more than {limit} bytes when extracted; \
         if it is genuine, raise the limit with --max-archive-size"
    )]
    TooLarge { archive: String, limit: u64 },

    /// Extraction stopped at the entry-count limit.
    #[error(
        "{archive} has more than {limit} entries; \
         if it is genuine, raise the limit with --max-archive-entries"
    )]
    TooManyEntries { archive: String, limit: u64 },

    /// The disk holding the cache directory is full.
    #[error(
        "no space left on the device of the cache directory {} while extracting {archive}; \
         free some space or use a smaller cache size",
        dir.display()
    )]
    DiskFull { archive: String, dir: PathBuf },

    /// A local file-system operation in the cache directory failed.
    #[error("{archive}: {action}: {}", crate::errno::io_message(source))]
    Io {
        archive: String,
        action: String,
        source: Arc<io::Error>,
    },

    /// The thread doing the download stopped without an answer (it panicked); the next call tries again.
    #[error("the download of {archive} was abandoned; try again")]
    Abandoned { archive: String },

    /// The caller was signalled (Ctrl-C, `kill`) while it waited for the download (see `caller`).
    #[error("stopped waiting for {archive}: the caller was interrupted by a signal")]
    Interrupted { archive: String },

    /// The download stopped because every caller waiting for it gave up; nothing of it was kept.
    #[error("the download of {archive} stopped: nobody waits for it any more")]
    Unwanted { archive: String },
}

impl CacheError {
    /// The errno a filesystem operation fails with.
    ///
    /// `EFBIG` for both limits: the archive is too big for this cache's settings, which retrying will not fix
    /// (the messages name the flag to raise). An io error keeps its raw os error (`ENOSPC`, `EACCES`, ...).
    pub fn errno(&self) -> i32 {
        match self {
            CacheError::InvalidVersionId { .. } => libc::EINVAL,
            CacheError::Api { source, .. } => source.errno(),
            CacheError::TooLarge { .. }
            | CacheError::LargerThanLimit { .. }
            | CacheError::TooManyEntries { .. } => libc::EFBIG,
            CacheError::DiskFull { .. } => libc::ENOSPC,
            CacheError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            CacheError::Interrupted { .. } | CacheError::Unwanted { .. } => libc::EINTR,
            CacheError::DownloadFailed { .. }
            | CacheError::Corrupt { .. }
            | CacheError::Abandoned { .. } => libc::EIO,
        }
    }
}

/// How one download attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Starting the download (or opening one file of a `Files` download) failed.
    Api(Box<ApiError>),
    /// Reading the network stream failed (connection reset, timeout, ...).
    Transport(io::Error),
    /// The stream ended before the archive did.
    Truncated(String),
    /// The stream is complete but not a valid tar.gz.
    Corrupt(String),
    TooLarge(u64),
    TooManyEntries(u64),
    /// Every caller stopped waiting (`Partial::abandoned`).
    Unwanted,
    /// Writing to the cache directory failed; `action` says what we were doing.
    Local {
        action: String,
        error: io::Error,
    },
}

impl Failure {
    pub(crate) fn local(action: impl Into<String>, error: io::Error) -> Failure {
        Failure::Local {
            action: action.into(),
            error,
        }
    }

    /// Whether starting the download again from scratch may succeed. Not while the API is known to be out of
    /// reach: the next attempt would be held back too, and the caller would only wait for the same answer.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Failure::Api(e) => e.is_retryable() && e.kind != ApiErrorKind::Offline,
            Failure::Transport(_) | Failure::Truncated(_) => true,
            _ => false,
        }
    }

    /// The public error, once no more attempts will be made.
    pub(crate) fn into_cache_error(
        self,
        archive: &str,
        dir: &std::path::Path,
        attempts: u32,
    ) -> CacheError {
        let archive = archive.to_string();
        if self.is_retryable() {
            return CacheError::DownloadFailed {
                archive,
                attempts,
                reason: self.to_string(),
            };
        }
        match self {
            Failure::Api(source) => CacheError::Api { archive, source },
            Failure::Corrupt(reason) => CacheError::Corrupt { archive, reason },
            Failure::TooLarge(limit) => CacheError::TooLarge { archive, limit },
            Failure::TooManyEntries(limit) => CacheError::TooManyEntries { archive, limit },
            Failure::Unwanted => CacheError::Unwanted { archive },
            Failure::Local { error, .. } if error.raw_os_error() == Some(libc::ENOSPC) => {
                CacheError::DiskFull {
                    archive,
                    dir: dir.to_path_buf(),
                }
            }
            Failure::Local { action, error } => CacheError::Io {
                archive,
                action,
                source: Arc::new(error),
            },
            // Retryable kinds were handled above; keep the compiler honest without a panic.
            Failure::Transport(_) | Failure::Truncated(_) => CacheError::DownloadFailed {
                archive,
                attempts,
                reason: "transient failure".to_string(),
            },
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Api(e) => write!(f, "{e}"),
            Failure::Transport(e) => write!(
                f,
                "reading the download failed: {}",
                crate::errno::io_message(e)
            ),
            Failure::Truncated(what) => write!(f, "the download ended early: {what}"),
            Failure::Corrupt(what) => write!(f, "invalid archive: {what}"),
            Failure::TooLarge(limit) => write!(f, "more than {limit} bytes"),
            Failure::TooManyEntries(limit) => write!(f, "more than {limit} entries"),
            Failure::Unwanted => write!(f, "every caller stopped waiting"),
            Failure::Local { action, error } => {
                write!(f, "{action}: {}", crate::errno::io_message(error))
            }
        }
    }
}
