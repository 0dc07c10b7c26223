//! The hostile corpus: each archive tries to write outside the cache, or to exhaust it.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use tar::EntryType;

use super::{Fixture, Source, Tar, VICTIM, fetch, gzip, info, list_tree, vid};
use crate::cache::{CacheError, ExtractLimits};

#[test]
fn dot_dot_traversal_is_skipped() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .file("../outside/evil.txt", b"evil")
        .file("a/../../outside/evil2.txt", b"evil")
        .file("./../outside/evil3.txt", b"evil")
        .file("..", b"evil")
        .file("ok.txt", b"fine")
        .gz();
    let tree = fetch(&cache, &vid(1), gz).unwrap();
    assert_eq!(list_tree(&tree), ["ok.txt"]);
    fx.assert_outside_untouched();
}

#[test]
fn absolute_paths_are_skipped() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let abs = format!("{}/evil.txt", fx.outside().display());
    let victim = format!("{}/victim.txt", fx.outside().display());
    let gz = Tar::new()
        .file(&abs, b"evil")
        .file(&victim, b"evil")
        .file("/tmp/../evil", b"evil")
        .file("ok.txt", b"fine")
        .gz();
    let tree = fetch(&cache, &vid(2), gz).unwrap();
    assert_eq!(list_tree(&tree), ["ok.txt"]);
    fx.assert_outside_untouched();
}

#[test]
fn symlinks_pointing_out_are_never_written_through() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let outside = fx.outside().display().to_string();
    let victim = format!("{outside}/victim.txt");
    let gz = Tar::new()
        .symlink("abs", &outside)
        .file("abs/evil.txt", b"evil")
        .symlink("rel", "../../../../outside")
        .file("rel/evil.txt", b"evil")
        .symlink("victim", &victim)
        .file("victim", b"pwned")
        .symlink("sneaky", "sub/../..")
        .file("sneaky/evil.txt", b"evil")
        // kept: a relative link that only descends; but never traversed while extracting
        .file("sub/target.txt", b"target")
        .symlink("inside", "sub")
        .file("inside/evil.txt", b"evil")
        .symlink("good", "sub/target.txt")
        .file("good", b"replaces the link, not the target")
        .symlink("link.txt", "sub/target.txt")
        .gz();
    let tree = fetch(&cache, &vid(3), gz).unwrap();
    assert_eq!(
        list_tree(&tree),
        [
            "abs/",
            "abs/evil.txt",
            "good",
            "inside",
            "link.txt",
            "rel/",
            "rel/evil.txt",
            "sneaky/",
            "sneaky/evil.txt",
            "sub/",
            "sub/target.txt",
            "victim"
        ]
    );
    // The skipped links were never created, so these are plain files inside the tree.
    assert_eq!(fs::read(tree.join("victim")).unwrap(), b"pwned");
    assert!(fs::symlink_metadata(tree.join("good")).unwrap().is_file());
    assert_eq!(fs::read(tree.join("sub/target.txt")).unwrap(), b"target");
    assert_eq!(
        fs::read_link(tree.join("inside")).unwrap().as_os_str(),
        "sub"
    );
    assert_eq!(fs::read(tree.join("link.txt")).unwrap(), b"target");
    fx.assert_outside_untouched();
}

#[test]
fn hardlinks_to_inside_targets_only_are_second_names() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let victim = format!("{}/victim.txt", fx.outside().display());
    let gz = Tar::new()
        .hardlink("abs", &victim)
        .hardlink("rel", "../outside/victim.txt")
        .hardlink("early", "orig.txt") // target not yet extracted
        .file("orig.txt", b"original")
        .hardlink("copy", "orig.txt")
        .symlink("ln", "orig.txt")
        .hardlink("via-symlink", "ln")
        .hardlink("self", "self")
        .gz();
    let tree = fetch(&cache, &vid(4), gz).unwrap();
    assert_eq!(list_tree(&tree), ["copy", "ln", "orig.txt"]);
    assert_eq!(fs::read(tree.join("copy")).unwrap(), b"original");
    let (copy, orig) = (inode(&tree.join("copy")), inode(&tree.join("orig.txt")));
    assert_eq!(copy, orig, "a hard link is a second name of its target");
    assert_eq!(fs::metadata(tree.join("copy")).unwrap().nlink(), 2);
    fx.assert_outside_untouched();
}

/// A later entry of either name replaces that name only (a new inode renamed over it), never the other's bytes;
/// a hard link repeated onto a name that already is its target's changes nothing.
#[test]
fn a_later_entry_of_a_hard_linked_name_leaves_the_other_name_alone() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .file("a", b"first")
        .hardlink("b", "a")
        .hardlink("b", "a")
        .file("a", b"second")
        .file("c", b"third")
        .hardlink("d", "c")
        .file("d", b"fourth")
        .gz();
    let tree = fetch(&cache, &vid(17), gz).unwrap();
    assert_eq!(list_tree(&tree), ["a", "b", "c", "d"]);
    assert_eq!(fs::read(tree.join("a")).unwrap(), b"second");
    assert_eq!(fs::read(tree.join("b")).unwrap(), b"first");
    assert_eq!(fs::read(tree.join("c")).unwrap(), b"third");
    assert_eq!(fs::read(tree.join("d")).unwrap(), b"fourth");
    assert_eq!(fs::metadata(tree.join("b")).unwrap().nlink(), 1);
    fx.assert_staging_empty();
    fx.assert_outside_untouched();
}

/// A climbing link is kept when it resolves inside through real directories (`sub/up -> ../run.sh`, which the
/// stage accepts too); chains of links that climb out through another link or a missing directory are skipped,
/// whatever order the archive gives them in.
#[test]
fn symlink_chains_climbing_out_are_skipped_and_links_climbing_through_directories_kept() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .file("run.sh", b"#!/bin/sh\n")
        .symlink("sub/up", "../run.sh")
        .file("sub/inner/x", b"x")
        .symlink("sub/inner/top", "../../run.sh")
        .symlink("sub/inner/round", "../inner/../up")
        // The chain: d/l1 -> .. is the root; d/e/l2 -> ../l1/.. would be its parent, outside.
        .symlink("d/e/l2", "../l1/..")
        .symlink("d/l1", "..")
        .symlink("d/e/l3", "../l1/../../outside/victim.txt")
        .symlink("d/e/l4", "../l1/d/l1/..")
        // Through a name that does not exist, or is a file.
        .symlink("m1", "missing/../run.sh")
        .symlink("m2", "run.sh/../run.sh")
        .gz();
    let tree = fetch(&cache, &vid(18), gz).unwrap();
    assert_eq!(
        list_tree(&tree),
        [
            "d/",
            "d/e/",
            "d/l1",
            "run.sh",
            "sub/",
            "sub/inner/",
            "sub/inner/round",
            "sub/inner/top",
            "sub/inner/x",
            "sub/up"
        ]
    );
    assert_eq!(fs::read(tree.join("sub/up")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(
        fs::read(tree.join("sub/inner/top")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(
        fs::read(tree.join("sub/inner/round")).unwrap(),
        b"#!/bin/sh\n"
    );
    assert_eq!(
        fs::read_link(tree.join("sub/up")).unwrap().as_os_str(),
        "../run.sh"
    );
    fx.assert_outside_untouched();
}

/// A climbing link is judged at the end; a later entry of its name wins over it, as over any earlier entry.
#[test]
fn a_held_back_symlink_is_replaced_by_a_later_entry_of_its_name() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .file("t", b"t")
        .symlink("sub/a", "../t")
        .file("sub/a", b"file wins")
        .symlink("sub/b", "../t")
        .dir("sub/b")
        .symlink("sub/c", "../t")
        .symlink("sub/c", "../t2")
        .symlink("sub/d", "../t")
        .symlink("sub/d", "t")
        .gz();
    let tree = fetch(&cache, &vid(19), gz).unwrap();
    assert_eq!(
        list_tree(&tree),
        ["sub/", "sub/a", "sub/b/", "sub/c", "sub/d", "t"]
    );
    assert_eq!(fs::read(tree.join("sub/a")).unwrap(), b"file wins");
    assert_eq!(
        fs::read_link(tree.join("sub/c")).unwrap().as_os_str(),
        "../t2"
    );
    assert_eq!(fs::read_link(tree.join("sub/d")).unwrap().as_os_str(), "t");
    fx.assert_outside_untouched();
}

fn inode(path: &std::path::Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

#[test]
fn devices_and_fifos_are_skipped() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .raw(b"null", EntryType::Char, 0o666, b"", b"", 0)
        .raw(b"sda", EntryType::Block, 0o660, b"", b"", 0)
        .raw(b"pipe", EntryType::Fifo, 0o644, b"", b"", 0)
        .raw(b"weird", EntryType::new(b'Z'), 0o644, b"", b"data", 0)
        .file("ok.txt", b"fine")
        .gz();
    let tree = fetch(&cache, &vid(5), gz).unwrap();
    assert_eq!(list_tree(&tree), ["ok.txt"]);
    fx.assert_outside_untouched();
}

#[test]
fn duplicates_last_file_wins_and_file_dir_clashes_keep_the_first() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .file("dup", b"one")
        .file("dup", b"two")
        .file("same", b"file first")
        .dir("same")
        .file("same/inner", b"cannot go in a file")
        .dir("d")
        .file("d", b"dir first")
        .dir("d2")
        .dir("d2")
        .file("d2/inner", b"ok")
        .file("old-style-dir/", b"")
        .gz();
    let tree = fetch(&cache, &vid(6), gz).unwrap();
    assert_eq!(
        list_tree(&tree),
        ["d/", "d2/", "d2/inner", "dup", "old-style-dir/", "same"]
    );
    assert_eq!(fs::read(tree.join("dup")).unwrap(), b"two");
    assert_eq!(fs::read(tree.join("same")).unwrap(), b"file first");
    fx.assert_outside_untouched();
}

#[test]
fn long_names_via_pax_and_gnu_are_kept_when_each_component_fits() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let long_path = format!("{}/{}", "a".repeat(150), "b".repeat(149)); // 300 bytes, components <= 255
    let too_long = "c".repeat(300); // one 300-byte component
    let gnu_path = format!("{}/{}", "g".repeat(200), "h".repeat(200));
    let mut tar = Tar::new();
    tar.pax(&[("path", long_path.as_bytes())])
        .raw(b"truncated-name", EntryType::Regular, 0o644, b"", b"pax", 0)
        .pax(&[("path", too_long.as_bytes())])
        .raw(b"other", EntryType::Regular, 0o644, b"", b"too long", 0)
        .pax(&[("path", b"../outside/pax-evil.txt")])
        .raw(b"innocent", EntryType::Regular, 0o644, b"", b"evil", 0);
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    tar.builder
        .append_data(&mut h, &gnu_path, &b"gnu"[..])
        .unwrap();
    let tree = fetch(&cache, &vid(7), tar.gz()).unwrap();
    assert_eq!(fs::read(tree.join(&long_path)).unwrap(), b"pax");
    assert_eq!(fs::read(tree.join(&gnu_path)).unwrap(), b"gnu");
    let mut expected = vec![
        format!("{}/", "a".repeat(150)),
        long_path.clone(),
        format!("{}/", "g".repeat(200)),
        gnu_path.clone(),
    ];
    expected.sort();
    assert_eq!(list_tree(&tree), expected);
    fx.assert_outside_untouched();
}

#[test]
fn non_utf8_names_keep_their_bytes() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .raw(
            b"caf\xe9.txt",
            EntryType::Regular,
            0o644,
            b"",
            b"latin-1",
            0,
        )
        .raw(b"dir\xff/x", EntryType::Regular, 0o644, b"", b"x", 0)
        .gz();
    let tree = fetch(&cache, &vid(8), gz).unwrap();
    let names: Vec<Vec<u8>> = fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert!(names.contains(&b"caf\xe9.txt".to_vec()));
    let path = tree.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    assert_eq!(fs::read(path).unwrap(), b"latin-1");
    assert!(
        tree.join(std::ffi::OsStr::from_bytes(b"dir\xff/x"))
            .is_file()
    );
    fx.assert_outside_untouched();
}

fn limits(bytes: u64, entries: u64) -> ExtractLimits {
    ExtractLimits {
        max_total_bytes: bytes,
        max_entries: entries,
    }
}

#[test]
fn gzip_bomb_stops_at_the_size_limit_before_inflating() {
    let fx = Fixture::new();
    let cache = fx.open_with(1 << 40, limits(1 << 20, 1000));
    let zeros = vec![0u8; 16 << 20];
    let gz = Tar::new()
        .file("small.txt", b"ok")
        .file("bomb", &zeros)
        .gz();
    let len = gz.len() as u64;
    let source = Source::new(gz);
    let err = cache
        .fetch(&vid(9), &info(), &|| source.download())
        .unwrap_err();
    assert!(
        matches!(err, CacheError::TooLarge { limit, .. } if limit == 1 << 20),
        "{err}"
    );
    assert_eq!(err.errno(), libc::EFBIG);
    assert!(err.to_string().contains("--max-archive-size"), "{err}");
    assert_eq!(source.calls(), 1, "a limit is not retried");
    let read = source.read.load(std::sync::atomic::Ordering::SeqCst);
    assert!(read < len / 2, "read {read} of {len} compressed bytes");
    assert_eq!(cache.usage(), (0, 0));
    fx.assert_staging_empty();
    fx.assert_outside_untouched();
}

#[test]
fn skipped_entries_count_towards_the_size_limit_and_hard_links_do_not() {
    let fx = Fixture::new();
    let cache = fx.open_with(1 << 40, limits(1 << 20, 1000));
    let zeros = vec![0u8; 4 << 20];
    let gz = Tar::new().file("../skipped-bomb", &zeros).gz();
    let err = fetch(&cache, &vid(10), gz).unwrap_err();
    assert!(matches!(err, CacheError::TooLarge { .. }), "{err}");

    assert_eq!(cache.usage(), (0, 0));
    fx.assert_staging_empty();

    // Hard links are second names, not copies: they add no bytes.
    let part = vec![7u8; 600 << 10];
    let gz = Tar::new()
        .file("a", &part)
        .hardlink("b", "a")
        .hardlink("c", "a")
        .gz();
    let tree = fetch(&cache, &vid(11), gz).unwrap();
    assert_eq!(fs::metadata(tree.join("c")).unwrap().nlink(), 3);
}

#[test]
fn too_many_entries_stop_at_the_entry_limit() {
    let fx = Fixture::new();
    let cache = fx.open_with(1 << 40, limits(1 << 30, 10));
    let mut tar = Tar::new();
    for i in 0..50 {
        tar.file(&format!("f{i}"), b"");
    }
    let err = fetch(&cache, &vid(12), tar.gz()).unwrap_err();
    assert!(
        matches!(err, CacheError::TooManyEntries { limit: 10, .. }),
        "{err}"
    );
    assert_eq!(err.errno(), libc::EFBIG);
    assert!(err.to_string().contains("--max-archive-entries"), "{err}");
    assert_eq!(cache.usage(), (0, 0));
    fx.assert_staging_empty();
}

#[test]
fn a_huge_pax_header_is_refused_not_read_into_memory() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let big = vec![b'x'; 4 << 20];
    let gz = Tar::new().pax(&[("comment", &big)]).file("f", b"data").gz();
    let source = Source::new(gz);
    let err = cache
        .fetch(&vid(13), &info(), &|| source.download())
        .unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
    assert_eq!(err.errno(), libc::EIO);
    assert_eq!(source.calls(), 1, "a corrupt archive is not retried");
    fx.assert_staging_empty();
}

#[test]
fn garbage_is_a_corrupt_archive() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let err = fetch(&cache, &vid(14), b"this is not gzip at all".to_vec()).unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
    let err = fetch(&cache, &vid(15), gzip(&[0x55; 2048])).unwrap_err();
    assert!(matches!(err, CacheError::Corrupt { .. }), "{err}");
    assert_eq!(cache.usage(), (0, 0));
    fx.assert_staging_empty();
}

#[test]
fn extracted_files_are_never_writable_or_setuid_and_the_cache_is_private() {
    let fx = Fixture::new();
    let cache = fx.open(1 << 30);
    let gz = Tar::new()
        .raw(b"suid", EntryType::Regular, 0o6777, b"", b"x", 0)
        .raw(b"none", EntryType::Regular, 0o000, b"", b"x", 0)
        .gz();
    let tree = fetch(&cache, &vid(16), gz).unwrap();
    let mode = |p: &str| fs::metadata(tree.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o555);
    assert_eq!(mode("none"), 0o400);
    let cache_mode = fs::metadata(fx.cache_dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(cache_mode, 0o700);
    assert_eq!(fs::read(fx.outside().join("victim.txt")).unwrap(), VICTIM);
}
