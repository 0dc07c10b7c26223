//! How many requests of each kind the kernel sent, and how long each kind took, so the request mix of a workload
//! can be read off a live mount (`.vm0fs/status`, `vm0fs status --json`) instead of guessed.
//!
//! A FUSE filesystem is slow mostly through the number of round trips, not their cost, so the first thing to know
//! about a slow `find` or `ls -l` is which opcodes it sends and how many. Each handler counts its request on entry
//! and adds the time from entry to reply when it replies, split by where it was answered: on the event-loop thread
//! that read it ("inline") or on the worker pool ("pooled", its queueing included). Plain relaxed atomics, one
//! slot per opcode: a request costs two additions, never a lock. BATCH_FORGET counts one `forget` per inode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::fs::{RequestCounts, RequestStats};

/// The opcodes vm0fs answers.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Fsync,
    Fsyncdir,
    Release,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Lseek,
    Ioctl,
    Statfs,
}

const OPS: usize = Op::Statfs as usize + 1;

const NAMES: [&str; OPS] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "fsync",
    "fsyncdir",
    "release",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "lseek",
    "ioctl",
    "statfs",
];

#[derive(Default)]
struct Slot {
    inline: AtomicU64,
    inline_ns: AtomicU64,
    pooled: AtomicU64,
    pooled_ns: AtomicU64,
}

/// The counters of one mount, shared by the adapter (which counts) and the core (which shows them).
#[derive(Default)]
pub struct Counters {
    slots: [Slot; OPS],
}

/// A request being answered: started when the handler was entered, counted when it is dropped (after the reply).
/// It is moved with the request to a worker when the request is handed off.
pub struct Timing {
    counters: Arc<Counters>,
    op: Op,
    started: Instant,
    pooled: bool,
}

impl Counters {
    /// Starts timing a request of `op`, answered inline unless `pooled` is called on it.
    pub fn start(self: &Arc<Self>, op: Op) -> Timing {
        Timing {
            counters: self.clone(),
            op,
            started: Instant::now(),
            pooled: false,
        }
    }
}

impl Timing {
    /// The request goes to the worker pool; its time runs until the worker replies.
    pub fn pooled(mut self) -> Self {
        self.pooled = true;
        self
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        record(
            &self.counters.slots[self.op as usize],
            self.started,
            self.pooled,
        );
    }
}

fn record(slot: &Slot, started: Instant, pooled: bool) {
    let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let (count, total) = if pooled {
        (&slot.pooled, &slot.pooled_ns)
    } else {
        (&slot.inline, &slot.inline_ns)
    };
    count.fetch_add(1, Ordering::Relaxed);
    total.fetch_add(ns, Ordering::Relaxed);
}

impl RequestCounts for Counters {
    fn snapshot(&self) -> BTreeMap<String, RequestStats> {
        NAMES
            .iter()
            .zip(&self.slots)
            .filter_map(|(name, slot)| {
                let inline = slot.inline.load(Ordering::Relaxed);
                let pooled = slot.pooled.load(Ordering::Relaxed);
                let stats = RequestStats {
                    count: inline + pooled,
                    inline,
                    inline_us: slot.inline_ns.load(Ordering::Relaxed) / 1000,
                    pooled,
                    pooled_us: slot.pooled_ns.load(Ordering::Relaxed) / 1000,
                };
                (stats.count > 0).then(|| (name.to_string(), stats))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_counted_once_on_the_side_that_answered_it() {
        let counters = Arc::new(Counters::default());
        drop(counters.start(Op::Lookup));
        drop(counters.start(Op::Lookup));
        drop(counters.start(Op::Getxattr).pooled());
        let seen = counters.snapshot();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!((seen["lookup"].count, seen["lookup"].inline), (2, 2));
        assert_eq!((seen["getxattr"].count, seen["getxattr"].pooled), (1, 1));
        assert_eq!(NAMES[Op::Create as usize], "create");
        assert_eq!(NAMES[Op::Readdirplus as usize], "readdirplus");
    }
}
