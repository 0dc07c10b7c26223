//! Single-flight: one download per version id at a time, however many threads ask for it; and, while it runs,
//! which of its entries are already complete.
//!
//! A map from version id to a `Flight` (its state and a condvar) is locked only to join or leave a flight, never
//! while downloading, so different versions download in parallel. The first caller leads: it gets a `Leader`
//! guard (owned, so that it can be handed to a background thread), does the work, and `complete`s the flight,
//! which wakes every follower with a clone of the same result and removes the flight from the map, so the next
//! call after a failure starts afresh. If the leader unwinds without completing, the guard's `Drop` completes the
//! flight with `Abandoned` so that followers never wait forever.
//!
//! The partial record. While it runs, a flight knows the staging tree of its current attempt and the one file
//! being written into it (the extractor reports both through `Partial`). The extractor writes each file at its
//! final name and reports it complete only once all its bytes are written and its mode and time set; everything
//! else appears at its name in one step (`mkdir`, `symlink`, or a `rename` over an earlier entry of the same
//! name). So an entry that exists in the staging tree, reached through real directories only, and that is not
//! the file being written, is complete: a follower waiting for one path (`Follower::entry`) is answered with its
//! staging path as soon as that holds, or when the flight ends (the final tree, or the error). Only the paths
//! followers wait for are recorded, so a record costs nothing per entry extracted; the extractor wakes the
//! waiters only when it completes one of those paths, or when a new attempt starts.
//!
//! Interest. Every caller waiting for a flight holds a `Follower` (the leader's own caller too), counted in the
//! flight's state while it lives. A follower whose caller has given up (`caller::gave_up`, polled every
//! `caller::POLL`) leaves with `Interrupted`; when the last one has left and none was served an entry early
//! (`Partial::abandoned`; an entry served means the archive is in use, so it is completed and cached), the
//! extractor stops the download (its staging is removed before the flight ends). A caller that joins just as it
//! stops gets `Unwanted` and starts a new flight (`ArchiveCache::tree`).

use crate::sync::Locked;
use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{CacheError, EntryPath};
use crate::caller;

type Outcome = Result<PathBuf, CacheError>;

struct Flight {
    /// The archive downloading as messages name it (`volumes/<name>@<8 hex>`).
    label: String,
    state: Mutex<State>,
    /// Signalled when the flight ends, when an entry someone waits for is complete, and when an attempt starts.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    result: Option<Outcome>,
    /// The staging tree of the attempt in progress.
    tree: Option<PathBuf>,
    /// The file being written into it (relative to it): present, but not complete yet.
    writing: Option<PathBuf>,
    /// The relative paths followers wait for, with how many wait for each.
    wanted: HashMap<PathBuf, usize>,
    /// The followers alive: the callers still waiting for the flight.
    followers: usize,
    /// A follower was served an entry early: the archive is in use, so it is downloaded to the end (and cached)
    /// even when nobody waits any more.
    served: bool,
}

impl State {
    /// The staging path of `rel` if it is complete in the current attempt.
    fn ready(&self, rel: &Path) -> Option<PathBuf> {
        let tree = self.tree.as_ref()?;
        if self.writing.as_deref() == Some(rel) {
            return None;
        }
        existing_entry(tree, rel)
    }

    fn want(&mut self, rel: &Path) {
        *self.wanted.entry(rel.to_path_buf()).or_default() += 1;
    }

    fn unwant(&mut self, rel: &Path) {
        if let Some(count) = self.wanted.get_mut(rel) {
            *count -= 1;
            if *count == 0 {
                self.wanted.remove(rel);
            }
        }
    }
}

/// `tree/rel` if something is there, reached through real directories only: the same no-follow walk as the
/// extractor's, so that no symlink planted by the archive can lead a reader outside the tree.
fn existing_entry(tree: &Path, rel: &Path) -> Option<PathBuf> {
    let mut path = tree.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(part) = parts.next() {
        let Component::Normal(name) = part else {
            return None;
        };
        path.push(name);
        let meta = fs::symlink_metadata(&path).ok()?;
        if parts.peek().is_some() && !meta.is_dir() {
            return None;
        }
    }
    Some(path)
}

impl Flight {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Waits for a change, or at most `caller::POLL`, so that the caller can be asked whether it still waits.
    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(state, caller::POLL) {
            Ok((state, _)) => state,
            Err(e) => e.into_inner().0,
        }
    }

    fn interrupted(&self) -> CacheError {
        CacheError::Interrupted {
            archive: self.label.clone(),
        }
    }
}

type Map = Arc<Mutex<HashMap<String, Arc<Flight>>>>;

/// The flights in progress.
#[derive(Default)]
pub(crate) struct Flights {
    map: Map,
}

/// What joining a flight gives: the lead, or a place among the followers of the one in progress.
pub(crate) enum Joined {
    Lead(Leader),
    Follow(Follower),
}

impl Flights {
    /// Leads the flight for `key` (named `label` in messages) if none is in progress, else follows the one in
    /// progress.
    pub(crate) fn join(&self, key: &str, label: &str) -> Joined {
        let mut map = self.map.locked();
        if let Some(flight) = map.get(key) {
            return Joined::Follow(Follower::new(flight.clone()));
        }
        let flight = Arc::new(Flight {
            label: label.to_string(),
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        map.insert(key.to_string(), flight.clone());
        Joined::Lead(Leader {
            map: self.map.clone(),
            key: key.to_string(),
            flight,
            completed: false,
        })
    }
}

/// A caller waiting on a flight; the flight is wanted while one lives.
pub(crate) struct Follower {
    flight: Arc<Flight>,
}

impl Follower {
    fn new(flight: Arc<Flight>) -> Follower {
        flight.lock().followers += 1;
        Follower { flight }
    }

    /// Waits for the end of the flight: its result; or `Interrupted` as soon as the caller gives up.
    pub(crate) fn result(self) -> Outcome {
        let mut state = self.flight.lock();
        loop {
            if let Some(result) = state.result.as_ref() {
                return result.clone();
            }
            if caller::gave_up() {
                return Err(self.flight.interrupted());
            }
            state = self.flight.wait(state);
        }
    }

    /// Waits until the entry `rel` (a relative path of plain names) is complete in the staging tree (its early
    /// path) or the flight ends (its path in the final tree, or the error). A name that is not in the archive is
    /// only known to be absent at the end, so it waits for the end.
    pub(crate) fn entry(self, rel: &Path) -> Result<EntryPath, CacheError> {
        let mut state = self.flight.lock();
        let mut waiting = false;
        let found = loop {
            if let Some(result) = state.result.as_ref() {
                break result.clone().map(|root| EntryPath {
                    path: root.join(rel),
                    early: false,
                });
            }
            if let Some(path) = state.ready(rel) {
                state.served = true;
                break Ok(EntryPath { path, early: true });
            }
            if caller::gave_up() {
                break Err(self.flight.interrupted());
            }
            if !waiting {
                state.want(rel);
                waiting = true;
            }
            state = self.flight.wait(state);
        };
        if waiting {
            state.unwant(rel);
        }
        found
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.flight.lock().followers -= 1;
    }
}

/// How the extractor reports to a flight's partial record (see the module doc). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Partial {
    flight: Arc<Flight>,
}

impl Partial {
    /// A new attempt extracts into the empty `tree`; nothing of an earlier attempt counts any more.
    pub(crate) fn begin(&self, tree: PathBuf) {
        let mut state = self.flight.lock();
        state.tree = Some(tree);
        state.writing = None;
        self.flight.changed.notify_all();
    }

    /// How many callers wait for the flight.
    pub(crate) fn waiting(&self) -> usize {
        self.flight.lock().followers
    }

    /// Whether every caller gave up before any was served: the download should stop.
    pub(crate) fn abandoned(&self) -> bool {
        let state = self.flight.lock();
        state.followers == 0 && !state.served
    }

    /// The file `rel` is about to be written: until `made`, its name shows an incomplete file.
    pub(crate) fn writing(&self, rel: PathBuf) {
        self.flight.lock().writing = Some(rel);
    }

    /// `rel` is complete: the file being written is closed with its mode and time, or a directory or a symlink
    /// was made.
    pub(crate) fn made(&self, rel: &Path) {
        let mut state = self.flight.lock();
        if state.writing.as_deref() == Some(rel) {
            state.writing = None;
        }
        if state.wanted.contains_key(rel) {
            self.flight.changed.notify_all();
        }
    }
}

/// The right (and duty) to produce the result of one flight.
pub(crate) struct Leader {
    map: Map,
    key: String,
    flight: Arc<Flight>,
    completed: bool,
}

impl Leader {
    /// The partial record for the extractor to report to.
    pub(crate) fn partial(&self) -> Partial {
        Partial {
            flight: self.flight.clone(),
        }
    }

    /// A follower of this very flight, for a caller that hands the lead to another thread and waits as well.
    pub(crate) fn follower(&self) -> Follower {
        Follower::new(self.flight.clone())
    }

    /// Publishes the result to every follower and ends the flight. Returns the result for the leader itself.
    pub(crate) fn complete(mut self, result: Outcome) -> Outcome {
        self.publish(result.clone());
        result
    }

    fn publish(&mut self, result: Outcome) {
        self.completed = true;
        // Leave the map first: a caller arriving from now on starts a new flight (and finds the cache entry).
        self.map.locked().remove(&self.key);
        let mut state = self.flight.lock();
        state.result = Some(result);
        state.tree = None;
        state.writing = None;
        self.flight.changed.notify_all();
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.completed {
            let archive = self.flight.label.clone();
            self.publish(Err(CacheError::Abandoned { archive }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn followers_get_the_leaders_result_and_a_panicking_leader_releases_them() {
        let flights = Flights::default();
        let leads = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| match flights.join("k", "volumes/k@0000000k") {
                    Joined::Lead(leader) => {
                        leads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        let _ = leader.complete(Ok(PathBuf::from("/x")));
                    }
                    Joined::Follow(f) => assert_eq!(f.result().unwrap(), PathBuf::from("/x")),
                });
            }
        });
        assert!(leads.load(Ordering::SeqCst) >= 1);

        let Joined::Lead(leader) = flights.join("p", "volumes/p@0000000p") else {
            panic!("no flight should be in progress");
        };
        std::thread::scope(|s| {
            let follower = s.spawn(|| match flights.join("p", "volumes/p@0000000p") {
                Joined::Follow(f) => f.result(),
                Joined::Lead(_) => Ok(PathBuf::new()),
            });
            std::thread::sleep(Duration::from_millis(50));
            drop(leader);
            assert!(matches!(
                follower.join().unwrap(),
                Err(CacheError::Abandoned { archive }) if archive == "volumes/p@0000000p"
            ));
        });
    }

    /// An entry is served once it exists and is not the file being written; a path through a symlink never is.
    #[test]
    fn an_entry_is_ready_when_present_and_not_being_written() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("d")).unwrap();
        fs::write(tree.join("d/f"), b"x").unwrap();
        std::os::unix::fs::symlink("d", tree.join("link")).unwrap();
        let mut state = State {
            tree: Some(tree.clone()),
            ..State::default()
        };
        assert_eq!(state.ready(Path::new("d/f")), Some(tree.join("d/f")));
        assert_eq!(state.ready(Path::new("link")), Some(tree.join("link")));
        assert_eq!(state.ready(Path::new("link/f")), None);
        assert_eq!(state.ready(Path::new("d/g")), None);
        assert_eq!(state.ready(Path::new("d/f/..")), None);
        state.writing = Some(PathBuf::from("d/f"));
        assert_eq!(state.ready(Path::new("d/f")), None);
        assert_eq!(state.ready(Path::new("d")), Some(tree.join("d")));
    }
}
