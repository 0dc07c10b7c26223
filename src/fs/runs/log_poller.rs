//! The thread that follows watched logs (see `live_logs` for which logs and how often).
//!
//! It holds the filesystem weakly, so that it ends when the mount's core is dropped, and it calls the kernel's
//! invalidation with no lock held, as the kernel may call back into the mount.

use std::sync::{Arc, Weak};

use super::live_logs;
use crate::fs::Vm0Fs;
use crate::fs::inodes::Node;
use crate::fs::tree::{RunFile, RunNode};

impl Vm0Fs {
    /// Starts the thread that follows watched logs; it ends when the filesystem is dropped.
    pub fn start_log_poller(self: &Arc<Self>) {
        let fs: Weak<Vm0Fs> = Arc::downgrade(self);
        let started = std::thread::Builder::new()
            .name("vm0fs-logs".into())
            .spawn(move || {
                let _span = tracing::info_span!("log_poller").entered();
                loop {
                    std::thread::sleep(live_logs::POLL_TICK);
                    let Some(fs) = fs.upgrade() else { return };
                    fs.poll_logs();
                }
            });
        if let Err(e) = started {
            tracing::error!("cannot start the log poller ({e}); logs grow only when read");
        }
    }

    fn poll_logs(&self) {
        for run_id in self.live_logs.due() {
            let terminal = match self.meta.run(&run_id) {
                Ok(run) => run.status.is_terminal(),
                Err(e) => {
                    tracing::debug!("log poller: runs/{run_id}: {e}");
                    continue;
                }
            };
            match self
                .live_logs
                .poll(self.meta.api().as_ref(), &run_id, terminal)
            {
                Ok(true) => self.logs_changed(&run_id),
                Ok(false) => {}
                Err(e) => tracing::debug!("log poller: runs/{run_id}/logs: {e}"),
            }
        }
    }

    /// Tells the kernel that a watched log grew. Only a number the table still holds is told: one the kernel forgot
    /// has nothing cached to invalidate, and asking for a number here would allocate one per poll.
    pub(in crate::fs) fn logs_changed(&self, run_id: &str) {
        let logs = Node::Runs(RunNode::File {
            id: run_id.to_string(),
            file: RunFile::Logs,
        });
        if let (Some(invalidator), Some(ino)) =
            (self.invalidator.get(), self.inodes.known_ino(&logs))
        {
            invalidator.attributes_changed(ino);
        }
    }
}
