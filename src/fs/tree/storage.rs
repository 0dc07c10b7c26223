//! The read-only storage namespace: `volumes/` and `artifacts/` themselves, an artifact's head
//! (`artifacts/<name>`), any pinned version (`<kind>/<name>@<version prefix>`), and the entries of those versions.
//! An entry is named by its version id, so a version's inodes never change meaning, and all but the top level are
//! believed for good. A volume's head is the writable view of `volume.rs`.
//!
//! `<kind>/<name>@/` lists a storage's versions, newest first (as the API lists them), each a directory named by
//! the first 8 hex characters of its id (the whole id for two that share them) that is the pinned tree itself,
//! dated by when the version was made and sized by its bytes of content, with its message in `user.vm0.message`.
//! `<name>@latest` is the head. A storage root's size is its version's bytes of content, known from the API, so
//! `ls -l volumes` shows it without downloading anything (`du` still downloads).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::archive::{Archive, Version, not_in_archive};
use super::{FIXED_TTL, Namespace, is_a_directory, missing, text_name};
use super::{VolumeNode, time_of, unique_safe_names};
use crate::api::models::{PushPrepareRequest, StorageKind};
use crate::fs::error::{Error, Result};
use crate::fs::inodes::Node;
use crate::fs::{Attr, DirEntry, FileKind, Opened, Vm0Fs};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StorageNode {
    /// `volumes/` or `artifacts/`.
    Dir(StorageKind),
    /// `<kind>/<name>@/`: one directory per version, newest first.
    Versions { kind: StorageKind, name: String },
    /// `artifacts/<name>` (head, `pin: None`) or `<kind>/<name>@<prefix>` (pinned to a full version id).
    Root {
        kind: StorageKind,
        name: String,
        pin: Option<String>,
    },
    /// A file or directory inside an extracted version; `path` is relative to the version's root and not empty.
    /// The ids are shared by every entry of the version the inode table holds (see `InodeTable::acquire`).
    Entry {
        kind: StorageKind,
        storage_id: Arc<str>,
        version_id: Arc<str>,
        path: PathBuf,
    },
}

impl StorageNode {
    /// The node of `path` inside the version of `archive`.
    fn entry_at(archive: Archive<'_>, path: PathBuf) -> Node {
        Node::Storage(StorageNode::Entry {
            kind: archive.kind,
            storage_id: archive.storage_id.into(),
            version_id: archive.version_id.into(),
            path,
        })
    }
}

impl Vm0Fs {
    /// `<kind>/<name>` or `<kind>/<name>@<version prefix>`; a volume's head is its writable view.
    fn storage_root(&self, kind: StorageKind, name: &str) -> Result<Node> {
        let (base, prefix) = match name.rsplit_once('@') {
            Some((base, prefix)) => (base, Some(prefix)),
            None => (name, None),
        };
        let storage = self.meta.storage(kind, base)?;
        let pin = match prefix {
            Some("") => {
                return Ok(Node::Storage(StorageNode::Versions {
                    kind,
                    name: base.to_string(),
                }));
            }
            None | Some(LATEST) if kind == StorageKind::Volume => {
                return Ok(Node::Volume(VolumeNode::Root {
                    name: base.to_string(),
                }));
            }
            None | Some(LATEST) => None,
            Some(prefix) => Some(self.resolve_prefix(kind, &storage, prefix)?),
        };
        Ok(Node::Storage(StorageNode::Root {
            kind,
            name: base.to_string(),
            pin,
        }))
    }

    /// The version a storage root shows (a volume's head, an artifact's, or a pinned one), for `.vm0fs/pins`.
    pub(in crate::fs) fn version_of_root(&self, node: &Node) -> Result<Option<Version>> {
        match node {
            Node::Storage(StorageNode::Root { kind, name, pin }) => {
                self.version(*kind, name, pin.as_deref())
            }
            Node::Volume(VolumeNode::Root { name }) => {
                self.version(StorageKind::Volume, name, None)
            }
            _ => Err(Error::not_found(node.namespace().describe())),
        }
    }

    /// The child `name` at the top of a version's tree.
    pub(super) fn archive_top_child(
        &self,
        kind: StorageKind,
        version: Option<&Version>,
        name: &OsStr,
        node_at: impl FnOnce(Archive<'_>, PathBuf) -> Node,
    ) -> Result<Node> {
        let version = version
            .filter(|v| v.has_files)
            .ok_or_else(|| not_in_archive(name))?;
        let archive = Archive::of(kind, version);
        let path = PathBuf::from(name);
        let Some(path) = self.archive_name(archive, &path)? else {
            return Err(not_in_archive(name));
        };
        Ok(node_at(archive, path))
    }

    /// Lists the top of a version's tree, if it has files.
    pub(super) fn archive_top_children(
        &self,
        kind: StorageKind,
        version: Option<Version>,
        node_at: impl Fn(Archive<'_>, PathBuf) -> Node,
        attr_ttl: Option<Duration>,
        out: &mut Vec<DirEntry>,
    ) -> Result<()> {
        if let Some(version) = version.filter(|v| v.has_files) {
            let archive = Archive::of(kind, &version);
            let node_at = |p| node_at(archive, p);
            self.archive_children(archive, Path::new(""), node_at, attr_ttl, out)?;
        }
        Ok(())
    }

    /// The entries of `<kind>/<name>@/`: each version by the first 8 hex characters of its id, newest first.
    fn version_entries(
        &self,
        kind: StorageKind,
        name: &str,
        out: &mut Vec<DirEntry>,
    ) -> Result<()> {
        let storage = self.meta.storage(kind, name)?;
        let versions = self.meta.storage_versions(kind, &storage.id, false)?;
        for version in versions.iter() {
            let short = short_id(&version.id);
            let shared = versions.iter().filter(|v| short_id(&v.id) == short).count() > 1;
            let entry_name = if shared { version.id.as_str() } else { short };
            let child = Node::Storage(StorageNode::Root {
                kind,
                name: name.to_string(),
                pin: Some(version.id.clone()),
            });
            out.push(self.entry(&child, FileKind::Directory, entry_name));
        }
        Ok(())
    }

    /// The extended attributes of a storage root: the storage's id, and the id and size of the version shown.
    pub(super) fn root_xattrs(
        &self,
        kind: StorageKind,
        name: &str,
        pin: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>> {
        let storage = self.meta.storage(kind, name)?;
        let mut attrs = vec![("user.vm0.id", storage.id.clone())];
        if let Some(version) = self.version(kind, name, pin)? {
            attrs.push(("user.vm0.version", version.id));
            attrs.push(("user.vm0.size", version.size.to_string()));
            if pin.is_some() {
                attrs.push(("user.vm0.message", version.message.unwrap_or_default()));
            }
        }
        Ok(attrs)
    }
}

/// The name `<name>@latest` gives the head.
const LATEST: &str = "latest";

/// How a version is named in a listing and in messages: the first 8 hex characters of its id.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl StorageNode {
    /// Makes sure the version this directory is in is on disk (downloading it, where waiting is allowed), so that
    /// opening one of its directories fetches it even when its listing is deferred (see `listing`), as
    /// `vm0fs prefetch` relies on.
    pub(in crate::fs) fn fetch_version(&self, fs: &Vm0Fs) -> Result<()> {
        match self {
            StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                ..
            } => fs
                .tree(Archive::new(*kind, storage_id, version_id))
                .map(drop),
            StorageNode::Root { kind, name, pin } => {
                match fs
                    .version(*kind, name, pin.as_deref())?
                    .filter(|v| v.has_files)
                {
                    Some(version) => fs.tree(Archive::of(*kind, &version)).map(drop),
                    None => Ok(()),
                }
            }
            StorageNode::Dir(_) | StorageNode::Versions { .. } => Ok(()),
        }
    }
}

impl Namespace for StorageNode {
    fn child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        match self {
            StorageNode::Dir(kind) => {
                let text = text_name(self, name)?;
                fs.storage_root(*kind, text)
            }
            StorageNode::Versions {
                kind,
                name: storage_name,
            } => {
                let text = text_name(self, name)?;
                let storage = fs.meta.storage(*kind, storage_name)?;
                Ok(Node::Storage(StorageNode::Root {
                    kind: *kind,
                    name: storage_name.clone(),
                    pin: Some(fs.resolve_prefix(*kind, &storage, text)?),
                }))
            }
            StorageNode::Root {
                kind,
                name: storage_name,
                pin,
            } => {
                let version = fs.version(*kind, storage_name, pin.as_deref())?;
                fs.archive_top_child(*kind, version.as_ref(), name, StorageNode::entry_at)
            }
            StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let archive = Archive::new(*kind, storage_id, version_id);
                let path = path.join(name);
                let Some(path) = fs.archive_name(archive, &path)? else {
                    return Err(missing(self, name));
                };
                Ok(StorageNode::entry_at(archive, path))
            }
        }
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        let fixed = fs.mounted_at;
        match self {
            StorageNode::Dir(_) => {
                Ok(fs.dir_attr(ino, fixed, fs.config.metadata_ttl.min(FIXED_TTL)))
            }
            StorageNode::Versions { kind, name } => {
                let storage = fs.meta.storage(*kind, name)?;
                let mtime = time_of(&storage.updated_at, fixed);
                Ok(fs.dir_attr(ino, mtime, fs.config.metadata_ttl))
            }
            StorageNode::Root { kind, name, pin } => {
                let (mtime, ttl, size) = match pin {
                    Some(_) => match fs.version(*kind, name, pin.as_deref())? {
                        Some(v) => (time_of(&v.created_at, fixed), FIXED_TTL, v.size),
                        None => (fixed, FIXED_TTL, 0),
                    },
                    None => {
                        let storage = fs.meta.storage(*kind, name)?;
                        let mtime = time_of(&storage.updated_at, fixed);
                        (mtime, fs.config.metadata_ttl, storage.size)
                    }
                };
                Ok(fs.make_attr(ino, FileKind::Directory, size, 0o555, mtime, ttl))
            }
            StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let archive = Archive::new(*kind, storage_id, version_id);
                fs.archive_attr(ino, archive, path, FIXED_TTL)
            }
        }
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        match self {
            StorageNode::Dir(kind) => {
                let storages = fs.meta.storages(*kind)?;
                let what = kind.title();
                for name in unique_safe_names(what, storages.iter().map(|s| s.name.as_str())) {
                    let child = match kind {
                        StorageKind::Volume => Node::Volume(VolumeNode::Root {
                            name: name.to_string(),
                        }),
                        StorageKind::Artifact => Node::Storage(StorageNode::Root {
                            kind: *kind,
                            name: name.to_string(),
                            pin: None,
                        }),
                    };
                    out.push(fs.entry(&child, FileKind::Directory, name));
                }
                Ok(())
            }
            StorageNode::Versions { kind, name } => fs.version_entries(*kind, name, out),
            StorageNode::Root { kind, name, pin } => {
                let version = fs.version(*kind, name, pin.as_deref())?;
                // As `archive_attr` dates them: the top of a version for the metadata TTL, deeper for good.
                let ttl = fs.config.metadata_ttl.min(FIXED_TTL);
                fs.archive_top_children(*kind, version, StorageNode::entry_at, Some(ttl), out)
            }
            StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let archive = Archive::new(*kind, storage_id, version_id);
                let node_at = |p| StorageNode::entry_at(archive, p);
                fs.archive_children(archive, path, node_at, Some(FIXED_TTL), out)
            }
        }
    }

    fn open(&self, fs: &Vm0Fs) -> Result<Opened> {
        let StorageNode::Entry {
            kind,
            storage_id,
            version_id,
            path,
        } = self
        else {
            return Err(is_a_directory(self));
        };
        let archive = Archive::new(*kind, storage_id, version_id);
        // A version never changes: its pages stay cached across opens.
        fs.archive_open(archive, path, || self.describe(), true)
    }

    fn parent(&self) -> Node {
        Node::Storage(match self {
            StorageNode::Dir(_) => return Node::Root,
            StorageNode::Root { kind, .. } | StorageNode::Versions { kind, .. } => {
                StorageNode::Dir(*kind)
            }
            StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                path,
            } => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => StorageNode::Entry {
                    kind: *kind,
                    storage_id: storage_id.clone(),
                    version_id: version_id.clone(),
                    path: parent.to_path_buf(),
                },
                _ => StorageNode::Dir(*kind),
            },
        })
    }

    fn describe(&self) -> String {
        match self {
            StorageNode::Dir(kind) => kind.plural().into(),
            StorageNode::Versions { kind, name } => format!("{}/{name}@", kind.plural()),
            StorageNode::Root {
                kind,
                name,
                pin: None,
            } => format!("{}/{name}", kind.plural()),
            StorageNode::Root {
                kind,
                name,
                pin: Some(v),
            } => format!("{}/{name}@{v}", kind.plural()),
            StorageNode::Entry {
                kind,
                version_id,
                path,
                ..
            } => format!(
                "{}/…@{}/{}",
                kind.plural(),
                short_id(version_id),
                path.to_string_lossy()
            ),
        }
    }

    fn link_target(&self, fs: &Vm0Fs) -> Result<Vec<u8>> {
        match self {
            StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let archive = Archive::new(*kind, storage_id, version_id);
                fs.archive_link(archive, path)
            }
            _ => Err(Error::new(
                libc::EINVAL,
                format!("{}: not a symbolic link", self.describe()),
            )),
        }
    }

    fn xattrs(&self, fs: &Vm0Fs) -> Result<Vec<(&'static str, String)>> {
        match self {
            StorageNode::Root { kind, name, pin } => fs.root_xattrs(*kind, name, pin.as_deref()),
            _ => Ok(Vec::new()),
        }
    }

    /// `mkdir volumes/<name>` creates a volume (`POST /v1/volumes`), empty until something is published in it. A
    /// server without that route (404, the platform from 2026-01-10) creates it at a prepare of the push flow
    /// with no files (CONTRACT.md 7.2), which commits nothing.
    fn mkdir(&self, fs: &Vm0Fs, name: &OsStr, _mode: u32) -> Result<Node> {
        if *self != StorageNode::Dir(StorageKind::Volume) {
            return Err(read_only_storage(self));
        }
        let text = text_name(self, name)?;
        if !valid_volume_name(text) {
            return Err(Error::new(
                libc::EINVAL,
                format!(
                    "volumes/{text}: not a volume name: use 1 to 100 lowercase letters, digits and hyphens, \
                     starting and ending with a letter or digit"
                ),
            ));
        }
        let api = fs.meta.api();
        let created = match api.create_storage(StorageKind::Volume, text) {
            Err(e) if e.status == Some(404) => api
                .prepare_push(&PushPrepareRequest {
                    storage_name: text.to_string(),
                    storage_type: StorageKind::Volume.push_type().into(),
                    files: Vec::new(),
                    force: None,
                })
                .map(|_| "through the push flow (the server has no POST /v1/volumes)".to_string()),
            other => other.map(|s| s.id),
        };
        let created = created.map_err(|e| {
            Error::new(
                e.errno(),
                format!("volumes/{text}: the volume was not created: {e}"),
            )
        })?;
        tracing::info!("volumes/{text}: created volume {created}");
        fs.meta.storages_changed(StorageKind::Volume);
        Ok(Node::Volume(VolumeNode::Root {
            name: text.to_string(),
        }))
    }

    /// Removing a volume is not done through the filesystem: one `rmdir` too many would delete every version.
    fn rmdir(&self, _fs: &Vm0Fs, name: &OsStr) -> Result<()> {
        if *self != StorageNode::Dir(StorageKind::Volume) {
            return Err(read_only_storage(self));
        }
        Err(Error::new(
            libc::EPERM,
            format!(
                "volumes/{}: a volume is not removed through the filesystem; delete it with the API \
                 (DELETE /v1/volumes/<id>)",
                name.to_string_lossy()
            ),
        ))
    }

    fn unlink(&self, _fs: &Vm0Fs, _name: &OsStr) -> Result<()> {
        Err(read_only_storage(self))
    }

    fn create(
        &self,
        _fs: &Vm0Fs,
        _name: &OsStr,
        _mode: u32,
    ) -> Result<(Node, crate::fs::handles::Handle)> {
        Err(read_only_storage(self))
    }

    fn rename(
        &self,
        _fs: &Vm0Fs,
        _name: &OsStr,
        _to: &Node,
        _to_name: &OsStr,
        _replace: bool,
    ) -> Result<()> {
        Err(read_only_storage(self))
    }

    fn truncate(&self, _fs: &Vm0Fs, _size: u64) -> Result<()> {
        Err(read_only_storage(self))
    }
}

/// A volume name the API accepts (CONTRACT.md 7.1).
fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 100
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// The refusal of a change to a read-only storage, saying why it is read-only.
fn read_only_storage(node: &StorageNode) -> Error {
    let why = match node {
        StorageNode::Dir(_) => "only `mkdir volumes/<name>` changes this directory",
        StorageNode::Root { pin: Some(_), .. } | StorageNode::Entry { .. }
            if matches!(
                node,
                StorageNode::Root {
                    kind: StorageKind::Volume,
                    ..
                } | StorageNode::Entry {
                    kind: StorageKind::Volume,
                    ..
                }
            ) =>
        {
            "a pinned version (<name>@<version>) is immutable; write in volumes/<name>/ instead"
        }
        _ => "artifacts are the outputs of runs and are read-only",
    };
    Error::new(libc::EROFS, format!("{}: {why}", node.describe()))
}
