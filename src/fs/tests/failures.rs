//! What a failing API and a moving head do to the tree: each failure reaches the request with the errno of its
//! layer and its cause, the next request tries again, and a new head keeps the numbers of the volume view.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::{harness_on, harness_with_ttl};
use crate::api::ApiError;
use crate::api::fake::{FailingApi, FakeApi, Method, V2, archive, volume_version};

const V3: &str = "3333333333333333333333333333333333333333333333333333333333333333";

#[test]
fn a_refused_download_fails_with_its_errno_and_cause_and_the_next_lookup_downloads_again() {
    let fake = Arc::new(FakeApi::sample());
    let refused = ApiError::http("GET /v1/volumes/vol-1/download", 403, None, "no".into());
    let api = Arc::new(FailingApi::new(fake.clone()).fail(Method::Download, 1, refused));
    let h = harness_on(api.clone(), fake, Duration::from_secs(60));
    let volume = h.path("volumes/data").unwrap();
    let error = h.fs.lookup(volume, OsStr::new("dir")).unwrap_err();
    assert_eq!(error.errno, libc::EACCES);
    assert!(error.source.is_some(), "the cache error is kept");
    assert!(error.chain().contains("HTTP 403"), "{}", error.chain());
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(api.calls(Method::Download), 2);
}

#[test]
fn a_full_server_is_enospc_and_a_too_large_request_efbig() {
    let fake = Arc::new(FakeApi::sample());
    let full = ApiError::http("GET /v1/volumes", 507, None, "Insufficient Storage".into());
    let too_large = ApiError::http("GET /v1/agents", 413, None, "Too Large".into());
    let api = FailingApi::new(fake.clone())
        .fail(Method::ListStorages, 1, full)
        .fail(Method::ListAgents, 1, too_large);
    let h = harness_on(Arc::new(api), fake, Duration::from_secs(60));
    assert_eq!(h.path("volumes/data"), Err(libc::ENOSPC));
    let agents = h.path("agents").unwrap();
    let error = h.fs.opendir(agents).unwrap_err();
    assert_eq!(error.errno, libc::EFBIG);
    assert!(error.message.contains("refuses data this large"), "{error}");
    assert!(
        h.path("volumes/data").is_ok(),
        "the failure is not remembered"
    );
    assert_eq!(h.names("agents"), ["coder"]);
}

#[test]
fn a_new_head_keeps_the_numbers_of_the_volume_view_and_shows_the_new_content() {
    let mut fake = FakeApi::sample();
    fake.archives
        .insert(V3.into(), archive(&[("dir/a.txt", b"hello again")]));
    fake.versions.insert(0, volume_version(V3));
    let fake = Arc::new(fake);
    let h = harness_on(fake.clone(), fake.clone(), Duration::ZERO);
    let dir = h.path("volumes/data/dir").unwrap();
    let file = h.path("volumes/data/dir/a.txt").unwrap();
    let pinned = h.path(&format!("volumes/data@{V2}/dir/a.txt")).unwrap();
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    let head = h.fs.open(file, libc::O_RDONLY).unwrap();
    assert!(
        !head.keep_cache,
        "the head's pages may belong to an older version"
    );
    assert!(h.fs.open(pinned, libc::O_RDONLY).unwrap().keep_cache);

    fake.volumes.lock().unwrap()[0].current_version_id = Some(V3.into());
    assert_eq!(h.path("volumes/data/dir"), Ok(dir));
    assert_eq!(h.path("volumes/data/dir/a.txt"), Ok(file));
    assert_eq!(h.fs.getattr(file).unwrap().size, 11);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello again");
    assert_eq!(h.names("volumes/data"), ["dir"]);
    assert_eq!(h.path("volumes/data/empty"), Err(libc::ENOENT));
    assert_eq!(
        h.fs.read(head.fh, 0, 100).unwrap(),
        b"hello",
        "an open file reads the version it opened"
    );
    assert_eq!(h.read(&format!("volumes/data@{V2}/dir/a.txt")), b"hello");
    assert_ne!(h.path(&format!("volumes/data@{V3}/dir/a.txt")), Ok(file));
}

#[test]
fn the_volume_view_is_believed_for_the_metadata_ttl_only() {
    let h = harness_with_ttl(Duration::from_secs(7));
    h.names("volumes/data/dir");
    h.names(&format!("volumes/data@{V2}/dir"));
    for path in ["volumes/data", "volumes/data/dir", "volumes/data/dir/a.txt"] {
        let attr = h.fs.getattr(h.path(path).unwrap()).unwrap();
        assert_eq!(attr.ttl, Duration::from_secs(7), "{path}");
    }
    let pinned = h.path(&format!("volumes/data@{V2}/dir/a.txt")).unwrap();
    assert_eq!(
        h.fs.getattr(pinned).unwrap().ttl,
        Duration::from_secs(3600),
        "a version never changes"
    );
}
