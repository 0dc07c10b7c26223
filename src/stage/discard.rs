//! Dropping a volume's staged changes (`vm0fs discard`): the view returns to the head.
//!
//! The drop runs on the publisher's thread, like a publish, so it never overlaps a publish of the changes it
//! drops: whichever comes second sees what the first did. The staging directory is renamed aside before it is
//! deleted, so a crash in between leaves nothing that replays. Files open for writing refuse it (`EBUSY`), since
//! their writes would land nowhere. The stage object itself is marked discarded and forgotten by the mount; the
//! next use of the volume makes a fresh one over the head. Nothing on the server changes: every version stays.

use super::error::{Result, StageError, io_error};
use super::manifest::LocalOnly;
use super::overlay::Content;
use super::status::Phase;
use super::volume::VolumeStage;

/// What a discard dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// Files whose bytes were staged (created or changed here).
    pub files: usize,
    pub bytes: u64,
    /// Whether there was anything staged at all.
    pub had_changes: bool,
    /// What a version cannot hold, dropped with the rest (it existed on this machine only).
    pub local: LocalOnly,
}

impl VolumeStage {
    /// Drops the journal and the staged files; see the module doc.
    pub(super) fn discard_changes(&self) -> Result<Discarded> {
        let _long = self.long_step();
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
        let local = LocalOnly::of(&st.tree);
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
            local,
        })
    }

    /// Whether `vm0fs discard` dropped this stage.
    pub(super) fn discarded(&self) -> bool {
        self.lock().discarded
    }
}
