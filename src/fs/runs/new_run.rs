//! The state machine of one open `runs/new/<agent>`: written, then started once, then read back.
//!
//! A handle accumulates what is written until the writer closes it (see `writes` for which close counts); the
//! first flush by that writer starts the run and keeps the outcome, which every later flush returns and which a
//! read through the same descriptor shows. The outcome is also recorded in `outcomes` for the writer's relatives,
//! who open the file read-only afterwards. Kept apart from the dispatch in `fs/mod.rs`, which only routes the
//! `NewRun` handle here.

use crate::sync::Locked;
use std::sync::{Arc, Mutex};

use super::outcomes::Caller;
use crate::fs::error::{Error, Result};
use crate::fs::handles::{self, Handle};
use crate::fs::{Opened, Vm0Fs, writes};

/// What one open of `runs/new/<agent>` has written, and what became of it.
pub struct NewRunWrite {
    pub agent: String,
    pub written: Vec<u8>,
    /// Something was written since open (an open with O_TRUNC and no write starts nothing).
    pub dirty: bool,
    /// The thread that wrote last: only a close by it starts the run (see `writes`).
    pub writer_pid: Option<u32>,
    /// That thread's process and parent, whose relatives read the outcome back (`outcomes`).
    pub writer: Option<Caller>,
    /// Written to `runs/new/<agent>.json`: the text is a request body, not a prompt.
    pub json: bool,
    /// Set by the first flush after a write: the run was started, or why not.
    pub outcome: Option<Result<()>>,
    /// What reading the file back shows once the outcome is known: the run id, the error, or nothing.
    pub shown: Option<Vec<u8>>,
}

impl NewRunWrite {
    /// Writes `data` at `offset` for thread `pid`, who becomes the writer whose close starts the run.
    pub(in crate::fs) fn write(&mut self, offset: u64, data: &[u8], pid: u32) -> Result<u32> {
        if self.outcome.is_some() {
            return Err(Error::new(
                libc::EINVAL,
                format!(
                    "runs/new/{}: this file was closed once and started a run; open it again for another",
                    self.agent
                ),
            ));
        }
        let start =
            usize::try_from(offset).map_err(|_| Error::new(libc::EFBIG, "offset too large"))?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(|| Error::new(libc::EFBIG, "offset too large"))?;
        if self.written.len() < end {
            self.written.resize(end, 0);
        }
        self.written[start..end].copy_from_slice(data);
        self.dirty = true;
        if self.writer_pid != Some(pid) {
            self.writer_pid = Some(pid);
            self.writer = Caller::of_thread(pid);
        }
        Ok(data.len() as u32)
    }
}

impl Vm0Fs {
    /// `runs/new/<agent>` opened read-only by thread `pid`: what the reader's own write came to (`outcomes`);
    /// `ENOENT`, logged, when neither a relative of the reader nor its session wrote (an empty file would read as
    /// a run started without an id, and a retry would start a second one).
    pub(in crate::fs) fn open_new_run_outcome(&self, agent: &str, pid: u32) -> Result<Opened> {
        let Some(shown) = self
            .new_run_outcomes
            .for_reader(agent, Caller::of_thread(pid))
        else {
            return Err(Error::new(
                libc::ENOENT,
                format!(
                    "runs/new/{agent}: no run was started through it by process {pid}, its relatives or its \
                     session, so there is no run id to read back; write a prompt to it first (`echo … > \
                     runs/new/{agent}`), then read it from the same shell or script"
                ),
            )
            .at_level(tracing::Level::INFO));
        };
        let fh = self.handles.insert(Handle::Content(Arc::new(shown)));
        Ok(Opened {
            fh,
            direct_io: true,
            keep_cache: false,
            no_flush: false,
        })
    }

    /// Read back through the descriptor that wrote: the run starts now, and this is its outcome.
    pub(in crate::fs) fn read_new_run(
        &self,
        write: &Mutex<NewRunWrite>,
        offset: u64,
        size: u32,
    ) -> Vec<u8> {
        let _ = self.start_run(write);
        let write = write.locked();
        let shown = write.shown.as_deref().unwrap_or_default();
        handles::slice_at(shown, offset, size).to_vec()
    }

    /// A `close(2)` by thread `pid`: starts the run if `pid` wrote last, or returns the outcome already known.
    pub(in crate::fs) fn flush_new_run(&self, write: &Mutex<NewRunWrite>, pid: u32) -> Result<()> {
        let by_writer = {
            let write = write.locked();
            write.outcome.is_some() || write.writer_pid == Some(pid)
        };
        if by_writer {
            self.start_run(write)
        } else {
            Ok(())
        }
    }

    /// Starts the run a handle's write asks for, once: later calls return the first outcome. Blank text starts
    /// nothing and is no error (an editor that saves an empty buffer); it clears what the writer read back.
    pub(in crate::fs) fn start_run(&self, write: &Mutex<NewRunWrite>) -> Result<()> {
        let mut write = write.locked();
        if let Some(outcome) = &write.outcome {
            return outcome.clone();
        }
        if !write.dirty {
            return Ok(());
        }
        let agent = write.agent.clone();
        let started = writes::run_request(&agent, &write.written, write.json).and_then(|body| {
            let Some(body) = body else {
                return Ok(None);
            };
            self.meta.api().create_run(&body).map(Some).map_err(|e| {
                Error::new(
                    e.errno(),
                    format!("runs/new/{agent}: the run was not started: {e}"),
                )
                .caused_by(e)
            })
        });
        let (shown, result) = match started {
            Ok(Some(run)) => {
                tracing::info!("runs/new/{agent}: started run {}", run.id);
                let shown = format!("{}\n", run.id).into_bytes();
                self.meta.remember_run(run);
                (shown, Ok(()))
            }
            Ok(None) => (Vec::new(), Ok(())),
            Err(e) => (format!("error: {}\n", e.message).into_bytes(), Err(e)),
        };
        if let Some(writer) = write.writer.clone() {
            self.new_run_outcomes.record(&agent, writer, shown.clone());
        }
        write.shown = Some(shown);
        write.outcome = Some(result.clone());
        result
    }
}
