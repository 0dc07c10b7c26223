//! The head view of a volume, `volumes/<name>/...`: the namespace the write path will make writable.
//!
//! Its entries are named by the storage id and the path, not by a version, so a new version (a publish, here or
//! elsewhere) does not renumber them: an inode open for writing keeps its number. The price is that the content
//! behind a number can change, so nothing in this view is believed longer than `--metadata-ttl` (attributes and
//! names), and its files are opened without `FOPEN_KEEP_CACHE`, so each open drops pages the kernel kept from an
//! older version; an open file keeps reading the version it opened. Pinned versions (`<name>@<version>`) stay
//! in the read-only `storage.rs`, named by version. Every change is refused (`EROFS`) until the write path.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::archive::{Archive, Version};
use super::{FIXED_TTL, Namespace, StorageNode, is_a_directory, missing, time_of};
use crate::api::models::StorageKind;
use crate::fs::error::{Error, Result};
use crate::fs::inodes::Node;
use crate::fs::{Attr, DirEntry, Opened, Vm0Fs};

const KIND: StorageKind = StorageKind::Volume;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VolumeNode {
    /// `volumes/<name>`: the head of a volume.
    Root { name: String },
    /// A file or directory of the head; `path` is relative to the volume's root and not empty.
    Entry { storage_id: String, path: PathBuf },
}

impl VolumeNode {
    fn entry_at(archive: Archive<'_>, path: PathBuf) -> Node {
        Node::Volume(VolumeNode::Entry {
            storage_id: archive.storage_id.to_string(),
            path,
        })
    }

    /// The version the head of the volume `storage_id` shows now, or `ENOENT` when it has no files (or the
    /// volume is gone).
    fn head(&self, fs: &Vm0Fs, storage_id: &str) -> Result<Version> {
        let gone = || Error::not_found(self.describe());
        let storages = fs.meta.storages(KIND)?;
        let storage = storages
            .iter()
            .find(|s| s.id == storage_id)
            .ok_or_else(gone)?;
        fs.version(KIND, &storage.name, None)?
            .filter(|v| v.has_files)
            .ok_or_else(gone)
    }
}

impl Namespace for VolumeNode {
    fn child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        match self {
            VolumeNode::Root { name: volume } => {
                let version = fs.version(KIND, volume, None)?;
                fs.archive_top_child(KIND, version.as_ref(), name, VolumeNode::entry_at)
            }
            VolumeNode::Entry { storage_id, path } => {
                let version = self.head(fs, storage_id)?;
                let archive = Archive::of(KIND, &version);
                let path = path.join(name);
                if !fs.archive_holds(archive, &path)? {
                    return Err(missing(&Node::Volume(self.clone()), name));
                }
                Ok(VolumeNode::entry_at(archive, path))
            }
        }
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        let ttl = fs.config.metadata_ttl;
        match self {
            VolumeNode::Root { name } => {
                let storage = fs.meta.storage(KIND, name)?;
                Ok(fs.dir_attr(ino, time_of(&storage.updated_at, fs.mounted_at), ttl))
            }
            VolumeNode::Entry { storage_id, path } => {
                let version = self.head(fs, storage_id)?;
                let archive = Archive::of(KIND, &version);
                fs.archive_attr(ino, archive, path, ttl.min(FIXED_TTL))
            }
        }
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        match self {
            VolumeNode::Root { name } => {
                let version = fs.version(KIND, name, None)?;
                fs.archive_top_children(KIND, version, VolumeNode::entry_at, out)
            }
            VolumeNode::Entry { storage_id, path } => {
                let version = self.head(fs, storage_id)?;
                let archive = Archive::of(KIND, &version);
                fs.archive_children(archive, path, |p| VolumeNode::entry_at(archive, p), out)
            }
        }
    }

    fn open(&self, fs: &Vm0Fs) -> Result<Opened> {
        let VolumeNode::Entry { storage_id, path } = self else {
            return Err(is_a_directory(self));
        };
        let version = self.head(fs, storage_id)?;
        let archive = Archive::of(KIND, &version);
        fs.archive_open(archive, path, || self.describe(), false)
    }

    fn parent(&self) -> Node {
        match self {
            VolumeNode::Entry { storage_id, path } => match path.parent() {
                Some(parent) if parent != Path::new("") => Node::Volume(VolumeNode::Entry {
                    storage_id: storage_id.clone(),
                    path: parent.to_path_buf(),
                }),
                _ => Node::Storage(StorageNode::Dir(KIND)),
            },
            VolumeNode::Root { .. } => Node::Storage(StorageNode::Dir(KIND)),
        }
    }

    fn describe(&self) -> String {
        match self {
            VolumeNode::Root { name } => format!("volumes/{name}"),
            VolumeNode::Entry { storage_id, path } => {
                format!("volume {storage_id}: {}", path.to_string_lossy())
            }
        }
    }

    fn link_target(&self, fs: &Vm0Fs) -> Result<Vec<u8>> {
        match self {
            VolumeNode::Entry { storage_id, path } => {
                let version = self.head(fs, storage_id)?;
                fs.archive_link(Archive::of(KIND, &version), path)
            }
            VolumeNode::Root { .. } => Err(Error::new(
                libc::EINVAL,
                format!("{}: not a symbolic link", self.describe()),
            )),
        }
    }

    fn xattrs(&self, fs: &Vm0Fs) -> Result<Vec<(&'static str, String)>> {
        match self {
            VolumeNode::Root { name } => fs.root_xattrs(KIND, name, None),
            VolumeNode::Entry { .. } => Ok(Vec::new()),
        }
    }
}
