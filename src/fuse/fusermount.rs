//! Mounting through `fusermount3` with auto-unmount, done here rather than by fuser.
//!
//! `fusermount3` (setuid root, from Debian's `fuse3`) is how a user other than root mounts, and with
//! `auto_unmount` it stays behind holding one end of a socket, and unmounts when the other end closes, that is
//! when vm0fs dies, even by `kill -9`. fuser 0.18 would do this itself, but (1) it refuses auto-unmount for a
//! private mount (`SessionACL::Owner`) and so asks `fusermount3` for `allow_other`, which a normal user may only
//! use with `user_allow_other` in `/etc/fuse.conf`: a normal user got no auto-unmount at all; and (2) the helper
//! unmounts only if opening the mount point fails with `ENOTCONN`, that is once the kernel has cut the FUSE
//! connection (when the last `/dev/fuse` file is released). When a process dies, the kernel closes its
//! descriptors in increasing order but releases the files afterwards, last-queued first (deferred `fput`s run as
//! task work, which current kernels run in reverse order of queueing), rescheduling between them. fuser's socket
//! usually had a higher number than `/dev/fuse`, so it was released first: on a loaded machine the helper could
//! wake, open the mount point while the connection still lived, get `ECONNABORTED` when it was cut a moment
//! later instead of `ENOTCONN`, and leave a dead mount behind (a `kill -9` test that passes alone in half a
//! second found the mount still there after a minute).
//!
//! (3) `fusermount3` 3.14 (Debian 12) opens the mount point as root to see `ENOTCONN`, and a private mount (no
//! `allow_other`) refuses root with `EACCES` first, so it never unmounts a normal user's private mount. For that
//! case vm0fs starts its own watcher (`watch_for_death`): a shell in a session of its own that waits for
//! end-of-file on a pipe only vm0fs holds, then, if the mount point no longer answers `stat`, runs
//! `fusermount3 -u -z` on it, as the user (which `fusermount3` allows for the user's own mounts).
//!
//! So vm0fs speaks the small protocol itself: a socket pair, `fusermount3 -o <options>,auto_unmount -- <dir>` with
//! `_FUSE_COMMFD` naming the child's end, the `/dev/fuse` descriptor received over the socket (close-on-exec from
//! the start) and renumbered above our end of the socket, so that it is released first; then `Session::from_fd`. vm0fs unmounts by itself
//! (`cli::unmount`), so the helper only ever acts on a death.

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The helper, unless `FUSERMOUNT_PATH` names another (as fuser reads it too).
fn helper() -> std::ffi::OsString {
    std::env::var_os("FUSERMOUNT_PATH").unwrap_or_else(|| "fusermount3".into())
}

/// Mounts `mountpoint` with `options` (as `fusermount3 -o` takes them) plus `auto_unmount`; returns the
/// `/dev/fuse` descriptor of the new mount. `private`: the mount has no `allow_other`.
pub(super) fn mount(
    mountpoint: &Path,
    options: &[String],
    private: bool,
) -> std::io::Result<OwnedFd> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new(helper());
    command
        .arg("-o")
        .arg(format!("{},auto_unmount", options.join(",")))
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs_fd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure only calls fcntl(2), which is async-signal-safe, on a descriptor open in the child.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(theirs_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    drop(theirs);
    match receive_fd(&ours) {
        Ok(fuse) => {
            // The helper lives on until vm0fs ends; its stderr is not read any more.
            drop(child.stderr.take());
            // SAFETY: geteuid cannot fail and touches no memory.
            if private && unsafe { libc::geteuid() } != 0 {
                watch_for_death(mountpoint);
            }
            Ok(order_for_death(ours, fuse))
        }
        Err(e) => {
            let mut said = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut said);
            }
            let _ = child.wait();
            let said = said.trim();
            Err(std::io::Error::new(
                e.kind(),
                if said.is_empty() {
                    format!("{} gave no descriptor: {e}", helper().to_string_lossy())
                } else {
                    said.to_string()
                },
            ))
        }
    }
}

/// Receives the one descriptor `fusermount3` sends (SCM_RIGHTS), close-on-exec.
fn receive_fd(socket: &UnixStream) -> std::io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = [0u8; 64];
    // SAFETY: an all-zero msghdr is valid; its pointers are set below to buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = space.len();
    let n = loop {
        // SAFETY: `msg` points at live buffers of the stated sizes.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the helper ended without sending a descriptor",
        ));
    }
    // SAFETY: recvmsg filled `msg`; the CMSG macros walk only within `msg_control`/`msg_controllen`.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
            if fd >= 0 {
                return Ok(OwnedFd::from_raw_fd(fd));
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the helper's message held no descriptor",
    ))
}

/// Keeps `socket` open for the life of the process, under a number below `fuse`, which is renumbered above it if
/// needed (see the module doc): returns the `/dev/fuse` descriptor to serve.
fn order_for_death(socket: UnixStream, fuse: OwnedFd) -> OwnedFd {
    let socket_fd = socket.as_raw_fd();
    // Open until the process ends: its closing at death is what tells the helper.
    std::mem::forget(socket);
    if fuse.as_raw_fd() > socket_fd {
        return fuse;
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on an open descriptor returns a new one, owned by nobody else.
    let moved = unsafe { libc::fcntl(fuse.as_raw_fd(), libc::F_DUPFD_CLOEXEC, socket_fd + 1) };
    if moved < 0 {
        tracing::warn!(
            "could not renumber /dev/fuse above the auto-unmount socket: {}; a kill -9 may leave a dead mount",
            std::io::Error::last_os_error()
        );
        return fuse;
    }
    // SAFETY: `moved` is open and ours alone; the original closes when `fuse` drops here.
    unsafe { OwnedFd::from_raw_fd(moved) }
}

/// The watcher of point (3) of the module doc. Its pipe's write end is close-on-exec and kept for the life of the
/// process; a watcher that cannot start only costs the auto-unmount, which is said.
fn watch_for_death(mountpoint: &Path) {
    const SCRIPT: &str = r#"read -r _; stat -- "$1" >/dev/null 2>&1 || exec "$2" -u -z -q -- "$1""#;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg("vm0fs-watch")
        .arg(mountpoint)
        .arg(helper())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe; it keeps a Ctrl-C at vm0fs's terminal from reaching the watcher.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    match command.spawn() {
        Ok(mut watcher) => {
            // Never written; its closing when vm0fs ends (however it ends) is the signal.
            std::mem::forget(watcher.stdin.take());
            tracing::debug!("watcher {} unmounts if vm0fs dies", watcher.id());
        }
        Err(e) => tracing::warn!(
            "could not start the watcher that unmounts {} if vm0fs is killed: {e}; after a kill -9, run \
             `vm0fs unmount {}`",
            mountpoint.display(),
            mountpoint.display()
        ),
    }
}
