//! Security properties of a real mount: the token never reaches a log line or the blob host, the cache directory
//! is private, and the mount is private to its owner unless `--allow-other` is given.
//!
//! "Another uid" is uid/gid 65534 (`nobody`) through `setpriv`, so these tests must run as root (as the project's
//! test machines do); run as another user they fail loudly rather than skip.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Output;

use common::emulator::Emulator;
use common::mount::{Mount, ok, q, sh};
use serde_json::json;

/// Runs `script` as uid/gid 65534 with no supplementary groups.
fn as_nobody(script: &str) -> Output {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests switch to another uid with setpriv and must run as root"
    );
    sh(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c {}",
        shell_quote(script)
    ))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Opens the temp dir that holds the mount point (and the cache) to other users, as a home directory would be.
fn open_parent(mount: &Mount) {
    std::fs::set_permissions(mount.parent_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_token_is_never_logged_and_never_sent_to_the_blob_host() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start_with_env(&emulator, &["-vv"], &[("VM0FS_LOG", "trace")]);
    let mnt = mount.mountpoint();
    // An expired presigned URL on the first download: the blob host is asked again, and must not see the token
    // either time. Then a browse, downloads, a refused request (404), and one that fails past the retry budget.
    emulator.set_faults(json!({"blob_forbidden_count": 1}));
    ok(&format!("ls {}", q(&mount.path("volumes/input-data"))));
    assert_eq!(
        emulator.get_json("/_control/faults").1["blob_forbidden_count"],
        0
    );
    ok(&format!("find {} -maxdepth 3 | wc -l", q(mnt)));
    ok(&format!(
        "cat {}/agents/*/agent.json {}/runs/latest/run.json {}/runs/latest/logs",
        q(mnt),
        q(mnt),
        q(mnt)
    ));
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&emulator.data_dir().join("seed-src/volumes/input-data"))
    ));
    ok(&format!("cat {}/artifacts/report/report.md", q(mnt)));
    assert!(
        !sh(&format!("ls {}/agents/no-such-agent", q(mnt)))
            .status
            .success()
    );
    emulator
        .set_faults(json!({"error_status": 503, "error_count": 1000, "path_prefix": "/v1/agents"}));
    // agents/ was listed already, so look up an agent the API has to be asked about.
    assert!(
        !sh(&format!("cat {}/agents/unknown/agent.json", q(mnt)))
            .status
            .success()
    );
    emulator.set_faults(json!({}));
    // The lines are read from the mount's stderr by a thread: wait for the failed lookup's to arrive.
    assert!(mount.logged("/v1/agents"), "{}", mount.stderr());
    let log = mount.stderr();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "-vv with VM0FS_LOG=trace logged nothing verbose:\n{log}"
    );
    assert!(
        log.contains("/v1/"),
        "the log names no API request, so it does not prove much:\n{log}"
    );
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(emulator.token()))
        .collect();
    assert!(leaks.is_empty(), "the token is in the log:\n{leaks:#?}");

    let stats = emulator.stats();
    assert!(
        stats["blob_requests"].as_u64().unwrap_or(0) >= 2,
        "no blob was fetched: {stats}"
    );
    assert_eq!(
        stats["blob_requests_with_authorization"], 0,
        "the blob host received an Authorization header: {stats}"
    );
}

#[test]
fn the_cache_directory_is_private() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    ok(&format!(
        "cat {} {} >/dev/null",
        q(&mount.path("volumes/input-data/README.md")),
        q(&mount.path("artifacts/report/report.md"))
    ));
    mount.wait_for_downloads();
    let cache = mount.cache_dir();
    assert_eq!(
        std::fs::metadata(cache).unwrap().mode() & 0o777,
        0o700,
        "the cache directory is not 0700"
    );
    // What is true inside: vm0fs's own files and directories are owner-only; the extracted trees keep the
    // archive's modes (directories 0755, files 0444), which is what the mount shows, and are reachable only
    // through `archives/` and `archives/<version>/`, both 0700.
    for own in ["lock", "archives", "staging"] {
        let mode = std::fs::metadata(cache.join(own)).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{own} is mode {mode:o}");
    }
    let open = ok(&format!("cd {} && find . -perm /077 | sort", q(cache)));
    assert!(
        !open.is_empty(),
        "expected the extracted trees to keep their tar modes"
    );
    for path in open.lines() {
        let parts: Vec<&str> = path.split('/').collect();
        assert!(
            parts.len() >= 4 && parts[1] == "archives" && parts[3] == "tree",
            "{path} is open to group/other outside an extracted tree"
        );
        let entry = cache.join(parts[1]).join(parts[2]);
        assert_eq!(
            std::fs::metadata(&entry).unwrap().mode() & 0o077,
            0,
            "{} is not owner-only",
            entry.display()
        );
    }
    for meta in ok(&format!("find {} -name meta.json", q(cache))).lines() {
        assert_eq!(
            std::fs::metadata(meta).unwrap().mode() & 0o777,
            0o600,
            "{meta}"
        );
    }
    // And so another user cannot read a cached file, even with the directories above the cache open.
    open_parent(&mount);
    let readme = ok(&format!(
        "find {} -path '*/tree/README.md' | head -1",
        q(cache)
    ));
    let out = as_nobody(&format!("cat '{}'", readme.trim()));
    assert!(!out.status.success(), "another uid read the cache: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
}

#[test]
fn the_mount_is_private_by_default() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    open_parent(&mount);
    // The owner browses and reads first, as a real user would: the kernel now caches entries and attributes.
    assert_eq!(
        ok(&format!("ls {}", q(mount.mountpoint()))),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    ok(&format!(
        "cat {} >/dev/null",
        q(&mount.path("volumes/input-data/README.md"))
    ));
    for script in [
        format!("ls {}", q(mount.mountpoint())),
        format!("ls {}", q(&mount.path("volumes"))),
        format!("ls {}", q(&mount.path("volumes/input-data"))),
        format!("cat {}", q(&mount.path("volumes/input-data/README.md"))),
        format!("stat {}", q(&mount.path("runs/latest"))),
    ] {
        let out = as_nobody(&script);
        assert!(
            !out.status.success(),
            "`{script}` as nobody succeeded: {out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "`{script}` as nobody: {out:?}"
        );
    }
}

/// The private mount is made with the kernel's `allow_other` (fuser needs it for auto-unmount) and other uids are
/// refused in userspace, which never sees what the kernel answers from its own caches; the root's mode 0500 makes
/// the kernel refuse them too, so even `stat` of a path the owner looked up fails (docs/ROBUSTNESS.md, gap 4).
#[test]
fn another_uid_cannot_even_stat_what_the_owner_looked_up() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    open_parent(&mount);
    ok(&format!(
        "stat {} >/dev/null",
        q(&mount.path("volumes/input-data/README.md"))
    ));
    for path in ["volumes", "volumes/input-data/README.md"] {
        let out = as_nobody(&format!("stat {}", q(&mount.path(path))));
        assert!(
            !out.status.success(),
            "another uid could stat {path}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn allow_other_opens_the_mount_to_other_users() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--allow-other"]);
    open_parent(&mount);
    let out = as_nobody(&format!("ls {}", q(mount.mountpoint())));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "agents\nartifacts\nruns\nvolumes\n"
    );
    let out = as_nobody(&format!(
        "cat {}",
        q(&mount.path("volumes/input-data/README.md"))
    ));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        std::fs::read(
            emulator
                .data_dir()
                .join("seed-src/volumes/input-data/README.md")
        )
        .unwrap()
    );
    // Still read-only for them.
    let out = as_nobody(&format!("touch {}", q(&mount.path("agents/x"))));
    assert!(!out.status.success(), "{out:?}");
}

/// A user other than root asking for `--allow-other` without `user_allow_other` in /etc/fuse.conf is told what
/// to add, before any mount is tried (Debian's default fuse.conf has the line commented out).
#[test]
fn allow_other_without_user_allow_other_says_what_to_add() {
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    assert!(
        !conf.lines().any(|l| l.trim() == "user_allow_other"),
        "this test expects /etc/fuse.conf without user_allow_other, as Debian's fuse3 installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let binary = dir.path().join("vm0fs");
    std::fs::copy(env!("CARGO_BIN_EXE_vm0fs"), &binary).unwrap();
    let script = format!(
        "cd {d} && mkdir m && HOME={d} VM0_API_KEY=t {b} mount m --api-url http://127.0.0.1:1 --allow-other",
        d = q(dir.path()),
        b = q(&binary)
    );
    let out = as_nobody(&script);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs the line `user_allow_other` in /etc/fuse.conf")
            && err.contains("echo user_allow_other | sudo tee -a /etc/fuse.conf"),
        "{err}"
    );
}
