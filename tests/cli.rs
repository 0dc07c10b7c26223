//! The command line around the mount: completions, the man page, the config file and `--print-config`, read-only
//! mounts, systemd's readiness protocol (and the shipped unit), and what `vm0fs mount` says while the API is slow.
//! Real processes and real mounts against the emulator; subcommands and flags are read from `--help`, so a new
//! subcommand is checked without editing this file.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::daemon::Daemon;
use common::emulator::Emulator;
use common::mount::{Mount, is_mounted, mount_command, ok, q, sh, vm0fs, wait_unmounted};

fn run(command: &mut Command) -> Output {
    command.output().expect("run vm0fs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(vm0fs().args(args));
    assert!(out.status.success(), "vm0fs {args:?}: {out:?}");
    text(&out.stdout)
}

/// The subcommands `vm0fs --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let listed = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands");
    let names: Vec<String> = listed
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect();
    assert!(names.len() >= 4, "too few subcommands in --help:\n{help}");
    names
}

/// The long flags `vm0fs <sub> --help` shows.
fn long_flags(sub: &str) -> Vec<String> {
    let help = stdout_of(&[sub, "--help"]);
    let mut flags: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .filter(|w| w.len() > 2)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    let subcommands = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        for sub in &subcommands {
            assert!(
                script.contains(sub.as_str()),
                "{shell} completions lack {sub}"
            );
        }
        assert!(script.contains("print-config"), "{shell}: no mount flags");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("vm0fs.bash");
    std::fs::write(&script, stdout_of(&["completions", "bash"])).unwrap();
    ok(&format!("bash -n {}", q(&script)));
}

fn man_available() {
    let found = Command::new("man").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`man` is missing: install man-db (Debian: apt-get install man-db; scripts/test.sh does it as root)"
    );
}

/// `man -l FILE` as plain ASCII text, wide enough that no line wraps inside a synopsis.
fn render_man(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("LC_ALL", "C")
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .output()
        .expect("run man");
    assert!(out.status.success(), "man -l {}: {out:?}", page.display());
    text(&out.stdout)
}

#[test]
fn the_man_page_covers_every_subcommand_and_flag_and_renders() {
    man_available();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("vm0fs.1");
    std::fs::write(&page, stdout_of(&["man"])).unwrap();
    let rendered = render_man(&page);
    for sub in subcommands() {
        assert!(
            rendered.contains(&format!("VM0FS {}", sub.to_uppercase())),
            "the man page has no section for {sub}:\n{rendered}"
        );
        for flag in long_flags(&sub) {
            assert!(rendered.contains(&flag), "the man page lacks {sub} {flag}");
        }
    }
    assert!(
        rendered.contains("fuse.vm0fs"),
        "no word on the mount(8) form"
    );
    let pages = dir.path().join("pages");
    std::fs::create_dir(&pages).unwrap();
    let out = run(vm0fs().arg("man").arg("--out-dir").arg(&pages));
    assert!(out.status.success(), "{out:?}");
    assert!(render_man(&pages.join("vm0fs-mount.1")).contains("--read-only"));
    for sub in subcommands() {
        assert!(
            pages.join(format!("vm0fs-{sub}.1")).exists(),
            "no vm0fs-{sub}.1"
        );
    }
}

/// A temp dir with `config/vm0fs/config.toml` holding `toml`, a private token file, and a mount point.
struct ConfigHome {
    dir: tempfile::TempDir,
}

impl ConfigHome {
    fn new(toml: &str) -> ConfigHome {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/vm0fs")).unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{}\n", common::emulator::TOKEN)).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let home = ConfigHome { dir };
        std::fs::write(home.file(), toml).unwrap();
        home
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn file(&self) -> PathBuf {
        self.path("config/vm0fs/config.toml")
    }

    /// `vm0fs ARGS` with XDG_CONFIG_HOME here and neither VM0_API_URL nor VM0_API_KEY set.
    fn vm0fs(&self, args: &[&str]) -> Command {
        let mut command = vm0fs();
        command
            .args(args)
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("VM0_API_URL")
            .env_remove("VM0_API_KEY");
        command
    }
}

#[test]
fn print_config_shows_each_value_and_where_it_comes_from() {
    let home = ConfigHome::new(
        "api_url = \"http://127.0.0.1:9/from-file\"\ntoken_file = \"../../token\"\ncache_size = \"3G\"\nread_only = true\n\
         commit_delay = 2.5\n",
    );
    let file = home.file().display().to_string();
    let printed = text(&run(&mut home.vm0fs(&["mount", "--print-config"])).stdout);
    for line in [
        format!("api_url = \"http://127.0.0.1:9/from-file\"  # from {file}"),
        format!("cache_size = \"3G\"  # from {file}"),
        format!("read_only = true  # from {file}"),
        "metadata_ttl = 5.0  # default".to_string(),
        "allow_other = false  # default".to_string(),
        "max_archive_size = \"3G\"  # default: the cache size".to_string(),
        format!("commit_delay = 2.5  # from {file}"),
        "max_staged_size = \"3G\"  # default: the cache size".to_string(),
    ] {
        assert!(printed.contains(&line), "no `{line}` in:\n{printed}");
    }
    assert!(printed.contains("token_file = "), "{printed}");
    // The printed settings are a config file that reads back the same.
    let copy = home.path("printed.toml");
    std::fs::write(&copy, &printed).unwrap();
    let reread = text(
        &run(&mut home.vm0fs(&[
            "mount",
            "--print-config",
            "--config",
            copy.to_str().unwrap(),
        ]))
        .stdout,
    );
    assert!(reread.contains("cache_size = \"3G\"  # from"), "{reread}");
    assert!(reread.contains("read_only = true  # from"), "{reread}");
    assert!(
        reread.contains("max_staged_size = \"3G\"  # from"),
        "{reread}"
    );
    // A flag beats the file for the staging settings too.
    let printed = text(
        &run(&mut home.vm0fs(&[
            "mount",
            "--print-config",
            "--commit-delay",
            "0",
            "--max-staged-size",
            "512M",
        ]))
        .stdout,
    );
    assert!(
        printed.contains("commit_delay = 0.0  # from --commit-delay"),
        "{printed}"
    );
    assert!(
        printed.contains("max_staged_size = \"512M\"  # from --max-staged-size"),
        "{printed}"
    );

    // A flag beats the environment, which beats the file; the token itself is never printed.
    let printed = text(
        &run(home
            .vm0fs(&["mount", "--print-config", "--cache-size", "2G"])
            .env("VM0_API_URL", "http://127.0.0.1:9/from-env")
            .env("VM0_API_KEY", "vm0_live_secret"))
        .stdout,
    );
    assert!(
        printed.contains("cache_size = \"2G\"  # from --cache-size"),
        "{printed}"
    );
    assert!(
        printed.contains("api_url = \"http://127.0.0.1:9/from-env\"  # from VM0_API_URL"),
        "{printed}"
    );
    assert!(printed.contains("# token: from VM0_API_KEY"), "{printed}");
    assert!(
        !printed.contains("vm0_live_secret"),
        "the token was printed"
    );
    let printed = text(
        &run(home
            .vm0fs(&[
                "mount",
                "--print-config",
                "--api-url",
                "http://127.0.0.1:9/flag",
            ])
            .env("VM0_API_URL", "http://x"))
        .stdout,
    );
    assert!(
        printed.contains("api_url = \"http://127.0.0.1:9/flag\"  # from --api-url"),
        "{printed}"
    );
}

/// A config file at `path` naming the emulator, the token file and a cache directory in `home`.
fn write_config(path: &Path, emulator: &Emulator, home: &ConfigHome) {
    let config = format!(
        "api_url = \"{}\"\ntoken_file = \"{}\"\ncache_dir = \"{}\"\n",
        emulator.base_url(),
        home.path("token").display(),
        home.path("cache").display()
    );
    std::fs::write(path, config).unwrap();
}

#[test]
fn a_mount_from_the_config_file_alone_works() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let home = ConfigHome::new("");
    write_config(&home.file(), &emulator, &home);
    let mnt = home.path("mnt");
    let mut command = home.vm0fs(&["mount", "-f"]);
    command.arg(&mnt);
    let dir = tempfile::tempdir().unwrap();
    let mut mount = Mount::spawn(command, dir, mnt.clone(), home.path("cache"));
    mount.wait_until_mounted();
    assert_eq!(
        ok(&format!("ls {}", q(&mnt))),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    assert!(
        home.path("cache").is_dir(),
        "the config's cache_dir was not used"
    );
    mount.unmount();
}

#[test]
fn config_file_mistakes_are_usage_errors_naming_key_and_file() {
    let home = ConfigHome::new("cache_size = \"10G\"\ncache_sise = \"10G\"\n");
    let out = run(&mut home.vm0fs(&["mount", "--print-config"]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("cache_sise") && err.contains(&home.file().display().to_string()),
        "{err}"
    );

    std::fs::write(home.file(), "cache_size = true\n").unwrap();
    let err = text(&run(&mut home.vm0fs(&["mount", "--print-config"])).stderr);
    assert!(
        err.contains("cache_size") && err.contains("\"10G\""),
        "{err}"
    );

    let out = run(&mut home.vm0fs(&[
        "mount",
        "--print-config",
        "--config",
        "/nonexistent/vm0fs.toml",
    ]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        text(&out.stderr).contains("/nonexistent/vm0fs.toml"),
        "{out:?}"
    );
}

#[test]
fn a_read_only_mount_refuses_to_start_or_cancel_runs_with_erofs() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--read-only"]);
    let mnt = mount.mountpoint();
    let run_id = ok(&format!("readlink {}/runs/latest", q(mnt)))
        .trim()
        .to_string();
    for script in [
        format!("printf 'hello' > {}/runs/new/coder", q(mnt)),
        format!("/bin/echo cancel > {}/runs/{run_id}/ctl", q(mnt)),
    ] {
        let out = sh(&script);
        assert!(!out.status.success(), "`{script}` succeeded");
        assert!(
            text(&out.stderr).contains("Read-only file system"),
            "{script}: {out:?}"
        );
    }
    assert!(ok(&format!("cat {}/agents/coder/agent.json", q(mnt))).contains("coder"));
    mount.unmount();
}

/// Receives one datagram within `within`.
fn receive(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no sd_notify message within {within:?}: {e}"));
    text(&buf[..n])
}

/// Watches `mount` come up through NOTIFY_SOCKET at `socket`: READY=1 only when live, STOPPING=1 after SIGTERM.
fn ready_then_stopping(mut mount: Mount, socket: &UnixDatagram) {
    let ready = receive(socket, Duration::from_secs(30));
    assert_eq!(ready, "READY=1", "{}", mount.stderr());
    assert!(
        is_mounted(mount.mountpoint()),
        "READY=1 came before the mount was live"
    );
    assert_eq!(
        ok(&format!("ls {}", q(mount.mountpoint()))),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    let status = mount.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", mount.stderr());
    assert_eq!(receive(socket, Duration::from_secs(5)), "STOPPING=1");
    assert!(wait_unmounted(mount.mountpoint(), Duration::from_secs(10)));
}

#[test]
fn a_foreground_mount_tells_systemd_ready_and_stopping() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cache = dir.path().join("cache");
    let mut command = mount_command(&emulator, &mnt, &cache, &["-f"]);
    command.env("NOTIFY_SOCKET", &socket_path);
    ready_then_stopping(Mount::spawn(command, dir, mnt, cache), &socket);
}

/// The lines `key=` of the shipped unit, with `%h` replaced by `home`.
fn unit_lines(key: &str, home: &Path) -> Vec<String> {
    let unit = include_str!("../contrib/systemd/vm0fs.service");
    unit.lines()
        .filter_map(|line| line.strip_prefix(key))
        .map(|rest| rest.replace("%h", &home.display().to_string()))
        .collect()
}

/// Runs a unit's command line (split on spaces, as ours are); a leading `-` means failure is fine.
fn run_unit_command(line: &str) {
    let (may_fail, line) = match line.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert!(may_fail || out.status.success(), "`{line}`: {out:?}");
}

#[test]
fn the_shipped_systemd_unit_mounts_from_the_config_file_and_notifies() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let unit = include_str!("../contrib/systemd/vm0fs.service");
    assert!(
        unit.contains("\nType=notify\n"),
        "the unit is not Type=notify"
    );
    let home = ConfigHome::new("");
    let home_dir = home.path("home");
    std::fs::create_dir_all(home_dir.join(".config/vm0fs")).unwrap();
    std::fs::create_dir_all(home_dir.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_vm0fs"),
        home_dir.join(".cargo/bin/vm0fs"),
    )
    .unwrap();
    write_config(
        &home_dir.join(".config/vm0fs/config.toml"),
        &emulator,
        &home,
    );
    for line in unit_lines("ExecStartPre=", &home_dir) {
        run_unit_command(&line);
    }
    let exec_start = unit_lines("ExecStart=", &home_dir);
    let words: Vec<&str> = exec_start[0].split_whitespace().collect();
    let mnt = PathBuf::from(words.last().unwrap());
    assert!(
        mnt.is_dir(),
        "ExecStartPre did not create {}",
        mnt.display()
    );
    let socket_path = home.path("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let mut command = Command::new(words[0]);
    command
        .args(&words[1..])
        .env("HOME", &home_dir)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("VM0_API_URL")
        .env_remove("VM0_API_KEY");
    let guard_dir = tempfile::tempdir().unwrap();
    ready_then_stopping(
        Mount::spawn(command, guard_dir, mnt, home.path("cache")),
        &socket,
    );
    for line in unit_lines("ExecStopPost=", &home_dir) {
        run_unit_command(&line);
    }
}

#[test]
fn a_slow_api_check_says_what_it_waits_for() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    emulator.set_faults(serde_json::json!({"latency_ms": 2500, "path_prefix": "/v1/runs"}));
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let daemon = Daemon::guard(&mnt);
    let out = run(&mut mount_command(
        &emulator,
        &mnt,
        &dir.path().join("cache"),
        &[],
    ));
    let err = text(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        err.contains(&format!(
            "waiting for the VM0 API at {} to answer (GET /v1/runs)",
            emulator.base_url()
        )),
        "no waiting message: {err}"
    );
    assert!(is_mounted(&mnt));
    emulator.set_faults(serde_json::json!({}));
    let out = run(vm0fs().arg("unmount").arg(&mnt));
    assert!(out.status.success(), "{out:?}");
    assert!(
        daemon.wait_exited(Duration::from_secs(15)),
        "the daemon outlived its mount"
    );
}

/// A warning met while a background mount starts reaches the terminal before `vm0fs mount` returns, not only
/// `vm0fs.log`: here, no `fusermount3`, so no auto-unmount.
#[test]
fn a_background_mount_prints_its_warnings_before_it_detaches() {
    let emulator = Emulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let daemon = Daemon::guard(&mnt);
    let out = run(
        mount_command(&emulator, &mnt, &dir.path().join("cache"), &[])
            .env("FUSERMOUNT_PATH", "/nonexistent/fusermount3"),
    );
    assert!(out.status.success(), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("vm0fs: warning: mounting with auto-unmount failed")
            && err.contains("if vm0fs is killed, run `vm0fs unmount"),
        "{err}"
    );
    let out = run(vm0fs().arg("unmount").arg(&mnt));
    assert!(out.status.success(), "{out:?}");
    assert!(
        daemon.wait_exited(Duration::from_secs(15)),
        "the daemon outlived its mount"
    );
}

/// A proxy set in the environment is used, and named (without its credentials) when the API cannot be reached
/// through it; NO_PROXY excludes the API's host.
#[test]
fn an_unreachable_proxy_is_named_and_no_proxy_bypasses_it() {
    let emulator = Emulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let out = run(
        mount_command(&emulator, &mountpoint, &dir.path().join("cache"), &[])
            .env("HTTP_PROXY", "http://bob:secret@127.0.0.1:1")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("requests go through the proxy http://127.0.0.1:1 (from HTTP_PROXY)")
            && err.contains("NO_PROXY"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "no proxy credentials in messages: {err}"
    );

    let mount = Mount::start_with_env(
        &emulator,
        &[],
        &[
            ("HTTP_PROXY", "http://127.0.0.1:1"),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    assert!(mount.path("agents").is_dir());
}

/// `--help` and the man page list every `mount(8)` option the helper takes and lay the tree out as a list with
/// writing volumes and `vm0fs sync`; `sync --help` gives the exit statuses the command returns.
#[test]
fn help_and_man_list_every_mount_option_and_the_writable_tree() {
    let help = text(&run(vm0fs().arg("--help")).stdout);
    let man = text(&run(vm0fs().arg("man")).stdout);
    for page in [&help, &man] {
        for option in [
            "api_url=",
            "token_file=",
            "cache_dir=",
            "cache_size=",
            "max_archive_size=",
            "max_archive_entries=",
            "metadata_ttl=",
            "commit_delay=",
            "max_staged_size=",
            "config=",
        ] {
            assert!(page.contains(option), "{option} missing from:\n{page}");
        }
        assert!(
            page.contains("vm0fs sync volumes/<name>") && page.contains("mkdir volumes/<name>"),
            "{page}"
        );
    }
    assert!(
        help.lines().any(|l| l.starts_with("  volumes/<name>/ "))
            && help.lines().any(|l| l.starts_with("  runs/new/<agent> ")),
        "the tree is a list, one path a line:\n{help}"
    );
    let sync_help = text(&run(vm0fs().args(["sync", "--help"])).stdout);
    assert!(
        sync_help.contains(
            "Exit status: 0 when every volume named is published or had nothing to publish"
        ) && !sync_help.contains("or there is nothing to publish"),
        "{sync_help}"
    );
}

/// What `sync --help` says: nothing to publish prints the head and exits 0.
#[test]
fn sync_with_nothing_to_publish_prints_the_head_and_exits_0() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--commit-delay", "0"]);
    let volume = mount.path("volumes/input-data");
    let head = String::from_utf8(
        std::process::Command::new("getfattr")
            .args(["--only-values", "-n", "user.vm0.version"])
            .arg(&volume)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let out = run(vm0fs().arg("sync").arg(&volume));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("volumes/input-data@{}", &head.trim()[..8])
    );
}
