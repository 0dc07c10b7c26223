//! The adapter's state and the two ways a request is run: on the event-loop thread when the core needs nothing
//! that can wait, else on a worker (`answer`, `spawn`); with the pieces every handler shares: the request's span,
//! the errno of a core error (logged at the level the core chose), and the conversions of attributes to fuser's.

use std::ffi::OsStr;
use std::sync::Arc;

use fuser::{Errno, FileAttr, FileType, INodeNo, ReplyXattr, Request};
use tracing::{Level, Span};

use super::backing::Backings;
use super::counters::{Counters, Op};
use super::pool::WorkerPool;
use super::{BLOCK_SIZE, DIR_BLOCK_SIZE};
use crate::fs::{Attr, Error, FileKind, Vm0Fs};

pub struct FuseAdapter {
    pub(super) fs: Arc<Vm0Fs>,
    pub(super) pool: WorkerPool,
    /// Requests served, by opcode and by where they were answered (`.vm0fs/status`).
    pub(super) counters: Arc<Counters>,
    /// The kernel accepted FUSE passthrough: cached archive files and staged volume files are read (and the
    /// staged ones written) by the kernel itself, with no request reaching us (kernel 6.9+, and CAP_SYS_ADMIN for
    /// the backing ioctl). See `backing`.
    pub(super) passthrough: bool,
    /// The kernel's backing file of each inode open in passthrough (`backing`).
    pub(super) backings: Arc<Backings>,
}

impl FuseAdapter {
    /// Runs `job` (a request of opcode `op`) on a worker with the core, inside the request's span and on behalf of
    /// the request's caller (so that a wait inside can see the caller give up, see `caller`), timing it until it
    /// has replied.
    pub(super) fn spawn(
        &self,
        req: &Request,
        span: Span,
        op: Op,
        job: impl FnOnce(&Arc<Vm0Fs>) + Send + 'static,
    ) {
        let timing = self.counters.start(op).pooled();
        let fs = self.fs.clone();
        let pid = req.pid();
        self.pool.run(move || {
            let _entered = span.enter();
            crate::caller::serve(pid, || job(&fs));
            drop(timing);
        });
    }

    /// Answers a request of opcode `op` with what `call` returns, passed to `send` with the reply: on this thread
    /// when `call` needs nothing that can wait (memory, the cache on disk), else on a worker (see `fs::waiting`).
    pub(super) fn answer<T, R: Send + 'static>(
        &self,
        req: &Request,
        span: Span,
        op: Op,
        reply: R,
        call: impl Fn(&Arc<Vm0Fs>) -> crate::fs::Result<T> + Send + 'static,
        send: impl FnOnce(R, crate::fs::Result<T>) + Send + 'static,
    ) {
        self.answer_into(req, span, op, reply, move |fs, _| call(fs), send);
    }

    /// `answer` for a call that fills the reply as it goes (a listing adds its entries): `call` gets the reply too.
    /// An inline attempt that would wait gives up before it adds anything (`fs::waiting`), so the worker starts
    /// from an empty reply.
    pub(super) fn answer_into<T, R: Send + 'static>(
        &self,
        req: &Request,
        span: Span,
        op: Op,
        mut reply: R,
        call: impl Fn(&Arc<Vm0Fs>, &mut R) -> crate::fs::Result<T> + Send + 'static,
        send: impl FnOnce(R, crate::fs::Result<T>) + Send + 'static,
    ) {
        let timing = self.counters.start(op);
        let inline = {
            let _entered = span.enter();
            self.fs.without_waiting(|_| call(&self.fs, &mut reply))
        };
        match inline {
            Some(result) => {
                let _entered = span.enter();
                send(reply, result)
            }
            None => {
                let timing = timing.pooled();
                let fs = self.fs.clone();
                let pid = req.pid();
                self.pool.run(move || {
                    let _entered = span.enter();
                    crate::caller::serve(pid, || {
                        let result = call(&fs, &mut reply);
                        send(reply, result)
                    });
                    drop(timing);
                });
            }
        }
    }
}

/// The span of one request, created when it arrives and entered by the worker that runs it, so that every log line
/// of the request, in any layer, says which request, inode and process it belongs to.
pub(super) fn request_span(op: &'static str, req: &Request, ino: INodeNo) -> Span {
    tracing::info_span!(
        "req",
        id = req.unique().0,
        op,
        ino = ino.0,
        pid = req.pid(),
        name = tracing::field::Empty
    )
}

/// `request_span` of a request about a name in the directory `parent`.
pub(super) fn named_span(op: &'static str, req: &Request, parent: INodeNo, name: &OsStr) -> Span {
    let span = request_span(op, req, parent);
    span.record("name", tracing::field::debug(name));
    span
}

/// Logs a failed request at the level the core chose, with its chain of causes, and gives its errno.
pub(super) fn errno(op: &str, error: &Error) -> Errno {
    let chain = error.chain();
    match error.level {
        Level::ERROR => tracing::error!("{op}: {chain}"),
        Level::WARN => tracing::warn!("{op}: {chain}"),
        Level::INFO => tracing::info!("{op}: {chain}"),
        _ => tracing::debug!("{op}: {chain}"),
    }
    Errno::from_i32(error.errno)
}

pub(super) fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
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

pub(super) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

pub(super) fn reply_xattr(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
