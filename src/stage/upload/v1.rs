//! The `/v1` upload (CONTRACT.md 7.1 steps 2 and 3): a session naming every file, then one PUT per file to the
//! URL the session gave it. A 403 from a PUT is an expired URL: the session is asked for again, a few times.

use std::collections::HashMap;

use super::target::{FRESH_URLS, Progress, Target};
use crate::api::Vm0Api;
use crate::api::models::{StorageKind, UploadFileSpec, UploadRequest};
use crate::stage::error::PublishError;
use crate::stage::manifest::ManifestFile;

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
    'fresh: loop {
        progress(0, total);
        let session = api
            .upload(StorageKind::Volume, target.storage_id, &request)
            .map_err(|e| PublishError::api(&label, "upload", &e))?;
        let mut sent = 0;
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
            match api.put_upload(url, &file.source) {
                Ok(()) => {}
                Err(e) if e.status == Some(403) && round < FRESH_URLS => {
                    tracing::info!(volume = %label, "an upload URL was refused (expired?); asking for fresh ones");
                    round += 1;
                    continue 'fresh;
                }
                Err(e) => return Err(PublishError::api(&label, "PUT", &e)),
            }
            sent += file.size;
            progress(sent, total);
        }
        return Ok(session.upload_session_id);
    }
}
