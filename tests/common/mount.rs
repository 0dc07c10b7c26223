//! `Mount`: a real `vm0fs mount -f` of the built binary, on a fresh temp dir, against a test's emulator.
//!
//! The guard waits (bounded) until the kernel lists the mount in `/proc/self/mountinfo`, failing loudly with the
//! process's stderr if it exits first. Drop sends SIGTERM to the process by its PID, waits a bounded time for it
//! to unmount and exit, and falls back to a lazy unmount and SIGKILL, so no test leaves a mount behind. `/dev/fuse`
//! must exist: a machine without it fails the test, it does not skip it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::emulator::Emulator;

const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Mount {
    child: Option<Child>,
    mountpoint: PathBuf,
    cache_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

/// The `vm0fs` binary built for these tests.
pub fn vm0fs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vm0fs"))
}

/// `vm0fs mount` arguments that point at `emulator`, plus a token in the environment.
pub fn mount_command(
    emulator: &Emulator,
    mountpoint: &Path,
    cache_dir: &Path,
    args: &[&str],
) -> Command {
    mount_command_at(
        emulator.base_url(),
        emulator.token(),
        mountpoint,
        cache_dir,
        args,
    )
}

/// `vm0fs mount` arguments for any API URL and token.
pub fn mount_command_at(
    url: &str,
    token: &str,
    mountpoint: &Path,
    cache_dir: &Path,
    args: &[&str],
) -> Command {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need FUSE"
    );
    let mut command = vm0fs();
    command
        .arg("mount")
        .arg(mountpoint)
        .arg("--api-url")
        .arg(url)
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(args)
        .env("VM0_API_KEY", token)
        .env_remove("VM0_API_URL");
    command
}

impl Mount {
    /// Mounts in the foreground with a cache of its own.
    pub fn start(emulator: &Emulator, args: &[&str]) -> Mount {
        Mount::start_with_env(emulator, args, &[])
    }

    /// Mounts in the foreground with a cache of its own and extra environment variables.
    pub fn start_with_env(emulator: &Emulator, args: &[&str], env: &[(&str, &str)]) -> Mount {
        let dir = tempfile::tempdir().expect("create a temp dir for the mount");
        let cache_dir = dir.path().join("cache");
        Mount::start_in(emulator, dir, cache_dir, args, env)
    }

    /// Mounts in the foreground using `cache_dir` (to remount on a cache that an earlier mount filled).
    pub fn start_with_cache(emulator: &Emulator, cache_dir: &Path, args: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("create a temp dir for the mount");
        Mount::start_in(emulator, dir, cache_dir.to_path_buf(), args, &[])
    }

    fn start_in(
        emulator: &Emulator,
        dir: tempfile::TempDir,
        cache_dir: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Mount {
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir_all(&mountpoint).expect("create the mount point");
        let mut command = mount_command(emulator, &mountpoint, &cache_dir, args);
        command.arg("-f").envs(env.iter().copied());
        let mut mount = Mount::spawn(command, dir, mountpoint, cache_dir);
        mount.wait_until_mounted();
        mount
    }

    /// Starts `command` (a foreground `vm0fs` that mounts at `mountpoint`, inside `dir`) without waiting for the
    /// mount: for tests that watch it come up. The guard cleans up as for `start`.
    pub fn spawn(
        mut command: Command,
        dir: tempfile::TempDir,
        mountpoint: PathBuf,
        cache_dir: PathBuf,
    ) -> Mount {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vm0fs");
        let stderr = match child.stderr.take() {
            Some(pipe) => super::collect(pipe),
            None => Arc::default(),
        };
        Mount {
            child: Some(child),
            mountpoint,
            cache_dir,
            stderr,
            _dir: dir,
        }
    }

    /// Waits (bounded) until the kernel lists the mount; fails with stderr if the process exits first.
    pub fn wait_until_mounted(&mut self) {
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        while !is_mounted(&self.mountpoint) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "vm0fs exited ({status}) before mounting:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "vm0fs did not mount within {MOUNT_TIMEOUT:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the mount process is running")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status of the mount's process if it has ended, without waiting; the guard then has no process
    /// left to stop.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// Whether the mount's log says `text`, waiting (bounded) for the thread that drains its stderr: a line the
    /// mount wrote before answering a request may still be in the pipe when the request returns.
    pub fn logged(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.stderr().contains(text) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Waits (bounded) until no download is in flight (`.vm0fs/status`): a file is served as soon as it is
    /// extracted, so a read can return before its archive is complete, cached, and has evicted others.
    pub fn wait_for_downloads(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read(self.path(".vm0fs/status")).expect("read .vm0fs/status");
            let status: serde_json::Value = serde_json::from_slice(&text).expect("status JSON");
            if status["cache"]["downloads"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "downloads still in flight after 60 s: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the vm0fs process and waits (bounded) for it to exit; returns its exit status.
    pub fn signal_and_wait(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the mount process is running");
        // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "vm0fs did not exit within {EXIT_TIMEOUT:?} of signal {signal}:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Unmounts cleanly (SIGTERM) and checks the process exited well.
    pub fn unmount(mut self) {
        let status = self.signal_and_wait(libc::SIGTERM);
        assert!(
            status.success(),
            "vm0fs exited with {status} after SIGTERM:\n{}",
            self.stderr()
        );
        assert!(
            !is_mounted(&self.mountpoint),
            "the mount is still there after SIGTERM"
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            let mut child = self.child.take();
            // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
            if let Some(c) = child.as_ref() {
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            }
            let deadline = Instant::now() + EXIT_TIMEOUT;
            while let Some(c) = child.as_mut() {
                if matches!(c.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(mut c) = child {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if is_mounted(&self.mountpoint) {
            lazy_unmount(&self.mountpoint);
        }
    }
}

/// Whether the kernel lists `path` as a mount point (field 5 of mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// The last resort of a guard: detach the mount.
pub fn lazy_unmount(path: &Path) {
    let _ = Command::new("umount").arg("-l").arg(path).status();
}

/// Waits (bounded) until `path` is no longer a mount point; returns whether it went.
pub fn wait_unmounted(path: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while is_mounted(path) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Runs a shell command line that must succeed; returns its stdout.
pub fn ok(script: &str) -> String {
    let out = sh(script);
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path quoted for `sh -c`.
pub fn q(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// Runs a shell command line with a timeout, so that a wedged mount fails the test instead of hanging it.
pub fn sh(script: &str) -> Output {
    Command::new("timeout")
        .args(["60", "sh", "-c", script])
        .output()
        .expect("run sh")
}

impl Mount {
    /// The temp dir holding the mount point (and, for `start`, the cache): for tests that must open it to
    /// another uid (`chmod 0755`).
    pub fn parent_dir(&self) -> &Path {
        self._dir.path()
    }
}

/// `tail -f -s SECONDS path`, with what it has printed so far. Stop it by its PID (`Child::kill`).
pub fn tail_f(path: &Path, poll_secs: &str) -> (Child, Arc<Mutex<String>>) {
    let mut tail = Command::new("tail")
        .args(["-f", "-s", poll_secs])
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start tail");
    let stdout = tail.stdout.take().expect("tail's stdout is piped");
    (tail, super::collect(stdout))
}
