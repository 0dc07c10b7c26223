//! `vm0fs status`: what each mount of this user is doing, from its own `.vm0fs/status`.
//!
//! The report is text for people (one block per mount, a bar per download in flight) or, with `--json`, the
//! mounts' own JSON for scripts. `--watch` redraws it every interval until interrupted; on a terminal it clears
//! the screen between reports, otherwise the reports follow one another. A mount that cannot answer is reported,
//! not waited for: dead (its process is gone) or silent (no answer within 5 s).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StatusArgs;
use super::mounts::{Probe, own_mounts, probe};
use crate::cache::{Bytes, TransferStatus};
use crate::fs::{MountStatus, RequestStats};

/// Width of a progress bar in characters.
const BAR_WIDTH: usize = 24;

pub fn run(args: &StatusArgs) -> i32 {
    let mounts = match chosen_mounts(args.mountpoint.as_deref()) {
        Ok(mounts) => mounts,
        Err(message) => {
            eprintln!("vm0fs: {message}");
            return 1;
        }
    };
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let clear = args.watch && std::io::stdout().is_terminal();
    loop {
        let report = report(&mounts, args.json);
        let mut out = std::io::stdout().lock();
        if clear {
            let _ = out.write_all(b"\x1b[H\x1b[2J");
        }
        if out
            .write_all(report.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return 0; // the reader went away (`vm0fs status --watch | head`)
        }
        drop(out);
        if !args.watch {
            return 0;
        }
        std::thread::sleep(interval);
    }
}

/// The mounts to report: the one holding the path named (a vm0fs mount of this user), or all of them.
fn chosen_mounts(named: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    match named {
        None => own_mounts().map_err(|e| {
            format!(
                "cannot read /proc/self/mountinfo: {}",
                crate::errno::io_message(&e)
            )
        }),
        Some(named) => super::mounts::mount_holding(named).map(|(mount, _)| vec![mount]),
    }
}

fn report(mounts: &[PathBuf], json: bool) -> String {
    if json {
        let all: Vec<serde_json::Value> = mounts.iter().map(|m| json_report(m)).collect();
        let mut text = serde_json::to_string_pretty(&all).unwrap_or_default();
        text.push('\n');
        return text;
    }
    if mounts.is_empty() {
        return "no vm0fs mounts of yours; mount one with `vm0fs mount DIR`\n".into();
    }
    mounts
        .iter()
        .map(|m| text_report(m))
        .collect::<Vec<_>>()
        .join("\n")
}

fn json_report(mountpoint: &Path) -> serde_json::Value {
    let shown = mountpoint.display().to_string();
    match probe(mountpoint) {
        Probe::Live(status) => serde_json::to_value(*status).unwrap_or_default(),
        other => serde_json::json!({ "mountpoint": shown, "error": problem(mountpoint, &other) }),
    }
}

fn text_report(mountpoint: &Path) -> String {
    let status = match probe(mountpoint) {
        Probe::Live(status) => status,
        other => {
            return format!(
                "{}: {}\n",
                mountpoint.display(),
                problem(mountpoint, &other)
            );
        }
    };
    describe(&status)
}

/// What is wrong with a mount that did not answer.
fn problem(mountpoint: &Path, probe: &Probe) -> String {
    let shown = mountpoint.display();
    match probe {
        Probe::Live(_) => String::new(),
        Probe::Dead => format!(
            "dead: the vm0fs process that served it is gone; run `vm0fs unmount {shown}`, then mount again"
        ),
        Probe::Silent => {
            "not answering within 5 s: its process may be stopped or overloaded; see its log".into()
        }
        Probe::Failed(reason) => format!("cannot ask it: {reason}"),
    }
}

/// The text block of one live mount.
fn describe(status: &MountStatus) -> String {
    let cache = &status.cache;
    let inodes = status
        .inodes
        .map(|n| format!(", {n} inode{}", if n == 1 { "" } else { "s" }))
        .unwrap_or_default();
    let health = match &status.api_unreachable_since {
        None => "reachable".to_string(),
        Some(since) => format!("UNREACHABLE since {since}; serving what is cached"),
    };
    let mut text = format!(
        "{}\n  api        {} ({health})\n  process    pid {}, vm0fs {}, up {}{inodes}\n  cache      {}: {} of {} in {} archive{}",
        status.mountpoint,
        status.api_url,
        status.pid,
        status.vm0fs_version,
        duration(status.uptime_secs),
        cache.dir.display(),
        Bytes(cache.used_bytes),
        Bytes(cache.max_bytes),
        cache.archives,
        if cache.archives == 1 { "" } else { "s" },
    );
    if cache.pinned > 0 {
        text.push_str(&format!(
            " ({} pinned, {})",
            cache.pinned,
            Bytes(cache.pinned_bytes)
        ));
    }
    text.push('\n');
    if cache.downloads.is_empty() {
        text.push_str("  downloads  none in flight\n");
    }
    for download in &cache.downloads {
        text.push_str(&format!("  download   {}\n", progress_line(download)));
    }
    for volume in &status.volumes {
        text.push_str(&format!("  volume     {volume}\n"));
    }
    if let Some(requests) = status.requests.as_ref().filter(|r| !r.is_empty()) {
        text.push_str(&format!("  requests   {}\n", request_mix(requests)));
    }
    if let Some(flushes) = status.journal_flushes.filter(|n| *n > 0) {
        text.push_str(&format!(
            "  commits    {flushes} (staged changes flushed to disk)\n"
        ));
    }
    text
}

/// `2301 served: lookup 1200, getattr 800, readdirplus 300, getxattr 1`, the most frequent opcodes first.
fn request_mix(requests: &BTreeMap<String, RequestStats>) -> String {
    let total: u64 = requests.values().map(|r| r.count).sum();
    let mut by_count: Vec<_> = requests.iter().collect();
    by_count.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    let mix: Vec<String> = by_count
        .iter()
        .map(|(op, stats)| format!("{op} {}", stats.count))
        .collect();
    format!("{total} served: {}", mix.join(", "))
}

/// `volumes/big@1a2b3c4d [#########...............]  38%  120.0 MiB of 315.0 MiB, 40.0 MiB/s, 5 s left`.
pub(super) fn progress_line(download: &TransferStatus) -> String {
    let done = download.done_bytes;
    let rate = if download.elapsed_secs > 0.0 {
        done as f64 / download.elapsed_secs
    } else {
        0.0
    };
    let mut line = download.label.clone();
    match download.total_bytes.filter(|t| *t > 0) {
        Some(total) => {
            let fraction = (done as f64 / total as f64).min(1.0);
            let filled = (fraction * BAR_WIDTH as f64).round() as usize;
            line.push_str(&format!(
                " [{}{}] {:>3.0}%  {} of {}",
                "#".repeat(filled),
                ".".repeat(BAR_WIDTH - filled),
                fraction * 100.0,
                Bytes(done),
                Bytes(total)
            ));
            if rate > 0.0 {
                let left = total.saturating_sub(done) as f64 / rate;
                line.push_str(&format!(
                    ", {}/s, {} left",
                    Bytes(rate as u64),
                    duration(left)
                ));
            }
        }
        None => line.push_str(&format!(
            " {} so far, {}/s",
            Bytes(done),
            Bytes(rate as u64)
        )),
    }
    if download.attempt > 1 {
        line.push_str(&format!(" (attempt {})", download.attempt));
    }
    line
}

/// `42 s`, `3 min 05 s`, `2 h 03 min`, `3 d 04 h`.
fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {:02} s", secs / 60, secs % 60),
        3600..86400 => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {:02} h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_reads_as_a_bar_with_figures() {
        let download = TransferStatus {
            label: "volumes/big@1a2b3c4d".into(),
            version: "1a2b3c4d".into(),
            done_bytes: 25 << 20,
            total_bytes: Some(100 << 20),
            elapsed_secs: 5.0,
            attempt: 1,
            waiting: 1,
        };
        assert_eq!(
            progress_line(&download),
            "volumes/big@1a2b3c4d [######..................]  25%  25.0 MiB of 100.0 MiB, 5.0 MiB/s, 15 s left"
        );
    }

    #[test]
    fn the_request_mix_lists_the_most_frequent_opcodes_first() {
        let stats = |count| RequestStats {
            count,
            inline: count,
            ..RequestStats::default()
        };
        let requests = BTreeMap::from([
            ("getattr".to_string(), stats(3)),
            ("lookup".to_string(), stats(10)),
            ("access".to_string(), stats(3)),
        ]);
        assert_eq!(
            request_mix(&requests),
            "16 served: lookup 10, access 3, getattr 3"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
    }
}
