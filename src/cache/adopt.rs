//! Adopting a tree that is already on this machine as the cached archive of a version: after a volume is
//! published, its files are exactly the new version's, so they become that version's cache entry instead of being
//! downloaded again.
//!
//! The entry is made as an extraction is: in a fresh staging directory, sealed (`meta.json` written, marked unsynced
//! until the cache syncs it, as every entry), and only then renamed into `archives/` (`Staging::publish`), so a
//! crash leaves either nothing (the staging directory is deleted at the next `open`) or a whole entry. The files are hard links to where their bytes are
//! now, so adopting a large volume copies nothing:
//! - a file that is owner-writable is a staged file: it is linked, and given the mode an extracted file of the
//!   version has (CONTRACT.md 6.4: 0644 in the archive, stored without write bits, `file_mode`); an adoption
//!   given up before `finish` gives it its mode back, so it can be written again;
//! - a file with exactly that mode already is a file of another cache entry (never written): it is linked;
//! - anything else (a cached file of another mode, or a link refused by the file system) is copied.
//!
//! The links share inodes with the caller's files, so the caller must never write those files again once it has
//! called `finish`, and must make sure a crash before `finish` cannot lead to it either (the stage journals them
//! away first, see `crate::stage`). A file keeps its own mtime (when it was last written), where a download would
//! give the time the archive was made: the bytes are the version's, which is all a version id vouches for.
//!
//! The files' SHA-256, computed by the publish, are kept beside the tree (`hashes`), so that the next publish
//! over this version hashes only the files that changed: a file of a cache entry is never written.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::ArchiveCache;
use super::extract::file_mode;
use super::layout::{Meta, Staging, valid_version_id};

/// The mode every file of a version is archived with (CONTRACT.md 6.4).
const ARCHIVED_MODE: u32 = 0o644;

/// A sealed entry waiting for `finish`; given up (deleted, modes given back) when dropped before.
pub struct Adoption<'a> {
    cache: &'a ArchiveCache,
    staging: Option<Staging>,
    meta: Meta,
    /// Files linked whose mode was changed, with the mode to give back if the adoption is given up.
    relinked: Vec<(PathBuf, u32)>,
}

impl ArchiveCache {
    /// Builds and seals the entry of `version_id` from `files` (each file's path in the version, and where its
    /// bytes are now) and their SHA-256 (`hashes`, by path), without making it visible yet: see
    /// `Adoption::finish`. `None` when the version is cached already: nothing to adopt, and its hashes are kept
    /// if it had none (an archive downloaded, then published again unchanged).
    pub fn adopt(
        &self,
        version_id: &str,
        files: &[(String, PathBuf)],
        hashes: &HashMap<String, String>,
    ) -> io::Result<Option<Adoption<'_>>> {
        if !valid_version_id(version_id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{version_id:?} is not a version id"),
            ));
        }
        if self.lookup(version_id).is_some() {
            self.keep_hashes(version_id, hashes);
            return Ok(None);
        }
        let staging = self.layout.new_staging(version_id)?;
        let mut adoption = Adoption {
            cache: self,
            staging: None,
            meta: Meta::new(version_id, 0, 0),
            relinked: Vec::new(),
        };
        let tree = staging.tree();
        adoption.staging = Some(staging);
        let mut bytes = 0;
        for (rel, source) in files {
            bytes += adoption.place(&tree, rel, source)?;
        }
        adoption.meta = Meta::new(version_id, bytes, files.len() as u64);
        if let Some(staging) = &adoption.staging {
            staging.write_hashes(&serde_json::to_vec(hashes).map_err(io::Error::other)?)?;
            staging.seal(&adoption.meta)?;
        }
        Ok(Some(adoption))
    }
}

impl ArchiveCache {
    /// The SHA-256 of the files of cached version `version_id`, by path, where known (a tree adopted after a
    /// publish); empty otherwise.
    pub fn hashes(&self, version_id: &str) -> HashMap<String, String> {
        if !valid_version_id(version_id) {
            return HashMap::new();
        }
        fs::read(self.layout.hashes(version_id))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }
}

impl ArchiveCache {
    /// Writes the hashes of a cached version that has none (atomically: a file renamed into place). Failing only
    /// costs a later publish the hashing: logged.
    fn keep_hashes(&self, version_id: &str, hashes: &HashMap<String, String>) {
        let path = self.layout.hashes(version_id);
        if hashes.is_empty() || path.exists() {
            return;
        }
        let tmp = path.with_extension(format!("{:016x}.tmp", fastrand::u64(..)));
        let written = serde_json::to_vec(hashes)
            .map_err(io::Error::other)
            .and_then(|body| fs::write(&tmp, body))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            tracing::debug!(version = version_id, error = %e, "could not keep the hashes of a cached archive");
        }
    }
}

impl Adoption<'_> {
    /// Links (or copies) `source` to `rel` under `tree`; returns its size.
    fn place(&mut self, tree: &Path, rel: &str, source: &Path) -> io::Result<u64> {
        let rel_path = Path::new(rel);
        if !super::is_plain_relative(rel_path) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{rel:?} cannot name a file of a version"),
            ));
        }
        let dest = tree.join(rel_path);
        if let Some(parent) = dest.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        let meta = fs::metadata(source)?;
        let mode = meta.permissions().mode() & 0o7777;
        let archived = file_mode(ARCHIVED_MODE);
        // A source placed already (a second name of a staged file) is copied: a version's files are files of
        // their own, as a download of it gives them.
        let linked = (mode & 0o200 != 0 || mode == archived)
            && meta.nlink() == 1
            && fs::hard_link(source, &dest).is_ok();
        if !linked {
            fs::copy(source, &dest)?;
            fs::set_permissions(&dest, Permissions::from_mode(archived))?;
        } else if mode != archived {
            self.relinked.push((source.to_path_buf(), mode));
            fs::set_permissions(&dest, Permissions::from_mode(archived))?;
        }
        Ok(meta.len())
    }

    /// Makes the entry visible in the cache (the atomic rename); its tree's root, where the version's files are.
    pub fn finish(mut self) -> io::Result<PathBuf> {
        let Some(staging) = self.staging.take() else {
            return Err(io::Error::other("the adoption was already finished"));
        };
        self.relinked.clear();
        let vid = self.meta.version_id.clone();
        self.cache.lock_failed().remove(&vid);
        self.cache
            .publish(staging, &self.meta)
            .map_err(|f| io::Error::other(f.to_string()))
    }
}

impl Drop for Adoption<'_> {
    fn drop(&mut self) {
        for (path, mode) in self.relinked.drain(..) {
            if let Err(e) = fs::set_permissions(&path, Permissions::from_mode(mode)) {
                tracing::warn!(path = %path.display(), error = %e,
                    "could not give a staged file its mode back after a failed adoption");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, ExtractLimits};

    fn cache(dir: &Path) -> ArchiveCache {
        ArchiveCache::open(CacheConfig {
            dir: dir.join("cache"),
            max_bytes: 1 << 30,
            limits: ExtractLimits::default(),
        })
        .unwrap()
    }

    #[test]
    fn an_adopted_tree_is_cached_once_finished_and_never_before() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        fs::write(&staged, b"new bytes").unwrap();
        fs::set_permissions(&staged, Permissions::from_mode(0o600)).unwrap();
        let c = cache(dir.path());
        let vid = "ab".repeat(32);
        let files = vec![("d/e/f.txt".to_string(), staged.clone())];
        let hashes = HashMap::from([("d/e/f.txt".to_string(), "ab".repeat(32))]);
        let adoption = c
            .adopt(&vid, &files, &hashes)
            .unwrap()
            .expect("not cached yet");
        assert_eq!(c.lookup(&vid), None, "not visible before finish");
        let root = adoption.finish().unwrap();
        assert_eq!(c.lookup(&vid), Some(root.clone()));
        assert_eq!(fs::read(root.join("d/e/f.txt")).unwrap(), b"new bytes");
        let mode = fs::metadata(root.join("d/e/f.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o444);
        assert_eq!(c.hashes(&vid), hashes);
        assert!(
            c.adopt(&vid, &files, &hashes).unwrap().is_none(),
            "cached already"
        );
        drop(c);
        // A new cache on the same directory finds the entry complete.
        let c = cache(dir.path());
        assert_eq!(c.lookup(&vid), Some(root));
    }

    #[test]
    fn an_adoption_given_up_leaves_nothing_and_gives_modes_back() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("staged");
        fs::write(&staged, b"bytes").unwrap();
        fs::set_permissions(&staged, Permissions::from_mode(0o600)).unwrap();
        let c = cache(dir.path());
        let vid = "cd".repeat(32);
        let adoption = c
            .adopt(&vid, &[("f".to_string(), staged.clone())], &HashMap::new())
            .unwrap()
            .unwrap();
        drop(adoption);
        assert_eq!(c.lookup(&vid), None);
        let mode = fs::metadata(&staged).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path().join("cache/staging"))
                .unwrap()
                .count(),
            0
        );
        assert!(
            c.adopt(&vid, &[("../escape".to_string(), staged)], &HashMap::new())
                .is_err(),
            "a path leaving the tree is refused"
        );
    }
}
