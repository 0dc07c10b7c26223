//! Entries served while their archive still downloads (`ArchiveCache::entry`): a known path as soon as it is
//! complete, absence and listings only at the end, and nothing half-written or outside the tree, ever.
//!
//! The source is gated: it serves the archive up to a point (the end of a first gzip member holding the first
//! entries) and then blocks until the test opens the gate, so "still downloading" is a state, not a race.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ScopedJoinHandle;
use std::time::Duration;

use super::{Fixture, Tar, gzip, info, list_tree, vid};
use crate::api::{ApiError, Download};
use crate::cache::{ArchiveCache, CacheError, DownloadSource, EntryPath};

/// How long a call must stay blocked to count as waiting.
const STILL_WAITING: Duration = Duration::from_millis(300);

/// An archive served up to `gate` bytes, then held until `open`.
struct Gated {
    bytes: Arc<Vec<u8>>,
    gate: usize,
    opened: Arc<(Mutex<bool>, Condvar)>,
}

impl Gated {
    /// `head` and `tail` are tar bytes, gzipped as two members so that the head inflates completely by itself.
    fn new(head: &[u8], tail: &[u8]) -> Gated {
        Gated::with_tail(head, gzip(tail))
    }

    /// The head as a gzip member, then `tail` as it is (possibly not gzip at all).
    fn with_tail(head: &[u8], tail: Vec<u8>) -> Gated {
        let mut bytes = gzip(head);
        let gate = bytes.len();
        bytes.extend(tail);
        Gated {
            bytes: Arc::new(bytes),
            gate,
            opened: Arc::default(),
        }
    }

    fn open(&self) {
        let (lock, cv) = &*self.opened;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }

    fn source(&self) -> Arc<DownloadSource> {
        let (bytes, gate, opened) = (self.bytes.clone(), self.gate, self.opened.clone());
        Arc::new(move || -> Result<Download, ApiError> {
            Ok(Download::TarGz(Box::new(GatedReader {
                bytes: bytes.clone(),
                pos: 0,
                gate,
                opened: opened.clone(),
            })))
        })
    }
}

struct GatedReader {
    bytes: Arc<Vec<u8>>,
    pos: usize,
    gate: usize,
    opened: Arc<(Mutex<bool>, Condvar)>,
}

impl Read for GatedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.gate {
            let (lock, cv) = &*self.opened;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
        }
        let end = if self.pos < self.gate {
            self.gate
        } else {
            self.bytes.len()
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The tar bytes of `head` alone (no end blocks), and of the whole archive after it, split at that point.
fn split(head: &mut Tar, rest: impl FnOnce(&mut Tar)) -> (Vec<u8>, Vec<u8>) {
    let at = head.builder.get_ref().len();
    rest(head);
    let all = head.tar();
    (all[..at].to_vec(), all[at..].to_vec())
}

fn entry(
    cache: &Arc<ArchiveCache>,
    v: &str,
    rel: &str,
    gated: &Gated,
) -> Result<EntryPath, CacheError> {
    cache.entry(v, &info(), Path::new(rel), gated.source())
}

fn assert_still_waiting<T>(call: &ScopedJoinHandle<'_, T>, what: &str) {
    std::thread::sleep(STILL_WAITING);
    assert!(
        !call.is_finished(),
        "{what} was answered before the archive was complete"
    );
}

const BIG: usize = 256 << 10;

#[test]
fn a_complete_entry_is_served_while_the_rest_of_its_archive_downloads() {
    let fx = Fixture::new();
    let cache = Arc::new(fx.open(1 << 30));
    let v = vid(1);
    let mut head = Tar::new();
    head.file("a.txt", b"first").file("d/b.txt", b"second");
    let (head, tail) = split(&mut head, |t| {
        t.file("z.bin", &vec![7u8; BIG]);
    });
    let gated = Gated::new(&head, &tail);

    let a = entry(&cache, &v, "a.txt", &gated).unwrap();
    assert!(a.early, "{a:?}");
    assert_eq!(fs::read(&a.path).unwrap(), b"first");
    let b = entry(&cache, &v, "d/b.txt", &gated).unwrap();
    assert_eq!(fs::read(&b.path).unwrap(), b"second");
    assert!(entry(&cache, &v, "d", &gated).unwrap().early);
    assert_eq!(cache.usage(), (0, 0), "nothing is cached before the end");
    assert_eq!(cache.status().downloads.len(), 1);

    std::thread::scope(|s| {
        let missing = s.spawn(|| entry(&cache, &v, "not-there", &gated));
        let big = s.spawn(|| entry(&cache, &v, "z.bin", &gated));
        let listing = s.spawn(|| cache.fetch(&v, &info(), &*gated.source()));
        assert_still_waiting(&missing, "a missing name");
        assert_still_waiting(&big, "an entry not yet extracted");
        assert_still_waiting(&listing, "the whole tree");
        gated.open();
        let missing = missing.join().unwrap().unwrap();
        assert!(!missing.early && !missing.path.exists(), "{missing:?}");
        assert!(big.join().unwrap().is_ok());
        let root = listing.join().unwrap().unwrap();
        assert_eq!(list_tree(&root), ["a.txt", "d/", "d/b.txt", "z.bin"]);
    });
    let big = entry(&cache, &v, "z.bin", &gated).unwrap();
    assert_eq!(fs::read(&big.path).unwrap().len(), BIG);
    let a = entry(&cache, &v, "a.txt", &gated).unwrap();
    assert!(!a.early && a.path.starts_with(fx.cache_dir().join("archives")));
    assert_eq!(fs::read(&a.path).unwrap(), b"first");
    fx.assert_staging_empty();
}

#[test]
fn a_failure_after_an_early_entry_leaves_its_file_whole_and_the_cache_empty() {
    let fx = Fixture::new();
    let cache = Arc::new(fx.open(1 << 30));
    let v = vid(2);
    let mut head = Tar::new();
    head.file("a.txt", b"whole file");
    let (head, _) = split(&mut head, |t| {
        t.file("z.bin", b"never arrives");
    });
    // After the first member: not gzip. Corrupt, so not retried.
    let gated = Gated::with_tail(&head, b"this is not a gzip member at all".to_vec());

    let a = entry(&cache, &v, "a.txt", &gated).unwrap();
    assert!(a.early);
    let mut open = fs::File::open(&a.path).unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| entry(&cache, &v, "z.bin", &gated));
        assert_still_waiting(&waiting, "an entry after the failure point");
        gated.open();
        let err = waiting.join().unwrap().unwrap_err();
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err:?}");
    });
    let mut read = Vec::new();
    open.read_to_end(&mut read).unwrap();
    assert_eq!(read, b"whole file", "an open file keeps its complete bytes");
    assert_eq!(cache.usage(), (0, 0));
    assert!(cache.lookup(&v).is_none());
    assert!(!a.path.exists(), "the staging tree is gone");
    fx.assert_staging_empty();

    // Asked again, the head is not served again: the version is served only whole until a download succeeds.
    let again = Gated::with_tail(&head, b"still not gzip".to_vec());
    std::thread::scope(|s| {
        let retry = s.spawn(|| entry(&cache, &v, "a.txt", &again));
        assert_still_waiting(&retry, "the head of an archive that failed");
        again.open();
        let err = retry.join().unwrap().unwrap_err();
        assert!(matches!(err, CacheError::Corrupt { .. }), "{err:?}");
    });
    let good = Gated::new(&head, &Tar::new().tar());
    good.open();
    assert!(cache.fetch(&v, &info(), &*good.source()).is_ok());
}

/// A name that repeats is served as it stands (the earlier copy, complete) until the later copy is complete and
/// renamed over it; the final tree keeps the last copy, as extraction always did. A path through a symlink is
/// never served early: the walk enters real directories only.
#[test]
fn repeated_names_and_symlinks_are_never_served_half_made_or_followed() {
    let fx = Fixture::new();
    let cache = Arc::new(fx.open(1 << 30));
    let v = vid(3);
    let mut head = Tar::new();
    head.file("dup", b"first copy")
        .dir("d")
        .file("d/f", b"in d")
        .symlink("link", "d");
    let (head, tail) = split(&mut head, |t| {
        t.file("dup", &vec![2u8; BIG]);
    });
    let gated = Gated::new(&head, &tail);

    let dup = entry(&cache, &v, "dup", &gated).unwrap();
    assert!(dup.early);
    assert_eq!(fs::read(&dup.path).unwrap(), b"first copy");
    let link = entry(&cache, &v, "link", &gated).unwrap();
    assert!(link.early && fs::symlink_metadata(&link.path).unwrap().is_symlink());
    std::thread::scope(|s| {
        let through = s.spawn(|| entry(&cache, &v, "link/f", &gated));
        assert_still_waiting(&through, "a path through a symlink");
        gated.open();
        let through = through.join().unwrap().unwrap();
        assert!(!through.early);
    });
    let root = cache.fetch(&v, &info(), &*gated.source()).unwrap();
    assert_eq!(fs::read(root.join("dup")).unwrap(), vec![2u8; BIG]);
    assert_eq!(list_tree(&root), ["d/", "d/f", "dup", "link"]);
    let entry_dir = root.parent().unwrap();
    let mut beside: Vec<_> = fs::read_dir(entry_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(
        beside,
        ["meta.json", "tree", "unsynced"],
        "no scratch file is left"
    );
    fx.assert_outside_untouched();
}

#[test]
fn many_readers_of_one_entry_share_one_download() {
    let fx = Fixture::new();
    let cache = Arc::new(fx.open(1 << 30));
    let v = vid(4);
    let mut head = Tar::new();
    head.file("a.txt", b"first");
    let (head, tail) = split(&mut head, |t| {
        t.file("z.bin", b"last");
    });
    let gated = Gated::new(&head, &tail);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted: Arc<DownloadSource> = {
        let (calls, inner) = (calls.clone(), gated.source());
        Arc::new(move || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            inner()
        })
    };
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| cache.entry(&v, &info(), Path::new("a.txt"), counted.clone())))
            .collect();
        for reader in readers {
            assert_eq!(
                fs::read(reader.join().unwrap().unwrap().path).unwrap(),
                b"first"
            );
        }
    });
    gated.open();
    cache.fetch(&v, &info(), &*counted).unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}
