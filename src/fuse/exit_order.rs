//! The order in which a dying vm0fs lets go of its mount, so that `fusermount3`'s auto-unmount always happens.
//!
//! With auto-unmount, `fusermount3` stays behind holding one end of a socket whose other end fuser keeps; when
//! vm0fs dies (even by `kill -9`) the kernel closes its descriptors, the helper reads end-of-file, and unmounts
//! only if opening the mount point fails with `ENOTCONN`, that is once the kernel has cut the FUSE connection,
//! which it does when the last `/dev/fuse` descriptor closes. The kernel closes a dead process's descriptors in
//! increasing order, and fuser opens the socket before it receives the `/dev/fuse` descriptor, so the socket
//! (lower number) closed first: the helper could wake, open the mount point while the connection still lived,
//! get `ECONNABORTED` when it was cut a moment later instead of `ENOTCONN`, and leave a dead mount behind. This
//! was seen on a loaded machine (a `kill -9` test that passes alone in half a second found the mount still there
//! after a minute).
//!
//! The fix needs no change to fuser: after mounting, the socket that appeared is duplicated to a number above
//! every `/dev/fuse` descriptor, and that copy is kept for the life of the process. The helper's end-of-file
//! then comes only after the connection is cut. fuser's own copy still closes at unmount, which changes
//! nothing (vm0fs unmounts by itself; the helper, finding the mount gone, does nothing).

use std::collections::BTreeSet;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The descriptors open in this process now: each number with what it points at (`/dev/fuse`, `socket:[..]`).
pub(super) fn open_descriptors() -> Vec<(RawFd, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let fd: RawFd = entry.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(entry.path()).ok()?;
        Some((fd, target.to_string_lossy().into_owned()))
    })
    .collect()
}

/// Called after a mount with `before` = `open_descriptors()` from just before it: keeps, above every
/// `/dev/fuse` descriptor, a copy of each Unix stream socket the mount opened (the auto-unmount socket).
pub(super) fn close_the_helper_socket_last(before: &[(RawFd, String)]) {
    let known: BTreeSet<RawFd> = before.iter().map(|(fd, _)| *fd).collect();
    let now = open_descriptors();
    let Some(highest_fuse) = now
        .iter()
        .filter(|(_, target)| target == "/dev/fuse")
        .map(|(fd, _)| *fd)
        .max()
    else {
        return;
    };
    for (fd, target) in &now {
        if known.contains(fd) || !target.starts_with("socket:") || !is_unix_stream(*fd) {
            continue;
        }
        if *fd > highest_fuse {
            continue;
        }
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor that is open (just listed) makes a new one we own.
        let copy = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, highest_fuse + 1) };
        if copy < 0 {
            tracing::warn!(
                "could not order the auto-unmount socket after /dev/fuse: {}; a kill -9 may leave a dead mount",
                std::io::Error::last_os_error()
            );
            continue;
        }
        tracing::debug!(
            "auto-unmount socket {fd} also held as {copy}, above /dev/fuse {highest_fuse}"
        );
        // SAFETY: `copy` was just returned by fcntl, so it is open and nobody else owns it.
        let keeper = unsafe { OwnedFd::from_raw_fd(copy) };
        // Held until the process ends: its closing at death is the point.
        std::mem::forget(keeper);
    }
}

fn is_unix_stream(fd: RawFd) -> bool {
    let option = |name: libc::c_int| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`, which lives for the call.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    option(libc::SO_DOMAIN) == Some(libc::AF_UNIX)
        && option(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
}
