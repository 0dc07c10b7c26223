//! The first listing of `runs/`, streamed: `new` at once, then the runs of each page as the API sends it.
//!
//! A user may have thousands of runs; `ls -f` and `find` should not wait for the last page. A thread fills the
//! `Listing` page by page (`runs::listing` keeps the runs, `fs::listing` the handle that `readdir` reads).

use std::sync::Arc;

use crate::api::models::Run;
use crate::fs::error::Error;
use crate::fs::handles::Handle;
use crate::fs::listing::Listing;
use crate::fs::{DirEntry, Vm0Fs};

impl Vm0Fs {
    /// `runs/` before its first listing: `new` at once, then the runs of each page as it arrives.
    pub(in crate::fs) fn open_growing_runs(self: &Arc<Self>, mut entries: Vec<DirEntry>) -> u64 {
        entries.push(self.runs_new_entry());
        let listing = Arc::new(Listing::growing(entries));
        let fh = self.handles.insert(Handle::Dir(listing.clone()));
        let fs = self.clone();
        let filled = listing.clone();
        let fill = move || {
            let mut taken = 0;
            let add = |runs: &[Run], taken: &mut usize| {
                let entries = fs.run_entries(runs, *taken == 0);
                *taken += runs.len();
                fs.release_entries(&listing.extend(entries));
            };
            let listed = fs.meta.runs_streamed(&mut |page| add(page, &mut taken));
            let result = listed.map(|runs| {
                let rest = runs.all().get(taken..).unwrap_or_default();
                add(rest, &mut taken);
            });
            listing.finish(result);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("vm0fs-runs".into())
            .spawn(fill)
        {
            filled.finish(Err(Error::new(
                libc::EAGAIN,
                format!("runs: cannot start a thread to list the runs ({e}); try again"),
            )));
        }
        fh
    }
}
