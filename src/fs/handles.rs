//! Open file and directory handles.
//!
//! A handle holds what was true at `open`: the rendered bytes of an API file, the open descriptor of a cached
//! archive file, or the snapshot of a directory. Holding the descriptor (not a path) is what lets a file keep
//! reading after the cache evicts its archive: on Linux the unlinked file lives until the last descriptor closes.

use crate::sync::Locked;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{Error, Result};
use super::listing::Listing;
use super::runs::NewRunWrite;

#[derive(Clone)]
pub enum Handle {
    /// Bytes rendered from the API at open.
    Content(Arc<Vec<u8>>),
    /// A file of an extracted archive.
    Disk(Arc<File>),
    /// A directory listing taken at opendir (or growing from it).
    Dir(Arc<Listing>),
    /// A run's log, read as it grows.
    Log(String),
    /// `runs/new/<agent>` open for writing.
    NewRun(Arc<Mutex<NewRunWrite>>),
    /// `runs/<id>/ctl` open for writing.
    Ctl(String),
    /// `.vm0fs/pins` open for writing.
    Pins,
    /// A file of a writable volume open for writing.
    Staged(Arc<StagedHandle>),
    /// `.vm0fs/sync` open: what the writes to it (publishes) came to, one line each.
    Sync(Arc<Mutex<Vec<u8>>>),
}

/// A file of a volume open for writing: the volume's stage and the staged file.
pub struct StagedHandle {
    pub volume: Arc<crate::stage::VolumeStage>,
    pub writer: crate::stage::StagedWriter,
}

/// The open handles by number, each with the inode it was opened on when that matters (a volume file open for
/// writing: the kernel's `fstat` names only the inode, and an unlinked file has no other way to be found).
pub struct Handles {
    open: Mutex<HashMap<u64, (Handle, Option<u64>)>>,
    next: AtomicU64,
}

impl Handles {
    pub fn new() -> Self {
        Handles {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    pub fn insert(&self, handle: Handle) -> u64 {
        self.insert_for(None, handle)
    }

    /// Inserts a handle opened on inode `ino`, findable by it (`staged_on`).
    pub fn insert_for(&self, ino: Option<u64>, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(fh, (handle, ino));
        fh
    }

    pub fn remove(&self, fh: u64) -> Option<Handle> {
        self.lock().remove(&fh).map(|(h, _)| h)
    }

    pub fn get(&self, fh: u64) -> Result<Handle> {
        self.lock()
            .get(&fh)
            .map(|(h, _)| h.clone())
            .ok_or_else(|| Error::new(libc::EBADF, format!("file handle {fh} is not open")))
    }

    /// A volume file open for writing on inode `ino`, if there is one.
    pub fn staged_on(&self, ino: u64) -> Option<Arc<StagedHandle>> {
        self.lock().values().find_map(|(h, on)| match h {
            Handle::Staged(staged) if *on == Some(ino) => Some(staged.clone()),
            _ => None,
        })
    }

    pub fn dir(&self, fh: u64) -> Result<Arc<Listing>> {
        match self.get(fh)? {
            Handle::Dir(entries) => Ok(entries),
            _ => Err(Error::new(libc::ENOTDIR, "not a directory handle")),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Handle, Option<u64>)>> {
        self.open.locked()
    }
}

/// Reads a handle whose bytes are held here (rendered content or a cached file).
pub fn read_static(handle: &Handle, offset: u64, size: u32) -> Result<Vec<u8>> {
    match handle {
        Handle::Content(bytes) => Ok(slice_at(bytes, offset, size).to_vec()),
        Handle::Disk(file) => read_full(file, offset, size),
        Handle::Dir(_) => Err(Error::new(libc::EISDIR, "is a directory")),
        Handle::Staged(h) => {
            let mut buf = vec![0u8; size as usize];
            let n = h.writer.read_at(&mut buf, offset)?;
            buf.truncate(n);
            Ok(buf)
        }
        Handle::Sync(outcome) => {
            let outcome = outcome.locked();
            Ok(slice_at(&outcome, offset, size).to_vec())
        }
        Handle::Log(_) | Handle::NewRun(_) | Handle::Ctl(_) | Handle::Pins => {
            Err(Error::new(libc::EBADF, "this file is open for writing"))
        }
    }
}

pub fn slice_at(bytes: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let end = start.saturating_add(size as usize).min(bytes.len());
    &bytes[start..end]
}

/// Reads `size` bytes at `offset`, short only at end of file (the kernel takes a short read as EOF).
fn read_full(file: &File, offset: u64, size: u32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; size as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}
