//! The metadata a mount has seen, kept in the cache directory so that cached archives stay reachable across a
//! remount while the API is down.
//!
//! A cached archive is found through metadata: a storage name gives its id, the id its head version, a pinned
//! prefix a version list; a run's files come from its detail, metrics and output. That metadata lived only in
//! memory, so after a remount with the API down nothing cached could be reached. Each answer the API gives is now
//! also written to `<cache>/meta/<kind>/<key>.json` (one small JSON file per object, written to a temporary name
//! and renamed, so a crash leaves the old file or the new one), and read back only when the API cannot be reached
//! and memory has nothing: the same rule as for what is in memory (a stale value served during an outage, never in
//! place of an answer the API gave). A file is rewritten only when its content changes (a hash of the last one
//! written is kept), so a listing refreshed every few seconds costs no disk writes. Files that cannot be written
//! or read are logged and skipped: this is a fallback, never a reason to fail a request. Keys become file names
//! through hex, so no id can name a path.

use crate::sync::Locked;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub struct Saved {
    dir: PathBuf,
    /// The hash of what each file holds, as last written by this process.
    written: Mutex<HashMap<PathBuf, u64>>,
}

impl Saved {
    /// The saved metadata of the cache directory `cache_dir`.
    pub fn new(cache_dir: &Path) -> Saved {
        Saved {
            dir: cache_dir.join("meta"),
            written: Mutex::default(),
        }
    }

    /// Whether anything was ever saved here (a mount with the API down has something to show).
    pub fn holds_anything(cache_dir: &Path) -> bool {
        std::fs::read_dir(cache_dir.join("meta"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    }

    fn path(&self, kind: &str, key: &str) -> PathBuf {
        self.dir
            .join(kind)
            .join(format!("{}.json", hex(key.as_bytes())))
    }

    /// Keeps `value` as the last answer for `kind`/`key`.
    pub fn save<V: Serialize>(&self, kind: &str, key: &str, value: &V) {
        let path = self.path(kind, key);
        let body = match serde_json::to_vec(value) {
            Ok(body) => body,
            Err(e) => return tracing::debug!("not saving {kind}/{key}: {e}"),
        };
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let hash = hasher.finish();
        let mut written = self.written.locked();
        if written.get(&path) == Some(&hash) {
            return;
        }
        match write_atomically(&path, &body) {
            Ok(()) => {
                written.insert(path, hash);
            }
            Err(e) => tracing::warn!("could not save {} for offline use: {e}", path.display()),
        }
    }

    /// The last answer saved for `kind`/`key`, if any.
    pub fn load<V: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<V> {
        let path = self.path(kind, key);
        let body = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&body) {
            Ok(value) => {
                tracing::info!(
                    "the API is unreachable: serving {kind}/{key} as saved in the cache directory"
                );
                Some(value)
            }
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", path.display());
                None
            }
        }
    }
}

/// Lowercase hex of `bytes`: a file name no key can turn into a path.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Private like the rest of the cache: the saved answers name the owner's runs, prompts and storages.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let temp = dir.join(format!(".{:016x}.tmp", fastrand::u64(..)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut f| f.write_all(body));
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_value_reads_back_and_an_unchanged_one_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Saved::holds_anything(dir.path()));
        let saved = Saved::new(dir.path());
        saved.save("storages", "volume", &vec!["a".to_string()]);
        assert!(Saved::holds_anything(dir.path()));
        let path = saved.path("storages", "volume");
        std::fs::write(&path, b"[\"changed on disk\"]").unwrap();
        saved.save("storages", "volume", &vec!["a".to_string()]);
        assert_eq!(
            saved.load::<Vec<String>>("storages", "volume"),
            Some(vec!["changed on disk".to_string()]),
            "the same value is not written again"
        );
        assert_eq!(saved.load::<Vec<String>>("storages", "../x"), None);
        assert!(
            saved
                .path("runs", "../../etc")
                .starts_with(dir.path().join("meta/runs"))
        );
    }
}
