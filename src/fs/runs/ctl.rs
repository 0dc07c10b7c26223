//! `runs/<id>/ctl`: a command written to it is acted on at once, inside `write(2)` (see `writes` for the syntax).
//!
//! Acting inside `write` rather than at close lets even bash's builtin `echo`, which ignores errors from close,
//! see a refusal.

use crate::fs::error::{Error, Result};
use crate::fs::{Vm0Fs, writes};

impl Vm0Fs {
    /// A write to `runs/<run_id>/ctl`: the command is checked, then done.
    pub(in crate::fs) fn write_ctl(&self, run_id: &str, data: &[u8]) -> Result<u32> {
        writes::ctl_command(run_id, data)?;
        self.cancel(run_id)?;
        Ok(data.len() as u32)
    }

    /// Cancels a run. One that already ended is `ESRCH` ("No such process": there is nothing running to stop),
    /// told apart from a command that was not understood (`EINVAL`).
    fn cancel(&self, run_id: &str) -> Result<()> {
        let ended = |status: &str| {
            Error::new(
                libc::ESRCH,
                format!(
                    "runs/{run_id}: the run already ended ({status}); there is nothing to cancel"
                ),
            )
        };
        let run = self.meta.run(run_id)?;
        if run.status.is_terminal() {
            return Err(ended(run.status.as_str()));
        }
        match self.meta.api().cancel_run(run_id) {
            Ok(detail) => {
                self.meta.remember_run(detail);
                Ok(())
            }
            Err(e) if e.detail.as_ref().is_some_and(|d| d.code == "invalid_state") => {
                self.meta.forget_run(run_id);
                let status = self.meta.run(run_id).map(|r| r.status.as_str().to_string());
                Err(ended(status.as_deref().unwrap_or("terminal")))
            }
            Err(e) => Err(Error::new(
                e.errno(),
                format!("runs/{run_id}/ctl: the run was not cancelled: {e}"),
            )
            .caused_by(e)),
        }
    }
}
