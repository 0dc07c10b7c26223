//! Sending a version: the two protocols a server may speak, behind one facade that knows nothing of the stage.
//!
//! `/v1` is the three-step upload of CONTRACT.md 7.1 (`v1`), the push flow the platform's own CLI uses is 7.2
//! (`push`, its archive built by `archive`). A mount starts with `/v1`, the API the seed documents. A server that
//! answers its upload call with 404, for a volume whose head it has just shown, has no such route (the platform
//! removed it on 2026-01-10): the mount switches to the push flow and keeps it for its lifetime (`Protocol`, owned
//! by the publisher thread). When the volume itself is gone, that 404 is the deletion, and nothing is switched or
//! pushed: a push would create the volume again under its name.
//!
//! Everything here takes plain values (the volume's id, name and staging directory, the manifest) and reports
//! progress through a callback, as mountpoint-s3's uploader gets a bucket and a key and never the filesystem:
//! the publisher decides what to send and records the outcome, this module only sends it.

mod archive;
mod push;
mod target;
mod v1;

use std::cell::Cell;

use super::error::PublishError;
use super::manifest::ManifestFile;
use crate::api::models::{CommitRequest, PushCommitRequest, StorageKind};
use crate::api::{ApiError, Vm0Api};
use target::push_files_of;
pub use target::{Progress, Sent, Target};

/// The upload protocol a mount speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `POST …/upload`, a PUT per file, `POST …/commit` (CONTRACT.md 7.1).
    #[default]
    V1,
    /// `POST /api/storages/prepare`, PUT the archive and the manifest, `POST /api/storages/commit` (7.2).
    Push,
}

/// Sends the files of `manifest` with the mount's protocol, switching to the push flow for good when the server
/// has no `/v1` upload.
pub fn send(
    api: &dyn Vm0Api,
    target: &Target,
    manifest: &[ManifestFile],
    protocol: &Cell<Protocol>,
    progress: Progress,
) -> Result<Sent, PublishError> {
    if protocol.get() == Protocol::V1 {
        match v1::upload_all(api, target, manifest, progress) {
            Err(e) if e.errno == libc::ENOENT && e.step == "upload" => {
                server_head(api, target)?;
                tracing::info!(volume = %target.label(),
                    "the server has no /v1 upload (404): this mount publishes with the storage push flow from now on");
                protocol.set(Protocol::Push);
            }
            other => return other.map(|session| Sent::V1 { session }),
        }
    }
    push::push_files(api, target, manifest, progress)
}

/// Commits what was sent: the new version's id.
pub fn commit(
    api: &dyn Vm0Api,
    target: &Target,
    sent: Sent,
    manifest: &[ManifestFile],
    message: String,
) -> Result<String, ApiError> {
    match sent {
        Sent::V1 { session } => {
            let request = CommitRequest {
                upload_session_id: session,
                message: Some(message),
            };
            api.commit(StorageKind::Volume, target.storage_id, &request)
                .map(|v| v.id)
        }
        Sent::Push { version_id } => {
            let request = PushCommitRequest {
                storage_name: target.name.to_string(),
                storage_type: StorageKind::Volume.push_type().into(),
                version_id,
                files: push_files_of(manifest),
                message: Some(message),
            };
            api.commit_push(&request).map(|c| c.version_id)
        }
    }
}

/// The head of the volume on the server now, and whether it has files; a volume deleted there is an error that
/// keeps the changes.
pub fn server_head(
    api: &dyn Vm0Api,
    target: &Target,
) -> Result<(Option<String>, bool), PublishError> {
    match api.get_storage(StorageKind::Volume, target.storage_id) {
        Ok(server) => Ok((server.current_version_id, server.file_count > 0)),
        Err(e) if e.status == Some(404) => Err(PublishError {
            errno: libc::ENOENT,
            message: format!(
                "{label} was deleted on the server; its staged changes are kept on this machine and not \
                 published. `vm0fs discard` on the volume's path drops them",
                label = target.label()
            ),
            retryable: false,
            step: "head check",
        }),
        Err(e) => Err(PublishError::api(&target.label(), "head check", &e)),
    }
}
