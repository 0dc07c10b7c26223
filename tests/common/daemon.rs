//! `Daemon`: the guard of a mount made by a background `vm0fs` (plain `vm0fs mount`, or `mount -t fuse.vm0fs`),
//! whose serving process is not a child of the test.
//!
//! The serving process is found by its PID, never by name: the process whose `/proc/PID/exe` is the `vm0fs`
//! binary built for these tests and one of whose arguments is exactly this mount point. Drop unmounts (lazily if
//! busy), waits a bounded time for that process to exit, and then sends it SIGKILL, so no test leaves a mount or
//! a daemon behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mount::{is_mounted, lazy_unmount, wait_unmounted};

const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Daemon {
    mountpoint: PathBuf,
}

impl Daemon {
    /// Guards whatever `vm0fs` mounts at `mountpoint` from now on.
    pub fn guard(mountpoint: &Path) -> Daemon {
        Daemon {
            mountpoint: mountpoint.to_path_buf(),
        }
    }

    /// The PID of the `vm0fs` process serving this mount point, if one is running.
    pub fn pid(&self) -> Option<i32> {
        let binary = Path::new(env!("CARGO_BIN_EXE_vm0fs")).canonicalize().ok()?;
        let wanted = self.mountpoint.as_os_str().as_encoded_bytes();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                (exe == binary && cmdline.split(|&b| b == 0).any(|arg| arg == wanted))
                    .then_some(pid)
            })
    }

    /// Waits (bounded) for the serving process to exit; returns whether it did.
    pub fn wait_exited(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.pid().is_some() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            let _ = std::process::Command::new("umount")
                .arg(&self.mountpoint)
                .status();
            if !wait_unmounted(&self.mountpoint, Duration::from_secs(5)) {
                lazy_unmount(&self.mountpoint);
            }
        }
        if !self.wait_exited(EXIT_TIMEOUT)
            && let Some(pid) = self.pid()
        {
            // SAFETY: kill(2) on the PID of the vm0fs process serving this test's own mount point.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
