//! Everything about runs beyond their namespace in `tree/runs.rs`: starting one through `runs/new/<agent>`,
//! cancelling one through `ctl`, who reads which outcome, logs that grow, and the listing of `runs/`.
//!
//! Runs are the one part of the tree that moves on its own and that a write acts on at once, so their state
//! machines live here, apart from the dispatch in `fs/mod.rs`, which only routes their handles.

mod ctl;
mod first_listing;
pub mod listing;
pub mod live_logs;
mod log_poller;
mod new_run;
pub mod outcomes;

pub use new_run::NewRunWrite;
