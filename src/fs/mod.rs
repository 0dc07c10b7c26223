//! The filesystem core: the VM0 tree as blocking `Result` methods, knowing nothing of FUSE or HTTP.
//!
//! The fuser adapter (`crate::fuse`) runs each request on a worker thread and calls one method here; the core
//! talks to the `Vm0Api` trait and to the archive cache. Keeping FUSE out of this layer lets the whole tree be
//! tested against an in-memory API (see `tests.rs`), as mountpoint-s3 does with its `fs.rs`.
//!
//! Consistency, as DESIGN.md section 1 sets it: API listings are kept for `--metadata-ttl`; a run that is still
//! moving for one second; what can no longer change (a terminal run, a storage version) for good. Files whose
//! content comes from the API are rendered when their attributes are asked for, so `stat` and `read` agree, and an
//! open file reads the snapshot taken at `open`.

mod error;
mod handles;
mod inodes;
mod meta;
mod render;
#[cfg(test)]
mod tests;
mod tree;
mod ttl;

use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use error::{Error, Result};
pub use inodes::ROOT_INO;

use crate::api::Vm0Api;
use crate::cache::ArchiveCache;
use handles::{Handle, Handles};
use inodes::{InodeTable, Node};
use meta::Meta;

/// What a mount is configured with (the `vm0fs mount` flags that reach the core).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// How long listings and metadata from the API are believed.
    pub metadata_ttl: Duration,
    /// Owner of every file: the user who mounted.
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    File,
    Symlink,
}

/// The attributes of a node, and how long the kernel may keep them.
#[derive(Debug, Clone)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (no file type bits).
    pub perm: u16,
    pub nlink: u32,
    pub mtime: SystemTime,
    pub uid: u32,
    pub gid: u32,
    /// How long the kernel may cache this attribute and the name that led to it.
    pub ttl: Duration,
}

/// One name in a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileKind,
    pub name: OsString,
}

/// The answer to `open`: a handle and how the kernel should cache the file's pages.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub fh: u64,
    /// Content rendered from the API: every read comes here, sizes may move between opens.
    pub direct_io: bool,
    /// Immutable content (a file of a storage version): pages stay cached across opens.
    pub keep_cache: bool,
}

pub struct Vm0Fs {
    meta: Meta,
    cache: Arc<ArchiveCache>,
    inodes: InodeTable,
    handles: Handles,
    config: FsConfig,
    mounted_at: SystemTime,
}

impl Vm0Fs {
    pub fn new(api: Arc<dyn Vm0Api>, cache: Arc<ArchiveCache>, config: FsConfig) -> Self {
        Vm0Fs {
            meta: Meta::new(api, config.metadata_ttl),
            cache,
            inodes: InodeTable::new(),
            handles: Handles::new(),
            config,
            mounted_at: SystemTime::now(),
        }
    }

    fn node(&self, ino: u64) -> Result<Node> {
        self.inodes.node(ino).ok_or_else(|| {
            Error::new(
                libc::ESTALE,
                format!("inode {ino} is not known to this mount"),
            )
        })
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr> {
        let parent = self.node(parent)?;
        let child = self.child(&parent, name)?;
        self.attr(&child)
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let node = self.node(ino)?;
        self.attr(&node)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        self.link_target(&node)
    }

    /// Takes a snapshot of the directory, so that `readdir` offsets stay valid however the API changes meanwhile.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let node = self.node(ino)?;
        let mut entries = vec![
            DirEntry {
                ino,
                kind: FileKind::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: self.inodes.ino(&tree::parent_of(&node)),
                kind: FileKind::Directory,
                name: "..".into(),
            },
        ];
        entries.extend(self.children(&node)?);
        Ok(self.handles.insert(Handle::Dir(Arc::new(entries))))
    }

    /// The entries of an open directory from `offset` on; each comes with the offset of the next one.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Vec<(u64, DirEntry)>> {
        let entries = self.handles.dir(fh)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(entries
            .iter()
            .enumerate()
            .skip(start)
            .map(|(i, e)| (i as u64 + 1, e.clone()))
            .collect())
    }

    /// Like `readdir`, with each entry's attributes (for READDIRPLUS); `.` and `..` are left to the kernel.
    pub fn readdirplus(&self, fh: u64, offset: u64) -> Result<Vec<(u64, DirEntry, Attr)>> {
        let mut out = Vec::new();
        for (next, entry) in self.readdir(fh, offset)? {
            if entry.name == "." || entry.name == ".." {
                continue;
            }
            let node = self.node(entry.ino)?;
            match self.attr(&node) {
                Ok(attr) => out.push((next, entry, attr)),
                Err(e) if e.errno == libc::ENOENT => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
    }

    /// Opens a file for reading. Everything but `runs/new/` is read-only: asking to write is `EACCES`.
    pub fn open(&self, ino: u64, flags: i32) -> Result<Opened> {
        let node = self.node(ino)?;
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Error::new(
                libc::EACCES,
                format!("{}: read-only file", tree::describe(&node)),
            ));
        }
        self.open_for_read(&node)
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.handles.read(fh, offset, size)
    }

    pub fn release(&self, fh: u64) {
        self.handles.remove(fh);
    }

    /// The value of an extended attribute (`user.vm0.id`, `user.vm0.version`).
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        self.xattrs(&node)?
            .into_iter()
            .find(|(n, _)| OsStr::new(n) == name)
            .map(|(_, v)| v.into_bytes())
            .ok_or_else(|| Error::new(libc::ENODATA, "no such extended attribute"))
    }

    /// The names of the extended attributes, each followed by a NUL, as `listxattr(2)` wants them.
    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        let mut out = Vec::new();
        for (name, _) in self.xattrs(&node)? {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Any change to the tree other than through `runs/new/` and `ctl`.
    pub fn refuse_change(&self, ino: u64) -> Error {
        match self.node(ino) {
            Ok(node) => Error::read_only(tree::describe(&node)),
            Err(e) => e,
        }
    }
}
