//! The filesystem's gateway to the stage: which `VolumeStage` a volume's name or storage id is, a field of
//! `Vm0Fs` like `meta`.
//!
//! A volume's head view is its stage, opened over the head the API lists (`meta`) and following it while nothing
//! is staged. Keeping that resolution here, in one small type that owns the stage (or why it could not be
//! opened), leaves the namespace code with one call per request and no second route to the same volume.

use std::sync::Arc;

use super::error::{Error, Result};
use super::meta::Meta;
use super::tree::version_of;
use crate::api::Vm0Api;
use crate::api::models::StorageKind;
use crate::cache::ArchiveCache;
use crate::stage::{Stage, StageConfig, VolumeStage};

const KIND: StorageKind = StorageKind::Volume;

/// The writable volumes of a mount.
pub struct Volumes {
    /// The staging area, or why it could not be opened.
    stage: std::result::Result<Arc<Stage>, String>,
    meta: Arc<Meta>,
}

impl Volumes {
    /// Opens the staging area in the cache directory; a publish that moves a head makes `meta` list the volumes
    /// again, so that the head view reads the new version.
    pub fn open(
        config: StageConfig,
        api: Arc<dyn Vm0Api>,
        cache: &Arc<ArchiveCache>,
        meta: &Arc<Meta>,
    ) -> Volumes {
        let listing = Arc::downgrade(meta);
        let heads_moved = Arc::new(move || {
            if let Some(meta) = listing.upgrade() {
                meta.storages_changed(KIND);
            }
        });
        let stage = Stage::open(config, api, cache.clone(), heads_moved).map_err(|e| {
            let why = format!(
                "the staging area in {} cannot be opened: {e}",
                cache.dir().display()
            );
            tracing::error!("{why}");
            why
        });
        Volumes {
            stage,
            meta: meta.clone(),
        }
    }

    pub fn stage(&self) -> Result<&Arc<Stage>> {
        self.stage
            .as_ref()
            .map_err(|why| Error::new(libc::EIO, format!("volumes are unavailable: {why}")))
    }

    /// The stage of volume `name`, following its head while nothing is staged.
    pub fn by_name(&self, name: &str) -> Result<Arc<VolumeStage>> {
        let storage = self.meta.storage(KIND, name)?;
        let version = version_of(&self.meta, KIND, name, None)?;
        let head = version.as_ref().map(|v| v.id.as_str());
        let has_files = version.as_ref().is_some_and(|v| v.has_files);
        Ok(self.stage()?.volume(&storage.id, name, head, has_files)?)
    }

    /// The stage of the volume whose storage id is `storage_id`, if it is open already (memory only).
    pub fn loaded(&self, storage_id: &str) -> Result<Option<Arc<VolumeStage>>> {
        Ok(self.stage()?.loaded(storage_id))
    }

    /// The stage of the volume whose storage id is `storage_id`.
    pub fn by_id(&self, storage_id: &str) -> Result<Arc<VolumeStage>> {
        if let Some(v) = self.loaded(storage_id)? {
            return Ok(v);
        }
        let storages = self.meta.storages(KIND)?;
        let storage = storages
            .iter()
            .find(|s| s.id == storage_id)
            .ok_or_else(|| Error::not_found(format!("volume {storage_id}")))?;
        self.by_name(&storage.name)
    }
}
