//! A published tree becomes its version's cached archive: nothing is downloaded again, and the stage starts over
//! from the version with only what a version cannot hold left journaled over it.

use crate::sync::Locked;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::journal::Record;
use super::manifest::{LocalOnly, ManifestFile};
use super::overlay::Content;
use super::records::over_version;
use super::state::State;
use super::status::{ShapeNote, short};
use super::volume::VolumeStage;

impl VolumeStage {
    /// After the whole tree was published as `version`: its files become the version's cached archive (nothing is
    /// downloaded again) and the stage starts over from `version` with nothing staged; what a version cannot hold
    /// (symlinks, empty directories, modes) stays journaled over it, and with nothing of the kind the journal
    /// goes and the volume is read as any version is. Skipped while a file is open for writing (a later publish
    /// adopts) and for a version without files (it has no archive).
    ///
    /// The order keeps the cache right and every change whatever the moment of a crash: the entry is built and
    /// sealed beside the cache, its files hard links to the staged ones (`ArchiveCache::adopt`); the journal is
    /// rewritten to start from `version`, so that no record names a staged file any more (a crash from here
    /// replays onto `version`, read from the cache or downloaded, and deletes the staged files as orphans; before
    /// it, the cache deletes the unfinished entry at open, so the journal never names a file the cache shares);
    /// the entry is renamed into the cache; the staged files are deleted.
    pub(super) fn adopt(&self, st: &mut State, version: &str, manifest: &[ManifestFile]) {
        if st.writers > 0 || st.journal.is_none() || st.tree.files().next().is_none() {
            return;
        }
        // The version is the base already (the content did not change: on the push flow, a change of modes,
        // links or times alone): its tree is cached as the server gave it, and the journal already makes ours
        // over it. Adopting would journal our tree over a files-only version instead, which the cached tree is not.
        if st.base_version.as_deref() == Some(version) {
            return;
        }
        if *self.shape.locked() == ShapeNote::Published && !LocalOnly::of(&st.tree).is_empty() {
            self.retire_for_the_pushed_archive(st, version);
            return;
        }
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        let label = format!("{}@{}", self.label(), short(version));
        let files: Vec<(String, PathBuf)> = st
            .tree
            .files()
            .map(|(p, c)| (p.to_string(), st.backing(&self.layout, c)))
            .collect();
        let hashes: HashMap<String, String> = manifest
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect();
        cache.hold(version, true);
        let adoption = match cache.adopt(version, &files, &hashes) {
            Ok(a) => a,
            Err(e) => {
                cache.hold(version, false);
                tracing::warn!(volume = %label, error = %e,
                    "the published files could not become the version's cached archive; they stay staged");
                return;
            }
        };
        let (tree, local) = over_version(&st.tree);
        let mut records = vec![Record::Base {
            name: self.name.clone(),
            version: Some(version.to_string()),
        }];
        records.extend(local.iter().cloned());
        let rewritten = match st.journal.as_mut() {
            Some(j) => j.rewrite(&self.layout.journal(), &records),
            None => Ok(()),
        };
        let root = rewritten.and_then(|()| match adoption {
            Some(a) => a.finish(),
            None => cache
                .lookup(version)
                .ok_or_else(|| io::Error::other("the version left the cache")),
        });
        let root = match root {
            Ok(root) => root,
            Err(e) => {
                cache.hold(version, false);
                let why = format!("adopting the published files as {label} failed ({e})");
                tracing::error!(volume = %self.label(), "{why}; changes are refused until the next mount");
                st.broken = Some(why);
                return;
            }
        };
        let old = std::mem::replace(&mut st.tree, tree);
        st.base_root = Some(root);
        st.base_hashes = Arc::new(hashes);
        if let Some(v) = st.base_version.replace(version.to_string()) {
            cache.hold(&v, false);
        }
        for (_, content) in old.files() {
            if let Content::Staged(_) = content {
                self.forget_content(content);
            }
        }
        if local.is_empty() {
            st.journal = None;
            cache.hold(version, false);
            if let Err(e) = self.layout.remove() {
                tracing::warn!(volume = %self.label(), error = %e,
                    "could not delete the empty staging directory; the next mount does");
            }
        }
        tracing::info!(volume = %label, files = files.len(), "the published files are now the version's cached archive");
    }
}

impl VolumeStage {
    /// The push flow published the tree with what an adopted entry cannot hold (symlinks, empty directories,
    /// modes: an adoption links files only, and would journal the rest over a version that holds it, which a
    /// discard would then lose). So nothing is adopted: the staged changes are dropped, the stage retires, and the
    /// volume's next use makes a fresh one over `version`, read from its archive as the server gives it back.
    fn retire_for_the_pushed_archive(&self, st: &mut State, version: &str) {
        let bytes = st.staged_bytes(&self.layout);
        if let Err(e) = self.layout.remove() {
            tracing::warn!(volume = %self.label(), error = %e,
                "could not delete the published staging directory; its changes stay journaled");
            return;
        }
        st.journal = None;
        st.discarded = true;
        if let Some(v) = st.base_version.take() {
            self.hold_base(&v, false);
        }
        self.space.release(bytes);
        tracing::info!(volume = %self.label(), version = short(version),
            "published with symlinks, empty directories or modes: the volume is read from that version's archive \
             from now on");
    }
}
