//! What both protocols share: the volume a version is sent for, the progress callback, what a send leaves for the
//! commit, and the files as the push flow declares them.

use crate::api::models::PushFile;
use crate::stage::layout::VolumeLayout;
use crate::stage::manifest::ManifestFile;

/// How many times one publish asks for fresh upload URLs after a 403 from a PUT.
pub(super) const FRESH_URLS: u32 = 3;

/// The volume a version is sent for.
pub struct Target<'a> {
    pub storage_id: &'a str,
    pub name: &'a str,
    /// Where the push flow builds its archive and manifest.
    pub staging: &'a VolumeLayout,
}

impl Target<'_> {
    /// `volumes/<name>`.
    pub fn label(&self) -> String {
        format!("volumes/{}", self.name)
    }
}

/// Bytes sent of all that is sent, reported as the upload goes.
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// What was sent, for the commit that follows.
pub enum Sent {
    V1 { session: String },
    Push { version_id: String },
}

pub(super) fn push_files_of(manifest: &[ManifestFile]) -> Vec<PushFile> {
    manifest
        .iter()
        .map(|f| PushFile {
            path: f.path.clone(),
            hash: f.sha256.clone(),
            size: f.size,
        })
        .collect()
}
