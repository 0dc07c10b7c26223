//! `vm0fs prefetch PATH...`: bring the archives behind paths of a mount into its cache before they are needed.
//!
//! The command does not download anything itself: it lists the directory of the archive each path lies in, which
//! makes the mount fetch it, so the files land in the one cache the mount reads from, under the mount's own
//! single-flight and limits. Each path is first reduced to its archive, `volumes|artifacts/<name>`, whose version
//! is read from the `user.vm0.version` attribute (run artifacts are reached through their `runs/<id>/artifact`
//! link), and the command names that exact version (`<name>@<version>`), so what is fetched and pinned is what
//! the path showed. Pins are set and cleared before the fetch by reading the `user.vm0.pin` (`user.vm0.unpin`)
//! attribute of that directory: a read, so that pinning works on a `--read-only` mount too.
//! `volumes/` or `artifacts/` itself stands for every storage in it. Up to four archives are fetched at once; while they download, the mount's `.vm0fs/status` is read a
//! few times a second to draw one progress bar per archive (on a terminal; elsewhere one line per archive when it
//! is done). The exit status is 1 if any path failed.

use crate::sync::Locked;
use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::PrefetchArgs;
use super::mounts::{Probe, mount_holding, probe, xattr};
use crate::cache::{Bytes, TransferStatus};

/// Archives fetched at the same time.
const PARALLEL: usize = 4;
/// How often the mount's status is read for the bars.
const REDRAW: Duration = Duration::from_millis(200);

/// One archive to act on.
struct Target {
    /// The path as given, for messages.
    given: String,
    mountpoint: PathBuf,
    /// `volumes/<name>@<version id>`.
    archive: String,
    version: String,
    /// Bytes of file content, from `user.vm0.size`.
    size: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Fetch,
    Pin,
    Unpin,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Fetch => "fetch",
            Verb::Pin => "pin",
            Verb::Unpin => "unpin",
        }
    }
}

pub fn run(args: &PrefetchArgs) -> i32 {
    let verb = match (args.pin, args.unpin) {
        (_, true) => Verb::Unpin,
        (true, false) => Verb::Pin,
        (false, false) => Verb::Fetch,
    };
    let mut failed = false;
    let mut paths = Vec::new();
    for path in &args.paths {
        match expand(path) {
            Ok(found) => paths.extend(found),
            Err(message) => {
                eprintln!("vm0fs: {message}");
                failed = true;
            }
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    for path in &paths {
        match target(path) {
            Ok(Some(t)) if !targets.iter().any(|o| o.archive == t.archive) => targets.push(t),
            Ok(Some(_)) => {}
            Ok(None) => println!("{}: no version yet, nothing to download", path.display()),
            Err(message) => {
                eprintln!("vm0fs: {message}");
                failed = true;
            }
        }
    }
    if !run_all(targets, verb) {
        failed = true;
    }
    i32::from(failed)
}

/// `volumes/` or `artifacts/` of a mount stands for every storage in it; any other path for itself.
fn expand(path: &Path) -> Result<Vec<PathBuf>, String> {
    let (mountpoint, rel) = mount_holding(path)?;
    if rel != Path::new("volumes") && rel != Path::new("artifacts") {
        return Ok(vec![path.to_path_buf()]);
    }
    let listing = std::fs::read_dir(mountpoint.join(&rel))
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| format!("{}: {}", path.display(), crate::errno::io_message(&e)))?;
    let mut found = listing;
    found.sort();
    Ok(found)
}

/// The archive `path` lies in; `None` for a storage without any version.
fn target(path: &Path) -> Result<Option<Target>, String> {
    let given = path.display().to_string();
    let (mountpoint, rel) = mount_holding(path)?;
    let rel = if rel.starts_with("runs") {
        through_run_links(&mountpoint, &rel).map_err(|e| format!("{given}: {e}"))?
    } else {
        rel
    };
    let mut parts = rel.components().filter_map(|c| match c {
        Component::Normal(part) => part.to_str(),
        _ => None,
    });
    let kind = parts
        .next()
        .filter(|k| *k == "volumes" || *k == "artifacts");
    let (Some(kind), Some(name)) = (kind, parts.next()) else {
        return Err(format!(
            "{given} is not a volume or an artifact: name volumes/<name>, artifacts/<name>, a path inside one, \
             or runs/<id>/artifact"
        ));
    };
    let root = mountpoint.join(kind).join(name);
    let attribute = |attr: &str| {
        xattr(&root, attr).map_err(|e| format!("{given}: {}", crate::errno::io_message(&e)))
    };
    let version = attribute("user.vm0.version")?;
    let size = attribute("user.vm0.size")?.and_then(|s| s.parse().ok());
    let base = name.split('@').next().unwrap_or(name);
    Ok(version.map(|version| Target {
        given,
        archive: format!("{kind}/{base}@{version}"),
        mountpoint,
        version,
        size,
    }))
}

/// `runs/<id>/artifact/...` (or `runs/latest/...`) as the `artifacts/<name>@<version>/...` it links to.
fn through_run_links(mountpoint: &Path, rel: &Path) -> std::io::Result<PathBuf> {
    let head: PathBuf = rel.components().take(3).collect();
    let rest: PathBuf = rel.components().skip(3).collect();
    let real = mountpoint.join(head).canonicalize()?;
    let inside = real.strip_prefix(mountpoint).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the link leads out of the mount",
        )
    })?;
    Ok(inside.join(rest))
}

/// What a worker reports: which target, and how it went.
type Outcome = (usize, Result<Duration, String>);

/// Acts on every target, four at a time, drawing progress; true when all succeeded.
fn run_all(targets: Vec<Target>, verb: Verb) -> bool {
    if targets.is_empty() {
        return true;
    }
    let targets = Arc::new(targets);
    let queue = Arc::new(Mutex::new((0..targets.len()).collect::<VecDeque<usize>>()));
    let (tx, rx) = mpsc::channel::<Outcome>();
    for _ in 0..PARALLEL.min(targets.len()) {
        let (targets, queue, tx) = (targets.clone(), queue.clone(), tx.clone());
        std::thread::spawn(move || {
            loop {
                let next = queue.locked().pop_front();
                let Some(i) = next else { return };
                let started = Instant::now();
                let result = send(&targets[i], verb).map(|()| started.elapsed());
                if tx.send((i, result)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let bars = Bars::new(&targets, verb);
    let mut left = targets.len();
    let mut all_ok = true;
    while left > 0 {
        match rx.recv_timeout(REDRAW) {
            Ok((i, result)) => {
                left -= 1;
                all_ok &= bars.finish(i, &targets[i], verb, result);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bars.update(&targets),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    all_ok && left == 0
}

/// Pins (or unpins) `target` through its directory's pin attribute, then fetches it by listing the directory.
fn send(target: &Target, verb: Verb) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        let log = match probe(&target.mountpoint) {
            Probe::Live(status) => status.cache.dir.join("vm0fs.log").display().to_string(),
            _ => "vm0fs.log in its cache directory".into(),
        };
        format!(
            "{}: cannot {} {}: {}; the mount's log says why ({log}, or its stderr if it runs with -f)",
            target.given,
            verb.word(),
            target.archive,
            crate::errno::io_message(&e)
        )
    };
    let command = match verb {
        Verb::Pin => Some(crate::fs::PIN_XATTR),
        Verb::Unpin => Some(crate::fs::UNPIN_XATTR),
        Verb::Fetch => None,
    };
    if let Some(command) = command {
        xattr(&target.mountpoint.join(&target.archive), command).map_err(fail)?;
    }
    if let Verb::Fetch | Verb::Pin = verb {
        std::fs::read_dir(target.mountpoint.join(&target.archive)).map_err(fail)?;
    }
    Ok(())
}

/// One progress bar per target (hidden when stderr is not a terminal).
struct Bars {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    /// A bar once the download is seen; before that, only the name and what it waits for.
    downloading: ProgressStyle,
}

impl Bars {
    fn new(targets: &[Target], verb: Verb) -> Bars {
        let multi = MultiProgress::new();
        let downloading = ProgressStyle::with_template(
            "{prefix} [{bar:24}] {percent:>3}%  {binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec}  \
             {eta} left  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>.");
        let waiting = ProgressStyle::with_template("{prefix}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = targets
            .iter()
            .map(|t| {
                let bar = multi.add(ProgressBar::new(0).with_style(waiting.clone()));
                bar.set_prefix(short_label(&t.archive));
                bar.set_message(match verb {
                    Verb::Unpin => "unpinning",
                    _ => "waiting",
                });
                bar
            })
            .collect();
        Bars {
            multi,
            bars,
            downloading,
        }
    }

    /// Moves each bar to what its mount says about the download.
    fn update(&self, targets: &[Target]) {
        let mut seen: Vec<(PathBuf, Vec<TransferStatus>)> = Vec::new();
        for (target, bar) in targets.iter().zip(&self.bars) {
            if bar.is_finished() {
                continue;
            }
            if !seen.iter().any(|(m, _)| *m == target.mountpoint) {
                let downloads = match probe(&target.mountpoint) {
                    Probe::Live(status) => status.cache.downloads,
                    _ => Vec::new(),
                };
                seen.push((target.mountpoint.clone(), downloads));
            }
            let downloads = seen.iter().find(|(m, _)| *m == target.mountpoint);
            let found =
                downloads.and_then(|(_, all)| all.iter().find(|d| d.version == target.version));
            if let Some(download) = found {
                if bar.length() == Some(0) {
                    bar.set_style(self.downloading.clone());
                }
                bar.set_length(download.total_bytes.unwrap_or(download.done_bytes));
                bar.set_position(download.done_bytes);
                bar.set_message(if download.attempt > 1 {
                    format!("downloading (attempt {})", download.attempt)
                } else {
                    "downloading".into()
                });
            }
        }
    }

    /// Closes the bar of target `i` and prints its one-line result; true on success.
    fn finish(
        &self,
        i: usize,
        target: &Target,
        verb: Verb,
        result: Result<Duration, String>,
    ) -> bool {
        let bar = &self.bars[i];
        let (line, ok) = match result {
            Ok(took) => {
                let done = match verb {
                    Verb::Fetch => "cached",
                    Verb::Pin => "cached and pinned",
                    Verb::Unpin => "unpinned",
                };
                let size = match target.size {
                    Some(bytes) if verb != Verb::Unpin => format!(" ({})", Bytes(bytes)),
                    _ => String::new(),
                };
                let label = short_label(&target.archive);
                (
                    format!("{label}: {done}{size} in {:.1} s", took.as_secs_f64()),
                    true,
                )
            }
            Err(message) => (message, false),
        };
        bar.finish_and_clear();
        self.multi.suspend(|| {
            if ok {
                println!("{line}");
            } else {
                eprintln!("vm0fs: {line}");
            }
        });
        ok
    }
}

/// `volumes/data@1a2b3c4d` for a label with a full version id.
fn short_label(archive: &str) -> String {
    match archive.split_once('@') {
        Some((base, version)) => format!("{base}@{}", version.get(..8).unwrap_or(version)),
        None => archive.to_string(),
    }
}
