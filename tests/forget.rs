//! Inodes are given back when the kernel forgets them: a real mount walks an archive of thousands of files, the
//! kernel is made to drop its dentry and inode caches (`echo 2 > /proc/sys/vm/drop_caches`, as root), and the
//! mount's inode count (`.vm0fs/status`) falls back, while everything still resolves, an open file keeps reading
//! and `tail -f` keeps following a live log.

mod common;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use common::emulator::{Emulator, FAST_RUNS};
use common::kernel_caches::KernelCaches;
use common::mount::{Mount, ok, q, tail_f};
use common::noise;

/// Files in the walked archive: 40 directories of 75.
const DIRS: usize = 40;
const FILES_PER_DIR: usize = 75;
const FILES: usize = DIRS * FILES_PER_DIR;

/// Writes the archive's files under `dir`: small, each different.
fn write_tree(dir: &Path) {
    for d in 0..DIRS {
        let sub = dir.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..FILES_PER_DIR {
            let seed = (d * FILES_PER_DIR + f) as u64;
            std::fs::write(sub.join(format!("f{f:03}.txt")), noise(64, seed)).unwrap();
        }
    }
}

/// `dir` as a `.tar.gz`.
fn tar_gz(dir: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

/// The mount's inode count, from `.vm0fs/status`.
fn inodes(mount: &Mount) -> u64 {
    let text = std::fs::read_to_string(mount.path(".vm0fs/status")).unwrap();
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    status["inodes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no inode count in .vm0fs/status: {text}"))
}

/// Makes the kernel drop its unused dentries and inodes, which sends FORGET for each inode it lets go.
fn drop_caches() {
    if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "2") {
        panic!(
            "cannot write /proc/sys/vm/drop_caches ({e}): this test must run as root with /proc/sys writable, \
             to make the kernel forget inodes"
        );
    }
}

/// Drops the kernel's caches, then waits (bounded) until the mount holds fewer than `below` inodes; returns
/// the last count seen.
fn drop_caches_until_below(mount: &Mount, below: u64) -> u64 {
    drop_caches();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = inodes(mount);
        if count < below || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dropped_caches_give_the_inodes_back_and_everything_still_resolves() {
    let _caches = KernelCaches::dropped();
    let emulator = Emulator::start(&[]);
    let src = tempfile::tempdir().unwrap();
    write_tree(src.path());
    emulator.add_raw_archive("volumes", "many", &tar_gz(src.path()));
    let mount = Mount::start(&emulator, &[]);
    let tree = mount.path("volumes/many");

    let listed = ok(&format!("find {} -type f -ls | wc -l", q(&tree)));
    assert_eq!(listed.trim(), FILES.to_string());
    let walked = inodes(&mount);
    assert!(
        walked as usize > FILES,
        "the walk holds an inode per file: {walked} for {FILES} files"
    );

    let forgotten = drop_caches_until_below(&mount, (FILES / 10) as u64);
    eprintln!("{FILES} files: {walked} inodes after the walk, {forgotten} after drop_caches");
    assert!(
        forgotten < (FILES / 10) as u64,
        "the kernel's FORGETs give the inodes back: {forgotten} left of {walked}"
    );

    ok(&format!("diff -r {} {}", q(src.path()), q(&tree)));
    assert!(
        inodes(&mount) as usize > FILES,
        "walking again numbers everything again"
    );
}

#[test]
fn an_open_file_and_tail_f_keep_working_across_dropped_caches() {
    let _caches = KernelCaches::dropped();
    let emulator = Emulator::start(&[&["--seed", "demo"][..], &FAST_RUNS].concat());
    let src = tempfile::tempdir().unwrap();
    let content = noise(256 << 10, 7);
    std::fs::write(src.path().join("blob.bin"), &content).unwrap();
    emulator.add_raw_archive("volumes", "blob", &tar_gz(src.path()));
    let mount = Mount::start(&emulator, &[]);

    let (status, run) = emulator.post_json(
        "/v1/runs",
        &serde_json::json!({"agent": "coder", "prompt": "keep talking"}),
    );
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let logs = mount.path(&format!("runs/{id}/logs"));
    let (mut tail, seen) = tail_f(&logs, "0.3");

    let mut file = std::fs::File::open(mount.path("volumes/blob/blob.bin")).unwrap();
    let mut first = vec![0; content.len() / 2];
    file.read_exact(&mut first).unwrap();
    // Something the kernel can let go of, beside what the open file and the log hold.
    ok(&format!(
        "ls -lR {} {} >/dev/null",
        q(&mount.path("agents")),
        q(&mount.path("runs"))
    ));
    let before = inodes(&mount);
    let after = drop_caches_until_below(&mount, before);
    assert!(
        after < before,
        "some inodes were forgotten: {before} then {after}"
    );
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    assert_eq!([first, rest].concat(), content, "the open file reads on");
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut again = Vec::new();
    file.read_to_end(&mut again).unwrap();
    assert_eq!(again, content);

    let shown_at_drop = seen.lock().unwrap().lines().count();
    assert_eq!(emulator.wait_run_terminal(&id), "completed");
    // The run has ended on the server; the mount fetches its last entries within a poll. The log is whole once
    // it ends with the run's last entry.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = loop {
        let text = std::fs::read_to_string(&logs).unwrap();
        if text.trim_end().ends_with("Run completed successfully") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        expected.trim_end().ends_with("Run completed successfully"),
        "the log never showed the run's end:\n{expected}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while *seen.lock().unwrap() != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on the PID of our own child, not yet reaped.
    unsafe { libc::kill(tail.id() as i32, libc::SIGTERM) };
    let _ = tail.wait();
    let got = seen.lock().unwrap().clone();
    assert!(
        got.lines().count() > shown_at_drop,
        "tail -f went on after the caches were dropped ({shown_at_drop} lines then)"
    );
    assert_eq!(got, expected, "tail -f shows the whole log once, in order");
}
