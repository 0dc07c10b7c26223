//! The fuser adapter: decode a request, run the core's method on a worker, encode the reply. No logic of its own.
//!
//! The requests about the tree (lookup, getattr, readlink, opendir, readdir, readdirplus, getxattr, listxattr)
//! and the ones a `tar x` into a volume sends per file (create, setattr other than a truncation, release) are
//! answered on the event-loop thread that read them when the core needs nothing that can wait (the cached tree,
//! fresh listings, a volume's open stage: see `fs::waiting`), and handed to the worker pool (see `pool.rs`) only
//! when it would wait for the network, a download, or a volume's stage busy with a publish; the rest (open, read,
//! write, truncation and the like) always go to the pool, so the event loop never waits for the network. A hand-off
//! costs more than most answers (a queue, a wake-up and a thread switch per request). `forget` and `releasedir` (table updates) and the answers
//! known without the core run on the event loop. Each request is counted by opcode and by where it was answered
//! (`counters.rs`), and gets a span (`req`: request id, operation, inode, pid, the name when there is one),
//! entered wherever it runs, so every log line it causes in any layer can be traced back to it. Errors from the
//! core carry their errno and their log level; the adapter logs them at that level with their chain of causes (a
//! missing name at debug level, most failures as warnings, like mountpoint-s3) and replies. Operations that would
//! change the tree go to the core, whose namespaces refuse them (`EROFS`) unless they allow them.
//!
//! What the kernel can do without us, it does: cached files and staged volume files are opened in passthrough
//! (`backing`, `opening`), so their reads and writes never come here; a volume file open for writing sends no
//! FLUSH at close; and the mount takes the clearing of set-id bits on itself (FUSE_HANDLE_KILLPRIV_V2, see
//! `init`), which spares the kernel's privilege check (a GETXATTR) before each write.

mod adapter;
mod backing;
mod counters;
mod fusermount;
mod opening;
mod pool;
mod session;

pub use adapter::FuseAdapter;
use adapter::{errno, file_attr, file_type, named_span, reply_xattr, request_span};
pub use session::{KernelInvalidator, MountConfig, mount};

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::Vm0Fs;
use counters::Op;
use opening::{CreateAnswer, OpenAnswer, answer_open};

/// The most requests served at once: well above the kernel's `max_background` so that slow API calls never
/// starve cached reads, yet bounded so that a storm of requests cannot exhaust threads.
const MAX_WORKERS: usize = 64;
/// Requests the kernel may keep in flight in the background (its default of 12 is tuned for local disks).
const MAX_BACKGROUND: u16 = 64;
const GENERATION: Generation = Generation(0);
/// The preferred I/O size reported to tools such as `cp` and `dd`.
const BLOCK_SIZE: u32 = 128 * 1024;
/// The block size `df` counts the cache in.
const STATFS_BLOCK: u32 = 4096;
/// The `st_blksize` of directories: glibc sizes the buffer of `readdir` from it (up to 1 MiB), and the kernel
/// (6.16+) sizes each READDIRPLUS to that buffer, so one request lists about 4,000 names instead of about 100.
const DIR_BLOCK_SIZE: u32 = 1024 * 1024;

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Readdirplus always, not `READDIRPLUS_AUTO`: with AUTO the kernel lists only the first batch of a
        // directory with attributes, and `find` (which reads a whole directory before it stats anything) then pays
        // one LOOKUP per name of every later batch.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::info!("the kernel does not offer {missing:?}; listings use plain readdir");
        }
        // vm0fs clears the set-user-ID and set-group-ID bits itself on write, truncate and chown (see `setattr`
        // and `write`), as the kernel would: otherwise the kernel asks for `security.capability` before every
        // write to learn whether there are privileges to drop, a GETXATTR per `write(2)`.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2) {
            tracing::info!(
                "the kernel does not offer {missing:?}; it checks privileges before each write"
            );
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

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let span = named_span("lookup", req, parent, name);
        let name = name.to_os_string();
        self.answer(
            req,
            span,
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

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let span = request_span("getattr", req, ino);
        self.answer(
            req,
            span,
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
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let span = request_span("setattr", req, ino);
        let now = SystemTime::now();
        let time = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => now,
        };
        let times = (atime.map(time), mtime.map(time));
        // The set-id bits a chown, or a truncate by a caller without CAP_FSETID (taken to be anyone but root),
        // clears in the kernel's stead (see `init`), unless the same call sets a mode.
        let drop_set_id = mode.is_none()
            && (uid.is_some() || gid.is_some() || (size.is_some() && req.uid() != 0));
        let change = move |fs: &Arc<Vm0Fs>| {
            if drop_set_id {
                fs.drop_set_id_bits(ino.0)?;
            }
            fs.setattr(ino.0, mode, (uid, gid), size, times)
        };
        let send = |reply: ReplyAttr, result: crate::fs::Result<crate::fs::Attr>| match result {
            Ok(attr) => reply.attr(&attr.ttl, &file_attr(&attr)),
            Err(e) => reply.error(errno("setattr", &e)),
        };
        // A new size may copy a whole file up from the base version first: always on a worker. A mode, owner or
        // times (`tar`'s chown, chmod and utimens of each file) is a change in memory and a journal record.
        match size {
            Some(_) => self.spawn(req, span, Op::Setattr, move |fs| send(reply, change(fs))),
            None => self.answer(req, span, Op::Setattr, reply, change, send),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let span = request_span("readlink", req, ino);
        self.answer(
            req,
            span,
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
        req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let span = request_span("mknod", req, parent);
        self.spawn(req, span, Op::Mknod, move |fs| {
            let e = fs.refuse_special(parent.0, "a device, FIFO or socket");
            reply.error(errno("mknod", &e))
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let span = named_span("mkdir", req, parent, name);
        let name = name.to_os_string();
        self.spawn(req, span, Op::Mkdir, move |fs| {
            match fs.mkdir(parent.0, &name, mode & !umask) {
                Ok(attr) => reply.entry(&attr.ttl, &file_attr(&attr), GENERATION),
                Err(e) => reply.error(errno("mkdir", &e)),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let span = named_span("unlink", req, parent, name);
        let name = name.to_os_string();
        self.spawn(req, span, Op::Unlink, move |fs| {
            match fs.unlink(parent.0, &name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("unlink", &e)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let span = named_span("rmdir", req, parent, name);
        let name = name.to_os_string();
        self.spawn(req, span, Op::Rmdir, move |fs| {
            match fs.rmdir(parent.0, &name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rmdir", &e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let span = named_span("symlink", req, parent, link_name);
        let (name, target) = (link_name.to_os_string(), target.to_path_buf());
        self.spawn(req, span, Op::Symlink, move |fs| {
            match fs.symlink(parent.0, &name, &target) {
                Ok(attr) => reply.entry(&attr.ttl, &file_attr(&attr), GENERATION),
                Err(e) => reply.error(errno("symlink", &e)),
            }
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let span = named_span("rename", req, parent, name);
        let (name, newname) = (name.to_os_string(), newname.to_os_string());
        self.spawn(req, span, Op::Rename, move |fs| {
            match fs.rename(parent.0, &name, newparent.0, &newname, flags.bits()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rename", &e)),
            }
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let span = named_span("link", req, newparent, newname);
        let name = newname.to_os_string();
        self.spawn(req, span, Op::Link, move |fs| {
            match fs.link(ino.0, newparent.0, &name) {
                Ok(attr) => reply.entry(&attr.ttl, &file_attr(&attr), GENERATION),
                Err(e) => reply.error(errno("link", &e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let span = request_span("open", req, ino);
        let passthrough = self.passthrough.then(|| self.backings.clone());
        let pid = req.pid();
        self.spawn(req, span, Op::Open, move |fs| {
            match fs.open(ino.0, flags.0, pid) {
                Ok(opened) => {
                    let reply = OpenAnswer { reply, opened };
                    answer_open(fs, passthrough.as_deref(), ino.0, reply);
                }
                Err(e) => reply.error(errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let span = request_span("read", req, ino);
        self.spawn(req, span, Op::Read, move |fs| {
            match fs.read(fh.0, offset, size) {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let span = request_span("write", req, ino);
        let data = data.to_vec();
        let pid = req.pid();
        // The kernel asks us to clear the set-id bits as it would have (see `init`).
        let drop_set_id = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.spawn(req, span, Op::Write, move |fs| {
            let written = fs.write(fh.0, offset, &data, pid);
            let written = match (written, drop_set_id) {
                (Ok(n), true) => fs.drop_set_id_bits(ino.0).map(|()| n),
                (other, _) => other,
            };
            match written {
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
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let span = request_span("flush", req, ino);
        let pid = req.pid();
        self.spawn(req, span, Op::Flush, move |fs| match fs.flush(fh.0, pid) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("flush", &e)),
        });
    }

    /// A volume file's bytes reach the local disk (nothing is published); elsewhere nothing is kept in memory
    /// that a disk could hold, so an editor's fsync succeeds (a run starts at close).
    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let span = request_span("fsync", req, ino);
        self.spawn(req, span, Op::Fsync, move |fs| match fs.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("fsync", &e)),
        });
    }

    /// `fsync` of a directory: a volume's staged changes reach the disk (without it, the kernel would answer
    /// every later one itself with success, having flushed nothing).
    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let span = request_span("fsyncdir", req, ino);
        self.spawn(req, span, Op::Fsyncdir, move |fs| {
            match fs.fsyncdir(ino.0) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fsyncdir", &e)),
            }
        });
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let span = request_span("release", req, ino);
        // Releasing an unflushed `runs/new/` handle starts its run, an API call (a worker); the rest is memory.
        let backings = self.backings.clone();
        self.answer(
            req,
            span,
            Op::Release,
            reply,
            move |fs| fs.release(fh.0),
            move |reply, released| {
                backings.detach(fh.0);
                match released {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno("release", &e)),
                }
            },
        );
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let span = request_span("opendir", req, ino);
        self.answer(
            req,
            span,
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
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let span = request_span("readdir", req, ino);
        self.answer(
            req,
            span,
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
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        // Through `answer_into`: the entries go into the reply as they are made. A listing that would wait gives up
        // before its first entry (the core ends a listing early, rather than fail it, once it has added one).
        let span = request_span("readdirplus", req, ino);
        let list = move |fs: &Arc<Vm0Fs>, reply: &mut ReplyDirectoryPlus| {
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
        self.answer_into(req, span, Op::Readdirplus, reply, list, send);
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
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let span = named_span("setxattr", req, ino, name);
        let name = name.to_os_string();
        self.spawn(req, span, Op::Setxattr, move |fs| {
            reply.error(errno("setxattr", &fs.refuse_xattr_change(ino.0, &name)))
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // `ls -l` asks every file for SELinux and ACL attributes, which vm0fs never has. "Not supported" (not
        // "no such attribute", which the kernel never caches) makes `ls` stop asking for the rest of the mount:
        // it remembers per device that these names are unsupported. Only `user.vm0.*` names are served.
        if !name.as_encoded_bytes().starts_with(b"user.vm0.") {
            let _timing = self.counters.start(Op::Getxattr);
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let span = named_span("getxattr", req, ino, name);
        let name = name.to_os_string();
        self.answer(
            req,
            span,
            Op::Getxattr,
            reply,
            move |fs| fs.getxattr(ino.0, &name),
            move |reply, result| match result {
                Ok(value) => reply_xattr(reply, &value, size),
                Err(e) => reply.error(errno("getxattr", &e)),
            },
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let span = request_span("listxattr", req, ino);
        self.answer(
            req,
            span,
            Op::Listxattr,
            reply,
            move |fs| fs.listxattr(ino.0),
            move |reply, result| match result {
                Ok(names) => reply_xattr(reply, &names, size),
                Err(e) => reply.error(errno("listxattr", &e)),
            },
        );
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let span = named_span("removexattr", req, ino, name);
        let name = name.to_os_string();
        self.spawn(req, span, Op::Removexattr, move |fs| {
            reply.error(errno("removexattr", &fs.refuse_xattr_change(ino.0, &name)))
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            let span = request_span("access", req, ino);
            self.spawn(req, span, Op::Access, move |fs| {
                match fs.access_write(ino.0) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno("access", &e)),
                }
            });
        } else {
            let _timing = self.counters.start(Op::Access);
            reply.ok();
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let span = named_span("create", req, parent, name);
        let name = name.to_os_string();
        let passthrough = self.passthrough.then(|| self.backings.clone());
        let fs = self.fs.clone();
        // On this thread when the volume's stage is open (a new file is a journal record and an empty staged file).
        self.answer(
            req,
            span,
            Op::Create,
            reply,
            move |fs| fs.create(parent.0, &name, mode & !umask),
            move |reply, created| match created {
                Ok((attr, opened)) => {
                    let ino = attr.ino;
                    let reply = CreateAnswer {
                        reply,
                        attr,
                        opened,
                    };
                    answer_open(&fs, passthrough.as_deref(), ino, reply);
                }
                Err(e) => reply.error(errno("create", &e)),
            },
        );
    }

    /// No file here is a device: every ioctl (Python's `open()` asks `TCGETS` to learn whether it is a tty) is
    /// `ENOTTY`, answered at once and not logged, where fuser's default would warn on every open.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let _timing = self.counters.start(Op::Ioctl);
        reply.error(Errno::ENOTTY);
    }

    /// `SEEK_DATA` and `SEEK_HOLE` (the kernel answers the other whences itself).
    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let span = request_span("lseek", req, ino);
        self.spawn(req, span, Op::Lseek, move |fs| {
            match fs.seek_data(fh.0, offset, whence) {
                Ok(found) => reply.offset(found),
                Err(e) if e.errno == libc::ENXIO => reply.error(Errno::from_i32(e.errno)),
                Err(e) => reply.error(errno("lseek", &e)),
            }
        });
    }

    /// `df` on the mount shows the archive cache: its limit as the size, the bytes it holds as used.
    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _timing = self.counters.start(Op::Statfs);
        let (limit, used) = self.fs.space();
        let blocks = limit.div_ceil(u64::from(STATFS_BLOCK));
        let free = limit.saturating_sub(used) / u64::from(STATFS_BLOCK);
        reply.statfs(
            blocks,
            free,
            free,
            0,
            0,
            STATFS_BLOCK,
            crate::fs::NAME_MAX as u32,
            STATFS_BLOCK,
        );
    }
}
