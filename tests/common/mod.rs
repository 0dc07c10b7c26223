//! Helpers shared by the integration tests. Each test binary uses only some of them, hence `dead_code`.
#![allow(dead_code)]

pub mod daemon;
pub mod emulator;
pub mod mount;
