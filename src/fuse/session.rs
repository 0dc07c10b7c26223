//! Making the mount: the options the kernel and `fusermount3` get, the adapter and its worker pool, the fallback
//! to a plain mount when auto-unmount cannot be had, and the core's handle on the kernel's caches
//! (`KernelInvalidator`). Apart from the request handlers so that `mod.rs` reads as the requests alone.

use std::path::Path;
use std::sync::Arc;

use fuser::{Config, INodeNo, MountOption, Session, SessionACL};

use super::counters::Counters;
use super::pool::WorkerPool;
use super::{FuseAdapter, MAX_WORKERS, fusermount};
use crate::fs::Vm0Fs;

/// How the mount is made (the flags of `vm0fs mount`).
pub struct MountConfig {
    /// Let other users see the mount (`--allow-other`); otherwise only its owner and root can.
    pub allow_other: bool,
    /// Ask `fusermount3` to unmount when the process dies, even by `kill -9`.
    pub auto_unmount: bool,
    /// Mount read-only (`--read-only`): the kernel refuses every write, runs/new and ctl included, with EROFS.
    pub read_only: bool,
    /// Programs in the mount cannot be run (`--noexec`).
    pub noexec: bool,
}

/// Mounts `fs` at `mountpoint`; the mount is live when this returns (fuser completes INIT before its session exists).
pub fn mount(
    fs: Arc<Vm0Fs>,
    mountpoint: &Path,
    config: &MountConfig,
) -> std::io::Result<Session<FuseAdapter>> {
    let mut options = vec![
        MountOption::FSName("vm0fs".into()),
        MountOption::Subtype("vm0fs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if config.read_only {
        options.push(MountOption::RO);
    }
    if config.noexec {
        options.push(MountOption::NoExec);
    }
    let mut fuse_config = Config::default();
    // `Owner`: the kernel lets only the owner (and fuser checks the uid too); `All` with `--allow-other`.
    fuse_config.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    fuse_config.n_threads = Some(2);
    let counters = Arc::new(Counters::default());
    let adapter = FuseAdapter {
        fs: fs.clone(),
        pool: WorkerPool::new(MAX_WORKERS),
        counters: counters.clone(),
        passthrough: false,
        backings: Arc::default(),
    };
    let session = if config.auto_unmount {
        // Auto-unmount goes through our own `fusermount3` call (see `fusermount`), which needs no allow_other.
        let mut helper_options: Vec<String> = options.iter().map(option_text).collect();
        if config.allow_other {
            helper_options.push("allow_other".into());
        }
        let fd = fusermount::mount(mountpoint, &helper_options, !config.allow_other)?;
        let acl = fuse_config.acl;
        Session::from_fd(adapter, fd, acl, fuse_config)?
    } else {
        fuse_config.mount_options = options;
        Session::new(adapter, mountpoint, &fuse_config)?
    };
    // Only the adapter that serves gets shown: a failed attempt (no `fusermount3`, then a plain mount) must not
    // leave its never-counting counters in the core's place.
    fs.set_request_counts(counters);
    Ok(session)
}

/// A mount option as `fusermount3 -o` takes it.
fn option_text(option: &MountOption) -> String {
    match option {
        MountOption::FSName(name) => format!("fsname={name}"),
        MountOption::Subtype(subtype) => format!("subtype={subtype}"),
        MountOption::DefaultPermissions => "default_permissions".into(),
        MountOption::NoAtime => "noatime".into(),
        MountOption::NoDev => "nodev".into(),
        MountOption::NoSuid => "nosuid".into(),
        MountOption::RO => "ro".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The core's way to tell the kernel that cached attributes are stale: fuser's `Notifier`.
pub struct KernelInvalidator(pub fuser::Notifier);

impl crate::fs::Invalidator for KernelInvalidator {
    fn attributes_changed(&self, ino: u64) {
        // Attributes only (a negative offset; offset 0 with length 0 would drop every cached page too): invalidating
        // the pages of an open file can deadlock in the kernel, and live files are read with direct I/O anyway.
        if let Err(e) = self.0.inval_inode(INodeNo(ino), -1, 0) {
            tracing::debug!("invalidating inode {ino}: {e}");
        }
    }
}
