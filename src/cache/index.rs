//! The in-memory index of complete entries: LRU order and the running byte total.
//!
//! `lru::LruCache` (unbounded: the budget is in bytes, not entries) keeps recency; this wrapper keeps the sum
//! of the entries' sizes beside it so that eviction is a loop of `pop_lru` while over budget. The index only
//! decides; the caller renames evicted entries away on disk while still holding the index lock (cheap), and
//! deletes them after releasing it (slow).

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use lru::LruCache;

/// What the index knows about one complete entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub bytes: u64,
    /// When the entry was last marked used on disk (the metadata file's mtime).
    pub touched: SystemTime,
}

pub(crate) struct Index {
    lru: LruCache<String, Entry>,
    total: u64,
    /// Versions kept out of eviction (`vm0fs prefetch --pin`), whether cached yet or not.
    pinned: HashSet<String>,
    /// Versions kept out of eviction while staged changes of a volume read from them (see `crate::stage`),
    /// counted per holder; in memory only (the stage holds them again when it replays at the next mount).
    held: HashMap<String, usize>,
}

impl Index {
    pub(crate) fn new() -> Index {
        Index {
            lru: LruCache::unbounded(),
            total: 0,
            pinned: HashSet::new(),
            held: HashMap::new(),
        }
    }

    /// Adds (or replaces) an entry as the most recently used.
    pub(crate) fn insert(&mut self, vid: &str, entry: Entry) {
        if let Some(old) = self.lru.put(vid.to_string(), entry) {
            self.total -= old.bytes;
        }
        self.total += entry.bytes;
    }

    /// Marks `vid` used and returns it.
    pub(crate) fn get(&mut self, vid: &str) -> Option<&mut Entry> {
        self.lru.get_mut(vid)
    }

    pub(crate) fn remove(&mut self, vid: &str) -> Option<Entry> {
        let entry = self.lru.pop(vid)?;
        self.total -= entry.bytes;
        Some(entry)
    }

    /// Removes least-recently-used entries other than `keep` and the pinned ones until the total fits
    /// `max_bytes` (or nothing else can go); returns them.
    pub(crate) fn evict_over(&mut self, max_bytes: u64, keep: Option<&str>) -> Vec<String> {
        let mut excess = self.total.saturating_sub(max_bytes);
        let mut evicted = Vec::new();
        // `iter` runs from the most to the least recently used.
        for (vid, entry) in self.lru.iter().rev() {
            if excess == 0 {
                break;
            }
            if Some(vid.as_str()) == keep
                || self.pinned.contains(vid)
                || self.held.contains_key(vid)
            {
                continue;
            }
            excess = excess.saturating_sub(entry.bytes);
            evicted.push(vid.clone());
        }
        for vid in &evicted {
            self.remove(vid);
        }
        evicted
    }

    /// Holds `vid` out of eviction (`hold: true`) or gives one hold back.
    pub(crate) fn set_held(&mut self, vid: &str, hold: bool) {
        if hold {
            *self.held.entry(vid.to_string()).or_insert(0) += 1;
        } else if let Some(n) = self.held.get_mut(vid) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(vid);
            }
        }
    }

    /// Pins or unpins `vid`; says whether that changed anything.
    pub(crate) fn set_pinned(&mut self, vid: &str, pinned: bool) -> bool {
        if pinned {
            self.pinned.insert(vid.to_string())
        } else {
            self.pinned.remove(vid)
        }
    }

    /// The pinned versions, sorted.
    pub(crate) fn pinned(&self) -> Vec<String> {
        let mut all: Vec<String> = self.pinned.iter().cloned().collect();
        all.sort();
        all
    }

    /// Pinned versions held in the cache, and their bytes.
    pub(crate) fn pinned_usage(&self) -> (usize, u64) {
        self.pinned
            .iter()
            .filter_map(|vid| self.lru.peek(vid))
            .fold((0, 0), |(n, bytes), e| (n + 1, bytes + e.bytes))
    }

    pub(crate) fn usage(&self) -> (u64, usize) {
        (self.total, self.lru.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bytes: u64) -> Entry {
        Entry {
            bytes,
            touched: SystemTime::now(),
        }
    }

    #[test]
    fn evicts_least_recently_used_first_but_never_the_kept_one() {
        let mut index = Index::new();
        index.insert("a", entry(10));
        index.insert("b", entry(10));
        index.insert("c", entry(10));
        index.get("a");
        assert_eq!(index.evict_over(20, Some("c")), ["b"]);
        assert_eq!(index.usage(), (20, 2));
        index.insert("d", entry(100));
        assert_eq!(index.evict_over(20, Some("d")), ["c", "a"]);
        assert_eq!(index.usage(), (100, 1));
    }

    #[test]
    fn pinned_entries_are_never_evicted() {
        let mut index = Index::new();
        index.insert("a", entry(10));
        index.insert("b", entry(10));
        index.insert("c", entry(10));
        assert!(index.set_pinned("a", true));
        assert!(!index.set_pinned("a", true));
        assert_eq!(index.evict_over(10, Some("c")), ["b"]);
        assert_eq!(index.usage(), (20, 2));
        assert_eq!(index.pinned_usage(), (1, 10));
        assert!(index.set_pinned("a", false));
        assert_eq!(index.evict_over(10, Some("c")), ["a"]);
        assert_eq!(index.pinned(), Vec::<String>::new());
    }

    #[test]
    fn held_entries_stay_until_every_hold_is_given_back() {
        let mut index = Index::new();
        index.insert("base", entry(10));
        index.insert("other", entry(10));
        index.set_held("base", true);
        index.set_held("base", true);
        index.get("other");
        assert_eq!(index.evict_over(0, None), ["other"]);
        index.set_held("base", false);
        assert_eq!(index.evict_over(0, None), Vec::<String>::new());
        index.set_held("base", false);
        assert_eq!(index.evict_over(0, None), ["base"]);
    }
}
