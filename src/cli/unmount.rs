//! `vm0fs unmount`: `umount(2)`, or `fusermount3 -u` when the caller is not root, of the mount holding the path given.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use super::UnmountArgs;

pub fn run(args: &UnmountArgs) -> i32 {
    // A path inside a mount names that mount; any other path (another user's mount, as root) is taken as given.
    let path = match super::mounts::mount_holding(&args.mountpoint) {
        Ok((mount, _)) => mount,
        Err(_) => args.mountpoint.clone(),
    };
    let path = &path;
    match unmount(path, args.lazy) {
        Ok(()) => 0,
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
