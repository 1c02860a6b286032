//! Flush, leveled compaction, garbage collection, and manifest edits.
//!
//! Invariants:
//! - A table is durable (written, fdatasync'd, directory synced) before the manifest edit that
//!   makes it live; the edit that adds a flushed table also advances the log number, atomically.
//! - L0 is compacted whole into L1 once it has `l0_compaction_trigger` tables; a level L ≥ 1 is
//!   compacted one table at a time into L+1 while it exceeds its byte budget. L1+ tables are
//!   disjoint by point keys.
//! - Within a compaction the newest version of a key wins; a version covered by a newer range
//!   tombstone of the inputs is dropped. A point tombstone or range tombstone is dropped only when
//!   the output is the bottommost data for its keys and it is older than the tombstone grace.
//! - Obsolete tables and WALs are deleted only after the GC grace period; unlinking a mapped table
//!   keeps its mapping valid.

use std::{collections::BTreeSet, ops::Bound, rc::Rc};

use super::{Engine, GcReport, TableHandle, Version};
use crate::{
    error::{Corruption, Error, FileKind, Result},
    hlc::Hlc,
    limits,
    locator::{CandyLocator, Kind},
    manifest::{Change, TableRecord},
    memtable::{Memtable, ToFlush},
    storage::{Storage, StorageFile},
    table::{Table, TableOptions, TableWriter},
    types::{RangeTombstone, SyrupId},
    wal,
};

/// The file name of table `number`.
pub fn table_file_name(number: u64) -> String {
    format!("T-{number:06}.sst")
}

/// Parses a table file name.
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("T-")?.strip_suffix(".sst")?.parse().ok()
}

/// What a compaction reads and where it writes.
struct Compaction {
    output_level: usize,
    inputs: Vec<Rc<TableHandle>>,
}

impl<S: Storage> Engine<S> {
    /// Appends one edit to the manifest, durably, then applies it (see [`ManifestLog::edit`]);
    /// an I/O failure stops the partition.
    pub(crate) async fn log_edit(&self, changes: Vec<Change>) -> Result<()> {
        self.check_usable()?;
        let floor = || self.inner.state.borrow().clock.last();
        match self.inner.manifest.edit(changes, floor).await {
            Err(e @ Error::Io(_)) => self.stop(e),
            r => r,
        }
    }

    pub(crate) fn alloc_file_number(&self) -> u64 {
        self.inner.manifest.alloc_file_number()
    }

    fn table_options(&self) -> TableOptions {
        TableOptions {
            block_bytes_target: self.inner.config.table_block_bytes,
            bloom_bits_per_key: self.inner.config.bloom_bits_per_key,
        }
    }

    /// Writes table bytes durably and opens them through a mapping.
    async fn write_table(&self, number: u64, bytes: Vec<u8>) -> Result<Table> {
        let path = self.inner.config.partition_dir.join(table_file_name(number));
        let len = bytes.len();
        let file = self.inner.storage.create(&path).await?;
        if let Err(e) = file.write_at(bytes, 0).await {
            if e.is_no_space() {
                // Not named by the manifest: give its blocks back now.
                let _ = self.inner.storage.remove(&path).await;
            }
            return Err(e.into());
        }
        file.sync_data().await?;
        let map = file.map(0, len)?;
        Table::open(map).map_err(|e| Error::Corrupt(Corruption::new(FileKind::Table, path, e)))
    }

    /// Freezes the memtable (if it holds anything) and flushes it: what tests and shutdown use to
    /// force everything into tables.
    ///
    /// # Errors
    /// I/O failures (the engine then stops).
    pub async fn flush(&self) -> Result<()> {
        let _m = self.inner.maintenance_lock.lock().await;
        self.check_usable()?;
        // A memtable frozen earlier goes first, then the current one.
        self.flush_imm().await?;
        if self.freeze_memtable(true) {
            self.flush_imm().await?;
        }
        Ok(())
    }

    /// Writes the frozen memtable as an L0 table and makes it live.
    async fn flush_imm(&self) -> Result<()> {
        let Some(ToFlush { mem: imm, end: flushed, seq: flushed_seq }) = self.inner.state.borrow().mem.to_flush()
        else {
            return Ok(());
        };
        assert!(flushed <= self.inner.log.durable_end(), "a flushed position never passes the log's durable end");
        let mut added = None;
        let built = build_from_memtable(&imm, self.table_options()).await?;
        let mut changes = Vec::new();
        if let Some((bytes, meta)) = built {
            let number = self.alloc_file_number();
            let size = bytes.len() as u64;
            let table = match self.write_table(number, bytes).await {
                Ok(t) => t,
                Err(e) => return self.fail(e),
            };
            if let Err(e) = self.inner.storage.sync_dir(&self.inner.config.partition_dir).await {
                return self.fail(e);
            }
            let rec = TableRecord {
                number,
                level: 0,
                size,
                smallest: meta.smallest_key.clone(),
                largest: meta.largest_key.clone(),
                max_hlc: meta.max_hlc,
            };
            changes.push(Change::AddTable(rec.clone()));
            added = Some(Rc::new(TableHandle { rec, table }));
        }
        let next_file = self.inner.manifest.next_file();
        let legacy = self.inner.state.borrow().mem.legacy_wals().to_vec();
        if let Some(newest) = legacy.iter().max() {
            // The first flush since this partition came from v1 WALs holds all they held.
            changes.push(Change::LogNumber(newest + 1));
        }
        changes.push(Change::LogFlushed { position: flushed, seq: flushed_seq, writer: self.inner.log.writer() });
        changes.push(Change::NextFileNumber(next_file));
        self.log_edit(changes).await?;
        let now = self.now_ms();
        {
            let mut st = self.inner.state.borrow_mut();
            if let Some(t) = added {
                let mut v = (*st.version).clone();
                if let Some(l0) = v.levels.first_mut() {
                    l0.insert(0, t);
                }
                st.version = Rc::new(v);
            }
            let retired = st.mem.flushed();
            st.stats.flushes += 1;
            let dir = self.inner.config.partition_dir.clone();
            for n in retired {
                st.obsolete.push((dir.join(wal::file_name(n)), now));
            }
        }
        self.report_need();
        // Segments no partition needs any more go now; a failure here only delays that.
        if let Err(e) = self.inner.log.release().await {
            tracing::warn!(error = %e, "deleting commit log segments failed; the next flush tries again");
        }
        Ok(())
    }

    /// Starts a background flush-and-compact task if none runs.
    pub(crate) fn spawn_background(&self) {
        let engine = self.clone();
        self.inner.background_tasks.set(self.inner.background_tasks.get() + 1);
        crate::runtime::spawn(async move {
            if let Err(e) = engine.maintain().await {
                tracing::warn!(error = %e, "background maintenance failed");
            }
            engine.inner.background_tasks.set(engine.inner.background_tasks.get() - 1);
        });
    }

    /// Flushes a frozen memtable and runs compactions until no level needs one.
    ///
    /// # Errors
    /// I/O failures and corruption met while compacting.
    pub async fn maintain(&self) -> Result<()> {
        let _m = self.inner.maintenance_lock.lock().await;
        self.check_usable()?;
        self.flush_imm().await?;
        if std::mem::take(&mut self.inner.state.borrow_mut().flush_after_open) {
            // What the open replayed goes into a table, so its WALs become obsolete.
            let flushed = async {
                if self.freeze_memtable(true) {
                    self.flush_imm().await?;
                }
                Ok::<(), Error>(())
            }
            .await;
            if let Err(e) = flushed {
                self.inner.state.borrow_mut().flush_after_open = true;
                return Err(e);
            }
        }
        // Commits that landed while the frozen memtable was flushing may have filled the live one;
        // freezing it is only ever attempted after a commit, and a full memtable refuses commits
        // with Busy, so nothing else would freeze it.
        while self.freeze_memtable(false) {
            self.flush_imm().await?;
        }
        while let Some(c) = self.pick_compaction() {
            self.run_compaction(c).await?;
            crate::runtime::yield_now().await;
        }
        Ok(())
    }

    /// Runs compactions until none is needed (tests use it to force the tree's shape).
    ///
    /// # Errors
    /// As [`Engine::maintain`].
    pub async fn compact(&self) -> Result<()> {
        self.maintain().await
    }

    fn level_budget(&self, level: usize) -> u64 {
        let cfg = &self.inner.config;
        let mut b = cfg.level_base_bytes;
        for _ in 1..level {
            b = b.saturating_mul(cfg.level_multiplier);
        }
        b
    }

    fn pick_compaction(&self) -> Option<Compaction> {
        let st = self.inner.state.borrow();
        let v = &st.version;
        let l0 = v.levels.first()?;
        if l0.len() >= self.inner.config.l0_compaction_trigger {
            let mut inputs: Vec<_> = l0.clone();
            let (lo, hi) = span(&inputs);
            inputs.extend(overlapping(v.levels.get(1)?, &lo, &hi));
            return Some(Compaction { output_level: 1, inputs });
        }
        for level in 1..limits::LEVELS_MAX - 1 {
            let tables = v.levels.get(level)?;
            let bytes: u64 = tables.iter().map(|t| t.rec.size).sum();
            if bytes <= self.level_budget(level) || tables.is_empty() {
                continue;
            }
            // Round-robin over the level's key space.
            let cursor = st.compact_cursor.get(level).cloned().unwrap_or_default();
            let pick = tables.iter().find(|t| t.rec.smallest > cursor).or_else(|| tables.first())?.clone();
            let mut inputs = vec![pick.clone()];
            inputs.extend(overlapping(v.levels.get(level + 1)?, &pick.rec.smallest, &pick.rec.largest));
            return Some(Compaction { output_level: level + 1, inputs });
        }
        None
    }

    async fn run_compaction(&self, c: Compaction) -> Result<()> {
        let now = self.now_ms();
        let grace = self.inner.config.tombstone_grace_ms;
        let aged = |h: Hlc| h.physical_ms.saturating_add(grace) <= now;
        let dir = self.inner.config.partition_dir.clone();
        let input_numbers: BTreeSet<u64> = c.inputs.iter().map(|t| t.rec.number).collect();
        let rts: Vec<RangeTombstone> =
            c.inputs.iter().flat_map(|t| t.table.range_tombstones().iter().cloned()).collect();
        // Bottommost: no table outside the inputs, at the input level or below, holds keys the
        // inputs' points or tombstones could cover (tables above hold only newer versions).
        let (bottom_points, bottom_rt) = {
            let st = self.inner.state.borrow();
            let (lo, hi) = span(&c.inputs);
            let others: Vec<&Rc<TableHandle>> = st
                .version
                .levels
                .iter()
                // The input level's other tables count too: an L≥1 table's range tombstone can
                // cover a sibling's older keys.
                .skip(c.output_level.saturating_sub(1))
                .flatten()
                .filter(|t| !input_numbers.contains(&t.rec.number))
                .collect();
            let points = !others.iter().any(|t| t.rec.smallest <= hi && t.rec.largest >= lo);
            let rt_ok: Vec<bool> = rts
                .iter()
                .map(|rt| {
                    !others.iter().any(|t| {
                        t.rec.largest.as_slice() >= rt.start.as_slice()
                            && (rt.end.is_empty() || t.rec.smallest.as_slice() < rt.end.as_slice())
                    })
                })
                .collect();
            (points, rt_ok)
        };
        let mut sources: Vec<std::iter::Peekable<super::read::Source<'static>>> = c
            .inputs
            .iter()
            .map(|t| {
                let path = dir.join(table_file_name(t.rec.number));
                let it = t.table.range(Bound::Unbounded, Bound::Unbounded, false);
                (Box::new(
                    it.map(move |r| r.map_err(|e| Error::Corrupt(Corruption::new(FileKind::Table, path.clone(), e)))),
                ) as super::read::Source<'static>)
                    .peekable()
            })
            .collect();
        let mut outputs: Vec<(Vec<u8>, crate::table::TableMeta)> = Vec::new();
        let mut writer = TableWriter::new(self.table_options());
        let mut processed = 0usize;
        while let Some(super::read::Newest { key, hlc, kind, value }) = super::read::next_newest(&mut sources, false)? {
            if rts.iter().any(|rt| rt.deletes(&key, hlc)) {
                continue;
            }
            if kind == Kind::Tombstone && bottom_points && aged(hlc) {
                continue;
            }
            let syrups: Vec<SyrupId> = if kind == Kind::Put {
                CandyLocator::decode(&value)
                    .map_err(|e| Error::Corrupt(Corruption::new(FileKind::Locator, &dir, e)))?
                    .syrups()
                    .collect()
            } else {
                Vec::new()
            };
            writer.add(&key, &value, hlc, syrups);
            if writer.estimated_bytes() >= self.inner.config.table_target_bytes {
                let w = std::mem::replace(&mut writer, TableWriter::new(self.table_options()));
                outputs.push(w.finish());
            }
            processed += 1;
            if processed.is_multiple_of(limits::COMPACTION_YIELD_ENTRIES) {
                crate::runtime::yield_now().await;
            }
        }
        let mut kept_rts = 0usize;
        for (rt, bottom) in rts.into_iter().zip(bottom_rt) {
            if !(bottom && aged(rt.hlc)) {
                writer.add_range_tombstone(rt);
                kept_rts += 1;
            }
        }
        if writer.entry_count() > 0 || kept_rts > 0 {
            outputs.push(writer.finish());
        }
        let mut added = Vec::new();
        for (bytes, meta) in outputs {
            if meta.entry_count == 0 && meta.range_tombstone_count == 0 {
                continue;
            }
            let number = self.alloc_file_number();
            let size = bytes.len() as u64;
            let table = match self.write_table(number, bytes).await {
                Ok(t) => t,
                Err(e) => {
                    // The outputs already written are named by nothing: on a full disk, give
                    // their space back now (the compaction is retried later).
                    for t in &added {
                        let t: &Rc<TableHandle> = t;
                        let _ = self.inner.storage.remove(&dir.join(table_file_name(t.rec.number))).await;
                    }
                    return self.fail(e);
                }
            };
            let rec = TableRecord {
                number,
                level: c.output_level as u8,
                size,
                smallest: meta.smallest_key.clone(),
                largest: meta.largest_key.clone(),
                max_hlc: meta.max_hlc,
            };
            added.push(Rc::new(TableHandle { rec, table }));
        }
        if let Err(e) = self.inner.storage.sync_dir(&dir).await {
            return self.fail(e);
        }
        let mut changes: Vec<Change> = added.iter().map(|t| Change::AddTable(t.rec.clone())).collect();
        changes.extend(input_numbers.iter().map(|n| Change::RemoveTable(*n)));
        changes.push(Change::NextFileNumber(self.inner.manifest.next_file()));
        self.log_edit(changes).await?;
        let mut st = self.inner.state.borrow_mut();
        let mut v: Version = (*st.version).clone();
        for level in v.levels.iter_mut() {
            level.retain(|t| !input_numbers.contains(&t.rec.number));
        }
        if let Some(out) = v.levels.get_mut(c.output_level) {
            out.extend(added);
            out.sort_by(|a, b| a.rec.smallest.cmp(&b.rec.smallest));
        }
        st.version = Rc::new(v);
        if st.compact_cursor.len() < limits::LEVELS_MAX {
            st.compact_cursor.resize(limits::LEVELS_MAX, Vec::new());
        }
        if c.output_level >= 2 {
            if let Some(first) = c.inputs.first() {
                if let Some(cur) = st.compact_cursor.get_mut(c.output_level - 1) {
                    *cur = first.rec.largest.clone();
                }
            }
        }
        for n in input_numbers {
            st.obsolete.push((dir.join(table_file_name(n)), now));
        }
        st.stats.compactions += 1;
        Ok(())
    }

    /// Every Syrup this partition references: its live locators (by the last live scan and
    /// every locator committed since it started; before the first scan, every table and
    /// memtable, overwritten versions included), uploads, queued commits, open writers and the
    /// active Syrup.
    pub fn referenced_syrups(&self) -> BTreeSet<SyrupId> {
        let live = self.live_syrups();
        let st = self.inner.state.borrow();
        let mut out: BTreeSet<SyrupId> = match live {
            Some(live) => live,
            None => {
                let mut all: BTreeSet<SyrupId> =
                    st.version.all().flat_map(|t| t.table.meta().syrups.iter().copied()).collect();
                all.extend(st.mem.syrups());
                all
            }
        };
        for u in self.inner.manifest.state().uploads.values() {
            out.extend(u.parts.values().flat_map(|p| p.part.segments.iter().map(|s| s.syrup)));
        }
        out.extend(st.commit.syrups());
        out.extend(self.inner.syrups.in_use());
        out
    }

    /// Deletes obsolete tables and WALs past the grace period, and the Syrups this partition
    /// created that nothing references — locally or in `foreign` (the published sets of the Box's
    /// other partitions) — for at least the grace period.
    ///
    /// # Errors
    /// I/O failures other than "already gone".
    pub async fn gc(&self, foreign: &BTreeSet<SyrupId>) -> Result<GcReport> {
        let _m = self.inner.maintenance_lock.lock().await;
        self.check_usable()?;
        let now = self.now_ms();
        let grace = self.inner.config.gc_grace_ms;
        let mut report = GcReport::default();
        let due: Vec<_> = {
            let mut st = self.inner.state.borrow_mut();
            let (due, keep): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.obsolete).into_iter().partition(|(_, since)| since.saturating_add(grace) <= now);
            st.obsolete = keep;
            due
        };
        for (path, _) in due {
            match self.inner.storage.remove(&path).await {
                Ok(()) => report.files_deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let local = self.referenced_syrups();
        let unreferenced: Vec<SyrupId> = self
            .inner
            .manifest
            .state()
            .syrups
            .iter()
            .copied()
            .filter(|s| !local.contains(s) && !foreign.contains(s))
            .collect();
        let (candidates, waiting) = self.inner.syrups.unreferenced(&unreferenced, now, grace);
        report.syrups_waiting = waiting;
        let mut dropped = Vec::new();
        let mut reclaimed = 0u64;
        for id in candidates {
            let path = self.inner.syrups.path(id);
            if let Ok(f) = self.inner.syrups.file(id).await {
                reclaimed += f.len().await.unwrap_or(0);
            }
            match self.inner.storage.remove(&path).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            dropped.push(id);
        }
        if !dropped.is_empty() {
            self.inner.storage.sync_dir(&self.inner.config.syrup_dir).await?;
            self.log_edit(dropped.iter().copied().map(Change::SyrupDropped).collect()).await?;
            for id in &dropped {
                self.inner.syrups.forget(*id);
            }
            let mut st = self.inner.state.borrow_mut();
            st.stats.syrups_deleted += dropped.len() as u64;
            st.stats.syrup_bytes_reclaimed += reclaimed;
        }
        self.inner.state.borrow_mut().stats.files_deleted += report.files_deleted as u64;
        report.syrups_deleted = dropped;
        Ok(report)
    }
}

/// Builds a table from a frozen memtable, or `None` when it holds nothing.
/// Builds an L0 table of a frozen memtable, yielding every `COMPACTION_YIELD_ENTRIES` entries
/// (the memtable is immutable once frozen, so it is safe to hold its iterator across a yield).
async fn build_from_memtable(
    m: &Memtable,
    options: TableOptions,
) -> Result<Option<(Vec<u8>, crate::table::TableMeta)>> {
    if m.is_empty() {
        return Ok(None);
    }
    let mut w = TableWriter::new(options);
    for (i, (k, e)) in m.iter().enumerate() {
        let l = CandyLocator::decode(&e.value)
            .map_err(|e| Error::Corrupt(Corruption::new(FileKind::Locator, "<memtable>", e)))?;
        w.add(k, &e.value, e.hlc, l.syrups().collect::<Vec<_>>());
        if (i + 1).is_multiple_of(limits::COMPACTION_YIELD_ENTRIES) {
            crate::runtime::yield_now().await;
        }
    }
    for rt in m.range_tombstones() {
        w.add_range_tombstone(rt.clone());
    }
    Ok(Some(w.finish()))
}

/// The smallest and largest point key over `tables`.
fn span(tables: &[Rc<TableHandle>]) -> (Vec<u8>, Vec<u8>) {
    let lo = tables.iter().map(|t| t.rec.smallest.clone()).min().unwrap_or_default();
    let hi = tables.iter().map(|t| t.rec.largest.clone()).max().unwrap_or_default();
    (lo, hi)
}

/// Tables of a level whose point keys overlap `[lo, hi]`.
fn overlapping(level: &[Rc<TableHandle>], lo: &[u8], hi: &[u8]) -> Vec<Rc<TableHandle>> {
    level.iter().filter(|t| t.rec.smallest.as_slice() <= hi && t.rec.largest.as_slice() >= lo).cloned().collect()
}
