//! The progress bar `vm0fs sync` draws while a volume publishes, on a terminal only.
//!
//! The publish runs in the mount and `vm0fs sync` only waits for it (see `sync`), so the bar is drawn from what
//! the mount says about it: a thread reads `.vm0fs/status` every tenth of a second and shows the bytes sent of
//! all the publish sends (`publishing` in the status), or that the files are being read and hashed before the
//! upload starts, or, while a failed attempt waits to be tried again, why it failed and when the next attempt
//! starts. It writes to stderr and only when stderr is a terminal: scripts and tests see the plain
//! `volumes/<name>@<8 hex>` line on stdout and nothing else.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

use crate::fs::MountStatus;
use crate::stage::{PublishProgress, RetryNote};

const POLL: Duration = Duration::from_millis(100);

/// The bar of one publish; cleared when dropped.
pub(super) struct PublishBar {
    stop: Arc<AtomicBool>,
    drawing: Option<JoinHandle<()>>,
}

impl PublishBar {
    /// Starts drawing the publish of `volume` (`volumes/<name>`) in the mount at `mountpoint`, if stderr is a
    /// terminal.
    pub(super) fn start(mountpoint: &Path, volume: &str) -> Option<PublishBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let status = mountpoint.join(".vm0fs/status");
        let (flag, volume) = (stop.clone(), volume.to_string());
        let drawing = std::thread::Builder::new()
            .name("vm0fs-sync-bar".into())
            .spawn(move || draw(&status, &volume, &flag))
            .ok()?;
        Some(PublishBar {
            stop,
            drawing: Some(drawing),
        })
    }
}

impl Drop for PublishBar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(drawing) = self.drawing.take() {
            let _ = drawing.join();
        }
    }
}

fn draw(status: &Path, volume: &str, stop: &AtomicBool) {
    let bar = ProgressBar::new_spinner();
    bar.set_prefix(volume.to_string());
    bar.set_message("reading and hashing the files");
    if let Ok(style) = ProgressStyle::with_template("{prefix} {spinner} {msg}") {
        bar.set_style(style);
    }
    let mut uploading = false;
    while !stop.load(Ordering::Relaxed) {
        match progress(status, volume) {
            Some(PublishProgress {
                retry: Some(note), ..
            }) => {
                if uploading {
                    uploading = false;
                    bar.reset();
                    if let Ok(style) = ProgressStyle::with_template("{prefix} {spinner} {msg}") {
                        bar.set_style(style);
                    }
                }
                bar.set_message(retry_message(&note, SystemTime::now()));
                bar.tick();
            }
            Some(PublishProgress {
                done_bytes: done,
                total_bytes: total,
                ..
            }) => {
                if !uploading {
                    uploading = true;
                    bar.reset();
                    if let Ok(style) = ProgressStyle::with_template(
                        "{prefix} [{bar:24}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
                    ) {
                        bar.set_style(style.progress_chars("#>."));
                    }
                }
                bar.set_length(total);
                bar.set_position(done);
            }
            None => bar.tick(),
        }
        std::thread::sleep(POLL);
    }
    bar.finish_and_clear();
}

/// Where `volume`'s publish stands, when the mount says it uploads or waits to try again.
fn progress(status: &Path, volume: &str) -> Option<PublishProgress> {
    let text = std::fs::read(status).ok()?;
    let status: MountStatus = serde_json::from_slice(&text).ok()?;
    status.publishing.into_iter().find(|p| p.volume == volume)
}

/// `attempt 2 failed: <cause>; next attempt in 4 s`, as of `now`.
fn retry_message(note: &RetryNote, now: SystemTime) -> String {
    let next = SystemTime::UNIX_EPOCH + Duration::from_millis(note.next_attempt_unix_ms);
    let left = next.duration_since(now).unwrap_or_default();
    format!(
        "attempt {} failed: {}; next attempt in {} s",
        note.failed_attempts,
        note.cause,
        left.as_secs_f64().ceil()
    )
}
