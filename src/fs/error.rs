//! The filesystem core's error: an errno and a sentence.
//!
//! Every failure a FUSE request can meet becomes an `Error` with the errno the kernel gets and a message that is
//! logged. The errno is decided where the failure is understood (the API error table in `api::error`, the cache's
//! own table, or here for the namespace's cases), so the adapter only forwards it.

use std::fmt;

use crate::api::ApiError;
use crate::cache::CacheError;

#[derive(Debug, Clone)]
pub struct Error {
    pub errno: i32,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Error {
            errno,
            message: message.into(),
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

    /// Whether this error is an expected answer (a name or an attribute that does not exist) rather than a failure
    /// worth a warning.
    pub fn is_quiet(&self) -> bool {
        self.errno == libc::ENOENT || self.errno == libc::ENODATA
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::new(e.errno(), e.to_string())
    }
}

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        Error::new(e.errno(), e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e.raw_os_error().unwrap_or(libc::EIO), io_message(&e))
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
