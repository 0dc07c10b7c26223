//! Bounded soaks. Readers: 16 threads read files across several storages, list `runs/` and follow logs through
//! one mount, while runs are created and the emulator fails 5% of API requests. Writers: 4 threads create, edit,
//! append to, truncate, rename and delete files in two volumes while 12 threads read, under the same 5%, and the
//! volumes are published every few seconds (`vm0fs sync`, with the writers paused so that what was written is
//! known); each published version, read back from a fresh mount, must hold exactly the files and bytes of the
//! model the writers kept, and the emulator must have accepted exactly one commit per distinct content. Both
//! assert zero wrong bytes, zero hangs (every thread keeps making progress), and that the vm0fs process's RSS and
//! open descriptors stay flat after warm-up. `VM0FS_SOAK_SECS` sets each one's duration (default 30 s; the
//! issue's bound is 2 minutes).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::{Mount, vm0fs};

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

/// One reader's step `n`: list `runs/`, read the newest run's log, or read a seeded file and check its bytes.
fn read_step(
    root: &Path,
    n: u64,
    paths: &[String],
    expected: &HashMap<String, Vec<u8>>,
    wrong: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    match (n >> 33) % 8 {
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
    }
}

/// What every reader thread shares: where to read, what to expect, and where to count.
#[derive(Clone)]
struct Readers {
    root: PathBuf,
    paths: Arc<Vec<String>>,
    expected: Arc<HashMap<String, Vec<u8>>>,
    stop: Arc<AtomicBool>,
    wrong: Arc<Mutex<Vec<String>>>,
    errors: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    /// When each thread last finished a step (ms since `started`), by slot.
    progress: Arc<Vec<AtomicU64>>,
    started: Instant,
}

impl Readers {
    /// A reader in `slot` of `progress`, stepping through `read_step` from `seed` until `stop`.
    fn spawn(&self, slot: usize, seed: u64) -> std::thread::JoinHandle<()> {
        let r = self.clone();
        std::thread::spawn(move || {
            let mut n = seed;
            while !r.stop.load(Ordering::Relaxed) {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if read_step(&r.root, n, &r.paths, &r.expected, &r.wrong).is_err() {
                    r.errors.fetch_add(1, Ordering::Relaxed);
                }
                r.reads.fetch_add(1, Ordering::Relaxed);
                r.progress[slot].store(r.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        })
    }
}

fn soak_secs() -> u64 {
    std::env::var("VM0FS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

#[test]
fn sixteen_threads_under_injected_errors_read_right_bytes_without_hangs_or_leaks() {
    let secs = soak_secs();
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

    let readers = Readers {
        root: root.clone(),
        paths: paths.clone(),
        expected: expected.clone(),
        stop: stop.clone(),
        wrong: wrong.clone(),
        errors: errors.clone(),
        reads: ops.clone(),
        progress: progress.clone(),
        started,
    };
    let workers: Vec<_> = (0..THREADS).map(|t| readers.spawn(t, t as u64)).collect();

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

const WRITERS: usize = 4;
const READERS: usize = 12;
const WRITTEN_VOLUMES: [&str; 2] = ["soak-w1", "soak-w2"];

/// What the writers of one volume wrote: each file's path in the volume and its bytes.
type Model = BTreeMap<String, Vec<u8>>;

/// One writer: its own directory `w<t>/` (and `w<t>/sub/`) of one volume, whose files it alone changes.
struct Writer {
    t: usize,
    volume: PathBuf,
    model: Arc<Mutex<Model>>,
    seq: u64,
    rng: u64,
}

impl Writer {
    fn next(&mut self) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.rng >> 33
    }

    fn mine(&self) -> Vec<String> {
        let prefix = format!("w{}/", self.t);
        let model = self.model.lock().unwrap();
        model
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect()
    }

    fn new_name(&mut self) -> String {
        self.seq += 1;
        let sub = if self.next() % 2 == 0 { "sub/" } else { "" };
        format!("w{}/{sub}f{}", self.t, self.seq)
    }

    /// One change to the volume and, once it succeeded, to the model. A failure is returned as a sentence.
    fn step(&mut self) -> Result<(), String> {
        let mine = self.mine();
        let op = if mine.len() < 3 { 0 } else { self.next() % 6 };
        let pick = if mine.is_empty() {
            String::new()
        } else {
            mine[self.next() as usize % mine.len()].clone()
        };
        let fail = |what: &str, path: &str, e: std::io::Error| format!("{what} {path}: {e}");
        let seed = self.next();
        match op {
            0 => {
                let path = self.new_name();
                let bytes = common::noise((seed % 40_000) as usize, seed);
                std::fs::write(self.volume.join(&path), &bytes)
                    .map_err(|e| fail("create", &path, e))?;
                self.model.lock().unwrap().insert(path, bytes);
            }
            1 | 2 => {
                let bytes = common::noise(1 + (seed % 4096) as usize, seed);
                let len = self.model.lock().unwrap()[&pick].len() as u64;
                let offset = if op == 2 { len } else { seed % (len + 1) };
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.volume.join(&pick))
                    .map_err(|e| fail("open", &pick, e))?;
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.write_all(&bytes))
                    .map_err(|e| fail("write", &pick, e))?;
                drop(file);
                let mut model = self.model.lock().unwrap();
                let content = model.get_mut(&pick).unwrap();
                let end = offset as usize + bytes.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[offset as usize..end].copy_from_slice(&bytes);
            }
            3 => {
                let to = self.new_name();
                std::fs::rename(self.volume.join(&pick), self.volume.join(&to))
                    .map_err(|e| fail("rename", &pick, e))?;
                let mut model = self.model.lock().unwrap();
                let bytes = model.remove(&pick).unwrap();
                model.insert(to, bytes);
            }
            4 => {
                std::fs::remove_file(self.volume.join(&pick)).map_err(|e| fail("rm", &pick, e))?;
                self.model.lock().unwrap().remove(&pick);
            }
            _ => {
                let len = self.model.lock().unwrap()[&pick].len() as u64;
                let new_len = seed % (len + 1);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.volume.join(&pick))
                    .and_then(|f| f.set_len(new_len))
                    .map_err(|e| fail("truncate", &pick, e))?;
                let mut model = self.model.lock().unwrap();
                model.get_mut(&pick).unwrap().truncate(new_len as usize);
            }
        }
        Ok(())
    }
}

/// Every file under `dir` (recursively), by path relative to it, with its bytes.
fn files_under(dir: &Path) -> Model {
    let mut out = Model::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let listing = std::fs::read_dir(dir.join(&rel))
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.join(&rel).display()));
        for entry in listing {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(entry.path()).unwrap();
                out.insert(path.to_string_lossy().into_owned(), bytes);
            }
        }
    }
    out
}

/// The paths whose bytes differ between `want` and `got`, or that only one of them has.
fn differences(want: &Model, got: &Model) -> Vec<String> {
    let mut paths: Vec<&String> = want.keys().chain(got.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| want.get(*p) != got.get(*p))
        .cloned()
        .collect()
}

/// `vm0fs sync` of each written volume, with the writers paused: the short id each published, and the model
/// it must hold, whenever the content changed since the volume's last publish.
fn publish_all(
    root: &Path,
    models: &[Arc<Mutex<Model>>],
    published: &mut Vec<(usize, String, Model)>,
    failures: &mut Vec<String>,
) {
    for (v, name) in WRITTEN_VOLUMES.iter().enumerate() {
        let snapshot = models[v].lock().unwrap().clone();
        let last = published.iter().rev().find(|(pv, _, _)| *pv == v);
        if last.is_some_and(|(_, _, m)| *m == snapshot) {
            continue;
        }
        let out = vm0fs()
            .arg("sync")
            .arg(root.join("volumes").join(name))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match said.strip_prefix(&format!("volumes/{name}@")) {
            Some(short) if out.status.success() => published.push((v, short.to_string(), snapshot)),
            _ => failures.push(format!(
                "vm0fs sync volumes/{name}: {said} {}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
}

#[test]
fn four_writers_and_twelve_readers_under_injected_errors_publish_exactly_what_was_written() {
    let secs = soak_secs();
    let emulator = Emulator::start(&["--seed", "demo", "--max-concurrent-runs", "1000"]);
    let expected = Arc::new(storages(&emulator));
    let paths: Arc<Vec<String>> = Arc::new(expected.keys().cloned().collect());
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1", "--commit-delay", "0"]);
    let pid = mount.pid();
    let root: PathBuf = mount.mountpoint().to_path_buf();
    for name in WRITTEN_VOLUMES {
        for t in 0..WRITERS {
            std::fs::create_dir_all(root.join("volumes").join(name).join(format!("w{t}/sub")))
                .unwrap();
        }
    }
    let commits_before = emulator.stats()["commits"].as_u64().unwrap_or(0);
    emulator.set_faults(serde_json::json!({"error_rate": 0.05}));

    let models: Vec<Arc<Mutex<Model>>> = WRITTEN_VOLUMES.iter().map(|_| Arc::default()).collect();
    let gate = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let write_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let wrong = Arc::new(Mutex::new(Vec::<String>::new()));
    let (reads, writes, read_errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..WRITERS + READERS).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let mut threads = Vec::new();
    for t in 0..WRITERS {
        let mut writer = Writer {
            t,
            volume: root.join("volumes").join(WRITTEN_VOLUMES[t % 2]),
            model: models[t % 2].clone(),
            seq: 0,
            rng: 0x5eed + t as u64,
        };
        let (gate, stop, errors, writes, progress) = (
            gate.clone(),
            stop.clone(),
            write_errors.clone(),
            writes.clone(),
            progress.clone(),
        );
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let step = {
                    let _open = gate.read().unwrap();
                    writer.step()
                };
                if let Err(e) = step {
                    errors.lock().unwrap().push(e);
                    return;
                }
                writes.fetch_add(1, Ordering::Relaxed);
                progress[t].store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        }));
    }
    let readers = Readers {
        root: root.clone(),
        paths: paths.clone(),
        expected: expected.clone(),
        stop: stop.clone(),
        wrong: wrong.clone(),
        errors: read_errors.clone(),
        reads: reads.clone(),
        progress: progress.clone(),
        started,
    };
    threads.extend((0..READERS).map(|r| readers.spawn(WRITERS + r, r as u64)));

    let mut published = Vec::new();
    let mut sync_failures = Vec::new();
    let mut warm = None;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(2));
        {
            let _paused = gate.write().unwrap();
            publish_all(&root, &models, &mut published, &mut sync_failures);
        }
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
    for thread in threads {
        thread.join().unwrap();
    }
    publish_all(&root, &models, &mut published, &mut sync_failures);
    let (warm_rss, warm_fds) = warm.expect("a warm-up sample");
    let (end_rss, end_fds) = (rss_kib(pid), open_fds(pid));
    emulator.set_faults(serde_json::json!({}));
    let stats = emulator.stats();
    let commits = stats["commits"].as_u64().unwrap_or(0) - commits_before;
    eprintln!(
        "soak (writers): {} writes and {} reads ({} read errors) in {secs} s, {} versions published; the API \
         answered {} requests, about 5% of them injected failures; RSS {warm_rss} → {end_rss} KiB, \
         fds {warm_fds} → {end_fds}",
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed),
        read_errors.load(Ordering::Relaxed),
        published.len(),
        stats["requests"]
    );
    assert!(
        write_errors.lock().unwrap().is_empty(),
        "writes failed: {:?}",
        write_errors.lock().unwrap()
    );
    assert!(
        sync_failures.is_empty(),
        "publishes failed: {sync_failures:?}"
    );
    assert!(
        wrong.lock().unwrap().is_empty(),
        "wrong bytes read: {:?}",
        wrong.lock().unwrap()
    );
    assert!(
        end_rss <= warm_rss * 3 / 2 + 16 * 1024,
        "RSS grew from {warm_rss} to {end_rss} KiB"
    );
    assert!(
        end_fds <= warm_fds + 16,
        "open descriptors grew from {warm_fds} to {end_fds}"
    );
    assert_eq!(
        commits,
        published.len() as u64,
        "one accepted commit per distinct content published, no version twice"
    );
    mount.unmount();

    let fresh = Mount::start(&emulator, &[]);
    let mut ids: Vec<&String> = published.iter().map(|(_, id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), published.len(), "each publish is a new version");
    for (v, short, model) in &published {
        let dir = fresh.path(&format!("volumes/{}@{short}", WRITTEN_VOLUMES[*v]));
        let lost = differences(model, &files_under(&dir));
        assert!(
            lost.is_empty(),
            "{}: lost or wrong bytes in {lost:?}",
            dir.display()
        );
    }
}
