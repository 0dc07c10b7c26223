//! The `/v1` upload (CONTRACT.md 7.1 steps 2 and 3): a session naming every file, then one PUT per file to the
//! URL the session gave it. A 403 from a PUT is an expired URL: the session is asked for again, a few times.
//!
//! The PUTs run `PARALLEL_PUTS` at a time, on scoped threads sharing the mount's one HTTP client (and so its pool
//! of kept-alive connections): a tree of small files is bound by each request's round trip, not by the bytes, and
//! one request at a time leaves the link idle between them. The workers only send; the calling thread collects
//! their outcomes, reports progress and decides, so the first failure stops every worker before its next file and
//! is the one reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use super::target::{FRESH_URLS, Progress, Target};
use crate::api::models::{StorageKind, UploadFileSpec, UploadRequest, UploadTarget};
use crate::api::{ApiError, Vm0Api};
use crate::stage::error::PublishError;
use crate::stage::manifest::ManifestFile;

/// How many PUTs are in flight at once: enough to hide the round trips, few enough not to crowd the server (what
/// browsers and S3 clients open per host).
const PARALLEL_PUTS: usize = 4;

/// A session, and every file PUT to its URL. Returns the session id.
pub(super) fn upload_all(
    api: &dyn Vm0Api,
    target: &Target,
    manifest: &[ManifestFile],
    progress: Progress,
) -> Result<String, PublishError> {
    let label = target.label();
    let request = UploadRequest {
        files: manifest
            .iter()
            .map(|f| UploadFileSpec {
                path: f.path.clone(),
                size: f.size,
                hash: Some(f.sha256.clone()),
            })
            .collect(),
        message: None,
    };
    let total: u64 = manifest.iter().map(|f| f.size).sum();
    let by_path: HashMap<&str, &ManifestFile> =
        manifest.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut round = 0;
    loop {
        progress(0, total);
        let session = api
            .upload(StorageKind::Volume, target.storage_id, &request)
            .map_err(|e| PublishError::api(&label, "upload", &e))?;
        let mut puts = Vec::with_capacity(session.files.len());
        for url in &session.files {
            let Some(file) = by_path.get(url.path.as_str()) else {
                return Err(PublishError {
                    errno: libc::EIO,
                    message: format!(
                        "{label}: the server gave an upload URL for {:?}, which was not declared",
                        url.path
                    ),
                    retryable: false,
                    step: "upload",
                });
            };
            puts.push((url, *file));
        }
        match put_all(api, &puts, &|sent| progress(sent, total)) {
            Ok(()) => return Ok(session.upload_session_id),
            Err(e) if e.status == Some(403) && round < FRESH_URLS => {
                tracing::info!(volume = %label, "an upload URL was refused (expired?); asking for fresh ones");
                round += 1;
            }
            Err(e) => return Err(PublishError::api(&label, "PUT", &e)),
        }
    }
}

/// Every file PUT to its URL, `PARALLEL_PUTS` at a time; `sent` hears the bytes sent so far after each file. The
/// first failure stops the workers before their next file and is returned.
fn put_all(
    api: &dyn Vm0Api,
    puts: &[(&UploadTarget, &ManifestFile)],
    sent: &dyn Fn(u64),
) -> Result<(), ApiError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (done, outcomes) = mpsc::channel::<Result<u64, ApiError>>();
    thread::scope(|scope| {
        for _ in 0..PARALLEL_PUTS.min(puts.len()) {
            let (next, stop, done) = (&next, &stop, done.clone());
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some((url, file)) = puts.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let outcome = api.put_upload(url, &file.source).map(|()| file.size);
                    let failed = outcome.is_err();
                    if done.send(outcome).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(done);
        let (mut bytes, mut first_failure) = (0, None);
        for outcome in outcomes {
            match outcome {
                Ok(n) => {
                    bytes += n;
                    sent(bytes);
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_failure.get_or_insert(e);
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    })
}
