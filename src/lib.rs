//! vm0fs: the VM0 platform (agents, runs, volumes, artifacts) as a FUSE filesystem.
//!
//! The crate is one library with two binaries, so that integration tests and both binaries share one copy of
//! the code. The layers follow `DESIGN.md`: `fuse` (the thin fuser adapter) calls `fs` (the filesystem core),
//! which talks to `cache` (the on-disk archive cache) and to `api` (the `Vm0Api` trait and its HTTP client).
//! `emulator` is the local VM0 API server used by tests and the demo; it shares only the wire models with `api`.

pub mod api;
pub mod cache;
pub mod cli;
pub mod emulator;
pub mod fs;
pub mod fuse;
