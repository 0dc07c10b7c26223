//! The staging area: writable volumes, kept on local disk until they are published as new versions.
//!
//! This file is the registry (`Stage`: open, replay, which stage a volume is, status, shutdown). One
//! `VolumeStage` (`volume`, its locked `state`) per volume that has been opened for its head view
//! (`volumes/<name>/`): the tree as it is now (`overlay`), over the base version's extracted tree in the archive
//! cache (`base`), which is never written; a file is copied into the staging area (`layout`) when it is first
//! written (`writer`, within the mount's budget, `space`), so untouched files keep being read from the cache.
//! Every change of names goes to the volume's `journal` before the operation returns (a group commit, `commit`,
//! takes the journals and the written files to the disk together), then is told to the publisher thread
//! (`publisher`), which turns the tree into one new version (`publish`) through the upload protocol the server
//! speaks (`upload`), rebasing the changes first when the head moved elsewhere (`rebase`, `records`); `discard`
//! drops them. After a publish the tree becomes that version's cached archive and the stage
//! starts over from it (`adopt`).
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

mod adopt;
mod base;
mod commit;
mod discard;
mod error;
mod journal;
mod layout;
mod manifest;
mod overlay;
mod publish;
mod publisher;
mod rebase;
mod records;
mod shape;
mod space;
mod state;
mod status;
#[cfg(test)]
mod tests;
mod upload;
mod volume;
mod writer;

use crate::sync::Locked;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::api::Vm0Api;
use crate::cache::ArchiveCache;
use base::walk_base;
use commit::Committer;
pub use discard::Discarded;
use error::io_error;
pub use error::{PublishError, Result, StageError};
use journal::{Journal, Record};
use layout::VolumeLayout;
pub use manifest::LocalOnly;
use overlay::Tree;
use space::Space;
use state::State;
pub use status::{Mode, Phase, PublishProgress, Published, RetryNote, short};

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

pub use volume::{EntryAttr, EntryKind, HeadsMoved, VolumeStage};
pub use writer::StagedWriter;

/// The staging area of a mount.
pub struct Stage {
    root: PathBuf,
    api: Arc<dyn Vm0Api>,
    cache: Arc<ArchiveCache>,
    volumes: Mutex<HashMap<String, Arc<VolumeStage>>>,
    space: Arc<Space>,
    commit: Arc<Committer>,
    publisher: Arc<publisher::Publisher>,
    heads_moved: HeadsMoved,
}

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
        let publisher = Arc::new(publisher::Publisher::start(
            api.clone(),
            config.commit_delay,
        ));
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
        self.volumes.locked()
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
        let notify: Weak<dyn volume::Notify> =
            Arc::downgrade(&self.publisher) as Weak<publisher::Publisher>;
        Ok(Arc::new_cyclic(|me| VolumeStage {
            me: me.clone(),
            following: Mutex::default(),
            publisher_told: AtomicBool::new(false),
            last_change: Mutex::new(Instant::now()),
            long_steps: AtomicUsize::new(0),
            publisher: notify,
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
            shape: Mutex::new(Default::default()),
        }))
    }

    fn base_root(&self, storage_id: &str, label: &str, version: &str) -> Result<PathBuf> {
        base::version_tree(&self.cache, &self.api, storage_id, label, version)
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
            if !st.discarded
                && (st.journal.is_some() || (st.head.as_deref() == head && base_cached))
            {
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

    /// Whether the stage of `storage_id` runs a step that holds its lock over the whole tree now
    /// (`VolumeStage::busy`); memory only, no lock of the volume taken.
    pub fn busy(&self, storage_id: &str) -> bool {
        self.lock_volumes()
            .get(storage_id)
            .is_some_and(|v| v.busy())
    }

    /// The stage of a volume that has changes (a journal), if it is one.
    pub fn changed(&self, storage_id: &str) -> Option<Arc<VolumeStage>> {
        let volume = self.lock_volumes().get(storage_id).cloned()?;
        let has_journal = volume.lock().journal.is_some();
        has_journal.then_some(volume)
    }

    /// The stage of a volume already opened by name, unless it was discarded or retired after a publish (then
    /// the volume's next use by name makes a fresh one: a write must never reach a stage that is no more).
    pub fn loaded(&self, storage_id: &str) -> Option<Arc<VolumeStage>> {
        let volume = self.lock_volumes().get(storage_id).cloned()?;
        (!volume.discarded()).then_some(volume)
    }

    /// Publishes a volume now and waits: the new version's id, or why not.
    pub fn sync(&self, volume: &Arc<VolumeStage>) -> std::result::Result<String, PublishError> {
        self.publisher
            .sync(volume, Mode::Careful, None)
            .map(|p| p.version)
    }

    /// Publishes a volume now in `mode` and waits: the new version and the head it replaced, or why not. A
    /// failure that may pass is retried a few times, or with `timeout` for as long as it allows.
    pub fn publish(
        &self,
        volume: &Arc<VolumeStage>,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> std::result::Result<Published, PublishError> {
        self.publisher.sync(volume, mode, timeout)
    }

    /// Each volume with changes, or with a publish outcome to show: one line each, for `vm0fs status`.
    pub fn status(&self) -> Vec<String> {
        let mut vols: Vec<Arc<VolumeStage>> = self.lock_volumes().values().cloned().collect();
        vols.sort_by(|a, b| a.name.cmp(&b.name));
        vols.iter().filter_map(|v| v.status_line()).collect()
    }

    /// The volumes (`volumes/<name>`) with changes not published yet: what an unmount publishes before the
    /// process ends.
    pub fn unpublished(&self) -> Vec<String> {
        let mut labels: Vec<String> = (self.lock_volumes().values())
            .filter(|v| v.dirty())
            .map(|v| v.label())
            .collect();
        labels.sort();
        labels
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
                    retry: None,
                }),
                Phase::Retrying(note) => Some(PublishProgress {
                    volume: v.label(),
                    done_bytes: 0,
                    total_bytes: 0,
                    retry: Some(note),
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

impl Stage {
    /// Drops the staged changes of `volume`; the next use of the volume shows its head.
    pub fn discard(&self, volume: &Arc<VolumeStage>) -> Result<Discarded> {
        let done = self.publisher.discard(volume)?;
        let mut volumes = self.lock_volumes();
        if volumes
            .get(volume.storage_id())
            .is_some_and(|v| Arc::ptr_eq(v, volume))
        {
            volumes.remove(volume.storage_id());
        }
        Ok(done)
    }

    /// The stage with changes of a volume named `name`, whether or not the server still lists it (a volume
    /// deleted on the server keeps its staged changes, and `vm0fs sync` and `vm0fs discard` still reach them).
    pub fn staged_named(&self, name: &str) -> Option<Arc<VolumeStage>> {
        self.lock_volumes()
            .values()
            .find(|v| v.name == name && v.lock().journal.is_some())
            .cloned()
    }
}
