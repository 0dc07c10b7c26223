//! The shape of the tree: which names each directory holds, what each node's attributes and content are.
//!
//! Everything here is decided from the node alone (`inodes::Node`) plus the API objects of `meta` and the
//! extracted archives of the cache, so any inode can be answered without knowing the path that led to it.
//! Inside an archive that is still downloading, a lookup, `getattr`, `open` or `readlink` of a path is answered
//! as soon as that entry is extracted (`ArchiveCache::entry`, never keeping the provisional path it gives), while
//! a listing, and a name the archive turns out not to hold, wait for the whole archive.
//!
//! Names that come from the API are checked before they become file names: a name that is empty, `.`/`..`,
//! longer than 255 bytes or holding `/` or NUL is skipped with a warning, and of two objects with one name the
//! first listed (the newest) is shown.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::control::{CONTROL_DIR, CONTROL_FILES};
use super::error::{Error, Result};
use super::handles::Handle;
use super::inodes::{AgentFile, ControlFile, Node, RunFile};
use super::render;
use super::waiting::may_wait;
use super::{Attr, DirEntry, FileKind, Opened, Vm0Fs};
use crate::api::models::{RunDetail, Storage, StorageKind};
use crate::cache::{ArchiveInfo, DownloadSource};

/// Attribute TTL of the fixed top of the tree and of what can no longer change.
const FIXED_TTL: Duration = Duration::from_secs(3600);
/// Attribute TTL of anything that may still move (a run that is not terminal, its files).
const MOVING_TTL: Duration = Duration::from_secs(1);
/// How many times an entry served early is asked for when its path vanished (its download ended meanwhile).
const EARLY_TRIES: u32 = 3;
/// The shortest accepted version prefix (CONTRACT.md 6.2).
const MIN_VERSION_PREFIX: usize = 8;

const ROOT_NAMES: [&str; 4] = ["agents", "artifacts", "runs", "volumes"];
const AGENT_FILES: [(&str, AgentFile); 2] = [
    ("agent.json", AgentFile::AgentJson),
    ("versions.json", AgentFile::VersionsJson),
];
const RUN_FILES: [(&str, RunFile); 8] = [
    ("status", RunFile::Status),
    ("run.json", RunFile::RunJson),
    ("prompt", RunFile::Prompt),
    ("logs", RunFile::Logs),
    ("metrics.json", RunFile::MetricsJson),
    ("output", RunFile::Output),
    ("artifact", RunFile::Artifact),
    ("ctl", RunFile::Ctl),
];

/// The file called `name` in a fixed directory listing such as `RUN_FILES`.
fn file_by_name<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The name of `file` in a fixed directory listing.
fn name_of_file<T: PartialEq>(table: &[(&'static str, T)], file: T) -> &'static str {
    table
        .iter()
        .find(|(_, f)| *f == file)
        .map_or("?", |(n, _)| n)
}

/// A storage version whose files are (or will be) in the cache.
pub(super) struct Version {
    pub(super) storage: Storage,
    pub(super) id: String,
    created_at: String,
    pub(super) has_files: bool,
    /// Bytes of file content (the API's version `size`).
    size: u64,
}

impl Vm0Fs {
    /// The node called `name` in `parent`, or `ENOENT`.
    pub(super) fn child(&self, parent: &Node, name: &OsStr) -> Result<Node> {
        let missing =
            || Error::not_found(format!("{}/{}", describe(parent), name.to_string_lossy()));
        if !is_safe_bytes(name.as_bytes()) {
            return Err(missing());
        }
        // Names from the API are text; names inside an archive are bytes and may be any (a Latin-1 file name).
        let in_archive = matches!(parent, Node::StorageRoot { .. } | Node::ArchiveEntry { .. });
        let name_str = match name.to_str() {
            Some(text) => text,
            None if in_archive => "",
            None => return Err(missing()),
        };
        let node = match parent {
            Node::Root => match name_str {
                "agents" => Node::AgentsDir,
                "runs" => Node::RunsDir,
                "volumes" => Node::StorageDir(StorageKind::Volume),
                "artifacts" => Node::StorageDir(StorageKind::Artifact),
                CONTROL_DIR => Node::ControlDir,
                _ => return Err(missing()),
            },
            Node::ControlDir => {
                Node::ControlFile(file_by_name(&CONTROL_FILES, name_str).ok_or_else(missing)?)
            }
            Node::AgentsDir => {
                self.meta.agent(name_str)?;
                Node::Agent {
                    name: name_str.to_string(),
                }
            }
            Node::Agent { name } => {
                let file = file_by_name(&AGENT_FILES, name_str).ok_or_else(missing)?;
                Node::AgentFile {
                    name: name.clone(),
                    file,
                }
            }
            Node::RunsDir if name_str == "new" => Node::RunsNew,
            Node::RunsNew => {
                self.meta.agent(name_str)?;
                Node::NewRun {
                    agent: name_str.to_string(),
                }
            }
            Node::RunsDir if name_str == "latest" => {
                self.meta.latest_run()?.ok_or_else(missing)?;
                Node::RunsLatest
            }
            Node::RunsDir => {
                if self.meta.listed_run(name_str).is_none() {
                    self.meta.run(name_str)?;
                }
                Node::Run {
                    id: name_str.to_string(),
                }
            }
            Node::Run { id } => {
                let file = file_by_name(&RUN_FILES, name_str).ok_or_else(missing)?;
                let run = self.meta.run(id)?;
                if !self.run_file_exists(&run, file)? {
                    return Err(missing());
                }
                Node::RunFile {
                    id: id.clone(),
                    file,
                }
            }
            Node::StorageDir(kind) => self.storage_root(*kind, name_str)?,
            Node::StorageRoot {
                kind,
                name: storage_name,
                pin,
            } => {
                let version = self.version(*kind, storage_name, pin.as_deref())?;
                self.archive_child(*kind, version.as_ref(), Path::new(""), name)?
            }
            Node::ArchiveEntry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let path = path.join(name);
                let (found, _) = self.on_archive_entry(
                    *kind,
                    storage_id,
                    version_id,
                    &path,
                    fs::symlink_metadata,
                )?;
                found.map_err(|_| missing())?;
                Node::ArchiveEntry {
                    kind: *kind,
                    storage_id: storage_id.clone(),
                    version_id: version_id.clone(),
                    path,
                }
            }
            Node::AgentFile { .. }
            | Node::RunFile { .. }
            | Node::RunsLatest
            | Node::NewRun { .. }
            | Node::ControlFile(_) => return Err(not_a_directory(parent)),
        };
        Ok(node)
    }

    /// `volumes/<name>` or `volumes/<name>@<version prefix>`.
    fn storage_root(&self, kind: StorageKind, name: &str) -> Result<Node> {
        let (base, prefix) = match name.rsplit_once('@') {
            Some((base, prefix)) => (base, Some(prefix)),
            None => (name, None),
        };
        let storage = self.meta.storage(kind, base)?;
        let pin = match prefix {
            None => None,
            Some(prefix) => Some(self.resolve_prefix(kind, &storage, prefix)?),
        };
        Ok(Node::StorageRoot {
            kind,
            name: base.to_string(),
            pin,
        })
    }

    /// The full version id that a prefix of at least 8 hex characters names, or `ENOENT`.
    fn resolve_prefix(&self, kind: StorageKind, storage: &Storage, prefix: &str) -> Result<String> {
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

    /// The version a storage root shows: its head, or the pinned one. `None` when there are no files to show.
    pub(super) fn version(
        &self,
        kind: StorageKind,
        name: &str,
        pin: Option<&str>,
    ) -> Result<Option<Version>> {
        let storage = self.meta.storage(kind, name)?;
        let Some(id) = pin
            .map(str::to_string)
            .or_else(|| storage.current_version_id.clone())
        else {
            return Ok(None);
        };
        let listed = self.meta.storage_versions(kind, &storage.id, false)?;
        let found = listed.iter().find(|v| v.id == id).cloned();
        let (created_at, has_files, size) = match found {
            Some(v) => (v.created_at, v.file_count > 0, v.size),
            // The head moved after the versions were listed: trust the storage object.
            None if pin.is_none() => (
                storage.updated_at.clone(),
                storage.file_count > 0,
                storage.size,
            ),
            None => return Err(Error::not_found(format!("{}/{name}@{id}", kind.plural()))),
        };
        Ok(Some(Version {
            storage,
            id,
            created_at,
            has_files,
            size,
        }))
    }

    fn archive_child(
        &self,
        kind: StorageKind,
        version: Option<&Version>,
        dir: &Path,
        name: &OsStr,
    ) -> Result<Node> {
        let missing = || Error::not_found(name.to_string_lossy());
        let version = version.filter(|v| v.has_files).ok_or_else(missing)?;
        let path = dir.join(name);
        let (found, _) = self.on_archive_entry(
            kind,
            &version.storage.id,
            &version.id,
            &path,
            fs::symlink_metadata,
        )?;
        found.map_err(|_| missing())?;
        Ok(Node::ArchiveEntry {
            kind,
            storage_id: version.storage.id.as_str().into(),
            version_id: version.id.as_str().into(),
            path,
        })
    }

    /// The root of the extracted tree of a version, downloading it on first use (and waiting for all of it).
    pub(super) fn tree(
        &self,
        kind: StorageKind,
        storage_id: &str,
        version_id: &str,
    ) -> Result<PathBuf> {
        if let Some(root) = self.cache.lookup(version_id) {
            return Ok(root);
        }
        may_wait()?;
        let info = self.archive_info(kind, storage_id, version_id);
        let source = self.archive_source(kind, storage_id, version_id);
        Ok(self.cache.fetch(version_id, &info, &*source)?)
    }

    /// Runs `op` on the entry `rel` of a version's tree as soon as that entry can be read
    /// (`ArchiveCache::entry`): while the version downloads, that is on its path in the staging tree, which
    /// vanishes when the download ends (renamed into place, or deleted after a failure); a `NotFound` there asks
    /// the cache again. The path is never kept. Returns `op`'s result, and whether the entry was served early.
    fn on_archive_entry<T>(
        &self,
        kind: StorageKind,
        storage_id: &str,
        version_id: &str,
        rel: &Path,
        op: impl Fn(PathBuf) -> io::Result<T>,
    ) -> Result<(io::Result<T>, bool)> {
        if let Some(root) = self.cache.lookup(version_id) {
            return Ok((op(root.join(rel)), false));
        }
        may_wait()?;
        let info = self.archive_info(kind, storage_id, version_id);
        let source = self.archive_source(kind, storage_id, version_id);
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
    fn archive_source(
        &self,
        kind: StorageKind,
        storage_id: &str,
        version_id: &str,
    ) -> Arc<DownloadSource> {
        let api = self.meta.api().clone();
        let (storage_id, version_id) = (storage_id.to_string(), version_id.to_string());
        Arc::new(move || api.download(kind, &storage_id, Some(&version_id)))
    }

    /// How a download is shown in `vm0fs status` and the log, from the listings the mount already holds.
    fn archive_info(&self, kind: StorageKind, storage_id: &str, version_id: &str) -> ArchiveInfo {
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

    fn run_file_exists(&self, run: &RunDetail, file: RunFile) -> Result<bool> {
        Ok(match file {
            RunFile::Output => self.meta.run_output(run)?.is_some(),
            RunFile::Artifact => artifact_link(run).is_some(),
            _ => true,
        })
    }

    /// The attributes of a node, numbered `ino`; for API files this renders the content, so the size is exact.
    pub(super) fn attr(&self, ino: u64, node: &Node) -> Result<Attr> {
        let fixed = self.mounted_at;
        match node {
            Node::Root | Node::ControlDir => {
                let perm = if self.config.allow_other {
                    0o555
                } else {
                    0o500
                };
                let ttl = self.config.metadata_ttl.min(FIXED_TTL);
                Ok(self.make_attr(ino, FileKind::Directory, 0, perm, fixed, ttl))
            }
            // Both change at any time: no attribute caching.
            Node::ControlFile(ControlFile::Status) => {
                let size = self.status_json().len() as u64;
                let now = SystemTime::now();
                Ok(self.make_attr(ino, FileKind::File, size, 0o444, now, Duration::ZERO))
            }
            Node::ControlFile(ControlFile::Pins) => {
                let size = self.pins_text().len() as u64;
                Ok(self.make_attr(ino, FileKind::File, size, 0o600, fixed, Duration::ZERO))
            }
            Node::AgentsDir | Node::RunsDir | Node::StorageDir(_) => {
                Ok(self.dir_attr(ino, fixed, self.config.metadata_ttl.min(FIXED_TTL)))
            }
            Node::RunsNew => {
                Ok(self.make_attr(ino, FileKind::Directory, 0, 0o755, fixed, MOVING_TTL))
            }
            Node::NewRun { agent } => {
                self.meta.agent(agent)?;
                let size = self.new_run_outcome(agent).len() as u64;
                // No attribute caching: a close on another handle changes the content at any time.
                Ok(self.make_attr(ino, FileKind::File, size, 0o644, fixed, Duration::ZERO))
            }
            Node::RunFile {
                id,
                file: RunFile::Ctl,
            } => {
                let run = self.meta.run(id)?;
                Ok(self.make_attr(
                    ino,
                    FileKind::File,
                    0,
                    0o200,
                    run_mtime(&run, fixed),
                    MOVING_TTL,
                ))
            }
            Node::Agent { name } => {
                let agent = self.meta.agent(name)?;
                Ok(self.dir_attr(
                    ino,
                    time_of(&agent.updated_at, fixed),
                    self.config.metadata_ttl,
                ))
            }
            Node::Run { id } => {
                // `ls -l runs/` must not cost one request per run: a fresh listing is as good as the detail.
                let (mtime, ttl) = match self.meta.listed_run(id) {
                    Some(run) => (
                        run_times(&run.created_at, &run.started_at, &run.completed_at, fixed),
                        if run.status.is_terminal() {
                            FIXED_TTL
                        } else {
                            MOVING_TTL
                        },
                    ),
                    _ => {
                        let run = self.meta.run(id)?;
                        (run_mtime(&run, fixed), run_ttl(&run))
                    }
                };
                Ok(self.dir_attr(ino, mtime, ttl))
            }
            Node::RunsLatest => {
                let target = self.link_target(node)?;
                Ok(self.symlink_attr(ino, target.len(), fixed, MOVING_TTL))
            }
            Node::RunFile {
                id,
                file: RunFile::Artifact,
            } => {
                let run = self.meta.run(id)?;
                let target = artifact_link(&run).ok_or_else(|| Error::not_found(describe(node)))?;
                Ok(self.symlink_attr(ino, target.len(), run_mtime(&run, fixed), run_ttl(&run)))
            }
            Node::AgentFile { .. } | Node::RunFile { .. } => {
                let (content, mtime, ttl) = self.content(node)?;
                Ok(self.file_attr(ino, content.len() as u64, mtime, ttl))
            }
            Node::StorageRoot { kind, name, pin } => {
                let ttl = if pin.is_some() {
                    FIXED_TTL
                } else {
                    self.config.metadata_ttl
                };
                let mtime = match pin {
                    Some(_) => match self.version(*kind, name, pin.as_deref())? {
                        Some(v) => time_of(&v.created_at, fixed),
                        None => fixed,
                    },
                    None => time_of(&self.meta.storage(*kind, name)?.updated_at, fixed),
                };
                Ok(self.dir_attr(ino, mtime, ttl))
            }
            Node::ArchiveEntry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let (meta, early) = self.on_archive_entry(
                    *kind,
                    storage_id,
                    version_id,
                    path,
                    fs::symlink_metadata,
                )?;
                let meta = meta?;
                // A top-level entry is reached through `<name>/`, whose head may move; deeper ones never change.
                // One served early is asked again soon: a directory's time is final only once all is extracted.
                let ttl = if early {
                    MOVING_TTL
                } else if path.components().count() == 1 {
                    self.config.metadata_ttl.min(FIXED_TTL)
                } else {
                    FIXED_TTL
                };
                Ok(self.disk_attr(ino, &meta, ttl))
            }
        }
    }

    /// The names in a directory (without `.` and `..`), added to `out`, each holding a reference on its number
    /// (given back by the caller, even if an error ends the listing halfway).
    pub(super) fn children(&self, node: &Node, out: &mut Vec<DirEntry>) -> Result<()> {
        match node {
            Node::Root => {
                for name in ROOT_NAMES {
                    let child = self.child(node, OsStr::new(name))?;
                    out.push(self.entry(&child, FileKind::Directory, name));
                }
            }
            Node::ControlDir => out.extend(self.control_children()),
            Node::AgentsDir => {
                let agents = self.meta.agents()?;
                for name in unique_safe_names("agent", agents.iter().map(|a| a.name.as_str())) {
                    let child = Node::Agent {
                        name: name.to_string(),
                    };
                    out.push(self.entry(&child, FileKind::Directory, name));
                }
            }
            Node::Agent { name } => {
                for (file_name, file) in AGENT_FILES {
                    let child = Node::AgentFile {
                        name: name.clone(),
                        file,
                    };
                    out.push(self.entry(&child, FileKind::File, file_name));
                }
            }
            Node::RunsDir => {
                out.push(self.entry(&Node::RunsNew, FileKind::Directory, "new"));
                let runs = self.meta.runs()?;
                if !runs.is_empty() {
                    out.push(self.entry(&Node::RunsLatest, FileKind::Symlink, "latest"));
                }
                for id in unique_safe_names("run", runs.iter().map(|r| r.id.as_str())) {
                    let child = Node::Run { id: id.to_string() };
                    out.push(self.entry(&child, FileKind::Directory, id));
                }
            }
            Node::Run { id } => {
                let run = self.meta.run(id)?;
                for (file_name, file) in RUN_FILES {
                    if self.run_file_exists(&run, file)? {
                        let kind = if file == RunFile::Artifact {
                            FileKind::Symlink
                        } else {
                            FileKind::File
                        };
                        let child = Node::RunFile {
                            id: id.clone(),
                            file,
                        };
                        out.push(self.entry(&child, kind, file_name));
                    }
                }
            }
            Node::StorageDir(kind) => {
                let storages = self.meta.storages(*kind)?;
                let what = kind.title();
                for name in unique_safe_names(what, storages.iter().map(|s| s.name.as_str())) {
                    let child = Node::StorageRoot {
                        kind: *kind,
                        name: name.to_string(),
                        pin: None,
                    };
                    out.push(self.entry(&child, FileKind::Directory, name));
                }
            }
            Node::StorageRoot { kind, name, pin } => {
                if let Some(version) = self
                    .version(*kind, name, pin.as_deref())?
                    .filter(|v| v.has_files)
                {
                    let root = self.tree(*kind, &version.storage.id, &version.id)?;
                    self.disk_children(
                        *kind,
                        &version.storage.id,
                        &version.id,
                        &root,
                        Path::new(""),
                        out,
                    )?;
                }
            }
            Node::ArchiveEntry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let root = self.tree(*kind, storage_id, version_id)?;
                self.disk_children(*kind, storage_id, version_id, &root, path, out)?;
            }
            Node::RunsNew => {
                let agents = self.meta.agents()?;
                for name in unique_safe_names("agent", agents.iter().map(|a| a.name.as_str())) {
                    let child = Node::NewRun {
                        agent: name.to_string(),
                    };
                    out.push(self.entry(&child, FileKind::File, name));
                }
            }
            Node::AgentFile { .. }
            | Node::RunFile { .. }
            | Node::RunsLatest
            | Node::NewRun { .. }
            | Node::ControlFile(_) => return Err(not_a_directory(node)),
        }
        Ok(())
    }

    fn disk_children(
        &self,
        kind: StorageKind,
        storage_id: &str,
        version_id: &str,
        root: &Path,
        dir: &Path,
        out: &mut Vec<DirEntry>,
    ) -> Result<()> {
        let mut names: Vec<(std::ffi::OsString, FileKind)> = Vec::new();
        for entry in fs::read_dir(root.join(dir))? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            names.push((entry.file_name(), kind_of(&file_type)));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let (storage_id, version_id): (Arc<str>, Arc<str>) = (storage_id.into(), version_id.into());
        for (name, file_kind) in names {
            let child = Node::ArchiveEntry {
                kind,
                storage_id: storage_id.clone(),
                version_id: version_id.clone(),
                path: dir.join(&name),
            };
            out.push(DirEntry {
                ino: self.inodes.acquire(&child),
                kind: file_kind,
                name,
            });
        }
        Ok(())
    }

    fn entry(&self, node: &Node, kind: FileKind, name: &str) -> DirEntry {
        DirEntry {
            ino: self.inodes.acquire(node),
            kind,
            name: name.into(),
        }
    }

    pub(super) fn link_target(&self, node: &Node) -> Result<Vec<u8>> {
        match node {
            Node::RunsLatest => {
                let run = self
                    .meta
                    .latest_run()?
                    .ok_or_else(|| Error::not_found("runs/latest"))?;
                Ok(run.id.into_bytes())
            }
            Node::RunFile {
                id,
                file: RunFile::Artifact,
            } => {
                let run = self.meta.run(id)?;
                artifact_link(&run)
                    .map(String::into_bytes)
                    .ok_or_else(|| Error::not_found(describe(node)))
            }
            Node::ArchiveEntry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let (target, _) =
                    self.on_archive_entry(*kind, storage_id, version_id, path, fs::read_link)?;
                Ok(target?.into_os_string().into_encoded_bytes())
            }
            _ => Err(Error::new(
                libc::EINVAL,
                format!("{}: not a symbolic link", describe(node)),
            )),
        }
    }

    /// The bytes of a file rendered from the API, its mtime and its attribute TTL.
    fn content(&self, node: &Node) -> Result<(Arc<Vec<u8>>, SystemTime, Duration)> {
        let fixed = self.mounted_at;
        match node {
            Node::AgentFile { name, file } => {
                let agent = self.meta.agent(name)?;
                let bytes = match file {
                    AgentFile::AgentJson => render::json(&agent),
                    AgentFile::VersionsJson => render::json(&*self.meta.agent_versions(&agent.id)?),
                };
                Ok((
                    Arc::new(bytes),
                    time_of(&agent.updated_at, fixed),
                    MOVING_TTL,
                ))
            }
            Node::RunFile { id, file } => {
                let run = self.meta.run(id)?;
                let bytes = match file {
                    RunFile::Status => Arc::new(render::text(run.status.as_str())),
                    RunFile::RunJson => Arc::new(render::json(&*run)),
                    RunFile::Prompt => Arc::new(render::text(&run.prompt)),
                    RunFile::Logs => Arc::new(self.live_logs.current(
                        self.meta.api().as_ref(),
                        id,
                        run.status.is_terminal(),
                    )?),
                    RunFile::Ctl => Arc::new(Vec::new()),
                    RunFile::MetricsJson => Arc::new(render::json(&*self.meta.run_metrics(&run)?)),
                    RunFile::Output => {
                        let output = self
                            .meta
                            .run_output(&run)?
                            .ok_or_else(|| Error::not_found(describe(node)))?;
                        Arc::new(render::text(&output))
                    }
                    RunFile::Artifact => {
                        return Err(Error::new(
                            libc::EINVAL,
                            format!("{}: a symbolic link", describe(node)),
                        ));
                    }
                };
                Ok((bytes, run_mtime(&run, fixed), run_ttl(&run)))
            }
            Node::ControlFile(file) => {
                let bytes = match file {
                    ControlFile::Status => self.status_json(),
                    ControlFile::Pins => self.pins_text(),
                };
                Ok((Arc::new(bytes), SystemTime::now(), Duration::ZERO))
            }
            _ => Err(Error::new(
                libc::EISDIR,
                format!("{}: not a file", describe(node)),
            )),
        }
    }

    pub(super) fn open_for_read(&self, node: &Node) -> Result<Opened> {
        match node {
            Node::RunFile {
                id,
                file: RunFile::Logs,
            } => {
                self.live_logs.opened(id);
                let fh = self.handles.insert(Handle::Log(id.clone()));
                Ok(Opened {
                    fh,
                    direct_io: true,
                    keep_cache: false,
                })
            }
            Node::NewRun { agent } => {
                let content = Arc::new(self.new_run_outcome(agent));
                let fh = self.handles.insert(Handle::Content(content));
                Ok(Opened {
                    fh,
                    direct_io: true,
                    keep_cache: false,
                })
            }
            Node::AgentFile { .. } | Node::RunFile { .. } | Node::ControlFile(_) => {
                let (content, _, _) = self.content(node)?;
                let fh = self.handles.insert(Handle::Content(content));
                Ok(Opened {
                    fh,
                    direct_io: true,
                    keep_cache: false,
                })
            }
            Node::ArchiveEntry {
                kind,
                storage_id,
                version_id,
                path,
            } => {
                let open = |p: PathBuf| {
                    File::options()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(p)
                };
                let (file, _) = self.on_archive_entry(*kind, storage_id, version_id, path, open)?;
                let file = file?;
                if file.metadata()?.is_dir() {
                    return Err(Error::new(
                        libc::EISDIR,
                        format!("{}: is a directory", describe(node)),
                    ));
                }
                let fh = self.handles.insert(Handle::Disk(Arc::new(file)));
                Ok(Opened {
                    fh,
                    direct_io: false,
                    keep_cache: true,
                })
            }
            _ => Err(Error::new(
                libc::EISDIR,
                format!("{}: is a directory", describe(node)),
            )),
        }
    }

    pub(super) fn xattrs(&self, node: &Node) -> Result<Vec<(&'static str, String)>> {
        Ok(match node {
            Node::Agent { name } => vec![("user.vm0.id", self.meta.agent(name)?.id)],
            Node::Run { id } => vec![("user.vm0.id", self.meta.run(id)?.id.clone())],
            Node::StorageRoot { kind, name, pin } => {
                let storage = self.meta.storage(*kind, name)?;
                let mut attrs = vec![("user.vm0.id", storage.id.clone())];
                if let Some(version) = self.version(*kind, name, pin.as_deref())? {
                    attrs.push(("user.vm0.version", version.id));
                    attrs.push(("user.vm0.size", version.size.to_string()));
                }
                attrs
            }
            _ => Vec::new(),
        })
    }

    fn dir_attr(&self, ino: u64, mtime: SystemTime, ttl: Duration) -> Attr {
        self.make_attr(ino, FileKind::Directory, 0, 0o555, mtime, ttl)
    }

    fn file_attr(&self, ino: u64, size: u64, mtime: SystemTime, ttl: Duration) -> Attr {
        self.make_attr(ino, FileKind::File, size, 0o444, mtime, ttl)
    }

    fn symlink_attr(&self, ino: u64, len: usize, mtime: SystemTime, ttl: Duration) -> Attr {
        self.make_attr(ino, FileKind::Symlink, len as u64, 0o777, mtime, ttl)
    }

    fn disk_attr(&self, ino: u64, meta: &Metadata, ttl: Duration) -> Attr {
        let kind = kind_of(&meta.file_type());
        let size = if kind == FileKind::Directory {
            0
        } else {
            meta.len()
        };
        // Read-only: the tar mode without write bits (the cache already dropped setuid and friends).
        let perm = (meta.mode() & 0o555) as u16 | if kind == FileKind::Symlink { 0o777 } else { 0 };
        let mtime = meta.modified().unwrap_or(self.mounted_at);
        self.make_attr(ino, kind, size, perm, mtime, ttl)
    }

    fn make_attr(
        &self,
        ino: u64,
        kind: FileKind,
        size: u64,
        perm: u16,
        mtime: SystemTime,
        ttl: Duration,
    ) -> Attr {
        Attr {
            ino,
            kind,
            size,
            perm,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
            mtime,
            uid: self.config.uid,
            gid: self.config.gid,
            ttl,
        }
    }
}

fn kind_of(file_type: &fs::FileType) -> FileKind {
    if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::File
    }
}

/// `runs/<id>/artifact` → `../../artifacts/<name>@<version>`, when the run produced one.
fn artifact_link(run: &RunDetail) -> Option<String> {
    let name = run.artifact_name.as_deref()?;
    let version = run.artifact_version.as_deref()?;
    let valid = is_safe_name(name)
        && version.len() >= MIN_VERSION_PREFIX
        && version.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("../../artifacts/{name}@{version}"))
}

fn run_ttl(run: &RunDetail) -> Duration {
    if run.status.is_terminal() {
        FIXED_TTL
    } else {
        MOVING_TTL
    }
}

fn run_mtime(run: &RunDetail, fallback: SystemTime) -> SystemTime {
    run_times(
        &run.created_at,
        &run.started_at,
        &run.completed_at,
        fallback,
    )
}

/// A run changes when it is created, starts and ends: its mtime is the latest of these.
fn run_times(
    created: &str,
    started: &Option<String>,
    completed: &Option<String>,
    fallback: SystemTime,
) -> SystemTime {
    let latest = completed
        .as_deref()
        .or(started.as_deref())
        .unwrap_or(created);
    time_of(latest, fallback)
}

/// An API timestamp (ISO-8601) as a `SystemTime`; `fallback` when the server sent something else.
fn time_of(timestamp: &str, fallback: SystemTime) -> SystemTime {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .map(SystemTime::from)
        .unwrap_or(fallback)
}

fn not_a_directory(node: &Node) -> Error {
    Error::new(
        libc::ENOTDIR,
        format!("{}: not a directory", describe(node)),
    )
}

/// Whether an API name can be a file name as it is.
fn is_safe_name(name: &str) -> bool {
    is_safe_bytes(name.as_bytes())
}

fn is_safe_bytes(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && name.len() <= 255
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// The names that can be shown, each once, in the API's order; the others are logged and skipped.
fn unique_safe_names<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in names {
        if !is_safe_name(name) {
            tracing::warn!("skipping {what} {name:?}: the name cannot be a file name");
        } else if !seen.insert(name) {
            tracing::warn!(
                "skipping a second {what} named {name:?}: names must be unique to be shown"
            );
        } else {
            out.push(name);
        }
    }
    out
}

/// The directory a node is listed in.
pub(super) fn parent_of(node: &Node) -> Node {
    match node {
        Node::Root | Node::AgentsDir | Node::RunsDir | Node::StorageDir(_) | Node::ControlDir => {
            Node::Root
        }
        Node::ControlFile(_) => Node::ControlDir,
        Node::Agent { .. } => Node::AgentsDir,
        Node::AgentFile { name, .. } => Node::Agent { name: name.clone() },
        Node::RunsLatest | Node::Run { .. } | Node::RunsNew => Node::RunsDir,
        Node::NewRun { .. } => Node::RunsNew,
        Node::RunFile { id, .. } => Node::Run { id: id.clone() },
        Node::StorageRoot { kind, .. } => Node::StorageDir(*kind),
        Node::ArchiveEntry {
            kind,
            storage_id,
            version_id,
            path,
        } => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => Node::ArchiveEntry {
                kind: *kind,
                storage_id: storage_id.clone(),
                version_id: version_id.clone(),
                path: parent.to_path_buf(),
            },
            _ => Node::StorageDir(*kind),
        },
    }
}

/// A node's path in the mount, for messages.
pub(super) fn describe(node: &Node) -> String {
    match node {
        Node::Root => "/".into(),
        Node::ControlDir => CONTROL_DIR.into(),
        Node::ControlFile(file) => {
            format!("{CONTROL_DIR}/{}", name_of_file(&CONTROL_FILES, *file))
        }
        Node::AgentsDir => "agents".into(),
        Node::Agent { name } => format!("agents/{name}"),
        Node::AgentFile { name, file } => {
            let file_name = name_of_file(&AGENT_FILES, *file);
            format!("agents/{name}/{file_name}")
        }
        Node::RunsDir => "runs".into(),
        Node::RunsLatest => "runs/latest".into(),
        Node::RunsNew => "runs/new".into(),
        Node::NewRun { agent } => format!("runs/new/{agent}"),
        Node::Run { id } => format!("runs/{id}"),
        Node::RunFile { id, file } => {
            let file_name = name_of_file(&RUN_FILES, *file);
            format!("runs/{id}/{file_name}")
        }
        Node::StorageDir(kind) => kind.plural().into(),
        Node::StorageRoot {
            kind,
            name,
            pin: None,
        } => format!("{}/{name}", kind.plural()),
        Node::StorageRoot {
            kind,
            name,
            pin: Some(v),
        } => format!("{}/{name}@{v}", kind.plural()),
        Node::ArchiveEntry {
            kind,
            version_id,
            path,
            ..
        } => {
            format!(
                "{} version {version_id}: {}",
                kind.plural(),
                String::from_utf8_lossy(path.as_os_str().as_bytes())
            )
        }
    }
}
