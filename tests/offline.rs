//! An API outage across a remount, on real mounts: what a first mount saw (a volume, a pinned version, a terminal
//! run's files) reads the same from a second mount made on the same cache while the API is down; such a mount
//! says what will and will not work, and `vm0fs status` says the API is unreachable. With an empty cache, or a
//! rejected token, an unreachable API still fails the mount.

mod common;

use common::emulator::Emulator;
use common::mount::{Mount, ok, q, vm0fs};

fn write_files(dir: &std::path::Path, files: &[(&str, &[u8])]) {
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn a_remount_with_the_api_down_reads_what_was_cached() {
    let mut emulator = Emulator::start(&["--seed", "demo"]);
    let src = tempfile::tempdir().unwrap();
    let (v1_dir, v2_dir) = (src.path().join("v1"), src.path().join("v2"));
    write_files(&v1_dir, &[("a.txt", b"first"), ("sub/b.txt", b"bee")]);
    write_files(&v2_dir, &[("a.txt", b"second")]);
    let v1 = emulator.upload_dir("volumes", "pinned", &v1_dir);
    emulator.upload_dir("volumes", "pinned", &v2_dir);
    let seed = emulator.data_dir().join("seed-src/volumes/input-data");
    let cache = tempfile::tempdir().unwrap();
    let pinned = format!("volumes/pinned@{}", &v1[..8]);

    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    let diff_all = |mount: &Mount| {
        ok(&format!(
            "diff -r {} {}",
            q(&mount.path("volumes/input-data")),
            q(&seed)
        ));
        ok(&format!(
            "diff -r {} {}",
            q(&mount.path(&pinned)),
            q(&v1_dir)
        ));
    };
    diff_all(&mount);
    let run = std::fs::read_dir(mount.path("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .find(|name| {
            std::fs::read(mount.path("runs").join(name).join("status"))
                .is_ok_and(|status| status == b"completed\n")
        })
        .expect("a completed run in the demo data");
    let run_dir = mount.path("runs").join(&run);
    let run_files = |dir: &std::path::Path| {
        ["status", "prompt", "run.json", "logs"].map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    assert_eq!(run_files(&run_dir)[0], b"completed\n", "a terminal run");
    let before = run_files(&run_dir);
    mount.unmount();

    emulator.stop_process();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    // The warning is on stderr before the mount is live; the collector thread reads it a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mount.stderr().contains("Mounting from the cache") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {}",
            mount.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    diff_all(&mount);
    assert_eq!(run_files(&mount.path("runs").join(&run)), before);
    let status = ok(&format!(
        "{} status {}",
        q(std::path::Path::new(env!("CARGO_BIN_EXE_vm0fs"))),
        q(mount.mountpoint())
    ));
    assert!(status.contains("UNREACHABLE since"), "{status}");
}

#[test]
fn a_rejected_token_or_an_empty_cache_still_fails_the_mount() {
    let mut emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let url = emulator.base_url().to_string();
    let mount_with = |cache: &std::path::Path, token: &str| {
        vm0fs()
            .args([
                "mount",
                mnt.to_str().unwrap(),
                "--api-url",
                &url,
                "--cache-dir",
            ])
            .arg(cache)
            .env("VM0_API_KEY", token)
            .env_remove("VM0_API_URL")
            .output()
            .unwrap()
    };

    // A cache that holds saved metadata does not excuse a rejected token.
    let full = dir.path().join("full");
    std::fs::create_dir_all(full.join("meta/agents")).unwrap();
    std::fs::write(full.join("meta/agents/616c6c.json"), b"[]").unwrap();
    let out = mount_with(&full, "vm0_live_wrong");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected the API token"));

    // An empty cache has nothing to offer while the API is down.
    emulator.stop_process();
    let out = mount_with(&dir.path().join("empty"), emulator.token());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the VM0 API"), "{err}");
    assert!(!err.contains("Mounting from the cache"), "{err}");
    assert!(!common::mount::is_mounted(&mnt));
}
