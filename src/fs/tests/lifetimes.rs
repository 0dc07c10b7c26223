//! How long inode numbers live: a lookup holds one until FORGET, a listing until it is closed, and a log that
//! grows is told to the kernel only while its number is held.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex};

use super::harness;
use crate::fs::{Invalidator, ROOT_INO};

#[test]
fn an_inode_is_kept_until_the_kernel_forgets_every_lookup() {
    let h = harness();
    let agents = h.path("agents").unwrap();
    assert_eq!(
        h.path("agents"),
        Ok(agents),
        "the same node, the same number"
    );
    h.fs.forget(agents, 1);
    assert_eq!(h.fs.getattr(agents).unwrap().ino, agents, "one lookup left");
    h.fs.forget(agents, 1);
    assert_eq!(h.fs.getattr(agents).unwrap_err().errno, libc::ESTALE);
    assert_eq!(h.fs.opendir(agents).unwrap_err().errno, libc::ESTALE);
    let again = h.path("agents").unwrap();
    assert!(again > agents, "a new number, never a reused one");
    assert_eq!(h.names("agents"), ["coder"]);
}

#[test]
fn forgetting_everything_leaves_only_the_root() {
    let h = harness();
    let before = h.fs.inodes.len();
    let coder = h.path("agents/coder/agent.json").unwrap();
    let agents = h.path("agents").unwrap();
    let agent = h.fs.lookup(agents, OsStr::new("coder")).unwrap().ino;
    assert_eq!(h.fs.inodes.len(), before + 3);
    // agents: looked up twice; agents/coder: twice; agent.json once.
    for (ino, lookups) in [(agents, 2), (agent, 2), (coder, 1), (ROOT_INO, 5)] {
        h.fs.forget(ino, lookups);
    }
    assert_eq!(
        h.fs.inodes.len(),
        1,
        "only the root, which is never forgotten"
    );
    assert_eq!(h.fs.getattr(ROOT_INO).unwrap().ino, ROOT_INO);
    assert_eq!(h.names("/"), ["agents", "artifacts", "runs", "volumes"]);
}

#[test]
fn a_listing_holds_its_entries_until_it_is_closed() {
    let h = harness();
    let runs = h.path("runs").unwrap();
    let baseline = h.fs.inodes.len();
    let r1 = h.listed_ino(runs, "r1");
    assert_eq!(
        h.fs.inodes.len(),
        baseline,
        "closed: the listing gave its entries back"
    );
    assert_eq!(h.fs.getattr(r1).unwrap_err().errno, libc::ESTALE);

    let fh = h.fs.opendir(runs).unwrap();
    assert_eq!(h.fs.inodes.len(), baseline + 4, "new, latest, r2, r1");
    assert_eq!(
        h.plus_names(fh, 4),
        [".", "..", "new", "latest"],
        "a reply with room for four, two of them the dots, which hold nothing"
    );
    h.fs.releasedir(fh);
    assert_eq!(
        h.fs.inodes.len(),
        baseline + 2,
        "the two entries the kernel was given stay; the others go"
    );
    let new = h.fs.lookup(runs, OsStr::new("new")).unwrap().ino;
    h.fs.forget(new, 2);
    assert_eq!(h.fs.getattr(new).unwrap_err().errno, libc::ESTALE);
    assert_eq!(h.fs.inodes.len(), baseline + 1, "latest is still held");
}

#[test]
fn a_failed_lookup_or_create_holds_nothing() {
    let h = harness();
    let baseline = h.fs.inodes.len();
    assert_eq!(h.path("runs/r2/output"), Err(libc::ENOENT));
    let runs_new = h.path("runs/new").unwrap();
    let refused = h.fs.create(h.path("runs").unwrap(), OsStr::new("x"), 0o644);
    assert_eq!(refused.unwrap_err().errno, libc::EROFS);
    assert_eq!(
        h.fs.create(runs_new, OsStr::new("nope"), 0o644)
            .unwrap_err()
            .errno,
        libc::ENOENT
    );
    assert_eq!(
        h.fs.inodes.len(),
        baseline + 3,
        "runs, runs/r2 and runs/new: what was found"
    );
}

#[derive(Default)]
struct Recorder(Arc<Mutex<Vec<u64>>>);

impl Invalidator for Recorder {
    fn attributes_changed(&self, ino: u64) {
        self.0.lock().unwrap().push(ino);
    }
}

#[test]
fn a_log_that_grows_is_invalidated_only_while_its_inode_is_held() {
    let h = harness();
    let told = Arc::new(Mutex::new(Vec::new()));
    h.fs.set_invalidator(Box::new(Recorder(told.clone())));
    let logs = h.path("runs/r2/logs").unwrap();
    h.fs.logs_changed("r2");
    assert_eq!(*told.lock().unwrap(), [logs]);
    h.fs.forget(logs, 1);
    let held = h.fs.inodes.len();
    h.fs.logs_changed("r2");
    assert_eq!(
        *told.lock().unwrap(),
        [logs],
        "nothing to tell about a forgotten inode"
    );
    assert_eq!(h.fs.inodes.len(), held, "and no number allocated for it");
}
