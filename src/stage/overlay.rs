//! The tree of one writable volume as it is now: the base version's entries with the staged changes applied.
//!
//! Pure in-memory state, no I/O, so that every rule of POSIX naming (what `rename` may replace, what `rmdir`
//! refuses) is decided in one place and tested without a disk or FUSE. The whole tree is kept rather than only the
//! changes over the base: a volume's listing is small next to its bytes (one entry per file), and a rename of a
//! directory is then a move of keys, never a copy of data. A file's bytes live elsewhere: in the base version's
//! extracted tree (`Content::Base`, shared with the read-only cache and never written) or in a staged file of its
//! own (`Content::Staged`), made at create time or by the copy-up on first write. Sizes and modification times
//! of files are read from those files, so the tree never disagrees with them. The other times POSIX asks for (a
//! directory's and a symlink's, every access and change time) are kept beside the entries, in memory only, and
//! move with them; the caller says what time it is, so the tree stays free of clocks.
//!
//! A hard link is two entries with the same `Content`: one staged file (or one file of the base version, where
//! the version's archive held a hard link) and one mode, kept alike on every name. The names of each staged file,
//! and of each base file that has more than one, are indexed (`names`), in the order they were made, so that the
//! link count, `chmod` and a copy-up of every name are a lookup, and the first of them is the file's identity
//! while it lives (`primary`), whatever happens to the other names: its times are kept under that name, and go
//! to the oldest name left when it is unlinked.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::time::SystemTime;

/// Where the bytes of a file are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Content {
    /// The file at this relative path in the base version's extracted tree.
    Base(String),
    /// The staged file with this id.
    Staged(u64),
}

/// One entry of the tree. The root directory is implicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `mtime` is set by a `touch` of a file still read from the base version, whose file is never changed; a
    /// staged file keeps its time on itself.
    File {
        content: Content,
        mode: u32,
        mtime: Option<SystemTime>,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: String,
    },
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }
}

/// A failed change, as an errno (the caller says which path and why in its message).
pub type Refusal = i32;

/// The times of an entry set in this mount; what is `None` is read from elsewhere (a file's modification time
/// from its bytes' file; the rest default to the modification time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub atime: Option<SystemTime>,
    /// Of directories and symlinks only.
    pub mtime: Option<SystemTime>,
    pub ctime: Option<SystemTime>,
}

/// Paths are relative, `/`-separated, without empty, `.` or `..` parts; `""` is the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    /// Times of entries (and of the root, `""`) set in this mount.
    times: BTreeMap<String, Times>,
    /// The names of each staged file, and of each base file with more than one, oldest first. Kept by `insert`
    /// and `remove` too; a rename changes a name in place first, so that the order survives it.
    names: HashMap<Content, Vec<String>>,
    /// The number of subdirectories of each directory that has any (the root is `""`): a directory's link count,
    /// asked by every `stat` of it, and a create in a directory makes the kernel ask its attributes again, so
    /// counting its children each time would make a `tar x` of n files into one directory cost n² steps. Kept by
    /// `insert` and `remove`, the only ways a node enters or leaves `nodes`.
    subdirs: BTreeMap<String, usize>,
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Whether `path` lies strictly inside directory `dir`.
fn is_inside(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

impl Tree {
    /// A tree of `files` (relative path, mode), with the directories they need (mode 0755).
    pub fn from_files(files: impl IntoIterator<Item = (String, u32)>) -> Tree {
        Tree::from_base(files.into_iter().map(|(path, mode)| {
            let content = Content::Base(path.clone());
            let mtime = None;
            let file = Node::File {
                content,
                mode,
                mtime,
            };
            (path, file)
        }))
    }

    /// The tree of a base version: its entries (files read from the version, directories, symlinks), each
    /// directory on the way implied (0755) where the version has no entry for it.
    pub fn from_base(entries: impl IntoIterator<Item = (String, Node)>) -> Tree {
        let mut tree = Tree::default();
        for (path, node) in entries {
            let mut dir = parent_of(&path);
            let mut missing = Vec::new();
            while !dir.is_empty() && !tree.nodes.contains_key(dir) {
                missing.push(dir.to_string());
                dir = parent_of(dir);
            }
            for dir in missing {
                tree.insert(dir, Node::Dir { mode: 0o755 });
            }
            if let Node::File {
                content: content @ Content::Base(rel),
                ..
            } = &node
                && *rel != path
            {
                // A hard link of the version: its target is the file's first name.
                let names = tree.names.entry(content.clone()).or_default();
                if names.is_empty() {
                    names.push(rel.clone());
                }
            }
            tree.insert(path, node);
        }
        tree
    }

    /// `path` is a new name of `content`.
    fn add_name(&mut self, content: &Content, path: &str) {
        match self.names.get_mut(content) {
            Some(names) if names.iter().any(|n| n == path) => {}
            Some(names) => names.push(path.to_string()),
            None if matches!(content, Content::Staged(_)) => {
                self.names.insert(content.clone(), vec![path.to_string()]);
            }
            None => {}
        }
    }

    /// `path` is no longer a name of `content`.
    fn drop_name(&mut self, content: &Content, path: &str) {
        if let Some(names) = self.names.get_mut(content) {
            names.retain(|n| n != path);
            let fewest = if matches!(content, Content::Staged(_)) {
                1
            } else {
                2
            };
            if names.len() < fewest {
                self.names.remove(content);
            }
        }
    }

    /// The names of the file at `path`, oldest first (just `path` for a file with one name).
    pub fn names_of(&self, path: &str) -> Vec<String> {
        match self.nodes.get(path) {
            Some(Node::File { content, .. }) => self
                .names
                .get(content)
                .filter(|names| names.len() > 1)
                .cloned()
                .unwrap_or_else(|| vec![path.to_string()]),
            _ => vec![path.to_string()],
        }
    }

    /// The name that stands for the file at `path` among all of its names: the oldest (`path` itself for
    /// anything with one name). Asked by every `stat` (times are kept under it), so it copies nothing.
    pub fn primary<'a>(&'a self, path: &'a str) -> &'a str {
        match self.nodes.get(path) {
            Some(Node::File { content, .. }) => self
                .names
                .get(content)
                .filter(|names| names.len() > 1)
                .and_then(|names| names.first())
                .map_or(path, String::as_str),
            _ => path,
        }
    }

    /// The oldest name of `content`, when it is indexed (a staged file, or a base file with several names).
    pub fn oldest_name(&self, content: &Content) -> Option<&str> {
        self.names
            .get(content)
            .and_then(|n| n.first())
            .map(String::as_str)
    }

    /// How many names `content` has in the tree.
    pub fn name_count(&self, content: &Content) -> usize {
        self.names.get(content).map_or(1, Vec::len)
    }

    /// Whether some entry still names `content` (after one of its names went).
    pub fn names_content(&self, content: &Content) -> bool {
        match content {
            Content::Staged(_) => self.names.contains_key(content),
            Content::Base(_) => true,
        }
    }

    /// `link(2)`: `to` becomes a second name of the file at `from` (same content, same mode). Directories and
    /// symlinks are refused (`EPERM`, as Linux does for a directory).
    pub fn link(&mut self, from: &str, to: &str) -> Result<(), Refusal> {
        // As the kernel does: the source is resolved, then the new name's parent, then whether it is free.
        self.parent_is_dir(from)?;
        let source = self.nodes.get(from).ok_or(libc::ENOENT)?.clone();
        self.parent_is_dir(to)?;
        if to.is_empty() || self.nodes.contains_key(to) {
            return Err(libc::EEXIST);
        }
        let Node::File { content, mode, .. } = source else {
            return Err(libc::EPERM);
        };
        if !self.names.contains_key(&content) {
            self.names.insert(content.clone(), vec![from.to_string()]);
        }
        self.put_file(to, content, mode)
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Whether `path` is a directory (the root is).
    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.nodes.get(path).is_some_and(Node::is_dir)
    }

    /// Every entry below `dir` (at any depth), in path order.
    fn below<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let start = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(start.clone()..)
            .take_while(move |(k, _)| k.starts_with(&start))
    }

    /// The direct children of directory `dir`: (name, node), in name order. It steps over each child's subtree
    /// rather than through it (the keys below `c/` are exactly those from `c/` up to `c0`, `'0'` being the byte
    /// after `'/'`), so a listing costs its own size, not its subtree's.
    pub fn children<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Node)> + 'a {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut from: Bound<String> = Included(prefix.clone());
        std::iter::from_fn(move || {
            loop {
                let bounds = (from.as_ref().map(String::as_str), Unbounded);
                let (key, node) = self.nodes.range::<str, _>(bounds).next()?;
                let name = key.strip_prefix(prefix.as_str())?;
                match name.find('/') {
                    Some(slash) => from = Included(format!("{prefix}{}0", &name[..slash])),
                    None => {
                        from = Excluded(key.clone());
                        return Some((name, node));
                    }
                }
            }
        })
    }

    /// The number of directories directly in directory `dir`.
    pub fn subdirs(&self, dir: &str) -> usize {
        self.subdirs.get(dir).copied().unwrap_or(0)
    }

    /// Puts `node` at `path`, returning the node it replaced, and keeps `subdirs` and `names`.
    fn insert(&mut self, path: String, node: Node) -> Option<Node> {
        let parent = parent_of(&path).to_string();
        let adds = node.is_dir();
        let content = match &node {
            Node::File { content, .. } => Some(content.clone()),
            _ => None,
        };
        let replaced = self.nodes.insert(path.clone(), node);
        let old = match &replaced {
            Some(Node::File { content, .. }) => Some(content),
            _ => None,
        };
        if old != content.as_ref() {
            if let Some(old) = old {
                self.drop_name(&old.clone(), &path);
            }
            if let Some(content) = content {
                self.add_name(&content, &path);
            }
        }
        if replaced.as_ref().is_some_and(Node::is_dir) {
            self.count_subdir(parent.clone(), false);
        }
        if adds {
            self.count_subdir(parent, true);
        }
        replaced
    }

    /// Takes the node at `path` out, and keeps `subdirs` and `names`.
    fn remove(&mut self, path: &str) -> Option<Node> {
        let removed = self.nodes.remove(path);
        if let Some(Node::File { content, .. }) = &removed {
            self.drop_name(content, path);
        }
        if removed.as_ref().is_some_and(Node::is_dir) {
            self.count_subdir(parent_of(path).to_string(), false);
        }
        removed
    }

    fn count_subdir(&mut self, dir: String, added: bool) {
        let count = self.subdirs.entry(dir.clone()).or_default();
        if added {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.subdirs.remove(&dir);
            }
        }
    }

    /// Every file: (path, content).
    pub fn files(&self) -> impl Iterator<Item = (&str, &Content)> {
        self.nodes.iter().filter_map(|(k, n)| match n {
            Node::File { content, .. } => Some((k.as_str(), content)),
            _ => None,
        })
    }

    /// Every entry: (path, node).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, n)| (k.as_str(), n))
    }

    /// Why `path` cannot be reached, as the kernel says it: `ENOTDIR` when a component on the way is not a
    /// directory, else `ENOENT`.
    pub fn absent(&self, path: &str) -> Refusal {
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            let dir = &path[..at + slash];
            match self.nodes.get(dir) {
                None => return libc::ENOENT,
                Some(n) if !n.is_dir() => return libc::ENOTDIR,
                Some(_) => at += slash + 1,
            }
        }
        libc::ENOENT
    }

    fn parent_is_dir(&self, path: &str) -> Result<(), Refusal> {
        let parent = parent_of(path);
        if self.is_dir(parent) {
            Ok(())
        } else {
            Err(self.absent(path))
        }
    }

    /// Makes `path` a file with this content (create, copy-up, replace by a new staged file). An existing file
    /// is replaced; a directory is not.
    pub fn put_file(&mut self, path: &str, content: Content, mode: u32) -> Result<(), Refusal> {
        self.parent_is_dir(path)?;
        if self.nodes.get(path).is_some_and(Node::is_dir) {
            return Err(libc::EISDIR);
        }
        let mtime = None;
        let replaced = self.insert(
            path.to_string(),
            Node::File {
                content,
                mode,
                mtime,
            },
        );
        if !matches!(replaced, Some(Node::File { .. })) {
            self.times.remove(path);
        }
        for name in self.names_of(path).iter().filter(|n| *n != path) {
            if let Some(Node::File { mode: m, .. }) = self.nodes.get_mut(name) {
                *m = mode;
            }
        }
        Ok(())
    }

    /// Sets the time of a file (directories and symlinks keep theirs in memory only: nothing to do).
    pub fn touch(&mut self, path: &str, new_mtime: SystemTime) -> Result<(), Refusal> {
        match self.nodes.get_mut(path) {
            Some(Node::File { mtime, .. }) => {
                *mtime = Some(new_mtime);
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(self.absent(path)),
        }
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), Refusal> {
        self.parent_is_dir(path)?;
        if self.nodes.contains_key(path) {
            return Err(libc::EEXIST);
        }
        let target = target.to_string();
        self.insert(path.to_string(), Node::Symlink { target });
        self.times.remove(path);
        Ok(())
    }

    pub fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Refusal> {
        if path.is_empty() || self.nodes.contains_key(path) {
            return Err(libc::EEXIST);
        }
        self.parent_is_dir(path)?;
        self.insert(path.to_string(), Node::Dir { mode });
        self.times.remove(path);
        Ok(())
    }

    /// `unlink` of a file or symlink.
    pub fn unlink(&mut self, path: &str) -> Result<Node, Refusal> {
        match self.nodes.get(path) {
            None => Err(self.absent(path)),
            Some(Node::Dir { .. }) => Err(libc::EISDIR),
            Some(_) => {
                let times = self.times.remove(path);
                let removed = self.remove(path).unwrap_or(Node::Dir { mode: 0 });
                // The file's times stay with it while it has a name: under its oldest name left.
                if let (Some(times), Node::File { content, .. }) = (times, &removed)
                    && let Some(oldest) = self.oldest_name(content)
                {
                    self.times.insert(oldest.to_string(), times);
                }
                Ok(removed)
            }
        }
    }

    pub fn rmdir(&mut self, path: &str) -> Result<(), Refusal> {
        match self.nodes.get(path) {
            None if path.is_empty() => Err(libc::EBUSY),
            None => Err(self.absent(path)),
            Some(Node::Dir { .. }) if self.below(path).next().is_some() => Err(libc::ENOTEMPTY),
            Some(Node::Dir { .. }) => {
                self.remove(path);
                self.times.remove(path);
                Ok(())
            }
            Some(_) => Err(libc::ENOTDIR),
        }
    }

    /// `rename(2)` within the tree: a directory moves with everything below it. Returns the node that was
    /// replaced at `to`, if any (its staged file can then be deleted).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<Option<Node>, Refusal> {
        if from.is_empty() || to.is_empty() {
            return Err(libc::EBUSY);
        }
        // As the kernel does: both parents are resolved before the source is looked up.
        self.parent_is_dir(from)?;
        self.parent_is_dir(to)?;
        let Some(moving) = self.nodes.get(from).cloned() else {
            return Err(libc::ENOENT);
        };
        if from == to || self.same_file(from, to) {
            // POSIX: two names of one file stay as they are.
            return Ok(None);
        }
        if moving.is_dir() && is_inside(to, from) {
            return Err(libc::EINVAL);
        }
        if is_inside(from, to) {
            // The target is an ancestor of the source: a directory that is not empty.
            return Err(libc::ENOTEMPTY);
        }
        self.parent_is_dir(to)?;
        let replaced = match (self.nodes.get(to), moving.is_dir()) {
            (None, _) => None,
            (Some(Node::Dir { .. }), true) if self.below(to).next().is_some() => {
                return Err(libc::ENOTEMPTY);
            }
            (Some(Node::Dir { .. }), false) => return Err(libc::EISDIR),
            (Some(other), true) if !other.is_dir() => return Err(libc::ENOTDIR),
            (Some(other), _) => Some(other.clone()),
        };
        let moved: Vec<(String, Node)> = self
            .below(from)
            .map(|(k, n)| (format!("{to}{}", &k[from.len()..]), n.clone()))
            .collect();
        let old: Vec<String> = self.below(from).map(|(k, _)| k.clone()).collect();
        // Each moving file keeps its place among its names: renamed in place before `remove` and `insert`
        // (which then find the name already gone and already there).
        self.rename_name(&moving, from, to);
        for (path, node) in &moved {
            self.rename_name(node, &format!("{from}{}", &path[to.len()..]), path);
        }
        let mut moved_times: Vec<(String, Times)> = Vec::new();
        for k in old {
            self.remove(&k);
            if let Some(t) = self.times.remove(&k) {
                moved_times.push((format!("{to}{}", &k[from.len()..]), t));
            }
        }
        self.remove(from);
        self.insert(to.to_string(), moving);
        for (k, n) in moved {
            self.insert(k, n);
        }
        match self.times.remove(from) {
            Some(t) => self.times.insert(to.to_string(), t),
            None => self.times.remove(to),
        };
        self.times.extend(moved_times);
        Ok(replaced)
    }

    /// Whether `a` and `b` are names of one file.
    fn same_file(&self, a: &str, b: &str) -> bool {
        match (self.nodes.get(a), self.nodes.get(b)) {
            (Some(Node::File { content: x, .. }), Some(Node::File { content: y, .. })) => {
                x == y && self.names.get(x).is_some_and(|n| n.len() > 1)
            }
            _ => false,
        }
    }

    /// The name `from` of the file `node` is `to` now, in the same place among its names.
    fn rename_name(&mut self, node: &Node, from: &str, to: &str) {
        if let Node::File { content, .. } = node
            && let Some(names) = self.names.get_mut(content)
            && let Some(name) = names.iter_mut().find(|n| *n == from)
        {
            *name = to.to_string();
        }
    }

    /// `chmod` of a file (every name of it) or directory (symlinks have no mode of their own).
    pub fn chmod(&mut self, path: &str, new_mode: u32) -> Result<(), Refusal> {
        match self.nodes.get_mut(path) {
            Some(Node::File { mode, .. }) => {
                *mode = new_mode & 0o7777;
                for name in self.names_of(path) {
                    if let Some(Node::File { mode, .. }) = self.nodes.get_mut(&name) {
                        *mode = new_mode & 0o7777;
                    }
                }
                Ok(())
            }
            Some(Node::Dir { mode }) => {
                *mode = new_mode & 0o7777;
                Ok(())
            }
            Some(Node::Symlink { .. }) => Ok(()),
            None => Err(self.absent(path)),
        }
    }

    /// The times of `path` set in this mount (a file's with several names are kept under its oldest name).
    pub fn times(&self, path: &str) -> Times {
        self.times
            .get(self.primary(path))
            .copied()
            .unwrap_or_default()
    }

    /// Sets what `set` changes in the times of `path` (the root is `""`).
    pub fn set_times(&mut self, path: &str, set: impl FnOnce(&mut Times)) {
        if path.is_empty() || self.nodes.contains_key(path) {
            let key = self.primary(path).to_string();
            set(self.times.entry(key).or_default());
        }
    }

    /// An entry was added to, removed from or renamed in the directory that holds `path`: that directory's
    /// modification and change times are `now`.
    pub fn entries_changed_beside(&mut self, path: &str, now: SystemTime) {
        let dir = parent_of(path);
        self.set_times(dir, |t| {
            t.mtime = Some(now);
            t.ctime = Some(now);
        });
    }

    /// Whether any file still reads its bytes from the base version.
    pub fn uses_base(&self) -> bool {
        self.files().any(|(_, c)| matches!(c, Content::Base(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Tree {
        Tree::from_files([
            ("a.txt".to_string(), 0o644),
            ("d/x".to_string(), 0o644),
            ("d/e/y".to_string(), 0o644),
        ])
    }

    fn paths(t: &Tree) -> Vec<&str> {
        t.entries().map(|(k, _)| k).collect()
    }

    #[test]
    fn base_files_bring_their_directories() {
        let t = base();
        assert_eq!(paths(&t), ["a.txt", "d", "d/e", "d/e/y", "d/x"]);
        let root: Vec<_> = t.children("").map(|(n, _)| n).collect();
        assert_eq!(root, ["a.txt", "d"]);
        let d: Vec<_> = t.children("d").map(|(n, _)| n).collect();
        assert_eq!(d, ["e", "x"]);
    }

    #[test]
    fn children_do_not_leak_siblings_with_a_common_prefix() {
        let t = Tree::from_files([("d/x".to_string(), 0o644), ("d-2/y".to_string(), 0o644)]);
        let d: Vec<_> = t.children("d").map(|(n, _)| n).collect();
        assert_eq!(d, ["x"]);
    }

    #[test]
    fn children_step_over_subtrees_and_keep_names_that_sort_inside_them() {
        let t = Tree::from_files(
            ["a/b/c", "a/b/d/e", "a/b-x", "a/b.y", "a/b0", "a/c", "b/z"]
                .map(|p| (p.to_string(), 0o644)),
        );
        let a: Vec<_> = t.children("a").map(|(n, _)| n).collect();
        assert_eq!(a, ["b", "b-x", "b.y", "b0", "c"]);
        let root: Vec<_> = t.children("").map(|(n, _)| n).collect();
        assert_eq!(root, ["a", "b"]);
        assert_eq!(t.subdirs("a"), 1);
        assert_eq!(t.subdirs("a/b"), 1);
        assert_eq!(t.subdirs(""), 2);
        assert_eq!(t.children("a/c").count(), 0);
    }

    #[test]
    fn renaming_a_directory_moves_its_subtree_without_touching_content() {
        let mut t = base();
        t.rename("d", "moved").unwrap();
        assert_eq!(
            paths(&t),
            ["a.txt", "moved", "moved/e", "moved/e/y", "moved/x"]
        );
        assert_eq!(
            t.get("moved/e/y"),
            Some(&Node::File {
                content: Content::Base("d/e/y".into()),
                mode: 0o644,
                mtime: None
            })
        );
    }

    #[test]
    fn rename_follows_posix_rules() {
        let mut t = base();
        assert_eq!(t.rename("d", "d/e/inside"), Err(libc::EINVAL));
        assert_eq!(t.rename("a.txt", "d"), Err(libc::EISDIR));
        assert_eq!(t.rename("d", "a.txt"), Err(libc::ENOTDIR));
        t.mkdir("full", 0o755).unwrap();
        t.put_file("full/f", Content::Staged(1), 0o644).unwrap();
        assert_eq!(t.rename("d", "full"), Err(libc::ENOTEMPTY));
        assert_eq!(t.rename("nope", "x"), Err(libc::ENOENT));
        assert_eq!(t.rename("a.txt", "missing/x"), Err(libc::ENOENT));
        assert_eq!(t.rename("a.txt", "a.txt/x"), Err(libc::ENOTDIR));
        let replaced = t.rename("full/f", "a.txt").unwrap();
        assert!(matches!(
            replaced,
            Some(Node::File {
                content: Content::Base(_),
                ..
            })
        ));
        t.mkdir("empty", 0o755).unwrap();
        t.rename("d", "empty").unwrap();
        assert!(t.is_dir("empty/e"));
    }

    #[test]
    fn times_move_with_their_entries_and_leave_with_them() {
        let mut t = base();
        let at = |secs| Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        t.set_times("d/e", |x| x.mtime = at(1));
        t.set_times("d/x", |x| x.atime = at(2));
        t.set_times("nothing", |x| x.atime = at(3));
        assert_eq!(t.times("nothing"), Times::default());
        t.entries_changed_beside("a.txt", at(4).unwrap());
        assert_eq!(t.times("").mtime, at(4));
        t.rename("d", "m").unwrap();
        assert_eq!(t.times("m/e").mtime, at(1));
        assert_eq!(t.times("m/x").atime, at(2));
        assert_eq!(t.times("d/e"), Times::default());
        t.unlink("m/x").unwrap();
        t.put_file("m/x", Content::Staged(9), 0o644).unwrap();
        assert_eq!(t.times("m/x"), Times::default(), "a new file has new times");
    }

    #[test]
    fn rmdir_and_unlink_refuse_the_wrong_kind() {
        let mut t = base();
        assert_eq!(t.rmdir("d"), Err(libc::ENOTEMPTY));
        assert_eq!(t.rmdir("a.txt"), Err(libc::ENOTDIR));
        assert_eq!(t.unlink("d"), Err(libc::EISDIR));
        assert_eq!(t.unlink("zzz").unwrap_err(), libc::ENOENT);
        t.unlink("d/e/y").unwrap();
        t.rmdir("d/e").unwrap();
        assert_eq!(paths(&t), ["a.txt", "d", "d/x"]);
    }

    #[test]
    fn creating_needs_a_directory_parent() {
        let mut t = base();
        assert_eq!(
            t.put_file("a.txt/f", Content::Staged(1), 0o644),
            Err(libc::ENOTDIR)
        );
        assert_eq!(
            t.put_file("no/f", Content::Staged(1), 0o644),
            Err(libc::ENOENT)
        );
        assert_eq!(
            t.put_file("d", Content::Staged(1), 0o644),
            Err(libc::EISDIR)
        );
        assert_eq!(t.mkdir("d", 0o755), Err(libc::EEXIST));
        assert_eq!(t.symlink("a.txt", "x"), Err(libc::EEXIST));
        t.symlink("link", "a.txt").unwrap();
        t.put_file("a.txt", Content::Staged(2), 0o600).unwrap();
        t.chmod("a.txt", 0o100755).unwrap();
        assert_eq!(
            t.get("a.txt"),
            Some(&Node::File {
                content: Content::Staged(2),
                mode: 0o755,
                mtime: None
            })
        );
    }

    #[test]
    fn a_link_is_a_second_name_of_one_content_that_follows_renames() {
        let mut t = base();
        t.put_file("d/s", Content::Staged(7), 0o644).unwrap();
        assert_eq!(t.link("d", "x"), Err(libc::EPERM));
        assert_eq!(t.link("d/s", "a.txt"), Err(libc::EEXIST));
        assert_eq!(t.link("d/s", "no/x"), Err(libc::ENOENT));
        t.link("d/s", "t").unwrap();
        t.link("t", "u").unwrap();
        assert_eq!(t.names_of("u"), ["d/s", "t", "u"]);
        assert_eq!(t.name_count(&Content::Staged(7)), 3);
        t.rename("d", "e").unwrap();
        assert_eq!(
            t.primary("t"),
            "e/s",
            "the first name follows its directory"
        );
        t.unlink("e/s").unwrap();
        assert_eq!(t.names_of("u"), ["t", "u"]);
        assert!(t.names_content(&Content::Staged(7)));
        t.put_file("t", Content::Staged(8), 0o644).unwrap();
        assert_eq!(t.names_of("u"), ["u"]);
        t.rename("a.txt", "u").unwrap();
        assert!(!t.names_content(&Content::Staged(7)), "the last name went");
    }

    #[test]
    fn hard_links_of_the_base_are_one_file_until_a_copy_up_puts_every_name_on_one_staged_file() {
        let mut t = Tree::from_base([
            (
                "a".to_string(),
                Node::File {
                    content: Content::Base("a".into()),
                    mode: 0o644,
                    mtime: None,
                },
            ),
            (
                "b".to_string(),
                Node::File {
                    content: Content::Base("a".into()),
                    mode: 0o644,
                    mtime: None,
                },
            ),
        ]);
        assert_eq!(t.names_of("b"), ["a", "b"]);
        // A copy-up: each name is put on the staged file, as the journal's records replay it.
        t.put_file("a", Content::Staged(1), 0o644).unwrap();
        assert_eq!(
            t.names_of("b"),
            ["b"],
            "a base file with one name left is not a link"
        );
        t.put_file("b", Content::Staged(1), 0o644).unwrap();
        assert_eq!(t.name_count(&Content::Staged(1)), 2);
        assert!(matches!(
            t.get("b"),
            Some(Node::File {
                content: Content::Staged(1),
                ..
            })
        ));
    }

    /// A linked file's times are one set, whichever name sets or reads them, and stay with the file when its
    /// oldest name goes.
    #[test]
    fn the_times_of_a_linked_file_are_kept_once_under_its_oldest_name() {
        let mut t = base();
        t.put_file("s", Content::Staged(9), 0o644).unwrap();
        t.link("s", "u").unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
        t.set_times("u", |times| times.atime = Some(at));
        assert_eq!(t.times("s").atime, Some(at));
        t.unlink("s").unwrap();
        assert_eq!(t.times("u").atime, Some(at));
        assert_eq!(t.primary("u"), "u");
    }

    /// The kept count of subdirectories is the one counted from the children, through every change that moves
    /// directories (the link count `stat` shows).
    #[test]
    fn subdirectory_counts_follow_mkdir_rename_and_rmdir() {
        let mut t = Tree::from_files([("a/b/f".to_string(), 0o644), ("c".to_string(), 0o644)]);
        let counted = |t: &Tree, dir: &str| t.children(dir).filter(|(_, n)| n.is_dir()).count();
        let check = |t: &Tree| {
            for dir in ["", "a", "a/b", "x", "x/b", "x/b/y", "z"] {
                assert_eq!(t.subdirs(dir), counted(t, dir), "{dir}: {t:?}");
            }
        };
        check(&t);
        t.mkdir("a/b/y", 0o755).unwrap();
        t.mkdir("z", 0o755).unwrap();
        check(&t);
        assert_eq!(t.subdirs(""), 2);
        t.rename("a", "x").unwrap();
        check(&t);
        assert_eq!(t.subdirs("x/b"), 1);
        t.rename("z", "x/b/y").unwrap();
        check(&t);
        t.rmdir("x/b/y").unwrap();
        t.unlink("x/b/f").unwrap();
        check(&t);
        assert_eq!(t.subdirs("x/b"), 0);
        assert_eq!(t.subdirs(""), 1);
    }

    /// A base version's tree (its directories listed, or implied by the paths under them) counts its
    /// subdirectories as one built by `mkdir` does: a rebase compares the two trees whole.
    #[test]
    fn a_base_tree_counts_its_subdirectories() {
        let dir = || Node::Dir { mode: 0o755 };
        let base = Tree::from_base([
            ("d".to_string(), dir()),
            ("d/e/f".to_string(), dir()),
            (
                "g/h".to_string(),
                Node::Symlink {
                    target: "../d".into(),
                },
            ),
        ]);
        let mut built = Tree::default();
        for path in ["d", "d/e", "d/e/f", "g"] {
            built.mkdir(path, 0o755).unwrap();
        }
        built.symlink("g/h", "../d").unwrap();
        assert_eq!(base.subdirs(""), 2);
        assert_eq!(base.subdirs("d/e"), 1);
        assert_eq!(base, built);
    }
}
