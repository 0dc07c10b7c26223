//! The on-disk layout of the cache directory, and the only code that names paths inside it.
//!
//! ```text
//! <dir>/lock                          flock(2)ed while a cache is open: one process per cache directory
//! <dir>/archives/<vid>/meta.json      written before the rename; mtime = last used
//! <dir>/archives/<vid>/unsynced       present until the entry is known to be on disk: holds the boot id
//! <dir>/archives/<vid>/tree/...       the extracted archive
//! <dir>/archives/<vid>/hashes.json    the files' SHA-256 when known (a tree adopted after a publish)
//! <dir>/staging/<vid>.<random>/       an extraction in progress, or an evicted entry being deleted
//! <dir>/staging/<vid>.<random>/replacement   an entry being made to replace an earlier one of the same name
//! ```
//! An entry becomes visible only through the atomic `rename(staging/<vid>.<random>, archives/<vid>)`, after its
//! tree and its metadata are complete, so a crash at any moment leaves either nothing or a whole entry. (While
//! it downloads, single complete entries of a staging tree may be read, see `ArchiveCache::entry`; a staging
//! tree is never taken for a whole one, and never read after a restart.) At `open` everything in `staging/` is
//! deleted and any `archives/<name>` without valid metadata is deleted too: a directory there is never trusted
//! on its name alone. The version id becomes a path component, so it is
//! validated (`^[0-9a-f]{8,64}$`) before anything here sees it.
//!
//! Durability comes later, not before the rename. A cache need not be durable, only never wrong after a crash, and
//! syncing each archive before publishing it cost the first reader a flush of everything just extracted (a second
//! or more for a few hundred MB). An entry is published with an `unsynced` marker that holds the boot id; the
//! cache syncs the file system later, off the readers' path (`ArchiveCache`), then removes the markers. At
//! `open`, an entry still marked is kept when the machine has not restarted since (its data is still in the page
//! cache, so whatever the process went through, it is whole) and removed otherwise (a power loss may have left
//! its files empty). This rests on journaled metadata being ordered (ext4, xfs, btrfs): a rename that survived a
//! crash comes with the marker created before it.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const META_FILE: &str = "meta.json";
const HASHES_FILE: &str = "hashes.json";
/// Marks an entry whose data may not be on disk yet; holds the boot id of the system that wrote it.
const UNSYNCED: &str = "unsynced";
/// The kernel's id of this boot: it changes at every restart.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const TREE_DIR: &str = "tree";
/// Beside the tree, not in it, so that no name in the archive can clash with it.
const SCRATCH: &str = "replacement";
const META_FORMAT: u32 = 1;
/// The list of pinned version ids, in the cache root.
const PINS_FILE: &str = "pinned";

/// Whether `vid` is acceptable as a version id (and therefore as a path component).
pub(crate) fn valid_version_id(vid: &str) -> bool {
    (8..=64).contains(&vid.len()) && vid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What `meta.json` records about a complete entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Meta {
    pub format: u32,
    pub version_id: String,
    /// Sum of the sizes of the regular files written (the apparent size the LRU budget counts).
    pub bytes: u64,
    pub files: u64,
    /// Unix seconds when extraction completed.
    pub completed_at: u64,
}

impl Meta {
    pub(crate) fn new(version_id: &str, bytes: u64, files: u64) -> Meta {
        Meta {
            format: META_FORMAT,
            version_id: version_id.to_string(),
            bytes,
            files,
            completed_at: unix_secs(SystemTime::now()),
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The cache directory and the paths inside it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub(crate) fn archives(&self) -> PathBuf {
        self.root.join("archives")
    }

    pub(crate) fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub(crate) fn entry(&self, vid: &str) -> PathBuf {
        self.archives().join(vid)
    }

    pub(crate) fn tree(&self, vid: &str) -> PathBuf {
        self.entry(vid).join(TREE_DIR)
    }

    pub(crate) fn meta(&self, vid: &str) -> PathBuf {
        self.entry(vid).join(META_FILE)
    }

    pub(crate) fn hashes(&self, vid: &str) -> PathBuf {
        self.entry(vid).join(HASHES_FILE)
    }

    /// Creates the cache directory (0700) and its subdirectories; tightens an existing one to 0700.
    pub(crate) fn create_dirs(&self) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)?;
        let mode = fs::metadata(&self.root)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::info!(dir = %self.root.display(), "making the cache directory private (mode 0700)");
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))?;
        }
        for dir in [self.archives(), self.staging()] {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        Ok(())
    }

    /// A fresh, empty staging directory for `vid`: `staging/<vid>.<random>`, with an empty `tree/` inside.
    pub(crate) fn new_staging(&self, vid: &str) -> io::Result<Staging> {
        loop {
            let dir = self
                .staging()
                .join(format!("{vid}.{:016x}", fastrand::u64(..)));
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    DirBuilder::new().mode(0o755).create(dir.join(TREE_DIR))?;
                    return Ok(Staging { dir });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes everything in `staging/`: unfinished extractions and half-deleted evictions of a previous run.
    pub(crate) fn clear_staging(&self) -> io::Result<()> {
        let mut removed = 0;
        for item in fs::read_dir(self.staging())? {
            remove_any(&item?.path());
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed unfinished extractions and evictions left by a previous run"
            );
        }
        Ok(())
    }

    /// Every complete entry, with its metadata, last-used time and whether it still waits to be synced; deletes
    /// anything else under `archives/`, and marked entries from before a restart (see the module doc).
    pub(crate) fn scan(&self) -> io::Result<Vec<(Meta, SystemTime, bool)>> {
        let mut found = Vec::new();
        let boot = boot_id();
        for item in fs::read_dir(self.archives())? {
            let path = item?.path();
            let Some((meta, used)) = self.read_entry(&path) else {
                tracing::warn!(path = %path.display(), "removing an incomplete or unknown cache entry");
                remove_any(&path);
                continue;
            };
            match fs::read_to_string(path.join(UNSYNCED)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => found.push((meta, used, false)),
                Ok(marked) if boot.is_some() && marked.trim() == boot.as_deref().unwrap_or("") => {
                    found.push((meta, used, true))
                }
                _ => {
                    tracing::warn!(
                        path = %path.display(),
                        "removing a cache entry the machine stopped before it was on disk; it is fetched again when needed"
                    );
                    remove_any(&path);
                }
            }
        }
        Ok(found)
    }

    /// Makes everything written to the cache's file system so far durable (`syncfs`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        sync_filesystem(&self.archives())
    }

    /// Removes the `unsynced` markers of `vids`, which a `sync` has made durable. An entry evicted meanwhile is
    /// skipped.
    pub(crate) fn mark_synced(&self, vids: &[String]) -> io::Result<()> {
        for vid in vids {
            match fs::remove_file(self.entry(vid).join(UNSYNCED)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The metadata of the entry at `path`, when it is a valid, complete entry.
    fn read_entry(&self, path: &Path) -> Option<(Meta, SystemTime)> {
        let vid = path.file_name()?.to_str()?;
        if !valid_version_id(vid) || !fs::symlink_metadata(path).ok()?.is_dir() {
            return None;
        }
        if !fs::symlink_metadata(self.tree(vid)).ok()?.is_dir() {
            return None;
        }
        let meta_path = self.meta(vid);
        let stat = fs::symlink_metadata(&meta_path).ok()?;
        if !stat.is_file() || stat.len() > 64 * 1024 {
            return None;
        }
        let meta: Meta = serde_json::from_slice(&fs::read(&meta_path).ok()?).ok()?;
        if meta.format != META_FORMAT || meta.version_id != vid {
            return None;
        }
        Some((meta, stat.modified().unwrap_or(UNIX_EPOCH)))
    }

    /// Makes renames in `archives/` durable (`fsync` of the directory). Failure only costs durability: logged.
    pub(crate) fn sync_archives(&self) {
        if let Err(e) = File::open(self.archives()).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, "could not sync the cache's archives directory");
        }
    }

    /// Marks an entry as used now (the metadata file's mtime is the persistent LRU clock).
    pub(crate) fn touch(&self, vid: &str, now: SystemTime) {
        let result = File::open(self.meta(vid)).and_then(|f| f.set_modified(now));
        if let Err(e) = result {
            tracing::debug!(version = vid, error = %e, "could not record the last use of a cache entry");
        }
    }

    /// The versions pinned against eviction: `pinned`, one version id per line. A missing or unreadable file
    /// pins nothing (logged), and lines that are not version ids are ignored.
    pub(crate) fn read_pins(&self) -> Vec<String> {
        match fs::read_to_string(self.root.join(PINS_FILE)) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| valid_version_id(l))
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cache's list of pinned archives; nothing is pinned");
                Vec::new()
            }
        }
    }

    /// Replaces the list of pinned versions atomically (a temporary file renamed over it).
    pub(crate) fn write_pins(&self, pins: &[String]) -> io::Result<()> {
        let tmp = self
            .root
            .join(format!("{PINS_FILE}.{:016x}.tmp", fastrand::u64(..)));
        let mut text = pins.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let result = fs::write(&tmp, text)
            .and_then(|()| File::open(&tmp).and_then(|f| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, self.root.join(PINS_FILE)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Moves an entry out of `archives/` (atomically) into a trash name under `staging/`.
    pub(crate) fn retire(&self, vid: &str) -> io::Result<PathBuf> {
        let trash = self
            .staging()
            .join(format!("{vid}.{:016x}.evicted", fastrand::u64(..)));
        fs::rename(self.entry(vid), &trash)?;
        Ok(trash)
    }
}

/// A staging directory; removed on drop unless it was published.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
}

impl Staging {
    pub(crate) fn tree(&self) -> PathBuf {
        self.dir.join(TREE_DIR)
    }

    /// Where the extractor makes an entry that replaces an earlier one of the same name, before renaming it into
    /// the tree.
    pub(crate) fn scratch(&self) -> PathBuf {
        self.dir.join(SCRATCH)
    }

    /// Writes `hashes.json` beside the tree (before `seal`; it is synced with the rest of the entry).
    pub(crate) fn write_hashes(&self, body: &[u8]) -> io::Result<()> {
        write_new(&self.dir.join(HASHES_FILE), body)
    }

    /// Writes `meta.json` beside the tree, and the `unsynced` marker: the data is made durable later (see the
    /// module doc).
    pub(crate) fn seal(&self, meta: &Meta) -> io::Result<()> {
        let body = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        write_new(
            &self.dir.join(UNSYNCED),
            boot_id().unwrap_or_default().as_bytes(),
        )?;
        write_new(&self.dir.join(META_FILE), &body)
    }

    /// Renames the sealed directory to `archives/<vid>`: the moment the entry becomes complete. The caller holds
    /// the index lock, so nothing else publishes or retires `vid` meanwhile, and calls `Layout::sync_archives`
    /// after releasing it.
    pub(crate) fn publish(mut self, layout: &Layout, vid: &str) -> io::Result<()> {
        let target = layout.entry(vid);
        if fs::symlink_metadata(&target).is_ok() {
            // Only a leftover the index does not know can be here (a failed eviction); never merge into it.
            remove_any(&layout.retire(vid)?);
        }
        fs::rename(&self.dir, &target)?;
        // Renamed away: there is nothing left for Drop to remove (an empty path removes nothing).
        self.dir = PathBuf::new();
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            remove_any(&self.dir);
        }
    }
}

fn write_new(path: &Path, body: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(body)
}

/// This boot's id, `None` where the kernel does not tell it (then no marked entry survives a restart of vm0fs).
fn boot_id() -> Option<String> {
    let id = fs::read_to_string(BOOT_ID).ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

/// `syncfs(2)` on the file system holding `path`: one call flushes every file extracted since the last, far
/// cheaper than an `fsync` per file.
fn sync_filesystem(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path)?;
    // SAFETY: syncfs only reads the file descriptor, which `dir` keeps open for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Deletes a file or a directory tree, logging (not failing) when it cannot.
pub(crate) fn remove_any(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not delete from the cache directory");
    }
}
