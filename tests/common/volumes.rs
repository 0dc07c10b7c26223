//! Helpers for the tests of writable volumes: publishing with `vm0fs sync`, and what the emulator then holds.

use std::path::Path;

use serde_json::Value;

use super::emulator::Emulator;
use super::mount::vm0fs;

/// `vm0fs sync PATH`: its stdout, or a failure with what it said.
pub fn sync(path: &Path) -> String {
    let out = vm0fs()
        .arg("sync")
        .arg(path)
        .output()
        .expect("run vm0fs sync");
    assert!(
        out.status.success(),
        "vm0fs sync {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The versions of volume `name` on the emulator.
pub fn versions(emu: &Emulator, name: &str) -> Vec<Value> {
    let id = emu.storage_id("volumes", name).expect("the volume exists");
    let (status, page) = emu.get_json(&format!("/v1/volumes/{id}/versions?limit=100"));
    assert_eq!(status, 200, "{page}");
    page["data"].as_array().cloned().unwrap_or_default()
}

pub fn head(emu: &Emulator, name: &str) -> Option<String> {
    let id = emu.storage_id("volumes", name)?;
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    detail["current_version_id"].as_str().map(String::from)
}

/// A tree of `count` files of mixed sizes (empty to 200 KiB) in nested directories.
pub fn make_tree(root: &Path, count: usize) {
    for i in 0..count {
        let dir = root.join(format!("d{}/e{}", i % 7, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let len = match i % 10 {
            0 => 0,
            1 => 200 << 10,
            n => n * 517,
        };
        std::fs::write(dir.join(format!("f{i}.bin")), super::noise(len, i as u64)).unwrap();
    }
}

/// The blob downloads the emulator served of `version`.
pub fn downloads_of(emu: &Emulator, version: &str) -> u64 {
    emu.stats()["blob_downloads"][version].as_u64().unwrap_or(0)
}
