//! The main case: an ordinary user (here `nobody`, with a HOME of its own) mounts through `fusermount3`, browses,
//! reads, starts a run, asks `vm0fs status`, unmounts; a `kill -9` of its mount leaves no dead mount; root cannot
//! read that user's mount (no `--allow-other`); a `user` line in `/etc/fstab` lets the user `mount` and `umount`
//! it with mount(8) itself.
//!
//! These machines keep `/dev/fuse` at `0600` (a distribution makes it `0666`), so each test opens it to everyone
//! for its duration through `DevFuseForUsers`, which restores the mode when the last test that needs it is done:
//! tests run in parallel processes, so a shared `flock` counts the users and an exclusive one guards the change.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::emulator::Emulator;
use common::mount::{is_mounted, lazy_unmount, wait_unmounted};

const NOBODY: u32 = 65534;
const DEV_FUSE: &str = "/dev/fuse";
/// Held shared by every test that needs `/dev/fuse` open; the last one out restores the mode.
const USERS_LOCK: &str = "/tmp/vm0fs-tests-dev-fuse.users";
/// Held exclusively while the mode is changed or restored.
const MODE_LOCK: &str = "/tmp/vm0fs-tests-dev-fuse.lock";
/// The mode `/dev/fuse` had before the first test changed it.
const SAVED_MODE: &str = "/tmp/vm0fs-tests-dev-fuse.mode";
/// Held exclusively while a test adds its line to `/etc/fstab` or takes it out.
const FSTAB_LOCK: &str = "/tmp/vm0fs-tests-fstab.lock";
const FSTAB: &str = "/etc/fstab";

fn flock(file: &File, op: i32) -> bool {
    // SAFETY: flock(2) on a descriptor that `file` keeps open.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

fn lock_file(path: &str) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap()
}

/// `/dev/fuse` is `0666` while this lives (see the module doc).
struct DevFuseForUsers {
    users: File,
}

impl DevFuseForUsers {
    fn open() -> DevFuseForUsers {
        let users = lock_file(USERS_LOCK);
        assert!(flock(&users, libc::LOCK_SH));
        let mode = lock_file(MODE_LOCK);
        assert!(flock(&mode, libc::LOCK_EX));
        if !Path::new(SAVED_MODE).exists() {
            let now = std::fs::metadata(DEV_FUSE)
                .expect("/dev/fuse is missing: these tests need FUSE")
                .permissions()
                .mode()
                & 0o7777;
            std::fs::write(SAVED_MODE, format!("{now:o}")).unwrap();
        }
        std::fs::set_permissions(DEV_FUSE, std::fs::Permissions::from_mode(0o666)).unwrap();
        DevFuseForUsers { users }
    }
}

impl Drop for DevFuseForUsers {
    fn drop(&mut self) {
        // Only the last user gets the exclusive lock; a test starting meanwhile waits for the restore, then opens
        // the device again.
        if !flock(&self.users, libc::LOCK_EX | libc::LOCK_NB) {
            return;
        }
        let mode = lock_file(MODE_LOCK);
        flock(&mode, libc::LOCK_EX);
        if let Ok(saved) = std::fs::read_to_string(SAVED_MODE)
            && let Ok(bits) = u32::from_str_radix(saved.trim(), 8)
        {
            let _ = std::fs::set_permissions(DEV_FUSE, std::fs::Permissions::from_mode(bits));
            let _ = std::fs::remove_file(SAVED_MODE);
        }
    }
}

/// A line of `/etc/fstab` while this lives. Suites may run side by side, so every change is made under a lock, and
/// written to a temporary file renamed over the old one: a `mount(8)` reading meanwhile sees one whole file.
struct FstabLine {
    line: String,
}

impl FstabLine {
    fn add(line: String) -> FstabLine {
        edit_fstab(|text| format!("{text}{line}\n"));
        FstabLine { line }
    }
}

impl Drop for FstabLine {
    fn drop(&mut self) {
        edit_fstab(|text| {
            text.lines()
                .filter(|l| *l != self.line)
                .map(|l| format!("{l}\n"))
                .collect()
        });
    }
}

fn edit_fstab(change: impl FnOnce(&str) -> String) {
    let lock = lock_file(FSTAB_LOCK);
    assert!(flock(&lock, libc::LOCK_EX));
    let mut text = std::fs::read_to_string(FSTAB).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let temp = format!("{FSTAB}.vm0fs-test-{}", std::process::id());
    std::fs::write(&temp, change(&text)).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&temp, FSTAB).unwrap();
}

/// A HOME for `nobody`, with `~/vm0` to mount on; whatever is mounted there is detached at the end.
struct UserHome {
    dir: tempfile::TempDir,
}

impl UserHome {
    fn new() -> UserHome {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vm0")).unwrap();
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{NOBODY}:{NOBODY}"))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        UserHome { dir }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn mnt(&self) -> PathBuf {
        self.dir.path().join("vm0")
    }

    /// `program args...` as `nobody`, with this HOME and the emulator's token.
    fn command(&self, emulator: &Emulator, program: &str) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.home())
            .env("VM0_API_KEY", emulator.token())
            .env("VM0_API_URL", emulator.base_url())
            .current_dir(self.home());
        command
    }

    fn sh(&self, emulator: &Emulator, script: &str) -> Output {
        self.command(emulator, "sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    fn ok(&self, emulator: &Emulator, script: &str) -> String {
        let out = self.sh(emulator, script);
        assert!(
            out.status.success(),
            "`{script}` as nobody failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for UserHome {
    fn drop(&mut self) {
        if is_mounted(&self.mnt()) {
            lazy_unmount(&self.mnt());
        }
    }
}

fn vm0fs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vm0fs")
}

#[test]
fn a_normal_user_mounts_browses_reads_starts_a_run_and_unmounts() {
    let _fuse = DevFuseForUsers::open();
    let emulator = Emulator::start(&["--seed", "demo"]);
    let user = UserHome::new();
    let vm0fs = vm0fs_bin();

    user.ok(&emulator, &format!("{vm0fs} mount ~/vm0"));
    assert!(
        is_mounted(&user.mnt()),
        "vm0fs mount returned before the mount was live"
    );
    assert_eq!(
        user.ok(&emulator, "ls ~/vm0"),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    let readme = user.ok(&emulator, "cat ~/vm0/volumes/input-data/README.md");
    assert!(!readme.is_empty());
    assert!(
        user.home().join(".cache/vm0fs/archives").is_dir(),
        "the cache is in the user's own ~/.cache"
    );
    // One shell writes and reads back: each writer reads its own run, and an unrelated process reads nothing.
    let run = user.ok(
        &emulator,
        "echo 'say hello' > ~/vm0/runs/new/coder && cat ~/vm0/runs/new/coder",
    );
    let run = run.trim();
    assert!(!run.is_empty());
    assert_eq!(
        user.ok(&emulator, &format!("cat ~/vm0/runs/{run}/prompt")),
        "say hello\n"
    );
    let status = user.ok(&emulator, &format!("{vm0fs} status"));
    assert!(
        status.contains(&user.mnt().display().to_string()),
        "{status}"
    );

    // Root is not let in without --allow-other.
    let as_root = Command::new("ls").arg(user.mnt()).output().unwrap();
    assert!(!as_root.status.success(), "root read a private mount");
    assert!(
        String::from_utf8_lossy(&as_root.stderr).contains("Permission denied"),
        "{as_root:?}"
    );

    user.ok(&emulator, &format!("{vm0fs} unmount ~/vm0/volumes"));
    assert!(wait_unmounted(&user.mnt(), Duration::from_secs(30)));
}

#[test]
fn a_normal_users_foreground_mount_killed_by_sigkill_leaves_no_dead_mount() {
    let _fuse = DevFuseForUsers::open();
    let emulator = Emulator::start(&["--seed", "demo"]);
    let user = UserHome::new();
    let mut mount: Child = user
        .command(&emulator, vm0fs_bin())
        .arg("mount")
        .arg(user.mnt())
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::collect(mount.stderr.take().unwrap());
    // setpriv executes vm0fs in its own process: the PID is vm0fs's.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !is_mounted(&user.mnt()) {
        assert!(
            matches!(mount.try_wait(), Ok(None)),
            "vm0fs exited: {}",
            stderr.lock().unwrap()
        );
        assert!(std::time::Instant::now() < deadline, "never mounted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !stderr.lock().unwrap().contains("without it"),
        "no auto-unmount for a normal user: {}",
        stderr.lock().unwrap()
    );
    assert_eq!(user.ok(&emulator, "ls ~/vm0 | wc -l").trim(), "4");
    mount.kill().unwrap();
    mount.wait().unwrap();
    assert!(
        wait_unmounted(&user.mnt(), Duration::from_secs(60)),
        "kill -9 left a dead mount behind"
    );
}

#[test]
fn a_user_fstab_line_lets_a_normal_user_mount_and_umount_with_mount_itself() {
    let _fuse = DevFuseForUsers::open();
    let emulator = Emulator::start(&["--seed", "demo"]);
    let user = UserHome::new();
    let token = user.home().join("token");
    std::fs::write(&token, emulator.token()).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&token, Some(NOBODY), Some(NOBODY)).unwrap();
    let mnt = user.mnt();
    // As contrib/fstab.example, with the binary named in the type (mount(8) clears PATH).
    let _line = FstabLine::add(format!(
        "vm0 {} fuse.{} noauto,user,api_url={},token_file={},cache_dir={} 0 0",
        mnt.display(),
        vm0fs_bin(),
        emulator.base_url(),
        token.display(),
        user.home().join("cache").display()
    ));

    user.ok(&emulator, &format!("mount {}", mnt.display()));
    assert!(is_mounted(&mnt), "mount returned before the mount was live");
    assert_eq!(
        user.ok(&emulator, "ls ~/vm0"),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    assert!(
        !user
            .ok(&emulator, "cat ~/vm0/volumes/input-data/README.md")
            .is_empty()
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let options = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt.to_str().unwrap()))
        .and_then(|l| l.split(' ').nth(3))
        .unwrap_or_else(|| panic!("{} is not in /proc/self/mounts", mnt.display()))
        .to_string();
    for expected in ["noexec", "nosuid", "nodev", &format!("user_id={NOBODY}")] {
        assert!(
            options.split(',').any(|o| o == expected),
            "{expected} missing from {options}"
        );
    }
    assert!(
        user.home().join("cache/archives").is_dir(),
        "the cache is where the line says"
    );

    user.ok(&emulator, &format!("umount {}", mnt.display()));
    assert!(wait_unmounted(&mnt, Duration::from_secs(30)));
}
