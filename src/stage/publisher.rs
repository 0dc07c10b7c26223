//! The publisher: one thread that turns a volume's staged tree into one new version, apart from how a publish
//! goes (`publish`).
//!
//! One thread, so one publish runs at a time and never two of one volume. It waits on a channel with a timeout:
//! a change of a volume (re)starts its quiet period (`--commit-delay`), `vm0fs sync` publishes at once and gets the
//! result, an unmount drains until a deadline, a head listed by the server that the stage is not based on is
//! followed (`publish::follow`). A failure that may pass (network, 5xx, 429, expired URL, a head that moved during
//! the upload) is retried with backoff and never drops a change; the others are shown in `vm0fs status` and
//! answered to `vm0fs sync` until the next change or sync tries again. `vm0fs discard` runs on this thread too,
//! so it never overlaps a publish.

use crate::sync::Locked;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::discard::Discarded;
use super::error::{PublishError, StageError};
use super::publish::{Attempt, follow, publish};
use super::status::{Mode, Phase, Published, RetryNote};
use super::upload::Protocol;
use super::volume::{Notify, VolumeStage};
use crate::api::Vm0Api;

/// Backoff between retries of a failed publish: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How many attempts `vm0fs sync` makes before it reports a failure that may pass (about 15 s of backoff): enough
/// that a server failing one request in twenty almost never fails a sync (the soak test runs at that rate).
const SYNC_ATTEMPTS: u32 = 6;

type Discarding = Sender<Result<Discarded, StageError>>;

enum Msg {
    Changed(Arc<VolumeStage>),
    Sync(
        Arc<VolumeStage>,
        Mode,
        Option<Duration>,
        Sender<Result<Published, PublishError>>,
    ),
    Discard(Arc<VolumeStage>, Discarding),
    Follow(Arc<VolumeStage>),
    Drain(Vec<Arc<VolumeStage>>, Instant, Sender<Vec<String>>),
}

/// The handle on the publisher thread; the thread ends when this is dropped.
pub struct Publisher {
    tx: Mutex<Sender<Msg>>,
}

impl Publisher {
    pub fn start(api: Arc<dyn Vm0Api>, delay: Duration) -> Publisher {
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("vm0fs-publish".into())
            .spawn(move || run(&*api, delay, &rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the publisher thread; volumes will not be published");
        }
        Publisher { tx: Mutex::new(tx) }
    }

    fn send(&self, msg: Msg) -> bool {
        let tx = self.tx.locked();
        tx.send(msg).is_ok()
    }

    pub fn changed(&self, volume: &Arc<VolumeStage>) {
        self.send(Msg::Changed(volume.clone()));
    }

    /// Publishes `volume` now and waits; `timeout` bounds the retries of failures that may pass (without it, a
    /// few attempts are made).
    pub fn sync(
        &self,
        volume: &Arc<VolumeStage>,
        mode: Mode,
        timeout: Option<Duration>,
    ) -> Result<Published, PublishError> {
        let (tx, rx) = mpsc::channel();
        let gone = || PublishError {
            errno: libc::EIO,
            message: format!("{}: the publisher has stopped", volume.label()),
            retryable: false,
            step: "sync",
        };
        if !self.send(Msg::Sync(volume.clone(), mode, timeout, tx)) {
            return Err(gone());
        }
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    /// Drops the staged changes of `volume`, between publishes.
    pub fn discard(&self, volume: &Arc<VolumeStage>) -> Result<Discarded, StageError> {
        let (tx, rx) = mpsc::channel();
        let gone = || {
            StageError::new(
                libc::EIO,
                format!("{}: the publisher has stopped", volume.label()),
            )
        };
        if !self.send(Msg::Discard(volume.clone(), tx)) {
            return Err(gone());
        }
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    pub fn drain(&self, volumes: Vec<Arc<VolumeStage>>, within: Duration) -> Vec<String> {
        let (tx, rx) = mpsc::channel();
        let labels: Vec<String> = volumes
            .iter()
            .filter(|v| v.dirty())
            .map(|v| v.label())
            .collect();
        if !self.send(Msg::Drain(volumes, Instant::now() + within, tx)) {
            return labels;
        }
        rx.recv().unwrap_or(labels)
    }
}

/// A volume waiting for its publish.
struct Due {
    volume: Arc<VolumeStage>,
    at: Instant,
    failures: u32,
}

fn run(api: &dyn Vm0Api, delay: Duration, rx: &Receiver<Msg>) {
    let mut due: HashMap<String, Due> = HashMap::new();
    let protocol = Cell::new(Protocol::default());
    loop {
        let next = due.values().map(|d| d.at).min();
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Changed(v)) if !delay.is_zero() => {
                let at = Instant::now() + delay;
                due.insert(
                    v.storage_id.clone(),
                    Due {
                        volume: v,
                        at,
                        failures: 0,
                    },
                );
            }
            Ok(Msg::Changed(_)) => {}
            Ok(Msg::Sync(v, mode, timeout, reply)) => {
                let (attempts, deadline) = match timeout {
                    Some(timeout) => (u32::MAX, Instant::now() + timeout),
                    None => (SYNC_ATTEMPTS, Instant::now() + RETRY_MAX),
                };
                // Changes made from here on tell the publisher again; those before are in this publish.
                v.taken_up();
                let attempt = Attempt::new(mode, &protocol);
                let result = publish_retrying(api, &v, attempt, attempts, deadline);
                if result.is_ok() {
                    due.remove(&v.storage_id);
                }
                let _ = reply.send(result);
            }
            Ok(Msg::Discard(v, reply)) => {
                v.taken_up();
                let result = v.discard_changes();
                if result.is_ok() {
                    due.remove(&v.storage_id);
                }
                let _ = reply.send(result);
            }
            Ok(Msg::Follow(v)) => follow(api, &v),
            Ok(Msg::Drain(vols, deadline, reply)) => {
                let mut left = Vec::new();
                for v in vols.iter().filter(|v| v.dirty()) {
                    let attempt = Attempt::new(Mode::Careful, &protocol);
                    if publish_retrying(api, v, attempt, u32::MAX, deadline).is_err() {
                        left.push(v.label());
                    }
                }
                let _ = reply.send(left);
            }
            Err(RecvTimeoutError::Timeout) => publish_due(api, delay, &mut due, &protocol),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Publishes the volumes whose quiet period is over.
fn publish_due(
    api: &dyn Vm0Api,
    delay: Duration,
    due: &mut HashMap<String, Due>,
    protocol: &Cell<Protocol>,
) {
    let now = Instant::now();
    let ready: Vec<String> = due
        .iter()
        .filter(|(_, d)| d.at <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for id in ready {
        let Some(mut d) = due.remove(&id) else {
            continue;
        };
        if d.volume.writing() {
            d.at = now + delay;
            due.insert(id, d);
            continue;
        }
        // Changes after the one that made the volume due did not tell the publisher: the quiet period runs from
        // the last of them.
        let quiet_until = d.volume.last_change() + delay;
        if quiet_until > now {
            d.at = quiet_until;
            due.insert(id, d);
            continue;
        }
        d.volume.taken_up();
        match publish(api, &d.volume, &mut Attempt::new(Mode::Careful, protocol)) {
            Err(e) if e.retryable => {
                d.failures += 1;
                d.at = Instant::now() + backoff(d.failures);
                due.insert(id, d);
            }
            _ => {}
        }
    }
}

fn backoff(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.min(8))
        .min(RETRY_MAX)
}

/// Publishes, retrying what may pass up to `attempts` times or until `deadline`. While it waits to try again, the
/// volume's phase says why and when (`vm0fs sync` shows it on a terminal); a failure it gives up on says how many
/// attempts were made over how long.
fn publish_retrying(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    first: Attempt<'_>,
    attempts: u32,
    deadline: Instant,
) -> Result<Published, PublishError> {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let mut attempt = Attempt::new(first.mode, first.protocol);
        let result = publish(api, volume, &mut attempt).map(|version| Published {
            version,
            replaced: attempt.replaced,
            note: attempt.note,
        });
        match result {
            Err(e) if e.retryable && failures + 1 < attempts => {
                failures += 1;
                let wait = backoff(failures);
                if Instant::now() + wait > deadline {
                    return Err(gave_up(e, failures, started));
                }
                volume.set_phase(Phase::Retrying(RetryNote {
                    failed_attempts: failures,
                    cause: e.message.clone(),
                    next_attempt_unix_ms: unix_ms(SystemTime::now() + wait),
                }));
                thread::sleep(wait);
            }
            Err(e) if e.retryable && failures > 0 => return Err(gave_up(e, failures + 1, started)),
            other => return other,
        }
    }
}

/// A failure that may pass, after the last attempt: the same, saying how many attempts were made over how long.
fn gave_up(mut e: PublishError, attempts: u32, started: Instant) -> PublishError {
    e.message = format!(
        "{} (gave up after {attempts} attempt(s) over {} s)",
        e.message,
        started.elapsed().as_secs()
    );
    e
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Notify for Publisher {
    fn changed(&self, volume: &Arc<VolumeStage>) {
        Publisher::changed(self, volume);
    }

    /// Rebases `volume`'s changes onto the head the server lists (`publish::follow`).
    fn follow(&self, volume: &Arc<VolumeStage>) {
        self.send(Msg::Follow(volume.clone()));
    }
}
