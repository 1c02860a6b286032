//! Maintenance of one partition: flushing the frozen memtable, running the compactions the
//! version needs, and garbage collection. The parts do the work ([`crate::version`] builds, picks
//! and merges, [`crate::manifest`] records); this module puts their steps in order.
//!
//! Invariants:
//! - A table is durable (written, fdatasync'd, directory synced) before the manifest edit that
//!   makes it live; the edit that adds a flushed table also records the flushed log position,
//!   atomically, and that position never passes the log's durable end.
//! - A version changes only after the manifest edit naming the change is durable.
//! - Obsolete tables and WALs are deleted only after the GC grace period.

use std::{collections::BTreeSet, rc::Rc};

use super::{Engine, GcReport};
use crate::{
    error::{Error, Result},
    manifest::{Change, TableRecord},
    memtable::ToFlush,
    storage::{Storage, StorageFile},
    table::TableOptions,
    types::SyrupId,
    version::{
        compaction::{Compaction, LevelSettings, MergeSettings},
        flush, table_file_name, write_table, Lsm, TableHandle,
    },
    wal,
};

impl<S: Storage> Engine<S> {
    /// Appends one edit to the manifest, durably, then applies it (see [`crate::manifest::ManifestLog::edit`]);
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
        Lsm::table_options(self.inner.config.table_block_bytes, self.inner.config.bloom_bits_per_key)
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
        let built = flush::build_from_memtable(&imm, self.table_options()).await?;
        let mut changes = Vec::new();
        if let Some((bytes, meta)) = built {
            let number = self.alloc_file_number();
            let size = bytes.len() as u64;
            let table = match write_table(&self.inner.storage, &self.inner.config.partition_dir, number, bytes).await {
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
                st.lsm.add_flushed(t);
            }
            let retired = st.mem.flushed();
            st.stats.flushes += 1;
            let dir = self.inner.config.partition_dir.clone();
            for n in retired {
                st.lsm.obsolete(dir.join(wal::file_name(n)), now);
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
        loop {
            let settings = LevelSettings {
                l0_compaction_trigger: self.inner.config.l0_compaction_trigger,
                level_base_bytes: self.inner.config.level_base_bytes,
                level_multiplier: self.inner.config.level_multiplier,
            };
            let Some(c) = self.inner.state.borrow().lsm.pick_compaction(&settings) else { break };
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

    async fn run_compaction(&self, c: Compaction) -> Result<()> {
        let now = self.now_ms();
        let cfg = &self.inner.config;
        let dir = &cfg.partition_dir;
        let settings = MergeSettings {
            table_options: self.table_options(),
            table_target_bytes: cfg.table_target_bytes,
            now_ms: now,
            tombstone_grace_ms: cfg.tombstone_grace_ms,
        };
        let outputs = c.merge(dir, &settings).await?;
        let mut added: Vec<Rc<TableHandle>> = Vec::new();
        for (bytes, meta) in outputs {
            let number = self.alloc_file_number();
            let size = bytes.len() as u64;
            let table = match write_table(&self.inner.storage, dir, number, bytes).await {
                Ok(t) => t,
                Err(e) => {
                    // The outputs already written are named by nothing: on a full disk, give
                    // their space back now (the compaction is retried later).
                    for t in &added {
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
        if let Err(e) = self.inner.storage.sync_dir(dir).await {
            return self.fail(e);
        }
        let mut changes: Vec<Change> = added.iter().map(|t| Change::AddTable(t.rec.clone())).collect();
        changes.extend(c.input_numbers().iter().map(|n| Change::RemoveTable(*n)));
        changes.push(Change::NextFileNumber(self.inner.manifest.next_file()));
        self.log_edit(changes).await?;
        let mut st = self.inner.state.borrow_mut();
        st.lsm.compacted(&c, added, dir, now);
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
                    st.lsm.version().all().flat_map(|t| t.table.meta().syrups.iter().copied()).collect();
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
        let due = self.inner.state.borrow_mut().lsm.take_due(now, grace);
        for path in due {
            match self.inner.storage.remove(&path).await {
                Ok(()) => report.files_deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let local = self.referenced_syrups();
        let unreferenced: Vec<SyrupId> =
            self.own_syrups().into_iter().filter(|s| !local.contains(s) && !foreign.contains(s)).collect();
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
