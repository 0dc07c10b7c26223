//! The core against the in-memory API of `api::fake`: the tree, its contents and its errors, without FUSE or
//! HTTP. `tree.rs` checks what the namespaces show, `lifetimes.rs` how long inode numbers live, `failures.rs`
//! what a failing API and a moving head do to the tree.

mod failures;
mod lifetimes;
mod tree;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::{FsConfig, ROOT_INO, Vm0Fs};
use crate::api::Vm0Api;
use crate::api::fake::FakeApi;
use crate::cache::{ArchiveCache, CacheConfig, ExtractLimits};

struct Harness {
    fs: Arc<Vm0Fs>,
    api: Arc<FakeApi>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    harness_with_ttl(Duration::from_secs(60))
}

fn harness_with_ttl(metadata_ttl: Duration) -> Harness {
    let api = Arc::new(FakeApi::sample());
    harness_on(api.clone(), api, metadata_ttl)
}

/// A core over `api` (the fake itself, or a wrapper of it), with `fake` kept for the tests to look into.
fn harness_on(api: Arc<dyn Vm0Api>, fake: Arc<FakeApi>, metadata_ttl: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArchiveCache::open(CacheConfig {
        dir: dir.path().join("cache"),
        max_bytes: 1 << 30,
        limits: ExtractLimits::default(),
    })
    .unwrap();
    let config = FsConfig {
        metadata_ttl,
        uid: 1,
        gid: 1,
        panic_on_lookup: None,
        allow_other: false,
        mountpoint: "/mnt/vm0".into(),
        api_url: "http://fake".into(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 1 << 30,
    };
    let fs = Arc::new(Vm0Fs::new(api, Arc::new(cache), config));
    Harness {
        fs,
        api: fake,
        _dir: dir,
    }
}

impl Harness {
    fn path(&self, path: &str) -> Result<u64, i32> {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self
                .fs
                .lookup(ino, OsStr::new(part))
                .map_err(|e| e.errno)?
                .ino;
        }
        Ok(ino)
    }

    fn names(&self, path: &str) -> Vec<String> {
        let fh = self.fs.opendir(self.path(path).unwrap()).unwrap();
        let names = self
            .all_entries(fh)
            .into_iter()
            .map(|(_, e)| e.name.to_string_lossy().into_owned());
        let names = names.filter(|n| n != "." && n != "..").collect();
        self.fs.releasedir(fh);
        names
    }

    /// The names a READDIRPLUS reply with room for `room` entries takes from the start of listing `fh`.
    /// Asks again from where the last answer ended until one adds nothing, as the kernel does (a first listing
    /// of `runs/` grows while it is read).
    fn plus_names(&self, fh: u64, room: usize) -> Vec<String> {
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let before = names.len();
            self.fs
                .readdirplus(fh, offset, |next, entry, attr| {
                    assert_eq!(attr.ino, entry.ino);
                    if names.len() == room {
                        return true;
                    }
                    names.push(entry.name.to_string_lossy().into_owned());
                    offset = next;
                    false
                })
                .unwrap();
            if names.len() == before || names.len() == room {
                return names;
            }
        }
    }

    /// Every entry of an open listing, reading on until its end.
    fn all_entries(&self, fh: u64) -> Vec<(u64, super::DirEntry)> {
        let mut entries = Vec::new();
        loop {
            let more = self.fs.readdir(fh, entries.len() as u64).unwrap();
            if more.is_empty() {
                return entries;
            }
            entries.extend(more);
        }
    }

    /// The inode number `name` in `parent` has in a listing of `parent` (without looking it up).
    fn listed_ino(&self, parent: u64, name: &str) -> u64 {
        let fh = self.fs.opendir(parent).unwrap();
        let entries = self.all_entries(fh);
        self.fs.releasedir(fh);
        entries
            .into_iter()
            .find(|(_, e)| e.name == name)
            .map(|(_, e)| e.ino)
            .unwrap()
    }

    fn read(&self, path: &str) -> Vec<u8> {
        let opened = self
            .fs
            .open(self.path(path).unwrap(), libc::O_RDONLY, std::process::id())
            .unwrap();
        let data = self.fs.read(opened.fh, 0, 1 << 20).unwrap();
        self.fs.release(opened.fh).unwrap();
        data
    }
}
