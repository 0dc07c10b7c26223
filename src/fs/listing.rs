//! An open directory's entries: a snapshot taken at `opendir`, or one that grows while its source is still read,
//! or one taken at the first `readdir`.
//!
//! Offsets must stay valid however the API changes, so a listing never changes once an entry is in it; it may
//! only grow at its end. A listing of `runs/` that needs every page of the API (the first one) grows page by page
//! from a thread of its own, and `readdir` waits only for the entries it is asked for, so `ls -f` and `find` show
//! the first runs while the last pages are still on their way. The entries hold references on their inode
//! numbers (see `inodes`), given back at `close`; entries that arrive after the close are handed back to the
//! caller to release at once.
//!
//! A directory whose listing can never change (inside a storage version) stays in the kernel's cache across opens,
//! so most of its opens are never read: its listing is deferred to the first `readdir` (`deferred`, then `fill`),
//! and an `ls -lR` over a tree already walked costs an open and a close per directory, not a listing.

use crate::sync::Locked;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::DirEntry;
use super::error::Result;
use super::inodes::Node;

/// The most entries one `readdir` answer is given: more than a reply buffer holds, few enough that a listing of
/// many thousands is not copied whole at each call.
const MOST_PER_READ: usize = 1024;

pub struct Listing {
    state: Mutex<State>,
    grown: Condvar,
}

struct State {
    entries: Vec<DirEntry>,
    /// How the listing ended; `None` while it still grows.
    end: Option<Result<()>>,
    closed: bool,
    /// The directory whose entries are still to be listed, for a deferred listing not read yet.
    deferred: Option<Node>,
}

impl Listing {
    /// A listing that is whole already.
    pub fn complete(entries: Vec<DirEntry>) -> Listing {
        Listing::with(entries, Some(Ok(())))
    }

    /// A listing whose further entries come with `extend`, until `finish`.
    pub fn growing(entries: Vec<DirEntry>) -> Listing {
        Listing::with(entries, None)
    }

    /// A listing of `dir` that holds `entries` (the dots) until `fill` adds the rest.
    pub fn deferred(dir: Node, entries: Vec<DirEntry>) -> Listing {
        let listing = Listing::with(entries, None);
        listing.lock().deferred = Some(dir);
        listing
    }

    fn with(entries: Vec<DirEntry>, end: Option<Result<()>>) -> Listing {
        Listing {
            state: Mutex::new(State {
                entries,
                end,
                closed: false,
                deferred: None,
            }),
            grown: Condvar::new(),
        }
    }

    /// The directory still to be listed, if this is a deferred listing not filled yet.
    pub fn unlisted(&self) -> Option<Node> {
        self.lock().deferred.clone()
    }

    /// Completes a deferred listing with `more`. Entries it does not take (it was filled meanwhile, or closed)
    /// are handed back, for the caller to release.
    pub fn fill(&self, more: Vec<DirEntry>) -> Vec<DirEntry> {
        let mut state = self.lock();
        if state.closed || state.deferred.is_none() {
            return more;
        }
        state.deferred = None;
        state.entries.extend(more);
        state.end = Some(Ok(()));
        self.grown.notify_all();
        Vec::new()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Appends entries; once the listing is closed they are handed back, for the caller to release.
    pub fn extend(&self, more: Vec<DirEntry>) -> Vec<DirEntry> {
        let mut state = self.lock();
        if state.closed {
            return more;
        }
        state.entries.extend(more);
        self.grown.notify_all();
        Vec::new()
    }

    /// The listing will not grow any more; an error is what a `readdir` past its last entry gets.
    pub fn finish(&self, result: Result<()>) {
        let mut state = self.lock();
        state.end = Some(result);
        self.grown.notify_all();
    }

    /// The entries from `offset` on (each with the offset of the next), waiting until there is one or the listing
    /// has ended; empty at the end.
    pub fn from(&self, offset: u64) -> Result<Vec<(u64, DirEntry)>> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut state = self.lock();
        while state.entries.len() <= start && state.end.is_none() {
            state = self.grown.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.entries.len() <= start
            && let Some(Err(e)) = &state.end
        {
            return Err(e.clone());
        }
        Ok(state
            .entries
            .iter()
            .enumerate()
            .skip(start)
            .take(MOST_PER_READ)
            .map(|(i, e)| (i as u64 + 1, e.clone()))
            .collect())
    }

    /// Closes the listing: its entries, to be released, and no more will be taken.
    pub fn close(&self) -> Vec<DirEntry> {
        let mut state = self.lock();
        state.closed = true;
        std::mem::take(&mut state.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FileKind;
    use std::sync::Arc;

    fn entry(n: u64) -> DirEntry {
        DirEntry {
            ino: n,
            kind: FileKind::Directory,
            name: n.to_string().into(),
            attr: None,
        }
    }

    #[test]
    fn a_reader_gets_entries_as_they_come_and_the_end() {
        let listing = Arc::new(Listing::growing(vec![entry(1)]));
        assert_eq!(listing.from(0).unwrap().len(), 1);
        let filler = {
            let listing = listing.clone();
            std::thread::spawn(move || {
                assert!(listing.extend(vec![entry(2), entry(3)]).is_empty());
                listing.finish(Ok(()));
            })
        };
        // Waits for the filler: offset 1 is not there until it extends.
        let next = listing.from(1).unwrap();
        assert_eq!(next.first().map(|(_, e)| e.ino), Some(2));
        filler.join().unwrap();
        assert_eq!(listing.from(3).unwrap().len(), 0);
        assert_eq!(listing.close().len(), 3);
        assert_eq!(
            listing.extend(vec![entry(4)]).len(),
            1,
            "handed back after close"
        );
    }

    #[test]
    fn a_deferred_listing_is_filled_once() {
        let listing = Listing::deferred(crate::fs::inodes::Node::Root, vec![entry(1)]);
        assert_eq!(listing.unlisted(), Some(crate::fs::inodes::Node::Root));
        assert!(listing.fill(vec![entry(2)]).is_empty());
        assert_eq!(listing.unlisted(), None);
        assert_eq!(
            listing.fill(vec![entry(3)]).len(),
            1,
            "a second fill is handed back"
        );
        assert_eq!(listing.from(0).unwrap().len(), 2);
        assert_eq!(listing.close().len(), 2);
    }

    #[test]
    fn an_error_reaches_the_reader_past_the_last_entry() {
        let listing = Listing::growing(vec![entry(1)]);
        listing.finish(Err(crate::fs::Error::new(libc::EIO, "page 2 failed")));
        assert_eq!(listing.from(0).unwrap().len(), 1);
        assert_eq!(listing.from(1).unwrap_err().errno, libc::EIO);
    }
}
