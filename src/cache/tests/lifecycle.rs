//! Normal extraction, retries, single-flight, LRU eviction, persistence across `open`, and error mapping.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::EntryType;

use super::{Fixture, Source, Tar, fetch, info, list_tree, vid};
use crate::api::{ApiError, Download, DownloadFile};
use crate::cache::error::Failure;
use crate::cache::{ArchiveCache, CacheConfig, CacheError, ExtractLimits};

fn mode(path: &std::path::Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn mtime(path: &std::path::Path) -> u64 {
    let t = fs::symlink_metadata(path).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn extracts_a_normal_archive_with_modes_and_times() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .raw(b"./", EntryType::Directory, 0o755, b"", b"", 1_500_000_000)
        .raw(
            b"data/",
            EntryType::Directory,
            0o700,
            b"",
            b"",
            1_500_000_001,
        )
        .raw(
            b"data/input.csv",
            EntryType::Regular,
            0o644,
            b"",
            b"a,b\n1,2\n",
            1_600_000_000,
        )
        .raw(
            b"data/deep/er/x.bin",
            EntryType::Regular,
            0o600,
            b"",
            &[1, 2, 3],
            1_600_000_001,
        )
        .raw(
            "données/résumé.txt".as_bytes(),
            EntryType::Regular,
            0o644,
            b"",
            "é".as_bytes(),
            1_600_000_002,
        )
        .raw(
            "日本語.md".as_bytes(),
            EntryType::Regular,
            0o644,
            b"",
            b"# hi",
            1_600_000_003,
        )
        .raw(b"empty", EntryType::Regular, 0o644, b"", b"", 1_600_000_004)
        .raw(
            b"bin/run.sh",
            EntryType::Regular,
            0o755,
            b"",
            b"#!/bin/sh\n",
            1_600_000_005,
        )
        .raw(
            b"shared/",
            EntryType::Directory,
            0o750,
            b"",
            b"",
            1_500_000_002,
        )
        .raw(
            b"bin/up",
            EntryType::Symlink,
            0o777,
            b"../empty",
            b"",
            1_600_000_006,
        )
        .raw(
            b"bin/here",
            EntryType::Symlink,
            0o777,
            b"run.sh",
            b"",
            1_600_000_007,
        )
        .gz();
    let tree = fetch(&cache, &vid(1), gz).unwrap();
    assert_eq!(
        list_tree(&tree),
        [
            "bin/",
            "bin/here",
            "bin/run.sh",
            "bin/up",
            "data/",
            "data/deep/",
            "data/deep/er/",
            "data/deep/er/x.bin",
            "data/input.csv",
            "donn\u{e9}es/",
            "donn\u{e9}es/r\u{e9}sum\u{e9}.txt",
            "empty",
            "shared/",
            "日本語.md"
        ]
    );
    assert_eq!(
        fs::read(tree.join("data/input.csv")).unwrap(),
        b"a,b\n1,2\n"
    );
    assert_eq!(
        fs::read(tree.join("données/résumé.txt")).unwrap(),
        "é".as_bytes()
    );
    assert_eq!(fs::read(tree.join("empty")).unwrap(), b"");
    assert_eq!(mode(&tree.join("data/input.csv")), 0o444);
    assert_eq!(mode(&tree.join("data/deep/er/x.bin")), 0o400);
    assert_eq!(mode(&tree.join("bin/run.sh")), 0o555);
    assert_eq!(mode(&tree.join("data")) & 0o700, 0o700);
    assert_eq!(mtime(&tree.join("data/input.csv")), 1_600_000_000);
    assert_eq!(mtime(&tree.join("日本語.md")), 1_600_000_003);
    assert_eq!(mtime(&tree.join("data")), 1_500_000_001);
    // A directory keeps its read and search bits (always owner-rwx); a symlink its own time.
    assert_eq!(mode(&tree.join("shared")), 0o750);
    assert_eq!(mode(&tree.join("data")), 0o700);
    assert_eq!(mtime(&tree.join("shared")), 1_500_000_002);
    let link_time = |p: &str| fs::symlink_metadata(tree.join(p)).unwrap().mtime() as u64;
    assert_eq!(link_time("bin/up"), 1_600_000_006);
    assert_eq!(link_time("bin/here"), 1_600_000_007);
    let content = 8 + 3 + "é".len() as u64 + 4 + 10;
    assert_eq!(cache.usage(), (content, 1));
    assert_eq!(cache.lookup(&vid(1)), Some(tree.clone()));
    assert_eq!(
        tree,
        fx.cache_dir().join("archives").join(vid(1)).join("tree")
    );
    assert!(
        fx.cache_dir()
            .join("archives")
            .join(vid(1))
            .join("meta.json")
            .is_file()
    );
    fx.assert_staging_empty();
    fx.assert_outside_untouched();
}

#[test]
fn invalid_version_ids_are_refused() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let source = Source::new(Tar::new().file("f", b"x").gz());
    for bad in [
        "../../etc",
        "ABCDEF12",
        "abc",
        "",
        &"a".repeat(65),
        "abcdefg1",
        "abcdef12/x",
    ] {
        let err = cache
            .fetch(bad, &info(), &|| source.download())
            .unwrap_err();
        assert!(
            matches!(err, CacheError::InvalidVersionId { .. }),
            "{bad}: {err}"
        );
        assert_eq!(err.errno(), libc::EINVAL);
        assert_eq!(cache.lookup(bad), None);
    }
    assert_eq!(source.calls(), 0);
    assert!(
        cache
            .fetch("abcdef12", &info(), &|| source.download())
            .is_ok()
    );
}

#[test]
fn a_truncated_download_is_retried_then_fails_with_eio_and_leaves_nothing() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let mut gz = Tar::new().file("a", &[5u8; 100_000]).file("b", b"bbb").gz();
    gz.truncate(gz.len() * 2 / 3);
    let source = Source::new(gz);
    let err = cache
        .fetch(&vid(2), &info(), &|| source.download())
        .unwrap_err();
    assert!(
        matches!(err, CacheError::DownloadFailed { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(source.calls(), 3);
    assert_eq!(cache.usage(), (0, 0));
    assert_eq!(cache.lookup(&vid(2)), None);
    assert_eq!(
        fs::read_dir(fx.cache_dir().join("archives"))
            .unwrap()
            .count(),
        0
    );
    fx.assert_staging_empty();
}

#[test]
fn a_stream_cut_after_the_last_tar_block_is_still_noticed() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let mut gz = Tar::new().file("a", b"complete content").gz();
    gz.truncate(gz.len() - 4); // the gzip trailer's length field is missing
    let err = fetch(&cache, &vid(3), gz).unwrap_err();
    assert!(matches!(err, CacheError::DownloadFailed { .. }), "{err}");
    assert_eq!(cache.usage(), (0, 0));
}

/// A reader that fails with a connection reset after `after` bytes.
struct Resetting {
    inner: io::Cursor<Vec<u8>>,
    after: u64,
}

impl Read for Resetting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inner.position() >= self.after {
            return Err(io::Error::from(io::ErrorKind::ConnectionReset));
        }
        let room = (self.after - self.inner.position()) as usize;
        let len = buf.len().min(room);
        self.inner.read(&mut buf[..len])
    }
}

#[test]
fn a_source_that_fails_once_then_succeeds_is_retried() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new().file("a", &[9u8; 200_000]).gz();
    let calls = AtomicUsize::new(0);
    let source = || -> Result<Download, ApiError> {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 => Err(ApiError::transport(
                "GET /v1/volumes/x/download",
                "connection refused".into(),
            )),
            1 => Ok(Download::TarGz(Box::new(Resetting {
                inner: io::Cursor::new(gz.clone()),
                after: 100,
            }))),
            _ => Ok(Download::TarGz(Box::new(io::Cursor::new(gz.clone())))),
        }
    };
    let tree = cache.fetch(&vid(4), &info(), &source).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(fs::read(tree.join("a")).unwrap().len(), 200_000);
    fx.assert_staging_empty();
}

#[test]
fn a_non_retryable_api_error_keeps_its_errno_and_is_not_retried() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let calls = AtomicUsize::new(0);
    let source = || -> Result<Download, ApiError> {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(ApiError::http(
            "GET /v1/volumes/x/download",
            404,
            None,
            "not found".into(),
        ))
    };
    let err = cache.fetch(&vid(5), &info(), &source).unwrap_err();
    assert!(matches!(err, CacheError::Api { .. }), "{err}");
    assert_eq!(err.errno(), libc::ENOENT);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let source = || -> Result<Download, ApiError> {
        Err(ApiError::http(
            "GET /v1/volumes/x/download",
            503,
            None,
            "unavailable".into(),
        ))
    };
    let err = cache.fetch(&vid(5), &info(), &source).unwrap_err();
    assert!(
        matches!(err, CacheError::DownloadFailed { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(err.errno(), libc::EIO);
}

#[test]
fn twenty_threads_fetching_one_version_download_it_once() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let source = Source::new(Tar::new().file("a", b"shared").gz());
    let slow = || {
        std::thread::sleep(Duration::from_millis(200));
        source.download()
    };
    let paths: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| cache.fetch(&vid(6), &info(), &slow)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(source.calls(), 1);
    assert!(paths.iter().all(|p| p == &paths[0]));
}

#[test]
fn waiters_share_a_failure_and_the_next_call_tries_again() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let calls = AtomicUsize::new(0);
    let failing = || -> Result<Download, ApiError> {
        calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        Err(ApiError::http(
            "GET /v1/volumes/x/download",
            403,
            None,
            "forbidden".into(),
        ))
    };
    let errors: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..5)
            .map(|_| s.spawn(|| cache.fetch(&vid(7), &info(), &failing)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_err())
            .collect()
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(errors.iter().all(|e| e.errno() == libc::EACCES));
    let source = Source::new(Tar::new().file("a", b"x").gz());
    assert!(cache.fetch(&vid(7), &info(), &|| source.download()).is_ok());
}

#[test]
fn lookup_of_a_cached_version_answers_while_another_downloads() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    fetch(&cache, &vid(8), Tar::new().file("a", b"x").gz()).unwrap();
    let source = Source::new(Tar::new().file("b", b"y").gz());
    let slow = || {
        std::thread::sleep(Duration::from_millis(2000));
        source.download()
    };
    std::thread::scope(|s| {
        let downloading = s.spawn(|| cache.fetch(&vid(9), &info(), &slow));
        std::thread::sleep(Duration::from_millis(100));
        let start = std::time::Instant::now();
        assert!(cache.lookup(&vid(8)).is_some());
        assert!(
            start.elapsed() < Duration::from_millis(100),
            "lookup waited"
        );
        // Another version downloads and completes while the slow one is still in progress.
        assert!(fetch(&cache, &vid(10), Tar::new().file("c", b"z").gz()).is_ok());
        assert!(
            !downloading.is_finished(),
            "the second download waited for the first"
        );
        downloading.join().unwrap().unwrap();
    });
    assert_eq!(cache.usage().1, 3);
}

fn archive_of(bytes: usize) -> Vec<u8> {
    Tar::new().file("content", &vec![1u8; bytes]).gz()
}

#[test]
fn lru_eviction_by_bytes_keeps_the_recently_used_and_the_one_just_inserted() {
    let fx = Fixture::new();
    let cache = fx.open(25_000);
    fetch(&cache, &vid(1), archive_of(10_000)).unwrap();
    fetch(&cache, &vid(2), archive_of(10_000)).unwrap();
    assert!(cache.lookup(&vid(1)).is_some()); // 1 is now more recent than 2
    fetch(&cache, &vid(3), archive_of(10_000)).unwrap();
    assert_eq!(cache.usage(), (20_000, 2));
    assert!(cache.lookup(&vid(2)).is_none());
    assert!(!fx.cache_dir().join("archives").join(vid(2)).exists());
    assert!(cache.lookup(&vid(1)).is_some() && cache.lookup(&vid(3)).is_some());

    // Bigger than the whole cache: kept alone until the next insert.
    fetch(&cache, &vid(4), archive_of(30_000)).unwrap();
    assert_eq!(cache.usage(), (30_000, 1));
    assert!(cache.lookup(&vid(4)).is_some());
    fetch(&cache, &vid(5), archive_of(1_000)).unwrap();
    assert_eq!(cache.usage(), (1_000, 1));
    fx.assert_staging_empty();
}

#[test]
fn an_open_file_keeps_reading_after_its_archive_is_evicted() {
    let fx = Fixture::new();
    let cache = fx.open(150_000);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let tree = fetch(&cache, &vid(1), Tar::new().file("big", &data).gz()).unwrap();
    let mut file = fs::File::open(tree.join("big")).unwrap();
    let mut head = vec![0u8; 1000];
    file.read_exact(&mut head).unwrap();
    fetch(&cache, &vid(2), archive_of(100_000)).unwrap();
    assert!(cache.lookup(&vid(1)).is_none());
    assert!(!tree.exists());
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert_eq!(head, data);
}

fn touch_meta(fx: &Fixture, v: &str, age: Duration) {
    let meta = fx.cache_dir().join("archives").join(v).join("meta.json");
    fs::File::open(meta)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[test]
fn entries_persist_across_open_and_leftovers_are_removed() {
    let fx = Fixture::new();
    {
        let cache = fx.open(1 << 30);
        fetch(&cache, &vid(1), archive_of(10_000)).unwrap();
        fetch(&cache, &vid(2), archive_of(10_000)).unwrap();
        // A second open of the same directory is refused while this one holds it.
        let err = ArchiveCache::open(CacheConfig {
            dir: fx.cache_dir(),
            max_bytes: 1 << 30,
            limits: ExtractLimits::default(),
        })
        .err()
        .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
    let archives = fx.cache_dir().join("archives");
    let staging = fx.cache_dir().join("staging");
    // A crash mid-extraction, an entry without metadata, one with bad metadata, stray names.
    fs::create_dir_all(staging.join(format!("{}.0123", vid(3))).join("tree/sub")).unwrap();
    fs::write(
        staging.join(format!("{}.0123", vid(3))).join("tree/sub/f"),
        b"partial",
    )
    .unwrap();
    fs::create_dir_all(archives.join(vid(4)).join("tree")).unwrap();
    fs::create_dir_all(archives.join(vid(5)).join("tree")).unwrap();
    fs::write(archives.join(vid(5)).join("meta.json"), b"{not json").unwrap();
    fs::create_dir_all(archives.join(vid(6))).unwrap();
    let meta1 = fs::read(archives.join(vid(1)).join("meta.json")).unwrap();
    fs::write(archives.join(vid(6)).join("meta.json"), &meta1).unwrap(); // names another version
    fs::create_dir_all(archives.join(vid(6)).join("tree")).unwrap();
    fs::write(archives.join("junk"), b"junk").unwrap();
    fs::create_dir_all(archives.join("NOTAVID")).unwrap();

    let cache = fx.open(1 << 30);
    assert_eq!(cache.usage(), (20_000, 2));
    let tree = cache.lookup(&vid(1)).unwrap();
    assert_eq!(fs::read(tree.join("content")).unwrap().len(), 10_000);
    let mut names: Vec<_> = fs::read_dir(&archives)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [vid(1), vid(2)]);
    fx.assert_staging_empty();
}

#[test]
fn lru_order_survives_a_restart() {
    let fx = Fixture::new();
    {
        let cache = fx.open(1 << 30);
        fetch(&cache, &vid(1), archive_of(10_000)).unwrap();
        fetch(&cache, &vid(2), archive_of(10_000)).unwrap();
        fetch(&cache, &vid(3), archive_of(10_000)).unwrap();
    }
    touch_meta(&fx, &vid(1), Duration::from_secs(60));
    touch_meta(&fx, &vid(2), Duration::from_secs(3600));
    touch_meta(&fx, &vid(3), Duration::from_secs(7200));
    // Reopened with a smaller budget: the least recently used (3, then 2) go first.
    let cache = fx.open(15_000);
    assert_eq!(cache.usage(), (10_000, 1));
    assert!(cache.lookup(&vid(1)).is_some());
    fx.assert_staging_empty();
}

#[test]
fn lookup_records_use_on_disk_at_most_once_a_minute() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    fetch(&cache, &vid(1), archive_of(10)).unwrap();
    let meta = fx
        .cache_dir()
        .join("archives")
        .join(vid(1))
        .join("meta.json");
    let before = fs::metadata(&meta).unwrap().modified().unwrap();
    cache.lookup(&vid(1)).unwrap();
    assert_eq!(
        fs::metadata(&meta).unwrap().modified().unwrap(),
        before,
        "touched again within a minute"
    );
    drop(cache);
    touch_meta(&fx, &vid(1), Duration::from_secs(3600));
    let cache = fx.open(1 << 30);
    cache.lookup(&vid(1)).unwrap();
    let after = fs::metadata(&meta).unwrap().modified().unwrap();
    assert!(after > SystemTime::now() - Duration::from_secs(60));
}

#[test]
fn files_downloads_are_written_at_sanitised_paths() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let make = |path: &str, body: &'static [u8], size: u64| DownloadFile {
        path: path.to_string(),
        size,
        open: Box::new(move || Ok(Box::new(body) as Box<dyn Read + Send>)),
    };
    let source = || {
        Ok(Download::Files(vec![
            make("data/file1.txt", b"one", 3),
            make("../outside/evil.txt", b"evil", 4),
            make("/abs", b"evil", 4),
            make("file2", b"", 0),
        ]))
    };
    let tree = cache.fetch(&vid(1), &info(), &source).unwrap();
    assert_eq!(list_tree(&tree), ["data/", "data/file1.txt", "file2"]);
    assert_eq!(fs::read(tree.join("data/file1.txt")).unwrap(), b"one");
    fx.assert_outside_untouched();

    let calls = AtomicUsize::new(0);
    let short = || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Download::Files(vec![make("f", b"short", 100)]))
    };
    let err = cache.fetch(&vid(2), &info(), &short).unwrap_err();
    assert!(matches!(err, CacheError::DownloadFailed { .. }), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    fx.assert_staging_empty();
}

#[test]
fn errno_mapping() {
    let dir = std::path::Path::new("/cache");
    let enospc = Failure::local("writing f", io::Error::from_raw_os_error(libc::ENOSPC));
    let err = enospc.into_cache_error("abcdef12", dir, 1);
    assert!(matches!(err, CacheError::DiskFull { .. }));
    assert_eq!(err.errno(), libc::ENOSPC);
    assert!(err.to_string().contains("no space left"), "{err}");
    let eacces = Failure::local("writing f", io::Error::from_raw_os_error(libc::EACCES));
    assert_eq!(
        eacces.into_cache_error("abcdef12", dir, 1).errno(),
        libc::EACCES
    );
    let other = Failure::local("writing f", io::Error::other("no errno"));
    assert_eq!(
        other.into_cache_error("abcdef12", dir, 1).errno(),
        libc::EIO
    );
    let corrupt = Failure::Corrupt("bad".into()).into_cache_error("abcdef12", dir, 1);
    assert_eq!(corrupt.errno(), libc::EIO);
}

#[test]
fn the_cache_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ArchiveCache>();
    assert_send_sync::<CacheError>();
}

#[test]
fn an_entry_is_synced_later_and_one_a_restart_caught_unsynced_is_dropped() {
    let fx = Fixture::new();
    let marker = |v: &str| fx.cache_dir().join("archives").join(v).join("unsynced");
    {
        let cache = fx.open(1 << 30);
        fetch(&cache, &vid(1), archive_of(10_000)).unwrap();
        fetch(&cache, &vid(2), archive_of(10_000)).unwrap();
        assert!(marker(&vid(1)).is_file(), "published before it is on disk");
        cache.make_durable();
        assert!(!marker(&vid(1)).exists() && !marker(&vid(2)).exists());
        fetch(&cache, &vid(3), archive_of(10_000)).unwrap();
        fetch(&cache, &vid(4), archive_of(10_000)).unwrap();
    }
    // vid(3) as a power loss would leave it: marked by an earlier boot.
    fs::write(marker(&vid(3)), "an-earlier-boot").unwrap();
    let cache = fx.open(1 << 30);
    assert!(cache.lookup(&vid(1)).is_some() && cache.lookup(&vid(2)).is_some());
    assert!(
        cache.lookup(&vid(3)).is_none(),
        "dropped: its files may be empty"
    );
    assert!(!fx.cache_dir().join("archives").join(vid(3)).exists());
    assert!(
        cache.lookup(&vid(4)).is_some(),
        "marked in this boot: only the process stopped, the page cache holds it whole"
    );
    cache.make_durable();
    assert!(!marker(&vid(4)).exists(), "synced by the next mount");
}
