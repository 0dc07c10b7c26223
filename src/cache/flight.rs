//! Single-flight: one download per version id at a time, however many threads ask for it.
//!
//! A map from version id to a `Flight` (a result slot and a condvar) is locked only to join or leave a flight,
//! never while downloading, so different versions download in parallel. The first caller leads: it gets a
//! `Leader` guard, does the work, and `complete`s the flight, which wakes every follower with a clone of the
//! same result and removes the flight from the map, so the next call after a failure starts afresh. If the
//! leader unwinds without completing, the guard's `Drop` completes the flight with `Abandoned` so that followers
//! never wait forever.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::CacheError;

type Outcome = Result<PathBuf, CacheError>;

#[derive(Default)]
struct Flight {
    result: Mutex<Option<Outcome>>,
    done: Condvar,
}

impl Flight {
    fn wait(&self) -> Outcome {
        let mut slot = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = slot.as_ref() {
                return result.clone();
            }
            slot = self.done.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The flights in progress.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

/// What joining a flight gives: the lead, or the leader's result after waiting for it.
pub(crate) enum Joined<'a> {
    Lead(Leader<'a>),
    Followed(Outcome),
}

impl Flights {
    /// Leads the flight for `key` if none is in progress, else waits for the one in progress.
    pub(crate) fn join(&self, key: &str) -> Joined<'_> {
        let flight = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(key) {
                Some(flight) => flight.clone(),
                None => {
                    let flight = Arc::new(Flight::default());
                    map.insert(key.to_string(), flight.clone());
                    return Joined::Lead(Leader {
                        flights: self,
                        key: key.to_string(),
                        flight,
                        completed: false,
                    });
                }
            }
        };
        Joined::Followed(flight.wait())
    }
}

/// The right (and duty) to produce the result of one flight.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    completed: bool,
}

impl Leader<'_> {
    /// Publishes the result to every follower and ends the flight. Returns the result for the leader itself.
    pub(crate) fn complete(mut self, result: Outcome) -> Outcome {
        self.publish(result.clone());
        result
    }

    fn publish(&mut self, result: Outcome) {
        self.completed = true;
        // Leave the map first: a caller arriving from now on starts a new flight (and finds the cache entry).
        self.flights
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        *self.flight.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        self.flight.done.notify_all();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.completed {
            let version = self.key.clone();
            self.publish(Err(CacheError::Abandoned { version }));
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
                s.spawn(|| match flights.join("k") {
                    Joined::Lead(leader) => {
                        leads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        let _ = leader.complete(Ok(PathBuf::from("/x")));
                    }
                    Joined::Followed(result) => assert_eq!(result.unwrap(), PathBuf::from("/x")),
                });
            }
        });
        assert!(leads.load(Ordering::SeqCst) >= 1);

        let Joined::Lead(leader) = flights.join("p") else {
            panic!("no flight should be in progress");
        };
        std::thread::scope(|s| {
            let follower = s.spawn(|| match flights.join("p") {
                Joined::Followed(result) => result,
                Joined::Lead(_) => Ok(PathBuf::new()),
            });
            std::thread::sleep(Duration::from_millis(50));
            drop(leader);
            assert!(matches!(
                follower.join().unwrap(),
                Err(CacheError::Abandoned { .. })
            ));
        });
    }
}
