//! The storage push flow (CONTRACT.md 7.2) through real mounts, against an emulator without the `/v1` upload
//! (`--no-v1-upload`): the mount finds out once and remembers it, a version the server holds already is committed
//! without uploads, and a push over the server's size limit reaches the user as `EFBIG` with a message. The
//! publishing tests of `writes.rs` and `conflicts.rs` run against both protocols as well.

mod common;

use std::io::Write;
use std::path::Path;

use common::emulator::Emulator;
use common::mount::{Mount, vm0fs};
use common::protocol::Protocol;
use serde_json::Value;

fn mount(emu: &Emulator) -> Mount {
    Mount::start(emu, &["--commit-delay", "0"])
}

fn sync(path: &Path) -> String {
    let out = vm0fs().arg("sync").arg(path).output().expect("run vm0fs");
    assert!(
        out.status.success(),
        "vm0fs sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stat(emu: &Emulator, key: &str) -> u64 {
    let stats: Value = emu.stats();
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

fn head(emu: &Emulator, name: &str) -> String {
    let id = emu.storage_id("volumes", name).expect("the volume exists");
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    detail["current_version_id"]
        .as_str()
        .expect("a head")
        .to_string()
}

#[test]
fn a_server_without_the_v1_upload_gets_the_push_flow_and_the_mount_remembers() {
    let emu = Protocol::Push.emulator(&[]);
    let m = mount(&emu);
    let vol = m.path("volumes/pushed");
    std::fs::create_dir(&vol).expect("mkdir creates the volume through a prepare");
    assert_eq!(stat(&emu, "v1_upload_refusals"), 1, "POST /v1/volumes");
    std::fs::create_dir(vol.join("dir")).unwrap();
    std::fs::write(vol.join("dir/big.bin"), common::noise(3 << 20, 7)).unwrap();
    std::fs::write(vol.join("small.txt"), "small").unwrap();
    let first = sync(&vol);
    assert_eq!(
        first,
        format!("volumes/pushed@{}", &head(&emu, "pushed")[..8])
    );
    std::fs::write(vol.join("small.txt"), "changed").unwrap();
    sync(&vol);
    assert_eq!(
        stat(&emu, "v1_upload_refusals"),
        2,
        "asked the /v1 upload once"
    );
    assert_eq!(stat(&emu, "push_commits"), 2);
    assert_eq!(stat(&emu, "upload_requests_with_token"), 0);
    assert!(m.logged("storage push flow"), "{}", m.stderr());
    drop(m);

    let fresh = mount(&emu);
    let vol = fresh.path("volumes/pushed");
    assert_eq!(
        std::fs::read(vol.join("dir/big.bin")).unwrap(),
        common::noise(3 << 20, 7)
    );
    assert_eq!(
        std::fs::read_to_string(vol.join("small.txt")).unwrap(),
        "changed"
    );
}

#[test]
fn a_version_the_server_holds_is_committed_again_without_uploads() {
    let emu = Protocol::Push.emulator(&[]);
    let m = mount(&emu);
    let vol = m.path("volumes/again");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "first").unwrap();
    sync(&vol);
    let first = head(&emu, "again");
    std::fs::write(vol.join("f"), "second").unwrap();
    sync(&vol);
    assert_ne!(head(&emu, "again"), first);
    let puts = stat(&emu, "upload_puts");
    std::fs::write(vol.join("f"), "first").unwrap();
    assert_eq!(sync(&vol), format!("volumes/again@{}", &first[..8]));
    assert_eq!(head(&emu, "again"), first, "the commit moved the head back");
    assert_eq!(
        stat(&emu, "upload_puts"),
        puts,
        "existing: true sends nothing"
    );
    assert_eq!(stat(&emu, "push_commits"), 3);
}

#[test]
fn a_push_over_the_server_limit_is_efbig_with_a_message_and_stays_staged() {
    let emu = Protocol::Push.emulator(&["--max-push-bytes", "1000000"]);
    let m = mount(&emu);
    let vol = m.path("volumes/huge");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("small"), "fits").unwrap();
    sync(&vol);
    std::fs::write(vol.join("big"), common::noise(1_500_000, 3)).unwrap();

    let out = vm0fs().arg("sync").arg(&vol).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("more than the server takes in one push") && err.contains("PAYLOAD_TOO_LARGE"),
        "{err}"
    );
    // The errno the mount answers to the publish is EFBIG.
    let mut control = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path(".vm0fs/sync"))
        .unwrap();
    let refused = control.write_all(b"volumes/huge\n").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EFBIG), "{refused}");
    assert_eq!(stat(&emu, "push_commits"), 1);
    assert_eq!(std::fs::metadata(vol.join("big")).unwrap().len(), 1_500_000);
}

#[test]
fn an_expired_push_url_is_prepared_again_and_the_version_published_once() {
    let emu = Protocol::Push.emulator(&[]);
    let m = mount(&emu);
    let vol = m.path("volumes/expired");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "bytes").unwrap();
    // The next PUT to the blob host is refused as an expired presigned URL is.
    emu.set_faults(
        serde_json::json!({"error_count": 1, "error_status": 403, "path_prefix": "/_upload/"}),
    );
    let line = sync(&vol);
    assert_eq!(
        line,
        format!("volumes/expired@{}", &head(&emu, "expired")[..8])
    );
    assert_eq!(stat(&emu, "push_commits"), 1);
    drop(m);
    let fresh = mount(&emu);
    assert_eq!(
        std::fs::read_to_string(fresh.path("volumes/expired/f")).unwrap(),
        "bytes"
    );
}
