//! The shape of the tree: which names each directory holds, what each node's attributes and content are.
//!
//! Everything here is decided from the node alone (`inodes::Node`) plus the API objects of `meta` and the
//! extracted archives of the cache, so any inode can be answered without knowing the path that led to it.
//!
//! Each namespace of the tree (the root and `.vm0fs/`, `agents/`, `runs/`, the read-only storages, the head view
//! of a volume) is one module with its own sub-enum of `Node` and one `Namespace` implementation: the operations
//! it allows, and the changes (create, unlink, rename, mkdir, setattr), which it refuses unless it says otherwise.
//! `Node::namespace` is the one match that dispatches; a new variant touches its own module only. A trait is
//! used for the dispatch alone: the identity the inode table hashes stays the nested enum.
//!
//! Names that come from the API are checked before they become file names: a name that is empty, `.`/`..`,
//! longer than 255 bytes or holding `/` or NUL is skipped with a warning, and of two objects with one name the
//! first listed (the newest) is shown.

mod agents;
mod archive;
mod control;
mod runs;
mod storage;
mod volume;

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

pub use agents::AgentNode;
pub(in crate::fs) use archive::{HardLinks, version_of};
pub use control::ControlNode;
pub use runs::{RunFile, RunNode};
pub use storage::StorageNode;
pub use volume::VolumeNode;

use super::error::{Error, Result};
use super::handles::Handle;
use super::inodes::Node;
use super::{Attr, DirEntry, FileKind, Opened, Vm0Fs};
use crate::api::models::StorageKind;

/// Attribute TTL of the fixed top of the tree and of what can no longer change.
const FIXED_TTL: Duration = Duration::from_secs(3600);
/// Attribute TTL of anything that may still move (a run that is not terminal, its files).
const MOVING_TTL: Duration = Duration::from_secs(1);
/// The shortest accepted version prefix (CONTRACT.md 6.2).
const MIN_VERSION_PREFIX: usize = 8;

/// What one namespace of the tree answers for its own nodes. The changes are refused (`EROFS`) unless a
/// namespace allows them.
pub(super) trait Namespace {
    /// The node called `name` in this directory (a name already known to be a possible file name), or `ENOENT`.
    fn child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node>;
    /// The attributes of this node, numbered `ino`; for API files this renders the content, so the size is exact.
    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr>;
    /// The names in this directory (without `.` and `..`), added to `out`, each holding a reference on its number.
    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()>;
    /// Opens this node for reading.
    fn open(&self, fs: &Vm0Fs) -> Result<Opened>;
    /// The directory this node is listed in.
    fn parent(&self) -> Node;
    /// This node's path in the mount, for messages.
    fn describe(&self) -> String;

    fn link_target(&self, _fs: &Vm0Fs) -> Result<Vec<u8>> {
        Err(Error::new(
            libc::EINVAL,
            format!("{}: not a symbolic link", self.describe()),
        ))
    }

    fn xattrs(&self, _fs: &Vm0Fs) -> Result<Vec<(&'static str, String)>> {
        Ok(Vec::new())
    }

    /// The handle of an open for writing, or `None` when this node cannot be written.
    fn open_write(&self, _fs: &Vm0Fs) -> Result<Option<Handle>> {
        Ok(None)
    }

    /// Creates `name` (permission bits `mode`) in this directory and opens it for writing.
    fn create(&self, _fs: &Vm0Fs, _name: &OsStr, _mode: u32) -> Result<(Node, Handle)> {
        Err(Error::read_only(self.describe()))
    }

    /// Changes the size of this file (`setattr`; `open(O_TRUNC)` asks for 0).
    fn truncate(&self, _fs: &Vm0Fs, _size: u64) -> Result<()> {
        Err(Error::read_only(self.describe()))
    }

    fn unlink(&self, _fs: &Vm0Fs, _name: &OsStr) -> Result<()> {
        Err(Error::read_only(self.describe()))
    }

    fn rmdir(&self, _fs: &Vm0Fs, _name: &OsStr) -> Result<()> {
        Err(Error::read_only(self.describe()))
    }

    /// `rename(2)`; unless `replace`, an existing `to_name` is `EEXIST` (`RENAME_NOREPLACE`).
    fn rename(
        &self,
        _fs: &Vm0Fs,
        _name: &OsStr,
        _to: &Node,
        _to_name: &OsStr,
        _replace: bool,
    ) -> Result<()> {
        Err(Error::read_only(self.describe()))
    }

    /// `link(2)`: `name` here becomes a second name of `source`.
    fn link(&self, _fs: &Vm0Fs, _name: &OsStr, _source: &Node) -> Result<Node> {
        Err(Error::read_only(self.describe()))
    }

    fn mkdir(&self, _fs: &Vm0Fs, _name: &OsStr, _mode: u32) -> Result<Node> {
        Err(Error::read_only(self.describe()))
    }

    fn symlink(&self, _fs: &Vm0Fs, _name: &OsStr, _target: &std::path::Path) -> Result<Node> {
        Err(Error::read_only(self.describe()))
    }

    fn chmod(&self, _fs: &Vm0Fs, _mode: u32) -> Result<()> {
        Err(Error::read_only(self.describe()))
    }

    /// `utimensat`: new access and modification times (`None` leaves one as it is).
    fn set_times(
        &self,
        _fs: &Vm0Fs,
        _atime: Option<SystemTime>,
        _mtime: Option<SystemTime>,
    ) -> Result<()> {
        Err(Error::read_only(self.describe()))
    }

    /// Whether this node is inside a writable volume, where what a volume cannot hold (hard links, devices,
    /// FIFOs, sockets, foreign xattrs) is refused as such rather than as a read-only tree.
    fn holds_volume_content(&self) -> bool {
        false
    }
}

/// The root directory.
struct RootDir;

impl Node {
    /// The one dispatch from a node to the namespace that answers for it.
    pub(super) fn namespace(&self) -> &dyn Namespace {
        match self {
            Node::Root => &RootDir,
            Node::Control(node) => node,
            Node::Agents(node) => node,
            Node::Runs(node) => node,
            Node::Storage(node) => node,
            Node::Volume(node) => node,
        }
    }
}

impl Vm0Fs {
    /// The node called `name` in `parent`, or `ENOENT`.
    pub(super) fn child(&self, parent: &Node, name: &OsStr) -> Result<Node> {
        if !is_safe_bytes(name.as_bytes()) {
            return Err(missing(parent.namespace(), name));
        }
        parent.namespace().child(self, name)
    }

    pub(super) fn attr(&self, ino: u64, node: &Node) -> Result<Attr> {
        node.namespace().attr(self, ino)
    }

    /// The names in a directory (without `.` and `..`), added to `out`, each holding a reference on its number
    /// (given back by the caller, even if an error ends the listing halfway).
    pub(super) fn children(&self, node: &Node, out: &mut Vec<DirEntry>) -> Result<()> {
        node.namespace().children(self, out)
    }

    pub(super) fn link_target(&self, node: &Node) -> Result<Vec<u8>> {
        node.namespace().link_target(self)
    }

    pub(super) fn open_for_read(&self, node: &Node) -> Result<Opened> {
        node.namespace().open(self)
    }

    pub(super) fn xattrs(&self, node: &Node) -> Result<Vec<(&'static str, String)>> {
        node.namespace().xattrs(self)
    }

    /// A directory entry for `node`, taking a reference on its number.
    fn entry(&self, node: &Node, kind: FileKind, name: impl Into<std::ffi::OsString>) -> DirEntry {
        DirEntry {
            ino: self.inodes.acquire(node),
            kind,
            name: name.into(),
            attr: None,
        }
    }

    /// Opened with every read coming here: content rendered from the API, which may differ at each open.
    fn open_handle(&self, handle: Handle) -> Opened {
        Opened {
            fh: self.handles.insert(handle),
            direct_io: true,
            keep_cache: false,
            no_flush: false,
        }
    }

    fn dir_attr(&self, ino: u64, mtime: SystemTime, ttl: Duration) -> Attr {
        self.make_attr(ino, FileKind::Directory, 0, 0o555, mtime, ttl)
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime, ttl: Duration) -> Attr {
        self.make_attr(ino, FileKind::File, size, 0o444, mtime, ttl)
    }

    fn symlink_attr(&self, ino: u64, len: usize, mtime: SystemTime, ttl: Duration) -> Attr {
        self.make_attr(ino, FileKind::Symlink, len as u64, 0o777, mtime, ttl)
    }

    fn disk_attr(&self, ino: u64, meta: &Metadata, ttl: Duration) -> Attr {
        let kind = kind_of(&meta.file_type());
        let size = if kind == FileKind::Directory {
            0
        } else {
            meta.len()
        };
        // Read-only: the tar mode without write bits (the cache already dropped setuid and friends).
        let perm = (meta.mode() & 0o555) as u16 | if kind == FileKind::Symlink { 0o777 } else { 0 };
        let mtime = meta.modified().unwrap_or(self.mounted_at);
        let mut attr = self.make_attr(ino, kind, size, perm, mtime, ttl);
        if kind == FileKind::File {
            // A hard link of the archive is a second name of one cached file: its link count says so.
            attr.nlink = u32::try_from(meta.nlink()).unwrap_or(u32::MAX);
        }
        attr
    }

    fn make_attr(
        &self,
        ino: u64,
        kind: FileKind,
        size: u64,
        perm: u16,
        mtime: SystemTime,
        ttl: Duration,
    ) -> Attr {
        Attr {
            ino,
            kind,
            size,
            perm,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            mtime,
            atime: mtime,
            ctime: mtime,
            uid: self.config.uid,
            gid: self.config.gid,
            ttl,
        }
    }
}

impl Namespace for RootDir {
    fn child(&self, _fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        let name = text_name(self, name)?;
        Ok(match name {
            "agents" => Node::Agents(AgentNode::Dir),
            "runs" => Node::Runs(RunNode::Dir),
            "volumes" => Node::Storage(StorageNode::Dir(StorageKind::Volume)),
            "artifacts" => Node::Storage(StorageNode::Dir(StorageKind::Artifact)),
            control::CONTROL_DIR => Node::Control(ControlNode::Dir),
            _ => return Err(missing(self, OsStr::new(name))),
        })
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        Ok(control::top_dir_attr(fs, ino))
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        for name in ["agents", "artifacts", "runs", "volumes"] {
            let child = self.child(fs, OsStr::new(name))?;
            out.push(fs.entry(&child, FileKind::Directory, name));
        }
        Ok(())
    }

    fn open(&self, _fs: &Vm0Fs) -> Result<Opened> {
        Err(is_a_directory(self))
    }

    fn parent(&self) -> Node {
        Node::Root
    }

    fn describe(&self) -> String {
        "/".into()
    }
}

/// The `ENOENT` of a name a directory does not hold.
fn missing(parent: &dyn Namespace, name: &OsStr) -> Error {
    Error::not_found(format!("{}/{}", parent.describe(), name.to_string_lossy()))
}

/// A name from a lookup in a directory whose names come from the API, which are text.
fn text_name<'a>(parent: &dyn Namespace, name: &'a OsStr) -> Result<&'a str> {
    name.to_str().ok_or_else(|| missing(parent, name))
}

/// The file called `name` in a fixed directory listing such as `RUN_FILES`.
fn file_by_name<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The name of `file` in a fixed directory listing.
fn name_of_file<T: PartialEq>(table: &[(&'static str, T)], file: T) -> &'static str {
    table
        .iter()
        .find(|(_, f)| *f == file)
        .map_or("?", |(n, _)| n)
}

fn kind_of(file_type: &fs::FileType) -> FileKind {
    if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::File
    }
}

/// An API timestamp (ISO-8601) as a `SystemTime`; `fallback` when the server sent something else.
fn time_of(timestamp: &str, fallback: SystemTime) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .map(SystemTime::from)
        .unwrap_or(fallback)
}

fn not_a_directory(node: &dyn Namespace) -> Error {
    Error::new(
        libc::ENOTDIR,
        format!("{}: not a directory", node.describe()),
    )
}

fn is_a_directory(node: &dyn Namespace) -> Error {
    Error::new(libc::EISDIR, format!("{}: is a directory", node.describe()))
}

/// Whether an API name can be a file name as it is.
fn is_safe_name(name: &str) -> bool {
    is_safe_bytes(name.as_bytes())
}

fn is_safe_bytes(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && name.len() <= 255
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// The names that can be shown, each once, in the API's order; the others are logged and skipped.
fn unique_safe_names<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in names {
        if !is_safe_name(name) {
            tracing::warn!("skipping {what} {name:?}: the name cannot be a file name");
        } else if !seen.insert(name) {
            tracing::warn!(
                "skipping a second {what} named {name:?}: names must be unique to be shown"
            );
        } else {
            out.push(name);
        }
    }
    out
}

/// The directory a node is listed in.
pub(super) fn parent_of(node: &Node) -> Node {
    node.namespace().parent()
}

/// A node's path in the mount, for messages.
pub(super) fn describe(node: &Node) -> String {
    node.namespace().describe()
}
