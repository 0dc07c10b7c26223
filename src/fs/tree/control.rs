//! The namespace of `.vm0fs/`, the directory where the mount tells about itself (see `fs::control` for what its
//! files say and do). Its files change at any time, so none of their attributes are cached; `pins` is the one
//! writable file, truncated and written in place.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use super::{FIXED_TTL, text_name};
use super::{Namespace, file_by_name, is_a_directory, missing, name_of_file, not_a_directory};
use crate::fs::error::Result;
use crate::fs::handles::Handle;
use crate::fs::inodes::Node;
use crate::fs::{Attr, DirEntry, FileKind, Opened, Vm0Fs};

/// The name of the control directory in the root.
pub(in crate::fs) const CONTROL_DIR: &str = ".vm0fs";

const CONTROL_FILES: [(&str, ControlFile); 3] = [
    ("status", ControlFile::Status),
    ("pins", ControlFile::Pins),
    ("sync", ControlFile::Sync),
];

/// The files of the hidden `.vm0fs/` directory, where the mount tells about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlFile {
    /// JSON: the mount, its cache, the downloads in flight (`vm0fs status`).
    Status,
    /// The pinned versions; write `pin|unpin <kind>/<name>[@<version>]` to change them (`vm0fs prefetch`).
    Pins,
    /// Write `volumes/<name>` to publish that volume now (`vm0fs sync`): the write returns when it is published
    /// (or fails with why), and reading the same open file gives `volumes/<name>@<8 hex>` or `error: ...`.
    Sync,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlNode {
    /// `.vm0fs/`, reachable by name but not listed in the root.
    Dir,
    File(ControlFile),
}

/// The attributes of the root and of `.vm0fs/`: private to the owner unless the mount allows others.
pub(super) fn top_dir_attr(fs: &Vm0Fs, ino: u64) -> Attr {
    let perm = if fs.config.allow_other { 0o555 } else { 0o500 };
    let ttl = fs.config.metadata_ttl.min(FIXED_TTL);
    fs.make_attr(ino, FileKind::Directory, 0, perm, fs.mounted_at, ttl)
}

impl Namespace for ControlNode {
    fn child(&self, _fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        let text = text_name(self, name)?;
        match self {
            ControlNode::Dir => file_by_name(&CONTROL_FILES, text)
                .map(|file| Node::Control(ControlNode::File(file)))
                .ok_or_else(|| missing(self, name)),
            ControlNode::File(_) => Err(not_a_directory(self)),
        }
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        Ok(match self {
            ControlNode::Dir => top_dir_attr(fs, ino),
            // Both change at any time: no attribute caching.
            ControlNode::File(ControlFile::Status) => {
                let size = fs.status_json().len() as u64;
                let now = SystemTime::now();
                fs.make_attr(ino, FileKind::File, size, 0o444, now, Duration::ZERO)
            }
            ControlNode::File(ControlFile::Pins) => {
                let size = fs.pins_text().len() as u64;
                let mtime = fs.mounted_at;
                fs.make_attr(ino, FileKind::File, size, 0o600, mtime, Duration::ZERO)
            }
            ControlNode::File(ControlFile::Sync) => {
                fs.make_attr(ino, FileKind::File, 0, 0o600, fs.mounted_at, Duration::ZERO)
            }
        })
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        if *self != ControlNode::Dir {
            return Err(not_a_directory(self));
        }
        for (name, file) in CONTROL_FILES {
            let node = Node::Control(ControlNode::File(file));
            out.push(fs.entry(&node, FileKind::File, name));
        }
        Ok(())
    }

    fn open(&self, fs: &Vm0Fs) -> Result<Opened> {
        let bytes = match self {
            ControlNode::Dir => return Err(is_a_directory(self)),
            ControlNode::File(ControlFile::Status) => fs.status_json(),
            ControlNode::File(ControlFile::Pins) => fs.pins_text(),
            ControlNode::File(ControlFile::Sync) => Vec::new(),
        };
        Ok(fs.open_handle(Handle::Content(std::sync::Arc::new(bytes))))
    }

    fn parent(&self) -> Node {
        match self {
            ControlNode::Dir => Node::Root,
            ControlNode::File(_) => Node::Control(ControlNode::Dir),
        }
    }

    fn describe(&self) -> String {
        match self {
            ControlNode::Dir => CONTROL_DIR.into(),
            ControlNode::File(file) => {
                format!("{CONTROL_DIR}/{}", name_of_file(&CONTROL_FILES, *file))
            }
        }
    }

    fn open_write(&self, _fs: &Vm0Fs) -> Result<Option<Handle>> {
        Ok(match self {
            ControlNode::File(ControlFile::Pins) => Some(Handle::Pins),
            ControlNode::File(ControlFile::Sync) => Some(Handle::Sync(Default::default())),
            _ => None,
        })
    }

    /// Truncation to zero, as `open(O_TRUNC)` asks, is accepted on `pins` and `sync`.
    fn truncate(&self, _fs: &Vm0Fs, size: u64) -> Result<()> {
        let writable = matches!(
            self,
            ControlNode::File(ControlFile::Pins | ControlFile::Sync)
        );
        if writable && size == 0 {
            Ok(())
        } else {
            Err(crate::fs::Error::read_only(self.describe()))
        }
    }
}
