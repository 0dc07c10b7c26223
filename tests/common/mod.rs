//! Helpers shared by the integration tests. Each test binary uses only some of them, hence `dead_code`.
#![allow(dead_code)]

pub mod daemon;
pub mod emulator;
pub mod mount;

/// Deterministic pseudo-random bytes: incompressible, so an archive of them is as big as its content and a cut
/// gzip stream really lacks data.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u8
        })
        .collect()
}
