//! `mount -t fuse.vm0fs` and fstab lines: real `mount(8)` and `/sbin/mount.fuse` (Debian's fuse3) running the
//! built `vm0fs` against the emulator, the way they run at boot: without `VM0_API_KEY`, the token from token_file.
//!
//! `mount(8)` clears PATH before it runs `mount.fuse`, whose `/bin/sh` then searches only the default PATH, so
//! `-t fuse.vm0fs` finds a `vm0fs` in /usr/local/bin but never in a test's target directory. These tests therefore
//! name the binary by its absolute path in the type (`-t fuse./abs/path/vm0fs`, which mount.fuse runs as the
//! program), and check the PATH lookup of `-t fuse.vm0fs` by running `/sbin/mount.fuse` itself with a PATH.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::daemon::Daemon;
use common::emulator::Emulator;
use common::mount::{is_mounted, ok, q, sh, wait_unmounted};

const MOUNT_FUSE: &str = "/sbin/mount.fuse";

fn vm0fs_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vm0fs"))
}

/// A mount point, a private token file and a cache dir in a fresh temp dir.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            Path::new(MOUNT_FUSE).exists(),
            "{MOUNT_FUSE} is missing: install fuse3 (Debian: apt-get install fuse3; scripts/test.sh does it as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{}\n", common::emulator::TOKEN)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn mnt(&self) -> PathBuf {
        self.path("mnt")
    }

    /// `api_url=…,token_file=…,cache_dir=…` for `emulator`.
    fn options(&self, emulator: &Emulator) -> String {
        format!(
            "api_url={},token_file={},cache_dir={}",
            emulator.base_url(),
            self.path("token").display(),
            self.path("cache").display()
        )
    }

    /// `program args` as at boot: no VM0_API_KEY or VM0_API_URL, and an empty config directory.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg("60")
            .arg(program)
            .args(args)
            .env_remove("VM0_API_KEY")
            .env_remove("VM0_API_URL")
            .env("XDG_CONFIG_HOME", self.path("config"));
        command
    }
}

fn assert_live(mnt: &Path, out: &Output) {
    assert!(out.status.success(), "the mount failed: {out:?}");
    assert!(is_mounted(mnt), "mount returned before the mount was live");
    assert_eq!(
        ok(&format!("ls {}", q(mnt))),
        "agents\nartifacts\nruns\nvolumes\n"
    );
}

/// `umount DIR` ends the mount, and the daemon with it.
fn umount(mnt: &Path, daemon: &Daemon) {
    assert!(
        daemon.pid().is_some(),
        "no vm0fs process serves {}",
        mnt.display()
    );
    let out = Command::new("umount").arg(mnt).output().unwrap();
    assert!(out.status.success(), "umount: {out:?}");
    assert!(wait_unmounted(mnt, Duration::from_secs(10)));
    assert!(
        daemon.wait_exited(Duration::from_secs(15)),
        "vm0fs outlived its mount"
    );
}

/// `mount -t fuse.<this vm0fs> vm0 MNT -o OPTIONS`.
fn mount_t(setup: &Setup, mnt: &Path, options: &str) -> Output {
    let binary = vm0fs_binary();
    let fs_type = format!("fuse.{}", binary.display());
    let mnt = mnt.to_str().unwrap();
    setup
        .command("mount", &["-t", &fs_type, "vm0", mnt, "-o", options])
        .output()
        .unwrap()
}

#[test]
fn mount_t_fuse_vm0fs_mounts_with_options_and_umount_ends_it() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let setup = Setup::new();
    let mnt = setup.mnt();
    let daemon = Daemon::guard(&mnt);
    let options = format!("{},cache_size=1G,_netdev,nodev", setup.options(&emulator));
    let out = mount_t(&setup, &mnt, &options);
    assert_live(&mnt, &out);
    assert!(
        setup.path("cache").join("vm0fs.log").exists(),
        "cache_dir= was not used"
    );
    umount(&mnt, &daemon);
}

#[test]
fn mount_fuse_finds_vm0fs_on_path_and_ro_mounts_read_only() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let setup = Setup::new();
    let mnt = setup.mnt();
    let daemon = Daemon::guard(&mnt);
    let bin_dir = vm0fs_binary().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let options = format!("{},ro,noatime,nosuid,user,nofail", setup.options(&emulator));
    let out = setup
        .command(
            MOUNT_FUSE,
            &[
                "vm0",
                mnt.to_str().unwrap(),
                "-t",
                "fuse.vm0fs",
                "-o",
                &options,
            ],
        )
        .env("PATH", path)
        .output()
        .unwrap();
    assert_live(&mnt, &out);
    let write = sh(&format!("printf hello > {}/runs/new/coder", q(&mnt)));
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "ro did not make the mount read-only: {write:?}"
    );
    umount(&mnt, &daemon);
}

#[test]
fn the_fstab_example_line_mounts() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let setup = Setup::new();
    let mnt = setup.mnt();
    let daemon = Daemon::guard(&mnt);
    let example = include_str!("../contrib/fstab.example");
    let line = example
        .lines()
        .find_map(|l| l.strip_prefix("#vm0 "))
        .expect("contrib/fstab.example has a `#vm0 ...` example line");
    let line = format!("vm0 {line}")
        .replace("/home/alice/vm0 ", &format!("{} ", mnt.display()))
        .replace("fuse.vm0fs", &format!("fuse.{}", vm0fs_binary().display()))
        .replace(
            "/home/alice/.config/vm0fs/token",
            &setup.path("token").display().to_string(),
        )
        .replace(
            "/home/alice/.cache/vm0fs",
            &setup.path("cache").display().to_string(),
        )
        .replace(
            "token_file=",
            &format!("api_url={},token_file=", emulator.base_url()),
        );
    let fstab = setup.path("fstab");
    std::fs::write(&fstab, format!("{line}\n")).unwrap();
    let out = setup
        .command(
            "mount",
            &["--fstab", fstab.to_str().unwrap(), mnt.to_str().unwrap()],
        )
        .output()
        .unwrap();
    assert_live(&mnt, &out);
    umount(&mnt, &daemon);
}

#[test]
fn an_unknown_mount_option_fails_naming_it() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let setup = Setup::new();
    let mnt = setup.mnt();
    let _daemon = Daemon::guard(&mnt);
    let options = format!("{},cache_sise=1G", setup.options(&emulator));
    let out = mount_t(&setup, &mnt, &options);
    assert!(!out.status.success(), "an unknown option mounted: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cache_sise"),
        "the error does not name the option: {out:?}"
    );
    assert!(!is_mounted(&mnt));
}
