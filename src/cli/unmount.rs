//! `vm0fs unmount`: `umount(2)`, or `fusermount3 -u` when the caller is not root, of the mount holding the path
//! given; then it waits until the process that served the mount has ended.
//!
//! The process does not end with the mount: it first publishes the volumes with unpublished changes (bounded by
//! `mount::UNMOUNT_PUBLISH_WAIT`) and makes the cache durable, and until it ends it holds the cache directory, so a
//! `vm0fs mount` right after the unmount would be refused. So the command asks the mount, before unmounting it,
//! which process serves it and what it has left to publish, takes a pidfd on that process (a pid could be reused;
//! a pidfd cannot), and after the unmount waits for the pidfd to say the process ended. On a terminal it says what
//! it waits for. Ctrl-C (caught through a pipe that `poll` watches beside the pidfd) stops the waiting, not the
//! process: that finishes in the background, and the command says so and exits 130. `--lazy` detaches a busy mount,
//! whose process lives as long as its users: it is not waited for.

use std::ffi::CString;
use std::io::{self, IsTerminal};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use super::UnmountArgs;
use super::mounts::{Probe, probe};

/// How long the process may take to end before a terminal is told that the command waits for it, when it had
/// nothing left to publish (with volumes to publish, it is told at once).
const QUIET_WAIT_MS: i32 = 1000;
/// The exit status after Ctrl-C while waiting (128 + SIGINT, as a shell reports it).
const EXIT_INTERRUPTED: i32 = 130;

pub fn run(args: &UnmountArgs) -> i32 {
    // A path inside a mount names that mount; any other path (another user's mount, as root) is taken as given.
    let path = match super::mounts::mount_holding(&args.mountpoint) {
        Ok((mount, _)) => mount,
        Err(_) => args.mountpoint.clone(),
    };
    let path = &path;
    let serving = if args.lazy { None } else { Serving::of(path) };
    match unmount(path, args.lazy) {
        Ok(()) => serving.map_or(0, |s| s.wait_for_end()),
        Err(e) => {
            let hint = match e.raw_os_error() {
                Some(libc::EBUSY) => {
                    "; a process is using it (see `fuser -m`), or use --lazy to detach it now"
                }
                Some(libc::EINVAL) => "; it is not a mount point",
                _ => "",
            };
            eprintln!(
                "vm0fs: cannot unmount {}: {}{hint}",
                path.display(),
                crate::errno::io_message(&e)
            );
            1
        }
    }
}

/// The process serving a live mount, held by a pidfd, and the volumes it said it has left to publish.
struct Serving {
    pid: u32,
    pidfd: OwnedFd,
    unpublished: Vec<String>,
    /// Readable once Ctrl-C came: the read end of the pipe the signal handler writes to. The handler is
    /// installed before the unmount, so that no Ctrl-C from then on ends the command without a word.
    interrupted: UnixStream,
}

impl Serving {
    /// Asks the mount at `path`; `None` when it cannot say (dead, silent, not a vm0fs mount) or its process cannot
    /// be held (gone already, or another user's).
    fn of(path: &Path) -> Option<Serving> {
        let Probe::Live(status) = probe(path) else {
            return None;
        };
        let pid = libc::pid_t::try_from(status.pid).ok()?;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor, or -1; nothing else is touched.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (interrupted, on_interrupt) = UnixStream::pair().ok()?;
        signal_hook::low_level::pipe::register(libc::SIGINT, on_interrupt).ok()?;
        Some(Serving {
            pid: status.pid,
            pidfd,
            unpublished: status.unpublished,
            interrupted,
        })
    }

    /// Waits until the process has ended: 0 then, `EXIT_INTERRUPTED` after Ctrl-C (the process goes on).
    fn wait_for_end(&self) -> i32 {
        let terminal = io::stderr().is_terminal();
        let mut told = terminal && !self.unpublished.is_empty();
        if told {
            self.tell();
        }
        loop {
            let mut fds =
                [self.pidfd.as_raw_fd(), self.interrupted.as_raw_fd()].map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
            let timeout = if told { -1 } else { QUIET_WAIT_MS };
            // SAFETY: a valid array of two pollfds, owned by this frame, for the duration of the call.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
            if ready < 0 {
                let error = io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                eprintln!(
                    "vm0fs: unmounted, but cannot wait for vm0fs process {} to end: {}",
                    self.pid,
                    crate::errno::io_message(&error)
                );
                return 0;
            }
            if fds[0].revents != 0 {
                return 0;
            }
            if fds[1].revents != 0 {
                eprintln!(
                    "vm0fs: stopped waiting; vm0fs process {} finishes in the background{} (a mount on its cache \
                     directory is refused until it has ended)",
                    self.pid,
                    self.publishing_what()
                );
                return EXIT_INTERRUPTED;
            }
            if terminal && !told {
                self.tell();
            }
            told = true;
        }
    }

    fn tell(&self) {
        eprintln!(
            "vm0fs: unmounted; waiting for vm0fs process {} to end{} (Ctrl-C leaves it to finish in the background)",
            self.pid,
            self.publishing_what()
        );
    }

    /// `: it publishes volumes/a, volumes/b first`, or nothing when it had nothing to publish.
    fn publishing_what(&self) -> String {
        if self.unpublished.is_empty() {
            String::new()
        } else {
            format!(": it publishes {} first", self.unpublished.join(", "))
        }
    }
}

/// Unmounts `path`; as a non-root user falls back to `fusermount3 -u` (which may unmount the user's own mounts).
pub fn unmount(path: &std::path::Path, lazy: bool) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c_path.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(libc::EPERM) {
        return Err(error);
    }
    let mut command = Command::new("fusermount3");
    command.arg("-u");
    if lazy {
        command.arg("-z");
    }
    let status = command.arg("--").arg(path).status().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("not permitted, and fusermount3 could not run ({e}); install fuse3"),
        )
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u failed ({status})"
        )))
    }
}
