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

mod control;
mod error;
mod handles;
mod inodes;
mod live_logs;
mod meta;
mod render;
mod saved;
#[cfg(test)]
mod tests;
mod tree;
mod ttl;
mod writes;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

pub use control::MountStatus;
pub use error::{Error, Result};
pub use inodes::ROOT_INO;

use crate::api::Vm0Api;
use crate::cache::ArchiveCache;
use handles::{Handle, Handles, NewRunWrite};
use inodes::{ControlFile, InodeTable, Node, RunFile};
use live_logs::LiveLogs;
use meta::Meta;
pub use saved::Saved;

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

/// Tells the kernel that what it cached about an inode is out of date. Implemented by the FUSE adapter over
/// fuser's `Notifier`; the core calls it only from its background poller, never inside a request.
pub trait Invalidator: Send + Sync {
    fn attributes_changed(&self, ino: u64);
}

pub struct Vm0Fs {
    meta: Meta,
    live_logs: LiveLogs,
    /// What reading `runs/new/<agent>` shows: the id of the run the last close started, or why it failed.
    new_run_outcomes: Mutex<HashMap<String, Vec<u8>>>,
    invalidator: OnceLock<Box<dyn Invalidator>>,
    cache: Arc<ArchiveCache>,
    inodes: InodeTable,
    handles: Handles,
    config: FsConfig,
    mounted_at: SystemTime,
}

impl Vm0Fs {
    pub fn new(api: Arc<dyn Vm0Api>, cache: Arc<ArchiveCache>, config: FsConfig) -> Self {
        Vm0Fs {
            meta: Meta::new(api, config.metadata_ttl, Saved::new(&cache.status().dir)),
            live_logs: LiveLogs::new(),
            new_run_outcomes: Mutex::new(HashMap::new()),
            invalidator: OnceLock::new(),
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
        if self.config.panic_on_lookup.as_deref() == Some(name) {
            panic!("test hook: lookup of {name:?} panics (VM0FS_TEST_PANIC_ON_LOOKUP)");
        }
        let parent = self.node(parent)?;
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

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let node = self.node(ino)?;
        self.attr(ino, &node)
    }

    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        self.link_target(&node)
    }

    /// Takes a snapshot of the directory, so that `readdir` offsets stay valid however the API changes meanwhile.
    /// The snapshot holds a reference on the number of each of its entries until `releasedir`.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let node = self.node(ino)?;
        let mut entries = vec![
            DirEntry {
                ino: self.inodes.acquire(&node),
                kind: FileKind::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino: self.inodes.acquire(&tree::parent_of(&node)),
                kind: FileKind::Directory,
                name: "..".into(),
            },
        ];
        if let Err(e) = self.children(&node, &mut entries) {
            self.release_entries(&entries);
            return Err(e);
        }
        Ok(self.handles.insert(Handle::Dir(Arc::new(entries))))
    }

    fn release_entries(&self, entries: &[DirEntry]) {
        self.inodes.release(entries.iter().map(|e| (e.ino, 1)));
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
    /// Each entry, with the offset of the next, goes to `add` until it answers true (the reply is full); every
    /// entry it takes gives the kernel a reference, counted here, so the reply must be sent after this returns.
    /// An error after some entries ends the reply early: the kernel asks again from there and meets it then.
    pub fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, &DirEntry, &Attr) -> bool,
    ) -> Result<()> {
        let mut added = false;
        for (next, entry) in self.readdir(fh, offset)? {
            if entry.name == "." || entry.name == ".." {
                continue;
            }
            let attr = match self.node(entry.ino).and_then(|n| self.attr(entry.ino, &n)) {
                Ok(attr) => attr,
                Err(e) if e.errno == libc::ENOENT => continue,
                Err(_) if added => break,
                Err(e) => return Err(e),
            };
            if add(next, &entry, &attr) {
                break;
            }
            self.inodes.retain(entry.ino);
            added = true;
        }
        Ok(())
    }

    /// Closes a listing, giving back the references its snapshot held.
    pub fn releasedir(&self, fh: u64) {
        if let Some(Handle::Dir(entries)) = self.handles.remove(fh) {
            self.release_entries(&entries);
        }
    }

    /// Opens a file for reading. Everything but `runs/new/` is read-only: asking to write is `EACCES`.
    pub fn open(&self, ino: u64, flags: i32) -> Result<Opened> {
        let node = self.node(ino)?;
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            if let Some(handle) = self.write_handle(&node)? {
                let fh = self.handles.insert(handle);
                return Ok(Opened {
                    fh,
                    direct_io: true,
                    keep_cache: false,
                });
            }
            return Err(Error::new(
                libc::EACCES,
                format!("{}: read-only file", tree::describe(&node)),
            ));
        }
        self.open_for_read(&node)
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        match self.handles.get(fh)? {
            Handle::Log(run_id) => Ok(self.live_logs.read(&run_id, offset, size)),
            handle => handles::read_static(&handle, offset, size),
        }
    }

    /// Closes a handle; a `runs/new/` write that was never flushed starts its run now (release errors reach
    /// nobody, so they are only logged).
    /// The cached file behind an open handle, for the kernel to read directly (FUSE passthrough).
    pub fn backing_file(&self, fh: u64) -> Option<Arc<std::fs::File>> {
        match self.handles.get(fh) {
            Ok(Handle::Disk(file)) => Some(file),
            _ => None,
        }
    }

    pub fn release(&self, fh: u64) {
        match self.handles.remove(fh) {
            Some(Handle::Log(run_id)) => self.live_logs.closed(&run_id),
            Some(Handle::NewRun(write)) => {
                if let Err(e) = self.start_run(&write) {
                    tracing::warn!("{e}");
                }
            }
            _ => {}
        }
    }

    /// `runs/new/<agent>` may be created (an existing agent's file); nothing else can.
    pub fn create(&self, parent: u64, name: &OsStr) -> Result<(Attr, Opened)> {
        let parent_node = self.node(parent)?;
        if parent_node != Node::RunsNew {
            return Err(Error::read_only(tree::describe(&parent_node)));
        }
        let node = self.child(&parent_node, name)?;
        let handle = self
            .write_handle(&node)?
            .ok_or_else(|| Error::read_only(tree::describe(&node)))?;
        let attr = self.entry_attr(&node)?;
        let fh = self.handles.insert(handle);
        Ok((
            attr,
            Opened {
                fh,
                direct_io: true,
                keep_cache: false,
            },
        ))
    }

    /// Truncation to zero, as `open(O_TRUNC)` asks, is accepted on the writable files; any other change is not.
    pub fn truncate(&self, ino: u64, size: u64) -> Result<Attr> {
        let node = self.node(ino)?;
        let writable = matches!(
            node,
            Node::NewRun { .. }
                | Node::RunFile {
                    file: RunFile::Ctl,
                    ..
                }
                | Node::ControlFile(ControlFile::Pins)
        );
        if !writable || size != 0 {
            return Err(Error::read_only(tree::describe(&node)));
        }
        self.attr(ino, &node)
    }

    /// Writes to `runs/new/<agent>` (accumulated) or `ctl` (acted on at once); `pid` is the writing process.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], pid: u32) -> Result<u32> {
        match self.handles.get(fh)? {
            Handle::NewRun(write) => {
                let mut write = write.lock().unwrap_or_else(|e| e.into_inner());
                if write.outcome.is_some() {
                    return Err(Error::new(
                        libc::EINVAL,
                        format!(
                            "runs/new/{}: this file was closed once and started a run; open it again for another",
                            write.agent
                        ),
                    ));
                }
                let start = usize::try_from(offset)
                    .map_err(|_| Error::new(libc::EFBIG, "offset too large"))?;
                let end = start
                    .checked_add(data.len())
                    .ok_or_else(|| Error::new(libc::EFBIG, "offset too large"))?;
                if write.written.len() < end {
                    write.written.resize(end, 0);
                }
                write.written[start..end].copy_from_slice(data);
                write.dirty = true;
                write.writer_pid = Some(pid);
                Ok(data.len() as u32)
            }
            Handle::Ctl(run_id) => {
                writes::ctl_command(&run_id, data)?;
                let detail = self.meta.api().cancel_run(&run_id).map_err(|e| {
                    Error::new(
                        e.errno(),
                        format!("runs/{run_id}/ctl: the run was not cancelled: {e}"),
                    )
                })?;
                self.meta.remember_run(detail);
                Ok(data.len() as u32)
            }
            Handle::Pins => {
                self.control_command(data)?;
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
            Ok(Handle::NewRun(write)) => {
                let by_writer = {
                    let write = write.lock().unwrap_or_else(|e| e.into_inner());
                    write.outcome.is_some() || write.writer_pid == Some(pid)
                };
                if by_writer {
                    self.start_run(&write)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    fn write_handle(&self, node: &Node) -> Result<Option<Handle>> {
        Ok(match node {
            Node::NewRun { agent } => {
                self.meta.agent(agent)?;
                Some(Handle::NewRun(Arc::new(Mutex::new(NewRunWrite {
                    agent: agent.clone(),
                    written: Vec::new(),
                    dirty: false,
                    writer_pid: None,
                    outcome: None,
                }))))
            }
            Node::RunFile {
                id,
                file: RunFile::Ctl,
            } => Some(Handle::Ctl(id.clone())),
            Node::ControlFile(ControlFile::Pins) => Some(Handle::Pins),
            _ => None,
        })
    }

    fn start_run(&self, write: &Mutex<NewRunWrite>) -> Result<()> {
        let mut write = write.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(outcome) = &write.outcome {
            return outcome.clone();
        }
        if !write.dirty {
            return Ok(());
        }
        let agent = write.agent.clone();
        let outcome = writes::run_request(&agent, &write.written).and_then(|body| {
            self.meta.api().create_run(&body).map_err(|e| {
                Error::new(
                    e.errno(),
                    format!("runs/new/{agent}: the run was not started: {}", e),
                )
            })
        });
        let (shown, result) = match outcome {
            Ok(run) => {
                tracing::info!("runs/new/{agent}: started run {}", run.id);
                let shown = format!("{}\n", run.id).into_bytes();
                self.meta.remember_run(run);
                (shown, Ok(()))
            }
            Err(e) => (format!("error: {}\n", e.message).into_bytes(), Err(e)),
        };
        self.new_run_outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(agent, shown);
        write.outcome = Some(result.clone());
        result
    }

    fn new_run_outcome(&self, agent: &str) -> Vec<u8> {
        let outcomes = self
            .new_run_outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        outcomes.get(agent).cloned().unwrap_or_default()
    }

    /// Hands the core the way to tell the kernel about changes, once the mount exists.
    pub fn set_invalidator(&self, invalidator: Box<dyn Invalidator>) {
        if self.invalidator.set(invalidator).is_err() {
            tracing::warn!("an invalidator was already set; keeping the first");
        }
    }

    /// Starts the thread that follows watched logs; it ends when the filesystem is dropped.
    pub fn start_log_poller(self: &Arc<Self>) {
        let fs: Weak<Vm0Fs> = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("vm0fs-logs".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(live_logs::POLL_INTERVAL);
                    let Some(fs) = fs.upgrade() else { return };
                    fs.poll_logs();
                }
            });
        if let Err(e) = started {
            tracing::error!("cannot start the log poller ({e}); logs grow only when read");
        }
    }

    fn poll_logs(&self) {
        for run_id in self.live_logs.watched() {
            let terminal = match self.meta.run(&run_id) {
                Ok(run) => run.status.is_terminal(),
                Err(e) => {
                    tracing::debug!("log poller: runs/{run_id}: {e}");
                    continue;
                }
            };
            match self
                .live_logs
                .poll(self.meta.api().as_ref(), &run_id, terminal)
            {
                Ok(true) => self.logs_changed(&run_id),
                Ok(false) => {}
                Err(e) => tracing::debug!("log poller: runs/{run_id}/logs: {e}"),
            }
        }
    }

    /// Tells the kernel that a watched log grew. Only a number the table still holds is told: one the kernel forgot
    /// has nothing cached to invalidate, and asking for a number here would allocate one per poll.
    fn logs_changed(&self, run_id: &str) {
        let logs = Node::RunFile {
            id: run_id.to_string(),
            file: RunFile::Logs,
        };
        if let (Some(invalidator), Some(ino)) =
            (self.invalidator.get(), self.inodes.known_ino(&logs))
        {
            invalidator.attributes_changed(ino);
        }
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
