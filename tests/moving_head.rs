//! The stage's model test (src/stage/tests/moving_head.rs, many cases on the core) through a real mount, fewer
//! cases: a seeded sequence of local changes (writes, truncates, unlinks, renames, mkdir, rmdir, chmod, symlinks)
//! made with std::fs both in a mounted volume and in a plain directory, publishes from another client (the
//! emulator's control route), `vm0fs sync`, `vm0fs discard` and remounts on the same cache. After every step the
//! mount answers as the directory does (the same errno) and shows the same tree; after every sync the version it
//! printed is the server's head, and that head, read by a second mount with a cache of its own, holds the view's
//! files. The other client writes only `r0` and `r1`, which no local change touches: conflicts are the core
//! model's and tests/conflicts.rs's.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::emulator::Emulator;
use common::mount::{Mount, vm0fs};
use common::protocol::Protocol;
use common::volumes::{head, sync};
use serde_json::json;

const PATHS: [&str; 6] = ["a", "b", "d", "d/a", "d/e", "d/e/a"];
/// Where every symlink points: nowhere, so that following one fails alike in both trees.
const LINK_TARGET: &str = "missing/x";
/// `--metadata-ttl 0`: the kernel keeps no entry, so a name `vm0fs discard` dropped is not met again from its
/// cache (with a TTL, for up to a second after a discard, `open(O_CREAT)` of a name that was a directory gets
/// EISDIR from the kernel's cached entry; the lead was told).
const ARGS: &[&str] = &["--commit-delay", "0", "--metadata-ttl", "0"];

both_protocols!(a_seeded_sequence_keeps_the_view_the_head_plus_what_is_staged);

/// An entry as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(Vec<u8>, u32),
    Link(PathBuf),
}

type Tree = BTreeMap<String, Entry>;

fn snapshot(root: &Path) -> Tree {
    let mut out = Tree::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        let listed = std::fs::read_dir(root.join(&dir))
            .unwrap_or_else(|e| panic!("list {}/{dir}: {e}", root.display()));
        for e in listed {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.is_dir() {
                dirs.push(rel.clone());
                Entry::Dir(mode)
            } else if meta.file_type().is_symlink() {
                Entry::Link(std::fs::read_link(e.path()).unwrap())
            } else {
                Entry::File(std::fs::read(e.path()).unwrap(), mode)
            };
            out.insert(rel, entry);
        }
    }
    out
}

/// The local side's part of a tree (without the other client's `r0`, `r1`).
fn ours(tree: &Tree) -> Tree {
    tree.iter()
        .filter(|(p, _)| !p.starts_with('r'))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect()
}

fn files(tree: &Tree) -> BTreeMap<String, Vec<u8>> {
    tree.iter()
        .filter_map(|(p, e)| match e {
            Entry::File(bytes, _) => Some((p.clone(), bytes.clone())),
            _ => None,
        })
        .collect()
}

/// xorshift64: the sequence is the same on every run.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Write {
        path: usize,
        offset: u64,
        len: usize,
    },
    Truncate {
        path: usize,
        len: u64,
    },
    Unlink {
        path: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Mkdir {
        path: usize,
    },
    Rmdir {
        path: usize,
    },
    Chmod {
        path: usize,
        mode: u32,
    },
    Symlink {
        path: usize,
    },
}

fn random_op(r: &mut Seeded) -> Op {
    let p = r.below(PATHS.len());
    match r.below(12) {
        0..=2 => Op::Write {
            path: p,
            offset: r.below(3000) as u64,
            len: 1 + r.below(200),
        },
        3 => Op::Truncate {
            path: p,
            len: r.below(4000) as u64,
        },
        4 => Op::Unlink { path: p },
        5 | 6 => Op::Rename {
            from: p,
            to: r.below(PATHS.len()),
        },
        7 | 8 => Op::Mkdir { path: p },
        9 => Op::Rmdir { path: p },
        // Modes a version gives back as they were to files and directories alike: a directory always comes back
        // with its owner's `rwx`, as the README says (a directory made 0644 comes back 0744).
        10 => Op::Chmod {
            path: p,
            mode: [0o755, 0o700, 0o750][r.below(3)],
        },
        _ => Op::Symlink { path: p },
    }
}

fn apply(root: &Path, op: Op, fill: u8) -> Result<(), i32> {
    let at = |i: usize| root.join(PATHS[i]);
    let result = match op {
        Op::Write { path, offset, len } => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(at(path))
            .and_then(|f| f.write_all_at(&vec![fill; len], offset)),
        Op::Truncate { path, len } => std::fs::OpenOptions::new()
            .write(true)
            .open(at(path))
            .and_then(|f| f.set_len(len)),
        Op::Unlink { path } => std::fs::remove_file(at(path)),
        Op::Rename { from, to } => std::fs::rename(at(from), at(to)),
        Op::Mkdir { path } => std::fs::create_dir(at(path)),
        Op::Rmdir { path } => std::fs::remove_dir(at(path)),
        Op::Chmod { path, mode } => {
            std::fs::set_permissions(at(path), PermissionsExt::from_mode(mode))
        }
        Op::Symlink { path } => std::os::unix::fs::symlink(LINK_TARGET, at(path)),
    };
    result.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Makes `root` hold `tree`, a version as a pinned view shows it, as the head shows it: its files, directories
/// and symlinks with their modes, the owner's write bit added (a pinned view is read-only; the head is not). A
/// version on `/v1` holds files only; on the push flow it holds the rest too.
fn reset(root: &Path, tree: &Tree) {
    std::fs::remove_dir_all(root).unwrap();
    std::fs::create_dir(root).unwrap();
    for (path, entry) in tree {
        let at = root.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        match entry {
            Entry::Dir(_) => std::fs::create_dir_all(&at).unwrap(),
            Entry::File(bytes, mode) => {
                std::fs::write(&at, bytes).unwrap();
                std::fs::set_permissions(&at, PermissionsExt::from_mode(*mode | 0o200)).unwrap();
            }
            Entry::Link(target) => std::os::unix::fs::symlink(target, &at).unwrap(),
        }
    }
    // Directory modes last: a directory without write permission takes no new entries.
    for (path, entry) in tree.iter().rev() {
        if let Entry::Dir(mode) = entry {
            std::fs::set_permissions(root.join(path), PermissionsExt::from_mode(*mode | 0o200))
                .unwrap();
        }
    }
}

/// The files of `version` of `model`, read by `observer` (a mount with a cache of its own: from the server).
fn server_files(observer: &Mount, version: &str) -> BTreeMap<String, Vec<u8>> {
    files(&snapshot(
        &observer.path(&format!("volumes/model@{}", &version[..8])),
    ))
}

fn a_seeded_sequence_keeps_the_view_the_head_plus_what_is_staged(protocol: Protocol) {
    // SAFETY: umask(2) only sets this process's file mode mask; both trees are made under the same one.
    unsafe { libc::umask(0o022) };
    let emu: Emulator = protocol.emulator(&[]);
    let publish_elsewhere = |path: &str, bytes: Option<String>| {
        let (status, v) = emu.post_json(
            "/_control/storages/volumes/model/head",
            &json!({"files": {path: bytes}, "keep_head": true}),
        );
        assert_eq!(status, 200, "{v}");
    };
    publish_elsewhere("r0", Some("first".into()));
    let cache = tempfile::tempdir().unwrap();
    let reference = tempfile::tempdir().unwrap();
    let root = reference.path().join("view");
    std::fs::create_dir(&root).unwrap();
    let observer = Mount::start(&emu, ARGS);
    let mut m = Mount::start_with_cache(&emu, cache.path(), ARGS);
    let mut r = Seeded(0x5eed_f7e5_7000);
    for i in 0..90u8 {
        let vol = m.path("volumes/model");
        let step = r.below(24);
        match step {
            0..=16 => {
                let op = random_op(&mut r);
                let expected = apply(&root, op, i);
                assert_eq!(apply(&vol, op, i), expected, "step {i}: {op:?}");
            }
            17 | 18 => {
                let content = (r.below(4) > 0).then(|| format!("theirs {i}"));
                publish_elsewhere(["r0", "r1"][r.below(2)], content);
            }
            19..=21 => {
                let line = sync(&vol);
                let server = head(&emu, "model").expect("a head");
                assert_eq!(line, format!("volumes/model@{}", &server[..8]), "step {i}");
                let shown = snapshot(&vol);
                assert_eq!(
                    files(&shown),
                    server_files(&observer, &server),
                    "step {i}: the head is not the view"
                );
            }
            22 => {
                let out = vm0fs().arg("discard").arg(&vol).output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let server = head(&emu, "model").expect("a head");
                reset(
                    &root,
                    &ours(&snapshot(
                        &observer.path(&format!("volumes/model@{}", &server[..8])),
                    )),
                );
            }
            _ => {
                m.unmount();
                m = Mount::start_with_cache(&emu, cache.path(), ARGS);
            }
        }
        let vol = m.path("volumes/model");
        assert_eq!(
            ours(&snapshot(&vol)),
            snapshot(&root),
            "after step {i} ({step})"
        );
    }
}
