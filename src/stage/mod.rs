//! The staging area: writable volumes, kept on local disk until they are published as new versions.
//!
//! One `VolumeStage` per volume that has been opened for its head view (`volumes/<name>/`): the tree as it is now
//! (`overlay`), over the base version's extracted tree in the archive cache, which is never written; a file is
//! copied into the staging area (`layout`) when it is first written, so untouched files keep being read from the
//! cache. Every change of names goes to the volume's `journal` before the operation returns, and a group commit
//! (`commit`) takes the journals and the written files to the disk together; the publisher (`publish`) turns the tree into one new version through the upload protocol the server speaks
//! (`upload`), rebasing the changes first when the head moved elsewhere (`rebase`); `discard` drops them. After a
//! publish the tree becomes that version's cached archive and the stage starts over from it (`VolumeStage::adopt`).
//!
//! What each call guarantees (the local disk's promise: ext4's, no less and no more):
//! - a change (a change of names: create, unlink, rename, mkdir, rmdir, chmod, symlink; or bytes written) is safe
//!   from a crash of vm0fs (`kill -9`, a panic) as soon as its call returns: it is in the journal's and the staged
//!   file's page cache, which the kernel keeps when a process dies;
//! - it is safe from a power loss once `fsync`/`fdatasync` of the file (or of any file or directory of a volume)
//!   or `vm0fs sync` has returned, and at the latest a few seconds after it was made: the group commit flushes the
//!   journal and the written files of every volume every 5 s and before every publish. After a power loss a
//!   volume comes back as of its last commit, whole (the journal's frames and the cut of a torn tail);
//! - `close` waits for nothing: the bytes are in the page cache already;
//! - none of these publishes: a publish happens after `--commit-delay` of quiet, on `vm0fs sync`, or at unmount;
//! - at the next mount the journal is replayed (the changes are visible at once) and the volume published. A
//!   publish is exactly-once because a version id is the hash of its content (`manifest`).

mod commit;
mod discard;
mod error;
mod journal;
mod layout;
mod manifest;
mod overlay;
mod publish;
mod rebase;
mod space;
mod status;
#[cfg(test)]
mod tests;
mod upload;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use crate::api::Vm0Api;
use crate::api::models::StorageKind;
use crate::cache::{ArchiveCache, ArchiveInfo, DownloadSource};
use commit::Committer;
pub use discard::Discarded;
pub use error::{PublishError, StageError};
use journal::{Journal, Record};
use layout::VolumeLayout;
pub use manifest::LocalOnly;
use manifest::{Frozen, ManifestFile};
use overlay::{Content, Node, Times, Tree};
use space::Space;
pub use status::{Mode, Phase, PublishProgress, Published};

pub type Result<T> = std::result::Result<T, StageError>;

/// How the staging area is set up (`vm0fs mount` flags).
#[derive(Debug, Clone)]
pub struct StageConfig {
    /// The cache directory; the staging area is its `stage/` subdirectory.
    pub cache_dir: PathBuf,
    /// Quiet time after the last change before a volume is published; zero turns automatic publishing off.
    pub commit_delay: Duration,
    /// Bytes of staged files past which writes fail with ENOSPC.
    pub max_staged_bytes: u64,
}

/// What kind of entry, and its target for a symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(String),
}

/// The attributes of one entry of a writable volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryAttr {
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    pub mtime: SystemTime,
    /// Access and change times set in this mount (else the modification time is shown for them).
    pub atime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
    /// Names of it: 1 for a file or symlink; a directory's own, its `.` and each subdirectory's `..`.
    pub nlink: u32,
}

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

/// The staging area of a mount.
pub struct Stage {
    root: PathBuf,
    api: Arc<dyn Vm0Api>,
    cache: Arc<ArchiveCache>,
    volumes: Mutex<HashMap<String, Arc<VolumeStage>>>,
    space: Arc<Space>,
    commit: Arc<Committer>,
    publisher: Arc<publish::Publisher>,
    heads_moved: HeadsMoved,
}

/// Called after a publish moved a volume's head, so that what caches the API's answers asks again.
pub type HeadsMoved = Arc<dyn Fn() + Send + Sync>;

impl Stage {
    /// Opens `<cache dir>/stage/` and starts the publisher, which replays and publishes what an earlier mount left.
    pub fn open(
        config: StageConfig,
        api: Arc<dyn Vm0Api>,
        cache: Arc<ArchiveCache>,
        heads_moved: HeadsMoved,
    ) -> io::Result<Arc<Stage>> {
        let root = config.cache_dir.join("stage");
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)?;
        }
        layout::remove_discarded(&root);
        let left = layout::staged_volumes(&root)?;
        let publisher = Arc::new(publish::Publisher::start(api.clone(), config.commit_delay));
        let commit = Committer::start(&root)?;
        let stage = Arc::new(Stage {
            commit,
            root,
            api,
            cache,
            volumes: Mutex::default(),
            space: Arc::new(Space::new(config.max_staged_bytes)),
            publisher,
            heads_moved,
        });
        for storage_id in left {
            match stage.replay(&storage_id) {
                Ok(v) => stage.publisher.changed(&v),
                Err(e) => tracing::error!(storage = %storage_id, error = %e,
                    "cannot replay the staged changes of a volume; they stay on disk"),
            }
        }
        Ok(stage)
    }

    fn lock_volumes(&self) -> MutexGuard<'_, HashMap<String, Arc<VolumeStage>>> {
        self.volumes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads a volume from its journal (after a crash or an unmount with changes left).
    fn replay(&self, storage_id: &str) -> Result<Arc<VolumeStage>> {
        let layout = VolumeLayout::new(&self.root, storage_id);
        let (journal, records) = Journal::open(&layout.journal())
            .map_err(|e| io_error(&format!("stage/{storage_id}/journal"), e))?;
        let Some(Record::Base { name, version }) = records.first().cloned() else {
            return Err(StageError::new(
                libc::EIO,
                format!("stage/{storage_id}/journal has no Base record"),
            ));
        };
        let volume = self.fresh(storage_id, &name, version, true, layout)?;
        {
            let mut st = volume.lock();
            for r in &records[1..] {
                if let Err(errno) = st.apply(r) {
                    tracing::warn!(volume = %volume.label(), record = ?r, errno,
                        "a journal record does not apply to the tree; skipped");
                }
            }
            st.journal = Some(journal);
            if let Some(v) = &st.base_version {
                self.cache.hold(v, true);
            }
            st.published_generation = None;
            st.delete_orphans(&volume.layout);
            self.space.charge(st.staged_bytes(&volume.layout));
        }
        tracing::info!(volume = %volume.label(), records = records.len(), "replayed the staged changes");
        Ok(self.keep(storage_id, volume))
    }

    /// A volume with no staged changes, over `version`.
    fn fresh(
        &self,
        storage_id: &str,
        name: &str,
        version: Option<String>,
        has_files: bool,
        layout: VolumeLayout,
    ) -> Result<Arc<VolumeStage>> {
        let label = format!("volumes/{name}");
        let (tree, base_root) = match &version {
            Some(v) if has_files => match self.base_root(storage_id, &label, v) {
                Ok(root) => (
                    walk_base(&root).map_err(|e| io_error(&label, e))?,
                    Some(root),
                ),
                // A version with no files has no archive (CONTRACT.md 6.4): an empty tree.
                Err(e) if e.errno == libc::ENOENT => (Tree::default(), None),
                Err(e) => return Err(e),
            },
            _ => (Tree::default(), None),
        };
        Ok(Arc::new_cyclic(|me| VolumeStage {
            me: me.clone(),
            publisher: Arc::downgrade(&self.publisher),
            storage_id: storage_id.to_string(),
            name: name.to_string(),
            layout,
            api: self.api.clone(),
            cache: Arc::downgrade(&self.cache),
            space: self.space.clone(),
            commit: self.commit.clone(),
            heads_moved: self.heads_moved.clone(),
            state: Mutex::new(State {
                tree,
                base_hashes: Arc::new(match (&version, &base_root) {
                    (Some(v), Some(_)) => self.cache.hashes(v),
                    _ => HashMap::new(),
                }),
                base_root,
                base_version: version.clone(),
                head: version,
                journal: None,
                next_file: 0,
                generation: 0,
                published_generation: Some(0),
                writers: 0,
                broken: None,
                discarded: false,
            }),
            phase: Mutex::new(Phase::Clean),
        }))
    }

    fn base_root(&self, storage_id: &str, label: &str, version: &str) -> Result<PathBuf> {
        let info = ArchiveInfo {
            label: format!("{label}@{}", short(version)),
            size: None,
        };
        let api = self.api.clone();
        let (id, wanted) = (storage_id.to_string(), version.to_string());
        let source: Arc<DownloadSource> =
            Arc::new(move || api.download(StorageKind::Volume, &id, Some(&wanted)));
        self.cache
            .tree(version, &info, source)
            .map_err(|e| StageError::new(e.errno(), format!("{label}: {e}")))
    }

    /// The writable head view of a volume whose head is `head` (from the API). A volume without staged changes
    /// follows the head; one with changes stays on the version its changes are based on.
    /// `has_files` is false for a head version with no files (the API serves no archive for it).
    pub fn volume(
        &self,
        storage_id: &str,
        name: &str,
        head: Option<&str>,
        has_files: bool,
    ) -> Result<Arc<VolumeStage>> {
        if !layout::valid_storage_id(storage_id) {
            return Err(StageError::new(
                libc::EIO,
                format!("volumes/{name}: the API gave a storage id that cannot name a directory"),
            ));
        }
        if let Some(v) = self.lock_volumes().get(storage_id) {
            let st = v.lock();
            // Without changes, its base must still be in the cache (nothing holds it): else start again.
            let base_cached = st.base_root.as_ref().is_none_or(|root| root.is_dir());
            if st.journal.is_some() || (st.head.as_deref() == head && base_cached) {
                drop(st);
                return Ok(v.clone());
            }
        }
        let layout = VolumeLayout::new(&self.root, storage_id);
        if layout.journal().is_file() {
            return self.replay(storage_id);
        }
        let fresh = self.fresh(storage_id, name, head.map(String::from), has_files, layout)?;
        Ok(self.keep(storage_id, fresh))
    }

    /// Registers `volume` as the stage of `storage_id`, unless another thread registered one with changes
    /// meanwhile (two first accesses racing): then that one is kept and returned, so no change is ever made to a
    /// stage that is not the registered one.
    fn keep(&self, storage_id: &str, volume: Arc<VolumeStage>) -> Arc<VolumeStage> {
        let mut volumes = self.lock_volumes();
        if let Some(existing) = volumes.get(storage_id)
            && existing.lock().journal.is_some()
        {
            return existing.clone();
        }
        volumes.insert(storage_id.to_string(), volume.clone());
        volume
    }

    /// The stage of a volume that has changes (a journal), if it is one.
    pub fn changed(&self, storage_id: &str) -> Option<Arc<VolumeStage>> {
        let volume = self.lock_volumes().get(storage_id).cloned()?;
        let has_journal = volume.lock().journal.is_some();
        has_journal.then_some(volume)
    }

    /// The stage of a volume already opened by name.
    pub fn loaded(&self, storage_id: &str) -> Option<Arc<VolumeStage>> {
        self.lock_volumes().get(storage_id).cloned()
    }

    /// Publishes a volume now and waits: the new version's id, or why not.
    pub fn sync(&self, volume: &Arc<VolumeStage>) -> std::result::Result<String, PublishError> {
        self.publisher
            .sync(volume, Mode::Careful)
            .map(|p| p.version)
    }

    /// Publishes a volume now in `mode` and waits: the new version and the head it replaced, or why not.
    pub fn publish(
        &self,
        volume: &Arc<VolumeStage>,
        mode: Mode,
    ) -> std::result::Result<Published, PublishError> {
        self.publisher.sync(volume, mode)
    }

    /// Each volume with changes, or with a publish outcome to show: one line each, for `vm0fs status`.
    pub fn status(&self) -> Vec<String> {
        let mut vols: Vec<Arc<VolumeStage>> = self.lock_volumes().values().cloned().collect();
        vols.sort_by(|a, b| a.name.cmp(&b.name));
        vols.iter().filter_map(|v| v.status_line()).collect()
    }

    /// The publishes uploading now: for each, `volumes/<name>` and its bytes sent of all it sends.
    pub fn publishing(&self) -> Vec<PublishProgress> {
        let vols: Vec<Arc<VolumeStage>> = self.lock_volumes().values().cloned().collect();
        vols.iter()
            .filter_map(|v| match v.phase() {
                Phase::Publishing { done, total } => Some(PublishProgress {
                    volume: v.label(),
                    done_bytes: done,
                    total_bytes: total,
                }),
                _ => None,
            })
            .collect()
    }

    /// Group commits run so far (`vm0fs status`).
    pub fn commits(&self) -> u64 {
        self.commit.commits()
    }

    /// `fsync` of a directory of any volume: every staged change is on the local disk when this returns.
    pub fn flush_to_disk(&self) -> io::Result<()> {
        self.commit.commit()
    }

    /// At unmount: publishes what is staged, waiting at most `within`; returns the volumes that stay staged.
    pub fn shutdown(&self, within: Duration) -> Vec<String> {
        let vols: Vec<Arc<VolumeStage>> = self.lock_volumes().values().cloned().collect();
        self.publisher.drain(vols, within)
    }
}

/// The first 8 hex of a version id, the form people see.
pub fn short(version: &str) -> &str {
    version.get(..8).unwrap_or(version)
}

fn io_error(what: &str, e: io::Error) -> StageError {
    StageError::io(what, e)
}

/// The regular files of an extracted base tree, with their modes.
fn walk_base(root: &Path) -> io::Result<Tree> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            let path = rel.join(&name);
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() {
                // A cached file is stored without write bits; the volume shows the archive's mode.
                let mode = (meta.permissions().mode() & 0o7777) | 0o200;
                files.push((path.to_string_lossy().into_owned(), mode));
            }
        }
    }
    Ok(Tree::from_files(files))
}

/// The mode of every file of a version (CONTRACT.md 6.4), as the volume shows it.
const VERSION_FILE_MODE: u32 = 0o644;

/// `tree` just published: the tree of its version (its files at the version's mode, each read from the version's
/// cached tree) and the records that make `tree` from it again, the things a version cannot hold.
fn over_version(tree: &Tree) -> (Tree, Vec<Record>) {
    let files = tree
        .files()
        .map(|(p, _)| (p.to_string(), VERSION_FILE_MODE));
    let mut version = Tree::from_files(files);
    let mut local = Vec::new();
    for (path, node) in tree.entries() {
        let path = path.to_string();
        let mut records = Vec::new();
        match (node, version.get(&path)) {
            (Node::Dir { mode }, None) => records.push(Record::Mkdir {
                path: path.clone(),
                mode: *mode,
            }),
            (Node::Symlink { target }, _) => records.push(Record::Symlink {
                path: path.clone(),
                target: target.clone(),
            }),
            (
                Node::Dir { mode } | Node::File { mode, .. },
                Some(Node::Dir { mode: m } | Node::File { mode: m, .. }),
            ) if m != mode => records.push(Record::Chmod {
                path: path.clone(),
                mode: *mode,
            }),
            _ => {}
        }
        if let Node::File {
            mtime: Some(mtime), ..
        } = node
        {
            records.push(touch_record(&path, *mtime));
        }
        for record in records {
            let applied = match &record {
                Record::Mkdir { path, mode } => version.mkdir(path, *mode),
                Record::Symlink { path, target } => version.symlink(path, target),
                Record::Chmod { path, mode } => version.chmod(path, *mode),
                Record::Touch { path, secs, nanos } => {
                    version.touch(path, from_unix(*secs, *nanos))
                }
                _ => Ok(()),
            };
            if applied.is_ok() {
                local.push(record);
            }
        }
    }
    (version, local)
}

/// The journal record of `touch` of `path` to `mtime`.
fn touch_record(path: &str, mtime: SystemTime) -> Record {
    let (secs, nanos) = match mtime.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    Record::Touch {
        path: path.to_string(),
        secs,
        nanos,
    }
}

/// The time `secs` seconds and `nanos` nanoseconds after the epoch (`secs` may be negative).
fn from_unix(secs: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s) + nanos,
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos,
    }
}

/// The changing state of one volume, under its lock.
struct State {
    tree: Tree,
    /// The extracted tree of `base_version`, where `Content::Base` paths are.
    base_root: Option<PathBuf>,
    /// The SHA-256 of the base version's files, by path, where the cache kept them.
    base_hashes: Arc<HashMap<String, String>>,
    /// The version whose files `Content::Base` names (the first record of the journal).
    base_version: Option<String>,
    /// The version the changes are based on: the base, or the last version published from here.
    head: Option<String>,
    /// Opened at the first change.
    journal: Option<Journal>,
    next_file: u64,
    /// Counts every change, writes included.
    generation: u64,
    /// The generation that is known to be the head's content; `None` after a replay (the publisher checks).
    published_generation: Option<u64>,
    /// Files open for writing.
    writers: usize,
    /// Set when a journal write failed: the tree is ahead of the disk, so further changes are refused.
    broken: Option<String>,
    /// Set by `vm0fs discard`: this stage is no longer the volume's, nothing of it is published or changed.
    discarded: bool,
}

impl State {
    fn apply(&mut self, r: &Record) -> std::result::Result<(), i32> {
        match r {
            Record::Base { .. } => Ok(()),
            Record::Put { path, file, mode } => {
                self.next_file = self.next_file.max(file + 1);
                self.tree.put_file(path, Content::Staged(*file), *mode)
            }
            Record::Remove { path } if self.tree.is_dir(path) => self.tree.rmdir(path),
            Record::Remove { path } => self.tree.unlink(path).map(drop),
            Record::Mkdir { path, mode } => self.tree.mkdir(path, *mode),
            Record::Rename { from, to } => self.tree.rename(from, to).map(drop),
            Record::Chmod { path, mode } => self.tree.chmod(path, *mode),
            Record::Symlink { path, target } => self.tree.symlink(path, target),
            Record::Touch { path, secs, nanos } => self.tree.touch(path, from_unix(*secs, *nanos)),
            Record::Published { version } => {
                self.head = Some(version.clone());
                Ok(())
            }
        }
    }

    /// Sets the times a change made in this mount moves, `now`: a new entry's own, the change time of an entry
    /// whose mode or name changed, and the modification and change times of each directory that gained or lost
    /// an entry. Not journaled: after a replay the times shown are those of the files and of the mount.
    fn stamp(&mut self, change: &Record, now: SystemTime) {
        let tree = &mut self.tree;
        match change {
            Record::Mkdir { path, .. } | Record::Symlink { path, .. } => {
                tree.set_times(path, |t| {
                    *t = Times {
                        atime: Some(now),
                        mtime: Some(now),
                        ctime: Some(now),
                    }
                });
                tree.entries_changed_beside(path, now);
            }
            Record::Put { path, .. } | Record::Remove { path } => {
                tree.entries_changed_beside(path, now)
            }
            Record::Rename { from, to } if from != to => {
                tree.entries_changed_beside(from, now);
                tree.entries_changed_beside(to, now);
                tree.set_times(to, |t| t.ctime = Some(now));
            }
            Record::Chmod { path, .. } | Record::Touch { path, .. } => {
                tree.set_times(path, |t| t.ctime = Some(now))
            }
            Record::Rename { .. } | Record::Base { .. } | Record::Published { .. } => {}
        }
    }

    /// Deletes staged files no entry names (left by a crash between creating one and journaling it, or replaced).
    fn delete_orphans(&mut self, layout: &VolumeLayout) {
        let used: std::collections::HashSet<u64> = self
            .tree
            .files()
            .filter_map(|(_, c)| match c {
                Content::Staged(id) => Some(*id),
                Content::Base(_) => None,
            })
            .collect();
        for id in layout.file_ids().unwrap_or_default() {
            self.next_file = self.next_file.max(id + 1);
            if !used.contains(&id) {
                let _ = std::fs::remove_file(layout.file(id));
            } else {
                // An adoption cut short by a crash may have left it read-only (see `VolumeStage::adopt`).
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(
                    layout.file(id),
                    std::fs::Permissions::from_mode(0o600),
                );
            }
        }
    }

    fn staged_bytes(&self, layout: &VolumeLayout) -> u64 {
        self.tree
            .files()
            .filter_map(|(_, c)| match c {
                Content::Staged(id) => std::fs::metadata(layout.file(*id)).ok(),
                Content::Base(_) => None,
            })
            .map(|m| m.len())
            .sum()
    }

    fn backing(&self, layout: &VolumeLayout, content: &Content) -> PathBuf {
        match (content, &self.base_root) {
            (Content::Staged(id), _) => layout.file(*id),
            (Content::Base(rel), Some(root)) => root.join(rel),
            (Content::Base(rel), None) => PathBuf::from(rel),
        }
    }
}

/// One writable volume. See the module doc.
pub struct VolumeStage {
    storage_id: String,
    name: String,
    layout: VolumeLayout,
    /// Holds the base version out of eviction while untouched files are read from it. Weak: a stage handed to
    /// the publisher thread must not keep the cache (and its directory lock) alive after the mount.
    cache: Weak<ArchiveCache>,
    /// Where versions other than the base come from (a rebase reads the new head and the old base).
    api: Arc<dyn Vm0Api>,
    /// The mount's staged-bytes budget, shared by every volume.
    space: Arc<Space>,
    /// The group commit of the staging area (`commit`): journal records and closed files wait for it.
    commit: Arc<Committer>,
    /// Told of every change, so that the filesystem never has to; weak, as the publisher's thread holds stages.
    publisher: Weak<publish::Publisher>,
    /// This stage itself, for the messages to the publisher.
    me: Weak<VolumeStage>,
    heads_moved: HeadsMoved,
    state: Mutex<State>,
    phase: Mutex<Phase>,
}

/// Makes a path relative to the volume usable as a tree key, refusing what cannot be one.
fn key(path: &str) -> &str {
    path.trim_matches('/')
}

impl VolumeStage {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn storage_id(&self) -> &str {
        &self.storage_id
    }

    /// What the upload facade needs of this volume.
    fn upload_target(&self) -> upload::Target<'_> {
        upload::Target {
            storage_id: &self.storage_id,
            name: &self.name,
            staging: &self.layout,
        }
    }

    /// `volumes/<name>`.
    pub fn label(&self) -> String {
        format!("volumes/{}", self.name)
    }

    /// Tells the publisher that this volume changed: its quiet period starts again.
    fn changed(&self) {
        if let (Some(publisher), Some(me)) = (self.publisher.upgrade(), self.me.upgrade()) {
            publisher.changed(&me);
        }
    }

    fn refuse(&self, errno: i32, path: &str, why: &str) -> StageError {
        StageError::new(errno, format!("{}/{path}: {why}", self.label()))
    }

    fn hold_base(&self, version: &str, hold: bool) {
        if let Some(cache) = self.cache.upgrade() {
            cache.hold(version, hold);
        }
    }

    /// The version the view is based on (the head when nothing is staged).
    pub fn head(&self) -> Option<String> {
        self.lock().head.clone()
    }

    pub fn lookup(&self, path: &str) -> Option<EntryAttr> {
        let st = self.lock();
        let path = key(path);
        if path.is_empty() {
            return Some(self.attr(&st, path, &Node::Dir { mode: 0o755 }));
        }
        st.tree.get(path).map(|n| self.attr(&st, path, n))
    }

    /// The attributes of `node` at `path`. A file's change time is at least its modification time, which a
    /// write moves on its staged file.
    fn attr(&self, st: &State, path: &str, node: &Node) -> EntryAttr {
        let times = st.tree.times(path);
        let mut nlink = 1;
        let (kind, size, mode, mtime) = match node {
            Node::Dir { mode } => {
                nlink = 2 + st.tree.subdirs(path) as u32;
                (EntryKind::Dir, 0, *mode, times.mtime)
            }
            Node::Symlink { target } => (
                EntryKind::Symlink(target.clone()),
                target.len() as u64,
                0o777,
                times.mtime,
            ),
            Node::File {
                content,
                mode,
                mtime: touched,
            } => {
                let meta = std::fs::metadata(st.backing(&self.layout, content)).ok();
                let size = meta.as_ref().map_or(0, |m| m.len());
                let mtime = touched.or_else(|| meta.and_then(|m| m.modified().ok()));
                (EntryKind::File, size, *mode, mtime)
            }
        };
        let mtime = mtime.unwrap_or(SystemTime::UNIX_EPOCH);
        EntryAttr {
            kind,
            size,
            mode,
            mtime,
            atime: times.atime,
            ctime: times.ctime.map(|c| c.max(mtime)),
            nlink,
        }
    }

    /// The entries of directory `path`.
    pub fn list(&self, path: &str) -> Result<Vec<(String, EntryAttr)>> {
        let st = self.lock();
        let path = key(path);
        if !st.tree.is_dir(path) {
            return Err(self.refuse(libc::ENOTDIR, path, "not a directory"));
        }
        Ok(st
            .tree
            .children(path)
            .map(|(name, n)| {
                let child = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{path}/{name}")
                };
                (name.to_string(), self.attr(&st, &child, n))
            })
            .collect())
    }

    /// Where the bytes of file `path` can be read now. Not to be kept: a copy-up moves them.
    pub fn read_path(&self, path: &str) -> Result<PathBuf> {
        let st = self.lock();
        match st.tree.get(key(path)) {
            Some(Node::File { content, .. }) => Ok(st.backing(&self.layout, content)),
            Some(_) => Err(self.refuse(libc::EISDIR, path, "not a file")),
            None => Err(self.refuse(libc::ENOENT, path, "no such file")),
        }
    }

    fn check_writable(&self, st: &State) -> Result<()> {
        if st.discarded {
            return Err(StageError::new(
                libc::ESTALE,
                format!(
                    "{}: its staged changes were discarded; open the file again",
                    self.label()
                ),
            ));
        }
        match &st.broken {
            Some(why) => Err(StageError::new(
                libc::EIO,
                format!(
                    "{}: changes are refused until the next mount because {why}",
                    self.label()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Appends `record` to the journal (opening it, with its Base record, at the first change).
    fn journal(&self, st: &mut State, record: Record) -> Result<()> {
        let result = (|| -> io::Result<()> {
            if st.journal.is_none() {
                self.layout.create()?;
                let (mut j, old) = Journal::open(&self.layout.journal())?;
                if old.is_empty() {
                    j.append(&Record::Base {
                        name: self.name.clone(),
                        version: st.base_version.clone(),
                    })?;
                }
                if let Some(v) = &st.base_version {
                    self.hold_base(v, true);
                }
                st.journal = Some(j);
            }
            match st.journal.as_mut() {
                Some(j) => j.append(&record),
                None => Err(io::Error::other("the journal is not open")),
            }?;
            self.commit.changed();
            Ok(())
        })();
        result.map_err(|e| {
            let why = format!("the journal could not be written ({e})");
            tracing::error!(volume = %self.label(), error = %e, "{why}");
            st.broken = Some(why);
            io_error(&format!("{}/.journal", self.label()), e)
        })
    }

    /// Journals a change already applied to the tree, counts it and tells the publisher.
    fn journal_change(&self, st: &mut State, record: Record) -> Result<()> {
        st.generation += 1;
        self.journal(st, record)?;
        self.changed();
        Ok(())
    }

    /// Applies a change to the tree (which decides whether it is allowed), then journals it.
    fn change(&self, path: &str, record: Record, what: &str) -> Result<()> {
        let mut st = self.lock();
        self.check_writable(&st)?;
        if let Err(errno) = st.apply(&record) {
            return Err(self.refuse(errno, path, what));
        }
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)
    }

    fn new_staged_file(&self, st: &mut State) -> Result<(u64, File)> {
        self.layout
            .create()
            .map_err(|e| io_error(&self.label(), e))?;
        let id = st.next_file;
        st.next_file += 1;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.layout.file(id))
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
            Content::Base(_) => {
                let source = st.backing(&self.layout, &content);
                let (id, mut file) = self.new_staged_file(&mut st)?;
                if !truncate {
                    let copied = self.copy_up(&source, &mut file);
                    if let Err(e) = copied {
                        let _ = std::fs::remove_file(self.layout.file(id));
                        return Err(e);
                    }
                }
                let record = Record::Put {
                    path: path.to_string(),
                    file: id,
                    mode,
                };
                let _ = st.apply(&record);
                self.journal_change(&mut st, record)?;
                file
            }
        };
        st.writers += 1;
        Ok(StagedWriter::new(file, mode, self.clone()))
    }

    fn copy_up(&self, source: &Path, dest: &mut File) -> Result<()> {
        let len = std::fs::metadata(source).map_or(0, |m| m.len());
        self.reserve(len)?;
        let mut from = File::open(source).map_err(|e| io_error(&self.label(), e))?;
        io::copy(&mut from, dest)
            .and_then(|_| dest.sync_data())
            .map_err(|e| io_error(&format!("{}: copying a file to change it", self.label()), e))
    }

    /// Counts `grow` more staged bytes, or refuses with ENOSPC past `--max-staged-size`.
    fn reserve(&self, grow: u64) -> Result<()> {
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

    /// `utimensat` of `path` (`""`: the root). A file's modification time is set without copying it
    /// (`set_file_mtime`); the other times are kept in memory only.
    pub fn set_times(
        &self,
        path: &str,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<()> {
        let path = key(path);
        let is_file = matches!(self.lock().tree.get(path), Some(Node::File { .. }));
        if let (true, Some(mtime)) = (is_file, mtime) {
            self.set_file_mtime(path, mtime)?;
        }
        let mut st = self.lock();
        if !path.is_empty() && st.tree.get(path).is_none() {
            return Err(self.refuse(st.tree.absent(path), path, "no such file"));
        }
        let now = SystemTime::now();
        st.tree.set_times(path, |t| {
            t.atime = atime.or(t.atime);
            if !is_file {
                t.mtime = mtime.or(t.mtime);
            }
            t.ctime = Some(now);
        });
        Ok(())
    }

    /// Sets the modification time of file `path`, copying nothing: a staged file's own time, or the journaled
    /// time of a file still read from the base version.
    fn set_file_mtime(&self, path: &str, mtime: SystemTime) -> Result<()> {
        let path = key(path);
        let mut st = self.lock();
        self.check_writable(&st)?;
        match st.tree.get(path) {
            Some(Node::File {
                content: Content::Staged(id),
                ..
            }) => OpenOptions::new()
                .write(true)
                .open(self.layout.file(*id))
                .and_then(|f| f.set_modified(mtime))
                .map_err(|e| io_error(&format!("{}/{path}", self.label()), e)),
            Some(Node::File { .. }) => {
                let record = touch_record(path, mtime);
                if let Err(errno) = st.apply(&record) {
                    return Err(self.refuse(errno, path, "cannot set its time"));
                }
                self.journal_change(&mut st, record)
            }
            Some(_) => Ok(()),
            None => Err(self.refuse(st.tree.absent(path), path, "no such file")),
        }
    }

    pub fn mkdir(&self, path: &str, mode: u32) -> Result<()> {
        let path = key(path);
        let record = Record::Mkdir {
            path: path.to_string(),
            mode: mode & 0o7777,
        };
        self.change(path, record, "cannot make this directory")
    }

    pub fn symlink(&self, path: &str, target: &str) -> Result<()> {
        let path = key(path);
        let record = Record::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        };
        self.change(path, record, "cannot make this symlink")
    }

    pub fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        let path = key(path);
        let record = Record::Chmod {
            path: path.to_string(),
            mode: mode & 0o7777,
        };
        self.change(path, record, "cannot change its mode")
    }

    /// `unlink` of a file or symlink; a staged file's bytes are deleted (open handles keep them until closed).
    pub fn unlink(&self, path: &str) -> Result<()> {
        let path = key(path);
        let mut st = self.lock();
        self.check_writable(&st)?;
        let node = st
            .tree
            .unlink(path)
            .map_err(|errno| self.refuse(errno, path, "cannot remove it"))?;
        let record = Record::Remove {
            path: path.to_string(),
        };
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)?;
        self.forget(&node);
        Ok(())
    }

    pub fn rmdir(&self, path: &str) -> Result<()> {
        let path = key(path);
        let mut st = self.lock();
        self.check_writable(&st)?;
        st.tree
            .rmdir(path)
            .map_err(|errno| self.refuse(errno, path, "cannot remove this directory"))?;
        let record = Record::Remove {
            path: path.to_string(),
        };
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)
    }

    /// `rename(2)` inside the volume: a change of names, never a copy. Unless `replace` (`RENAME_NOREPLACE`),
    /// an existing `to` is `EEXIST`, decided under the volume's lock.
    pub fn rename(&self, from: &str, to: &str, replace: bool) -> Result<()> {
        let (from, to) = (key(from), key(to));
        let mut st = self.lock();
        self.check_writable(&st)?;
        if !replace && st.tree.get(to).is_some() {
            return Err(self.refuse(libc::EEXIST, to, "exists (rename without replacing)"));
        }
        let replaced = st
            .tree
            .rename(from, to)
            .map_err(|errno| self.refuse(errno, from, &format!("cannot rename it to {to:?}")))?;
        let record = Record::Rename {
            from: from.to_string(),
            to: to.to_string(),
        };
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)?;
        if let Some(node) = replaced {
            self.forget(&node);
        }
        Ok(())
    }

    /// Deletes the staged file of a node that left the tree.
    fn forget(&self, node: &Node) {
        if let Node::File { content, .. } = node {
            self.forget_content(content);
        }
    }

    /// Deletes a staged file no entry names any more.
    fn forget_content(&self, content: &Content) {
        if let Content::Staged(id) = content {
            let path = self.layout.file(*id);
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            if std::fs::remove_file(&path).is_ok() {
                self.space.release(len);
            }
        }
    }

    /// Whether the tree may differ from the head (a publish is due).
    fn dirty(&self) -> bool {
        let st = self.lock();
        st.published_generation != Some(st.generation)
    }

    /// Whether a file is open for writing.
    fn writing(&self) -> bool {
        self.lock().writers > 0
    }

    fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub fn phase(&self) -> Phase {
        self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What the publisher uploads: every file and where its bytes are, with the generation and head they are of.
    fn freeze(&self) -> (u64, Option<String>, Vec<Frozen>, LocalOnly) {
        let st = self.lock();
        let files = st
            .tree
            .files()
            .map(|(p, c)| Frozen {
                path: p.to_string(),
                source: st.backing(&self.layout, c),
                known: match c {
                    Content::Base(rel) => st.base_hashes.get(rel).cloned(),
                    Content::Staged(_) => None,
                },
            })
            .collect();
        (
            st.generation,
            st.head.clone(),
            files,
            LocalOnly::of(&st.tree),
        )
    }

    /// Records that the tree as of `generation` is `version`, now the head, and adopts it into the cache.
    fn published(&self, generation: u64, version: &str, manifest: &[ManifestFile]) -> Result<()> {
        let mut st = self.lock();
        if st.head.as_deref() != Some(version) {
            let record = Record::Published {
                version: version.to_string(),
            };
            self.journal(&mut st, record)?;
            st.head = Some(version.to_string());
        }
        if st.generation == generation {
            st.published_generation = Some(generation);
            self.adopt(&mut st, version, manifest);
        }
        drop(st);
        (self.heads_moved)();
        Ok(())
    }

    /// After the whole tree was published as `version`: its files become the version's cached archive (nothing is
    /// downloaded again) and the stage starts over from `version` with nothing staged; what a version cannot hold
    /// (symlinks, empty directories, modes) stays journaled over it, and with nothing of the kind the journal
    /// goes and the volume is read as any version is. Skipped while a file is open for writing (a later publish
    /// adopts) and for a version without files (it has no archive).
    ///
    /// The order keeps the cache right and every change whatever the moment of a crash: the entry is built and
    /// sealed beside the cache, its files hard links to the staged ones (`ArchiveCache::adopt`); the journal is
    /// rewritten to start from `version`, so that no record names a staged file any more (a crash from here
    /// replays onto `version`, read from the cache or downloaded, and deletes the staged files as orphans; before
    /// it, the cache deletes the unfinished entry at open, so the journal never names a file the cache shares);
    /// the entry is renamed into the cache; the staged files are deleted.
    fn adopt(&self, st: &mut State, version: &str, manifest: &[ManifestFile]) {
        if st.writers > 0 || st.journal.is_none() || st.tree.files().next().is_none() {
            return;
        }
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        let label = format!("{}@{}", self.label(), short(version));
        let files: Vec<(String, PathBuf)> = st
            .tree
            .files()
            .map(|(p, c)| (p.to_string(), st.backing(&self.layout, c)))
            .collect();
        let hashes: HashMap<String, String> = manifest
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect();
        cache.hold(version, true);
        let adoption = match cache.adopt(version, &files, &hashes) {
            Ok(a) => a,
            Err(e) => {
                cache.hold(version, false);
                tracing::warn!(volume = %label, error = %e,
                    "the published files could not become the version's cached archive; they stay staged");
                return;
            }
        };
        let (tree, local) = over_version(&st.tree);
        let mut records = vec![Record::Base {
            name: self.name.clone(),
            version: Some(version.to_string()),
        }];
        records.extend(local.iter().cloned());
        let rewritten = match st.journal.as_mut() {
            Some(j) => j.rewrite(&self.layout.journal(), &records),
            None => Ok(()),
        };
        let root = rewritten.and_then(|()| match adoption {
            Some(a) => a.finish(),
            None => cache
                .lookup(version)
                .ok_or_else(|| io::Error::other("the version left the cache")),
        });
        let root = match root {
            Ok(root) => root,
            Err(e) => {
                cache.hold(version, false);
                let why = format!("adopting the published files as {label} failed ({e})");
                tracing::error!(volume = %self.label(), "{why}; changes are refused until the next mount");
                st.broken = Some(why);
                return;
            }
        };
        let old = std::mem::replace(&mut st.tree, tree);
        st.base_root = Some(root);
        st.base_hashes = Arc::new(hashes);
        if let Some(v) = st.base_version.replace(version.to_string()) {
            cache.hold(&v, false);
        }
        for (_, content) in old.files() {
            if let Content::Staged(_) = content {
                self.forget_content(content);
            }
        }
        if local.is_empty() {
            st.journal = None;
            cache.hold(version, false);
            if let Err(e) = self.layout.remove() {
                tracing::warn!(volume = %self.label(), error = %e,
                    "could not delete the empty staging directory; the next mount does");
            }
        }
        tracing::info!(volume = %label, files = files.len(), "the published files are now the version's cached archive");
    }

    fn status_line(&self) -> Option<String> {
        let phase = self.phase();
        if phase == Phase::Clean && !self.dirty() {
            return None;
        }
        let st = self.lock();
        let staged = st
            .tree
            .files()
            .filter(|(_, c)| matches!(c, Content::Staged(_)))
            .count();
        let bytes = st.staged_bytes(&self.layout);
        let local = LocalOnly::of(&st.tree);
        let dirty = st.published_generation != Some(st.generation);
        drop(st);
        let mut line = format!("{}: {staged} staged file(s), {bytes} bytes", self.label());
        match (&phase, dirty) {
            (Phase::Clean, _) => line.push_str(", staged (not published yet)"),
            (p, _) => line.push_str(&format!(", {p}")),
        }
        if !local.is_empty() {
            line.push_str(&format!("; {local}"));
        }
        Some(line)
    }
}
