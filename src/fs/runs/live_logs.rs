//! Run logs that grow while their run runs, as `tail -f` expects of a file.
//!
//! Each log is kept as the bytes rendered so far and fetched onward with the API's timestamp cursor
//! (CONTRACT.md 4.6). The cursor is strict (`>`), so entries that share the last timestamp could be skipped; to lose
//! none, pages are asked with `since` (inclusive) at the last timestamp seen and the entries already rendered at that
//! timestamp are recognised and dropped, so nothing is lost or written twice. A background poller refreshes only the
//! logs someone is watching (an open handle, or a read or `stat` in the last minute), so hundreds of idle runs cost
//! no requests: a log that is open (`tail -f`) four times a second while it grows, backing off to once a second
//! after a second without news; one only looked at, once a second. GNU `tail -f` itself polls a FUSE file once a
//! second, so the faster polling takes vm0fs's own delay from up to a second down to a quarter of one. When a log
//! grows the poller tells the kernel to forget the file's attributes, so the next `fstat` of `tail -f` sees the new
//! size. Once the run is terminal the rest is drained and the log is fixed; a fixed log is also saved in the cache
//! directory (`saved`), so that it reads the same after a remount while the API is down.

use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::models::{LogEntry, LogQuery};
use crate::api::{ApiError, Vm0Api};
use crate::fs::render;
use crate::fs::saved::Saved;
use crate::fs::waiting::may_wait;

/// How long a log stays watched after its last read or `stat` with no handle open.
const INTEREST: Duration = Duration::from_secs(60);
/// How often the poller looks for logs that are due.
pub const POLL_TICK: Duration = Duration::from_millis(250);
/// How often an open log that grows is asked for new entries.
const FOLLOWED_INTERVAL: Duration = POLL_TICK;
/// How often any other watched log is asked, and an open one after `QUIET_POLLS` polls without news; also how
/// old a log may be before a `stat` or an open fetches it itself.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Polls without news (a second at `FOLLOWED_INTERVAL`) before an open log backs off to `POLL_INTERVAL`.
const QUIET_POLLS: u32 = 4;
const PAGE: u32 = 100;

#[derive(Default)]
struct LogState {
    text: Vec<u8>,
    /// Timestamp of the newest entry rendered, and the entries rendered at exactly that timestamp.
    last_timestamp: Option<String>,
    at_last_timestamp: HashSet<String>,
    /// The run was terminal before the last fetch began, so nothing more can come.
    complete: bool,
    fetched_at: Option<Instant>,
    interest_at: Option<Instant>,
    open_handles: usize,
    /// Polls in a row that found nothing new.
    quiet_polls: u32,
}

impl LogState {
    fn watched(&self) -> bool {
        self.open_handles > 0 || self.interest_at.is_some_and(|t| t.elapsed() < INTEREST)
    }

    /// How long after its last fetch the poller asks again.
    fn interval(&self) -> Duration {
        if self.open_handles > 0 && self.quiet_polls < QUIET_POLLS {
            FOLLOWED_INTERVAL
        } else {
            POLL_INTERVAL
        }
    }

    /// Whether the poller should fetch this log now.
    fn due(&self) -> bool {
        !self.complete
            && self.watched()
            && self
                .fetched_at
                .is_none_or(|t| t.elapsed() + POLL_TICK / 2 >= self.interval())
    }

    /// Appends the entries of a page that are new; returns how many were.
    fn append(&mut self, entries: &[LogEntry]) -> usize {
        let mut added = 0;
        for entry in entries {
            if self
                .last_timestamp
                .as_deref()
                .is_some_and(|last| entry.timestamp.as_str() < last)
            {
                continue;
            }
            let fingerprint = fingerprint(entry);
            if self.last_timestamp.as_deref() == Some(entry.timestamp.as_str()) {
                if !self.at_last_timestamp.insert(fingerprint) {
                    continue;
                }
            } else {
                self.last_timestamp = Some(entry.timestamp.clone());
                self.at_last_timestamp.clear();
                self.at_last_timestamp.insert(fingerprint);
            }
            self.text
                .extend_from_slice(render::log_line(entry).as_bytes());
            added += 1;
        }
        added
    }
}

fn fingerprint(entry: &LogEntry) -> String {
    let metadata = entry
        .metadata
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    format!(
        "{}\0{}\0{}\0{}\0{}",
        entry.timestamp, entry.kind, entry.level, entry.message, metadata
    )
}

pub struct LiveLogs {
    logs: Mutex<HashMap<String, Arc<Mutex<LogState>>>>,
    /// Where the logs of ended runs are kept for a remount while the API is down.
    saved: Saved,
}

/// The `Saved` kind of the logs of ended runs.
const SAVED_KIND: &str = "logs";

impl LiveLogs {
    pub fn new(saved: Saved) -> Self {
        LiveLogs {
            logs: Mutex::new(HashMap::new()),
            saved,
        }
    }

    /// Fetches onward and, once the log is complete, keeps it for offline use. When the API cannot be reached,
    /// an ended run's log this process has nothing of is read from where an earlier mount saved it.
    fn fetch(
        &self,
        api: &dyn Vm0Api,
        run_id: &str,
        terminal: bool,
        log: &mut LogState,
    ) -> Result<(), ApiError> {
        match fetch_new(api, run_id, terminal, log) {
            Ok(()) => {
                if log.complete {
                    self.saved
                        .save(SAVED_KIND, run_id, &String::from_utf8_lossy(&log.text));
                }
                Ok(())
            }
            Err(e) if e.is_retryable() && terminal && log.text.is_empty() => {
                let text: String = self.saved.load(SAVED_KIND, run_id).ok_or(e)?;
                log.text = text.into_bytes();
                log.complete = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn state(&self, run_id: &str) -> Arc<Mutex<LogState>> {
        let mut logs = self.logs.locked();
        logs.entry(run_id.to_string()).or_default().clone()
    }

    /// The log's bytes so far, fetching onward first when they may be stale (where waiting is allowed), and
    /// whether they are all it will ever hold; marks the log as watched. A log whose run has ended but whose last
    /// entries are not fetched yet is not complete: its size may still change, so its attributes must not be
    /// cached as fixed.
    pub fn current(
        &self,
        api: &dyn Vm0Api,
        run_id: &str,
        terminal: bool,
    ) -> crate::fs::Result<(Vec<u8>, bool)> {
        let state = self.state(run_id);
        let mut log = state.locked();
        log.interest_at = Some(Instant::now());
        let stale = log.fetched_at.is_none_or(|t| t.elapsed() >= POLL_INTERVAL);
        if !log.complete && stale {
            may_wait()?;
            self.fetch(api, run_id, terminal, &mut log)?;
        }
        Ok((log.text.clone(), log.complete))
    }

    /// Bytes `offset..offset+size` of the log as it is now (reads of an open log never wait for the network).
    pub fn read(&self, run_id: &str, offset: u64, size: u32) -> Vec<u8> {
        let state = self.state(run_id);
        let mut log = state.locked();
        log.interest_at = Some(Instant::now());
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(log.text.len());
        let end = start.saturating_add(size as usize).min(log.text.len());
        log.text[start..end].to_vec()
    }

    /// Bytes of the log held now.
    pub fn len(&self, run_id: &str) -> u64 {
        let state = self.state(run_id);
        let log = state.locked();
        log.text.len() as u64
    }

    pub fn opened(&self, run_id: &str) {
        let state = self.state(run_id);
        state.locked().open_handles += 1;
    }

    pub fn closed(&self, run_id: &str) {
        let state = self.state(run_id);
        let mut log = state.locked();
        log.open_handles = log.open_handles.saturating_sub(1);
        log.interest_at = Some(Instant::now());
    }

    /// The runs whose logs someone watches, that may still grow, and that are due for a fetch.
    /// The map is let go before any log's state is looked at: a state is held across its page fetches, and
    /// waiting for one under the map would stall every other log (see the lock order on `Vm0Fs`).
    pub fn due(&self) -> Vec<String> {
        let logs: Vec<_> = {
            let logs = self.logs.locked();
            logs.iter()
                .map(|(id, state)| (id.clone(), state.clone()))
                .collect()
        };
        logs.into_iter()
            .filter(|(_, state)| state.locked().due())
            .map(|(id, _)| id)
            .collect()
    }

    /// Fetches what is new for a watched log; returns whether it grew.
    pub fn poll(&self, api: &dyn Vm0Api, run_id: &str, terminal: bool) -> Result<bool, ApiError> {
        let state = self.state(run_id);
        let mut log = state.locked();
        if log.complete {
            return Ok(false);
        }
        let before = log.text.len();
        self.fetch(api, run_id, terminal, &mut log)?;
        let grew = log.text.len() > before;
        log.quiet_polls = if grew {
            0
        } else {
            log.quiet_polls.saturating_add(1)
        };
        Ok(grew)
    }
}

/// Fetches every entry after the last one rendered. `terminal` must have been read before this call: a run that
/// was terminal then has written its last entry, so the log is complete after this fetch.
fn fetch_new(
    api: &dyn Vm0Api,
    run_id: &str,
    terminal: bool,
    log: &mut LogState,
) -> Result<(), ApiError> {
    let mut query = LogQuery {
        limit: Some(PAGE),
        since: log.last_timestamp.clone(),
        ..LogQuery::default()
    };
    loop {
        let page = api.run_logs(run_id, &query)?;
        let added = log.append(&page.data);
        if !page.pagination.has_more || page.data.is_empty() {
            break;
        }
        query.cursor = None;
        query.since = log.last_timestamp.clone();
        if added == 0 {
            // A whole page at one timestamp that was already rendered: step past it with the strict cursor
            // rather than ask the same page forever (only more than a page of entries in one millisecond can
            // come here, and those the API itself cannot page through).
            query.since = None;
            query.cursor = page.data.last().map(|e| e.timestamp.clone());
        }
    }
    log.fetched_at = Some(Instant::now());
    log.complete = terminal;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: &str, message: &str) -> LogEntry {
        LogEntry {
            timestamp: ts.into(),
            kind: "agent".into(),
            level: "info".into(),
            message: message.into(),
            metadata: None,
        }
    }

    #[test]
    fn an_open_log_is_polled_fast_while_it_grows_and_backs_off_when_quiet() {
        let mut log = LogState {
            open_handles: 1,
            ..LogState::default()
        };
        assert_eq!(log.interval(), FOLLOWED_INTERVAL);
        log.quiet_polls = QUIET_POLLS;
        assert_eq!(log.interval(), POLL_INTERVAL, "quiet for a second");
        log.quiet_polls = 0;
        log.open_handles = 0;
        log.interest_at = Some(Instant::now());
        assert_eq!(log.interval(), POLL_INTERVAL, "looked at, not followed");
        assert!(log.due(), "never fetched");
        log.fetched_at = Some(Instant::now());
        assert!(!log.due(), "just fetched");
        log.interest_at = None;
        log.fetched_at = None;
        assert!(!log.due(), "nobody watches it: idle logs cost nothing");
    }

    #[test]
    fn a_log_fetched_before_its_run_ended_is_not_complete_until_fetched_again() {
        let api = crate::api::fake::FakeApi::sample();
        let dir = tempfile::tempdir().unwrap();
        let logs = LiveLogs::new(Saved::new(dir.path()));
        let (text, complete) = logs.current(&api, "r1", false).unwrap();
        assert!(!text.is_empty() && !complete, "the run was running then");
        let (_, complete) = logs.current(&api, "r1", true).unwrap();
        assert!(
            !complete,
            "fetched less than a second ago, so not fetched again: entries written at the end may be missing"
        );
        assert!(!logs.poll(&api, "r1", true).unwrap());
        assert!(
            logs.current(&api, "r1", true).unwrap().1,
            "drained after the end"
        );
    }

    #[test]
    fn an_ended_runs_log_is_read_back_from_the_cache_when_the_api_is_down() {
        let api = crate::api::fake::FakeApi::sample();
        let dir = tempfile::tempdir().unwrap();
        let (text, complete) = LiveLogs::new(Saved::new(dir.path()))
            .current(&api, "r1", true)
            .unwrap();
        assert!(complete && !text.is_empty());
        api.offline.store(true, std::sync::atomic::Ordering::SeqCst);
        let after_remount = LiveLogs::new(Saved::new(dir.path()));
        assert_eq!(
            after_remount.current(&api, "r1", true).unwrap(),
            (text, true)
        );
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(
            LiveLogs::new(Saved::new(elsewhere.path()))
                .current(&api, "r1", true)
                .is_err(),
            "nothing saved there: the outage is reported"
        );
    }

    #[test]
    fn entries_sharing_the_last_timestamp_are_neither_lost_nor_repeated() {
        let mut log = LogState::default();
        assert_eq!(log.append(&[entry("t1", "a"), entry("t2", "b")]), 2);
        // Asked again with `since=t2`: b comes back with a new entry at the same timestamp, then a later one.
        assert_eq!(
            log.append(&[entry("t2", "b"), entry("t2", "c"), entry("t3", "d")]),
            2
        );
        assert_eq!(log.append(&[entry("t3", "d")]), 0);
        let text = String::from_utf8(log.text).unwrap();
        let messages: Vec<_> = text
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(messages, ["a", "b", "c", "d"]);
    }
}
