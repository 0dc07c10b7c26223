//! Staged changes meet a head that moved on the server: a three-way comparison per path against the version the
//! changes were based on (as lakeFS merges a branch), then either a rebase onto the new head or a conflict.
//!
//! A version holds regular files only (CONTRACT.md 6.4), so the comparison is of three maps path → SHA-256: the
//! base (the version the staged changes started from), ours (the staged tree) and theirs (the new head). A path
//! changed on one side only takes that side; a path left alone by both, or changed by both to the same bytes, is
//! kept; a path both changed differently, or that one side deleted while the other changed it, is a conflict, and
//! so is a file on one side where the other needs a directory. Nothing is guessed inside a file: a careful person
//! merges lines, a file system does not know what the lines mean.
//!
//! With no conflict the staged tree is rebuilt over the new head: files the new head provides are read from its
//! extracted tree in the archive cache (fetched like any version), files that keep our bytes stay staged (one still
//! read from the old base is copied first, since the old base stops being held), and the journal is rewritten as
//! "new base + the changes over it", atomically, so a crash replays either the old staging or the rebased one.
//! With a conflict nothing changes: the tree stays as the user left it and the paths are reported. Hashing both
//! versions reads them once; that happens only when the head moved.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

use super::base::{self, walk_base};
use super::error::{RebaseError, StageError, io_error};
use super::journal::Record;
use super::manifest::{self, ManifestFile};
use super::overlay::{Content, Node, Tree};
use super::records::records_between;
use super::status::short;
use super::volume::VolumeStage;

/// Path → SHA-256 hex of the regular files of one side.
pub type Hashes = BTreeMap<String, String>;

/// Which side a file of the merged tree takes its bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Ours,
    Theirs,
}

/// What is ours besides files, for the collision check: symlinks, and directories that are empty in our tree
/// (made on purpose; others exist only for the files below them).
#[derive(Debug, Default)]
pub struct OurOthers {
    pub symlinks: BTreeSet<String>,
    pub empty_dirs: BTreeSet<String>,
}

/// The files of the merged tree and the side each comes from, or the conflicting paths (sorted).
pub fn merge(
    base: &Hashes,
    ours: &Hashes,
    theirs: &Hashes,
    others: &OurOthers,
) -> Result<BTreeMap<String, Side>, Vec<String>> {
    let mut merged = BTreeMap::new();
    let mut conflicts = BTreeSet::new();
    let paths: BTreeSet<&String> = base
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    for path in paths {
        let (b, o, t) = (base.get(path), ours.get(path), theirs.get(path));
        let (side, present) = if o == t || o == b {
            (Side::Theirs, t.is_some())
        } else if t == b {
            (Side::Ours, o.is_some())
        } else {
            conflicts.insert(path.clone());
            continue;
        };
        if present {
            merged.insert(path.clone(), side);
        }
    }
    let below = |dir: &str| {
        let prefix = format!("{dir}/");
        merged
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    };
    for path in merged.keys() {
        if others.symlinks.contains(path) || others.empty_dirs.contains(path) || below(path) {
            conflicts.insert(path.clone());
        }
    }
    for link in &others.symlinks {
        if below(link) {
            conflicts.insert(link.clone());
        }
    }
    // Our symlinks and empty directories need their parents to be directories: a merged file there collides.
    for ours in others.symlinks.iter().chain(&others.empty_dirs) {
        let parents = ours.match_indices('/').map(|(i, _)| &ours[..i]);
        conflicts.extend(
            parents
                .filter(|p| merged.contains_key(*p))
                .map(String::from),
        );
    }
    if conflicts.is_empty() {
        Ok(merged)
    } else {
        Err(conflicts.into_iter().collect())
    }
}

/// What `VolumeStage::rebase` came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Rebased {
    /// The tree is now the new head with our changes over it: how many files keep our bytes.
    Onto { ours: usize },
    /// Both sides changed these paths: nothing was changed.
    Conflicts(Vec<String>),
}

/// A rebase worked out, for `VolumeStage::install`: the tree as of `generation` becomes `target`, over the new
/// head's tree, with the journal rewritten as `records` ("new base + the changes over it").
struct RebasePlan {
    generation: u64,
    head: Option<String>,
    head_root: Option<PathBuf>,
    their_tree: Tree,
    target: Tree,
    records: Vec<Record>,
}

/// A version's files hashed, from its extracted tree (none for no version or a version without files).
fn hashes_of(root: Option<&PathBuf>) -> io::Result<Hashes> {
    let Some(root) = root else {
        return Ok(Hashes::new());
    };
    let tree = walk_base(root)?;
    let files = tree
        .files()
        .map(|(p, _)| manifest::Frozen {
            path: p.to_string(),
            source: root.join(p),
            known: None,
        })
        .collect();
    Ok(manifest::hash_files(files)?
        .into_iter()
        .map(|f| (f.path, f.sha256))
        .collect())
}

impl VolumeStage {
    /// The extracted tree of `version` of this volume in the archive cache, downloaded if missing; `None` for no
    /// version. A version without files has no archive (CONTRACT.md 6.3): with `missing_is_empty`, a download
    /// that finds nothing stands for it (the base, a version known to exist); otherwise it is an error.
    fn version_root(
        &self,
        version: Option<&str>,
        missing_is_empty: bool,
    ) -> Result<Option<PathBuf>, StageError> {
        let Some(version) = version else {
            return Ok(None);
        };
        let cache = self.cache.upgrade().ok_or_else(|| {
            StageError::new(
                libc::EIO,
                format!(
                    "{}@{}: the mount is shutting down",
                    self.label(),
                    short(version)
                ),
            )
        })?;
        match base::version_tree(&cache, &self.api, &self.storage_id, &self.label(), version) {
            Ok(root) => Ok(Some(root)),
            Err(e) if missing_is_empty && e.errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Rebases the tree as of `generation` (whose files hash to `ours`, based on `base`) onto `head`, or finds the
    /// conflicts. `head_files` is `head` when the server says it has files (else it is an empty version). See the
    /// module doc.
    pub(super) fn rebase(
        &self,
        generation: u64,
        base: Option<&str>,
        ours: &[ManifestFile],
        head: Option<&str>,
        head_files: Option<&str>,
    ) -> Result<Rebased, RebaseError> {
        let label = self.label();
        let read = |what: &str, e: io::Error| io_error(&format!("{label}: reading {what}"), e);
        let base_hashes =
            hashes_of(self.version_root(base, true)?.as_ref()).map_err(|e| read("the base", e))?;
        let head_root = self.version_root(head_files, false)?;
        // Held from now on, so that no eviction takes the new head's files while the tree is rebuilt over them;
        // given back unless the rebase lands (and unless it is the base already, whose hold is the stage's).
        if let Some(v) = head {
            self.hold_base(v, true);
        }
        let result = self.rebase_over(generation, base_hashes, ours, head, head_root);
        if !matches!(result, Ok(Rebased::Onto { .. }))
            && let Some(v) = head
            && self.lock().base_version.as_deref() != Some(v)
        {
            self.hold_base(v, false);
        }
        result
    }

    /// `rebase` once the new head's tree is held.
    fn rebase_over(
        &self,
        generation: u64,
        base_hashes: Hashes,
        ours: &[ManifestFile],
        head: Option<&str>,
        head_root: Option<PathBuf>,
    ) -> Result<Rebased, RebaseError> {
        let label = self.label();
        let read = |what: &str, e: io::Error| io_error(&format!("{label}: reading {what}"), e);
        let theirs = hashes_of(head_root.as_ref()).map_err(|e| read("the new head", e))?;
        let ours_hashes: Hashes = ours
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect();
        let (our_tree, old_root) = {
            let st = self.lock();
            if st.generation != generation || st.writers > 0 {
                return Err(self.changed_meanwhile());
            }
            (st.tree.clone(), st.base_root.clone())
        };
        let mut others = OurOthers::default();
        for (path, node) in our_tree.entries() {
            let set = match node {
                Node::Symlink { .. } => &mut others.symlinks,
                Node::Dir { .. } if our_tree.children(path).next().is_none() => {
                    &mut others.empty_dirs
                }
                _ => continue,
            };
            set.insert(path.to_string());
        }
        let merged = match merge(&base_hashes, &ours_hashes, &theirs, &others) {
            Ok(m) => m,
            Err(paths) => return Ok(Rebased::Conflicts(paths)),
        };
        let their_tree = match &head_root {
            Some(root) => walk_base(root).map_err(|e| read("the new head", e))?,
            None => Tree::default(),
        };
        let (target, copies) =
            self.target_tree(&merged, &our_tree, &their_tree, &ours_hashes, &theirs)?;
        let copied = self.copy_from_old_base(&copies, old_root.as_ref());
        if let Err(e) = copied {
            for (_, id) in &copies {
                self.forget(&Node::File {
                    content: Content::Staged(*id),
                    mode: 0,
                    mtime: None,
                });
            }
            return Err(e.into());
        }
        let mut records = vec![Record::Base {
            name: self.name.clone(),
            version: head.map(String::from),
        }];
        records.extend(records_between(&their_tree, &target));
        self.install(RebasePlan {
            generation,
            head: head.map(String::from),
            head_root,
            their_tree,
            target,
            records,
        })?;
        {
            let mut st = self.lock();
            if st.base_version.as_deref() == head {
                st.base_hashes = std::sync::Arc::new(theirs.into_iter().collect());
            }
        }
        Ok(Rebased::Onto {
            ours: merged.values().filter(|s| **s == Side::Ours).count(),
        })
    }

    fn changed_meanwhile(&self) -> RebaseError {
        RebaseError {
            error: StageError::new(
                libc::EAGAIN,
                format!(
                    "{} changed while it was being rebased, or has files open for writing; trying again",
                    self.label()
                ),
            ),
            retryable: true,
        }
    }

    /// The merged tree: our symlinks and empty directories, every merged file (from the new head where it has
    /// those bytes, else staged), and the directories they need. Also the files to copy out of the old base
    /// (its relative path, the staged file id reserved for it).
    fn target_tree(
        &self,
        merged: &BTreeMap<String, Side>,
        ours: &Tree,
        theirs: &Tree,
        our_hashes: &Hashes,
        their_hashes: &Hashes,
    ) -> Result<(Tree, Vec<(String, u64)>), StageError> {
        let mut target = Tree::default();
        let mut copies = Vec::new();
        let dir_mode = |path: &str| match ours.get(path).or(theirs.get(path)) {
            Some(Node::Dir { mode }) => *mode,
            _ => 0o755,
        };
        let ensure_dirs = |target: &mut Tree, path: &str| {
            let mut at = 0;
            while let Some(slash) = path[at..].find('/') {
                let dir = &path[..at + slash];
                if target.get(dir).is_none() {
                    let _ = target.mkdir(dir, dir_mode(dir));
                }
                at += slash + 1;
            }
        };
        for (path, node) in ours.entries() {
            let kept = match node {
                Node::Symlink { .. } => true,
                Node::Dir { .. } => ours.children(path).next().is_none(),
                Node::File { .. } => false,
            };
            if kept {
                ensure_dirs(&mut target, path);
                let _ = match node {
                    Node::Symlink { target: to } => target.symlink(path, to),
                    _ => target.mkdir(path, dir_mode(path)),
                };
            }
        }
        // The names that keep our bytes, and the copy made of each base file we keep (one for all its names).
        let mut kept_ours = BTreeSet::new();
        let mut copy_of: BTreeMap<String, u64> = BTreeMap::new();
        for (path, side) in merged {
            ensure_dirs(&mut target, path);
            let our_node = ours.get(path);
            let mode = match (our_node, theirs.get(path)) {
                (Some(Node::File { mode, .. }), _) | (None, Some(Node::File { mode, .. })) => *mode,
                _ => 0o644,
            };
            let same_bytes =
                their_hashes.get(path).is_some() && their_hashes.get(path) == our_hashes.get(path);
            if matches!(side, Side::Ours) || same_bytes {
                kept_ours.insert(path.clone());
            }
            let content = match (side, our_node) {
                (Side::Theirs, _) => Content::Base(path.clone()),
                _ if same_bytes => Content::Base(path.clone()),
                (
                    Side::Ours,
                    Some(Node::File {
                        content: Content::Staged(id),
                        ..
                    }),
                ) => Content::Staged(*id),
                (
                    Side::Ours,
                    Some(Node::File {
                        content: Content::Base(rel),
                        ..
                    }),
                ) => {
                    let id = match copy_of.get(rel) {
                        Some(id) => *id,
                        None => {
                            let id = {
                                let mut st = self.lock();
                                st.next_file += 1;
                                st.next_file - 1
                            };
                            copies.push((rel.clone(), id));
                            copy_of.insert(rel.clone(), id);
                            id
                        }
                    };
                    Content::Staged(id)
                }
                (Side::Ours, _) => {
                    return Err(StageError::new(
                        libc::EIO,
                        format!(
                            "{}/{path}: our side of the merge has no file there",
                            self.label()
                        ),
                    ));
                }
            };
            target.put_file(path, content, mode).map_err(|errno| {
                StageError::new(
                    errno,
                    format!(
                        "{}/{path}: cannot place it in the rebased tree",
                        self.label()
                    ),
                )
            })?;
        }
        relink(&mut target, ours, &kept_ours);
        Ok((target, copies))
    }

    /// Copies files that keep our bytes but are still read from the old base into staged files of their own.
    fn copy_from_old_base(
        &self,
        copies: &[(String, u64)],
        old_root: Option<&PathBuf>,
    ) -> Result<(), StageError> {
        if copies.is_empty() {
            return Ok(());
        }
        let root = old_root.ok_or_else(|| {
            StageError::new(
                libc::EIO,
                format!("{}: the old base is not on disk", self.label()),
            )
        })?;
        self.layout
            .create()
            .map_err(|e| io_error(&self.label(), e))?;
        for (rel, id) in copies {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.layout.file(*id))
                .map_err(|e| io_error(&format!("{}: a staged file", self.label()), e))?;
            self.copy_up(&root.join(rel), &mut file)?;
        }
        Ok(())
    }

    /// Makes the rebased tree of `plan` the volume's tree, and the new head its base, if nothing changed since
    /// the plan's generation: the journal is rewritten first, so the tree never runs ahead of the disk.
    fn install(&self, plan: RebasePlan) -> Result<(), RebaseError> {
        let RebasePlan {
            generation,
            head,
            head_root,
            their_tree,
            target,
            records,
        } = plan;
        let head = head.as_deref();
        let _long = self.long_step();
        let mut st = self.lock();
        if st.generation != generation || st.writers > 0 {
            return Err(self.changed_meanwhile());
        }
        let old_tree = std::mem::replace(&mut st.tree, their_tree);
        let applied = records[1..].iter().try_for_each(|r| st.apply(r));
        if applied.is_err() || st.tree != target {
            st.tree = old_tree;
            return Err(StageError::new(
                libc::EIO,
                format!("{}: the rebased tree does not replay from its journal (a bug); nothing changed", self.label()),
            )
            .into());
        }
        let rewritten = match st.journal.as_mut() {
            Some(journal) => journal.rewrite(&self.layout.journal(), &records),
            None => Err(io::Error::other("the journal is not open")),
        };
        if let Err(e) = rewritten {
            st.tree = old_tree;
            return Err(io_error(&format!("{}: rewriting the journal", self.label()), e).into());
        }
        if let Some(old) = st.base_version.take()
            && Some(old.as_str()) != head
        {
            self.hold_base(&old, false);
        }
        st.base_version = head.map(String::from);
        st.base_root = head_root;
        // Hashes of the old base must never describe the new one's files (the caller gives the new head's).
        st.base_hashes = Default::default();
        st.head = head.map(String::from);
        st.generation += 1;
        st.published_generation = None;
        drop(st);
        let still: BTreeSet<u64> = target
            .files()
            .filter_map(|(_, c)| match c {
                Content::Staged(id) => Some(*id),
                Content::Base(_) => None,
            })
            .collect();
        for (_, node) in old_tree.entries() {
            if let Node::File {
                content: Content::Staged(id),
                ..
            } = node
                && !still.contains(id)
            {
                self.forget(node);
            }
        }
        Ok(())
    }
}

/// Our hard links whose every name keeps our bytes in `target` are links there too (a name that takes the other
/// side's bytes leaves its link).
fn relink(target: &mut Tree, ours: &Tree, kept_ours: &BTreeSet<String>) {
    for (path, _) in ours.files() {
        let names = ours.names_of(path);
        let whole = names
            .iter()
            .all(|n| kept_ours.contains(n) && matches!(target.get(n), Some(Node::File { .. })));
        if names.len() < 2 || names[0] != path || !whole {
            continue;
        }
        for name in &names[1..] {
            if target.names_of(name).first() != Some(&names[0]) {
                let _ = target.unlink(name);
                let _ = target.link(&names[0], name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(pairs: &[(&str, &str)]) -> Hashes {
        pairs
            .iter()
            .map(|(p, h)| (p.to_string(), h.to_string()))
            .collect()
    }

    #[test]
    fn disjoint_changes_take_each_side() {
        let base = hashes(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]);
        let ours = hashes(&[("a", "2"), ("b", "1"), ("d", "1"), ("mine", "1")]);
        let theirs = hashes(&[("a", "1"), ("b", "3"), ("c", "1"), ("theirs", "1")]);
        let merged = merge(&base, &ours, &theirs, &OurOthers::default()).unwrap();
        let got: Vec<(&str, Side)> = merged.iter().map(|(p, s)| (p.as_str(), *s)).collect();
        // a: ours changed; b: theirs changed; c: we deleted; d: they deleted; mine and theirs: added.
        assert_eq!(
            got,
            [
                ("a", Side::Ours),
                ("b", Side::Theirs),
                ("mine", Side::Ours),
                ("theirs", Side::Theirs)
            ]
        );
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_conflict() {
        let base = hashes(&[("a", "1"), ("gone", "1")]);
        let both = hashes(&[("a", "2"), ("new", "9")]);
        let merged = merge(&base, &both, &both, &OurOthers::default()).unwrap();
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn changes_to_one_path_and_a_delete_against_a_change_conflict() {
        let base = hashes(&[("a", "1"), ("b", "1"), ("c", "1")]);
        let ours = hashes(&[("a", "2"), ("c", "2"), ("added", "1")]);
        let theirs = hashes(&[("a", "3"), ("b", "3"), ("added", "2")]);
        let conflicts = merge(&base, &ours, &theirs, &OurOthers::default()).unwrap_err();
        assert_eq!(conflicts, ["a", "added", "b", "c"]);
    }

    #[test]
    fn a_file_where_the_other_side_needs_a_directory_conflicts() {
        let base = Hashes::new();
        let ours = hashes(&[("x", "1")]);
        let theirs = hashes(&[("x/y", "1")]);
        assert_eq!(
            merge(&base, &ours, &theirs, &OurOthers::default()).unwrap_err(),
            ["x"]
        );
        let others = OurOthers {
            symlinks: ["link".to_string()].into(),
            empty_dirs: ["empty".to_string()].into(),
        };
        let theirs = hashes(&[("link/f", "1"), ("empty", "1")]);
        assert_eq!(
            merge(&base, &Hashes::new(), &theirs, &others).unwrap_err(),
            ["empty", "link"]
        );
    }

    /// Found by the model (stage/tests/moving_head.rs): our empty directory `b/a` needs `b` to be a directory
    /// while their new head makes `b` a file. Missed, the rebase failed with EISDIR ("cannot place it in the
    /// rebased tree") instead of reporting the conflict.
    #[test]
    fn a_file_of_theirs_above_our_empty_directory_or_symlink_conflicts() {
        let base = hashes(&[("b/e/a", "1")]);
        let theirs = hashes(&[("b", "2")]);
        let others = OurOthers {
            symlinks: ["s/link".to_string()].into(),
            empty_dirs: ["b/a".to_string()].into(),
        };
        assert_eq!(merge(&base, &base, &theirs, &others).unwrap_err(), ["b"]);
        let theirs = hashes(&[("b/e/a", "1"), ("s", "2")]);
        assert_eq!(merge(&base, &base, &theirs, &others).unwrap_err(), ["s"]);
    }

    #[test]
    fn records_turn_their_tree_into_the_target() {
        let theirs = Tree::from_files([
            ("keep".to_string(), 0o644),
            ("d/gone".to_string(), 0o644),
            ("x".to_string(), 0o644),
        ]);
        let mut target = Tree::default();
        target
            .put_file("keep", Content::Base("keep".into()), 0o755)
            .unwrap();
        target.mkdir("x", 0o700).unwrap();
        target
            .put_file("x/mine", Content::Staged(4), 0o644)
            .unwrap();
        target.symlink("l", "keep").unwrap();
        let records = records_between(&theirs, &target);
        let mut tree = theirs.clone();
        for r in &records {
            match r {
                Record::Remove { path } if tree.is_dir(path) => tree.rmdir(path).unwrap(),
                Record::Remove { path } => drop(tree.unlink(path).unwrap()),
                Record::Mkdir { path, mode } => tree.mkdir(path, *mode).unwrap(),
                Record::Chmod { path, mode } => tree.chmod(path, *mode).unwrap(),
                Record::Symlink { path, target } => tree.symlink(path, target).unwrap(),
                Record::Put { path, file, mode } => {
                    tree.put_file(path, Content::Staged(*file), *mode).unwrap()
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(tree, target);
    }
}
