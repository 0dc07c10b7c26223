//! Tests of the archive cache, without network: archives are built in memory, hostile ones from raw headers.
//!
//! Every test puts the cache directory inside a temp dir next to an `outside/` directory holding a victim file,
//! so that "nothing was written outside the cache" is a check on a real sibling directory.

// Sources return `Result<Download, ApiError>`, the signature `fetch` takes; `ApiError`'s size is the api module's.
#![allow(clippy::result_large_err)]

mod early;
mod hostile;
mod lifecycle;

use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

use super::{ArchiveCache, CacheConfig, ExtractLimits};
use crate::api::{ApiError, Download};

pub(super) const VICTIM: &[u8] = b"original victim content\n";

/// A temp dir with `cache/` (not yet created) and `outside/victim.txt`.
pub(super) struct Fixture {
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        fs::write(tmp.path().join("outside/victim.txt"), VICTIM).unwrap();
        Fixture { tmp }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    pub fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    pub fn open(&self, max_bytes: u64) -> ArchiveCache {
        self.open_with(max_bytes, ExtractLimits::default())
    }

    pub fn open_with(&self, max_bytes: u64, limits: ExtractLimits) -> ArchiveCache {
        ArchiveCache::open(CacheConfig {
            dir: self.cache_dir(),
            max_bytes,
            limits,
        })
        .unwrap()
    }

    /// Nothing appeared in, or changed in, `outside/`, nor anywhere else in the temp dir but `cache/`.
    pub fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["victim.txt"],
            "something was written outside the cache"
        );
        assert_eq!(fs::read(self.outside().join("victim.txt")).unwrap(), VICTIM);
        let mut top: Vec<_> = fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert!(
            top.iter().all(|n| n == "cache" || n == "outside"),
            "{top:?}"
        );
    }

    /// Staging is empty (no half-extracted archive left behind).
    pub fn assert_staging_empty(&self) {
        let left: Vec<_> = fs::read_dir(self.cache_dir().join("staging"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "staging leftovers: {left:?}");
    }
}

/// A full-length version id made from a number.
pub(super) fn vid(n: u64) -> String {
    format!("{n:064x}")
}

/// A tar archive built entry by entry, with raw names so that hostile archives can be expressed.
pub(super) struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends an entry with exactly these name and link bytes (each at most 100 bytes).
    pub fn raw(
        &mut self,
        name: &[u8],
        kind: EntryType,
        mode: u32,
        link: &[u8],
        data: &[u8],
        mtime: u64,
    ) -> &mut Tar {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(mtime);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            EntryType::Regular,
            0o644,
            b"",
            data,
            1_600_000_000,
        )
    }

    pub fn dir(&mut self, name: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            EntryType::Directory,
            0o755,
            b"",
            b"",
            1_600_000_000,
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            EntryType::Symlink,
            0o777,
            target.as_bytes(),
            b"",
            0,
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            EntryType::Link,
            0o644,
            target.as_bytes(),
            b"",
            0,
        )
    }

    /// A PAX extended header (`x`) applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let mut body = Vec::new();
        for (key, value) in records {
            body.extend(pax_record(key, value));
        }
        self.raw(b"PaxHeaders/x", EntryType::XHeader, 0o644, b"", &body, 0)
    }

    pub fn tar(&mut self) -> Vec<u8> {
        self.builder.finish().unwrap();
        self.builder.get_ref().clone()
    }

    pub fn gz(&mut self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A source serving `bytes` as a tar.gz download, counting calls.
pub(super) struct Source {
    pub bytes: Arc<Vec<u8>>,
    pub calls: AtomicUsize,
    /// Compressed bytes handed out so far (over all calls).
    pub read: Arc<AtomicU64>,
}

impl Source {
    pub fn new(bytes: Vec<u8>) -> Source {
        Source {
            bytes: Arc::new(bytes),
            calls: AtomicUsize::new(0),
            read: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn download(&self) -> Result<Download, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let reader = CountingReader {
            inner: Cursor::new(self.bytes.clone()),
            read: self.read.clone(),
        };
        Ok(Download::TarGz(Box::new(reader)))
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

struct CountingReader {
    inner: Cursor<Arc<Vec<u8>>>,
    read: Arc<AtomicU64>,
}

impl Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let pos = self.inner.position() as usize;
        let data = self.inner.get_ref();
        let n = buf.len().min(data.len().saturating_sub(pos));
        buf[..n].copy_from_slice(&data[pos..pos + n]);
        self.inner.set_position((pos + n) as u64);
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

/// Fetches `bytes` as version `v` into `cache`.
pub(super) fn fetch(
    cache: &ArchiveCache,
    v: &str,
    bytes: Vec<u8>,
) -> Result<PathBuf, super::CacheError> {
    let source = Source::new(bytes);
    cache.fetch(v, &info(), &|| source.download())
}

/// Every path under `root` (relative, sorted), not following symlinks.
pub(super) fn list_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_dir = fs::symlink_metadata(&path).unwrap().is_dir();
        out.push(if is_dir { format!("{rel}/") } else { rel });
        if is_dir {
            walk(root, &path, out);
        }
    }
}

/// How the tests name the archives they fetch.
pub(super) fn info() -> super::ArchiveInfo {
    super::ArchiveInfo {
        label: "volumes/test".into(),
        size: None,
    }
}
