//! A bounded soak: 16 threads read files across several storages, list `runs/` and follow logs through one
//! mount, while runs are created and the emulator fails 5% of API requests. It asserts zero wrong bytes, zero
//! hangs (every thread keeps making progress), and that the vm0fs process's RSS and open descriptors stay flat
//! after warm-up. `VM0FS_SOAK_SECS` sets the duration (default 30 s; the bound is 2 minutes).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::Mount;

const THREADS: usize = 16;
/// A thread that has not finished an operation for this long is hung.
const HANG: Duration = Duration::from_secs(90);

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Three volumes of files with known bytes, uploaded to the emulator.
fn storages(emulator: &Emulator) -> HashMap<String, Vec<u8>> {
    let src = tempfile::tempdir().unwrap();
    let mut expected = HashMap::new();
    let mut state = 0x9e3779b97f4a7c15u64;
    for volume in ["soak-a", "soak-b", "soak-c"] {
        for i in 0..12 {
            let len = 1000 + (i * 7919) % 200_000;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let rel = format!("dir{}/file{i}.bin", i % 3);
            let path = src.path().join(volume).join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            expected.insert(format!("volumes/{volume}/{rel}"), bytes);
        }
        emulator.upload_dir("volumes", volume, &src.path().join(volume));
    }
    expected
}

#[test]
fn sixteen_threads_under_injected_errors_read_right_bytes_without_hangs_or_leaks() {
    let secs: u64 = std::env::var("VM0FS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let emulator = Emulator::start(&[
        "--seed",
        "demo",
        "--run-pending-ms",
        "200",
        "--run-duration-ms",
        "3000",
        "--log-interval-ms",
        "200",
        "--max-concurrent-runs",
        "1000",
    ]);
    let expected = Arc::new(storages(&emulator));
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1"]);
    let pid = mount.pid();
    emulator.set_faults(serde_json::json!({"error_rate": 0.05}));

    let root: PathBuf = mount.mountpoint().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let wrong = Arc::new(Mutex::new(Vec::<String>::new()));
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let paths: Arc<Vec<String>> = Arc::new(expected.keys().cloned().collect());

    let mut workers = Vec::new();
    for t in 0..THREADS {
        let (root, stop, ops, errors, wrong, progress, paths, expected) = (
            root.clone(),
            stop.clone(),
            ops.clone(),
            errors.clone(),
            wrong.clone(),
            progress.clone(),
            paths.clone(),
            expected.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let mut n = t as u64;
            while !stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let result: std::io::Result<()> = match (n >> 33) % 8 {
                    0 => std::fs::read_dir(root.join("runs")).map(|d| {
                        let _listed = d.count();
                    }),
                    1 => std::fs::read_link(root.join("runs/latest"))
                        .and_then(|id| std::fs::read(root.join("runs").join(id).join("logs")))
                        .map(drop),
                    _ => {
                        let rel = &paths[(n >> 40) as usize % paths.len()];
                        std::fs::read(root.join(rel)).map(|bytes| {
                            if bytes != expected[rel] {
                                wrong.lock().unwrap().push(rel.clone());
                            }
                        })
                    }
                };
                if result.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                ops.fetch_add(1, Ordering::Relaxed);
                progress[t].store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        }));
    }

    let mut created = 0;
    let mut warm = None;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(500));
        let (status, _) = emulator.post_json(
            "/v1/runs",
            &serde_json::json!({"agent": "coder", "prompt": "soak"}),
        );
        created += u32::from(status == 202);
        if warm.is_none() && started.elapsed() > Duration::from_secs(secs / 3) {
            warm = Some((rss_kib(pid), open_fds(pid)));
        }
        let now = started.elapsed().as_millis() as u64;
        for (t, last) in progress.iter().enumerate() {
            let last = last.load(Ordering::Relaxed);
            assert!(
                now.saturating_sub(last) < HANG.as_millis() as u64,
                "thread {t} hung since {last} ms"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let (warm_rss, warm_fds) = warm.expect("a warm-up sample");
    let (end_rss, end_fds) = (rss_kib(pid), open_fds(pid));
    let total = ops.load(Ordering::Relaxed);
    let api_requests = emulator.stats()["requests"].as_u64().unwrap_or(0);
    eprintln!(
        "soak: the emulator answered {api_requests} requests, about 5% of them injected failures"
    );
    eprintln!(
        "soak: {total} operations in {secs} s ({:.0}/s), {} errors, {created} runs created; RSS {warm_rss} → {end_rss} KiB, fds {warm_fds} → {end_fds}",
        total as f64 / secs as f64,
        errors.load(Ordering::Relaxed)
    );
    assert!(
        wrong.lock().unwrap().is_empty(),
        "wrong bytes read: {:?}",
        wrong.lock().unwrap()
    );
    assert!(total > THREADS as u64, "the threads made progress");
    assert!(
        end_rss <= warm_rss * 3 / 2 + 16 * 1024,
        "RSS grew from {warm_rss} to {end_rss} KiB"
    );
    assert!(
        end_fds <= warm_fds + 16,
        "open descriptors grew from {warm_fds} to {end_fds}"
    );
    emulator.set_faults(serde_json::json!({}));
    mount.unmount();
}
