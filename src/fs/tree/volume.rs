//! The head view of a volume, `volumes/<name>/...`: writable, through the volume's stage (`crate::stage`).
//!
//! Its entries are named by the storage id and the path, not by a version, so a publish (here or elsewhere) does
//! not renumber them: an inode open for writing keeps its number. Every name and attribute comes from the stage's
//! tree (the base version with the staged changes applied), so reads see one's own writes at once; the bytes come
//! from the staged file, or, for a file never written, from the cached archive, opened as it is (passthrough where
//! the kernel offers it). Attributes are believed for a second at most, since the tree changes under them.
//!
//! Until a volume has changes, it is read exactly as a read-only version is (the cached archive, entries served
//! while the archive still downloads, the API asked again after `--metadata-ttl`), with write bits in the modes;
//! its stage is made at the first change, and from then on the stage's tree answers.
//!
//! What a volume cannot hold is refused here, at once, with the errno the caller can act on: a symlink that
//! `crate::symlinks` refuses (`EPERM`: absolute, leaving the volume, or climbing through a symlink), a rename to another volume (`EXDEV`, so `mv` copies instead). Hard links,
//! devices, FIFOs, sockets and foreign xattrs are refused by `Vm0Fs` for every volume node.
//!
//! A hard link (`link(2)` inside one volume; `EXDEV` from another) is a second name of one staged file, and one
//! inode: a file with several names is named in the inode table by its oldest name, which the stage keeps through
//! renames; when that name goes (an unlink, a rename over it), the inode moves to the oldest name left, so the
//! number the kernel holds for the other names stays theirs. Pinned versions
//! (`<name>@<version>`) stay read-only in `storage.rs`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::archive::{Archive, Version};
use super::{FIXED_TTL, MOVING_TTL, Namespace, StorageNode, is_a_directory, missing, time_of};
use crate::api::models::StorageKind;
use crate::fs::error::{Error, Result};
use crate::fs::handles::{Handle, StagedHandle};
use crate::fs::inodes::Node;
use crate::fs::waiting::may_wait;
use crate::fs::{Attr, DirEntry, FileKind, Opened, Vm0Fs};
use crate::stage::{EntryAttr, EntryKind, Stage, VolumeStage};
use crate::symlinks::symlink_kept;

const KIND: StorageKind = StorageKind::Volume;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VolumeNode {
    /// `volumes/<name>`: the head of a volume.
    Root { name: String },
    /// A file or directory of the head; `path` is relative to the volume's root and not empty.
    Entry { storage_id: Arc<str>, path: PathBuf },
}

/// A path of the tree as the stage's key: the stage names files by UTF-8 paths (a version's paths are text).
fn text(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        Error::new(
            libc::EINVAL,
            format!("{}: a volume's file names must be UTF-8", path.display()),
        )
    })
}

impl Vm0Fs {
    /// The attributes of a volume file through a handle open for writing, when its name is gone (`fstat` after
    /// `unlink`): a link count of 0, as POSIX shows a file that lives on only through open descriptors.
    pub(in crate::fs) fn unlinked_attr(&self, ino: u64, handle: &StagedHandle) -> Result<Attr> {
        let attr = handle.writer.attr().map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("{}: an unlinked open file: {e}", handle.volume.label()),
            )
        })?;
        let mut shown = self.volume_attr(ino, &attr);
        shown.nlink = 0;
        shown.ttl = std::time::Duration::ZERO;
        Ok(shown)
    }

    fn volume_attr(&self, ino: u64, attr: &EntryAttr) -> Attr {
        let ttl = self.config.metadata_ttl.min(MOVING_TTL);
        let known = |t: SystemTime| {
            if t == SystemTime::UNIX_EPOCH {
                self.mounted_at
            } else {
                t
            }
        };
        let mtime = known(attr.mtime);
        let kind = match attr.kind {
            EntryKind::File => FileKind::File,
            EntryKind::Dir => FileKind::Directory,
            EntryKind::Symlink(_) => FileKind::Symlink,
        };
        let mut made = self.make_attr(
            ino,
            kind,
            attr.size,
            (attr.mode & 0o7777) as u16,
            mtime,
            ttl,
        );
        made.nlink = attr.nlink;
        made.atime = attr.atime.map_or(mtime, known);
        made.ctime = attr.ctime.map_or(mtime, known);
        made
    }
}

impl VolumeNode {
    /// The stage of this volume if it has changes (read through it), else `None` (read the archive). Memory only
    /// (the API's listing of the volume, for the root, waits where `meta` fetches): a stage's lock is never held
    /// across a network call, so this is answered on the thread that read the request (`fs::waiting`), unless a
    /// publish, adoption, rebase or discard holds the lock over the whole tree now (`busy`).
    fn staged(&self, fs: &Vm0Fs) -> Result<Option<(Arc<VolumeStage>, PathBuf)>> {
        let stage = fs.volumes.stage()?;
        let found = match self {
            VolumeNode::Root { name } => {
                let storage = fs.meta.storage(KIND, name)?;
                wait_if_busy(stage, &storage.id)?;
                let volume = stage.changed(&storage.id);
                if let Some(v) = &volume {
                    v.head_listed(storage.current_version_id.as_deref());
                }
                volume.map(|v| (v, PathBuf::new()))
            }
            VolumeNode::Entry { storage_id, path } => {
                wait_if_busy(stage, storage_id)?;
                stage.changed(storage_id).map(|v| (v, path.clone()))
            }
        };
        Ok(found)
    }

    fn entry_at(archive: Archive<'_>, path: PathBuf) -> Node {
        Node::Volume(VolumeNode::Entry {
            storage_id: archive.storage_id.into(),
            path,
        })
    }

    /// The version the head of the volume `storage_id` shows now, or `ENOENT` when it has no files (or the
    /// volume is gone).
    fn archive_head(&self, fs: &Vm0Fs, storage_id: &str) -> Result<Version> {
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

    fn archive_child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        match self {
            VolumeNode::Root { name: volume } => {
                let version = fs.version(KIND, volume, None)?;
                fs.archive_top_child(KIND, version.as_ref(), name, VolumeNode::entry_at)
            }
            VolumeNode::Entry { storage_id, path } => {
                let version = self.archive_head(fs, storage_id)?;
                let archive = Archive::of(KIND, &version);
                let path = path.join(name);
                let Some(path) = fs.archive_name(archive, &path)? else {
                    return Err(missing(self, name));
                };
                Ok(VolumeNode::entry_at(archive, path))
            }
        }
    }

    /// The attributes of the archive's entry, with the owner's write bit: the head can be written.
    fn archive_attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        let ttl = fs.config.metadata_ttl;
        let mut attr = match self {
            VolumeNode::Root { name } => {
                // Sized by the head's bytes of content, as the API gives them: `ls -l volumes` downloads nothing.
                let storage = fs.meta.storage(KIND, name)?;
                let mtime = time_of(&storage.updated_at, fs.mounted_at);
                fs.make_attr(ino, FileKind::Directory, storage.size, 0o555, mtime, ttl)
            }
            VolumeNode::Entry { storage_id, path } => {
                let version = self.archive_head(fs, storage_id)?;
                let archive = Archive::of(KIND, &version);
                fs.archive_attr(ino, archive, path, ttl.min(FIXED_TTL))?
            }
        };
        if attr.kind != FileKind::Symlink {
            attr.perm |= 0o200;
        }
        Ok(attr)
    }

    fn archive_children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        match self {
            VolumeNode::Root { name } => {
                let version = fs.version(KIND, name, None)?;
                fs.archive_top_children(KIND, version, VolumeNode::entry_at, None, out)
            }
            VolumeNode::Entry { storage_id, path } => {
                let version = self.archive_head(fs, storage_id)?;
                let archive = Archive::of(KIND, &version);
                fs.archive_children(
                    archive,
                    path,
                    |p| VolumeNode::entry_at(archive, p),
                    None,
                    out,
                )
            }
        }
    }

    /// The volume's stage and this node's path in it (`""` for the root). A stage already open is found in
    /// memory, so the change runs on the thread that read the request; opening one may download its base
    /// version, so that goes to a worker (`may_wait`) before anything is done.
    fn target(&self, fs: &Vm0Fs) -> Result<(Arc<VolumeStage>, PathBuf)> {
        match self {
            VolumeNode::Root { name } => {
                may_wait()?;
                Ok((fs.volumes.by_name(name)?, PathBuf::new()))
            }
            VolumeNode::Entry { storage_id, path } => {
                wait_if_busy(fs.volumes.stage()?, storage_id)?;
                if let Some(volume) = fs.volumes.loaded(storage_id)? {
                    return Ok((volume, path.clone()));
                }
                may_wait()?;
                Ok((fs.volumes.by_id(storage_id)?, path.clone()))
            }
        }
    }

    fn entry(volume: &VolumeStage, path: PathBuf) -> Node {
        Node::Volume(VolumeNode::Entry {
            storage_id: volume.storage_id().into(),
            path,
        })
    }

    /// The node of the staged entry at `path`, whose attributes are `attr`: a file with several names is one
    /// inode, named by its oldest name (`VolumeStage::names_of`), so that every name gives the kernel one number.
    fn entry_named(volume: &VolumeStage, path: PathBuf, attr: &EntryAttr) -> Node {
        if attr.kind != EntryKind::File || attr.nlink < 2 {
            return VolumeNode::entry(volume, path);
        }
        let oldest = text(&path)
            .ok()
            .and_then(|p| volume.names_of(p).into_iter().next());
        VolumeNode::entry(volume, oldest.map_or(path, PathBuf::from))
    }

    /// Where the inode named by `path` goes when `path` stops being a name (an unlink, or a rename over it):
    /// to the oldest name left of its file (`names`, taken before the change), else nowhere.
    fn survivor(volume: &VolumeStage, path: &Path, names: &[String]) -> Option<PathBuf> {
        match names {
            [oldest, next, ..] if Path::new(oldest) == path => {
                volume.names_of(next).into_iter().next().map(PathBuf::from)
            }
            _ => None,
        }
    }

    /// The names of the file at `path`, when it has more than one (else empty: nothing to keep). Read before the
    /// change and used after it: the kernel holds the file's inode lock across `link`, `unlink` and `rename` of
    /// any of its names (they are one inode here), so no other change of its names comes between.
    fn other_names(volume: &VolumeStage, path: &Path) -> Result<Vec<String>> {
        let path = text(path)?;
        Ok(match volume.lookup(path) {
            Some(attr) if attr.kind == EntryKind::File && attr.nlink > 1 => volume.names_of(path),
            _ => Vec::new(),
        })
    }

    /// The volume and the path of `name` in this directory.
    fn child_path(&self, fs: &Vm0Fs, name: &OsStr) -> Result<(Arc<VolumeStage>, PathBuf)> {
        let (volume, dir) = self.target(fs)?;
        Ok((volume, dir.join(name)))
    }

    fn opened(volume: Arc<VolumeStage>, writer: crate::stage::StagedWriter) -> Handle {
        Handle::Staged(Arc::new(StagedHandle { volume, writer }))
    }
}

impl Namespace for VolumeNode {
    fn child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        let Some((volume, dir)) = self.staged(fs)? else {
            return self.archive_child(fs, name);
        };
        let path = dir.join(name);
        match volume.lookup(text(&path)?) {
            Some(attr) => Ok(VolumeNode::entry_named(&volume, path, &attr)),
            None => Err(missing(self, name)),
        }
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        let Some((volume, path)) = self.staged(fs)? else {
            return self.archive_attr(fs, ino);
        };
        let attr = volume
            .lookup(text(&path)?)
            .ok_or_else(|| Error::not_found(self.describe()))?;
        let mut attr = fs.volume_attr(ino, &attr);
        if let VolumeNode::Root { name } = self {
            // Sized as when nothing is staged, by the head's bytes of content (`user.vm0.size`), also while the
            // volume keeps local-only items or unpublished changes: `ls -l volumes` reads the same either way.
            attr.size = fs.meta.storage(KIND, name)?.size;
        }
        Ok(attr)
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        let Some((volume, dir)) = self.staged(fs)? else {
            return self.archive_children(fs, out);
        };
        for (name, attr) in volume.list(text(&dir)?)? {
            let node = VolumeNode::entry_named(&volume, dir.join(&name), &attr);
            let kind = fs.volume_attr(0, &attr).kind;
            out.push(fs.entry(&node, kind, name));
        }
        Ok(())
    }

    fn open(&self, fs: &Vm0Fs) -> Result<Opened> {
        let VolumeNode::Entry { storage_id, path } = self else {
            return Err(is_a_directory(self));
        };
        let Some((volume, path)) = self.staged(fs)? else {
            let version = self.archive_head(fs, storage_id)?;
            let archive = Archive::of(KIND, &version);
            return fs.archive_open(archive, path, || self.describe(), false);
        };
        let file = std::fs::File::open(volume.read_path(text(&path)?)?).map_err(|e| {
            Error::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!("{}: {e}", self.describe()),
            )
        })?;
        Ok(Opened {
            fh: fs.handles.insert(Handle::Disk(Arc::new(file))),
            direct_io: false,
            keep_cache: false,
            no_flush: false,
        })
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
        let Some((volume, path)) = self.staged(fs)? else {
            return match self {
                VolumeNode::Entry { storage_id, path } => {
                    let version = self.archive_head(fs, storage_id)?;
                    fs.archive_link(Archive::of(KIND, &version), path)
                }
                VolumeNode::Root { .. } => Err(Error::new(
                    libc::EINVAL,
                    format!("{}: not a symbolic link", self.describe()),
                )),
            };
        };
        match volume.lookup(text(&path)?).map(|a| a.kind) {
            Some(EntryKind::Symlink(target)) => Ok(target.into_bytes()),
            _ => Err(Error::new(
                libc::EINVAL,
                format!("{}: not a symbolic link", self.describe()),
            )),
        }
    }

    fn xattrs(&self, fs: &Vm0Fs) -> Result<Vec<(&'static str, String)>> {
        match self {
            VolumeNode::Root { name } => {
                let mut attrs = fs.root_xattrs(KIND, name, None)?;
                // After a publish from here, the head is the version published, before the API listing says so.
                if let Some((volume, _)) = self.staged(fs)?
                    && let Some(head) = volume.head()
                {
                    for (n, value) in attrs.iter_mut() {
                        if *n == "user.vm0.version" {
                            *value = head.clone();
                        }
                    }
                }
                Ok(attrs)
            }
            VolumeNode::Entry { .. } => Ok(Vec::new()),
        }
    }

    fn open_write(&self, fs: &Vm0Fs) -> Result<Option<Handle>> {
        let (volume, path) = self.target(fs)?;
        let writer = volume.open_write(text(&path)?, false)?;
        Ok(Some(VolumeNode::opened(volume, writer)))
    }

    fn create(&self, fs: &Vm0Fs, name: &OsStr, mode: u32) -> Result<(Node, Handle)> {
        let (volume, path) = self.child_path(fs, name)?;
        let writer = volume.create(text(&path)?, mode)?;
        let node = VolumeNode::entry(&volume, path);
        Ok((node, VolumeNode::opened(volume, writer)))
    }

    fn truncate(&self, fs: &Vm0Fs, size: u64) -> Result<()> {
        let (volume, path) = self.target(fs)?;
        volume.truncate(text(&path)?, size)?;
        Ok(())
    }

    fn unlink(&self, fs: &Vm0Fs, name: &OsStr) -> Result<()> {
        let (volume, path) = self.child_path(fs, name)?;
        let names = VolumeNode::other_names(&volume, &path)?;
        volume.unlink(text(&path)?)?;
        let survivor = VolumeNode::survivor(&volume, &path, &names);
        fs.inodes
            .move_volume_paths(volume.storage_id(), &path, survivor.as_deref());
        Ok(())
    }

    fn rmdir(&self, fs: &Vm0Fs, name: &OsStr) -> Result<()> {
        let (volume, path) = self.child_path(fs, name)?;
        volume.rmdir(text(&path)?)?;
        fs.inodes
            .move_volume_paths(volume.storage_id(), &path, None);
        Ok(())
    }

    fn rename(
        &self,
        fs: &Vm0Fs,
        name: &OsStr,
        to: &Node,
        to_name: &OsStr,
        replace: bool,
    ) -> Result<()> {
        let (volume, from) = self.child_path(fs, name)?;
        let Node::Volume(to_dir) = to else {
            return Err(cross_volume(self, to));
        };
        let (to_volume, to_path) = to_dir.child_path(fs, to_name)?;
        if to_volume.storage_id() != volume.storage_id() {
            return Err(cross_volume(self, to));
        }
        let replaced_names = VolumeNode::other_names(&volume, &to_path)?;
        // Two names of one file: rename(2) leaves both as they are.
        let one_file = replaced_names.iter().any(|n| Path::new(n) == from);
        volume.rename(text(&from)?, text(&to_path)?, replace)?;
        if from != to_path && !one_file {
            let survivor = VolumeNode::survivor(&volume, &to_path, &replaced_names);
            fs.inodes
                .move_volume_paths(volume.storage_id(), &to_path, survivor.as_deref());
            fs.inodes
                .move_volume_paths(volume.storage_id(), &from, Some(&to_path));
        }
        Ok(())
    }

    fn link(&self, fs: &Vm0Fs, name: &OsStr, source: &Node) -> Result<Node> {
        let (volume, to) = self.child_path(fs, name)?;
        let from = match source {
            Node::Volume(VolumeNode::Entry { storage_id, path })
                if **storage_id == *volume.storage_id() =>
            {
                path
            }
            Node::Volume(VolumeNode::Root { name }) => {
                return Err(Error::new(
                    libc::EPERM,
                    format!("volumes/{name}: a directory cannot have a second name"),
                ));
            }
            other => {
                return Err(Error::new(
                    libc::EXDEV,
                    format!(
                        "{} -> {}/{}: a hard link cannot leave a volume (each volume publishes its own \
                         versions); copy the file instead",
                        other.namespace().describe(),
                        volume.label(),
                        to.display()
                    ),
                ));
            }
        };
        volume.link(text(from)?, text(&to)?)?;
        let attr = volume
            .lookup(text(&to)?)
            .ok_or_else(|| Error::not_found(format!("{}/{}", volume.label(), to.display())))?;
        Ok(VolumeNode::entry_named(&volume, to, &attr))
    }

    fn mkdir(&self, fs: &Vm0Fs, name: &OsStr, mode: u32) -> Result<Node> {
        let (volume, path) = self.child_path(fs, name)?;
        volume.mkdir(text(&path)?, mode)?;
        Ok(VolumeNode::entry(&volume, path))
    }

    fn symlink(&self, fs: &Vm0Fs, name: &OsStr, target: &Path) -> Result<Node> {
        let (volume, path) = self.child_path(fs, name)?;
        let target = text(target)?;
        let is_real_dir = |p: &Path| {
            text(p).is_ok_and(|p| volume.lookup(p).is_some_and(|a| a.kind == EntryKind::Dir))
        };
        if !symlink_kept(&path, target.as_bytes(), is_real_dir) {
            return Err(Error::new(
                libc::EPERM,
                format!(
                    "{}/{}: a symlink in a volume must point inside the volume (relative, not above its root, \
                     and climbing with `..` only out of real directories); {target:?} does not",
                    volume.label(),
                    path.display()
                ),
            ));
        }
        volume.symlink(text(&path)?, target)?;
        Ok(VolumeNode::entry(&volume, path))
    }

    fn chmod(&self, fs: &Vm0Fs, mode: u32) -> Result<()> {
        let (volume, path) = self.target(fs)?;
        if path.as_os_str().is_empty() {
            return Err(Error::new(
                libc::EPERM,
                format!("{}: the mode of a volume's root is fixed", volume.label()),
            ));
        }
        volume.chmod(text(&path)?, mode)?;
        Ok(())
    }

    fn set_times(
        &self,
        fs: &Vm0Fs,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<()> {
        let (volume, path) = self.target(fs)?;
        volume.set_times(text(&path)?, atime, mtime)?;
        Ok(())
    }

    fn holds_volume_content(&self) -> bool {
        true
    }
}

/// Gives the request to a worker (`may_wait`) while the stage of `storage_id` is held by a long step.
fn wait_if_busy(stage: &Stage, storage_id: &str) -> Result<()> {
    match stage.busy(storage_id) {
        true => may_wait(),
        false => Ok(()),
    }
}

fn cross_volume(from: &VolumeNode, to: &Node) -> Error {
    Error::new(
        libc::EXDEV,
        format!(
            "{} -> {}: a rename cannot leave a volume (each volume publishes its own versions); mv copies instead",
            from.describe(),
            to.namespace().describe()
        ),
    )
}
