//! vm0fs: the VM0 platform (agents, runs, volumes, artifacts) as a FUSE filesystem.
//!
//! The package is a library and the `vm0fs` binary, so that integration tests and the binary share one copy of
//! the code. The layers, `cli -> fuse -> fs -> {stage, cache, api}`: `cli` parses and daemonises, `fuse` (the thin
//! fuser adapter) calls `fs` (the filesystem core), which talks to `stage` (the staged writes of volumes and their
//! publishing), to `cache` (the on-disk archive cache) and to `api` (the `Vm0Api` trait and its HTTP client);
//! `stage` uses `cache` and `api`. `errno`, `caller`, `sync` (lock helpers) and `symlinks` (the one rule for
//! which symlinks a version holds) are leaves any layer may use. The wire models live in the `vm0-api` crate,
//! shared with the `vm0-emulator` crate beside this one; nothing here depends on the emulator (README, Layout).

pub mod api;
pub mod cache;
pub mod caller;
pub mod cli;
pub mod errno;
pub mod fs;
pub mod fuse;
pub mod stage;
mod symlinks;
mod sync;
