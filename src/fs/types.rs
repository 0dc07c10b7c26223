//! The values the core hands its adapter and its namespaces: a mount's configuration, attributes, directory
//! entries and the answer to `open`.
//!
//! They are kept apart from `Vm0Fs` so that every namespace in `tree` and the FUSE adapter can name them without
//! reaching into the dispatch, and so that `mod.rs` holds the dispatch only.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

/// The longest name of one path component, in bytes (`statfs` says so too); a longer one is `ENAMETOOLONG`.
pub const NAME_MAX: usize = 255;

/// What a mount is configured with (the `vm0fs mount` flags that reach the core).
#[derive(Debug, Clone)]
pub struct FsConfig {
    /// How long listings and metadata from the API are believed.
    pub metadata_ttl: Duration,
    /// Owner of every file: the user who mounted.
    pub uid: u32,
    pub gid: u32,
    /// A test hook: looking up this name panics, to prove that a panicking request is answered (EIO) and the
    /// mount goes on. Set only from the `VM0FS_TEST_PANIC_ON_LOOKUP` environment variable.
    pub panic_on_lookup: Option<OsString>,
    /// Other users may use the mount (`--allow-other`). Otherwise the root is mode 0500, so that the kernel
    /// (with `default_permissions`) refuses other uids even what it answers from its own caches.
    pub allow_other: bool,
    /// Shown by `.vm0fs/status`: where the mount is and which API it serves.
    pub mountpoint: String,
    pub api_url: String,
    /// Quiet time after the last change of a volume before it is published; zero: only `vm0fs sync` and unmount.
    pub commit_delay: Duration,
    /// Bytes of staged files past which writes to volumes fail with ENOSPC.
    pub max_staged_bytes: u64,
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
    /// Access and change times: the modification time, except in a writable volume, which keeps its own.
    pub atime: SystemTime,
    pub ctime: SystemTime,
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
    /// The entry's attributes when the listing read them already (a version's tree on disk, where they cannot
    /// change): `readdirplus` then answers without looking the entry up again.
    pub attr: Option<Attr>,
}

/// The answer to `open`: a handle and how the kernel should cache the file's pages.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub fh: u64,
    /// Content rendered from the API: every read comes here, sizes may move between opens.
    pub direct_io: bool,
    /// Immutable content (a file of a storage version): pages stay cached across opens.
    pub keep_cache: bool,
    /// Closing it needs no FLUSH request: a volume file open for writing, whose bytes are in the page cache at
    /// `close` and reach the disk with the stage's group commit.
    pub no_flush: bool,
}

/// Tells the kernel that what it cached about an inode is out of date. Implemented by the FUSE adapter over
/// fuser's `Notifier`; the core calls it only from its background poller, never inside a request.
pub trait Invalidator: Send + Sync {
    fn attributes_changed(&self, ino: u64);
}
