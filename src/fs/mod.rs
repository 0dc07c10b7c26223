//! The filesystem core: the VM0 tree as blocking `Result` methods, knowing nothing of FUSE or HTTP.
//!
//! The fuser adapter (`crate::fuse`) runs each request on a worker thread and calls one method here; the core
//! talks to the `Vm0Api` trait and to the archive cache. Keeping FUSE out of this layer lets the whole tree be
//! tested against the in-memory API of `api::fake` (see `tests/`), as mountpoint-s3 does with its `fs.rs`.
//!
//! Consistency, as DESIGN.md section 1 sets it: API listings are kept for `--metadata-ttl`; a run that is still
//! moving for one second; what can no longer change (a terminal run, a storage version) for good. Files whose
//! content comes from the API are rendered when their attributes are asked for, so `stat` and `read` agree, and an
//! open file reads the snapshot taken at `open`.
//!
//! This file is the dispatch: each request finds its node or handle and hands it on, to the node's namespace
//! (`tree`), to the directory snapshots (`directories`), to the runs' state machines (`runs`) or to the stage of a
//! volume. The values the adapter and the namespaces share are in `types`, the errno vocabulary in `error`.

mod control;
mod directories;
mod error;
mod handles;
mod inodes;
mod listing;
mod meta;
mod render;
mod runs;
mod saved;
#[cfg(test)]
mod tests;
mod tree;
mod ttl;
mod types;
mod volumes;
mod waiting;
mod writes;

use crate::sync::Locked;
use std::ffi::OsStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub use control::{MountStatus, PIN_XATTR, RequestCounts, RequestStats, UNPIN_XATTR};
pub use error::{Error, Result};
pub use inodes::ROOT_INO;
pub use types::{Attr, DirEntry, FileKind, FsConfig, Invalidator, NAME_MAX, Opened};

use crate::api::Vm0Api;
use crate::cache::ArchiveCache;
use crate::stage::StageConfig;
use handles::{Handle, Handles};
use inodes::{InodeTable, Node};
use meta::Meta;
use runs::live_logs::LiveLogs;
use runs::outcomes::Outcomes;
pub use saved::Saved;
use tree::RunNode;
use volumes::Volumes;

/// The filesystem core: one per mount, shared by every worker thread.
///
/// # Lock order
///
/// A thread that holds one of these locks takes only locks further down the list, never one above it:
///
/// 1. the write state of one open `runs/new/<agent>` handle (`NewRunWrite`), held across `create_run` so that
///    two flushes of one handle start one run;
/// 2. one log's state in `live_logs`, held across that log's page fetches (one fetcher per log);
/// 3. `meta`: one TTL map at a time (a fetch happens outside it);
/// 4. `new_run_outcomes`;
/// 5. leaves, held for a map update and never across a call: the map of logs in `live_logs`, `handles`, and
///    `inodes` (the inode table).
///
/// The archive cache (`cache`) and the API client have their own locks and are called with none of these held
/// except 1 and 2 (both only around API calls). `invalidator` is set once and takes no lock here; the poller calls
/// it with no lock held, as the kernel may call back into the mount.
pub struct Vm0Fs {
    meta: Arc<Meta>,
    live_logs: LiveLogs,
    /// What reading `runs/new/<agent>` shows each reader: the run its writer started, or why not (`outcomes`).
    new_run_outcomes: Outcomes,
    invalidator: OnceLock<Box<dyn Invalidator>>,
    /// The adapter's per-opcode request counters, shown by `.vm0fs/status`.
    request_counts: OnceLock<Arc<dyn RequestCounts>>,
    cache: Arc<ArchiveCache>,
    inodes: InodeTable,
    handles: Handles,
    config: FsConfig,
    mounted_at: SystemTime,
    /// The writable volumes: the gateway to the stage.
    volumes: Volumes,
    /// The first names of hard-linked files, by version (`tree::archive`).
    hard_links: tree::HardLinks,
}

impl Vm0Fs {
    pub fn new(api: Arc<dyn Vm0Api>, cache: Arc<ArchiveCache>, config: FsConfig) -> Self {
        let stage_config = StageConfig {
            cache_dir: cache.dir().to_path_buf(),
            commit_delay: config.commit_delay,
            max_staged_bytes: config.max_staged_bytes,
        };
        let meta = Arc::new(Meta::new(
            api.clone(),
            config.metadata_ttl,
            Saved::new(&cache.status().dir),
        ));
        let volumes = Volumes::open(stage_config, api, &cache, &meta);
        Vm0Fs {
            volumes,
            meta,
            live_logs: LiveLogs::new(Saved::new(&cache.status().dir)),
            new_run_outcomes: Outcomes::new(),
            invalidator: OnceLock::new(),
            request_counts: OnceLock::new(),
            cache,
            inodes: InodeTable::new(),
            handles: Handles::new(),
            config,
            mounted_at: SystemTime::now(),
            hard_links: Default::default(),
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
        if self.config.panic_on_lookup.as_deref() == Some(name) {
            panic!("test hook: lookup of {name:?} panics (VM0FS_TEST_PANIC_ON_LOOKUP)");
        }
        let parent = self.node(parent)?;
        if name.len() > NAME_MAX {
            return Err(Error::new(
                libc::ENAMETOOLONG,
                format!(
                    "{}: a name of {} bytes is too long (at most {NAME_MAX})",
                    tree::describe(&parent),
                    name.len()
                ),
            ));
        }
        let child = self.child(&parent, name)?;
        self.entry_attr(&child)
    }

    /// The attributes of a node handed to the kernel as an entry (lookup, create), which takes a reference on
    /// its number until the kernel forgets it; if there are no attributes to give, the reference is given back.
    fn entry_attr(&self, node: &Node) -> Result<Attr> {
        let ino = self.inodes.acquire(node);
        self.attr(ino, node)
            .inspect_err(|_| self.inodes.release([(ino, 1)]))
    }

    /// The kernel dropped an inode from its caches (FORGET): it gives back the `lookups` references it held.
    pub fn forget(&self, ino: u64, lookups: u64) {
        self.inodes.release([(ino, lookups)]);
    }

    /// `getattr`; a volume file unlinked while open for writing has no name left, but its handle still has its
    /// bytes (the kernel's `fstat` names the inode only).
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let node = self.node(ino)?;
        match self.attr(ino, &node) {
            Err(e) if e.errno == libc::ENOENT => match self.handles.staged_on(ino) {
                Some(handle) => self.unlinked_attr(ino, &handle),
                None => Err(e),
            },
            other => other,
        }
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        self.link_target(&node)
    }

    /// Opens a file for thread `pid`. What can be opened for writing is a file of a writable volume, `runs/new/`,
    /// a run's `ctl`, `.vm0fs/pins` and `.vm0fs/sync`; asking to write anything else is `EACCES`. Reading
    /// `runs/new/<agent>` shows what the reader's own write came to (`runs::outcomes`), or fails with `ENOENT`
    /// when nobody of the reader's session wrote.
    pub fn open(&self, ino: u64, flags: i32, pid: u32) -> Result<Opened> {
        let node = self.node(ino)?;
        if let (Node::Runs(RunNode::NewRun { agent, .. }), libc::O_RDONLY) =
            (&node, flags & libc::O_ACCMODE)
        {
            return self.open_new_run_outcome(agent, pid);
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            if let Some(handle) = node.namespace().open_write(self)? {
                // A volume file is an ordinary file: through the page cache, so that mmap works.
                let direct_io = !matches!(handle, Handle::Staged(_));
                let fh = self.handles.insert_for(Some(ino), handle);
                return Ok(Opened {
                    fh,
                    direct_io,
                    keep_cache: false,
                    no_flush: !direct_io,
                });
            }
            return Err(Error::new(
                libc::EACCES,
                format!("{}: read-only file", tree::describe(&node)),
            ));
        }
        self.open_for_read(&node)
    }

    /// `lseek(2)` with `SEEK_DATA` or `SEEK_HOLE` (the only whences the kernel asks a filesystem): files here have
    /// no holes but the one at their end, so data is wherever `offset` is inside the file and the hole is at its
    /// end; at or past the end both are `ENXIO`, as for any file.
    pub fn seek_data(&self, fh: u64, offset: i64, whence: i32) -> Result<i64> {
        let len = match self.handles.get(fh)? {
            Handle::Content(bytes) => bytes.len() as u64,
            Handle::Disk(file) => file.metadata()?.len(),
            Handle::Log(run_id) => self.live_logs.len(&run_id),
            _ => {
                return Err(Error::new(
                    libc::EINVAL,
                    "this file cannot be searched for data",
                ));
            }
        };
        let len = i64::try_from(len).unwrap_or(i64::MAX);
        if offset < 0 || offset >= len {
            return Err(Error::new(
                libc::ENXIO,
                "the offset is at or past the end of the file",
            ));
        }
        match whence {
            libc::SEEK_DATA => Ok(offset),
            libc::SEEK_HOLE => Ok(len),
            _ => Err(Error::new(
                libc::EINVAL,
                format!("lseek whence {whence} is not SEEK_DATA or SEEK_HOLE"),
            )),
        }
    }

    /// What `df` shows for the mount: the archive cache's limit and the bytes it holds now.
    pub fn space(&self) -> (u64, u64) {
        let status = self.cache.status();
        (status.max_bytes, status.used_bytes)
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        match self.handles.get(fh)? {
            Handle::Log(run_id) => Ok(self.live_logs.read(&run_id, offset, size)),
            Handle::NewRun(write) => Ok(self.read_new_run(&write, offset, size)),
            handle => handles::read_static(&handle, offset, size),
        }
    }

    /// The file behind an open handle, for the kernel to read (and, for a staged file, write) directly (FUSE
    /// passthrough): `f` gets it and whether the handle writes. `None` for a handle with no file behind it, and
    /// for a staged file whose writes must come through vm0fs (`StagedWriter::may_pass_through`).
    pub fn with_backing_file<R>(
        &self,
        fh: u64,
        f: impl FnOnce(&std::fs::File, bool) -> R,
    ) -> Option<R> {
        match self.handles.get(fh) {
            Ok(Handle::Disk(file)) => Some(f(&file, false)),
            Ok(Handle::Staged(h)) if h.writer.may_pass_through() => Some(f(h.writer.file(), true)),
            _ => None,
        }
    }

    /// Closes a handle (the last close of an open file): a log stops being followed for it, a volume file's
    /// writer is given back to its stage, and a `runs/new/` write that was never flushed starts its run now
    /// (release errors reach nobody, so they are only logged). Only that start waits (`waiting`): it is known
    /// before the handle is taken, so a release that would wait has done nothing.
    pub fn release(&self, fh: u64) -> Result<()> {
        if let Ok(Handle::NewRun(_)) = self.handles.get(fh) {
            waiting::may_wait()?;
        }
        match self.handles.remove(fh) {
            Some(Handle::Log(run_id)) => self.live_logs.closed(&run_id),
            // The writer's drop (with the handle's last reference) gives the count back and tells the publisher.
            Some(Handle::Staged(h)) => drop(h),
            Some(Handle::NewRun(write)) => {
                if let Err(e) = self.start_run(&write) {
                    tracing::warn!("{}", e.chain());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Creates `name` in `parent` and opens it for writing, where the parent's namespace allows it: a file in a
    /// writable volume, or `runs/new/<agent>` (which exists already; creating it opens it).
    pub fn create(&self, parent: u64, name: &OsStr, mode: u32) -> Result<(Attr, Opened)> {
        let (node, handle) = self.node(parent)?.namespace().create(self, name, mode)?;
        let attr = self.entry_attr(&node)?;
        let direct_io = !matches!(handle, Handle::Staged(_));
        let fh = self.handles.insert_for(Some(attr.ino), handle);
        Ok((
            attr,
            Opened {
                fh,
                direct_io,
                keep_cache: false,
                no_flush: !direct_io,
            },
        ))
    }

    /// Changes a file's size, where its namespace allows it (truncation to zero of the writable files, as
    /// `open(O_TRUNC)` asks).
    pub fn truncate(&self, ino: u64, size: u64) -> Result<Attr> {
        let node = self.node(ino)?;
        node.namespace().truncate(self, size)?;
        self.attr(ino, &node)
    }

    /// Writes to an open file; `pid` is the writing thread. A volume file's bytes go to its staged copy;
    /// `runs/new/<agent>` accumulates them until the writer closes it; `ctl`, `.vm0fs/pins` and `.vm0fs/sync`
    /// act on each write at once.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], pid: u32) -> Result<u32> {
        match self.handles.get(fh)? {
            Handle::NewRun(write) => write.locked().write(offset, data, pid),
            Handle::Ctl(run_id) => self.write_ctl(&run_id, data),
            Handle::Pins => {
                self.control_command(data)?;
                Ok(data.len() as u32)
            }
            Handle::Staged(h) => Ok(h.writer.write_at(offset, data)? as u32),
            Handle::Sync(outcome) => {
                self.sync_command(data, &outcome)?;
                Ok(data.len() as u32)
            }
            _ => Err(Error::new(libc::EBADF, "the file is not open for writing")),
        }
    }

    /// Called on every `close(2)`, by process `pid`: the first close by the process that wrote to
    /// `runs/new/<agent>` starts the run, and its outcome is what every later flush of the handle returns. Closes by
    /// other processes (a `sleep` forked by the writing shell closes its copy of the descriptor) start nothing.
    pub fn flush(&self, fh: u64, pid: u32) -> Result<()> {
        match self.handles.get(fh) {
            // Nothing to wait for at close: the bytes are in the page cache, which a crash of vm0fs keeps, and the
            // group commit takes them to the disk (`stage::commit`).
            Ok(Handle::Staged(_)) => Ok(()),
            Ok(Handle::NewRun(write)) => self.flush_new_run(&write, pid),
            _ => Ok(()),
        }
    }

    /// `fsync`: a volume file's bytes are on the local disk when this returns (nothing is published).
    pub fn fsync(&self, fh: u64) -> Result<()> {
        match self.handles.get(fh)? {
            Handle::Staged(h) => h.writer.sync().map_err(|e| {
                Error::new(
                    e.raw_os_error().unwrap_or(libc::EIO),
                    format!(
                        "{}: the written bytes could not be made durable: {e}",
                        h.volume.label()
                    ),
                )
            }),
            _ => Ok(()),
        }
    }

    /// Hands the core the way to tell the kernel about changes, once the mount exists.
    pub fn set_invalidator(&self, invalidator: Box<dyn Invalidator>) {
        if self.invalidator.set(invalidator).is_err() {
            tracing::warn!("an invalidator was already set; keeping the first");
        }
    }

    /// Runs `op` (a request) on this thread if it needs nothing that can wait: `None` if it would have waited for
    /// the network or a download, having done nothing, so that the caller runs it on a worker instead (see
    /// `waiting`). A panic inside is answered with `EIO`.
    pub fn without_waiting<T>(&self, op: impl FnOnce(&Self) -> Result<T>) -> Option<Result<T>> {
        waiting::without_waiting(|| op(self))
    }

    /// Hands the core the adapter's request counters, so that `.vm0fs/status` can show them.
    pub fn set_request_counts(&self, counts: Arc<dyn RequestCounts>) {
        if self.request_counts.set(counts).is_err() {
            tracing::warn!("request counters were already set; keeping the first");
        }
    }

    /// The value of an extended attribute (`user.vm0.id`, `user.vm0.version`, ...), or the answer of a pin
    /// command read as one (`user.vm0.pin`, `user.vm0.unpin`; see `control`).
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        if let Some(answer) = self.pin_xattr(&node, name) {
            return answer;
        }
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

    /// Removes `name` from `parent`, where the parent's namespace allows it.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.node(parent)?.namespace().unlink(self, name)
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, where the namespace of `parent` allows it.
    /// `flags` are renameat2's: `RENAME_NOREPLACE` is honoured (`EEXIST` when the new name exists);
    /// `RENAME_EXCHANGE` and `RENAME_WHITEOUT` are refused (`EINVAL`) rather than done as a plain rename, which
    /// would replace what was to be swapped.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let from = self.node(parent)?;
        let to = self.node(new_parent)?;
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(Error::new(
                libc::EINVAL,
                format!(
                    "{}/{}: renameat2 flags {flags:#x} (RENAME_EXCHANGE, RENAME_WHITEOUT) are not supported; \
                     nothing was renamed",
                    tree::describe(&from),
                    name.to_string_lossy()
                ),
            ));
        }
        let replace = flags & libc::RENAME_NOREPLACE == 0;
        from.namespace().rename(self, name, &to, new_name, replace)
    }

    /// `link(2)`: `new_name` in `new_parent` becomes a second name of `ino`, inside one volume. Into a volume
    /// from anywhere else it is `EXDEV` (the volume says so: `ln` and `cp -l` users copy instead); between two
    /// nodes outside the volumes, the tree is read-only.
    pub fn link(&self, ino: u64, new_parent: u64, new_name: &OsStr) -> Result<Attr> {
        let source = self.node(ino)?;
        let parent = self.node(new_parent)?;
        if !source.namespace().holds_volume_content() && !parent.namespace().holds_volume_content()
        {
            return Err(self.refuse_special(ino, "a hard link"));
        }
        let node = parent.namespace().link(self, new_name, &source)?;
        self.entry_attr(&node)
    }

    /// Makes the directory `name` in `parent`, where the parent's namespace allows it.
    pub fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> Result<Attr> {
        let node = self.node(parent)?.namespace().mkdir(self, name, mode)?;
        self.entry_attr(&node)
    }

    /// Removes the empty directory `name` from `parent`, where the parent's namespace allows it.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        self.node(parent)?.namespace().rmdir(self, name)
    }

    /// Makes the symlink `name` → `target` in `parent`, where the parent's namespace allows it.
    pub fn symlink(&self, parent: u64, name: &OsStr, target: &std::path::Path) -> Result<Attr> {
        let node = self.node(parent)?.namespace().symlink(self, name, target)?;
        self.entry_attr(&node)
    }

    /// `setattr`: a new mode, size or access and modification times, where the node's namespace allows each. An
    /// owner change is refused (every file belongs to the user who mounted).
    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        times: (Option<SystemTime>, Option<SystemTime>),
    ) -> Result<Attr> {
        let node = self.node(ino)?;
        // `chown` to the owner a file already has (as `sed -i` and `rsync -a` do) changes nothing.
        let (uid, gid) = owner;
        let owner_changed =
            uid.is_some_and(|u| u != self.config.uid) || gid.is_some_and(|g| g != self.config.gid);
        if owner_changed {
            return Err(Error::new(
                libc::EPERM,
                format!(
                    "{}: every file belongs to the user who mounted",
                    tree::describe(&node)
                ),
            ));
        }
        let ns = node.namespace();
        if let Some(size) = size {
            ns.truncate(self, size)?;
        }
        if let Some(mode) = mode {
            ns.chmod(self, mode)?;
        }
        let (atime, mtime) = times;
        // Only volumes keep times; elsewhere `touch` of an existing file is accepted and changes nothing.
        if (atime.is_some() || mtime.is_some()) && ns.holds_volume_content() {
            ns.set_times(self, atime, mtime)?;
        }
        self.attr(ino, &node)
    }

    /// `fsync` of a directory: in a volume, every staged change (of every volume) is on the local disk when this
    /// returns (the stage's group commit); elsewhere nothing is kept that a disk could hold.
    pub fn fsyncdir(&self, ino: u64) -> Result<()> {
        let node = self.node(ino)?;
        if !node.namespace().holds_volume_content() {
            return Ok(());
        }
        self.volumes.stage()?.flush_to_disk().map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!(
                    "{}: the staged changes could not be flushed to disk: {e}",
                    tree::describe(&node)
                ),
            )
        })
    }

    /// Clears a file's set-user-ID bit, and its set-group-ID bit when it is group-executable, as the kernel does
    /// on a write, truncate or chown by a caller without CAP_FSETID: vm0fs tells the kernel that it does this
    /// itself (FUSE_HANDLE_KILLPRIV_V2), which spares a GETXATTR per write.
    pub fn drop_set_id_bits(&self, ino: u64) -> Result<()> {
        let node = self.node(ino)?;
        let attr = self.attr(ino, &node)?;
        let mode = u32::from(attr.perm);
        let mut kept = mode & !0o4000;
        if mode & 0o2010 == 0o2010 {
            kept &= !0o2000;
        }
        if attr.kind == FileKind::File && kept != mode {
            node.namespace().chmod(self, kept)?;
        }
        Ok(())
    }

    /// What a volume cannot hold (a device, FIFO or socket; a hard link from outside the volumes): `EPERM` in a
    /// volume, saying why;
    /// elsewhere the tree is read-only.
    pub fn refuse_special(&self, ino: u64, what: &str) -> Error {
        match self.node(ino) {
            Ok(node) if node.namespace().holds_volume_content() => Error::new(
                libc::EPERM,
                format!(
                    "{}: a volume holds files, directories and symlinks only; {what} cannot be published",
                    tree::describe(&node)
                ),
            ),
            Ok(node) => Error::read_only(tree::describe(&node)),
            Err(e) => e,
        }
    }

    /// `setxattr`/`removexattr`: in a volume only `user.vm0.*` names exist, and those are read-only.
    pub fn refuse_xattr_change(&self, ino: u64, name: &OsStr) -> Error {
        let refused = self.xattr_change_refusal(ino, name);
        // `cp -a`, `sed -i` and `rsync -A` set ACLs and security labels on every file they write: refusing those
        // is routine, not worth a warning per file.
        if is_acl_or_label(name) {
            refused.at_level(tracing::Level::DEBUG)
        } else {
            refused
        }
    }

    fn xattr_change_refusal(&self, ino: u64, name: &OsStr) -> Error {
        match self.node(ino) {
            Ok(node)
                if node.namespace().holds_volume_content()
                    && !name.as_encoded_bytes().starts_with(b"user.vm0.") =>
            {
                Error::new(
                    libc::ENOTSUP,
                    format!(
                        "{}: extended attribute {:?}: a version cannot hold extended attributes",
                        tree::describe(&node),
                        name
                    ),
                )
            }
            Ok(node) => Error::read_only(tree::describe(&node)),
            Err(e) => e,
        }
    }

    /// `access(W_OK)`: granted where changes are possible (a writable volume), refused elsewhere.
    pub fn access_write(&self, ino: u64) -> Result<()> {
        let node = self.node(ino)?;
        if node.namespace().holds_volume_content() {
            Ok(())
        } else {
            Err(Error::read_only(tree::describe(&node)))
        }
    }

    /// At unmount: publishes what is staged, waiting at most `within`; logs the volumes that stay staged.
    pub fn publish_staged(&self, within: Duration) {
        let Ok(stage) = self.volumes.stage() else {
            return;
        };
        let left = stage.shutdown(within);
        if !left.is_empty() {
            tracing::warn!(
                "not published before unmount (they stay staged in the cache directory and are published after \
                 the next mount): {}",
                left.join(", ")
            );
        }
    }

    /// Any other change to the tree (mknod, symlink, link, rmdir, xattrs, `access(W_OK)`): refused everywhere.
    pub fn refuse_change(&self, ino: u64) -> Error {
        match self.node(ino) {
            Ok(node) => Error::read_only(tree::describe(&node)),
            Err(e) => e,
        }
    }
}

/// An attribute that carries an ACL (`system.posix_acl_*`) or a security label (`security.*`, e.g. SELinux).
fn is_acl_or_label(name: &OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.starts_with(b"system.posix_acl_") || name.starts_with(b"security.")
}
