//! The one place for lock helpers: a poisoned lock is taken as it is.
//!
//! A mutex is poisoned when a thread panicked while holding it. A panic in one request is caught and
//! answered (EIO) so the mount goes on; every structure behind a lock is kept consistent between statements that
//! could panic, so the next caller takes the lock and its data as they are rather than panicking in turn and
//! wedging every later request (`Locked::locked`), as mountpoint-s3's `sync.rs` does.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `lock()` that takes a poisoned lock as it is.
pub trait Locked<T: ?Sized> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
