//! Who a filesystem request is waiting for, and whether that caller has stopped waiting (Ctrl-C, `kill`).
//!
//! fuser 0.18 answers the kernel's `FUSE_INTERRUPT` with `ENOSYS`, after which the kernel never sends another
//! one and waits for our answer uninterruptibly: without help, `timeout -s INT ls` or even `kill -9` of a process
//! reading a large volume would wait for the whole download. Rather than fork fuser, vm0fs looks at the caller
//! itself. The adapter runs each request under `serve`, which records the pid the kernel gives (the caller's
//! thread id); code that waits (for an archive download) calls `gave_up` at least every `POLL`, which reads
//! `/proc/<pid>/status`. The caller has given up when `SIGKILL` is pending for it (`SigPnd`: the kernel adds it
//! for any signal whose default action kills, such as an unhandled SIGINT or SIGTERM), or when a signal it has a
//! handler for (`SigCgt`) is pending (`SigPnd`, or `ShdPnd` for the whole process) and not blocked (`SigBlk`), or
//! when the process is gone. A signal that is ignored, blocked, or whose default action only stops the process
//! (Ctrl-Z) or does nothing does not end the wait: the call goes on, as it would on a local disk. The wait then
//! ends with `EINTR`, which the kernel hands back to the caller (as a libfuse file system answering
//! `FUSE_INTERRUPT` would); the download itself goes on only while someone else still waits for it.
//!
//! Limits. The pid is the one the kernel gives in the request: the caller's pid as seen from the pid namespace of
//! the process that mounted, looked up in our `/proc` (which must be that namespace's). A caller in a child
//! namespace (a container started from the mounting side) is therefore found; a caller in a namespace the mount
//! cannot see (vm0fs itself in a container, read from the host) comes with pid 0 and is never seen to give up:
//! its wait lasts as long as the download. A signal the caller handles (a shell's SIGCHLD, a `SIGWINCH`) also
//! ends a long wait with `EINTR`,
//! as with any file system that honours interrupts. A request that does not wait (a cached `stat`) never looks.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a waiting request looks at its caller.
pub const POLL: Duration = Duration::from_millis(100);

/// SIGKILL's bit in the `/proc/<pid>/status` signal masks (signal n is bit n-1).
const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);

thread_local! {
    static CURRENT: RefCell<Option<Caller>> = const { RefCell::new(None) };
}

/// The process a request is served for.
struct Caller {
    pid: u32,
    /// Once seen giving up, it is never asked again.
    gave_up: AtomicBool,
}

/// Runs `op` on behalf of the caller `pid` (as the kernel gives it; 0 for the kernel's own requests): `gave_up`
/// on this thread asks about that caller until `op` returns.
pub fn serve<T>(pid: u32, op: impl FnOnce() -> T) -> T {
    struct Reset(Option<Caller>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let caller = (pid != 0).then(|| Caller {
        pid,
        gave_up: AtomicBool::new(false),
    });
    let _reset = Reset(CURRENT.with(|c| c.replace(caller)));
    op()
}

/// Whether the caller this thread serves has given up waiting (see the module doc). A thread that serves no
/// caller (a background download, a test) never gives up.
pub fn gave_up() -> bool {
    CURRENT.with(|c| match c.borrow().as_ref() {
        None => false,
        Some(caller) if caller.gave_up.load(Ordering::Relaxed) => true,
        Some(caller) => {
            let now = process_gave_up(caller.pid);
            if now {
                tracing::debug!(
                    pid = caller.pid,
                    "the caller was signalled; it stops waiting"
                );
                caller.gave_up.store(true, Ordering::Relaxed);
            }
            now
        }
    })
}

fn process_gave_up(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => signals_end_the_wait(&status),
        // The caller is gone (or never was visible here): nobody waits for the answer.
        Err(e) => e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH),
    }
}

/// The decision on the text of a `/proc/<pid>/status`.
fn signals_end_the_wait(status: &str) -> bool {
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd") | mask("ShdPnd");
    let handled = mask("SigCgt") & !mask("SigBlk") & !mask("SigIgn");
    pending & SIGKILL_BIT != 0 || pending & handled != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pending: &str, shared: &str, blocked: &str, caught: &str) -> String {
        format!(
            "Name:\tls\nState:\tS (sleeping)\nSigQ:\t0/63\nSigPnd:\t{pending}\nShdPnd:\t{shared}\n\
             SigBlk:\t{blocked}\nSigIgn:\t0000000000000000\nSigCgt:\t{caught}\n"
        )
    }

    #[test]
    fn a_handled_pending_signal_ends_the_wait_unless_blocked_and_sigkill_always_does() {
        let none = "0000000000000000";
        let sigint = "0000000000000002";
        let sigtstp = "0000000000080000";
        let sigkill = "0000000000000100";
        assert!(!signals_end_the_wait(&status(none, none, none, sigint)));
        assert!(signals_end_the_wait(&status(sigint, none, none, sigint)));
        assert!(signals_end_the_wait(&status(none, sigint, none, sigint)));
        assert!(!signals_end_the_wait(&status(none, sigint, sigint, sigint)));
        assert!(
            !signals_end_the_wait(&status(sigtstp, none, none, none)),
            "Ctrl-Z with its default action stops the caller after the call; the call goes on"
        );
        assert!(signals_end_the_wait(&status(
            sigkill,
            none,
            "ffffffffffffffff",
            none
        )));
    }

    #[test]
    fn a_live_unsignalled_caller_waits_and_a_missing_one_does_not() {
        assert!(!serve(std::process::id(), gave_up));
        assert!(serve(u32::MAX - 1, gave_up));
        assert!(!gave_up(), "outside serve nobody gives up");
    }
}
