//! Hostile bytes as a `.tar.gz` download into a fresh `ArchiveCache`, which must never write outside its directory
//! and never leave a symlink there that resolves out of it (the kernel's resolution, chains of links included).
//!
//! The first byte picks how the rest is used: even, as the raw download (the gzip layer is fuzzed too); odd, as a
//! tar stream the harness gzips (so most inputs reach the tar entry loop). The cache is opened in
//! `<tmp>/cache`; a sibling `<tmp>/outside` and the temp root itself must be untouched afterwards.

#![no_main]

use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use vm0fs::api::Download;
use vm0fs::cache::{ArchiveCache, ArchiveInfo, CacheConfig, DownloadSource, ExtractLimits};

const VERSION: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        gz.finish().unwrap()
    };

    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cache = ArchiveCache::open(CacheConfig {
        dir: cache_dir.clone(),
        max_bytes: 8 << 20,
        limits: ExtractLimits {
            max_total_bytes: 4 << 20,
            max_entries: 2_000,
        },
    })
    .unwrap();
    let cache = Arc::new(cache);
    let source: Arc<DownloadSource> =
        Arc::new(move || Ok(Download::TarGz(Box::new(Cursor::new(bytes.clone())))));
    let info = ArchiveInfo {
        label: "fuzz".into(),
        size: None,
    };
    let result = cache.tree(VERSION, &info, source);

    // Nothing beside the cache directory.
    let mut top: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["cache", "outside"], "something was written beside the cache");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // No symlink inside that leads out.
    check_tree(&cache_dir, &cache_dir);
    if let Ok(tree) = result {
        assert!(tree.starts_with(&cache_dir), "{}", tree.display());
    }
});

fn check_tree(root: &Path, dir: &Path) {
    let root_real = std::fs::canonicalize(root).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            assert!(target.is_relative(), "symlink {} -> {}", path.display(), target.display());
            // Where the kernel leads: the whole path if it resolves, else (a dangling link) its target's directory.
            let parent = path.parent().unwrap().join(&target);
            let resolved = std::fs::canonicalize(&path)
                .or_else(|_| std::fs::canonicalize(parent.parent().unwrap_or(&parent)));
            if let Ok(resolved) = resolved {
                assert!(
                    resolved.starts_with(&root_real),
                    "symlink {} -> {} leads out of the cache, to {}",
                    path.display(),
                    target.display(),
                    resolved.display()
                );
            }
        } else if meta.is_dir() {
            assert!(path.starts_with(root));
            check_tree(root, &path);
        }
    }
}
