//! A file open for writing, as a value: `StagedWriter` counts as a writer of its volume for exactly as long as it
//! lives, and the operations that make one (`create`, `open_write`, with the copy-up of a file still read from
//! the base version) and that grow or shrink a staged file go through the mount's budget (`space`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::error::{Result, StageError, io_error};
use super::journal::Record;
use super::overlay::{Content, Node};
use super::state::State;
use super::volume::{EntryAttr, EntryKind, VolumeStage, key};

/// A file open for writing: its staged file, counted as a writer of its volume for as long as this value lives.
/// Dropping it gives the count back and tells the publisher (mountpoint-s3's `WriteHandleSlot`): an error between
/// opening and handing the handle to the kernel cannot leave a writer that never closes, which would hold off
/// every publish, adoption and discard of the volume.
pub struct StagedWriter {
    file: File,
    /// The file's permission bits when it was opened.
    mode: u32,
    volume: Arc<VolumeStage>,
    /// The length of the file counted against `--max-staged-size` for this handle: its length at open, then
    /// what `write_at` and `set_len` reserved. What the kernel wrote past it directly (FUSE passthrough) is
    /// counted when the writer is dropped.
    counted: AtomicU64,
}

impl std::fmt::Debug for StagedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedWriter")
            .field("volume", &self.volume.label())
            .field("mode", &self.mode)
            .finish()
    }
}

impl Drop for StagedWriter {
    fn drop(&mut self) {
        let len = self.file.metadata().map_or(0, |m| m.len());
        let counted = self.counted.fetch_max(len, Ordering::Relaxed);
        self.volume.space.charge(len.saturating_sub(counted));
        {
            let mut st = self.volume.lock();
            if len > counted {
                st.generation += 1;
            }
            st.writers = st.writers.saturating_sub(1);
        }
        self.volume.commit.changed();
        self.volume.changed();
    }
}

impl StagedWriter {
    fn new(file: File, mode: u32, volume: Arc<VolumeStage>) -> StagedWriter {
        let len = file.metadata().map_or(0, |m| m.len());
        StagedWriter {
            file,
            mode,
            volume,
            counted: AtomicU64::new(len),
        }
    }

    /// The staged file itself, for the kernel to read and write directly (FUSE passthrough) when
    /// `may_pass_through` allows it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether the kernel may write the staged file directly (FUSE passthrough), bypassing `write_at`: not when a
    /// write must clear set-user-ID or set-group-ID bits, which only a write seen here can do, and not once half
    /// of `--max-staged-size` is used, since what the kernel writes is only counted when the writer is dropped;
    /// from then on every write comes through `write_at`, which refuses with ENOSPC at the bound.
    pub fn may_pass_through(&self) -> bool {
        self.mode & 0o6000 == 0 && self.volume.space.may_bypass()
    }

    /// The size and times of the open file, and its permission bits: what `fstat` shows once the file has no
    /// name any more (unlinked while open, it lives until its last close).
    pub fn attr(&self) -> io::Result<EntryAttr> {
        let meta = self.file.metadata()?;
        Ok(EntryAttr {
            kind: EntryKind::File,
            size: meta.len(),
            mode: self.mode,
            mtime: meta.modified()?,
            atime: None,
            ctime: None,
            nlink: 1,
        })
    }

    /// Reads of a file open for writing see what was written.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// `fsync`: the bytes, and every change staged before, are on the local disk when this returns (a group
    /// commit, `commit`; nothing is published); the publisher's quiet period starts again.
    pub fn sync(&self) -> io::Result<()> {
        self.volume.commit.commit()?;
        self.volume.changed();
        Ok(())
    }

    /// `pwrite` into the file.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize> {
        let volume = &self.volume;
        let old = self.file.metadata().map_or(0, |m| m.len());
        let end = offset.saturating_add(data.len() as u64);
        volume.reserve(end.saturating_sub(old))?;
        let n = self
            .file
            .write_at(data, offset)
            .map_err(|e| io_error(&volume.label(), e))?;
        self.counted.fetch_max(end, Ordering::Relaxed);
        volume.lock().generation += 1;
        Ok(n)
    }

    /// `ftruncate` of the file.
    pub fn set_len(&self, size: u64) -> Result<()> {
        let volume = &self.volume;
        let old = self.file.metadata().map_or(0, |m| m.len());
        volume.reserve(size.saturating_sub(old))?;
        self.file
            .set_len(size)
            .map_err(|e| io_error(&volume.label(), e))?;
        volume.space.release(old.saturating_sub(size));
        self.counted.store(size, Ordering::Relaxed);
        volume.lock().generation += 1;
        Ok(())
    }
}

impl VolumeStage {
    /// A new empty staged file and its id. The staging directory is made only when the file cannot be created
    /// for want of it (the first file of a volume, or after a publish removed it): a `tar x` creates thousands.
    pub(super) fn new_staged_file(&self, st: &mut State) -> Result<(u64, File)> {
        let id = st.next_file;
        st.next_file += 1;
        let create = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.layout.file(id))
        };
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.layout
                    .create()
                    .map_err(|e| io_error(&self.label(), e))?;
                create()
            }
            opened => opened,
        }
        .map_err(|e| io_error(&format!("{}: a staged file", self.label()), e))?;
        Ok((id, file))
    }

    /// Creates an empty file at `path` (the caller checked that nothing is there).
    pub fn create(self: &Arc<Self>, path: &str, mode: u32) -> Result<StagedWriter> {
        let path = key(path);
        let mut st = self.lock();
        self.check_writable(&st)?;
        if st.tree.get(path).is_some() {
            return Err(self.refuse(libc::EEXIST, path, "already exists"));
        }
        let (id, file) = self.new_staged_file(&mut st)?;
        let record = Record::Put {
            path: path.to_string(),
            file: id,
            mode: mode & 0o7777,
        };
        if let Err(errno) = st.apply(&record) {
            let _ = std::fs::remove_file(self.layout.file(id));
            return Err(self.refuse(errno, path, "cannot create it"));
        }
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)?;
        st.writers += 1;
        Ok(StagedWriter::new(file, mode & 0o7777, self.clone()))
    }

    /// Opens file `path` for writing, copying it from the base version first if it is still shared with it.
    pub fn open_write(self: &Arc<Self>, path: &str, truncate: bool) -> Result<StagedWriter> {
        let path = key(path);
        let mut st = self.lock();
        self.check_writable(&st)?;
        let (content, mode) = match st.tree.get(path) {
            Some(Node::File { content, mode, .. }) => (content.clone(), *mode),
            Some(_) => return Err(self.refuse(libc::EISDIR, path, "not a file")),
            None => return Err(self.refuse(st.tree.absent(path), path, "no such file")),
        };
        let file = match content {
            Content::Staged(id) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(self.layout.file(id))
                    .map_err(|e| io_error(&format!("{}/{path}", self.label()), e))?;
                if truncate {
                    let old = file.metadata().map_or(0, |m| m.len());
                    file.set_len(0)
                        .map_err(|e| io_error(&format!("{}/{path}", self.label()), e))?;
                    self.space.release(old);
                    st.generation += 1;
                }
                file
            }
            Content::Base(_) => self.copy_up_names(&mut st, path, &content, mode, !truncate)?,
        };
        st.writers += 1;
        Ok(StagedWriter::new(file, mode, self.clone()))
    }

    /// Gives the file at `path`, still read from the base version as `content`, a staged file of its own (with
    /// its bytes when `copy`), and makes every name of it name that staged file, journaled one `Put` each.
    pub(super) fn copy_up_names(
        &self,
        st: &mut State,
        path: &str,
        content: &Content,
        mode: u32,
        copy: bool,
    ) -> Result<File> {
        let source = st.backing(&self.layout, content);
        let (id, mut file) = self.new_staged_file(st)?;
        if copy && let Err(e) = self.copy_up(&source, &mut file) {
            let _ = std::fs::remove_file(self.layout.file(id));
            return Err(e);
        }
        for name in st.tree.names_of(path) {
            let record = Record::Put {
                path: name,
                file: id,
                mode,
            };
            let _ = st.apply(&record);
            self.journal_change(st, record)?;
        }
        Ok(file)
    }

    pub(super) fn copy_up(&self, source: &Path, dest: &mut File) -> Result<()> {
        let len = std::fs::metadata(source).map_or(0, |m| m.len());
        self.reserve(len)?;
        let mut from = File::open(source).map_err(|e| io_error(&self.label(), e))?;
        io::copy(&mut from, dest)
            .and_then(|_| dest.sync_data())
            .map_err(|e| io_error(&format!("{}: copying a file to change it", self.label()), e))
    }

    /// Counts `grow` more staged bytes, or refuses with ENOSPC past `--max-staged-size`.
    pub(super) fn reserve(&self, grow: u64) -> Result<()> {
        self.space.reserve(grow).map_err(|full| {
            StageError::new(
                libc::ENOSPC,
                format!(
                    "{}: the staging area is full ({} bytes staged, --max-staged-size {}); publish with \
                     `vm0fs sync` or remove staged files",
                    self.label(),
                    full.used,
                    full.limit
                ),
            )
        })
    }

    /// `truncate(path, size)` without an open handle.
    pub fn truncate(self: &Arc<Self>, path: &str, size: u64) -> Result<()> {
        let writer = self.open_write(path, size == 0)?;
        writer.set_len(size)
    }
}
