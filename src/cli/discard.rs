//! `vm0fs discard PATH...`: drop the staged changes of volumes, so that they show their head again.
//!
//! Like `vm0fs sync`, the command only asks the mount (a `discard volumes/<name>` line to `.vm0fs/sync`): the
//! mount's publisher does the drop between publishes, so a discard never races a publish of the same changes.

use std::path::PathBuf;

use clap::Args;

use super::sync::sync_one;

#[derive(Args, Debug)]
pub struct DiscardArgs {
    /// Volumes whose staged changes to drop: volumes/<name> of a mount, or any path inside one
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: &DiscardArgs) -> i32 {
    let mut failed = false;
    for path in &args.paths {
        match sync_one(path, Some("discard"), None) {
            Ok(line) => println!("{line}"),
            Err(message) => {
                eprintln!("vm0fs: {message}");
                failed = true;
            }
        }
    }
    i32::from(failed)
}
