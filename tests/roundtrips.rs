//! How many FUSE requests common tools cost, read from the mount's own counters (`.vm0fs/status`), and that the
//! settings which save requests keep every answer right: `find` over a cached archive sends no LOOKUP per file,
//! `ls -l` stops asking for SELinux and ACL attributes once told they are unsupported while `user.vm0.*` still
//! answers, a listing inside a version is served by the kernel's cache the second time, and `runs/` is not.
//! Counts, never times: the kernel's caches decide the counts, the machine's load decides only the times.

mod common;

use std::path::Path;
use std::time::Duration;

use common::emulator::Emulator;
use common::kernel_caches::KernelCaches;
use common::mount::{Mount, ok, q, sh};
use serde_json::{Value, json};

/// The requests served so far, by opcode.
fn requests(mount: &Mount) -> Value {
    let status: Value =
        serde_json::from_slice(&std::fs::read(mount.path(".vm0fs/status")).unwrap()).unwrap();
    status["requests"].clone()
}

/// How many requests of `op` were served between two snapshots.
fn sent(before: &Value, after: &Value, op: &str) -> u64 {
    let count = |v: &Value| v[op]["count"].as_u64().unwrap_or(0);
    count(after) - count(before)
}

/// An artifact `tree` of `dirs` directories holding `files` small files each (the source dir is returned to
/// keep). An artifact, because a volume's head is writable and so never kept by the kernel.
fn tree_artifact(emulator: &Emulator, dirs: usize, files: usize) -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    for d in 0..dirs {
        let dir = src.path().join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f:04}.txt")), format!("{d}/{f}\n")).unwrap();
        }
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.append_dir_all(".", src.path()).unwrap();
    let archive = builder.into_inner().unwrap().finish().unwrap();
    emulator.add_raw_archive("artifacts", "tree", &archive);
    src
}

#[test]
fn a_walk_of_a_cached_archive_costs_no_request_per_file() {
    let _caches = KernelCaches::relied_on();
    let emulator = Emulator::start(&[]);
    let _src = tree_artifact(&emulator, 3, 400);
    // A long TTL, so that a slow walk on a loaded machine does not see the top-level names expire midway.
    let mount = Mount::start(&emulator, &["--metadata-ttl", "600"]);
    let tree = mount.path("artifacts/tree");
    ok(&format!("ls {} >/dev/null", q(&tree))); // downloads the archive

    let before = requests(&mount);
    let found = ok(&format!("find {} -ls | wc -l", q(&tree)));
    assert_eq!(found.trim(), "1204", "the root, 3 directories, 1,200 files");
    let walked = requests(&mount);
    // A few for the directories themselves (the kernel asks a directory's attributes again after reading it)
    // and for `.vm0fs/status`, none per file.
    assert!(
        sent(&before, &walked, "lookup") <= 10,
        "find learns every name and its attributes from READDIRPLUS: {walked}"
    );
    assert!(
        sent(&before, &walked, "getattr") <= 10,
        "no GETATTR follows a READDIRPLUS entry: {walked}"
    );

    let listing = ok(&format!("ls -lR {}", q(&tree)));
    assert_eq!(listing.matches(" f0").count(), 1200, "{listing}");
    let listed = requests(&mount);
    assert!(
        sent(&walked, &listed, "getxattr") <= 2,
        "ls -l stops asking for SELinux and ACL attributes: {listed}"
    );
    assert!(
        sent(&walked, &listed, "readdirplus") <= 2,
        "the listings inside the version come from the kernel's cache (only the head is read again): {listed}"
    );
}

/// `getfattr` exits 1 and prints the error for a name it cannot read.
fn getfattr(path: &Path, name: &str) -> (bool, String) {
    let out = sh(&format!("getfattr --only-values -n {name} {}", q(path)));
    (
        out.status.success(),
        String::from_utf8_lossy(if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        })
        .into_owned(),
    )
}

#[test]
fn only_user_vm0_attributes_are_supported() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let volume = mount.path("volumes/input-data");
    let (found, id) = getfattr(&volume, "user.vm0.id");
    assert!(found, "{id}");
    assert_eq!(Some(id), emulator.storage_id("volumes", "input-data"));
    for name in ["user.other", "security.selinux", "system.posix_acl_access"] {
        let (found, error) = getfattr(&volume, name);
        assert!(
            !found && error.contains("Operation not supported"),
            "{name}: {error}"
        );
    }
    let (found, error) = getfattr(&mount.path("volumes/input-data/README.md"), "user.vm0.id");
    assert!(
        !found && error.contains("No such attribute"),
        "a vm0 name that a file does not have: {error}"
    );
    // `ls -l` shows no error and no ACL mark for the unsupported names.
    let out = sh(&format!("ls -l {}", q(&volume)));
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().skip(1).all(|l| l.as_bytes()[10] == b' '),
        "{listing}"
    );
}

#[test]
fn runs_listing_is_not_kept_by_the_kernel_while_listings_inside_a_version_are() {
    let _caches = KernelCaches::relied_on();
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1"]);
    let runs = mount.path("runs");
    // A pinned version: a volume's head is writable, so the kernel keeps none of its listings.
    let version = ok(&format!(
        "getfattr --only-values -n user.vm0.version {}",
        q(&mount.path("volumes/input-data"))
    ));
    let pinned = mount.path(&format!("volumes/input-data@{}", &version.trim()[..8]));
    let data = pinned.join("data");
    let ls = |dir: &Path| ok(&format!("ls {}", q(dir)));
    // Listing the volume waits for its whole archive, so `data/` is met with its final attributes (one looked up
    // while the archive still downloads is asked again later, and its new mtime empties the kernel's listing).
    ls(&pinned);
    let first = ls(&data);
    let before = requests(&mount);
    assert_eq!(ls(&data), first);
    assert_eq!(
        sent(&before, &requests(&mount), "readdirplus"),
        0,
        "a second listing inside a version is the kernel's"
    );

    let listed = ls(&runs);
    let (status, run) = emulator.post_json("/v1/runs", &json!({"agent": "coder", "prompt": "hi"}));
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap();
    assert!(!listed.contains(id));
    // Past the listing's TTL (the API was asked behind the mount's back, so nothing told it sooner).
    std::thread::sleep(Duration::from_millis(1100));
    let before = requests(&mount);
    assert!(
        ls(&runs).contains(id),
        "runs/ shows the new run once its listing's TTL is over"
    );
    assert!(sent(&before, &requests(&mount), "readdirplus") > 0);
}

/// A volume `untarred` holding `d/f0000`..: `files` files of 26,000 bytes each, extracted by `tar x` through the
/// mount (a new one, with nothing else done in it); the request counters before and after the `tar x`.
struct Untarred {
    mount: Mount,
    volume: std::path::PathBuf,
    before: Value,
    after: Value,
    _emulator: Emulator,
}

fn untar_into_a_volume(files: usize) -> Untarred {
    let emulator = Emulator::start(&[]);
    let mount = Mount::start(&emulator, &["--commit-delay", "0"]);
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("d")).unwrap();
    for f in 0..files {
        // About three of tar's 10 KiB records: three or four write(2) calls per file.
        let bytes = common::noise(26_000, f as u64);
        std::fs::write(src.path().join(format!("d/f{f:04}")), bytes).unwrap();
    }
    let tarball = src.path().join("tree.tar");
    ok(&format!("tar -C {} -cf {} d", q(src.path()), q(&tarball)));
    let volume = mount.path("volumes/untarred");
    std::fs::create_dir(&volume).unwrap();
    let before = requests(&mount);
    ok(&format!("tar -C {} -xf {}", q(&volume), q(&tarball)));
    let after = requests(&mount);
    Untarred {
        mount,
        volume,
        before,
        after,
        _emulator: emulator,
    }
}

/// `tar x` of small files into a volume: with passthrough (a root mount), the kernel writes the staged files
/// itself, so no WRITE reaches vm0fs, and the kill-privileges check (a GETXATTR of `security.capability`) is asked
/// at most twice per file (the first write and the chown), not before every write, and `close` sends no FLUSH.
/// What is left per file: LOOKUP, CREATE, the directory's GETATTR (the create changed it), two GETXATTRs, three
/// SETATTRs (times, owner, mode), RELEASE.
#[test]
fn tar_x_into_a_volume_sends_no_write_no_flush_and_no_privilege_check_per_write() {
    let _caches = KernelCaches::relied_on();
    const FILES: usize = 300;
    let Untarred {
        volume,
        before,
        after,
        mount: _mount,
        _emulator,
    } = untar_into_a_volume(FILES);
    let per_file = |op: &str| sent(&before, &after, op) as f64 / FILES as f64;
    assert!(
        per_file("getxattr") <= 2.1,
        "the kernel leaves set-id bits to vm0fs (FUSE_HANDLE_KILLPRIV_V2): {after}"
    );
    assert!(per_file("getattr") <= 1.1, "{after}");
    assert!(
        sent(&before, &after, "flush") <= 1,
        "close waits for nothing (one FLUSH is the status file's own): {after}"
    );
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            sent(&before, &after, "write"),
            0,
            "the staged files are written by the kernel in passthrough: {after}"
        );
    }
    for f in [0, FILES - 1] {
        let name = format!("f{f:04}");
        assert_eq!(
            std::fs::read(volume.join("d").join(&name)).unwrap(),
            common::noise(26_000, f as u64),
            "{name}"
        );
    }
}

/// `tar x` into a volume costs at most the nine requests per file that the kernel sends to any FUSE mount with
/// `default_permissions` and extended attributes (listed above; docs/DESIGN.md, "The small-file path", says why none
/// of them can be spared), and every one of them about a file of the volume is answered on the thread that read it, with no
/// hand-off to a worker: the volume's stage is open, so a create, a chmod, a chown, a utimens, a lookup, a stat
/// and a close are memory, a journal record and the local disk. Only the volume's root may go to a worker (its
/// listing from the API can expire during a slow run), and only a few times.
#[test]
fn tar_x_into_a_volume_costs_at_most_nine_requests_per_file_none_handed_to_a_worker() {
    let _caches = KernelCaches::relied_on();
    const FILES: usize = 300;
    let Untarred {
        mount,
        before,
        after,
        volume: _,
        _emulator,
    } = untar_into_a_volume(FILES);
    let total = |v: &Value| -> u64 {
        let ops = v.as_object().unwrap();
        ops.values().map(|o| o["count"].as_u64().unwrap_or(0)).sum()
    };
    // The status file's own read (lookup, open, read, flush, release, ...) is counted in `after`: a few requests.
    let per_file = (total(&after) - total(&before)) as f64 / FILES as f64;
    assert!(per_file <= 9.1, "{per_file} requests per file: {after}");
    let pooled = |op: &str| {
        let count = |v: &Value| v[op]["pooled"].as_u64().unwrap_or(0);
        count(&after) - count(&before)
    };
    for op in ["create", "setattr", "release"] {
        assert_eq!(pooled(op), 0, "{op} is answered without a worker: {after}");
    }
    assert!(
        pooled("lookup") + pooled("getattr") <= 4,
        "lookups and stats of the volume's files are answered without a worker: {after}"
    );
    assert!(
        std::fs::read_dir(mount.path("volumes/untarred/d"))
            .unwrap()
            .count()
            == FILES,
        "every file was made"
    );
}
