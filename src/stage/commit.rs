//! The group commit: what every volume's journal and staged files hold reaches the disk together, every 5 s
//! (ext4's default `commit=5`), before every publish, and when someone asks (`fsync`/`fdatasync` of a file or a
//! directory of a volume, `vm0fs sync`), instead of one fsync per change of names and per close.
//!
//! A change is safe from a crash of vm0fs (`kill -9`, a panic) as soon as its call returns: its bytes are in the
//! kernel's page cache, which outlives the process. Only a power loss needs the disk, and ext4 promises no more
//! than this either. The journal's frames and the cut of a torn tail give a volume back as of its last commit.
//!
//! One commit is one `syncfs(2)` of the filesystem that holds the staging area: the journals, the staged files and
//! their directory entries of every volume at once, with no list of dirty files to keep. Callers that ask at the
//! same time share it (leader/follower, as a database's WAL commits): the first runs the `syncfs`, the others wait
//! for a commit that started after their change and return with it. The number of commits is shown in
//! `vm0fs status` (`journal_flushes`).

use crate::sync::Locked;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// How long a change may wait for the disk at most, unless asked for earlier.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(5);

pub struct Committer {
    /// The staging area's directory: `syncfs` flushes the filesystem it is on.
    root: File,
    /// Changes made so far (a counter, not a list).
    changes: AtomicU64,
    state: Mutex<State>,
    done: Condvar,
    commits: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Every change up to this count is on the disk.
    durable: u64,
    /// A commit is running.
    leader: bool,
    /// The last commit failed: why (every waiter of that commit gets it).
    failed: Option<(u64, String)>,
}

impl Committer {
    /// A committer for the staging area at `root`, with its thread that commits every `COMMIT_INTERVAL` while
    /// there are changes (it ends when the committer is dropped).
    pub fn start(root: &Path) -> io::Result<Arc<Committer>> {
        let committer = Arc::new(Committer {
            root: File::open(root)?,
            changes: AtomicU64::new(0),
            state: Mutex::default(),
            done: Condvar::new(),
            commits: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&committer);
        std::thread::Builder::new()
            .name("vm0fs-commit".into())
            .spawn(move || every_interval(&weak))?;
        Ok(committer)
    }

    /// Notes a change (a journal record, a closed file): the next commit covers it.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Commits every change made before this call and returns when they are on the disk.
    pub fn commit(&self) -> io::Result<()> {
        // A change may be in the page cache without having been noted (bytes the kernel wrote in passthrough to a
        // file still open): count this call as one, so that a commit runs.
        let target = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        self.commit_up_to(target)
    }

    /// Commits if anything changed since the last commit.
    fn commit_pending(&self) -> io::Result<()> {
        let target = self.changes.load(Ordering::Acquire);
        self.commit_up_to(target)
    }

    fn commit_up_to(&self, target: u64) -> io::Result<()> {
        let mut st = self.state.locked();
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if let Some((covered, why)) = &st.failed
                && *covered >= target
            {
                return Err(io::Error::other(why.clone()));
            }
            if st.leader {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.leader = true;
            let covers = self.changes.load(Ordering::Acquire);
            drop(st);
            let synced = self.syncfs();
            st = self.state.locked();
            st.leader = false;
            self.commits.fetch_add(1, Ordering::Relaxed);
            match synced {
                Ok(()) => st.durable = st.durable.max(covers),
                Err(e) => {
                    tracing::error!(error = %e, "the staged changes could not be flushed to disk");
                    st.failed = Some((covers, format!("flushing the staging area to disk: {e}")));
                }
            }
            self.done.notify_all();
        }
    }

    fn syncfs(&self) -> io::Result<()> {
        // SAFETY: `syncfs` only reads the descriptor, which `self.root` keeps open.
        match unsafe { libc::syncfs(self.root.as_raw_fd()) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Commits run so far (`vm0fs status`).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

fn every_interval(committer: &Weak<Committer>) {
    loop {
        std::thread::sleep(COMMIT_INTERVAL);
        let Some(committer) = committer.upgrade() else {
            return;
        };
        if let Err(e) = committer.commit_pending() {
            tracing::warn!(error = %e, "the periodic commit of the staging area failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_callers_share_commits_and_each_returns_after_one_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let committer = Committer::start(dir.path()).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = committer.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        c.changed();
                        c.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let st = committer.state.lock().unwrap();
        assert!(st.durable >= 160, "every change is covered: {}", st.durable);
        assert!(committer.commits() >= 1);
        assert!(
            committer.commits() <= 160,
            "never more commits than callers: {}",
            committer.commits()
        );
    }

    #[test]
    fn nothing_to_commit_runs_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        let committer = Committer::start(dir.path()).unwrap();
        committer.commit_pending().unwrap();
        assert_eq!(committer.commits(), 0);
        committer.changed();
        committer.commit_pending().unwrap();
        assert_eq!(committer.commits(), 1);
    }
}
