//! Space reclamation: which Syrups the partition's live Candies really use, and moving the live
//! Parts out of Syrups that are mostly dead, so that deleted and overwritten bytes are given back
//! within a bounded time (SPEC §5, GC).
//!
//! A Syrup is only ever deleted whole, by the partition that created it, once no partition of
//! the Box references it (`Engine::gc`). Without reclamation a Syrup holding one live Candy among
//! gigabytes of dead ones is kept forever. So:
//! 1. A **live scan** walks the partition's live Candies (the newest version of each key, as a
//!    listing sees them) and sums, per Syrup, the bytes their Parts use there. Its Syrup set
//!    replaces the superset kept by tables and memtables, which still name every overwritten and
//!    deleted version until compaction.
//! 2. An own Syrup whose live bytes are under `syrup_live_ratio_min` of its size is
//!    **condemned**; so is the active Syrup once it is wholly dead, or at least
//!    `syrup_compact_bytes_min` large and mostly dead (it is retired first: the next write rolls
//!    a new one).
//! 3. Every partition **relocates** the live Parts it has in a condemned Syrup (its own, and those
//!    other partitions condemned and published, since copy and rename share Syrups): it reads
//!    them, verified, writes them into its active Syrup, and commits the same version (same stamp)
//!    with the new Parts, only if the key still holds that version.
//! 4. Once no live locator of any partition points into it, the Syrup leaves every published
//!    reference set and its creator's GC deletes it after the grace period.
//!
//! Invariants:
//! - The referenced set never misses a Syrup a live locator uses: a scan reads the committed
//!   state page by page, and every locator committed after the scan started is noted in `added`
//!   (which stays part of the set until a later scan has started and finished); queued commits,
//!   open writers, uploads and the active Syrup are added as before.
//! - A relocation changes no version: the stamp, metadata, size and checksum stay; the bytes are
//!   the verified bytes of the old Parts (a Part that fails its checksum is not moved).
//! - A relocation commits only if the key's current version (queue included) is the one read, in
//!   the same synchronous step that queues it.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{commit::Op, write::BodyStream, CandyReader, Engine, ListOptions};
use crate::{
    error::{Error, Result},
    locator::{CandyBody, CandyLocator, Kind},
    storage::{Storage, StorageFile},
    types::SyrupId,
};

/// Live Candies read per page of a scan (one synchronous step each; the scan yields between).
const SCAN_PAGE_ENTRIES: usize = 1024;

/// What the reclamation of one partition knows and is doing.
#[derive(Debug, Default)]
pub(crate) struct ReclaimState {
    /// The last complete live scan.
    last: Option<LiveScan>,
    /// Syrups of every locator committed since the running scan started (or, when none runs,
    /// since the last one started).
    added: BTreeSet<SyrupId>,
    /// While a scan runs: what `added` held when it started.
    added_before: BTreeSet<SyrupId>,
    /// A scan is running.
    scanning: bool,
    /// Locators committed so far (a partition unchanged since its last scan is not scanned again).
    commits: u64,
    /// `commits` when the last complete scan started.
    commits_at_scan: Option<u64>,
    /// When the last complete scan started (engine clock, ms).
    scanned_ms: u64,
    /// Own Syrups condemned after the last scan: published so that every partition moves its
    /// live Parts out of them.
    condemned: BTreeSet<SyrupId>,
}

impl ReclaimState {
    /// Notes a locator applied to the memtable.
    pub(crate) fn committed(&mut self, locator: &CandyLocator) {
        self.commits += 1;
        self.added.extend(locator.syrups());
    }

    /// Every Syrup the last scan found live, with what was committed since it started; `None`
    /// before the first scan.
    fn live_syrups(&self) -> Option<BTreeSet<SyrupId>> {
        let last = self.last.as_ref()?;
        let mut out: BTreeSet<SyrupId> = last.bytes.keys().copied().collect();
        out.extend(self.added.iter().copied());
        out.extend(self.added_before.iter().copied());
        Some(out)
    }
}

/// The result of a live scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveScan {
    /// Per Syrup: the bytes (payload and chunk trailers) that live Candies and in-flight upload
    /// parts of this partition use in it.
    pub bytes: BTreeMap<SyrupId, u64>,
}

/// What one reclamation pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReclaimReport {
    /// A live scan ran.
    pub scanned: bool,
    /// The active Syrup was retired (mostly dead and large enough).
    pub retired_active: bool,
    /// Own Syrups condemned now.
    pub condemned: usize,
    /// Candies whose Parts were moved.
    pub relocated: u64,
    /// Bytes written by the moves.
    pub relocated_bytes: u64,
}

/// A Part's verified bytes as a body to store again.
struct ReaderBody(CandyReader);

impl BodyStream for ReaderBody {
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        self.0.next().transpose()
    }
}

impl<S: Storage> Engine<S> {
    /// Own Syrups condemned by the last scan (to publish with the partition's references).
    pub fn condemned_syrups(&self) -> BTreeSet<SyrupId> {
        self.inner.state.borrow().reclaim.condemned.clone()
    }

    /// The last complete live scan, if any.
    pub fn last_live_scan(&self) -> Option<LiveScan> {
        self.inner.state.borrow().reclaim.last.clone()
    }

    /// Every Syrup the live locators use by the last scan, plus what was committed since; `None`
    /// before the first scan.
    pub(crate) fn live_syrups(&self) -> Option<BTreeSet<SyrupId>> {
        self.inner.state.borrow().reclaim.live_syrups()
    }

    /// One reclamation pass: a live scan when the partition changed and the last scan is older
    /// than `reclaim_scan_interval_ms` (or `force`), then retiring a mostly dead active Syrup,
    /// condemning own Syrups under the live ratio, and moving this partition's live Parts out of
    /// every condemned Syrup — its own and `foreign_condemned` — up to
    /// `relocate_bytes_per_pass` bytes.
    ///
    /// # Errors
    /// I/O failures and corruption met while scanning; `Busy`; `NoSpace`.
    pub async fn reclaim(&self, foreign_condemned: &BTreeSet<SyrupId>, force: bool) -> Result<ReclaimReport> {
        self.check_usable()?;
        let mut report = ReclaimReport::default();
        let due = {
            let st = self.inner.state.borrow();
            let r = &st.reclaim;
            let changed = r.commits_at_scan != Some(r.commits);
            let old = self.now_ms().saturating_sub(r.scanned_ms) >= self.inner.config.reclaim_scan_interval_ms;
            !r.scanning && changed && (old || force)
        };
        if due {
            self.scan_live().await?;
            report.scanned = true;
            report.retired_active = self.retire_active_if_dead();
            report.condemned = self.condemn().await?;
        }
        let mut doomed = self.condemned_syrups();
        doomed.extend(foreign_condemned.iter().copied());
        if !doomed.is_empty() {
            self.relocate_out_of(&doomed, &mut report).await?;
        }
        Ok(report)
    }

    /// Scans the live Candies and records the bytes they (and upload parts) use per Syrup.
    async fn scan_live(&self) -> Result<()> {
        let now = self.now_ms();
        let commits = {
            let mut st = self.inner.state.borrow_mut();
            let r = &mut st.reclaim;
            r.scanning = true;
            r.added_before = std::mem::take(&mut r.added);
            r.commits
        };
        let scanned = self.scan_pages().await;
        let mut st = self.inner.state.borrow_mut();
        let r = &mut st.reclaim;
        r.scanning = false;
        match scanned {
            Ok(mut scan) => {
                for u in self.inner.manifest.state().uploads.values() {
                    for p in u.parts.values() {
                        for s in &p.part.segments {
                            *scan.bytes.entry(s.syrup).or_insert(0) += s.stored_len(p.part.chunk_size);
                        }
                    }
                }
                let r = &mut st.reclaim;
                r.added_before.clear();
                r.last = Some(scan);
                r.commits_at_scan = Some(commits);
                r.scanned_ms = now;
                Ok(())
            }
            Err(e) => {
                // Nothing is forgotten: what was added before this scan stays in the set.
                let before = std::mem::take(&mut r.added_before);
                r.added.extend(before);
                Err(e)
            }
        }
    }

    async fn scan_pages(&self) -> Result<LiveScan> {
        let mut scan = LiveScan::default();
        let mut opts = ListOptions::default();
        loop {
            self.check_usable()?;
            let (page, next) = self.live_page(&opts, SCAN_PAGE_ENTRIES)?;
            for (_, l) in &page {
                for p in l.parts() {
                    for s in &p.segments {
                        *scan.bytes.entry(s.syrup).or_insert(0) += s.stored_len(p.chunk_size);
                    }
                }
            }
            match next {
                Some(cursor) => opts.start_after = Some(cursor),
                None => return Ok(scan),
            }
            crate::runtime::yield_now().await;
        }
    }

    /// The live bytes the last scan found in `id`.
    fn live_bytes(&self, id: SyrupId) -> u64 {
        let st = self.inner.state.borrow();
        st.reclaim.last.as_ref().and_then(|s| s.bytes.get(&id).copied()).unwrap_or(0)
    }

    /// Retires the active Syrup when nobody writes to it and it is wholly dead, or large enough
    /// and mostly dead: the next write rolls a new one, and this one can be condemned.
    fn retire_active_if_dead(&self) -> bool {
        let cfg = &self.inner.config;
        let Some((id, size)) = self.inner.syrups.active() else {
            return false;
        };
        let live = self.live_bytes(id);
        // Wholly dead, it goes at any size (nothing to move); partly dead, once large enough to
        // be worth a new Syrup.
        let dead = live == 0 && size > crate::syrup::SYRUP_HEADER_BYTES;
        if !dead && (size < cfg.syrup_compact_bytes_min || !mostly_dead(live, size, cfg.syrup_live_ratio_min)) {
            return false;
        }
        self.inner.syrups.retire_active(id)
    }

    /// Condemns own Syrups (not active, not being written) whose live bytes are under the live
    /// ratio of their size.
    ///
    /// # Returns
    /// How many were condemned that were not before.
    async fn condemn(&self) -> Result<usize> {
        let active = self.inner.syrups.active().map(|(id, _)| id);
        let candidates: Vec<SyrupId> = self
            .own_syrups()
            .into_iter()
            .filter(|id| Some(*id) != active && !self.inner.syrups.is_written(*id))
            .collect();
        let ratio = self.inner.config.syrup_live_ratio_min;
        let mut condemned = BTreeSet::new();
        for id in candidates {
            let size = match self.inner.syrups.file(id).await {
                Ok(f) => f.len().await?,
                // Gone already (or unreadable): nothing to move from here.
                Err(_) => continue,
            };
            if mostly_dead(self.live_bytes(id), size, ratio) {
                condemned.insert(id);
            }
        }
        let mut st = self.inner.state.borrow_mut();
        let new = condemned.difference(&st.reclaim.condemned).count();
        st.reclaim.condemned = condemned;
        Ok(new)
    }

    /// Moves this partition's live Parts out of the `doomed` Syrups, key by key, up to the
    /// per-pass byte budget.
    async fn relocate_out_of(&self, doomed: &BTreeSet<SyrupId>, report: &mut ReclaimReport) -> Result<()> {
        let budget = self.inner.config.relocate_bytes_per_pass;
        let mut opts = ListOptions::default();
        loop {
            self.check_usable()?;
            let (page, next) = self.live_page(&opts, SCAN_PAGE_ENTRIES)?;
            for (key, l) in page {
                if !l.parts().iter().any(|p| p.segments.iter().any(|s| doomed.contains(&s.syrup))) {
                    continue;
                }
                match self.relocate(&key, l, doomed).await {
                    Ok(Some(moved)) => {
                        report.relocated += 1;
                        report.relocated_bytes += moved;
                    }
                    Ok(None) => {}
                    // Damaged bytes stay where they are (a read reports them); the rest moves on.
                    Err(e @ (Error::ChecksumMismatch { .. } | Error::Corrupt(_))) => {
                        tracing::warn!(partition_dir = %self.inner.config.partition_dir.display(), key = %String::from_utf8_lossy(&key), error = %e, "space reclamation: a damaged Candy was not moved");
                    }
                    Err(e) => return Err(e),
                }
                if report.relocated_bytes >= budget {
                    return Ok(());
                }
            }
            match next {
                Some(cursor) => opts.start_after = Some(cursor),
                None => return Ok(()),
            }
            crate::runtime::yield_now().await;
        }
    }

    /// Moves the Parts of `key`'s version `l` that lie in `doomed` Syrups into the active Syrup
    /// and commits the same version with the new Parts, if the key still holds it.
    ///
    /// # Returns
    /// The bytes written, or `None` when the key changed meanwhile (nothing committed).
    async fn relocate(&self, key: &[u8], l: CandyLocator, doomed: &BTreeSet<SyrupId>) -> Result<Option<u64>> {
        let CandyBody::Parts(old_parts) = &l.body else { return Ok(None) };
        let mut parts = Vec::with_capacity(old_parts.len());
        let mut writers = Vec::new();
        let mut moved = 0u64;
        for p in old_parts {
            if !p.segments.iter().any(|s| doomed.contains(&s.syrup)) {
                parts.push(p.clone());
                continue;
            }
            let one = CandyLocator {
                size: p.length,
                checksum: p.checksum,
                body: CandyBody::Parts(vec![p.clone()]),
                ..l.clone()
            };
            let read = self.read_locator(one, None).await?;
            let stored = self.store_body(&mut ReaderBody(read.body), Some(p.length), false).await?;
            let CandyBody::Parts(new_parts) = stored.body else {
                return Err(Error::invalid("part", "a relocated part is never inline"));
            };
            moved += p.length;
            parts.extend(new_parts);
            writers.extend(stored.writers);
        }
        let relocated = CandyLocator { body: CandyBody::Parts(parts), ..l.clone() };
        let (done, _) = self
            .commit_with(|e| {
                let current = e.current_locator(key)?;
                let same = current.is_some_and(|c| c.hlc == l.hlc && c.kind == Kind::Put);
                // Queued, the new Parts are referenced by the commit queue; the writers may go.
                drop(writers);
                if same {
                    Ok((vec![Op::Relocate { key: Bytes::copy_from_slice(key), locator: relocated }], true))
                } else {
                    Ok((Vec::new(), false))
                }
            })
            .await?;
        Ok(done.then_some(moved))
    }
}

/// True when `live` bytes are under `ratio` of `size`.
fn mostly_dead(live: u64, size: u64, ratio: f64) -> bool {
    (live as f64) < ratio * size as f64
}
