//! The staged-bytes budget of a mount (`--max-staged-size`): one object that every volume's stage shares, so that
//! no code does the arithmetic by hand.
//!
//! A reservation is one atomic step (`fetch_update`): two writers racing for the last bytes cannot both pass the
//! limit, as a check followed by an add would let them. Bytes already on disk when a mount starts (a replayed
//! journal's staged files) are counted whatever the limit (`charge`), so a smaller limit refuses new writes but
//! never hides what is staged. A release never goes below zero.

use std::sync::atomic::{AtomicU64, Ordering};

/// The bytes of staged files, and the most there may be.
#[derive(Debug)]
pub struct Space {
    used: AtomicU64,
    limit: u64,
}

/// A reservation refused: the bytes staged when it was tried, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    pub used: u64,
    pub limit: u64,
}

impl Space {
    pub fn new(limit: u64) -> Space {
        Space {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Counts `bytes` more, or refuses when that would pass the limit.
    pub fn reserve(&self, bytes: u64) -> Result<(), Full> {
        if bytes == 0 {
            return Ok(());
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .map(drop)
            .map_err(|used| Full {
                used,
                limit: self.limit,
            })
    }

    /// Counts `bytes` already staged (found at a replay), whatever the limit.
    pub fn charge(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_add(bytes))
            });
    }

    /// Whether writes may bypass `reserve` (FUSE passthrough, counted with `charge` when the file is closed): only
    /// while at most half the limit is used, so that the bound is checked at every write as it comes near.
    pub fn may_bypass(&self) -> bool {
        self.used.load(Ordering::Acquire) <= self.limit / 2
    }

    /// Gives back `bytes` that are staged no more.
    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    #[cfg(test)]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};
    use std::thread;

    use super::*;

    /// Eight threads reserve odd-sized pieces at once until each is refused: what they were granted together
    /// never passes the limit by one byte, and the budget counts exactly that.
    #[test]
    fn eight_threads_racing_past_the_limit_never_exceed_it() {
        for round in 0..200u64 {
            let limit = 10_000 + round;
            let space = Arc::new(Space::new(limit));
            let start = Arc::new(Barrier::new(8));
            let threads: Vec<_> = (0..8u64)
                .map(|t| {
                    let (space, start) = (space.clone(), start.clone());
                    thread::spawn(move || {
                        let piece = 13 + t;
                        let mut granted = 0;
                        start.wait();
                        while space.reserve(piece).is_ok() {
                            granted += piece;
                        }
                        granted
                    })
                })
                .collect();
            let granted: u64 = threads
                .into_iter()
                .map(|t| t.join().expect("a reserving thread panicked"))
                .sum();
            assert!(granted <= limit, "granted {granted} of {limit}");
            assert_eq!(space.used(), granted);
            assert!(
                limit - granted < 13 + 7,
                "every thread stopped only when full"
            );
        }
    }

    #[test]
    fn a_release_gives_back_and_never_goes_below_zero_and_a_charge_passes_the_limit() {
        let space = Space::new(100);
        space.reserve(60).unwrap();
        assert_eq!(
            space.reserve(41),
            Err(Full {
                used: 60,
                limit: 100
            })
        );
        space.release(20);
        space.reserve(60).unwrap();
        space.release(1_000);
        assert_eq!(space.used(), 0);
        space.charge(500);
        assert_eq!(space.used(), 500);
        assert!(space.reserve(1).is_err());
        assert!(space.reserve(0).is_ok(), "nothing more is always allowed");
    }
}
