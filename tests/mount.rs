//! Real FUSE mounts of the built `vm0fs` against the emulator, exercised with real tools (`ls`, `find`, `cat`,
//! `cp`, `diff`) and `std::fs`: the tree, the archive cache, hostile archives, and the mount's life cycle.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use common::emulator::Emulator;
use common::mount::{
    Mount, is_mounted, mount_command, mount_command_at, ok, q, sh, vm0fs, wait_unmounted,
};

fn downloads(emulator: &Emulator, version: &str) -> u64 {
    emulator.stats()["blob_downloads"][version]
        .as_u64()
        .unwrap_or(0)
}

fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
    for (path, data) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn the_whole_tree_can_be_browsed() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let mnt = mount.mountpoint();
    assert_eq!(
        ok(&format!("ls {}", q(mnt))),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    let found = ok(&format!("find {} | sort", q(mnt)));
    for expected in [
        "/agents/coder/agent.json",
        "/agents/coder/versions.json",
        "/runs/latest",
        "/volumes/input-data/data/nested/deep/notes.txt",
        "/volumes/input-data/日本語.md",
        "/artifacts/report/report.md",
    ] {
        assert!(
            found.contains(expected),
            "find does not show {expected}:\n{found}"
        );
    }
    let runs = ok(&format!("ls {}/runs | grep -v latest | wc -l", q(mnt)));
    assert!(
        runs.trim().parse::<usize>().unwrap() >= 30,
        "runs/ lists {runs} runs"
    );
    let agent: serde_json::Value =
        serde_json::from_str(&ok(&format!("cat {}/agents/coder/agent.json", q(mnt)))).unwrap();
    assert_eq!(agent["name"], "coder");
    let run_id = ok(&format!("readlink {}/runs/latest", q(mnt)))
        .trim()
        .to_string();
    let status = ok(&format!("cat {}/runs/{run_id}/status", q(mnt)));
    assert!(
        [
            "pending\n",
            "running\n",
            "completed\n",
            "failed\n",
            "timeout\n",
            "cancelled\n"
        ]
        .contains(&status.as_str())
    );
    let run: serde_json::Value =
        serde_json::from_str(&ok(&format!("cat {}/runs/{run_id}/run.json", q(mnt)))).unwrap();
    assert_eq!(run["id"], run_id.as_str());
    // `stat` and `cat` agree on every API file: sizes are exact.
    for file in ["status", "run.json", "prompt", "logs", "metrics.json"] {
        let path = mount.path(&format!("runs/{run_id}/{file}"));
        let size = std::fs::metadata(&path).unwrap().len();
        assert_eq!(size, std::fs::read(&path).unwrap().len() as u64, "{file}");
    }
    let volume = mount.path("volumes/input-data");
    let id = getxattr(&volume, "user.vm0.id").expect("user.vm0.id on a volume");
    assert_eq!(
        Some(String::from_utf8(id).unwrap()),
        emulator.storage_id("volumes", "input-data")
    );
    assert_eq!(
        getxattr(&volume, "user.vm0.version").map(|v| v.len()),
        Some(64)
    );
    assert!(
        sh(&format!("ls {}/agents/no-such-agent", q(mnt)))
            .stderr
            .ends_with(b"No such file or directory\n")
    );
    mount.unmount();
}

#[test]
fn a_run_is_reachable_without_listing_runs() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let (_, page) = emulator.get_json("/v1/runs?limit=100");
    let oldest = page["data"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mount = Mount::start(&emulator, &[]);
    let prompt = std::fs::read_to_string(mount.path(&format!("runs/{oldest}/prompt"))).unwrap();
    assert!(!prompt.is_empty());
    assert!(std::fs::metadata(mount.path("runs/00000000-0000-0000-0000-000000000000")).is_err());
}

#[test]
fn a_seeded_volume_matches_its_source_and_an_artifact_copies_out() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let source = emulator.data_dir().join("seed-src/volumes/input-data");
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&source)
    ));
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("report");
    ok(&format!(
        "cp -r {} {}",
        q(&mount.path("artifacts/report")),
        q(&copy)
    ));
    ok(&format!(
        "diff -r {} {}",
        q(&copy),
        q(&emulator.data_dir().join("seed-src/artifacts/report"))
    ));
    // Tar modes and mtimes are kept; a volume's head adds the owner's write bit (it can be written), an
    // artifact keeps none.
    let meta = std::fs::metadata(mount.path("volumes/input-data/README.md")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o777, 0o644);
    let artifact = std::fs::metadata(mount.path("artifacts/report/report.md")).unwrap();
    assert_eq!(artifact.mode() & 0o777, 0o444);
    assert!(meta.mtime() > 1_600_000_000);
}

#[test]
fn a_pinned_version_shows_the_old_content_beside_the_head() {
    let emulator = Emulator::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let v1_dir = src.path().join("v1");
    let v2_dir = src.path().join("v2");
    write_files(&v1_dir, &[("a.txt", b"first"), ("sub/b.txt", b"bee")]);
    write_files(&v2_dir, &[("a.txt", b"second"), ("c.txt", b"sea")]);
    let v1 = emulator.upload_dir("volumes", "pinned", &v1_dir);
    let v2 = emulator.upload_dir("volumes", "pinned", &v2_dir);
    assert_ne!(v1, v2);
    let mount = Mount::start(&emulator, &[]);
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/pinned")),
        q(&v2_dir)
    ));
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path(&format!("volumes/pinned@{}", &v1[..8]))),
        q(&v1_dir)
    ));
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path(&format!("volumes/pinned@{v2}"))),
        q(&v2_dir)
    ));
    assert!(
        !mount.path("volumes/pinned@1234567").exists(),
        "a 7-character prefix is too short"
    );
    assert!(!mount.path("volumes/pinned@ffffffffff").exists());
    let listing = ok(&format!("ls {}", q(&mount.path("volumes"))));
    assert_eq!(
        listing, "pinned\n",
        "pinned versions are found by lookup, not listed"
    );
}

/// A file of a volume's head keeps its inode number when a new version is published, and its attributes follow
/// the new version once the metadata TTL (0 here) has passed; an open file reads the version it opened. (What a
/// new open reads is checked in the core's tests: with FUSE passthrough, the kernel's RELEASE of the last open
/// may arrive after the next OPEN, which then shares the old file, so no assertion here could be exact.)
#[test]
fn a_new_head_keeps_the_inode_and_an_open_file_keeps_its_version() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let emulator = Emulator::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let (v1_dir, v2_dir) = (src.path().join("v1"), src.path().join("v2"));
    write_files(&v1_dir, &[("sub/a.txt", b"first")]);
    write_files(&v2_dir, &[("sub/a.txt", b"second!")]);
    emulator.upload_dir("volumes", "moving", &v1_dir);
    let mount = Mount::start(&emulator, &["--metadata-ttl", "0"]);
    let path = mount.path("volumes/moving/sub/a.txt");
    let mut old = std::fs::File::open(&path).unwrap();
    let ino = std::fs::metadata(&path).unwrap().ino();
    emulator.upload_dir("volumes", "moving", &v2_dir);
    let mut text = String::new();
    old.read_to_string(&mut text).unwrap();
    assert_eq!(text, "first", "an open file reads the version it opened");
    // While a file is open with FUSE passthrough, the kernel answers `stat` from the cached file it reads (the
    // limit the README states); once it is closed, the inode shows the new head.
    drop(old);
    let now = std::fs::metadata(&path).unwrap();
    assert_eq!(now.ino(), ino, "a publish does not renumber the head view");
    assert_eq!(now.len(), 7, "the attributes follow the new head");
    assert_eq!(std::fs::read(&path).unwrap(), b"second!");
}

#[test]
fn a_remount_on_the_same_cache_downloads_nothing_again() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let cache = tempfile::tempdir().unwrap();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    let before = std::fs::read(mount.path("volumes/input-data/data/input.csv")).unwrap();
    let version =
        String::from_utf8(getxattr(&mount.path("volumes/input-data"), "user.vm0.version").unwrap())
            .unwrap();
    assert_eq!(downloads(&emulator, &version), 1);
    // The file was served early: let its archive finish and be cached before unmounting.
    mount.wait_for_downloads();
    mount.unmount();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    let after = std::fs::read(mount.path("volumes/input-data/data/input.csv")).unwrap();
    assert_eq!(before, after);
    assert_eq!(
        downloads(&emulator, &version),
        1,
        "the remount downloaded the archive again"
    );
}

#[test]
fn the_cache_size_bounds_the_cache() {
    let emulator = Emulator::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let mut rng = 7u64;
    for name in ["one", "two", "three"] {
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                (rng >> 33) as u8
            })
            .collect();
        write_files(&src.path().join(name), &[("blob.bin", &data)]);
        emulator.upload_dir("volumes", name, &src.path().join(name));
    }
    let mount = Mount::start(&emulator, &["--cache-size", "700K"]);
    for name in ["one", "two", "three"] {
        let read = std::fs::read(mount.path(&format!("volumes/{name}/blob.bin"))).unwrap();
        assert_eq!(
            read,
            std::fs::read(src.path().join(name).join("blob.bin")).unwrap()
        );
        mount.wait_for_downloads();
    }
    let held = ok(&format!(
        "find {} -type f -name blob.bin | wc -l",
        q(&mount.cache_dir().join("archives"))
    ));
    assert_eq!(
        held.trim(),
        "2",
        "a 700K cache holds two of the three 300K archives"
    );
    // The evicted one comes back on demand.
    assert_eq!(
        std::fs::read(mount.path("volumes/one/blob.bin"))
            .unwrap()
            .len(),
        300_000
    );
}

#[test]
fn twenty_parallel_readers_of_a_cold_archive_cause_one_download() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let version = emulator.get_json("/v1/volumes?limit=100").1["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "input-data")
        .unwrap()["current_version_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = mount.path("volumes/input-data/data/input.csv");
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || std::fs::read(path).map(|d| d.len()))
        })
        .collect();
    let sizes: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().unwrap().unwrap())
        .collect();
    assert!(sizes.iter().all(|s| *s == sizes[0] && *s > 0));
    assert_eq!(downloads(&emulator, &version), 1);
}

#[test]
fn a_truncated_download_fails_with_eio_and_nothing_half_extracted_is_served() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    emulator.set_faults(serde_json::json!({"truncate_blobs": true}));
    // The blob is cut halfway, inside data/input.csv: README.md, the first entry, is whole before the cut and
    // is served as soon as it is extracted; the file that is cut is never served.
    assert_eq!(
        std::fs::read(mount.path("volumes/input-data/README.md")).unwrap(),
        b"# input-data\n\nSample inputs for the demo agents.\n"
    );
    let out = sh(&format!(
        "cat {}",
        q(&mount.path("volumes/input-data/data/input.csv"))
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
        "{:?}",
        out
    );
    assert!(
        !mount.cache_dir().join("archives").exists()
            || ok(&format!(
                "find {} -type f | wc -l",
                q(&mount.cache_dir().join("archives"))
            ))
            .trim()
                == "0"
    );
    emulator.set_faults(serde_json::json!({}));
    let source = emulator.data_dir().join("seed-src/volumes/input-data");
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&source)
    ));
    ok(&format!("ls {}", q(&mount.path("agents"))));
}

/// A tar entry with any name, type and link, as a hostile archive would carry.
fn raw_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    data: &[u8],
) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn hostile_archives_write_nothing_outside_the_cache() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, b"untouched").unwrap();
    let out = outside.path().to_string_lossy().into_owned();
    let mut b = tar::Builder::new(Vec::new());
    use tar::EntryType::*;
    raw_entry(
        &mut b,
        b"../../../../../../../../escape.txt",
        Regular,
        b"",
        b"evil",
    );
    raw_entry(
        &mut b,
        format!("{out}/absolute.txt").as_bytes(),
        Regular,
        b"",
        b"evil",
    );
    raw_entry(&mut b, b"link", Symlink, out.as_bytes(), b"");
    raw_entry(&mut b, b"link/through.txt", Regular, b"", b"evil");
    raw_entry(&mut b, b"hard", Link, victim.as_os_str().as_bytes(), b"");
    raw_entry(&mut b, b"dev", Char, b"", b"");
    raw_entry(&mut b, b"fifo", Fifo, b"", b"");
    raw_entry(&mut b, b"ok.txt", Regular, b"", b"fine");
    let archive = gzip(&b.into_inner().unwrap());
    emulator.add_raw_archive("artifacts", "hostile", &archive);

    let mount = Mount::start(&emulator, &[]);
    // The symlink out is dropped; `link/through.txt` then lands in a real directory inside the cache.
    let listing = ok(&format!("ls -A {}", q(&mount.path("artifacts/hostile"))));
    assert_eq!(listing, "link\nok.txt\n");
    assert!(
        std::fs::symlink_metadata(mount.path("artifacts/hostile/link"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        std::fs::read(mount.path("artifacts/hostile/ok.txt")).unwrap(),
        b"fine"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    let entries: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["victim.txt"]);
    let escaped = mount.cache_dir().parent().unwrap().join("escape.txt");
    assert!(!escaped.exists() && !Path::new("/escape.txt").exists());
    ok(&format!("ls {}", q(&mount.path("agents"))));
}

#[test]
fn a_gzip_bomb_is_stopped_by_the_size_limit_and_the_mount_goes_on() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(
        &mut b,
        b"zeros.bin",
        tar::EntryType::Regular,
        b"",
        &vec![0u8; 20 << 20],
    );
    let archive = gzip(&b.into_inner().unwrap());
    assert!(
        archive.len() < 200_000,
        "the bomb is small: {} bytes",
        archive.len()
    );
    emulator.add_raw_archive("artifacts", "bomb", &archive);
    let mount = Mount::start(&emulator, &["--max-archive-size", "1M"]);
    let out = sh(&format!("ls {}", q(&mount.path("artifacts/bomb"))));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{out:?}"
    );
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&emulator.data_dir().join("seed-src/volumes/input-data"))
    ));
}

/// Everything outside a volume's head is read-only (volumes are written in tests/writes.rs).
#[test]
fn writes_are_refused() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    for script in [
        format!("touch {}/agents/new-file", q(mount.mountpoint())),
        format!("mkdir {}/artifacts/new-dir", q(mount.mountpoint())),
        format!(
            "/bin/echo x > {}/artifacts/report/report.md",
            q(mount.mountpoint())
        ),
        format!("rm {}/artifacts/report/report.md", q(mount.mountpoint())),
    ] {
        let out = sh(&script);
        assert!(!out.status.success(), "`{script}` succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Read-only file system") || err.contains("Permission denied"),
            "{script}: {err}"
        );
    }
}

#[test]
fn a_slow_listing_does_not_block_cached_reads() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let cached = mount.path("volumes/input-data/README.md");
    std::fs::read(&cached).unwrap();
    emulator.set_faults(serde_json::json!({"latency_ms": 4000, "path_prefix": "/v1/runs"}));
    let runs = mount.path("runs");
    let slow = std::thread::spawn(move || std::fs::read_dir(runs).map(|d| d.count()));
    std::thread::sleep(Duration::from_millis(200));
    std::fs::read(&cached).unwrap();
    std::fs::metadata(mount.path("volumes/input-data/data")).unwrap();
    assert!(
        !slow.is_finished(),
        "the cached read should have answered while the listing waited"
    );
    assert!(slow.join().unwrap().unwrap() > 30);
}

#[test]
fn a_wrong_token_an_unreachable_api_and_a_missing_token_fail_the_mount() {
    let emulator = Emulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cache = dir.path().join("cache");

    let out = mount_command(&emulator, &mnt, &cache, &["-f"])
        .env("VM0_API_KEY", "vm0_live_wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("token"),
        "{out:?}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("vm0_live_wrong"),
        "the token leaked into a message"
    );

    let out = mount_command_at(
        "http://127.0.0.1:9",
        emulator.token(),
        &mnt,
        &cache,
        &["-f"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.1:9"),
        "{out:?}"
    );

    let out = mount_command(&emulator, &mnt, &cache, &["-f"])
        .env_remove("VM0_API_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VM0_API_KEY"));
    assert!(!is_mounted(&mnt));
}

#[test]
fn kill_9_leaves_no_dead_mount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mut mount = Mount::start(&emulator, &[]);
    std::fs::read_dir(mount.path("agents")).unwrap();
    mount.signal_and_wait(libc::SIGKILL);
    // fusermount3 notices the death and unmounts; generous, so that a loaded machine is not a failure.
    assert!(
        wait_unmounted(mount.mountpoint(), Duration::from_secs(60)),
        "kill -9 left the mount behind"
    );
}

#[test]
fn sigterm_unmounts_cleanly() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mut mount = Mount::start(&emulator, &[]);
    let status = mount.signal_and_wait(libc::SIGINT);
    assert!(status.success(), "{status}: {}", mount.stderr());
    assert!(!is_mounted(mount.mountpoint()));
}

#[test]
fn the_background_mount_returns_once_live_and_unmount_ends_it() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cache = dir.path().join("cache");
    let out = mount_command(&emulator, &mnt, &cache, &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Whatever happens next, do not leave the daemon's mount behind.
    struct Detach<'a>(&'a Path);
    impl Drop for Detach<'_> {
        fn drop(&mut self) {
            if is_mounted(self.0) {
                common::mount::lazy_unmount(self.0);
            }
        }
    }
    let _guard = Detach(&mnt);
    assert!(
        is_mounted(&mnt),
        "vm0fs mount returned before the mount was live"
    );
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 4);
    assert!(cache.join("vm0fs.log").exists());
    let out = vm0fs().arg("unmount").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(wait_unmounted(&mnt, Duration::from_secs(10)));
}

#[test]
fn a_panicking_request_is_answered_with_eio_and_the_mount_goes_on() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start_with_env(&emulator, &[], &[("VM0FS_TEST_PANIC_ON_LOOKUP", "boom")]);
    for _ in 0..3 {
        let out = sh(&format!("ls {}/agents/boom", q(mount.mountpoint())));
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
            "{out:?}"
        );
        assert_eq!(
            ok(&format!("ls {}", q(mount.mountpoint()))),
            "agents\nartifacts\nruns\nvolumes\n"
        );
    }
    mount.unmount();
}

#[test]
fn a_token_file_readable_by_others_is_refused_and_a_private_one_works() {
    use std::os::unix::fs::PermissionsExt;
    let emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", emulator.token())).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token_arg = token_file.to_str().unwrap();
    let out = mount_command_at(
        emulator.base_url(),
        "",
        &mnt,
        &dir.path().join("cache"),
        &["-f", "--token-file", token_arg],
    )
    .env_remove("VM0_API_KEY")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{out:?}"
    );
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = mount_command_at(
        emulator.base_url(),
        "",
        &mnt,
        &dir.path().join("cache"),
        &["--token-file", token_arg],
    )
    .env_remove("VM0_API_KEY")
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed = std::fs::read_dir(&mnt).map(|d| d.count());
    let unmounted = vm0fs().arg("unmount").arg(&mnt).output().unwrap();
    assert_eq!(listed.unwrap(), 4);
    assert!(unmounted.status.success(), "{unmounted:?}");
    assert!(wait_unmounted(&mnt, Duration::from_secs(10)));
}

/// A file whose name is longer than ustar's 100 bytes, as the tar crate writes it (a GNU long-name entry).
fn long_name_entry(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    builder.append_data(&mut header, path, data).unwrap();
}

#[test]
fn odd_archives_show_safely_through_the_mount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mut b = tar::Builder::new(Vec::new());
    use tar::EntryType::*;
    let long = "x".repeat(300);
    long_name_entry(&mut b, &format!("deep/{}.txt", &long[..200]), b"pax");
    raw_entry(&mut b, b"dup.txt", Regular, b"", b"first");
    raw_entry(&mut b, b"dup.txt", Regular, b"", b"second");
    raw_entry(&mut b, b"both", Regular, b"", b"a file");
    raw_entry(&mut b, b"both/inside.txt", Regular, b"", b"under a file");
    raw_entry(&mut b, b"caf\xe9.txt", Regular, b"", b"latin-1 name");
    raw_entry(&mut b, b"ok.txt", Regular, b"", b"fine");
    emulator.add_raw_archive("artifacts", "odd", &gzip(&b.into_inner().unwrap()));

    // 200,000 empty entries: stopped by the entry limit, with a clear error, while the mount answers.
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..200_000 {
        raw_entry(&mut b, format!("f{i}").as_bytes(), Regular, b"", b"");
    }
    emulator.add_raw_archive("artifacts", "many", &gzip(&b.into_inner().unwrap()));

    let mount = Mount::start(&emulator, &["--max-archive-entries", "50000"]);
    let odd = mount.path("artifacts/odd");
    assert_eq!(std::fs::read(odd.join("ok.txt")).unwrap(), b"fine");
    assert_eq!(
        std::fs::read(odd.join("dup.txt")).unwrap(),
        b"second",
        "the last duplicate wins"
    );
    assert_eq!(
        std::fs::read(odd.join("both")).unwrap(),
        b"a file",
        "a file keeps its name against a directory"
    );
    let pax = odd.join("deep").join(format!("{}.txt", &long[..200]));
    assert_eq!(
        std::fs::read(&pax).unwrap(),
        b"pax",
        "a 200-character name from a long-name header"
    );
    let latin1 = odd.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    assert_eq!(
        std::fs::read(&latin1).unwrap(),
        b"latin-1 name",
        "a non-UTF-8 name is kept as bytes"
    );
    ok(&format!("find {} -type f | wc -l", q(&odd)));

    let out = sh(&format!("ls {}", q(&mount.path("artifacts/many"))));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "{out:?}"
    );
    assert!(
        mount.stderr().contains("--max-archive-entries"),
        "the log says which limit to raise"
    );
    let rss = std::fs::read_to_string(format!("/proc/{}/status", mount.pid())).unwrap();
    let rss_kib: u64 = rss
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss_kib < 128 * 1024, "RSS stays bounded: {rss_kib} KiB");
    ok(&format!("ls {}", q(&mount.path("agents"))));
}
