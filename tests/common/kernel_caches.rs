//! The kernel's dentry, inode and page caches are one per machine: a test that drops them (`forget.rs` writes
//! `/proc/sys/vm/drop_caches`) empties them for every mount of every suite running beside it. A test that counts
//! the requests those caches spare holds the lock shared while it counts, and the dropping test holds it
//! exclusively, so that suites run side by side (as CI and developers do) never see each other's drops.

use std::fs::File;
use std::os::fd::AsRawFd;

const LOCK: &str = "/tmp/vm0fs-tests-kernel-caches.lock";

/// Held while it lives; released when dropped (the descriptor closes).
pub struct KernelCaches(File);

impl KernelCaches {
    /// For a test whose counts rely on what the kernel caches.
    pub fn relied_on() -> KernelCaches {
        KernelCaches::take(libc::LOCK_SH)
    }

    /// For a test that drops the kernel's caches.
    pub fn dropped() -> KernelCaches {
        KernelCaches::take(libc::LOCK_EX)
    }

    fn take(op: i32) -> KernelCaches {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .unwrap_or_else(|e| panic!("cannot open {LOCK}: {e}"));
        // SAFETY: flock(2) on a descriptor that `file` keeps open.
        let locked = unsafe { libc::flock(file.as_raw_fd(), op) } == 0;
        assert!(locked, "flock {LOCK}: {}", std::io::Error::last_os_error());
        KernelCaches(file)
    }
}
