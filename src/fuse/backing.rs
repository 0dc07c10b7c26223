//! FUSE passthrough: which file the kernel reads and writes directly for an inode, with no request reaching us.
//!
//! The kernel takes one backing file per inode: while one open of an inode is in passthrough, every later open of
//! it must name the same backing file (another one, or an open without passthrough, fails in the kernel), and the
//! backing id is given back when its last open is released (dropping the id closes it in the kernel). So the ids
//! live here, by inode, with the number of opens that use them and which file they stand for.
//!
//! A cached archive file is read this way; so is a volume's staged file, read and written: a `tar x` into a
//! volume then costs no WRITE (and no kill-privileges GETXATTR) per `write(2)`, the bytes going straight to the
//! staged file's page cache, where they survive a crash of vm0fs as a local disk's would. A second open of an
//! inode that names another file keeps the first one's backing when it only reads (it reads the version that open
//! found, as a file of a published head does), and goes without passthrough when it writes, since its bytes must
//! reach its own file.

use crate::sync::Locked;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use fuser::BackingId;

/// A file behind an open handle, for the kernel to use directly.
pub struct BackingFile<'a> {
    pub file: &'a File,
    /// The handle writes: its bytes must go to this very file.
    pub writes: bool,
}

struct Backed {
    id: BackingId,
    /// Device and inode number of the backing file.
    file: (u64, u64),
    opens: usize,
}

#[derive(Default)]
pub struct Backings {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_inode: HashMap<u64, Backed>,
    /// The open handles attached with passthrough, and their inode.
    handles: HashMap<u64, u64>,
}

/// The reply to an open or a create: it can register a backing file, and is sent with or without one.
pub trait OpenReply {
    /// The handle opened.
    fn fh(&self) -> u64;
    fn open_backing(&self, file: &File) -> std::io::Result<BackingId>;
    fn send(self, backing: Option<&BackingId>);
}

impl Backings {
    /// Attaches handle `fh`, an open of inode `ino` backed by `backing`, and sends `reply` with the inode's backing
    /// id (registering one for a first open) or without passthrough.
    pub fn attach(&self, fh: u64, ino: u64, backing: &BackingFile<'_>, reply: impl OpenReply) {
        let identity = backing.file.metadata().map(|m| (m.dev(), m.ino())).ok();
        let mut table = self.table.locked();
        let Table { by_inode, handles } = &mut *table;
        if let Some(backed) = by_inode.get_mut(&ino) {
            if backing.writes && identity != Some(backed.file) {
                tracing::debug!(
                    ino,
                    "the inode is open through another file; this writer goes without passthrough"
                );
                return reply.send(None);
            }
            backed.opens += 1;
            handles.insert(fh, ino);
            return reply.send(Some(&backed.id));
        }
        let Some(file) = identity else {
            return reply.send(None);
        };
        match reply.open_backing(backing.file) {
            Ok(id) => {
                let backed = by_inode.entry(ino).or_insert(Backed { id, file, opens: 1 });
                handles.insert(fh, ino);
                reply.send(Some(&backed.id))
            }
            Err(e) => {
                // Without CAP_SYS_ADMIN the ioctl is refused: serve reads and writes ourselves.
                tracing::debug!("passthrough refused ({e}); reading and writing through vm0fs");
                reply.send(None)
            }
        }
    }

    /// Handle `fh` was released: its inode's backing id is given back with the last handle that uses it.
    pub fn detach(&self, fh: u64) {
        let mut table = self.table.locked();
        let Some(ino) = table.handles.remove(&fh) else {
            return;
        };
        if let Some(backed) = table.by_inode.get_mut(&ino) {
            backed.opens -= 1;
            if backed.opens == 0 {
                table.by_inode.remove(&ino);
            }
        }
    }
}
