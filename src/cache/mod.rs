//! The archive cache: extracted volume and artifact versions on local disk, keyed by version id.
//!
//! A version's content never changes (its id is a hash of it), so an extracted tree is valid forever and the
//! only questions are space and safety. Space: an LRU budget in bytes, persistent across mounts (the index is
//! rebuilt at `open` by scanning the directory; recency is the metadata file's mtime). Safety: archives are
//! hostile input, extracted by our own entry loop (`extract`) that never writes outside the entry's directory,
//! under limits on size and entry count. Concurrency: one download per version at a time (`flight`), no lock
//! held while downloading, so `lookup` of a cached version answers at once while others download. Crash
//! safety: a tree is built in `staging/` and renamed into `archives/` only when complete (`layout`), so a
//! partial archive is never cached, and staging is never served after a restart (it is deleted at `open`).
//! Durability is deferred: a new entry is synced to disk by a background thread once it is `SYNC_DELAY` old (by
//! then the kernel's own writeback has done most of the work) and at a clean unmount, never on the path of the
//! reader that fetched it; `layout` says how an entry a power loss caught unsynced is recognised and dropped.
//!
//! Early entries. `entry` answers for one path inside a version: while the version downloads, as soon as that
//! entry is complete in the staging tree (`flight` keeps the record), without waiting for the rest; a name the
//! archive does not hold, and `fetch` (listings), still wait for the whole archive, since only then is absence
//! known. Why serving a complete entry early is sound:
//! - a file is reported complete only once all its bytes are written (the tar header gives its size, so a cut
//!   stream fails the entry, never yields a short file as complete), its mode and time set and the file closed;
//!   a name that repeats is replaced by a `rename`, so no reader ever sees a partial file (it may read the
//!   earlier copy, if it came before the later one was written: the last copy wins in the final tree);
//! - the path is found by the same no-follow walk as the extractor's (real directories only), so it is in
//!   the tree;
//! - transport integrity is TLS's. What is given up is the gzip CRC at the end of the stream for the files
//!   served before it: a blob corrupted at rest (not in transit) could have some files served before the
//!   archive is found corrupt; it is then not cached (staging is deleted), files already open keep their
//!   complete bytes, and the next lookup downloads it again and fails cleanly (`EIO`): a version whose last
//!   download failed is served only whole until a download of it succeeds (remembered in memory, so once per
//!   mount at most).
//!
//! An early path moves (the staging tree is renamed into `archives/` at the end) or disappears (a failed
//! download): callers resolve it again through `entry` every time, never keep it; an open file survives both.
//!
//! Progress: each download in flight is listed with the bytes it has extracted (`progress`), for `vm0fs status`.
//! Adoption: the tree of a volume version published from this machine becomes its entry without a download
//! (`adopt`), built and renamed into place the same way.
//! Pins: a pinned version (`vm0fs prefetch --pin`) is never evicted; the list is kept in the cache directory, so
//! it outlives the mount.
//!
//! A path returned by `lookup`/`fetch` stays valid until the entry is evicted; files already open keep working
//! after that (Linux keeps unlinked inodes alive), and a later `lookup` simply misses.

mod adopt;
mod error;
mod extract;
mod flight;
mod index;
mod layout;
mod lock;
mod progress;

#[cfg(test)]
mod tests;

use crate::sync::Locked;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::api::models::StorageKind;
use crate::api::{ApiError, Download, Vm0Api};
pub use adopt::Adoption;
pub use error::CacheError;
use error::Failure;
use flight::{Flights, Follower, Joined, Leader, Partial};
use index::{Entry, Index};
use layout::{Layout, Meta, Staging, remove_any, valid_version_id};
pub use progress::{ArchiveInfo, Bytes, TransferStatus};
use progress::{Transfer, Transfers};

/// Attempts per fetch, counting the first: transient network failures are common enough to retry, but a
/// failing download must not hold its readers for long.
const MAX_ATTEMPTS: u32 = 3;

/// Pause before retry `n` is `n` times this.
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// The on-disk last-used time is updated at most this often per entry: LRU needs minutes, not microseconds,
/// and a write per `lookup` would be a write per file-system call.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Where the cache lives and how big it may grow.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The cache directory (created with mode 0700).
    pub dir: PathBuf,
    /// Budget for all extracted archives together, in bytes of file content.
    pub max_bytes: u64,
    pub limits: ExtractLimits,
}

/// Limits on one archive, against hostile or broken archives (gzip bombs, millions of empty entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Most bytes one archive may hold once extracted (`--max-archive-size`). Exceeding it fails with `EFBIG`.
    pub max_total_bytes: u64,
    /// Most entries (files, directories, links, skipped ones) one archive may have (`--max-archive-entries`).
    /// Exceeding it fails with `EFBIG`.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// 64 GiB and 2 million entries: far beyond any volume we expect, while still stopping a gzip bomb long
    /// before a typical disk fills, and a header flood before the inode table does.
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 64 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// A picture of the cache at one moment.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CacheStatus {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub used_bytes: u64,
    pub archives: usize,
    /// Pinned archives held in the cache, and their bytes.
    pub pinned: usize,
    pub pinned_bytes: u64,
    pub downloads: Vec<TransferStatus>,
}

/// Starts a download of an archive; called again for each retry.
pub type DownloadSource = dyn Fn() -> Result<Download, ApiError> + Send + Sync;

/// The download of `version` of storage `storage_id`: the one way a version's archive is fetched, for the
/// read-only trees and the write path alike.
pub fn version_source(
    api: Arc<dyn Vm0Api>,
    kind: StorageKind,
    storage_id: &str,
    version: &str,
) -> Arc<DownloadSource> {
    let (storage_id, version) = (storage_id.to_string(), version.to_string());
    Arc::new(move || api.download(kind, &storage_id, Some(&version)))
}

/// Where an entry of an archive can be read, from `ArchiveCache::entry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPath {
    pub path: PathBuf,
    /// Served while the archive still downloads: the path is in the staging tree, which is renamed into place
    /// or deleted when the download ends, so it must not be kept (ask `entry` again); and a directory's time is
    /// not final yet. The entry itself is complete.
    pub early: bool,
}

/// The cache. `Send + Sync`: share it as `Arc<ArchiveCache>`.
pub struct ArchiveCache {
    layout: Layout,
    max_bytes: u64,
    limits: ExtractLimits,
    index: Mutex<Index>,
    flights: Flights,
    transfers: Transfers,
    /// Versions whose last download failed: `entry` serves them only whole until a download succeeds, so that
    /// the head of a corrupt archive is served at most once per mount, not again at each read.
    failed: Mutex<HashSet<String>>,
    /// Entries published but not yet known to be on disk, with when they were published.
    unsynced: Mutex<Vec<(String, Instant)>>,
    /// Held (flock) for the cache's lifetime, so two processes never share one cache directory.
    _lock: File,
}

/// How old the oldest unsynced entry gets before the background thread syncs (the kernel writes dirty pages
/// back after 30 s by default, so the sync mostly confirms what is on disk already).
const SYNC_DELAY: Duration = Duration::from_secs(30);
/// How often the background thread looks.
const SYNC_TICK: Duration = Duration::from_secs(5);

impl ArchiveCache {
    /// Fails with `WouldBlock`, naming the process, if another process has the cache directory `dir` open; takes
    /// nothing (see `lock`).
    pub fn check_free(dir: &Path) -> io::Result<()> {
        lock::check_free(dir)
    }

    /// Creates `dir` (mode 0700) if needed, removes staging leftovers from a crash, indexes complete entries.
    ///
    /// Fails with `WouldBlock` if another process has this cache directory open.
    pub fn open(config: CacheConfig) -> io::Result<ArchiveCache> {
        let layout = Layout::new(config.dir);
        layout.create_dirs()?;
        let lock = lock::lock_exclusive(&layout)?;
        layout.clear_staging()?;
        let mut found = layout.scan()?;
        found.sort_by_key(|(_, used, _)| *used);
        let mut index = Index::new();
        for vid in layout.read_pins() {
            index.set_pinned(&vid, true);
        }
        let mut unsynced = Vec::new();
        for (meta, touched, marked) in found {
            let entry = Entry {
                bytes: meta.bytes,
                touched,
            };
            index.insert(&meta.version_id, entry);
            if marked {
                unsynced.push((meta.version_id, Instant::now()));
            }
        }
        let cache = ArchiveCache {
            layout,
            max_bytes: config.max_bytes,
            limits: config.limits,
            index: Mutex::new(index),
            flights: Flights::default(),
            transfers: Transfers::default(),
            failed: Mutex::default(),
            unsynced: Mutex::new(unsynced),
            _lock: lock,
        };
        let trash = cache.evict(&mut cache.lock_index(), None);
        trash.iter().for_each(|t| remove_any(t));
        let (bytes, archives) = cache.usage();
        tracing::info!(dir = %cache.layout.root().display(), bytes, archives, "archive cache opened");
        Ok(cache)
    }

    /// The root directory of the extracted tree of `version_id` if it is complete in the cache (marks it used).
    pub fn lookup(&self, version_id: &str) -> Option<PathBuf> {
        if !valid_version_id(version_id) {
            return None;
        }
        let now = SystemTime::now();
        let touch = {
            let mut index = self.lock_index();
            let entry = index.get(version_id)?;
            let stale = now
                .duration_since(entry.touched)
                .map_or(true, |age| age >= TOUCH_INTERVAL);
            if stale {
                entry.touched = now;
            }
            if !self.layout.tree(version_id).is_dir() {
                tracing::warn!(
                    version = version_id,
                    "a cache entry vanished from disk; it will be fetched again"
                );
                index.remove(version_id);
                return None;
            }
            stale
        };
        if touch {
            self.layout.touch(version_id, now);
        }
        Some(self.layout.tree(version_id))
    }

    /// Same, but downloads and extracts it first when missing, on this thread: `source` is called to start a
    /// download (it may be called again to retry). One download per version at a time however many threads ask:
    /// the others wait for the first one's result (success → the same path; failure → the same error, and the
    /// next call tries again). `info` names the archive in `vm0fs status` and the log while it downloads. The
    /// mount uses `tree`, which downloads on a thread of its own so that its callers can give up.
    #[cfg(test)]
    pub(crate) fn fetch(
        &self,
        version_id: &str,
        info: &ArchiveInfo,
        source: &(dyn Fn() -> Result<Download, ApiError> + Sync),
    ) -> Result<PathBuf, CacheError> {
        if !valid_version_id(version_id) {
            return Err(CacheError::InvalidVersionId {
                version: version_id.to_string(),
            });
        }
        if let Some(path) = self.lookup(version_id) {
            return Ok(path);
        }
        match self.flights.join(version_id, &info.label) {
            Joined::Follow(follower) => follower.result(),
            Joined::Lead(leader) => {
                // A flight that finished between our lookup and our join has already published the entry.
                let result = match self.lookup(version_id) {
                    Some(path) => Ok(path),
                    None => {
                        let _waiting = leader.follower();
                        self.download(version_id, info, source, &leader.partial())
                    }
                };
                leader.complete(result)
            }
        }
    }

    /// The root of the extracted tree of `version_id`, downloading it first when missing (as `fetch`, but the
    /// download runs on a thread of its own): the caller waits, and stops waiting with `Interrupted` as soon as it
    /// gives up (`caller`); the download goes on while another caller waits for it, and stops otherwise.
    pub fn tree(
        self: &Arc<Self>,
        version_id: &str,
        info: &ArchiveInfo,
        source: Arc<DownloadSource>,
    ) -> Result<PathBuf, CacheError> {
        if !valid_version_id(version_id) {
            return Err(CacheError::InvalidVersionId {
                version: version_id.to_string(),
            });
        }
        again_if_unwanted(|| {
            if let Some(path) = self.lookup(version_id) {
                return Ok(path);
            }
            match self.follow(version_id, info, &source) {
                Ok(follower) => follower.result(),
                Err(cached) => cached,
            }
        })
    }

    /// A place among the waiters of the flight of `version_id`, starting the download in the background if none
    /// is in progress; `Err` only if the version turned out to be cached meanwhile (its path).
    fn follow(
        self: &Arc<Self>,
        version_id: &str,
        info: &ArchiveInfo,
        source: &Arc<DownloadSource>,
    ) -> Result<Follower, Result<PathBuf, CacheError>> {
        match self.flights.join(version_id, &info.label) {
            Joined::Follow(follower) => Ok(follower),
            Joined::Lead(leader) => {
                // A flight that finished between our lookup and our join has already published the entry.
                if let Some(root) = self.lookup(version_id) {
                    return Err(leader.complete(Ok(root)));
                }
                let follower = leader.follower();
                self.download_in_background(version_id, info, source.clone(), leader);
                Ok(follower)
            }
        }
    }

    /// The path of the entry `rel` (relative, plain names) of a version, as soon as it can be read: at once if
    /// the version is cached; else as soon as that entry is complete in the download in flight (started in the
    /// background if there is none, as `fetch` would), or when the download ends: then the path in the final
    /// tree (which may not exist: the name is not in the archive), or the download's error. See the module doc
    /// for what an `early` path means.
    pub fn entry(
        self: &Arc<Self>,
        version_id: &str,
        info: &ArchiveInfo,
        rel: &Path,
        source: Arc<DownloadSource>,
    ) -> Result<EntryPath, CacheError> {
        let in_final = |root: PathBuf| EntryPath {
            path: root.join(rel),
            early: false,
        };
        if !is_plain_relative(rel) {
            return self.tree(version_id, info, source).map(in_final);
        }
        if !valid_version_id(version_id) {
            return Err(CacheError::InvalidVersionId {
                version: version_id.to_string(),
            });
        }
        again_if_unwanted(|| {
            if let Some(root) = self.lookup(version_id) {
                return Ok(in_final(root));
            }
            if self.lock_failed().contains(version_id) {
                return self.tree(version_id, info, source.clone()).map(in_final);
            }
            match self.follow(version_id, info, &source) {
                Ok(follower) => follower.entry(rel),
                Err(cached) => cached.map(in_final),
            }
        })
    }

    /// Keeps `version_id` from being evicted while staged changes read untouched files from it (`hold`), or
    /// gives that hold back. Separate from the user's pins, and not kept across mounts.
    pub fn hold(&self, version_id: &str, hold: bool) {
        self.lock_index().set_held(version_id, hold);
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.layout.root()
    }

    /// Bytes on disk (file content of all extracted archives) and number of archives held.
    pub fn usage(&self) -> (u64, usize) {
        self.lock_index().usage()
    }

    /// Keeps `version_id` out of eviction from now on (whether it is cached yet or not), or lets it go again.
    /// Unpinning evicts at once whatever no longer fits the budget.
    pub fn set_pinned(&self, version_id: &str, pinned: bool) -> Result<(), CacheError> {
        if !valid_version_id(version_id) {
            return Err(CacheError::InvalidVersionId {
                version: version_id.to_string(),
            });
        }
        let trash = {
            let mut index = self.lock_index();
            if !index.set_pinned(version_id, pinned) {
                return Ok(());
            }
            if let Err(e) = self.layout.write_pins(&index.pinned()) {
                index.set_pinned(version_id, !pinned);
                return Err(CacheError::Io {
                    archive: format!("archive version {version_id}"),
                    action: format!(
                        "saving the list of pinned archives in {}",
                        self.layout.root().display()
                    ),
                    source: Arc::new(e),
                });
            }
            if pinned {
                Vec::new()
            } else {
                self.evict(&mut index, None)
            }
        };
        trash.iter().for_each(|t| remove_any(t));
        Ok(())
    }

    /// The pinned version ids, sorted (whether cached or not).
    pub fn pinned(&self) -> Vec<String> {
        self.lock_index().pinned()
    }

    /// What the cache holds and what it is downloading, for `vm0fs status`.
    pub fn status(&self) -> CacheStatus {
        let (used_bytes, archives, (pinned, pinned_bytes)) = {
            let index = self.lock_index();
            let (bytes, archives) = index.usage();
            (bytes, archives, index.pinned_usage())
        };
        CacheStatus {
            dir: self.layout.root().to_path_buf(),
            max_bytes: self.max_bytes,
            used_bytes,
            archives,
            pinned,
            pinned_bytes,
            downloads: self.transfers.snapshot(),
        }
    }

    /// Leads the flight of `vid` on a thread of its own, so that the caller can wait for a single entry.
    fn download_in_background(
        self: &Arc<Self>,
        vid: &str,
        info: &ArchiveInfo,
        source: Arc<DownloadSource>,
        leader: Leader,
    ) {
        let cache = Arc::clone(self);
        let label = info.label.clone();
        let (version, info) = (vid.to_string(), info.clone());
        let spawned = std::thread::Builder::new()
            .name("vm0fs-download".into())
            .spawn(move || {
                let result = cache.download(&version, &info, &*source, &leader.partial());
                let _ = leader.complete(result);
            });
        if let Err(e) = spawned {
            // The leader went down with the closure, which ends the flight as abandoned for its followers.
            tracing::warn!("{label}: could not start a download thread: {e}");
        }
    }

    /// Downloads and extracts with retries, reporting each complete entry to `partial`, and remembers whether
    /// it failed; the caller leads the flight for `vid`.
    fn download(
        &self,
        vid: &str,
        info: &ArchiveInfo,
        source: &(dyn Fn() -> Result<Download, ApiError> + Sync),
        partial: &Partial,
    ) -> Result<PathBuf, CacheError> {
        let _span = tracing::info_span!("download", archive = %info.label).entered();
        let result = self.download_with_retries(vid, info, source, partial);
        let mut failed = self.lock_failed();
        match &result {
            Ok(_) => failed.remove(vid),
            Err(CacheError::Unwanted { .. }) => false,
            Err(_) => failed.insert(vid.to_string()),
        };
        result
    }

    fn download_with_retries(
        &self,
        vid: &str,
        info: &ArchiveInfo,
        source: &(dyn Fn() -> Result<Download, ApiError> + Sync),
        partial: &Partial,
    ) -> Result<PathBuf, CacheError> {
        if let Some(size) = info.size.filter(|s| *s > self.limits.max_total_bytes) {
            tracing::warn!(
                "{}: not downloaded: it holds {size} bytes, more than --max-archive-size ({} bytes)",
                info.label,
                self.limits.max_total_bytes
            );
            return Err(CacheError::LargerThanLimit {
                archive: info.label.clone(),
                size,
                limit: self.limits.max_total_bytes,
            });
        }
        let listed = self.transfers.start(vid, info);
        let mut attempt = 1;
        loop {
            listed.restart(attempt);
            match self.attempt(vid, source, listed.transfer(), partial) {
                Ok(path) => return Ok(path),
                Err(failure) if failure.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::warn!(
                        "{}: download failed (attempt {attempt}), retrying: {failure}",
                        info.label
                    );
                    std::thread::sleep(RETRY_BACKOFF * attempt);
                    attempt += 1;
                }
                Err(failure) => {
                    tracing::warn!(
                        "{}: download failed (attempt {attempt}): {failure}",
                        info.label
                    );
                    return Err(failure.into_cache_error(&info.label, self.layout.root(), attempt));
                }
            }
        }
    }

    /// One attempt from scratch, in a fresh staging directory (deleted on failure by `Staging`'s drop).
    fn attempt(
        &self,
        vid: &str,
        source: &(dyn Fn() -> Result<Download, ApiError> + Sync),
        progress: Arc<Transfer>,
        partial: &Partial,
    ) -> Result<PathBuf, Failure> {
        let staging = self
            .layout
            .new_staging(vid)
            .map_err(|e| Failure::local("creating a staging directory", e))?;
        partial.begin(staging.tree());
        let download = source().map_err(|e| Failure::Api(Box::new(e)))?;
        let reports = extract::Reports {
            progress: Some(progress),
            partial: Some(partial.clone()),
        };
        let (tree, scratch) = (staging.tree(), staging.scratch());
        let extracted = extract::extract(download, &tree, &scratch, vid, &self.limits, reports)?;
        let meta = Meta::new(vid, extracted.bytes, extracted.files);
        staging
            .seal(&meta)
            .map_err(|e| Failure::local("writing the archive's metadata", e))?;
        self.publish(staging, &meta)
    }

    /// Starts the thread that makes new entries durable once they are `SYNC_DELAY` old; it ends with the cache.
    pub fn start_syncer(self: &Arc<Self>) {
        let cache = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("vm0fs-cache-sync".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SYNC_TICK);
                    let Some(cache) = cache.upgrade() else { return };
                    cache.sync_if_due();
                }
            });
        if let Err(e) = started {
            tracing::warn!(
                "cannot start the cache's sync thread ({e}); new entries are synced at unmount"
            );
        }
    }

    fn sync_if_due(&self) {
        let due = self
            .lock_unsynced()
            .first()
            .is_some_and(|(_, at)| at.elapsed() >= SYNC_DELAY);
        if due {
            self.make_durable();
        }
    }

    /// Syncs every entry published so far to disk (at unmount, and from the background thread). A failure is
    /// logged and the entries stay marked: a restart of the machine would then fetch them again.
    ///
    /// An entry is listed before its rename (see `publish`), so one published again while the sync runs (evicted,
    /// then fetched anew) is seen here, and keeps its marker: the sync may have missed its new files.
    pub fn make_durable(&self) {
        let started = Instant::now();
        if self.lock_unsynced().is_empty() {
            return;
        }
        let result = self.layout.sync().and_then(|()| {
            let mut unsynced = self.lock_unsynced();
            let again: HashSet<String> = unsynced
                .iter()
                .filter(|(_, at)| *at >= started)
                .map(|(v, _)| v.clone())
                .collect();
            let synced: Vec<String> = unsynced
                .iter()
                .filter(|(v, at)| *at < started && !again.contains(v))
                .map(|(v, _)| v.clone())
                .collect();
            self.layout.mark_synced(&synced)?;
            unsynced.retain(|(_, at)| *at >= started);
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(
                "could not sync the cached archives to disk: {e}; those published in the last minute are fetched \
                 again if the machine restarts first"
            );
        }
    }

    fn lock_unsynced(&self) -> MutexGuard<'_, Vec<(String, Instant)>> {
        self.unsynced.locked()
    }

    /// Makes a sealed staging directory the entry for its version, then evicts down to the budget.
    fn publish(&self, staging: Staging, meta: &Meta) -> Result<PathBuf, Failure> {
        let vid = meta.version_id.as_str();
        let trash = {
            let mut index = self.lock_index();
            if index.get(vid).is_some() && self.layout.tree(vid).is_dir() {
                // Made meanwhile by another way (a download and an adoption of one version): the first one stays,
                // so that no path handed out into it moves.
                drop(index);
                drop(staging);
                return Ok(self.layout.tree(vid));
            }
            // Listed before the rename: a sync that starts from here on keeps this entry's marker.
            self.lock_unsynced().push((vid.to_string(), Instant::now()));
            staging
                .publish(&self.layout, vid)
                .map_err(|e| Failure::local("moving the extracted archive into place", e))?;
            let entry = Entry {
                bytes: meta.bytes,
                touched: SystemTime::now(),
            };
            index.insert(vid, entry);
            self.evict(&mut index, Some(vid))
        };
        self.layout.sync_archives();
        trash.iter().for_each(|t| remove_any(t));
        if meta.bytes > self.max_bytes {
            tracing::warn!(
                version = vid,
                bytes = meta.bytes,
                max_bytes = self.max_bytes,
                "archive is larger than the whole cache; it is kept alone until the next archive is fetched"
            );
        }
        tracing::info!(
            version = vid,
            bytes = meta.bytes,
            files = meta.files,
            "archive cached"
        );
        Ok(self.layout.tree(vid))
    }

    /// Evicts least-recently-used entries (except `keep`) over budget: each is renamed out of `archives/` now,
    /// under the index lock; the returned trash paths are deleted by the caller after releasing it.
    fn evict(&self, index: &mut MutexGuard<'_, Index>, keep: Option<&str>) -> Vec<PathBuf> {
        let mut trash = Vec::new();
        for vid in index.evict_over(self.max_bytes, keep) {
            tracing::info!(version = %vid, "evicting archive from the cache");
            match self.layout.retire(&vid) {
                Ok(path) => trash.push(path),
                Err(e) => tracing::warn!(version = %vid, error = %e, "could not evict archive"),
            }
        }
        trash
    }

    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.locked()
    }

    fn lock_failed(&self) -> MutexGuard<'_, HashSet<String>> {
        self.failed.locked()
    }
}

impl std::fmt::Debug for ArchiveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bytes, archives) = self.usage();
        f.debug_struct("ArchiveCache")
            .field("dir", &self.layout.root())
            .field("max_bytes", &self.max_bytes)
            .field("limits", &self.limits)
            .field("bytes", &bytes)
            .field("archives", &archives)
            .finish()
    }
}

/// Runs `op` again when the flight it waited for stopped because everyone else gave up just as this caller joined
/// (`CacheError::Unwanted`), unless this caller has given up too.
fn again_if_unwanted<T>(op: impl Fn() -> Result<T, CacheError>) -> Result<T, CacheError> {
    loop {
        match op() {
            Err(CacheError::Unwanted { .. }) if !crate::caller::gave_up() => continue,
            result => return result,
        }
    }
}

/// Whether `rel` is a non-empty relative path of plain names (no `..`, no root, no `.`).
fn is_plain_relative(rel: &Path) -> bool {
    rel.components().next().is_some() && rel.components().all(|c| matches!(c, Component::Normal(_)))
}
