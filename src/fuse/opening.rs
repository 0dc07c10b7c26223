//! The replies to `open` and `create`: with the inode's backing file when the mount has passthrough and the handle
//! has a file behind it (see `backing`), else with the open flags the core asked for. Apart from the adapter's
//! handlers so that both requests share one way of answering, and the adapter stays a list of requests.

use fuser::{FileHandle, FopenFlags, ReplyCreate, ReplyOpen};

use super::backing::{BackingFile, Backings, OpenReply};
use super::{GENERATION, file_attr};
use crate::fs::{Attr, Opened, Vm0Fs};

/// The reply to `open`, with what the core opened.
pub(super) struct OpenAnswer {
    pub(super) reply: ReplyOpen,
    pub(super) opened: Opened,
}

impl OpenReply for OpenAnswer {
    fn fh(&self) -> u64 {
        self.opened.fh
    }

    fn open_backing(&self, file: &std::fs::File) -> std::io::Result<fuser::BackingId> {
        self.reply.open_backing(file)
    }

    fn send(self, backing: Option<&fuser::BackingId>) {
        let fh = FileHandle(self.opened.fh);
        match backing {
            Some(id) => self
                .reply
                .opened_passthrough(fh, passthrough_flags(&self.opened), id),
            None => self.reply.opened(fh, fopen_flags(&self.opened)),
        }
    }
}

/// The reply to `create`, with the new entry and its open handle.
pub(super) struct CreateAnswer {
    pub(super) reply: ReplyCreate,
    pub(super) attr: Attr,
    pub(super) opened: Opened,
}

impl OpenReply for CreateAnswer {
    fn fh(&self) -> u64 {
        self.opened.fh
    }

    fn open_backing(&self, file: &std::fs::File) -> std::io::Result<fuser::BackingId> {
        self.reply.open_backing(file)
    }

    fn send(self, backing: Option<&fuser::BackingId>) {
        let (ttl, attr) = (&self.attr.ttl, &file_attr(&self.attr));
        let fh = FileHandle(self.opened.fh);
        match backing {
            Some(id) => {
                let flags = passthrough_flags(&self.opened);
                self.reply
                    .created_passthrough(ttl, attr, GENERATION, fh, flags, id)
            }
            None => {
                let flags = fopen_flags(&self.opened);
                self.reply.created(ttl, attr, GENERATION, fh, flags)
            }
        }
    }
}

/// Sends the reply to an open of `ino`: in passthrough when the mount has it and the handle has a file behind it.
pub(super) fn answer_open(
    fs: &Vm0Fs,
    backings: Option<&Backings>,
    ino: u64,
    reply: impl OpenReply,
) {
    let fh = reply.fh();
    let mut reply = Some(reply);
    if let Some(backings) = backings {
        fs.with_backing_file(fh, |file, writes| {
            if let Some(reply) = reply.take() {
                backings.attach(fh, ino, &BackingFile { file, writes }, reply);
            }
        });
    }
    if let Some(reply) = reply {
        reply.send(None);
    }
}

/// The open flags the core asked for (used when the open is not in passthrough).
fn fopen_flags(opened: &Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if opened.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if opened.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    flags | passthrough_flags(opened)
}

/// The open flags that also go with passthrough: `close` of a volume file sends no FLUSH (there is nothing to do
/// at close; the group commit takes the bytes to the disk).
fn passthrough_flags(opened: &Opened) -> FopenFlags {
    match opened.no_flush {
        true => FopenFlags::FOPEN_NOFLUSH,
        false => FopenFlags::empty(),
    }
}
