//! One process per cache directory: an exclusive `flock` on `<dir>/lock`, held for the cache's lifetime.
//!
//! Two processes sharing a cache would evict and extract under each other. A `flock` is released by the kernel
//! when its process ends however it ends, so a crash leaves no stale lock to clean up. The holder writes its pid
//! into the file, so that a refused process can say which process holds the directory; and `check_free` lets
//! `vm0fs mount` ask before it does anything else, so that the refusal is the first thing it says.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::layout::Layout;

/// Takes the lock of the cache in `layout`, failing at once (`WouldBlock`, naming the holder) if another process
/// holds it; writes this process's pid into it.
pub(super) fn lock_exclusive(layout: &Layout) -> io::Result<File> {
    let path = layout.lock_file();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)?;
    // SAFETY: flock only uses the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(in_use(layout.root(), holder(&mut file)));
        }
        return Err(err);
    }
    file.set_len(0)?;
    file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
    Ok(file)
}

/// Fails as `lock_exclusive` would if another process holds the cache in `dir`; takes nothing.
pub(super) fn check_free(dir: &Path) -> io::Result<()> {
    let layout = Layout::new(dir.to_path_buf());
    let mut file = match File::open(layout.lock_file()) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: flock only uses the descriptor, which `file` keeps open; closing it releases the lock.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(in_use(dir, holder(&mut file)));
        }
        return Err(err);
    }
    Ok(())
}

/// The pid the holder wrote, if it has written it yet.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn in_use(dir: &Path, holder: Option<u32>) -> io::Error {
    let by = holder.map_or_else(
        || "another vm0fs process".to_string(),
        |pid| format!("vm0fs process {pid}"),
    );
    io::Error::new(
        io::ErrorKind::WouldBlock,
        format!(
            "the cache directory {} is in use by {by} (a mount, or one still publishing after its unmount); wait \
             for it to end, or give each mount its own cache directory (--cache-dir)",
            dir.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_cache_names_its_holder_and_a_free_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().to_path_buf());
        check_free(dir.path()).expect("no lock file yet: free");
        let held = lock_exclusive(&layout).unwrap();
        let refused = check_free(dir.path()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::WouldBlock);
        let said = refused.to_string();
        assert!(
            said.contains(&format!("in use by vm0fs process {}", std::process::id())),
            "{said}"
        );
        assert!(lock_exclusive(&layout).is_err(), "a second holder");
        drop(held);
        check_free(dir.path()).expect("free once the holder closed it");
        lock_exclusive(&layout).expect("taken again");
    }
}
