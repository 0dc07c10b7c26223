//! The storage versions behind `volumes/` and `artifacts/`, and the entries of their extracted trees, shared by
//! the read-only storage namespace and the head view of a volume.
//!
//! Inside an archive that is still downloading, a lookup, `getattr`, `open` or `readlink` of a path is answered
//! as soon as that entry is extracted (`ArchiveCache::entry`, never keeping the provisional path it gives), while
//! a listing, and a name the archive turns out not to hold, wait for the whole archive.
//!
//! A hard link of an archive is one cached file under several names (the extractor makes it so), and one inode
//! here: its nodes go by the first of its names in path order, found by one walk of the version's tree the first
//! time a file with several names is met (`first_names`); a version without one is never walked.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{FIXED_TTL, MIN_VERSION_PREFIX, MOVING_TTL, kind_of};
use crate::api::models::{Storage, StorageKind};
use crate::cache::{ArchiveInfo, DownloadSource, version_source};
use crate::fs::error::{Error, Result};
use crate::fs::handles::Handle;
use crate::fs::inodes::Node;
use crate::fs::meta::Meta;
use crate::fs::waiting::may_wait;
use crate::fs::{Attr, DirEntry, FileKind, Opened, Vm0Fs};

/// How many times an entry served early is asked for when its path vanished (its download ended meanwhile).
const EARLY_TRIES: u32 = 3;

/// A storage version whose files are (or will be) in the cache.
pub(in crate::fs) struct Version {
    pub(in crate::fs) storage: Storage,
    pub(in crate::fs) id: String,
    pub(super) created_at: String,
    pub(in crate::fs) has_files: bool,
    /// Bytes of file content (the API's version `size`).
    pub(super) size: u64,
    /// What its author said of it, when the versions listing has it.
    pub(super) message: Option<String>,
}

/// One version's extracted tree, as the nodes inside it name it.
#[derive(Clone, Copy)]
pub(super) struct Archive<'a> {
    pub(super) kind: StorageKind,
    pub(super) storage_id: &'a str,
    pub(super) version_id: &'a str,
}

impl<'a> Archive<'a> {
    pub(super) fn new(kind: StorageKind, storage_id: &'a str, version_id: &'a str) -> Self {
        Archive {
            kind,
            storage_id,
            version_id,
        }
    }

    pub(super) fn of(kind: StorageKind, version: &'a Version) -> Self {
        Archive::new(kind, &version.storage.id, &version.id)
    }
}

/// The version a storage root shows: its head, or the pinned one. `None` when there are no files to show.
pub(in crate::fs) fn version_of(
    meta: &Meta,
    kind: StorageKind,
    name: &str,
    pin: Option<&str>,
) -> Result<Option<Version>> {
    let storage = meta.storage(kind, name)?;
    let Some(id) = pin
        .map(str::to_string)
        .or_else(|| storage.current_version_id.clone())
    else {
        return Ok(None);
    };
    let listed = meta.storage_versions(kind, &storage.id, false)?;
    let found = listed.iter().find(|v| v.id == id).cloned();
    let (created_at, has_files, size, message) = match found {
        Some(v) => (v.created_at, v.file_count > 0, v.size, v.message),
        // The head moved after the versions were listed: trust the storage object.
        None if pin.is_none() => (
            storage.updated_at.clone(),
            storage.file_count > 0,
            storage.size,
            None,
        ),
        None => return Err(Error::not_found(format!("{}/{name}@{id}", kind.plural()))),
    };
    Ok(Some(Version {
        storage,
        id,
        created_at,
        has_files,
        size,
        message,
    }))
}

impl Vm0Fs {
    /// The version a storage root shows: its head, or the pinned one. `None` when there are no files to show.
    pub(in crate::fs) fn version(
        &self,
        kind: StorageKind,
        name: &str,
        pin: Option<&str>,
    ) -> Result<Option<Version>> {
        version_of(&self.meta, kind, name, pin)
    }

    /// The full version id that a prefix of at least 8 hex characters names, or `ENOENT`.
    pub(super) fn resolve_prefix(
        &self,
        kind: StorageKind,
        storage: &Storage,
        prefix: &str,
    ) -> Result<String> {
        let prefix = prefix.to_ascii_lowercase();
        let what = format!("{}/{}@{prefix}", kind.plural(), storage.name);
        if prefix.len() < MIN_VERSION_PREFIX || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::not_found(format!(
                "{what} (a version is named by at least {MIN_VERSION_PREFIX} hex characters)"
            )));
        }
        for refresh in [false, true] {
            let versions = self.meta.storage_versions(kind, &storage.id, refresh)?;
            let matches: Vec<_> = versions
                .iter()
                .filter(|v| v.id.starts_with(&prefix))
                .collect();
            match matches.as_slice() {
                [one] => return Ok(one.id.clone()),
                [] => continue,
                _ => {
                    return Err(Error::not_found(format!(
                        "{what}: the prefix names {} versions; use more characters",
                        matches.len()
                    )));
                }
            }
        }
        Err(Error::not_found(what))
    }

    /// The name that a node of the entry `path` goes by, or `None` when the archive does not hold it (`ENOENT`
    /// only after the whole archive is known not to). That is `path` itself, but for a file with several names
    /// (a hard link of the archive, one cached file): the first of its names in path order, so that every name
    /// of it is one inode. An entry served while the archive still downloads goes by its own name.
    pub(super) fn archive_name(
        &self,
        archive: Archive<'_>,
        path: &Path,
    ) -> Result<Option<PathBuf>> {
        let (found, early) = self.on_archive_entry(archive, path, fs::symlink_metadata)?;
        let Ok(meta) = found else {
            return Ok(None);
        };
        if early || !meta.is_file() || meta.nlink() < 2 {
            return Ok(Some(path.to_path_buf()));
        }
        Ok(Some(self.first_name(archive, path, meta.ino())?))
    }

    /// The first name in path order of the file with inode number `ino` in the cached tree of `archive`, found
    /// by one walk of the tree per version (kept while the mount runs); `path` when the walk misses it.
    fn first_name(&self, archive: Archive<'_>, path: &Path, ino: u64) -> Result<PathBuf> {
        let known = self
            .hard_links
            .lock()
            .ok()
            .and_then(|held| held.get(archive.version_id).cloned());
        let names = match known {
            Some(names) => names,
            None => {
                let names = Arc::new(first_names(&self.tree(archive)?)?);
                if let Ok(mut held) = self.hard_links.lock() {
                    held.insert(archive.version_id.to_string(), names.clone());
                }
                names
            }
        };
        Ok(names
            .get(&ino)
            .cloned()
            .unwrap_or_else(|| path.to_path_buf()))
    }

    /// The attributes of an entry. A top-level entry is reached through `<name>/`, whose head may move, and so
    /// is every entry of a head view (`deep_ttl`); deeper ones of a version never change. One served early is
    /// asked again soon: a directory's time is final only once all is extracted.
    pub(super) fn archive_attr(
        &self,
        ino: u64,
        archive: Archive<'_>,
        path: &Path,
        deep_ttl: Duration,
    ) -> Result<Attr> {
        let (meta, early) = self.on_archive_entry(archive, path, fs::symlink_metadata)?;
        let meta = meta?;
        let ttl = if early {
            MOVING_TTL
        } else if path.components().count() == 1 {
            self.config.metadata_ttl.min(FIXED_TTL)
        } else {
            deep_ttl
        };
        Ok(self.disk_attr(ino, &meta, ttl))
    }

    /// Opens an entry's cached file; `keep_cache` lets the kernel keep its pages across opens.
    pub(super) fn archive_open(
        &self,
        archive: Archive<'_>,
        path: &Path,
        what: impl FnOnce() -> String,
        keep_cache: bool,
    ) -> Result<Opened> {
        let open = |p: PathBuf| {
            File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
        };
        let (file, _) = self.on_archive_entry(archive, path, open)?;
        let file = file?;
        if file.metadata()?.is_dir() {
            return Err(Error::new(
                libc::EISDIR,
                format!("{}: is a directory", what()),
            ));
        }
        let fh = self.handles.insert(Handle::Disk(Arc::new(file)));
        Ok(Opened {
            fh,
            direct_io: false,
            keep_cache,
            no_flush: false,
        })
    }

    pub(super) fn archive_link(&self, archive: Archive<'_>, path: &Path) -> Result<Vec<u8>> {
        let (target, _) = self.on_archive_entry(archive, path, fs::read_link)?;
        Ok(target?.into_os_string().into_encoded_bytes())
    }

    /// The names in the directory `dir` of the archive (the root when empty), sorted, as the nodes `node_at`
    /// makes of their paths; waits for the whole archive. With `attr_ttl`, each entry carries its attributes,
    /// read here relative to the open directory (one `fstatat` each), which `readdirplus` then answers with.
    pub(super) fn archive_children(
        &self,
        archive: Archive<'_>,
        dir: &Path,
        node_at: impl Fn(PathBuf) -> Node,
        attr_ttl: Option<Duration>,
        out: &mut Vec<DirEntry>,
    ) -> Result<()> {
        let root = self.tree(archive)?;
        let mut names: Vec<(OsString, FileKind, Option<fs::Metadata>)> = Vec::new();
        for entry in fs::read_dir(root.join(dir))? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            // A file's attributes are read even without `attr_ttl`: its link count says whether it goes by
            // another name (one `fstatat`, as a listing with attributes pays for every entry).
            let meta = match attr_ttl {
                Some(_) => Some(entry.metadata()?),
                None if file_type.is_file() => Some(entry.metadata()?),
                None => None,
            };
            names.push((entry.file_name(), kind_of(&file_type), meta));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, file_kind, meta) in names {
            let path = dir.join(&name);
            let child = match &meta {
                Some(m) if m.is_file() && m.nlink() > 1 => {
                    node_at(self.first_name(archive, &path, m.ino())?)
                }
                _ => node_at(path),
            };
            let mut entry = self.entry(&child, file_kind, name);
            if let (Some(meta), Some(ttl)) = (meta, attr_ttl) {
                entry.attr = Some(self.disk_attr(entry.ino, &meta, ttl));
            }
            out.push(entry);
        }
        Ok(())
    }

    /// The root of the extracted tree of a version, downloading it on first use (and waiting for all of it).
    pub(super) fn tree(&self, archive: Archive<'_>) -> Result<PathBuf> {
        if let Some(root) = self.cache.lookup(archive.version_id) {
            return Ok(root);
        }
        may_wait()?;
        let info = self.archive_info(archive);
        let source = self.archive_source(archive);
        Ok(self.cache.tree(archive.version_id, &info, source)?)
    }

    /// Runs `op` on the entry `rel` of a version's tree as soon as that entry can be read
    /// (`ArchiveCache::entry`): while the version downloads, that is on its path in the staging tree, which
    /// vanishes when the download ends (renamed into place, or deleted after a failure); a `NotFound` there asks
    /// the cache again. The path is never kept. Returns `op`'s result, and whether the entry was served early.
    fn on_archive_entry<T>(
        &self,
        archive: Archive<'_>,
        rel: &Path,
        op: impl Fn(PathBuf) -> io::Result<T>,
    ) -> Result<(io::Result<T>, bool)> {
        let version_id = archive.version_id;
        if let Some(root) = self.cache.lookup(version_id) {
            return Ok((op(root.join(rel)), false));
        }
        may_wait()?;
        let info = self.archive_info(archive);
        let source = self.archive_source(archive);
        let mut tries = 0;
        loop {
            let found = self.cache.entry(version_id, &info, rel, source.clone())?;
            let result = op(found.path);
            tries += 1;
            let vanished = matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound);
            if !(found.early && vanished && tries < EARLY_TRIES) {
                return Ok((result, found.early));
            }
        }
    }

    /// How the cache downloads a version, when it has to.
    fn archive_source(&self, archive: Archive<'_>) -> Arc<DownloadSource> {
        let api = self.meta.api().clone();
        version_source(api, archive.kind, archive.storage_id, archive.version_id)
    }

    /// How a download is shown in `vm0fs status` and the log, from the listings the mount already holds.
    fn archive_info(&self, archive: Archive<'_>) -> ArchiveInfo {
        let Archive {
            kind,
            storage_id,
            version_id,
        } = archive;
        let storage = self
            .meta
            .storages(kind)
            .ok()
            .and_then(|all| all.iter().find(|s| s.id == storage_id).cloned());
        let size = match &storage {
            Some(s) if s.current_version_id.as_deref() == Some(version_id) => Some(s.size),
            _ => self
                .meta
                .storage_versions(kind, storage_id, false)
                .ok()
                .and_then(|all| all.iter().find(|v| v.id == version_id).map(|v| v.size)),
        };
        let name = storage.as_ref().map_or(storage_id, |s| s.name.as_str());
        let short = version_id.get(..MIN_VERSION_PREFIX).unwrap_or(version_id);
        ArchiveInfo {
            label: format!("{}/{name}@{short}", kind.plural()),
            size,
        }
    }
}

/// The files of an extracted tree that have more than one name: inode number -> the first name in path order.
fn first_names(root: &Path) -> io::Result<HashMap<u64, PathBuf>> {
    let mut first: HashMap<u64, PathBuf> = HashMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(root.join(&dir))? {
            let entry = entry?;
            let path = dir.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() && meta.nlink() > 1 {
                let name = first.entry(meta.ino()).or_insert_with(|| path.clone());
                if path < *name {
                    *name = path;
                }
            }
        }
    }
    Ok(first)
}

/// The first names of the hard-linked files of each version whose tree was walked (`first_names`), by version id.
pub(in crate::fs) type HardLinks = std::sync::Mutex<HashMap<String, Arc<HashMap<u64, PathBuf>>>>;

/// The `ENOENT` of a name an archive does not hold.
pub(super) fn not_in_archive(name: &OsStr) -> Error {
    Error::not_found(name.to_string_lossy())
}
