//! The changing state of one volume, under its lock: the tree, the versions it is over, the journal, the counts
//! that tell the publisher what is new. Applying a journal record is the one way the tree changes (`apply`), so a
//! replay rebuilds exactly what the changes built.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::journal::{Journal, Record};
use super::layout::VolumeLayout;
use super::overlay::{Content, Times, Tree};
use super::records::from_unix;

/// The changing state of one volume, under its lock.
pub(super) struct State {
    pub(super) tree: Tree,
    /// The extracted tree of `base_version`, where `Content::Base` paths are.
    pub(super) base_root: Option<PathBuf>,
    /// The SHA-256 of the base version's files, by path, where the cache kept them.
    pub(super) base_hashes: Arc<HashMap<String, String>>,
    /// The version whose files `Content::Base` names (the first record of the journal).
    pub(super) base_version: Option<String>,
    /// The version the changes are based on: the base, or the last version published from here.
    pub(super) head: Option<String>,
    /// Opened at the first change.
    pub(super) journal: Option<Journal>,
    pub(super) next_file: u64,
    /// Counts every change, writes included.
    pub(super) generation: u64,
    /// The generation that is known to be the head's content; `None` after a replay (the publisher checks).
    pub(super) published_generation: Option<u64>,
    /// Files open for writing.
    pub(super) writers: usize,
    /// Set when a journal write failed: the tree is ahead of the disk, so further changes are refused.
    pub(super) broken: Option<String>,
    /// Set by `vm0fs discard`: this stage is no longer the volume's, nothing of it is published or changed.
    pub(super) discarded: bool,
}

impl State {
    pub(super) fn apply(&mut self, r: &Record) -> std::result::Result<(), i32> {
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
            Record::Link { from, to } => self.tree.link(from, to),
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
    pub(super) fn stamp(&mut self, change: &Record, now: SystemTime) {
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
            Record::Link { to: path, .. } => {
                tree.entries_changed_beside(path, now);
                tree.set_times(path, |t| t.ctime = Some(now));
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
    pub(super) fn delete_orphans(&mut self, layout: &VolumeLayout) {
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

    /// The bytes of the staged files, each counted once however many names it has.
    pub(super) fn staged_bytes(&self, layout: &VolumeLayout) -> u64 {
        let ids: std::collections::BTreeSet<u64> = self
            .tree
            .files()
            .filter_map(|(_, c)| match c {
                Content::Staged(id) => Some(*id),
                Content::Base(_) => None,
            })
            .collect();
        ids.into_iter()
            .filter_map(|id| std::fs::metadata(layout.file(id)).ok())
            .map(|m| m.len())
            .sum()
    }

    pub(super) fn backing(&self, layout: &VolumeLayout, content: &Content) -> PathBuf {
        match (content, &self.base_root) {
            (Content::Staged(id), _) => layout.file(*id),
            (Content::Base(rel), Some(root)) => root.join(rel),
            (Content::Base(rel), None) => PathBuf::from(rel),
        }
    }
}
