//! The POSIX suites on a writable volume: pjdfstest (the Rust rewrite) and fsx, both run against a directory or
//! a file inside `volumes/<name>/` of a real mount.
//!
//! pjdfstest runs whole, and its report is read case by case: every case that applies to a volume must pass, and
//! the number that pass is asserted exactly, so that a regression (or a refusal that starts to pass unnoticed)
//! fails the test. The cases that do not apply are excluded by the rules in `EXCLUDED`, each with its reason:
//! what a volume cannot hold is refused on purpose (issue 14), and the suite tests exactly those refusals. fsx
//! runs 50,000 operations on one file, once as it is and once closing and reopening the file between operations;
//! then the volume is published and the file read back from a fresh mount (an empty cache) must equal fsx's own
//! copy: the same fsx run, with the same seed and settings, on a file of a local temp dir (fsx is deterministic).
//!
//! The tools are installed by `scripts/test.sh` under `target/tools` (or `$VM0FS_TEST_TOOLS`); a missing tool
//! fails the test, saying how to install it. The suites need root: pjdfstest switches to other users (`nobody`,
//! `daemon`) for its permission cases, so the mount is made with `--allow-other`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::emulator::Emulator;
use common::mount::{Mount, vm0fs};

/// pjdfstest cases that pass on a volume (run as root, with `PJDFSTEST_CONFIG`).
const PJDFSTEST_PASSES: usize = 182;

/// The features of the volume that pjdfstest may test, and the users it switches to (Debian has both).
const PJDFSTEST_CONFIG: &str = r#"
[features]
utimensat = {}
utime_now = {}
rename_ctime = {}
posix_fallocate = {}

[settings]
naptime = 0.001
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

/// How a rule names the cases it excludes.
enum Cases {
    /// Every case of a syscall's group (`link` matches `link::...`).
    Group(&'static str),
    /// Every case run on this file type (`fifo` matches `...::fifo`).
    FileType(&'static str),
    /// These cases, by full name.
    Named(&'static [&'static str]),
}

/// The pjdfstest cases that do not apply to a volume, and why.
const EXCLUDED: &[(Cases, &str)] = &[
    (
        Cases::Group("mkfifo"),
        "FIFOs: a volume cannot hold them (mkfifo is EPERM)",
    ),
    (
        Cases::Group("mknod"),
        "devices, FIFOs and sockets: a volume cannot hold them (mknod is EPERM)",
    ),
    (
        Cases::FileType("fifo"),
        "the case is run on a FIFO, which a volume cannot hold",
    ),
    (
        Cases::FileType("block"),
        "the case is run on a block device, which a volume cannot hold",
    ),
    (
        Cases::FileType("char"),
        "the case is run on a character device, which a volume cannot hold",
    ),
    (
        Cases::FileType("socket"),
        "the case is run on a socket, which a volume cannot hold",
    ),
    (
        Cases::Named(&["open::fifo_nonblock_wronly", "open::socket_error"]),
        "the case opens a FIFO or a socket, which a volume cannot hold",
    ),
    (
        Cases::Group("chown"),
        "ownership: every file belongs to the user who mounted (a version holds no owners), so chown is EPERM",
    ),
    (
        Cases::Named(&[
            "chmod::clear_isgid_bit",
            "link::share_metadata::regular",
            "mkdir::uid_gid_eq_euid_egid",
            "open::uid_gid_eq_euid_egid",
        ]),
        "the case gives a file or directory to another owner first (chown), which a volume cannot hold",
    ),
    (
        Cases::Named(&[
            "chmod::change_perm::dir",
            "chmod::change_perm::regular",
            "chmod::eloop_comp",
            "chmod::eloop_final_comp",
            "chmod::enoent_symlink",
            "link::eloop_comp",
            "mkdir::eloop_comp",
            "open::eloop_comp",
            "rename::eloop_comp",
            "rename::preserve_metadata_symlink",
            "rmdir::eloop_comp",
            "symlink::create_symlink::dir",
            "symlink::create_symlink::regular",
            "symlink::create_symlink_to_symlink",
            "truncate::eloop_comp",
            "unlink::eloop_comp",
            "utimensat::follow_symlink",
        ]),
        "the case makes a symlink with an absolute target (pjdfstest's paths are absolute); a symlink in a \
         volume must point inside it by a relative path, or it would point elsewhere in any other mount (EPERM)",
    ),
];

/// The directory the test tools are installed in (`cargo install --root`), as `scripts/test.sh` does it.
fn tools_dir() -> PathBuf {
    match std::env::var_os("VM0FS_TEST_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools"),
    }
}

/// The path of an installed test tool; fails, saying how to install it, when it is missing.
fn tool(name: &str, version: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs it (or: cargo install --locked --root {} {name}@{version})",
        path.display(),
        tools_dir().display()
    );
    path
}

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the POSIX suites run as root (pjdfstest switches users; CI runs as root)"
    );
}

/// The mount of a suite: automatic publishing off (only `vm0fs sync` publishes), other users let in.
fn mount(emu: &Emulator) -> Mount {
    Mount::start(emu, &["--commit-delay", "0", "--allow-other"])
}

/// Why a case is excluded, if it is.
fn exclusion(case: &str) -> Option<&'static str> {
    EXCLUDED.iter().find_map(|(cases, why)| {
        let hit = match cases {
            Cases::Group(group) => case.split("::").next() == Some(group),
            Cases::FileType(kind) => case.rsplit("::").next() == Some(kind),
            Cases::Named(names) => names.contains(&case),
        };
        hit.then_some(*why)
    })
}

/// Each case's outcome (`ok`, `FAILED` or `skipped`) and, for a failure, the line that says why.
fn pjdfstest_results(report: &str) -> BTreeMap<String, (String, String)> {
    let lines: Vec<&str> = report.lines().collect();
    let mut results = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let mut words = line.split_whitespace();
        let (Some(case), Some(outcome), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if case.contains("::") && ["ok", "FAILED", "skipped"].contains(&outcome) {
            let why = lines.get(i + 1).map_or("", |l| l.trim()).to_string();
            results.insert(case.to_string(), (outcome.to_string(), why));
        }
    }
    results
}

#[test]
fn pjdfstest_passes_every_case_that_applies_to_a_volume() {
    assert_root();
    let pjdfstest = tool("pjdfstest", "0.2.2");
    let emu = Emulator::start(&["--seed", "demo"]);
    let m = mount(&emu);
    let suite = m.path("volumes/posix-suite");
    std::fs::create_dir(&suite).expect("mkdir volumes/posix-suite");
    // The secondary filesystem of the EXDEV cases: another volume (a rename cannot leave a volume).
    let other = m.path("volumes/posix-other");
    std::fs::create_dir(&other).expect("mkdir volumes/posix-other");
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), PJDFSTEST_CONFIG).unwrap();

    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("600")
        .arg(&pjdfstest)
        .arg("-c")
        .arg(config.path())
        .arg("-p")
        .arg(&suite)
        .arg("-s")
        .arg(&other)
        .output()
        .expect("run pjdfstest");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let results = pjdfstest_results(&report);
    assert!(
        results.len() > 300,
        "pjdfstest reported {} cases (status {}):\n{report}\nvm0fs said:\n{}",
        results.len(),
        out.status,
        m.stderr()
    );

    let mut groups: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut passes = 0;
    for (case, (outcome, why)) in &results {
        let counts = groups.entry(case.split("::").next().unwrap()).or_default();
        let excluded = exclusion(case);
        match (outcome.as_str(), excluded) {
            ("ok", _) => {
                counts[0] += 1;
                passes += 1;
            }
            (_, Some(_)) => counts[3] += 1,
            ("skipped", None) => counts[2] += 1,
            _ => {
                counts[1] += 1;
                failed.push(format!("{case}: {why}"));
            }
        }
    }
    println!(
        "pjdfstest on a volume in {:.1} s: {passes} passed of {} cases",
        started.elapsed().as_secs_f64(),
        results.len()
    );
    println!("group: passed / failed / skipped / excluded");
    for (group, [ok, bad, skipped, excluded]) in &groups {
        println!("  {group}: {ok} / {bad} / {skipped} / {excluded}");
    }
    assert!(
        failed.is_empty(),
        "pjdfstest cases that apply to a volume failed:\n{}\nvm0fs said:\n{}",
        failed.join("\n"),
        m.stderr()
    );
    assert_eq!(
        passes, PJDFSTEST_PASSES,
        "the number of pjdfstest cases that pass changed; if a refusal now passes, narrow EXCLUDED"
    );
}

/// fsx's settings: the default operations (pread, pwrite, mmap reads and writes, ftruncate) plus fsync,
/// fdatasync, msync(MS_INVALIDATE), sendfile, copy_file_range and posix_fallocate; `close_open` is the weight of
/// closing and reopening the file.
fn fsx_config(close_open: u32) -> String {
    format!(
        "[weights]\nclose_open = {close_open}\nread = 10\nwrite = 10\nmapread = 10\nmapwrite = 10\ntruncate = 10\n\
         fsync = 2\nfdatasync = 2\ninvalidate = 2\nsendfile = 2\ncopy_file_range = 2\nposix_fallocate = 2\n"
    )
}

/// Runs fsx for `ops` operations on `file` with `config` and `seed`; fails with fsx's log when it finds a fault.
fn run_fsx(config: &Path, seed: u64, ops: u64, file: &Path) -> f64 {
    let fsx = tool("fsx", "0.3.2");
    let artifacts = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new("timeout")
        .arg("900")
        .arg(fsx)
        .arg("-f")
        .arg(config)
        .arg("-S")
        .arg(seed.to_string())
        .arg("-N")
        .arg(ops.to_string())
        .arg("-P")
        .arg(artifacts.path())
        .arg(file)
        .output()
        .expect("run fsx");
    let log = std::fs::read_dir(artifacts.path())
        .map(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    assert!(
        out.status.success(),
        "fsx failed on {} ({}); artifacts: {log}\n{}{}",
        file.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

/// A temp dir on a tmpfs (`/dev/shm`) where the machine has one, else in the usual temp dir. fsx fsyncs, and a
/// close of a volume file fsyncs its staged file: on a tmpfs those cost nothing, so the run measures vm0fs and
/// FUSE rather than the disk (4 times faster here), and the bytes checked are the same.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("create a temp dir")
}

/// fsx on a file in a volume, then a publish and a fresh mount: the file reads back as fsx's own copy.
fn fsx_on_a_volume(volume: &str, close_open: u32, ops: u64, seed: u64) {
    assert_root();
    let emu = Emulator::start(&["--seed", "demo"]);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), fsx_config(close_open)).unwrap();
    let scratch = scratch_dir();
    let expected_file = scratch.path().join("fsx.bin");
    let m = Mount::start_with_cache(
        &emu,
        &scratch.path().join("cache"),
        &["--commit-delay", "0", "--allow-other"],
    );
    let vol = m.path(&format!("volumes/{volume}"));
    std::fs::create_dir(&vol).expect("mkdir a volume for fsx");
    let file = vol.join("fsx.bin");
    // fsx's own copy is made at the same time, by the same run on a local file.
    let (local_secs, secs) = std::thread::scope(|s| {
        let local = s.spawn(|| run_fsx(config.path(), seed, ops, &expected_file));
        let secs = run_fsx(config.path(), seed, ops, &file);
        (local.join().expect("the local fsx run"), secs)
    });
    let expected = std::fs::read(&expected_file).unwrap();
    println!(
        "fsx {ops} operations (close_open weight {close_open}, seed {seed}): {secs:.1} s on the volume, \
         {local_secs:.1} s on a local file; file of {} bytes",
        expected.len()
    );
    assert!(
        std::fs::read(&file).unwrap() == expected,
        "the file in the mount differs from fsx's own copy"
    );
    let out = vm0fs().arg("sync").arg(&vol).output().unwrap();
    assert!(
        out.status.success(),
        "vm0fs sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(m);

    let fresh = mount(&emu);
    let published = std::fs::read(fresh.path(&format!("volumes/{volume}/fsx.bin")))
        .expect("read the published file from a fresh mount");
    assert_eq!(published.len(), expected.len(), "the published size");
    assert!(
        published == expected,
        "the published file differs from fsx's own copy"
    );
}

#[test]
fn fsx_50000_operations_on_a_volume_file_publish_byte_exact() {
    fsx_on_a_volume("fsx-plain", 0, 50_000, 7);
}

/// The weight of close/open equals the sum of the other weights: half the steps close and reopen the file, so
/// 100,000 steps are about 50,000 operations, each followed by a reopen or not at random (fsx-rs has no flag for
/// a reopen after every operation; this is its way).
#[test]
fn fsx_closing_and_reopening_between_operations_publishes_byte_exact() {
    fsx_on_a_volume("fsx-reopen", 62, 100_000, 11);
}

/// `renameat2(2)` on `from` and `to` with `flags`: the errno it failed with, or 0.
fn renameat2(from: &Path, to: &Path, flags: u32) -> i32 {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let (from, to) = (c(from), c(to));
    // SAFETY: two valid NUL-terminated paths, relative to the current directory.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

/// Not in pjdfstest: a rename flag that vm0fs ignored would replace the file it was asked to keep or swap.
#[test]
fn renameat2_keeps_what_noreplace_and_exchange_protect() {
    let emu = Emulator::start(&["--seed", "demo"]);
    let m = Mount::start(&emu, &["--commit-delay", "0"]);
    let vol = m.path("volumes/renames");
    std::fs::create_dir(&vol).unwrap();
    let (a, b) = (vol.join("a"), vol.join("b"));
    std::fs::write(&a, "A").unwrap();
    std::fs::write(&b, "B").unwrap();
    assert_eq!(renameat2(&a, &b, libc::RENAME_EXCHANGE), libc::EINVAL);
    assert_eq!(renameat2(&a, &b, libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "A");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "B");
    assert_eq!(renameat2(&a, &vol.join("c"), libc::RENAME_NOREPLACE), 0);
    assert_eq!(std::fs::read_to_string(vol.join("c")).unwrap(), "A");
    assert!(!a.exists());
}
