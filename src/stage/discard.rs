//! Dropping a volume's staged changes (`vm0fs discard`): the view returns to the head.
//!
//! The drop runs on the publisher's thread, like a publish, so it never overlaps a publish of the changes it
//! drops: whichever comes second sees what the first did. The staging directory is renamed aside before it is
//! deleted, so a crash in between leaves nothing that replays. Files open for writing refuse it (`EBUSY`), since
//! their writes would land nowhere. The stage object itself is marked discarded and forgotten by the mount; the
//! next use of the volume makes a fresh one over the head. Nothing on the server changes: every version stays.

use std::sync::Arc;

use super::overlay::Content;
use super::{Phase, Result, Stage, StageError, VolumeStage, io_error};

/// What a discard dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// Files whose bytes were staged (created or changed here).
    pub files: usize,
    pub bytes: u64,
    /// Whether there was anything staged at all.
    pub had_changes: bool,
}

impl VolumeStage {
    /// Drops the journal and the staged files; see the module doc.
    pub(super) fn discard_changes(&self) -> Result<Discarded> {
        let mut st = self.lock();
        if st.writers > 0 {
            return Err(StageError::new(
                libc::EBUSY,
                format!(
                    "{}: {} file(s) are open for writing; close them, then discard again",
                    self.label(),
                    st.writers
                ),
            ));
        }
        let files = st
            .tree
            .files()
            .filter(|(_, c)| matches!(c, Content::Staged(_)))
            .count();
        let bytes = st.staged_bytes(&self.layout);
        let had_changes = st.journal.is_some();
        self.layout
            .remove()
            .map_err(|e| io_error(&format!("{}: deleting its staged changes", self.label()), e))?;
        st.journal = None;
        st.discarded = true;
        if had_changes && let Some(v) = st.base_version.take() {
            self.hold_base(&v, false);
        }
        self.space.release(bytes);
        drop(st);
        self.set_phase(Phase::Clean);
        Ok(Discarded {
            files,
            bytes,
            had_changes,
        })
    }

    /// Whether `vm0fs discard` dropped this stage.
    pub(super) fn discarded(&self) -> bool {
        self.lock().discarded
    }
}

impl Stage {
    /// Drops the staged changes of `volume`; the next use of the volume shows its head.
    pub fn discard(&self, volume: &Arc<VolumeStage>) -> Result<Discarded> {
        let done = self.publisher.discard(volume)?;
        let mut volumes = self.lock_volumes();
        if volumes
            .get(volume.storage_id())
            .is_some_and(|v| Arc::ptr_eq(v, volume))
        {
            volumes.remove(volume.storage_id());
        }
        Ok(done)
    }

    /// The stage with changes of a volume named `name`, whether or not the server still lists it (a volume
    /// deleted on the server keeps its staged changes, and `vm0fs sync` and `vm0fs discard` still reach them).
    pub fn staged_named(&self, name: &str) -> Option<Arc<VolumeStage>> {
        self.lock_volumes()
            .values()
            .find(|v| v.name == name && v.lock().journal.is_some())
            .cloned()
    }
}
