//! Small time-to-live caches for API objects.
//!
//! Metadata from the API (lists, run details) is fetched on demand and kept for a TTL chosen by the caller, so
//! `ls -l` of a directory costs one listing rather than one request per entry. A value that can no longer change
//! (a terminal run) is kept with `Ttl::Forever`. Fetches happen outside the lock, so a slow request never blocks
//! readers of other keys; two threads that miss the same key at once may both fetch, which is harmless.

use crate::sync::Locked;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub enum Ttl {
    For(Duration),
    Forever,
}

struct Slot<V> {
    value: Arc<V>,
    fetched: Instant,
    ttl: Ttl,
}

impl<V> Slot<V> {
    fn is_fresh(&self) -> bool {
        match self.ttl {
            Ttl::Forever => true,
            Ttl::For(ttl) => self.fetched.elapsed() < ttl,
        }
    }
}

/// A map of TTL-bounded values.
pub struct TtlMap<K, V> {
    slots: Mutex<HashMap<K, Slot<V>>>,
}

impl<K: Eq + Hash + Clone, V> TtlMap<K, V> {
    pub fn new() -> Self {
        TtlMap {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The fresh value of `key`, or the result of `fetch`, kept for the TTL that `ttl_of` gives it.
    pub fn get_or_fetch<E>(
        &self,
        key: &K,
        fetch: impl FnOnce() -> Result<V, E>,
        ttl_of: impl FnOnce(&V) -> Ttl,
    ) -> Result<Arc<V>, E> {
        if let Some(value) = self.fresh(key) {
            return Ok(value);
        }
        let value = fetch()?;
        let ttl = ttl_of(&value);
        Ok(self.put(key.clone(), value, ttl))
    }

    /// The value of `key` if it is still fresh.
    pub fn fresh(&self, key: &K) -> Option<Arc<V>> {
        let slots = self.slots.locked();
        slots
            .get(key)
            .filter(|s| s.is_fresh())
            .map(|s| s.value.clone())
    }

    /// The last value of `key`, however old: for answers where a stale value is still right.
    pub fn last(&self, key: &K) -> Option<Arc<V>> {
        let slots = self.slots.locked();
        slots.get(key).map(|s| s.value.clone())
    }

    /// Makes the value of `key` fresh again for `ttl`, as if just fetched (a stale value served while the API is
    /// unreachable, so that the next lookups do not each wait for the API again).
    pub fn refresh(&self, key: &K, ttl: Ttl) {
        let mut slots = self.slots.locked();
        if let Some(slot) = slots.get_mut(key) {
            slot.fetched = Instant::now();
            slot.ttl = ttl;
        }
    }

    /// Stores a value fetched elsewhere (a create or cancel answer carries the new detail).
    pub fn put(&self, key: K, value: V, ttl: Ttl) -> Arc<V> {
        let value = Arc::new(value);
        let mut slots = self.slots.locked();
        if slots.len() > 100_000 {
            slots.retain(|_, s| s.is_fresh());
        }
        slots.insert(
            key,
            Slot {
                value: value.clone(),
                fetched: Instant::now(),
                ttl,
            },
        );
        value
    }

    /// Forgets `key`, so the next read fetches it again.
    pub fn invalidate(&self, key: &K) {
        let mut slots = self.slots.locked();
        slots.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_values_are_not_fetched_again_and_stale_ones_are() {
        let map: TtlMap<u8, u32> = TtlMap::new();
        let mut calls = 0;
        let v = map.get_or_fetch::<()>(
            &1,
            || {
                calls += 1;
                Ok(7)
            },
            |_| Ttl::Forever,
        );
        assert_eq!(*v.unwrap(), 7);
        let v = map.get_or_fetch::<()>(
            &1,
            || {
                calls += 1;
                Ok(8)
            },
            |_| Ttl::Forever,
        );
        assert_eq!((*v.unwrap(), calls), (7, 1));
        map.put(2, 1, Ttl::For(Duration::ZERO));
        let v = map.get_or_fetch::<()>(&2, || Ok(2), |_| Ttl::Forever);
        assert_eq!(*v.unwrap(), 2);
    }

    #[test]
    fn errors_are_not_cached() {
        let map: TtlMap<u8, u32> = TtlMap::new();
        assert!(
            map.get_or_fetch(&1, || Err("down"), |_| Ttl::Forever)
                .is_err()
        );
        assert_eq!(
            *map.get_or_fetch::<()>(&1, || Ok(3), |_| Ttl::Forever)
                .unwrap(),
            3
        );
    }
}
