//! One writable volume's stage: its reads (lookup, list, where a file's bytes are), its changes of names, the
//! journal they go to, and what the publisher reads (`freeze`) and writes back (`published`).
//!
//! The state under the lock is `state::State`; the writers are `writer`, adoption `adopt`, a rebase `rebase`
//! and a discard `discard`, each an `impl VolumeStage` of its own file. Every change is journaled before it
//! returns (made durable by the group commit, `commit`), then noted for the publisher (`changed`: it is told once
//! per burst of changes), so the filesystem never has to. The lock is never held across a network call; the steps
//! that hold it over the whole tree say so (`long_step`), so that the filesystem can send requests elsewhere
//! rather than wait on the thread that read them.

use crate::sync::Locked;
use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Instant, SystemTime};

use super::commit::Committer;
use super::error::{Result, StageError, io_error};
use super::journal::{Journal, Record};
use super::layout::VolumeLayout;
use super::manifest::{Frozen, LocalOnly, ManifestFile};
use super::overlay::{Content, Node};
use super::records::touch_record;
use super::shape::{Shown, tree_entries};
use super::space::Space;
use super::state::State;
use super::status::{Phase, ShapeNote, WAITING};
use super::upload;
use super::upload::TreeEntry;
use crate::api::Vm0Api;
use crate::cache::ArchiveCache;

/// The tree as the publisher reads it, at one instant: the one read of the stage a publish makes.
pub(super) struct Snapshot {
    /// The count of changes it is as of: a publish or rebase applies only while it is still the tree's.
    pub generation: u64,
    /// The version the changes are based on.
    pub base: Option<String>,
    pub files: Vec<Frozen>,
    /// What it holds that no version can.
    pub local: LocalOnly,
    /// Every entry of the tree with its kind, mode and time: the push flow's archive.
    pub tree: Vec<TreeEntry>,
}

/// Called after a publish moved a volume's head, so that what caches the API's answers asks again.
pub type HeadsMoved = Arc<dyn Fn() + Send + Sync>;

/// What a stage tells the publisher (the publisher thread's handle implements it): a stage names the publisher
/// through this alone, so the two modules do not import each other.
pub(super) trait Notify: Send + Sync {
    /// The volume changed: its quiet period starts again.
    fn changed(&self, volume: &Arc<VolumeStage>);
    /// The server lists a head other than the one the volume's changes are based on.
    fn follow(&self, volume: &Arc<VolumeStage>);
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
    /// Names of it: a file's names (more than 1 for a hard link), 1 for a symlink; a directory's own, its `.`
    /// and each subdirectory's `..`.
    pub nlink: u32,
}

/// One writable volume. See the module doc.
pub struct VolumeStage {
    pub(super) storage_id: String,
    pub(super) name: String,
    pub(super) layout: VolumeLayout,
    /// Holds the base version out of eviction while untouched files are read from it. Weak: a stage handed to
    /// the publisher thread must not keep the cache (and its directory lock) alive after the mount.
    pub(super) cache: Weak<ArchiveCache>,
    /// Where versions other than the base come from (a rebase reads the new head and the old base).
    pub(super) api: Arc<dyn Vm0Api>,
    /// The mount's staged-bytes budget, shared by every volume.
    pub(super) space: Arc<Space>,
    /// The group commit of the staging area (`commit`): journal records and closed files wait for it.
    pub(super) commit: Arc<Committer>,
    /// Told of every change, so that the filesystem never has to; weak, as the publisher's thread holds stages.
    pub(super) publisher: Weak<dyn Notify>,
    /// This stage itself, for the messages to the publisher.
    pub(super) me: Weak<VolumeStage>,
    /// The listed head the publisher was last asked to rebase onto (`head_listed`), so it is asked once.
    pub(super) following: Mutex<Option<String>>,
    pub(super) heads_moved: HeadsMoved,
    pub(super) state: Mutex<State>,
    pub(super) phase: Mutex<Phase>,
    /// What the last publish said of the things only the push flow's archive holds (`vm0fs status`).
    pub(super) shape: Mutex<ShapeNote>,
    /// The publisher was told of a change and has not taken the volume up since (`changed`, `taken_up`).
    pub(super) publisher_told: AtomicBool,
    /// When the last change was made: where the volume's quiet period starts.
    pub(super) last_change: Mutex<Instant>,
    /// Steps running now that hold the lock over the whole tree (`LongStep`).
    pub(super) long_steps: AtomicUsize,
}

/// A step that holds a volume's lock over its whole tree (a publish's snapshot, an adoption, a rebase's install,
/// a discard): while one runs, requests about the volume go to a worker rather than wait on the thread that read
/// them (`VolumeStage::busy`). Counted for as long as this value lives.
pub(crate) struct LongStep<'a>(&'a AtomicUsize);

impl Drop for LongStep<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes a path relative to the volume usable as a tree key, refusing what cannot be one.
pub(super) fn key(path: &str) -> &str {
    path.trim_matches('/')
}

impl VolumeStage {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    pub fn storage_id(&self) -> &str {
        &self.storage_id
    }

    /// What the upload facade needs of this volume.
    pub(super) fn upload_target(&self) -> upload::Target<'_> {
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

    /// Notes that this volume changed: its quiet period starts again. The publisher is told once until it takes
    /// the volume up (`taken_up`), not at every change: a `tar x` makes three changes per file, and a message each
    /// would wake the publisher's thread three times per file for nothing. It reads `last_change` when the quiet
    /// period it was told of ends.
    pub(super) fn changed(&self) {
        *self.last_change.locked() = Instant::now();
        if self.publisher_told.swap(true, Ordering::AcqRel) {
            return;
        }
        if let (Some(publisher), Some(me)) = (self.publisher.upgrade(), self.me.upgrade()) {
            publisher.changed(&me);
        }
    }

    /// The publisher takes the volume up (to publish or discard it, before it reads the tree): the next change
    /// tells it again.
    pub(super) fn taken_up(&self) {
        self.publisher_told.store(false, Ordering::Release);
    }

    /// When the last change was made.
    pub(super) fn last_change(&self) -> Instant {
        *self.last_change.locked()
    }

    /// Marks a step that holds the lock over the whole tree, for as long as the value returned lives (taken
    /// before the lock).
    pub(crate) fn long_step(&self) -> LongStep<'_> {
        self.long_steps.fetch_add(1, Ordering::AcqRel);
        LongStep(&self.long_steps)
    }

    /// Whether a step that holds the lock over the whole tree runs now: a request that must not wait is better
    /// answered elsewhere.
    pub fn busy(&self) -> bool {
        self.long_steps.load(Ordering::Acquire) > 0
    }

    /// The server lists `head` as the volume's head. A stage with changes over another version asks the publisher
    /// to rebase them onto it (once per head): the view is always the head plus what is staged.
    pub fn head_listed(&self, head: Option<&str>) {
        {
            let st = self.lock();
            if st.journal.is_none() || st.discarded || st.head.as_deref() == head {
                return;
            }
        }
        let Some(head) = head else {
            return;
        };
        {
            let mut asked = self.following.locked();
            if asked.as_deref() == Some(head) {
                return;
            }
            *asked = Some(head.to_string());
        }
        if let (Some(publisher), Some(me)) = (self.publisher.upgrade(), self.me.upgrade()) {
            publisher.follow(&me);
        }
    }

    /// A rebase onto a listed head failed in a way that may pass: the next listing asks again.
    pub(super) fn follow_failed(&self) {
        *self.following.locked() = None;
    }

    /// Whether anything is staged (the volume has a journal).
    pub(super) fn has_changes(&self) -> bool {
        self.lock().journal.is_some()
    }

    pub(super) fn refuse(&self, errno: i32, path: &str, why: &str) -> StageError {
        StageError::new(errno, format!("{}/{path}: {why}", self.label()))
    }

    pub(super) fn hold_base(&self, version: &str, hold: bool) {
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
    pub(super) fn attr(&self, st: &State, path: &str, node: &Node) -> EntryAttr {
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
                nlink = st.tree.name_count(content) as u32;
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

    pub(super) fn check_writable(&self, st: &State) -> Result<()> {
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
    pub(super) fn journal(&self, st: &mut State, record: Record) -> Result<()> {
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
    pub(super) fn journal_change(&self, st: &mut State, record: Record) -> Result<()> {
        st.generation += 1;
        self.journal(st, record)?;
        self.changed();
        Ok(())
    }

    /// Applies a change to the tree (which decides whether it is allowed), then journals it.
    pub(super) fn change(&self, path: &str, record: Record, what: &str) -> Result<()> {
        let mut st = self.lock();
        self.check_writable(&st)?;
        if let Err(errno) = st.apply(&record) {
            return Err(self.refuse(errno, path, what));
        }
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)
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
    pub(super) fn set_file_mtime(&self, path: &str, mtime: SystemTime) -> Result<()> {
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
        let now = SystemTime::now();
        st.stamp(&record, now);
        // A file that keeps another name changed: one link fewer.
        if let Node::File { content, .. } = &node
            && let Some(left) = st.tree.oldest_name(content).map(str::to_string)
        {
            st.tree.set_times(&left, |t| t.ctime = Some(now));
        }
        self.journal_change(&mut st, record)?;
        self.forget_unnamed(&st, &node);
        Ok(())
    }

    /// `link(2)` inside the volume: `to` becomes a second name of file `from`, one staged file under both. A
    /// file still read from the base version is copied up first, so that a write through either name is seen
    /// through the other.
    pub fn link(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (key(from), key(to));
        let mut st = self.lock();
        self.check_writable(&st)?;
        if let Some(Node::File {
            content: content @ Content::Base(_),
            mode,
            ..
        }) = st.tree.get(from).cloned().as_ref()
            && st.tree.get(to).is_none()
            && st
                .tree
                .is_dir(to.rsplit_once('/').map_or("", |(dir, _)| dir))
        {
            self.copy_up_names(&mut st, from, content, *mode, true)?;
        }
        let record = Record::Link {
            from: from.to_string(),
            to: to.to_string(),
        };
        if let Err(errno) = st.apply(&record) {
            return Err(self.refuse(errno, to, &format!("cannot make it a link to {from:?}")));
        }
        st.stamp(&record, SystemTime::now());
        self.journal_change(&mut st, record)
    }

    /// The names of the file at `path` (more than one for a hard link), oldest first: the first stands for the
    /// file wherever it is named (its inode).
    pub fn names_of(&self, path: &str) -> Vec<String> {
        self.lock().tree.names_of(key(path))
    }

    /// Deletes the staged file of `node`, which just lost a name, if no name is left.
    fn forget_unnamed(&self, st: &State, node: &Node) {
        match node {
            Node::File { content, .. } if st.tree.names_content(content) => {}
            _ => self.forget(node),
        }
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
            self.forget_unnamed(&st, &node);
        }
        Ok(())
    }

    /// Deletes the staged file of a node that left the tree.
    pub(super) fn forget(&self, node: &Node) {
        if let Node::File { content, .. } = node {
            self.forget_content(content);
        }
    }

    /// Deletes a staged file no entry names any more.
    pub(super) fn forget_content(&self, content: &Content) {
        if let Content::Staged(id) = content {
            let path = self.layout.file(*id);
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            if std::fs::remove_file(&path).is_ok() {
                self.space.release(len);
            }
        }
    }

    /// Whether the tree may differ from the head (a publish is due).
    pub(super) fn dirty(&self) -> bool {
        let st = self.lock();
        st.published_generation != Some(st.generation)
    }

    /// Whether a file is open for writing.
    pub(super) fn writing(&self) -> bool {
        self.lock().writers > 0
    }

    pub(super) fn set_shape_note(&self, note: ShapeNote) {
        *self.shape.locked() = note;
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        *self.phase.locked() = phase;
    }

    pub fn phase(&self) -> Phase {
        self.phase.locked().clone()
    }

    /// What the publisher uploads: every file and where its bytes are, with the generation and head they are of,
    /// and every entry of the tree (for the push flow's archive, `tree_entries`).
    pub(super) fn freeze(&self) -> Snapshot {
        let _long = self.long_step();
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
        Snapshot {
            generation: st.generation,
            base: st.head.clone(),
            files,
            local: LocalOnly::of(&st.tree),
            tree: tree_entries(&st, &self.layout, |path, node| {
                let attr = self.attr(&st, path, node);
                Shown {
                    size: attr.size,
                    mode: attr.mode,
                    mtime: attr.mtime,
                }
            }),
        }
    }

    /// Records that the tree as of `generation` is `version`, now the head, and adopts it into the cache.
    pub(super) fn published(
        &self,
        generation: u64,
        version: &str,
        manifest: &[ManifestFile],
    ) -> Result<()> {
        let _long = self.long_step();
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
    pub(super) fn status_line(&self) -> Option<String> {
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
        let mut line = format!("{}: ", self.label());
        // Counts only where there is something staged: a published volume reads `published as <8 hex>`.
        if staged > 0 || bytes > 0 {
            let files = if staged == 1 { "file" } else { "files" };
            line.push_str(&format!("{staged} staged {files}, {bytes} bytes, "));
        }
        match (&phase, dirty) {
            (Phase::Clean, _) => line.push_str("staged (not published yet)"),
            (p, _) => line.push_str(&p.to_string()),
        }
        match *self.shape.locked() {
            ShapeNote::Local if !local.is_empty() => line.push_str(&format!("; {local}")),
            ShapeNote::Waiting => line.push_str(&format!("; {WAITING}")),
            _ => {}
        }
        Some(line)
    }
}
