//! The fuser adapter: decode a request, run the core's method on a worker, encode the reply. No logic of its own.
//!
//! The requests about the tree (lookup, getattr, readlink, opendir, readdir, readdirplus, getxattr, listxattr)
//! are answered on the event-loop thread that read them when the core needs nothing that can wait (the cached
//! tree, fresh listings: see `fs::waiting`), and handed to the worker pool (see `pool.rs`) only when it would wait
//! for the network or a download; the rest (open, read, writes and the like) always go to the pool, so the event
//! loop never waits for the network. `forget` and `releasedir` (table updates) and the answers known without the
//! core run on the event loop. Each request is counted by opcode and by where it was answered (`counters.rs`). Errors from the core carry their errno; the adapter logs them (a missing name at debug
//! level, the rest as warnings, like mountpoint-s3) and replies. Operations that would change the tree are refused
//! with `EROFS` by the core.

mod counters;
mod pool;

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, ReplyXattr, Request, Session, SessionACL, TimeOrNow, WriteFlags,
};

use crate::fs::{Attr, Error, FileKind, Vm0Fs};
use counters::{Counters, Op};
use pool::WorkerPool;

/// The most requests served at once: well above the kernel's `max_background` so that slow API calls never
/// starve cached reads, yet bounded so that a storm of requests cannot exhaust threads.
const MAX_WORKERS: usize = 64;
/// Requests the kernel may keep in flight in the background (its default of 12 is tuned for local disks).
const MAX_BACKGROUND: u16 = 64;
const GENERATION: Generation = Generation(0);
/// The preferred I/O size reported to tools such as `cp` and `dd`.
const BLOCK_SIZE: u32 = 128 * 1024;
/// The `st_blksize` of directories: glibc sizes the buffer of `readdir` from it (up to 1 MiB), and the kernel
/// (6.16+) sizes each READDIRPLUS to that buffer, so one request lists about 4,000 names instead of about 100.
const DIR_BLOCK_SIZE: u32 = 1024 * 1024;

/// How the mount is made (the flags of `vm0fs mount`).
pub struct MountConfig {
    /// Let other users see the mount (`--allow-other`); otherwise only its owner and root can.
    pub allow_other: bool,
    /// Ask `fusermount3` to unmount when the process dies, even by `kill -9`.
    pub auto_unmount: bool,
    /// Mount read-only (`--read-only`): the kernel refuses every write, runs/new and ctl included, with EROFS.
    pub read_only: bool,
}

/// Mounts `fs` at `mountpoint`; the mount is live when this returns (fuser completes INIT in `Session::new`).
pub fn mount(
    fs: Arc<Vm0Fs>,
    mountpoint: &Path,
    config: &MountConfig,
) -> std::io::Result<Session<FuseAdapter>> {
    let mut fuse_config = Config::default();
    fuse_config.mount_options = vec![
        MountOption::FSName("vm0fs".into()),
        MountOption::Subtype("vm0fs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.auto_unmount {
        fuse_config.mount_options.push(MountOption::AutoUnmount);
    }
    if config.read_only {
        fuse_config.mount_options.push(MountOption::RO);
    }
    // `Owner` is the private default, but fuser refuses AutoUnmount with it; `RootAndOwner` keeps the mount private
    // (fuser itself refuses other uids) while allowing the auto-unmount helper.
    fuse_config.acl = match (config.allow_other, config.auto_unmount) {
        (true, _) => SessionACL::All,
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    fuse_config.n_threads = Some(2);
    let counters = Arc::new(Counters::default());
    fs.set_request_counts(counters.clone());
    let adapter = FuseAdapter {
        fs,
        pool: WorkerPool::new(MAX_WORKERS),
        counters,
        passthrough: false,
        backing: Arc::default(),
    };
    Session::new(adapter, mountpoint, &fuse_config)
}

/// The core's way to tell the kernel that cached attributes are stale: fuser's `Notifier`.
pub struct KernelInvalidator(pub fuser::Notifier);

impl crate::fs::Invalidator for KernelInvalidator {
    fn attributes_changed(&self, ino: u64) {
        // Attributes only (len 0): invalidating the pages of an open file can deadlock in the kernel, and live
        // files are read with direct I/O anyway.
        if let Err(e) = self.0.inval_inode(INodeNo(ino), 0, 0) {
            tracing::debug!("invalidating inode {ino}: {e}");
        }
    }
}

pub struct FuseAdapter {
    fs: Arc<Vm0Fs>,
    pool: WorkerPool,
    /// Requests served, by opcode and by where they were answered (`.vm0fs/status`).
    counters: Arc<Counters>,
    /// The kernel accepted FUSE passthrough: cached archive files are read by the kernel from the cache file
    /// itself, with no request reaching us (kernel 6.9+, and CAP_SYS_ADMIN for the backing ioctl).
    passthrough: bool,
    /// The kernel's handle on each inode's backing file and how many opens use it. The kernel wants one backing
    /// file per inode (a second one for an inode already open fails the open with EIO), and dropping the id closes
    /// it in the kernel, so it lives until the inode's last release.
    backing: Arc<std::sync::Mutex<std::collections::HashMap<u64, (fuser::BackingId, usize)>>>,
}

impl FuseAdapter {
    /// Runs `job` (a request of opcode `op`) on a worker with the core, timing it until it has replied.
    fn spawn(&self, op: Op, job: impl FnOnce(&Vm0Fs) + Send + 'static) {
        let timing = self.counters.start(op).pooled();
        let fs = self.fs.clone();
        self.pool.run(move || {
            job(&fs);
            drop(timing);
        });
    }

    /// Answers a request of opcode `op` with what `call` returns, passed to `send` with the reply: on this thread
    /// when `call` needs nothing that can wait (memory, the cache on disk), else on a worker (see `fs::waiting`).
    fn answer<T, R: Send + 'static>(
        &self,
        op: Op,
        reply: R,
        call: impl Fn(&Vm0Fs) -> crate::fs::Result<T> + Send + 'static,
        send: impl FnOnce(R, crate::fs::Result<T>) + Send + 'static,
    ) {
        let timing = self.counters.start(op);
        match self.fs.without_waiting(&call) {
            Some(result) => send(reply, result),
            None => {
                let timing = timing.pooled();
                let fs = self.fs.clone();
                self.pool.run(move || {
                    send(reply, call(&fs));
                    drop(timing);
                });
            }
        }
    }
}

fn errno(op: &str, error: &Error) -> Errno {
    if error.is_quiet() {
        tracing::debug!("{op}: {error}");
    } else {
        tracing::warn!("{op}: {error}");
    }
    Errno::from_i32(error.errno)
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: attr.mtime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: match attr.kind {
            FileKind::Directory => DIR_BLOCK_SIZE,
            _ => BLOCK_SIZE,
        },
        flags: 0,
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Readdirplus always, not `READDIRPLUS_AUTO`: with AUTO the kernel lists only the first batch of a
        // directory with attributes, and `find` (which reads a whole directory before it stats anything) then pays
        // one LOOKUP per name of every later batch.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::info!("the kernel does not offer {missing:?}; listings use plain readdir");
        }
        self.passthrough = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        tracing::debug!(
            "FUSE passthrough offered by the kernel: {}",
            self.passthrough
        );
        if let Err(max) = config.set_max_background(MAX_BACKGROUND) {
            tracing::debug!("max_background {MAX_BACKGROUND} refused; the kernel allows {max}");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_os_string();
        self.answer(
            Op::Lookup,
            reply,
            move |fs| fs.lookup(parent.0, &name),
            |reply, result| match result {
                Ok(attr) => reply.entry(&attr.ttl, &file_attr(&attr), GENERATION),
                Err(e) => reply.error(errno("lookup", &e)),
            },
        );
    }

    /// The kernel dropped an inode: give back its lookups, inline (there is no reply, and it is a table update).
    /// BATCH_FORGET arrives here too, one call per inode: fuser 0.18 does not export `ForgetOne`, so its
    /// `batch_forget` cannot be overridden, and its default calls this for each.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _timing = self.counters.start(Op::Forget);
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.answer(
            Op::Getattr,
            reply,
            move |fs| fs.getattr(ino.0),
            |reply, result| match result {
                Ok(attr) => reply.attr(&attr.ttl, &file_attr(&attr)),
                Err(e) => reply.error(errno("getattr", &e)),
            },
        );
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Only the truncation of `open(O_TRUNC)` on a writable file is accepted; times are ignored there.
        let only_size = mode.is_none() && uid.is_none() && gid.is_none();
        self.spawn(Op::Setattr, move |fs| {
            let result = match size {
                Some(size) if only_size => fs.truncate(ino.0, size),
                _ => Err(fs.refuse_change(ino.0)),
            };
            match result {
                Ok(attr) => reply.attr(&attr.ttl, &file_attr(&attr)),
                Err(e) => reply.error(errno("setattr", &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.answer(
            Op::Readlink,
            reply,
            move |fs| fs.readlink(ino.0),
            |reply, result| match result {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno("readlink", &e)),
            },
        );
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.spawn(Op::Mknod, move |fs| {
            reply.error(errno("mknod", &fs.refuse_change(parent.0)))
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.spawn(Op::Mkdir, move |fs| {
            reply.error(errno("mkdir", &fs.refuse_change(parent.0)))
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.spawn(Op::Unlink, move |fs| {
            reply.error(errno("unlink", &fs.refuse_change(parent.0)))
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.spawn(Op::Rmdir, move |fs| {
            reply.error(errno("rmdir", &fs.refuse_change(parent.0)))
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        self.spawn(Op::Symlink, move |fs| {
            reply.error(errno("symlink", &fs.refuse_change(parent.0)))
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.spawn(Op::Rename, move |fs| {
            reply.error(errno("rename", &fs.refuse_change(parent.0)))
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.spawn(Op::Link, move |fs| {
            reply.error(errno("link", &fs.refuse_change(ino.0)))
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let passthrough = self.passthrough;
        let backing = self.backing.clone();
        self.spawn(Op::Open, move |fs| match fs.open(ino.0, flags.0) {
            Ok(opened) => {
                let mut fopen = FopenFlags::empty();
                if opened.direct_io {
                    fopen |= FopenFlags::FOPEN_DIRECT_IO;
                }
                if opened.keep_cache {
                    fopen |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                let Some(file) = fs.backing_file(opened.fh).filter(|_| passthrough) else {
                    return reply.opened(FileHandle(opened.fh), fopen);
                };
                let mut backing = backing.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((id, opens)) = backing.get_mut(&ino.0) {
                    *opens += 1;
                    return reply.opened_passthrough(
                        FileHandle(opened.fh),
                        FopenFlags::empty(),
                        id,
                    );
                }
                match reply.open_backing(&*file) {
                    Ok(id) => {
                        reply.opened_passthrough(FileHandle(opened.fh), FopenFlags::empty(), &id);
                        backing.insert(ino.0, (id, 1));
                    }
                    Err(e) => {
                        // Without CAP_SYS_ADMIN the ioctl is refused: serve reads ourselves.
                        tracing::debug!("passthrough refused ({e}); reading through vm0fs");
                        reply.opened(FileHandle(opened.fh), fopen);
                    }
                }
            }
            Err(e) => reply.error(errno("open", &e)),
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn(Op::Read, move |fs| match fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno("read", &e)),
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        let pid = req.pid();
        self.spawn(Op::Write, move |fs| {
            match fs.write(fh.0, offset, &data, pid) {
                Ok(written) => reply.written(written),
                Err(e) => reply.error(errno("write", &e)),
            }
        });
    }

    /// Every `close(2)`: where a run is started, so its error reaches `close` (the default `ENOSYS` would also
    /// stop the kernel flushing for the rest of the mount).
    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let pid = req.pid();
        self.spawn(Op::Flush, move |fs| match fs.flush(fh.0, pid) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("flush", &e)),
        });
    }

    /// Nothing is kept in memory that a disk could hold: an editor's fsync succeeds (the run starts at close).
    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _timing = self.counters.start(Op::Fsync);
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // On a worker: releasing an unflushed `runs/new/` handle starts its run, an API call.
        let backing = self.backing.clone();
        self.spawn(Op::Release, move |fs| {
            let passthrough = fs.backing_file(fh.0).is_some();
            fs.release(fh.0);
            if passthrough {
                let mut backing = backing.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, opens)) = backing.get_mut(&ino.0) {
                    *opens -= 1;
                    if *opens == 0 {
                        backing.remove(&ino.0);
                    }
                }
            }
            reply.ok();
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.answer(
            Op::Opendir,
            reply,
            move |fs| Ok((fs.opendir(ino.0)?, fs.listing_is_immutable(ino.0))),
            |reply, result| match result {
                // A listing that can never change (inside a storage version) stays in the kernel's page cache,
                // across opens: the next `ls` of it sends no request. Never for a listing a new run or version can
                // change.
                Ok((fh, true)) => reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                ),
                Ok((fh, false)) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno("opendir", &e)),
            },
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.answer(
            Op::Readdir,
            reply,
            move |fs| fs.readdir(fh.0, offset),
            |mut reply, result| match result {
                Ok(entries) => {
                    for (next, entry) in entries {
                        if reply.add(INodeNo(entry.ino), next, file_type(entry.kind), &entry.name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno("readdir", &e)),
            },
        );
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // Not through `answer`: the entries go into the reply as they are made. A listing that would wait gives up
        // before its first entry (the core ends a listing early, rather than fail it, once it has added one).
        let list = move |fs: &Vm0Fs, reply: &mut ReplyDirectoryPlus| {
            fs.readdirplus(fh.0, offset, |next, entry, attr| {
                reply.add(
                    INodeNo(entry.ino),
                    next,
                    &entry.name,
                    &attr.ttl,
                    &file_attr(attr),
                    GENERATION,
                )
            })
        };
        let send = |reply: ReplyDirectoryPlus, listed: crate::fs::Result<()>| match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("readdirplus", &e)),
        };
        let timing = self.counters.start(Op::Readdirplus);
        match self.fs.without_waiting(|fs| list(fs, &mut reply)) {
            Some(listed) => send(reply, listed),
            None => {
                let timing = timing.pooled();
                let fs = self.fs.clone();
                self.pool.run(move || {
                    let listed = list(&fs, &mut reply);
                    send(reply, listed);
                    drop(timing);
                });
            }
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let _timing = self.counters.start(Op::Releasedir);
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.spawn(Op::Setxattr, move |fs| {
            reply.error(errno("setxattr", &fs.refuse_change(ino.0)))
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // `ls -l` asks every file for SELinux and ACL attributes, which vm0fs never has. "Not supported" (not
        // "no such attribute", which the kernel never caches) makes `ls` stop asking for the rest of the mount:
        // it remembers per device that these names are unsupported. Only `user.vm0.*` names are served.
        if !name.as_encoded_bytes().starts_with(b"user.vm0.") {
            let _timing = self.counters.start(Op::Getxattr);
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let name = name.to_os_string();
        self.answer(
            Op::Getxattr,
            reply,
            move |fs| fs.getxattr(ino.0, &name),
            move |reply, result| match result {
                Ok(value) => reply_xattr(reply, &value, size),
                Err(e) => reply.error(errno("getxattr", &e)),
            },
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.answer(
            Op::Listxattr,
            reply,
            move |fs| fs.listxattr(ino.0),
            move |reply, result| match result {
                Ok(names) => reply_xattr(reply, &names, size),
                Err(e) => reply.error(errno("listxattr", &e)),
            },
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        self.spawn(Op::Removexattr, move |fs| {
            reply.error(errno("removexattr", &fs.refuse_change(ino.0)))
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            self.spawn(Op::Access, move |fs| {
                reply.error(errno("access", &fs.refuse_change(ino.0)))
            });
        } else {
            let _timing = self.counters.start(Op::Access);
            reply.ok();
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_os_string();
        self.spawn(Op::Create, move |fs| match fs.create(parent.0, &name) {
            Ok((attr, opened)) => reply.created(
                &attr.ttl,
                &file_attr(&attr),
                GENERATION,
                FileHandle(opened.fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno("create", &e)),
        });
    }
}
