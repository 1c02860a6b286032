//! Opening a partition: create it, or recover it after a clean stop or a crash.
//!
//! Recovery order:
//! 1. `CURRENT` names the manifest; its edits rebuild the state (a torn last edit is dropped).
//! 2. Every live table is opened through a mapping and checked (size, footer, block checksums).
//! 3. A partition from before the shard commit log (format v1: no flushed log position yet)
//!    replays its own WALs at or after the log number, oldest first (`migrate.rs`). Only the
//!    newest unsealed WAL may end in a torn tail (discarded: it was never acknowledged); a missing
//!    log the manifest needs, or damage anywhere else, is corruption. Each replayed WAL is sealed
//!    at the end of its whole records in the checkpoint of step 6; the first flush makes them
//!    obsolete.
//! 4. The records the shard commit logs hold for this partition past its flushed position are
//!    replayed, in log order (the caller read the logs: [`crate::log::recover`]). Damage in a
//!    log at or after the flushed position is corruption of this partition.
//! 5. The clock is advanced past every durable stamp: manifest floor, tables, logs, intents.
//! 6. The manifest is checkpointed into a new file (a replayed manifest is never appended to).
//! 7. Files no manifest names (tables, WALs before the log number, old manifests) are deleted.

use std::{cell::RefCell, rc::Rc};

use bytes::Bytes;
use rand::SeedableRng;

use super::{Engine, EngineConfig, EngineStats, Inner, State};
use crate::{
    error::{Corruption, DecodeError, Error, FileKind, Result},
    hlc::HlcClock,
    locator::CandyLocator,
    log::{recover::Replay, CommitLog, LogConfig, LogPosition},
    manifest::{self, ManifestLog, ManifestState},
    memtable::{Memtable, Memtables},
    runtime::{Clock, LocalMutex},
    storage::{Storage, StorageFile},
    syrup::Syrups,
    version::{parse_table_file_name, Lsm, Version},
    wal::{self, WalOp},
};

/// What recovery found, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Log records replayed (v1 WAL records and shard commit log sections).
    pub wal_records: u64,
    /// Torn tails discarded: (WAL number, offset, bytes).
    pub torn_tails: Vec<(u64, u64, u64)>,
    /// True when the manifest's last edit was torn and dropped.
    pub manifest_torn: bool,
    /// True when the partition was created by this open.
    pub created: bool,
}

impl<S: Storage> Engine<S> {
    /// Opens (or creates) a partition that has a commit log of its own, in
    /// `<partition_dir>/log/shard-000` (tools, tests and benchmarks; the node shares one log per
    /// shard: [`Engine::open_in`]). Whatever the log held for the partition is replayed and
    /// flushed before this returns, and the old segments are deleted.
    ///
    /// # Errors
    /// As [`Engine::open_in`].
    pub async fn open(storage: S, clock: Rc<dyn Clock>, config: EngineConfig) -> Result<(Engine<S>, RecoveryReport)> {
        config.validate()?;
        let root = config.partition_dir.join("log");
        let dirs = crate::log::recover::log_dirs(&storage, &root).await?;
        let mut found = crate::log::recover::recover(&storage, &dirs).await?;
        let log_config = LogConfig {
            segment_bytes: config.log_segment_bytes,
            bytes_max: config.log_bytes_max,
            ..LogConfig::default()
        };
        let log = CommitLog::create(
            storage.clone(),
            root.join(crate::log::format::shard_dir_name(0)),
            0,
            found.next_segment,
            found.next_segment,
            1,
            log_config,
        )
        .await?;
        let replay = found.take(config.box_uid, config.partition);
        let (engine, mut report) = Engine::open_in(storage.clone(), clock, config, &log, &replay).await?;
        report.torn_tails.extend(found.torn_tails.iter().filter_map(|(path, offset, bytes)| {
            let name = path.file_name()?.to_str()?;
            Some((crate::log::format::parse_file_name(name)?, *offset, *bytes))
        }));
        engine.retire_replayed().await?;
        if !found.segments.is_empty() {
            for path in &found.segments {
                match storage.remove(path).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            for dir in &dirs {
                storage.sync_dir(dir).await?;
            }
        }
        Ok((engine, report))
    }

    /// Flushes what the open replayed, so the log segments (and v1 WALs) it came from are no
    /// longer needed.
    ///
    /// # Errors
    /// I/O failures (the engine then stops).
    pub async fn retire_replayed(&self) -> Result<()> {
        if std::mem::take(&mut self.inner.state.borrow_mut().flush_after_open) {
            if let Err(e) = self.flush().await {
                self.inner.state.borrow_mut().flush_after_open = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Opens (or creates) the partition in `config.partition_dir`, whose mutations go through the
    /// shard commit log `log`; `replay` holds what the logs recovered for it.
    ///
    /// # Errors
    /// `Corrupt` naming the file when a manifest, table, v1 WAL or log record it needs fails its
    /// checks (other than a torn tail); `Io` when the storage fails; `PreviousIo` when the log
    /// has failed.
    pub async fn open_in(
        storage: S,
        clock: Rc<dyn Clock>,
        config: EngineConfig,
        log: &CommitLog<S>,
        replay: &Replay,
    ) -> Result<(Engine<S>, RecoveryReport)> {
        config.validate()?;
        log.check()?;
        let dir = config.partition_dir.clone();
        storage.create_dir_all(&dir).await?;
        storage.create_dir_all(&config.syrup_dir).await?;
        let names = storage.list(&dir).await?;
        let mut report = RecoveryReport::default();
        let corrupt = |kind, path: std::path::PathBuf| {
            move |e: DecodeError| Error::Corrupt(Corruption::new(kind, path.clone(), e))
        };

        let current_path = dir.join(manifest::CURRENT_FILE);
        let has_current = names.iter().any(|n| n == manifest::CURRENT_FILE);
        let mut manifest_number = 0;
        let mut manifest = ManifestState::default();
        if has_current {
            let read = ManifestLog::read(&storage, &dir).await?;
            manifest = read.state;
            manifest_number = read.number;
            report.manifest_torn = read.torn;
        } else {
            // Without CURRENT a partition is new, unless it already holds data: a table, or a WAL
            // with records. Treating that as new would delete it, so refuse instead.
            for name in &names {
                let has_data = if parse_table_file_name(name).is_some() {
                    true
                } else if wal::parse_file_name(name).is_some() {
                    let f = storage.open(&dir.join(name)).await?;
                    f.len().await? > wal::WAL_HEADER_BYTES as u64
                } else {
                    false
                };
                if has_data {
                    return Err(corrupt(FileKind::Pointer, current_path.clone())(DecodeError::Malformed {
                        what: "CURRENT is missing but the partition holds data",
                        offset: 0,
                    }));
                }
            }
            if !replay.batches.is_empty() {
                return Err(corrupt(FileKind::Pointer, current_path.clone())(DecodeError::Malformed {
                    what: "CURRENT is missing but the commit log holds records of the partition",
                    offset: 0,
                }));
            }
            report.created = true;
            manifest.log_number = 1;
            manifest.next_file_number = 1;
            // Nothing of this partition can be in the log before now.
            manifest.log_flushed = log.durable_end();
            manifest.log_flushed_writer = log.writer();
        }
        let legacy = has_current && manifest.log_flushed == LogPosition::ZERO;

        // Tables.
        let mut clock_state = HlcClock::new(config.node_id);
        clock_state.observe(manifest.hlc_floor);
        let (version, tables_hlc) = Version::open(&storage, &dir, manifest.tables.values()).await?;
        clock_state.observe(tables_hlc);
        for i in manifest.intents.values() {
            clock_state.observe(i.source_hlc);
        }

        // WAL replay.
        let mut mem = Memtable::new();
        let mut wals: Vec<u64> =
            names.iter().filter_map(|n| wal::parse_file_name(n)).filter(|n| *n >= manifest.log_number).collect();
        wals.sort_unstable();
        let max_seen = names
            .iter()
            .filter_map(|n| {
                wal::parse_file_name(n).or_else(|| parse_table_file_name(n)).or_else(|| manifest::parse_file_name(n))
            })
            .max()
            .unwrap_or(0);
        let legacy_wals = if legacy {
            super::migrate::replay_v1_wals(
                &storage,
                &dir,
                &wals,
                &mut manifest,
                &mut clock_state,
                &mut mem,
                &mut report,
            )
            .await?
        } else {
            Vec::new()
        };

        // The shard commit log's records past the flushed position.
        if let Some(d) = replay.needed_damage(manifest.log_flushed, manifest.log_flushed_writer) {
            tracing::error!(partition_dir = %dir.display(), at = %d.at, flushed = %manifest.log_flushed, error = %d.error, "the commit log is damaged where this partition may have records");
            return Err(d.to_error());
        }
        let mut mem = Memtables::recovered(mem, manifest.log_flushed, manifest.log_flushed_seq, legacy_wals);
        for batch in replay.batches.iter().filter(|b| b.end > manifest.log_flushed) {
            let path = batch.path.to_path_buf();
            if batch.seq != mem.next_seq() {
                // The batches in between were in a segment that is gone (or the log is not this
                // partition's): acknowledged mutations would be lost.
                tracing::error!(partition_dir = %dir.display(), expected = mem.next_seq(), found = batch.seq, at = %batch.end, "a commit log segment holding records of this partition is missing");
                return Err(corrupt(FileKind::Wal, path)(DecodeError::Malformed {
                    what: "a commit log segment holding records of this partition is missing",
                    offset: batch.end.offset,
                }));
            }
            let into = mem.apply(batch.end, batch.seq);
            for op in &batch.ops {
                match op {
                    WalOp::Set { key, locator } => {
                        let l =
                            CandyLocator::decode(locator).map_err(|e| corrupt(FileKind::Locator, path.clone())(e))?;
                        clock_state.observe(l.hlc);
                        into.set(Bytes::copy_from_slice(key), Bytes::copy_from_slice(locator), &l);
                    }
                    WalOp::DeleteRange(rt) => {
                        clock_state.observe(rt.hlc);
                        into.delete_range(rt.clone());
                    }
                }
            }
            report.wal_records += 1;
        }
        mem.caught_up(log.durable_end());

        let next_file = manifest.next_file_number.max(max_seen + 1).max(1);
        // The live upload ids and intent tokens are mixed in too: after a crash with a repeating
        // clock (or the same configured seed), the generator must not replay the ids it already
        // handed out and made durable.
        let live = manifest.uploads.keys().fold(0u64, |h, id| h.rotate_left(7) ^ id)
            ^ manifest.intents.keys().fold(0u64, |h, t| h.rotate_left(11) ^ (*t as u64) ^ ((*t >> 64) as u64));
        let seed = config.seed ^ clock.now_ms().rotate_left(17) ^ (u64::from(config.partition) << 48) ^ live;
        let manifest = ManifestLog::new(
            storage.clone(),
            dir.clone(),
            config.manifest_checkpoint_bytes,
            manifest,
            manifest_number,
            next_file,
        );
        let syrups = Syrups::new(storage.clone(), config.syrup_dir.clone());
        let state = State {
            mem,
            lsm: Lsm::new(version),
            clock: clock_state,
            commit: Default::default(),
            failed: false,
            closed: false,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            rename_claims: Default::default(),
            reclaim: Default::default(),
            flush_after_open: report.wal_records > 0,
            stats: EngineStats { torn_tails_discarded: report.torn_tails.len() as u64, ..Default::default() },
        };
        let engine = Engine {
            inner: Rc::new_cyclic(|me| Inner {
                me: me.clone(),
                log: log.clone(),
                log_client: std::cell::Cell::new(0),
                storage,
                clock,
                versioning: std::cell::Cell::new(config.versioning),
                config,
                state: RefCell::new(state),
                manifest,
                syrups,
                maintenance_lock: LocalMutex::new(),
                background_tasks: std::cell::Cell::new(0),
            }),
        };
        let weak: std::rc::Weak<dyn crate::log::Committer<S::File>> = engine.inner.me.clone();
        engine.inner.log_client.set(log.register(weak));
        engine.report_need();
        let floor = engine.inner.state.borrow().clock.last();
        engine.inner.manifest.checkpoint(floor).await?;

        // Orphans: files the manifest does not name.
        let live_tables = engine.inner.manifest.live_tables();
        let log_number = engine.inner.manifest.state().log_number;
        let current_manifest = engine.inner.manifest.number();
        for name in &names {
            let orphan =
                match (parse_table_file_name(name), wal::parse_file_name(name), manifest::parse_file_name(name)) {
                    (Some(t), _, _) => !live_tables.contains(&t),
                    (_, Some(w), _) => w < log_number,
                    (_, _, Some(m)) => m != current_manifest,
                    _ => name == "CURRENT.tmp",
                };
            if orphan {
                match engine.inner.storage.remove(&dir.join(name)).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        engine.inner.storage.sync_dir(&dir).await?;
        if engine.inner.config.auto_maintenance {
            engine.spawn_background();
        }
        Ok((engine, report))
    }
}
