//! Finding the vm0fs mounts of this user, and asking one about itself without ever hanging on it.
//!
//! The kernel's `/proc/self/mountinfo` is the list of mounts (file system type `fuse.vm0fs`, or `fuse` with source
//! `vm0fs` for a mount made without fusermount3, which sets no subtype; owner in the `user_id=` super option), so nothing has to be registered anywhere and a crashed mount is still found. A mount
//! is asked through its hidden `.vm0fs/status` file; the read runs on a helper thread with a deadline, because a
//! mount whose process is stopped would block a plain `read(2)` for as long as it stays stopped.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::fs::MountStatus;

/// How long a mount gets to answer `.vm0fs/status`.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

/// What asking a mount gave.
pub(super) enum Probe {
    Live(Box<MountStatus>),
    /// `ENOTCONN`: the process that served it is gone.
    Dead,
    /// No answer within the deadline.
    Silent,
    Failed(String),
}

/// The mount points of this user's vm0fs mounts, in mount order.
pub(super) fn own_mounts() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    Ok(parse_mountinfo(&text, uid))
}

/// The vm0fs mounts in a `mountinfo` text that belong to `uid`.
fn parse_mountinfo(text: &str, uid: u32) -> Vec<PathBuf> {
    let owner = format!("user_id={uid}");
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let fs_type = *fields.get(dash + 1)?;
            let source = *fields.get(dash + 2)?;
            let super_options = fields.get(dash + 3)?;
            let ours = fs_type == "fuse.vm0fs" || (fs_type == "fuse" && source == "vm0fs");
            let owned = super_options.split(',').any(|o| o == owner);
            let mountpoint = fields.get(4)?;
            (ours && owned).then(|| unescape(mountpoint))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')));
        match octal.and_then(|n| u8::try_from(n).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// `path` made absolute against the working directory, with `.` and `..` resolved by name (no lookups, so nothing
/// inside a mount is touched).
pub(super) fn absolute(path: &Path) -> io::Result<PathBuf> {
    let joined = std::env::current_dir()?.join(path);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The vm0fs mount of this user that holds `path`, and `path` relative to it.
pub(super) fn mount_holding(path: &Path) -> Result<(PathBuf, PathBuf), String> {
    let shown = path.display();
    let absolute =
        absolute(path).map_err(|e| format!("{shown}: {}", crate::errno::io_message(&e)))?;
    let mounts = own_mounts().map_err(|e| {
        format!(
            "cannot read /proc/self/mountinfo: {}",
            crate::errno::io_message(&e)
        )
    })?;
    let holding = |p: &Path| {
        mounts
            .iter()
            .filter(|m| p.starts_with(m))
            .max_by_key(|m| m.as_os_str().len())
            .map(|m| (m.clone(), p.strip_prefix(m).unwrap_or(p).to_path_buf()))
    };
    if let Some(found) = holding(&absolute) {
        return Ok(found);
    }
    // A path through a symlink into a mount (e.g. ~/vm0 -> /mnt/vm0): resolve it and look again.
    absolute
        .canonicalize()
        .ok()
        .and_then(|real| holding(&real))
        .ok_or_else(|| format!("{shown} is not inside a vm0fs mount of yours (see `vm0fs status`)"))
}

/// Reads and decodes `<mountpoint>/.vm0fs/status`, giving up after `ANSWER_DEADLINE`.
pub(super) fn probe(mountpoint: &Path) -> Probe {
    let path = mountpoint.join(".vm0fs/status");
    let (tx, rx) = mpsc::channel();
    // A thread stuck in read(2) on a stopped mount is left behind; the process exits without waiting for it.
    let spawned = std::thread::Builder::new()
        .name("vm0fs-probe".into())
        .spawn(move || {
            let _ = tx.send(std::fs::read(&path));
        });
    if let Err(e) = spawned {
        return Probe::Failed(format!("cannot start a thread: {e}"));
    }
    match rx.recv_timeout(ANSWER_DEADLINE) {
        Err(_) => Probe::Silent,
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => Probe::Dead,
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            Probe::Failed("it does not publish .vm0fs/status (mounted by an older vm0fs?)".into())
        }
        Ok(Err(e)) => Probe::Failed(e.to_string()),
        Ok(Ok(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(status) => Probe::Live(Box::new(status)),
            Err(e) => Probe::Failed(format!(
                "its .vm0fs/status is not what this vm0fs reads: {e}"
            )),
        },
    }
}

/// The value of extended attribute `name` of `path`, `None` when it has none.
pub(super) fn xattr(path: &Path, name: &str) -> io::Result<Option<String>> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    let c_name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and live across the call; `buf` is writable for its length.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(err),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_of_other_types_or_users_are_skipped() {
        let text = "\
36 35 98:0 / /mnt/a rw,noatime - ext4 /dev/vda rw
40 35 0:52 / /home/me/vm0 rw,nosuid,nodev - fuse.vm0fs vm0fs rw,user_id=1000,group_id=1000
41 35 0:53 / /home/me/my\\040files rw - fuse.vm0fs vm0fs rw,user_id=1000,group_id=1000
42 35 0:54 / /home/other/vm0 rw - fuse.vm0fs vm0fs rw,user_id=1001,group_id=1001
43 35 0:55 / /home/me/s3 rw - fuse.mountpoint-s3 s3 rw,user_id=1000,group_id=1000
44 35 0:56 / /home/me/plain rw - fuse vm0fs rw,user_id=1000,group_id=1000
45 35 0:57 / /home/me/sshfs rw - fuse sshfs rw,user_id=1000,group_id=1000";
        assert_eq!(
            parse_mountinfo(text, 1000),
            [
                PathBuf::from("/home/me/vm0"),
                PathBuf::from("/home/me/my files"),
                PathBuf::from("/home/me/plain")
            ]
        );
    }

    #[test]
    fn dots_are_resolved_by_name() {
        let resolved = absolute(Path::new("/a/b/../c/./d")).unwrap();
        assert_eq!(resolved, PathBuf::from("/a/c/d"));
    }
}
