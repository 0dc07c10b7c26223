//! Answering on the thread that read the request, unless the answer needs something that can wait.
//!
//! Most requests of a busy mount are about things already in memory or in the cache (a cached tree's lookups and
//! attributes, a fresh listing), and handing each to a worker thread costs more than answering it. A few need the
//! network (an expired listing, a download, a re-download after an eviction), and those must not hold up the
//! kernel's reader threads. Which is which is known only deep inside the core, so rather than guess beforehand,
//! the adapter runs the request here under a "must not wait" flag (a thread-local, set only for the call): the
//! few places that can wait (the API caches' fetches in `meta`, the archive cache's `fetch` and `entry` in
//! `tree`, a live log's fetch) call `may_wait()` before they would, and when it refuses, the request gives up
//! with nothing done and the adapter runs it again on a worker. Everything before those places is reads of memory
//! and of the local disk, so trying first costs little. A panic inside is caught here as the worker pool catches
//! it, so that it can never take a reader thread down with it.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::error::{Error, Result};

thread_local! {
    static MUST_NOT_WAIT: Cell<bool> = const { Cell::new(false) };
}

const WOULD_WAIT: &str = "this request has to wait; it goes to a worker";

/// Runs `op` with waiting forbidden: `None` if it stopped where it would have waited (to be run again where it
/// may), else its result. A panic becomes `EIO`.
pub(super) fn without_waiting<T>(op: impl FnOnce() -> Result<T>) -> Option<Result<T>> {
    MUST_NOT_WAIT.with(|flag| flag.set(true));
    let result = catch_unwind(AssertUnwindSafe(op));
    MUST_NOT_WAIT.with(|flag| flag.set(false));
    match result {
        Ok(Err(e)) if e.errno == libc::EWOULDBLOCK && e.message == WOULD_WAIT => None,
        Ok(result) => Some(result),
        Err(_) => {
            tracing::error!(
                "a filesystem request panicked; it was answered with EIO and the mount goes on"
            );
            Some(Err(Error::new(libc::EIO, "the request panicked")))
        }
    }
}

/// Called where the core is about to wait (for the network or a download): an error if waiting is forbidden on
/// this thread now, which the request passes up unchanged.
pub(super) fn may_wait() -> Result<()> {
    if MUST_NOT_WAIT.with(Cell::get) {
        Err(Error::new(libc::EWOULDBLOCK, WOULD_WAIT))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_would_wait_gives_up_and_may_wait_elsewhere() {
        assert!(without_waiting(|| may_wait().map(|()| 1)).is_none());
        assert_eq!(without_waiting(|| Ok(2)).unwrap().unwrap(), 2);
        assert!(may_wait().is_ok(), "the flag is only set during the call");
        let other = without_waiting::<()>(|| Err(Error::new(libc::EWOULDBLOCK, "busy")));
        assert_eq!(other.unwrap().unwrap_err().errno, libc::EWOULDBLOCK);
    }

    #[test]
    fn a_panic_is_answered_with_eio() {
        let answer = without_waiting::<()>(|| panic!("test panic"));
        assert_eq!(answer.unwrap().unwrap_err().errno, libc::EIO);
        assert!(may_wait().is_ok());
    }
}
