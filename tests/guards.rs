//! The guard rails of `vm0fs mount`, `status` and `unmount`, on real mounts: no second mount stacked on a live
//! one (the refusal names the process serving it), no mount over files unless `--nonempty`, no cache directory
//! inside the mount point, and `status`/`unmount` take any path inside a mount.

mod common;

use std::time::Duration;

use common::emulator::Emulator;
use common::mount::{Mount, is_mounted, mount_command, vm0fs, wait_unmounted};

/// How many times `path` appears as a mount point in this namespace.
fn times_mounted(path: &std::path::Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .filter(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
        .count()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn mounting_on_a_live_mount_is_refused_naming_its_process() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let other_cache = tempfile::tempdir().unwrap();
    let out = mount_command(&emulator, mount.mountpoint(), other_cache.path(), &[])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second mount was stacked: {out:?}");
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("already mounted by vm0fs process {}", mount.pid())),
        "{err}"
    );
    assert_eq!(times_mounted(mount.mountpoint()), 1);
    assert_eq!(std::fs::read_dir(mount.mountpoint()).unwrap().count(), 4);
}

#[test]
fn a_mount_point_with_files_is_refused_unless_nonempty_is_given() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(mnt.join("notes.txt"), b"mine\n").unwrap();
    let cache = dir.path().join("cache");
    let out = mount_command(&emulator, &mnt, &cache, &[])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = stderr_of(&out);
    assert!(
        err.contains("is not empty (it holds notes.txt)") && err.contains("--nonempty"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));

    let mut command = mount_command(&emulator, &mnt, &cache, &["--nonempty"]);
    command.arg("-f");
    // The guard's own temp dir is a spare one, so that `dir` (and the hidden file) outlive the mount.
    let spare = tempfile::tempdir().unwrap();
    let mut mount = Mount::spawn(command, spare, mnt.clone(), cache);
    mount.wait_until_mounted();
    assert!(mount.path("volumes").is_dir());
    assert!(!mount.path("notes.txt").exists(), "hidden while mounted");
    mount.unmount();
    assert_eq!(std::fs::read(mnt.join("notes.txt")).unwrap(), b"mine\n");
}

#[test]
fn a_cache_directory_inside_the_mount_point_is_refused() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = mount_command(&emulator, &mnt, &mnt.join("cache"), &[])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let err = stderr_of(&out);
    assert!(err.contains("is inside the mount point"), "{err}");
    assert!(!is_mounted(&mnt));
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "nothing made there"
    );
}

#[test]
fn status_and_unmount_take_a_path_inside_the_mount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mut mount = Mount::start(&emulator, &[]);
    let inside = mount.path("volumes/input-data");
    let out = vm0fs().arg("status").arg(&inside).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&mount.mountpoint().display().to_string()),
        "{text}"
    );

    let out = vm0fs().arg("unmount").arg(&inside).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(wait_unmounted(mount.mountpoint(), Duration::from_secs(30)));
    let status = mount.signal_and_wait(0);
    assert!(status.success(), "{status}: {}", mount.stderr());
}
