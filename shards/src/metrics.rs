//! Metrics: per-shard slots of relaxed atomics, read by the HTTP thread and by the stats request.
//!
//! Invariants:
//! - Each shard writes only its own slot; slots are cache-line aligned, so shards never share a
//!   line. No locks: counters are `fetch_add(Relaxed)`, gauges `store(Relaxed)`.
//! - Engine figures (fsyncs, levels, compactions, GC) are sums over the shard's open engines,
//!   refreshed by the maintenance loop.
//! - Every metric name rendered here is listed in docs/operations.md.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use candybox_core::limits::{GROUP_COMMIT_SIZE_BUCKETS, LEVELS_MAX};

/// The operations counted, in wire order (`RequestBody` discriminant − 1), then "unknown".
pub const OPS: [&str; 29] = [
    "create_box",
    "delete_box",
    "head_box",
    "list_boxes",
    "put",
    "get",
    "head",
    "delete",
    "list",
    "delete_range",
    "copy",
    "rename",
    "create_upload",
    "upload_part",
    "complete_upload",
    "abort_upload",
    "list_uploads",
    "list_parts",
    "get_locator",
    "prepare_rename",
    "zero_copy_put",
    "complete_rename",
    "topology",
    "stats",
    "set_meta",
    "delete_many",
    "set_versioning",
    "list_versions",
    "unknown",
];
/// Index of "unknown" in [`OPS`].
pub const OP_UNKNOWN: usize = OPS.len() - 1;

/// Upper bounds of the latency histogram buckets, in microseconds (then +Inf).
pub const LATENCY_BUCKETS_US: [u64; 15] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];
const BUCKETS: usize = LATENCY_BUCKETS_US.len() + 1;

/// Counters of one shard. Only that shard writes it.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Requests answered, by operation.
    pub requests: [AtomicU64; OPS.len()],
    /// Requests answered with an error, by operation.
    pub errors: [AtomicU64; OPS.len()],
    /// Latency histogram counts (not cumulative), by operation and bucket.
    pub latency: [[AtomicU64; BUCKETS]; OPS.len()],
    /// Sum of latencies in microseconds, by operation.
    pub latency_sum_us: [AtomicU64; OPS.len()],
    /// Object bytes received (put and upload-part payloads).
    pub bytes_in: AtomicU64,
    /// Object bytes sent (get payloads).
    pub bytes_out: AtomicU64,
    /// Deletes and small puts admitted to the group commit in the connection's read loop.
    pub mutations_admitted_in_place: AtomicU64,
    /// Get payload bytes spliced from Syrup files (of `bytes_out`).
    pub get_spliced_bytes: AtomicU64,
    /// Requests this shard forwarded to another shard.
    pub cross_shard_forwards: AtomicU64,
    /// Requests other shards forwarded here.
    pub forwards_received: AtomicU64,
    /// Busy answers (engine backpressure or a full queue).
    pub busy_replies: AtomicU64,
    /// Messages waiting in this shard's cross-shard queue (sampled).
    pub queue_depth: AtomicU64,
    /// Requests executing or waiting on this shard.
    pub in_flight: AtomicU64,
    /// Open client connections held by this shard.
    pub connections_open: AtomicU64,
    /// Connections accepted by this shard.
    pub connections_total: AtomicU64,
    /// Connections closed for a malformed frame.
    pub frames_malformed: AtomicU64,
    /// Partitions open on this shard.
    pub partitions_open: AtomicU64,
    /// fdatasyncs of the shard's commit log.
    pub wal_syncs: AtomicU64,
    /// Syrup fdatasyncs made for the shard's group commits.
    pub syrup_syncs: AtomicU64,
    /// Group commits (records of the shard's commit log).
    pub commit_batches: AtomicU64,
    /// Mutations committed; divided by `commit_batches`, the mean group size.
    pub commit_ops: AtomicU64,
    /// Memtable flushes (engine sum).
    pub flushes: AtomicU64,
    /// Compactions (engine sum).
    pub compactions: AtomicU64,
    /// Syrups deleted by GC (engine sum).
    pub syrups_deleted: AtomicU64,
    /// Bytes of Syrups deleted by GC (engine sum).
    pub gc_reclaimed_bytes: AtomicU64,
    /// Bytes in live memtables (engine sum).
    pub memtable_bytes: AtomicU64,
    /// Bytes in frozen memtables waiting for their flush (engine sum).
    pub memtable_frozen_bytes: AtomicU64,
    /// Group commits by size bucket (engine sum; `candybox_core::engine::commit_size_bucket`).
    pub commit_sizes: [AtomicU64; GROUP_COMMIT_SIZE_BUCKETS],
    /// Tables per level (engine sum).
    pub level_tables: [AtomicU64; LEVELS_MAX],
    /// Bytes per level (engine sum).
    pub level_bytes: [AtomicU64; LEVELS_MAX],
    /// Rename intents pending in this shard's partitions.
    pub rename_intents_pending: AtomicU64,
    /// Rename intents finalized (source deleted or found changed).
    pub rename_intents_finalized: AtomicU64,
    /// Rename intents abandoned (marker absent past the abandon window).
    pub rename_intents_abandoned: AtomicU64,
    /// Orphaned rename markers reaped.
    pub rename_markers_reaped: AtomicU64,
    /// Connections closed for idling or for a stalled frame.
    pub connections_timed_out: AtomicU64,
    /// Connections turned away at accept (over `connections_max`).
    pub connections_refused: AtomicU64,
    /// Candies whose Parts space reclamation moved out of mostly dead Syrups.
    pub relocated_candies: AtomicU64,
    /// Bytes space reclamation wrote moving them.
    pub relocated_bytes: AtomicU64,
    /// Multipart uploads expired.
    pub uploads_expired: AtomicU64,
    /// Failed coordination calls.
    pub coord_errors: AtomicU64,
    /// Partition leases taken (each with a new fencing token).
    pub leases_taken: AtomicU64,
    /// Mutations (and maintenance steps) refused because the partition's lease is not held.
    pub lease_refusals: AtomicU64,
    /// Maintenance passes run.
    pub maintenance_passes: AtomicU64,
    /// Maintenance steps that failed.
    pub maintenance_errors: AtomicU64,
    /// The shard thread's kernel thread id (0 until it starts): the HTTP thread reads the
    /// thread's CPU time from `/proc/self/task/<tid>/schedstat`.
    pub thread_id: AtomicU64,
    /// Nanoseconds spin-before-park spent on idle turns (see `Shard::poll_while_busy`).
    pub spin_idle_ns: AtomicU64,
}

/// Adds `n` to a counter of a shard's own slot, which only that shard's thread writes: a plain
/// load and store, no locked read-modify-write on the request path (readers see whole values).
pub fn own_add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl ShardMetrics {
    /// Counts one answered request.
    ///
    /// Only the shard's own thread writes its slot, so each counter is bumped with a plain load
    /// and store (no locked read-modify-write on the request path); readers see whole values.
    pub fn record(&self, op: usize, latency_us: u64, failed: bool) {
        let bump = |c: Option<&AtomicU64>, n: u64| {
            if let Some(c) = c {
                own_add(c, n);
            }
        };
        let op = op.min(OP_UNKNOWN);
        bump(self.requests.get(op), 1);
        if failed {
            bump(self.errors.get(op), 1);
        }
        let bucket = LATENCY_BUCKETS_US.iter().position(|b| latency_us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        bump(self.latency.get(op).and_then(|row| row.get(bucket)), 1);
        bump(self.latency_sum_us.get(op), latency_us);
    }

    /// The counters of the stats reply, by name.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let requests: u64 = self.requests.iter().map(|c| c.load(Relaxed)).sum();
        let errors: u64 = self.errors.iter().map(|c| c.load(Relaxed)).sum();
        vec![
            ("requests", requests),
            ("errors", errors),
            ("bytes_in", self.bytes_in.load(Relaxed)),
            ("bytes_out", self.bytes_out.load(Relaxed)),
            ("get_spliced_bytes", self.get_spliced_bytes.load(Relaxed)),
            ("mutations_admitted_in_place", self.mutations_admitted_in_place.load(Relaxed)),
            ("cross_shard_forwards", self.cross_shard_forwards.load(Relaxed)),
            ("forwards_received", self.forwards_received.load(Relaxed)),
            ("busy_replies", self.busy_replies.load(Relaxed)),
            ("queue_depth", self.queue_depth.load(Relaxed)),
            ("in_flight", self.in_flight.load(Relaxed)),
            ("connections_open", self.connections_open.load(Relaxed)),
            ("partitions_open", self.partitions_open.load(Relaxed)),
            ("wal_syncs", self.wal_syncs.load(Relaxed)),
            ("syrup_syncs", self.syrup_syncs.load(Relaxed)),
            ("commit_batches", self.commit_batches.load(Relaxed)),
            ("commit_ops", self.commit_ops.load(Relaxed)),
            ("flushes", self.flushes.load(Relaxed)),
            ("compactions", self.compactions.load(Relaxed)),
            ("gc_reclaimed_bytes", self.gc_reclaimed_bytes.load(Relaxed)),
            ("rename_intents_pending", self.rename_intents_pending.load(Relaxed)),
            ("rename_intents_finalized", self.rename_intents_finalized.load(Relaxed)),
            ("rename_intents_abandoned", self.rename_intents_abandoned.load(Relaxed)),
            ("coord_errors", self.coord_errors.load(Relaxed)),
            ("leases_taken", self.leases_taken.load(Relaxed)),
            ("lease_refusals", self.lease_refusals.load(Relaxed)),
        ]
    }
}

/// Everything the HTTP thread reads.
#[derive(Debug)]
pub struct NodeMetrics {
    /// One slot per shard.
    pub shards: Box<[ShardMetrics]>,
    /// Set once every partition is recovered and the listeners accept.
    pub ready: AtomicBool,
    /// The coordination store's session (set at start).
    pub session: std::sync::OnceLock<std::sync::Arc<candybox_core::coord::SessionWatch>>,
    /// Quarantined partitions, by (box, partition): the evidence. Written when a partition's
    /// open finds damage (rare), read by `/readyz` and `/metrics`; never on the data path.
    pub quarantined: std::sync::Mutex<std::collections::BTreeMap<(String, u16), String>>,
    /// The data directory's free space (written by the disk watcher).
    pub disk: std::sync::Arc<crate::disk::DiskState>,
    /// The node-wide budget of request frame memory.
    pub frame_memory: std::sync::Arc<crate::frame_memory::FrameMemory>,
}

impl NodeMetrics {
    /// Zeroed slots for `shard_count` shards.
    pub fn new(
        shard_count: u16,
        disk: std::sync::Arc<crate::disk::DiskState>,
        frame_memory: std::sync::Arc<crate::frame_memory::FrameMemory>,
    ) -> Self {
        NodeMetrics {
            shards: (0..shard_count).map(|_| ShardMetrics::default()).collect(),
            ready: AtomicBool::new(false),
            session: std::sync::OnceLock::new(),
            quarantined: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            disk,
            frame_memory,
        }
    }

    /// Records a quarantined partition and its evidence.
    pub fn quarantine(&self, box_name: &str, partition: u16, evidence: &str) {
        if let Ok(mut q) = self.quarantined.lock() {
            q.insert((box_name.to_string(), partition), evidence.to_string());
        }
    }

    /// Forgets the quarantine of a partition (its Box was deleted, or it opened cleanly).
    pub fn unquarantine(&self, box_name: &str, partition: u16) {
        if let Ok(mut q) = self.quarantined.lock() {
            q.remove(&(box_name.to_string(), partition));
        }
    }

    /// What keeps the node from serving everything it owns, one line each (empty when nothing).
    pub fn degraded(&self) -> Vec<String> {
        let mut out: Vec<String> = self.disk.degraded().into_iter().collect();
        let Ok(q) = self.quarantined.lock() else {
            out.push("quarantine list unreadable".into());
            return out;
        };
        out.extend(q.iter().map(|((b, p), why)| format!("partition {b}/{p} quarantined: {why}")));
        out
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let shards = || self.shards.iter().enumerate();
        // Per operation: counts, errors and latency histograms.
        header(&mut out, "candybox_requests_total", "counter", "Requests answered, by shard and operation.");
        for (s, m) in shards() {
            for (op, name) in OPS.iter().enumerate() {
                let v = m.requests.get(op).map_or(0, |c| c.load(Relaxed));
                if v > 0 {
                    let _ = writeln!(out, "candybox_requests_total{{shard=\"{s}\",op=\"{name}\"}} {v}");
                }
            }
        }
        header(&mut out, "candybox_request_errors_total", "counter", "Requests answered with an error.");
        for (s, m) in shards() {
            for (op, name) in OPS.iter().enumerate() {
                let v = m.errors.get(op).map_or(0, |c| c.load(Relaxed));
                if v > 0 {
                    let _ = writeln!(out, "candybox_request_errors_total{{shard=\"{s}\",op=\"{name}\"}} {v}");
                }
            }
        }
        header(&mut out, "candybox_request_latency_seconds", "histogram", "Request latency, by shard and operation.");
        for (s, m) in shards() {
            for (op, name) in OPS.iter().enumerate() {
                let Some(row) = m.latency.get(op) else { continue };
                let count: u64 = row.iter().map(|c| c.load(Relaxed)).sum();
                if count == 0 {
                    continue;
                }
                let mut cumulative = 0;
                for (i, c) in row.iter().enumerate() {
                    cumulative += c.load(Relaxed);
                    let le = LATENCY_BUCKETS_US.get(i).map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                    let _ = writeln!(
                        out,
                        "candybox_request_latency_seconds_bucket{{shard=\"{s}\",op=\"{name}\",le=\"{le}\"}} {cumulative}"
                    );
                }
                let sum = m.latency_sum_us.get(op).map_or(0, |c| c.load(Relaxed)) as f64 / 1e6;
                let _ = writeln!(out, "candybox_request_latency_seconds_sum{{shard=\"{s}\",op=\"{name}\"}} {sum}");
                let _ = writeln!(out, "candybox_request_latency_seconds_count{{shard=\"{s}\",op=\"{name}\"}} {count}");
            }
        }
        type Field = fn(&ShardMetrics) -> &AtomicU64;
        let simple: [(&str, &str, &str, Field); 37] = [
            ("candybox_bytes_in_total", "counter", "Object bytes received.", |m| &m.bytes_in),
            ("candybox_bytes_out_total", "counter", "Object bytes sent.", |m| &m.bytes_out),
            (
                "candybox_get_spliced_bytes_total",
                "counter",
                "Get payload bytes spliced from Syrup files to sockets (no copy through user space).",
                |m| &m.get_spliced_bytes,
            ),
            (
                "candybox_mutations_admitted_in_place_total",
                "counter",
                "Deletes and small puts admitted to the group commit in the connection's read loop (no task until \
                 the commit is waited for).",
                |m| &m.mutations_admitted_in_place,
            ),
            ("candybox_cross_shard_forwards_total", "counter", "Requests forwarded to another shard.", |m| {
                &m.cross_shard_forwards
            }),
            ("candybox_forwards_received_total", "counter", "Requests received from other shards.", |m| {
                &m.forwards_received
            }),
            ("candybox_busy_replies_total", "counter", "Busy answers (backpressure).", |m| &m.busy_replies),
            ("candybox_queue_depth", "gauge", "Messages waiting in the shard's cross-shard queue.", |m| &m.queue_depth),
            ("candybox_requests_in_flight", "gauge", "Requests executing or waiting.", |m| &m.in_flight),
            ("candybox_connections_open", "gauge", "Open client connections.", |m| &m.connections_open),
            ("candybox_connections_total", "counter", "Connections accepted.", |m| &m.connections_total),
            (
                "candybox_connections_timed_out_total",
                "counter",
                "Connections closed for idling (idle_timeout_ms) or a stalled frame (frame_timeout_ms).",
                |m| &m.connections_timed_out,
            ),
            (
                "candybox_connections_refused_total",
                "counter",
                "Connections turned away over connections_max (answered Busy).",
                |m| &m.connections_refused,
            ),
            ("candybox_frames_malformed_total", "counter", "Connections closed for a malformed frame.", |m| {
                &m.frames_malformed
            }),
            ("candybox_partitions_open", "gauge", "Partitions open.", |m| &m.partitions_open),
            ("candybox_wal_fsyncs_total", "counter", "fdatasyncs of the shard commit log.", |m| &m.wal_syncs),
            ("candybox_syrup_fsyncs_total", "counter", "Syrup fdatasyncs by group commit.", |m| &m.syrup_syncs),
            ("candybox_group_commits_total", "counter", "Group commits.", |m| &m.commit_batches),
            (
                "candybox_group_commit_ops_total",
                "counter",
                "Mutations committed (÷ group commits = mean size).",
                |m| &m.commit_ops,
            ),
            ("candybox_flushes_total", "counter", "Memtable flushes.", |m| &m.flushes),
            ("candybox_memtable_bytes", "gauge", "Bytes in live memtables.", |m| &m.memtable_bytes),
            ("candybox_memtable_frozen_bytes", "gauge", "Bytes in frozen memtables waiting for a flush.", |m| {
                &m.memtable_frozen_bytes
            }),
            ("candybox_compactions_total", "counter", "Compactions.", |m| &m.compactions),
            ("candybox_gc_syrups_deleted_total", "counter", "Syrups deleted by GC.", |m| &m.syrups_deleted),
            ("candybox_gc_reclaimed_bytes_total", "counter", "Bytes reclaimed by Syrup GC.", |m| &m.gc_reclaimed_bytes),
            (
                "candybox_reclaim_relocated_total",
                "counter",
                "Candies moved out of mostly dead Syrups (space reclamation).",
                |m| &m.relocated_candies,
            ),
            ("candybox_reclaim_relocated_bytes_total", "counter", "Bytes written moving them.", |m| &m.relocated_bytes),
            ("candybox_rename_intents_pending", "gauge", "Rename intents pending.", |m| &m.rename_intents_pending),
            ("candybox_rename_intents_finalized_total", "counter", "Rename intents finalized.", |m| {
                &m.rename_intents_finalized
            }),
            ("candybox_rename_intents_abandoned_total", "counter", "Rename intents abandoned.", |m| {
                &m.rename_intents_abandoned
            }),
            ("candybox_rename_markers_reaped_total", "counter", "Orphaned rename markers reaped.", |m| {
                &m.rename_markers_reaped
            }),
            ("candybox_uploads_expired_total", "counter", "Multipart uploads expired.", |m| &m.uploads_expired),
            ("candybox_coordination_errors_total", "counter", "Failed coordination calls.", |m| &m.coord_errors),
            ("candybox_leases_taken_total", "counter", "Partition leases taken (new fencing tokens).", |m| {
                &m.leases_taken
            }),
            (
                "candybox_lease_refusals_total",
                "counter",
                "Mutations refused because the partition lease is not held (session suspended or lost, or another holder).",
                |m| &m.lease_refusals,
            ),
            ("candybox_maintenance_passes_total", "counter", "Maintenance passes.", |m| &m.maintenance_passes),
            ("candybox_maintenance_errors_total", "counter", "Failed maintenance steps.", |m| &m.maintenance_errors),
        ];
        for (name, kind, help, field) in &simple {
            header(&mut out, name, kind, help);
            for (s, m) in shards() {
                let _ = writeln!(out, "{name}{{shard=\"{s}\"}} {}", field(m).load(Relaxed));
            }
        }
        header(
            &mut out,
            "candybox_partition_quarantined",
            "gauge",
            "1 for each partition whose files are damaged: its requests are answered Corrupt (see /readyz).",
        );
        let quarantined = match self.quarantined.lock() {
            Ok(q) => {
                for (b, p) in q.keys() {
                    let _ = writeln!(out, "candybox_partition_quarantined{{box=\"{b}\",partition=\"{p}\"}} 1");
                }
                q.len() as u64
            }
            Err(_) => 0,
        };
        // Node-wide values, no shard label.
        let d = &self.disk;
        let node_wide: [(&str, &str, &str, u64); 5] = [
            ("candybox_partitions_quarantined", "gauge", "Quarantined partitions of the node.", quarantined),
            (
                "candybox_disk_free_bytes",
                "gauge",
                "Bytes free on the data directory's file system.",
                d.free_bytes.load(Relaxed),
            ),
            (
                "candybox_disk_full",
                "gauge",
                "1 while free space is under disk_free_min_bytes (puts and uploads refused).",
                u64::from(d.is_full()),
            ),
            (
                "candybox_frame_memory_bytes",
                "gauge",
                "Bytes of request frames held in memory by the whole node (bounded by frame_memory_bytes_max).",
                self.frame_memory.used(),
            ),
            ("candybox_nospace_refusals_total", "counter", "Writes refused with NoSpace.", d.refusals.load(Relaxed)),
        ];
        for (name, kind, help, value) in node_wide {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "candybox_group_commit_size",
            "histogram",
            "Mutations per group commit (one WAL write and fdatasync).",
        );
        for (s, m) in shards() {
            let mut cumulative = 0;
            for (i, c) in m.commit_sizes.iter().enumerate() {
                cumulative += c.load(Relaxed);
                let le = if i + 1 == GROUP_COMMIT_SIZE_BUCKETS { "+Inf".to_string() } else { (1u64 << i).to_string() };
                let _ = writeln!(out, "candybox_group_commit_size_bucket{{shard=\"{s}\",le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "candybox_group_commit_size_sum{{shard=\"{s}\"}} {}", m.commit_ops.load(Relaxed));
            let _ = writeln!(out, "candybox_group_commit_size_count{{shard=\"{s}\"}} {cumulative}");
        }
        header(&mut out, "candybox_level_tables", "gauge", "SSTables per LSM level.");
        for (s, m) in shards() {
            for (l, c) in m.level_tables.iter().enumerate() {
                let _ = writeln!(out, "candybox_level_tables{{shard=\"{s}\",level=\"{l}\"}} {}", c.load(Relaxed));
            }
        }
        header(&mut out, "candybox_level_bytes", "gauge", "SSTable bytes per LSM level.");
        for (s, m) in shards() {
            for (l, c) in m.level_bytes.iter().enumerate() {
                let _ = writeln!(out, "candybox_level_bytes{{shard=\"{s}\",level=\"{l}\"}} {}", c.load(Relaxed));
            }
        }
        header(
            &mut out,
            "candybox_shard_cpu_seconds_total",
            "counter",
            "CPU time of the shard's thread (user + system, from the kernel's schedstat).",
        );
        for (s, m) in shards() {
            if let Some(seconds) = thread_cpu_seconds(m.thread_id.load(Relaxed)) {
                let _ = writeln!(out, "candybox_shard_cpu_seconds_total{{shard=\"{s}\"}} {seconds}");
            }
        }
        header(
            &mut out,
            "candybox_process_cpu_seconds_total",
            "counter",
            "CPU time of the whole node process (user + system, every thread, including the kernel's \
             io_uring workers that run spliced sends, and threads that have exited; /proc/self/stat).",
        );
        if let Some(seconds) = process_cpu_seconds() {
            let _ = writeln!(out, "candybox_process_cpu_seconds_total {seconds}");
        }
        header(
            &mut out,
            "candybox_shard_spin_seconds_total",
            "counter",
            "Of the shard thread's CPU time, what spin-before-park spent on idle turns (a turn in which \
             no other work ran): subtract it from candybox_shard_cpu_seconds_total for the CPU the \
             requests cost.",
        );
        for (s, m) in shards() {
            let seconds = m.spin_idle_ns.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(out, "candybox_shard_spin_seconds_total{{shard=\"{s}\"}} {seconds}");
        }
        header(&mut out, "candybox_ready", "gauge", "1 once every partition is recovered.");
        let _ = writeln!(out, "candybox_ready {}", u8::from(self.ready.load(Relaxed)));
        if let Some(w) = self.session.get() {
            header(
                &mut out,
                "candybox_coordination_session_live",
                "gauge",
                "1 while the coordination session is connected and known live (leases hold, mutations proceed).",
            );
            let _ = writeln!(out, "candybox_coordination_session_live {}", u8::from(w.holds(w.session())));
        }
        out
    }
}

/// CPU seconds the thread `tid` of this process has run (`None` before the thread starts or
/// where schedstat is not available).
fn thread_cpu_seconds(tid: u64) -> Option<f64> {
    if tid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// User + system CPU of the process, every thread (exited ones included), from `/proc/self/stat`.
fn process_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: the fields follow its last ')'.
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    // After ')': state is field 3 of stat(5); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_cpu_grows_with_work() {
        let before = process_cpu_seconds().expect("process CPU from /proc/self/stat");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Busy for 100 ms of wall time: at least a few clock ticks of CPU.
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_cpu_seconds().expect("process CPU from /proc/self/stat");
        assert!(after - before >= 0.03, "100 ms of busy work added {} s of process CPU", after - before);
    }

    #[test]
    fn slots_are_cache_line_aligned() {
        assert_eq!(std::mem::align_of::<ShardMetrics>() % 64, 0);
    }

    #[test]
    fn render_shows_counts_and_histograms() {
        let m = NodeMetrics::new(2, Default::default(), crate::frame_memory::FrameMemory::new(1 << 30));
        m.shards[1].record(4, 700, false);
        m.shards[1].cross_shard_forwards.fetch_add(3, Relaxed);
        let text = m.render();
        assert!(text.contains("candybox_requests_total{shard=\"1\",op=\"put\"} 1"));
        assert!(text.contains("candybox_request_latency_seconds_bucket{shard=\"1\",op=\"put\",le=\"0.001\"} 1"));
        assert!(text.contains("candybox_cross_shard_forwards_total{shard=\"1\"} 3"));
        // Group commits: 2 of one mutation, 1 of three (bucket le=4), 1 of 1000 (+Inf).
        for (bucket, n) in [(0, 2), (2, 1), (GROUP_COMMIT_SIZE_BUCKETS - 1, 1)] {
            m.shards[0].commit_sizes[bucket].store(n, Relaxed);
        }
        m.shards[0].commit_ops.store(1005, Relaxed);
        let text = m.render();
        assert!(text.contains("candybox_group_commit_size_bucket{shard=\"0\",le=\"1\"} 2"));
        assert!(text.contains("candybox_group_commit_size_bucket{shard=\"0\",le=\"2\"} 2"));
        assert!(text.contains("candybox_group_commit_size_bucket{shard=\"0\",le=\"4\"} 3"));
        assert!(text.contains("candybox_group_commit_size_bucket{shard=\"0\",le=\"256\"} 3"));
        assert!(text.contains("candybox_group_commit_size_bucket{shard=\"0\",le=\"+Inf\"} 4"));
        assert!(text.contains("candybox_group_commit_size_sum{shard=\"0\"} 1005"));
        assert!(text.contains("candybox_group_commit_size_count{shard=\"0\"} 4"));
    }
}
