//! Helpers shared by the integration tests. Each test binary uses only some of them, hence `dead_code`.
#![allow(dead_code)]

pub mod daemon;
pub mod emulator;
pub mod kernel_caches;
pub mod mount;
pub mod protocol;
pub mod volumes;

use std::io::Read;
use std::sync::{Arc, Mutex};

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

/// Everything `reader` yields from now on (a child's stdout or stderr), drained by a thread into a shared string.
pub fn collect(mut reader: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}
