//! The data directory's free space: a full disk is a state of the node, not a failure.
//!
//! A thread of its own (never a shard's core) reads the file system's free space (`statvfs`)
//! every `DISK_WATCH_INTERVAL` and keeps it in [`DiskState`]. Below `disk_free_min_bytes` the
//! node is **full**: puts and uploads are refused with `NoSpace` before they write anything, while
//! reads, deletes, copies, renames, flushes, compactions, space reclamation and GC go on in the
//! reserve that the threshold keeps. Once free space is back above the threshold (plus a margin,
//! so the state does not flap) writes resume by themselves.
//!
//! A **ballast file** (`<data>/BALLAST`, `disk_ballast_bytes`, allocated with `fallocate`) is a
//! second reserve: it is released when free space falls under half the threshold (something
//! else is filling the disk, or the reserve is being eaten), and at start-up when the disk is
//! already full, so recovery, deletes and GC can always write their few bytes; it is allocated
//! again once there is room for it and more.
//!
//! Invariants:
//! - Only the watcher (and start-up, before any shard runs) writes the state; shards read it with
//!   one relaxed atomic load per write request.
//! - The state changes are logged once per change, never per request.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

/// How often the watcher reads the free space.
pub const DISK_WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// The ballast file's name in the data directory.
pub const BALLAST_FILE: &str = "BALLAST";

/// Free space as last read, and whether the node is full.
#[derive(Debug, Default)]
pub struct DiskState {
    /// Bytes available to the node's user on the data directory's file system.
    pub free_bytes: AtomicU64,
    /// Free space is under `disk_free_min_bytes`: puts and uploads are refused.
    pub full: AtomicBool,
    /// The threshold, for messages.
    pub free_min_bytes: AtomicU64,
    /// Writes refused because the disk was full.
    pub refusals: AtomicU64,
}

impl DiskState {
    /// True while puts and uploads are refused.
    pub fn is_full(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// The `/readyz` line while full.
    pub fn degraded(&self) -> Option<String> {
        self.is_full().then(|| {
            format!(
                "disk full: {} bytes free, under disk_free_min_bytes {}; puts and uploads are refused, reads and deletes work",
                self.free_bytes.load(Relaxed),
                self.free_min_bytes.load(Relaxed)
            )
        })
    }
}

/// The watcher's settings.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Below this many free bytes the node is full.
    pub free_min_bytes: u64,
    /// Size of the ballast file (0: none).
    pub ballast_bytes: u64,
}

impl DiskConfig {
    fn ballast(&self) -> PathBuf {
        self.data_dir.join(BALLAST_FILE)
    }

    /// Free space needed to leave the full state: the threshold plus a margin.
    fn resume_bytes(&self) -> u64 {
        self.free_min_bytes.saturating_add((self.free_min_bytes / 10).max(1024 * 1024))
    }
}

/// Bytes available to this user on the file system holding `dir`.
///
/// # Errors
/// The `statvfs` error.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Reads the free space once and sets the state; at start-up (before recovery) it releases the
/// ballast when the disk is already full, so that recovery can write.
pub fn check(cfg: &DiskConfig, state: &DiskState, starting: bool) {
    state.free_min_bytes.store(cfg.free_min_bytes, Relaxed);
    let free = match free_bytes(&cfg.data_dir) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(dir = %cfg.data_dir.display(), error = %e, "could not read the free space of the data directory");
            return;
        }
    };
    state.free_bytes.store(free, Relaxed);
    let ballast = cfg.ballast();
    let has_ballast = ballast.exists();
    if free < cfg.free_min_bytes {
        if has_ballast && (starting || free < cfg.free_min_bytes / 2) {
            match std::fs::remove_file(&ballast) {
                Ok(()) => tracing::warn!(
                    bytes = cfg.ballast_bytes,
                    free,
                    "released the ballast file: the disk is nearly full; deletes and GC keep their room"
                ),
                Err(e) => tracing::warn!(file = %ballast.display(), error = %e, "could not release the ballast file"),
            }
            if let Ok(f) = free_bytes(&cfg.data_dir) {
                state.free_bytes.store(f, Relaxed);
            }
        }
        if !state.full.swap(true, Relaxed) {
            tracing::warn!(
                free,
                disk_free_min_bytes = cfg.free_min_bytes,
                "disk full: puts and uploads are refused with NoSpace until space is freed; reads, deletes and GC go on"
            );
        }
    } else if free >= cfg.resume_bytes() && state.full.swap(false, Relaxed) {
        tracing::info!(free, "disk space recovered: puts and uploads are accepted again");
    }
    let free = state.free_bytes.load(Relaxed);
    if cfg.ballast_bytes > 0
        && !has_ballast
        && !state.is_full()
        && free >= cfg.resume_bytes().saturating_add(cfg.ballast_bytes.saturating_mul(2))
    {
        if let Err(e) = allocate_ballast(&ballast, cfg.ballast_bytes) {
            tracing::warn!(file = %ballast.display(), error = %e, "could not allocate the ballast file");
            let _ = std::fs::remove_file(&ballast);
        }
    }
}

fn allocate_ballast(path: &Path, bytes: u64) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, bytes)?;
    f.sync_all()
}

/// Starts the watcher thread; it runs for the life of the process.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn watch(cfg: DiskConfig, state: Arc<DiskState>) -> std::io::Result<()> {
    std::thread::Builder::new().name("candybox-disk".into()).spawn(move || loop {
        std::thread::sleep(DISK_WATCH_INTERVAL);
        check(&cfg, &state, false);
    })?;
    Ok(())
}
