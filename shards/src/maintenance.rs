//! The maintenance loop of one shard: a background task that visits every partition the shard
//! owns, one step at a time, yielding to client requests between steps.
//!
//! Per partition and pass: flush/compaction (`Engine::maintain`); publish this partition's
//! referenced-Syrup set, then GC with the union of the other partitions' published sets as the
//! foreign set; multipart expiry; the rename sweep (marker present → finalize; absent past
//! `rename_intent_abandon_ms` → drop the intent, the source stays). Per Box whose partition 0
//! this shard owns: reap orphaned rename markers. Then the engine gauges are refreshed.
//!
//! Invariants:
//! - Every step is followed by `runtime::yield_now` (monoio has no task priorities; yielding is
//!   how foreground requests keep their latency), and a step that ran past the budget is
//!   logged.
//! - GC never runs without a foreign set that was read after this partition published its own:
//!   a coordination failure skips Syrup GC for the pass (any doubt keeps the Syrup).

use std::{
    rc::Rc,
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use candybox_core::{limits::LEVELS_MAX, runtime, types::BoxUid};

use crate::shard::{PartitionEngine, Shard};

/// Runs passes every `maintenance_interval_ms` until shutdown.
pub async fn run(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.shared.config.maintenance_interval_ms);
    let stop = shard.shutdown_signal();
    loop {
        monoio::select! {
            _ = runtime::sleep(interval) => {},
            _ = stop.recv() => return,
        }
        if shard.stopping.get() {
            return;
        }
        pass(&shard).await;
        shard.metrics().maintenance_passes.fetch_add(1, Relaxed);
    }
}

struct Budget {
    limit: Duration,
}

impl Budget {
    async fn step(&self, started: Instant, what: &str, shard: u16) {
        let took = started.elapsed();
        if took > self.limit * 20 {
            tracing::debug!(shard, step = what, took_ms = took.as_millis() as u64, "maintenance step ran long");
        }
        runtime::yield_now().await;
    }
}

/// One pass over every partition of the shard.
pub async fn pass(shard: &Rc<Shard>) {
    let budget = Budget { limit: Duration::from_millis(shard.shared.config.maintenance_budget_ms) };
    for (box_name, p, uid, engine) in shard.open_partitions() {
        if shard.stopping.get() {
            return;
        }
        partition(shard, &budget, &box_name, p, uid, &engine).await;
    }
    reap_markers(shard, &budget).await;
    refresh_gauges(shard);
}

fn failed(shard: &Shard, what: &str, box_name: &str, p: u16, e: &dyn std::fmt::Display) {
    shard.metrics().maintenance_errors.fetch_add(1, Relaxed);
    tracing::warn!(shard = shard.id, box_name, partition = p, step = what, error = %e, "maintenance step failed");
}

/// As [`failed`], but a full disk is a state the disk watcher reports once: a step it refused is
/// retried next pass without a warning per partition and pass.
fn engine_failed(shard: &Shard, what: &str, box_name: &str, p: u16, e: &candybox_core::error::Error) {
    if matches!(e, candybox_core::error::Error::NoSpace) {
        shard.metrics().maintenance_errors.fetch_add(1, Relaxed);
        tracing::debug!(shard = shard.id, box_name, partition = p, step = what, "maintenance step refused: disk full");
    } else {
        failed(shard, what, box_name, p, e);
    }
}

async fn partition(shard: &Rc<Shard>, budget: &Budget, box_name: &str, p: u16, uid: BoxUid, engine: &PartitionEngine) {
    if engine.is_failed() {
        // Stopped after an I/O failure (a sync on a full disk, a failing device): reopen it, as
        // after a crash, so it serves again once the cause is gone.
        shard.reopen_failed(box_name, p, uid).await;
        return;
    }
    let t = Instant::now();
    if let Err(e) = engine.maintain().await {
        engine_failed(shard, "maintain", box_name, p, &e);
    }
    budget.step(t, "maintain", shard.id).await;

    let t = Instant::now();
    let Ok(meta) = shard.box_meta(box_name).await else { return };
    if meta.box_uid != uid {
        return;
    }
    // Everything below changes the partition or its published facts: only under its lease.
    // Without it (session suspended or lost, or another holder) the pass skips them, and so
    // Syrup GC too (any doubt keeps the Syrup).
    if let Err(e) = shard.lease(box_name, meta, p).await {
        tracing::debug!(shard = shard.id, box_name, partition = p, error = %e, "maintenance: lease not held; skipping gc, expiry and the rename sweep");
        return;
    }
    // Publish first (this partition's references and condemned Syrups, as the last pass left
    // them), then read the others' and collect with them at once: the shortest window between
    // reading the foreign references and deleting a Syrup.
    let coord = &shard.shared.coord;
    let mut foreign_condemned = None;
    match shard.publish_refs(box_name, p, engine, false).await {
        Ok(()) => match coord.foreign_refs(box_name, meta.partitions, p).await {
            Ok((foreign, condemned)) => {
                foreign_condemned = Some(condemned);
                match engine.gc(&foreign).await {
                    Ok(report) if !report.syrups_deleted.is_empty() => {
                        tracing::info!(
                            shard = shard.id,
                            box_name,
                            partition = p,
                            syrups = report.syrups_deleted.len(),
                            "gc deleted syrups"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => engine_failed(shard, "gc", box_name, p, &e),
                }
            }
            Err(e) => {
                shard.metrics().coord_errors.fetch_add(1, Relaxed);
                failed(shard, "read foreign refs", box_name, p, &e);
            }
        },
        Err(e) => failed(shard, "publish refs", box_name, p, &e),
    }
    budget.step(t, "gc", shard.id).await;

    // Space reclamation: a live scan when due, then moving live Parts out of mostly dead Syrups
    // (this partition's, and those the other partitions condemned).
    let t = Instant::now();
    if let Some(condemned) = &foreign_condemned {
        match engine.reclaim(condemned, false).await {
            Ok(r) if r.relocated > 0 || r.condemned > 0 => {
                let m = shard.metrics();
                m.relocated_candies.fetch_add(r.relocated, Relaxed);
                m.relocated_bytes.fetch_add(r.relocated_bytes, Relaxed);
                tracing::info!(
                    shard = shard.id,
                    box_name,
                    partition = p,
                    condemned = r.condemned,
                    relocated = r.relocated,
                    relocated_bytes = r.relocated_bytes,
                    "space reclamation: mostly dead syrups condemned, live candies moved out"
                );
            }
            Ok(_) => {}
            Err(e) => engine_failed(shard, "reclaim", box_name, p, &e),
        }
    }
    budget.step(t, "reclaim", shard.id).await;

    let t = Instant::now();
    match engine.expire_uploads().await {
        Ok(ids) if !ids.is_empty() => {
            shard.metrics().uploads_expired.fetch_add(ids.len() as u64, Relaxed);
            tracing::info!(shard = shard.id, box_name, partition = p, uploads = ids.len(), "multipart uploads expired");
        }
        Ok(_) => {}
        Err(e) => failed(shard, "expire uploads", box_name, p, &e),
    }
    budget.step(t, "expire uploads", shard.id).await;

    for intent in engine.rename_intents() {
        let t = Instant::now();
        if let Err(e) = shard.resolve_intent(engine, box_name, &intent, true).await {
            failed(shard, "rename sweep", box_name, p, &e);
        }
        budget.step(t, "rename sweep", shard.id).await;
    }
}

/// Reaps rendezvous markers that no intent will ever consume: the intent's source partition
/// no longer holds it and the marker is older than the abandon window (a marker naming a
/// partition the Box does not have is reaped at twice the window).
async fn reap_markers(shard: &Rc<Shard>, budget: &Budget) {
    let abandon_ms = shard.shared.config.rename_intent_abandon_ms;
    let mut boxes: Vec<String> =
        shard.open_partitions().into_iter().filter(|(_, p, _, _)| *p == 0).map(|(b, ..)| b).collect();
    boxes.sort();
    boxes.dedup();
    for box_name in boxes {
        let t = Instant::now();
        let Ok(meta) = shard.box_meta(&box_name).await else { continue };
        let markers = match shard.shared.coord.list_markers(&box_name).await {
            Ok(m) => m,
            Err(e) => {
                shard.metrics().coord_errors.fetch_add(1, Relaxed);
                failed(shard, "list markers", &box_name, 0, &e);
                continue;
            }
        };
        let now = runtime::wall_ms();
        for (token, marker) in markers {
            let age = now.saturating_sub(marker.created_ms);
            let orphan = if marker.source_partition < meta.partitions {
                if age <= abandon_ms {
                    continue;
                }
                let sp = marker.source_partition;
                let owner = shard.owner(&box_name, sp);
                let b = box_name.clone();
                let held = shard
                    .invoke_on(owner, move |sh| async move {
                        match sh.engine(&b, meta, sp).await {
                            Ok(e) => e.rename_intents().iter().any(|i| i.token == token),
                            // Unknown: keep the marker.
                            Err(_) => true,
                        }
                    })
                    .await
                    .unwrap_or(true);
                !held
            } else {
                age > abandon_ms.saturating_mul(2)
            };
            if orphan {
                // Partition 0's owner reaps, under partition 0's lease.
                let lease = match shard.lease(&box_name, meta, 0).await {
                    Ok(l) => l,
                    Err(e) => {
                        failed(shard, "reap marker", &box_name, 0, &e);
                        continue;
                    }
                };
                match shard.shared.coord.delete_marker(&box_name, token, 0, lease.token).await {
                    Ok(()) => {
                        shard.metrics().rename_markers_reaped.fetch_add(1, Relaxed);
                        tracing::info!(box_name = %box_name, token = %format!("{token:032x}"), "orphaned rename marker reaped");
                    }
                    Err(e) => failed(shard, "reap marker", &box_name, 0, &e),
                }
            }
        }
        budget.step(t, "reap markers", shard.id).await;
    }
}

/// Sums the engines' counters into the shard's metric slot.
pub fn refresh_gauges(shard: &Shard) {
    let m = shard.metrics();
    // Group commits are the shard's: its commit log writes one record (and one fdatasync) for
    // every partition's waiting mutations.
    let log = shard.commit_log().stats();
    let (mut flushes, mut compactions, mut deleted, mut reclaimed) = (0, 0, 0, 0);
    let mut tables = [0u64; LEVELS_MAX];
    let mut bytes = [0u64; LEVELS_MAX];
    let mut intents = 0u64;
    let (mut mem, mut frozen) = (0u64, 0u64);
    let parts = shard.open_partitions();
    for (_, _, _, e) in &parts {
        let s = e.stats();
        flushes += s.flushes;
        compactions += s.compactions;
        deleted += s.syrups_deleted;
        reclaimed += s.syrup_bytes_reclaimed;
        for (l, n) in e.level_table_counts().into_iter().enumerate() {
            if let Some(t) = tables.get_mut(l) {
                *t += n as u64;
            }
        }
        for (l, n) in e.level_bytes().into_iter().enumerate() {
            if let Some(b) = bytes.get_mut(l) {
                *b += n;
            }
        }
        intents += e.rename_intents().len() as u64;
        let (live, imm) = e.memtable_bytes();
        mem += live as u64;
        frozen += imm as u64;
    }
    m.wal_syncs.store(log.syncs, Relaxed);
    m.syrup_syncs.store(log.syrup_syncs, Relaxed);
    m.commit_batches.store(log.records, Relaxed);
    m.commit_ops.store(log.ops, Relaxed);
    m.flushes.store(flushes, Relaxed);
    m.compactions.store(compactions, Relaxed);
    m.syrups_deleted.store(deleted, Relaxed);
    m.gc_reclaimed_bytes.store(reclaimed, Relaxed);
    for (slot, v) in m.level_tables.iter().zip(tables) {
        slot.store(v, Relaxed);
    }
    for (slot, v) in m.commit_sizes.iter().zip(log.record_sizes) {
        slot.store(v, Relaxed);
    }
    for (slot, v) in m.level_bytes.iter().zip(bytes) {
        slot.store(v, Relaxed);
    }
    m.rename_intents_pending.store(intents, Relaxed);
    m.memtable_bytes.store(mem, Relaxed);
    m.memtable_frozen_bytes.store(frozen, Relaxed);
    if let Some(queue) = shard.shared.peers.get(usize::from(shard.id)) {
        m.queue_depth.store(queue.len() as u64, Relaxed);
    }
    m.partitions_open.store(parts.len() as u64, Relaxed);
}
