//! Reading a file of an archive that is still downloading, on a real mount: a known path is served as soon as
//! its own bytes are extracted, while a listing and a name that is not there wait for the whole archive (only
//! then is absence known). The emulator serves the blob slowly, so "still downloading" lasts seconds.

mod common;

use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::Mount;
use common::noise;
use serde_json::{Value, json};

/// The big file: about 7 s at the blob rate below, so the small ones are read long before it is complete.
const BIG: usize = 2 << 20;
const BLOB_BYTES_PER_SEC: u64 = 300_000;
const SMALL: &[u8] = b"small, and first in the archive\n";
const MIDDLE: &[u8] = b"in a directory, before the big file\n";

/// The mount's `.vm0fs/status`: what the cache holds and what it is downloading.
fn cache_status(mount: &Mount) -> Value {
    let text = std::fs::read(mount.path(".vm0fs/status")).unwrap();
    let status: Value = serde_json::from_slice(&text).unwrap();
    status["cache"].clone()
}

fn in_flight(mount: &Mount) -> usize {
    cache_status(mount)["downloads"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A volume `big` whose archive holds, in this order, `a-small.txt`, `sub/middle.txt` and `z-big.bin`
/// (the emulator stores files sorted by path).
fn volume_small_then_big(emulator: &Emulator) -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a-small.txt"), SMALL).unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/middle.txt"), MIDDLE).unwrap();
    std::fs::write(src.path().join("z-big.bin"), noise(BIG, 11)).unwrap();
    emulator.upload_dir("volumes", "big", src.path());
    src
}

#[test]
fn a_small_file_is_read_while_the_rest_of_its_archive_downloads() {
    let emulator = Emulator::start(&[]);
    let _src = volume_small_then_big(&emulator);
    let mount = Mount::start(&emulator, &[]);
    emulator.set_faults(json!({ "blob_bytes_per_sec": BLOB_BYTES_PER_SEC }));

    let started = Instant::now();
    let small = std::fs::read(mount.path("volumes/big/a-small.txt")).unwrap();
    let middle = std::fs::read(mount.path("volumes/big/sub/middle.txt")).unwrap();
    let early = started.elapsed();
    assert_eq!(small, SMALL);
    assert_eq!(middle, MIDDLE);
    let status = cache_status(&mount);
    assert_eq!(
        (in_flight(&mount), status["archives"].as_u64()),
        (1, Some(0)),
        "the small files came back while the archive was still downloading ({early:?}): {status}"
    );
    let size = std::fs::metadata(mount.path("volumes/big/a-small.txt"))
        .unwrap()
        .len();
    assert_eq!(
        size,
        SMALL.len() as u64,
        "a file served early has its full size"
    );

    // A name that is not there and a listing are answered only once the whole archive is in.
    let missing = std::fs::metadata(mount.path("volumes/big/not-there")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    let status = cache_status(&mount);
    assert_eq!(
        (in_flight(&mount), status["archives"].as_u64()),
        (0, Some(1)),
        "absence was answered before the download ended: {status}"
    );
    let mut names: Vec<_> = std::fs::read_dir(mount.path("volumes/big"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-small.txt", "sub", "z-big.bin"]);
    assert_eq!(
        std::fs::read(mount.path("volumes/big/z-big.bin")).unwrap(),
        noise(BIG, 11)
    );
    assert_eq!(
        std::fs::read(mount.path("volumes/big/a-small.txt")).unwrap(),
        SMALL
    );
    assert!(
        started.elapsed() > early + Duration::from_secs(2),
        "the whole archive took much longer than its first files ({early:?} of {:?})",
        started.elapsed()
    );
}

#[test]
fn a_listing_of_an_archive_in_flight_waits_for_all_of_it() {
    let emulator = Emulator::start(&[]);
    let _src = volume_small_then_big(&emulator);
    let mount = Mount::start(&emulator, &[]);
    emulator.set_faults(json!({ "blob_bytes_per_sec": BLOB_BYTES_PER_SEC }));

    // The first file starts the download in the background; `ls` then follows it to the end.
    assert_eq!(
        std::fs::read(mount.path("volumes/big/a-small.txt")).unwrap(),
        SMALL
    );
    assert_eq!(in_flight(&mount), 1);
    let mut names: Vec<_> = std::fs::read_dir(mount.path("volumes/big/sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["middle.txt"]);
    let status = cache_status(&mount);
    assert_eq!(
        (in_flight(&mount), status["archives"].as_u64()),
        (0, Some(1)),
        "a listing was answered before the download ended: {status}"
    );
    let blobs = &emulator.stats()["blob_downloads"];
    let total: u64 = blobs
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert_eq!(total, 1, "one download served both: {blobs}");
}
