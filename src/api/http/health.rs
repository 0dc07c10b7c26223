//! Whether the API can be reached, so that an outage costs no waiting.
//!
//! Without this, every call made during an outage paid the client's whole retry budget before it failed: with the
//! API stopped, `ls runs` took 9.7 s and `mkdir volumes/x` 4 s. Now a call to the API that still cannot connect
//! after its retries marks the API unreachable; from then on a call to the API is not sent at all but fails at
//! once (`ApiErrorKind::Offline`), so that the filesystem answers from what it saved, and one background thread
//! asks the API again every `probe_every`. The first answer of any kind, even an HTTP error (a server that answers
//! is there), marks it reachable again, and calls go out as before. Only a failure to connect counts: a server
//! that answers 503 or stalls is reachable, and its calls keep their retries and deadlines. Requests to the blob
//! host (downloads, presigned uploads) are not held back: they do not go to the API.
//!
//! A client made without `probe_every` (every client but the mount's) never holds a call back. The counters say
//! what the client did (requests sent to the API, retries, calls held back, probes), so that tests and
//! `vm0fs status` can tell an answer given without asking from one that waited.

use crate::sync::Locked;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime};

use super::fetcher::{Call, Fetcher};
use crate::api::{ApiError, CallCounts, Reachability};

#[derive(Default)]
struct State {
    /// Since when the API could not be reached; `None` while it answers.
    down_since: Option<SystemTime>,
    /// A probing thread runs.
    probing: bool,
}

pub(super) struct Health {
    /// How often the API is probed while unreachable; `None`: calls are never held back.
    probe_every: Option<Duration>,
    /// The request that probes: a small authenticated `GET`.
    probe: Call,
    state: Mutex<State>,
    sent: AtomicU64,
    retried: AtomicU64,
    held_back: AtomicU64,
    probes: AtomicU64,
}

impl Health {
    pub(super) fn new(probe_every: Option<Duration>, probe: Call) -> Health {
        Health {
            probe_every,
            probe,
            state: Mutex::default(),
            sent: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            probes: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Whether calls to the API are held back now.
    pub(super) fn is_down(&self) -> bool {
        self.probe_every.is_some() && self.state().down_since.is_some()
    }

    /// The error of a call to the API that is not sent because the API cannot be reached, or `None` to send it.
    pub(super) fn hold_back(&self, label: &str) -> Option<ApiError> {
        let every = self.probe_every?;
        let since = self.state().down_since?;
        self.held_back.fetch_add(1, Ordering::Relaxed);
        let since = chrono::DateTime::<chrono::Local>::from(since).format("%H:%M:%S");
        Some(ApiError::offline(
            label,
            format!(
                "not sent: the API has not been reachable since {since}; it is asked again every {} s, and vm0fs \
                 carries on by itself when it answers",
                every.as_secs_f64()
            ),
        ))
    }

    /// One request sent to the API; `retry` when it is not the call's first attempt.
    pub(super) fn sent(&self, retry: bool) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The API answered (any HTTP status).
    pub(super) fn answered(&self) {
        let was_down = self.state().down_since.take();
        back(was_down);
    }

    /// A call to the API could not connect, after its retries: the API is unreachable until a probe gets an
    /// answer. Starts the probing thread (a clone of `fetcher`) unless one runs.
    pub(super) fn unreachable(self: &Arc<Self>, fetcher: &Fetcher, error: &ApiError) {
        let Some(every) = self.probe_every else {
            return;
        };
        {
            let mut state = self.state();
            if state.down_since.is_none() {
                state.down_since = Some(SystemTime::now());
                tracing::warn!(
                    "the VM0 API cannot be reached ({error}); until it answers, what needs it fails at once with \
                     EIO and what was seen before is served; it is asked again every {} s",
                    every.as_secs_f64()
                );
            }
            if state.probing {
                return;
            }
            state.probing = true;
        }
        let health = self.clone();
        let fetcher = fetcher.clone();
        let started = thread::Builder::new()
            .name("vm0fs-probe".into())
            .spawn(move || health.probe_until_answered(&fetcher, every));
        if let Err(e) = started {
            // Without a prober nothing would mark the API reachable again: send calls as before.
            tracing::error!("cannot start a thread to probe the API ({e}); every call is sent");
            let mut state = self.state();
            state.probing = false;
            state.down_since = None;
        }
    }

    fn probe_until_answered(&self, fetcher: &Fetcher, every: Duration) {
        loop {
            thread::sleep(every);
            self.probes.fetch_add(1, Ordering::Relaxed);
            match fetcher.send_once(&self.probe) {
                Err(e) if e.is_connect() => {
                    tracing::debug!("probe of the API: {}", e.without_url());
                }
                // An answer, or a connection that the server accepted: it is there.
                _ => {
                    let was_down = {
                        let mut state = self.state();
                        state.probing = false;
                        state.down_since.take()
                    };
                    back(was_down);
                    return;
                }
            }
        }
    }

    pub(super) fn report(&self) -> Reachability {
        Reachability {
            unreachable_since: self.probe_every.and(self.state().down_since),
            calls: CallCounts {
                sent: self.sent.load(Ordering::Relaxed),
                retried: self.retried.load(Ordering::Relaxed),
                held_back: self.held_back.load(Ordering::Relaxed),
                probes: self.probes.load(Ordering::Relaxed),
            },
        }
    }
}

/// Logs that the API answers again, if it was out of reach (`since`).
fn back(since: Option<SystemTime>) {
    if let Some(since) = since {
        let secs = since.elapsed().unwrap_or_default().as_secs();
        tracing::info!("the VM0 API answers again (after {secs} s out of reach)");
    }
}
