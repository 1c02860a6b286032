//! `candybox-inspect`: offline, read-only inspection of a node's data directory.
//!
//! It decodes every file the partition engine writes (`CURRENT`, the live manifest, every live
//! table, every segment of the shard commit logs under `<data>/log/` and of a partition's private
//! log under `<partition>/log/`, and the format v1 WALs a partition may still hold) with the
//! engine's own decoders, prints what they hold, and reports every problem as one line naming the
//! file, the offset and what is wrong. With `--verify` it also reads every data block of every
//! table and checks every chunk CRC of every Syrup segment that a live locator or an in-flight
//! upload part references.
//!
//! Invariants:
//! - Nothing is ever written: every file is opened read-only through `std::fs`, and nothing is
//!   created, renamed or removed. It is safe to run next to a stopped node (and gives a possibly
//!   inconsistent picture, but changes nothing, next to a running one).
//! - No byte read from disk is trusted: the core decoders return typed errors, the tool itself
//!   indexes nothing and unwraps nothing, and every length is checked before it is used.
//! - Exit codes: 0 when everything is consistent, 1 when problems were found, 2 for a usage
//!   error or a data directory that does not exist, cannot be read, or has neither `boxes/`
//!   nor `syrups/`.
//! - The verdicts follow the engine's recovery rules (`core/src/engine/open.rs`,
//!   `core/src/log/recover.rs`): a torn tail at the end of a writer run's last commit log segment
//!   (or of the newest v1 WAL, or of the manifest) is reported but is not a problem, because the
//!   engine discards it as never acknowledged; log damage, and a partition whose replayed batch
//!   sequence does not follow its flushed one, are problems.
//! - A partition's commit log records are read from its private log (`<partition>/log/`, what
//!   `Engine::open` reads) when it has one, and otherwise from the node's (`<data>/log/`, what
//!   the node reads). Positions are compared only within one of them.
#![deny(clippy::unwrap_used)]
#![deny(clippy::expect_used)]
#![deny(clippy::indexing_slicing)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::ExitCode,
    rc::Rc,
};

use bytes::Bytes;
use candybox_core::{
    codec::Short,
    engine::{parse_table_file_name, table_file_name},
    error::{Corruption, DecodeError, FileKind, ForgedLocator, IoError},
    hlc::Hlc,
    limits,
    locator::{CandyLocator, Part, CHUNK_TRAILER_BYTES},
    log::{
        format::{self as log_format, SegmentHeader, SEGMENT_HEADER_BYTES},
        recover::{LogDamage, Replay},
        LogPosition, LogWriter,
    },
    manifest::{self, ManifestState},
    record::{self, ScanEnd},
    runtime::wall_ms,
    syrup::{chunk_crc, SyrupHeader, SYRUP_HEADER_BYTES},
    table::Table,
    types::{BoxUid, SyrupId},
    wal::{self, WalOp},
};
use clap::Parser;
use serde::Serialize;

/// Offline, read-only inspection of a Candybox node data directory.
///
/// Prints, for every partition under DATA_DIR/boxes/<box>-<uid>/p<NN>/, the manifest state,
/// the tables per level, the commit log position it flushed up to and the records the next open
/// replays, its private commit log (if opened on its own) and format v1 WALs (if any), the Syrups
/// the partition created, in-flight multipart uploads and pending rename intents; then every
/// segment of the shard commit logs under DATA_DIR/log/ and the node-global Syrups under
/// DATA_DIR/syrups/. Every problem found is printed as one line naming the file and offset.
///
/// Exit codes: 0 everything consistent; 1 problems found (corruption, missing files); 2 usage
/// error, or DATA_DIR does not exist, cannot be read, or has neither boxes/ nor syrups/.
#[derive(Debug, Parser)]
#[command(name = "candybox-inspect", version)]
struct Args {
    /// The node's data directory: the one holding `syrups/` and `boxes/`.
    #[arg(value_name = "DATA_DIR")]
    data_dir: PathBuf,

    /// Inspect only this partition, given as BOX/PARTITION (for example `photos/3`); the
    /// node-global commit logs and Syrups are still checked.
    #[arg(long, value_name = "BOX/P", value_parser = parse_partition_arg)]
    partition: Option<PartitionArg>,

    /// Also read and check every data block of every table (decoding every value as a
    /// CandyLocator), and verify every chunk CRC of every Syrup segment referenced by a live
    /// locator (tables, commit log records and v1 WALs) or an in-flight upload part. Reads every
    /// referenced byte.
    #[arg(long)]
    verify: bool,

    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    json: bool,

    /// Also list every version of this key found in each partition's tables, commit log records
    /// and v1 WALs (stamp, kind, size, checksum, file): where did an object go?
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
}

/// A `--partition` argument: `<box>/<partition>`, each one path component.
#[derive(Debug, Clone)]
struct PartitionArg {
    box_name: String,
    partition: u16,
}

fn parse_partition_arg(s: &str) -> Result<PartitionArg, String> {
    let (box_name, partition) = s.split_once('/').ok_or("expected BOX/PARTITION, for example photos/3")?;
    let component = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.contains('/');
    if !component(box_name) {
        return Err("expected BOX/PARTITION: a Box name, then a partition number".into());
    }
    let partition = partition.parse().map_err(|_| format!("partition `{partition}` is not a number"))?;
    Ok(PartitionArg { box_name: box_name.into(), partition })
}

// ---------------------------------------------------------------------------------------------
// The report: built once, printed as text or JSON.
// ---------------------------------------------------------------------------------------------

/// Everything found in the data directory.
#[derive(Debug, Serialize)]
struct Report {
    data_dir: String,
    verify: bool,
    partitions: Vec<PartitionReport>,
    /// The node's shard commit logs (`<data>/log/`); absent when the directory does not exist.
    log: Option<LogReport>,
    syrups: SyrupsReport,
    /// Present with `--verify`.
    verification: Option<VerifyReport>,
    /// Problems found anywhere (each section also lists its own).
    problem_count: usize,
}

#[derive(Debug, Default, Serialize)]
struct PartitionReport {
    /// `<box>/<partition>`.
    name: String,
    path: String,
    /// Absent when the partition has no readable CURRENT or manifest.
    manifest: Option<ManifestReport>,
    levels: Vec<LevelReport>,
    /// Where the partition stands in the commit log and what the next open replays from it.
    log: Option<PartitionLogReport>,
    /// The partition's private commit log (`<partition>/log/`, written when it was opened on its
    /// own by `Engine::open`: tools, tests, benchmarks); absent when there is none.
    private_log: Option<LogReport>,
    /// Format v1 write-ahead logs at or after the log number (replayed once, by the first open
    /// of a partition that has no flushed log position yet).
    wals: Vec<WalReport>,
    own_syrups: Vec<OwnSyrupReport>,
    uploads: Vec<UploadReport>,
    rename_intents: Vec<IntentReport>,
    /// Files the manifest does not name; the next open deletes them.
    leftovers: Vec<String>,
    /// Facts worth knowing that are not problems.
    notes: Vec<String>,
    /// With `--key`: every version of the key found here, oldest file first.
    key_versions: Vec<String>,
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ManifestReport {
    /// The number `CURRENT` names.
    number: u64,
    file: String,
    records: u64,
    torn_tail: Option<TornTail>,
    log_number: u64,
    next_file_number: u64,
    hlc_floor: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct TornTail {
    offset: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct LevelReport {
    level: u8,
    table_count: usize,
    bytes: u64,
    smallest_key: String,
    largest_key: String,
    entries: u64,
    range_tombstones: u64,
    max_hlc: String,
    tables: Vec<TableReport>,
}

#[derive(Debug, Serialize)]
struct TableReport {
    number: u64,
    file: String,
    bytes: u64,
    /// False when the file is missing, has the wrong size, or fails `Table::open`.
    opened: bool,
    smallest_key: String,
    largest_key: String,
    entries: u64,
    range_tombstones: u64,
    max_hlc: String,
    data_blocks: usize,
    syrups: usize,
}

/// A partition's place in the commit log.
#[derive(Debug, Serialize)]
struct PartitionLogReport {
    /// The manifest's `LogFlushed`; absent for a format v1 partition (nothing flushed into a
    /// commit log yet: its WALs are replayed first, then every record of it in the log).
    flushed: Option<FlushedReport>,
    /// The log root its records were read from: its private log, else the node's; absent when
    /// neither exists.
    source: Option<String>,
    /// Records of this partition that end after the flushed position: what the next open
    /// replays (up to a gap in the batch sequence, which is a problem).
    replay_records: u64,
    replay_ops: u64,
    /// Batch sequences of the first and the last of them.
    replay_seq_first: Option<u64>,
    replay_seq_last: Option<u64>,
}

#[derive(Debug, Serialize)]
struct FlushedReport {
    /// `LOG-<segment>:<offset>`.
    position: String,
    segment: u64,
    offset: u64,
    /// The partition's batch sequence at that position: the next replayed record must be `seq + 1`.
    seq: u64,
    /// The node start (its base segment number) and the shard whose log the position is in.
    writer_base: u64,
    writer_shard: u16,
}

/// One commit log root as recovery reads it: `<data>/log/` (the node's shards) or
/// `<partition>/log/` (a partition opened on its own).
#[derive(Debug, Default, Serialize)]
struct LogReport {
    dir: String,
    segments: Vec<SegmentReport>,
    /// Facts worth knowing that are not problems.
    notes: Vec<String>,
    /// Damage (each one line naming the segment and the offset) and unreadable files.
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct SegmentReport {
    /// `shard-<NNN>/LOG-<number>`.
    name: String,
    file: String,
    bytes: u64,
    /// Absent when the header is missing or fails its checks.
    header: Option<SegmentHeaderReport>,
    /// Whole records, and the sections and ops in them.
    records: u64,
    sections: u64,
    ops: u64,
    /// A tear: not a problem at the end of a writer run's last segment, damage anywhere else.
    torn_tail: Option<TornTail>,
    damage: Vec<DamageReport>,
}

#[derive(Debug, Serialize)]
struct SegmentHeaderReport {
    shard: u16,
    number: u64,
    base: u64,
    first: u64,
    previous: u64,
}

#[derive(Debug, Serialize)]
struct DamageReport {
    offset: u64,
    error: String,
}

#[derive(Debug, Serialize)]
struct WalReport {
    number: u64,
    file: String,
    bytes: u64,
    records: u64,
    ops: u64,
    torn_tail: Option<TornTail>,
}

#[derive(Debug, Serialize)]
struct OwnSyrupReport {
    id: String,
    file: String,
    exists: bool,
    bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct UploadReport {
    id: String,
    key: String,
    parts: usize,
    bytes: u64,
    created_ms: u64,
    age_ms: u64,
}

#[derive(Debug, Serialize)]
struct IntentReport {
    token: String,
    source_key: String,
    source_hlc: String,
    target_key: String,
    target_partition: u16,
    created_ms: u64,
    age_ms: u64,
}

#[derive(Debug, Default, Serialize)]
struct SyrupsReport {
    dir: String,
    count: usize,
    bytes: u64,
    /// Syrups that no inspected partition created (only counted when every partition was
    /// inspected): leaked by a crash between creating a Syrup and logging it.
    unowned: Option<usize>,
    /// Files in the Syrup directory whose names are not `<16 hex>.syrup`.
    other_files: Vec<String>,
    problems: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct VerifyReport {
    tables: usize,
    table_entries: u64,
    live_locators: u64,
    segments: usize,
    chunks: u64,
    bytes: u64,
    problems: Vec<String>,
}

impl Report {
    fn problems(&self) -> impl Iterator<Item = &String> {
        // Log damage comes before the verdicts of the partitions that need records from there.
        let partitions = self
            .partitions
            .iter()
            .flat_map(|p| p.private_log.iter().flat_map(|l| l.problems.iter()).chain(p.problems.iter()));
        self.log
            .iter()
            .flat_map(|l| l.problems.iter())
            .chain(partitions)
            .chain(self.syrups.problems.iter())
            .chain(self.verification.iter().flat_map(|v| v.problems.iter()))
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------------------------

/// A key or range bound for humans: UTF-8 with control characters escaped, other bytes as `\xNN`.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.escape_debug().to_string(),
        Err(_) => key.escape_ascii().to_string(),
    }
}

fn show_path(p: &Path) -> String {
    p.display().to_string()
}

fn corrupt(kind: FileKind, path: &Path, error: DecodeError) -> String {
    Corruption::new(kind, path, error).to_string()
}

fn io_problem(op: &'static str, path: &Path, e: std::io::Error) -> String {
    IoError::new(op, path, e).to_string()
}

/// Moves a decode error's offset from record-body-relative to file-relative, as the engine does
/// (`engine/open.rs`): the body follows the record header at `record_offset`.
fn at_record(e: DecodeError, record_offset: u64) -> DecodeError {
    let base = record_offset + record::RECORD_HEADER_BYTES as u64;
    match e {
        DecodeError::Malformed { what, offset } => DecodeError::Malformed { what, offset: base + offset },
        other => other,
    }
}

fn torn(end: &ScanEnd) -> Option<TornTail> {
    match end {
        ScanEnd::Clean => None,
        ScanEnd::Torn { offset, discarded } => Some(TornTail { offset: *offset, bytes: *discarded }),
    }
}

/// Reads a whole file, read-only.
fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| io_problem("read", path, e))
}

/// Lists a directory's entry names, sorted (names that are not UTF-8 are shown lossily).
fn list_dir(path: &Path) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|e| io_problem("list", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_problem("list", path, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn fmt_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

// ---------------------------------------------------------------------------------------------
// References to Syrups, gathered from every partition and checked once per Syrup.
// ---------------------------------------------------------------------------------------------

/// One segment as a Part references it: the chunk size is the Part's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SegmentKey {
    offset: u64,
    length: u64,
    chunk_size: u32,
}

/// Every Syrup segment referenced by a live locator or an upload part, with the first referrer
/// of each (to name in a problem line).
#[derive(Debug, Default)]
struct SegmentRefs {
    by_syrup: BTreeMap<SyrupId, BTreeMap<SegmentKey, String>>,
}

impl SegmentRefs {
    fn add_parts(&mut self, parts: &[Part], referrer: &dyn Fn() -> String) {
        for part in parts {
            for s in &part.segments {
                let key = SegmentKey { offset: s.offset, length: s.length, chunk_size: part.chunk_size };
                self.by_syrup.entry(s.syrup).or_default().entry(key).or_insert_with(referrer);
            }
        }
    }
}

/// What a partition check needs from the rest of the run.
struct Context<'a> {
    syrup_dir: &'a Path,
    verify: bool,
    now_ms: u64,
    key: Option<&'a [u8]>,
}

// ---------------------------------------------------------------------------------------------
// One partition.
// ---------------------------------------------------------------------------------------------

/// The files of a partition directory, by kind.
#[derive(Debug, Default)]
struct PartitionFiles {
    has_current: bool,
    has_current_tmp: bool,
    tables: BTreeSet<u64>,
    wals: BTreeSet<u64>,
    manifests: BTreeSet<u64>,
}

fn classify(names: &[String]) -> PartitionFiles {
    let mut f = PartitionFiles::default();
    for name in names {
        if name == manifest::CURRENT_FILE {
            f.has_current = true;
        } else if name == "CURRENT.tmp" {
            f.has_current_tmp = true;
        } else if let Some(n) = parse_table_file_name(name) {
            f.tables.insert(n);
        } else if let Some(n) = wal::parse_file_name(name) {
            f.wals.insert(n);
        } else if let Some(n) = manifest::parse_file_name(name) {
            f.manifests.insert(n);
        }
        // Any other file is ignored by the engine, and so here.
    }
    f
}

/// Syrups referenced by this partition (table metas, log and WAL locators, upload parts), each with
/// one referrer: each must exist.
type SyrupReferrers = BTreeMap<SyrupId, String>;

/// The newest version of every key of a partition, as the engine resolves them: the greatest
/// stamp wins; of equal stamps (a version and its move by space reclamation) the one read later,
/// tables being read in file-number order, then the v1 WALs in order, then the commit log
/// records the next open replays, in log order. Only the newest live versions reference Syrups
/// that must exist: older versions may point into Syrups that space reclamation has deleted since
/// (tables keep them until compaction).
#[derive(Default)]
struct Versions {
    newest: BTreeMap<Vec<u8>, (Hlc, CandyLocator, String)>,
    range_tombstones: Vec<candybox_core::types::RangeTombstone>,
    /// `--key`: the key whose versions are listed, and the list.
    traced: Option<Vec<u8>>,
    history: Vec<String>,
}

impl Versions {
    fn add(&mut self, key: &[u8], locator: CandyLocator, referrer: impl FnOnce() -> String) {
        if self.traced.as_deref() == Some(key) {
            let kind = if locator.is_live() { "put" } else { "tombstone" };
            self.history.push(format!(
                "{} {kind} size {} crc32 {:#010x} in {}",
                locator.hlc,
                locator.size,
                locator.checksum,
                referrer()
            ));
            let r = self.history.last().cloned().unwrap_or_default();
            match self.newest.get(key) {
                Some((hlc, ..)) if *hlc > locator.hlc => {}
                _ => {
                    self.newest.insert(key.to_vec(), (locator.hlc, locator, r));
                }
            }
            return;
        }
        match self.newest.get(key) {
            Some((hlc, ..)) if *hlc > locator.hlc => {}
            _ => {
                self.newest.insert(key.to_vec(), (locator.hlc, locator, referrer()));
            }
        }
    }

    /// The live newest versions: not tombstones, not deleted by a newer range tombstone.
    fn live(&self) -> impl Iterator<Item = (&Vec<u8>, &CandyLocator, &String)> {
        self.newest.iter().filter_map(|(k, (hlc, l, r))| {
            let deleted = self.range_tombstones.iter().any(|rt| rt.deletes(k, *hlc));
            (l.is_live() && !deleted).then_some((k, l, r))
        })
    }
}

/// A partition's report plus what the node-wide checks need from it.
#[derive(Debug, Default)]
struct PartitionOutcome {
    report: PartitionReport,
    /// Every Syrup the partition references.
    referenced: BTreeSet<SyrupId>,
    /// The Syrups the partition created (its manifest's `SyrupCreated`).
    own: BTreeSet<SyrupId>,
}

fn inspect_partition(
    ctx: &Context<'_>,
    part: &PartitionDir,
    node_log: Option<&LogRecords>,
    refs: &mut SegmentRefs,
    verify: &mut VerifyReport,
) -> PartitionOutcome {
    let dir = part.dir.as_path();
    let mut rep = PartitionReport { name: part.name.clone(), path: show_path(dir), ..Default::default() };
    let names = match list_dir(dir) {
        Ok(n) => n,
        Err(p) => {
            rep.problems.push(p);
            return PartitionOutcome { report: rep, ..Default::default() };
        }
    };
    let files = classify(&names);
    // A partition opened on its own (`Engine::open`) reads its private log; the node reads its own.
    let private = scan_log_root(&dir.join("log")).map(|(report, records)| {
        rep.private_log = Some(report);
        records
    });
    let source = private.as_ref().or(node_log);
    let batches = source.and_then(|s| s.batches.get(&(part.box_uid, part.partition))).map(Vec::as_slice);
    let current_path = dir.join(manifest::CURRENT_FILE);
    if !files.has_current {
        no_current(&mut rep, dir, &files, &current_path, batches.unwrap_or_default());
        return PartitionOutcome { report: rep, ..Default::default() };
    }
    let Some((state, manifest_number)) = replay_manifest(&mut rep, dir, &current_path) else {
        return PartitionOutcome { report: rep, ..Default::default() };
    };

    let mut versions = Versions { traced: ctx.key.map(<[u8]>::to_vec), ..Versions::default() };
    inspect_tables(ctx, &mut rep, dir, &state, &mut versions, verify);
    // Format v1: no flushed log position yet, so its WALs are replayed before the commit log.
    let legacy = state.log_flushed == LogPosition::ZERO;
    inspect_wals(&mut rep, dir, &files, &state, legacy, &mut versions);
    inspect_partition_log(&mut rep, &state, source, batches.unwrap_or_default(), &mut versions);
    if let (Some(_), Some(theirs)) = (&private, node_log.and_then(|n| n.batches.get(&(part.box_uid, part.partition)))) {
        rep.notes.push(format!(
            "the node's commit logs also hold {} records of this partition: opened on its own it reads only its \
             private log, opened by the node only the node's",
            theirs.len()
        ));
    }
    if let Some(k) = ctx.key {
        rep.key_versions = std::mem::take(&mut versions.history);
        let deleted =
            versions.newest.get(k).map(|(hlc, ..)| versions.range_tombstones.iter().any(|rt| rt.deletes(k, *hlc)));
        if deleted == Some(true) {
            rep.key_versions.push("(the newest version is deleted by a range tombstone)".into());
        }
    }
    let mut referrers = SyrupReferrers::new();
    for (_, l, referrer) in versions.live() {
        for id in l.syrups() {
            referrers.entry(id).or_insert_with(|| referrer.clone());
        }
        if ctx.verify {
            verify.live_locators += 1;
            refs.add_parts(l.parts(), &|| referrer.clone());
        }
    }

    for id in &state.syrups {
        let path = ctx.syrup_dir.join(id.file_name());
        let (exists, bytes) = match std::fs::metadata(&path) {
            Ok(m) => (true, Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (false, None),
            Err(e) => {
                rep.problems.push(io_problem("stat", &path, e));
                (false, None)
            }
        };
        if !exists && !referrers.contains_key(id) {
            rep.notes.push(format!(
                "own syrup {id} is missing but nothing here references it: deleted by GC before its \
                 SyrupDropped edit was logged (harmless)"
            ));
        }
        rep.own_syrups.push(OwnSyrupReport { id: id.to_string(), file: show_path(&path), exists, bytes });
    }

    for u in state.uploads.values() {
        let bytes = u.parts.values().map(|p| p.part.length).fold(0u64, u64::saturating_add);
        for (number, p) in &u.parts {
            let referrer = || {
                format!(
                    "part {number} of upload {:#018x} in {}",
                    u.id,
                    show_path(&dir.join(manifest::file_name(manifest_number)))
                )
            };
            for s in &p.part.segments {
                referrers.entry(s.syrup).or_insert_with(referrer);
            }
            if ctx.verify {
                refs.add_parts(std::slice::from_ref(&p.part), &referrer);
            }
        }
        rep.uploads.push(UploadReport {
            id: format!("{:#018x}", u.id),
            key: show_key(&u.key),
            parts: u.parts.len(),
            bytes,
            created_ms: u.created_ms,
            age_ms: ctx.now_ms.saturating_sub(u.created_ms),
        });
    }
    for i in state.intents.values() {
        rep.rename_intents.push(IntentReport {
            token: format!("{:032x}", i.token),
            source_key: show_key(&i.source_key),
            source_hlc: i.source_hlc.to_string(),
            target_key: show_key(&i.target_key),
            target_partition: i.target_partition,
            created_ms: i.created_ms,
            age_ms: ctx.now_ms.saturating_sub(i.created_ms),
        });
    }

    // Every referenced Syrup must exist: a missing one makes reads of its Candies fail.
    for (id, referrer) in &referrers {
        let path = ctx.syrup_dir.join(id.file_name());
        if !path.exists() {
            let e = ForgedLocator::UnknownSyrup { syrup: id.0 };
            rep.problems.push(format!("{}: {e} (referenced by {referrer})", show_path(&path)));
        }
    }

    // Leftovers: what the next open's orphan sweep deletes.
    for n in files.tables.iter().filter(|n| !state.tables.contains_key(n)) {
        rep.leftovers.push(table_file_name(*n));
    }
    for n in files.wals.iter().filter(|n| **n < state.log_number) {
        rep.leftovers.push(wal::file_name(*n));
    }
    for n in files.manifests.iter().filter(|n| **n != manifest_number) {
        rep.leftovers.push(manifest::file_name(*n));
    }
    if files.has_current_tmp {
        rep.leftovers.push("CURRENT.tmp".into());
    }
    PartitionOutcome { report: rep, referenced: referrers.into_keys().collect(), own: state.syrups }
}

/// A partition without `CURRENT`: new, unless it already holds data (which the engine refuses
/// to open rather than delete as orphans): a table, a v1 WAL with records, or records in the
/// commit log.
fn no_current(
    rep: &mut PartitionReport,
    dir: &Path,
    files: &PartitionFiles,
    current_path: &Path,
    batches: &[LogBatch],
) {
    let wal_with_records = files.wals.iter().find(|n| {
        std::fs::metadata(dir.join(wal::file_name(**n))).is_ok_and(|m| m.len() > wal::WAL_HEADER_BYTES as u64)
    });
    if !files.tables.is_empty() || wal_with_records.is_some() {
        rep.problems.push(corrupt(
            FileKind::Pointer,
            current_path,
            DecodeError::Malformed { what: "CURRENT is missing but the partition holds data", offset: 0 },
        ));
    } else if let Some(b) = batches.first() {
        let e = DecodeError::Malformed {
            what: "CURRENT is missing but the commit log holds records of the partition",
            offset: 0,
        };
        rep.problems.push(format!(
            "{} ({} records, the first in {} at offset {})",
            corrupt(FileKind::Pointer, current_path, e),
            batches.len(),
            show_path(&b.path),
            b.offset
        ));
    } else {
        rep.notes.push("no CURRENT: the partition was never opened; the next open creates it".into());
    }
}

/// Reads `CURRENT` and replays the manifest it names, as recovery does.
fn replay_manifest(rep: &mut PartitionReport, dir: &Path, current_path: &Path) -> Option<(ManifestState, u64)> {
    let cur = read_file(current_path).map_err(|p| rep.problems.push(p)).ok()?;
    let number = manifest::decode_current(&cur)
        .map_err(|e| rep.problems.push(corrupt(FileKind::Pointer, current_path, e)))
        .ok()?;
    let path = dir.join(manifest::file_name(number));
    let bytes = read_file(&path).map_err(|p| rep.problems.push(p)).ok()?;
    let problem = |e| corrupt(FileKind::Manifest, &path, e);
    let Some(header) = bytes.get(..manifest::MANIFEST_HEADER_BYTES) else {
        let e = DecodeError::Truncated(Short { at: 0, needed: manifest::MANIFEST_HEADER_BYTES });
        rep.problems.push(problem(e));
        return None;
    };
    let found = manifest::decode_header(header).map_err(|e| rep.problems.push(problem(e))).ok()?;
    if found != number {
        rep.problems.push(problem(DecodeError::Malformed { what: "manifest number", offset: 16 }));
        return None;
    }
    let body = bytes.get(manifest::MANIFEST_HEADER_BYTES..).unwrap_or_default();
    let (records, end) =
        record::scan_records(body, manifest::MANIFEST_HEADER_BYTES as u64, limits::MANIFEST_EDIT_BYTES_MAX)
            .map_err(|e| rep.problems.push(problem(e)))
            .ok()?;
    let mut state = ManifestState::default();
    for (offset, rec) in &records {
        let changes = manifest::decode_edit(rec).map_err(|e| rep.problems.push(problem(at_record(e, *offset)))).ok()?;
        for c in &changes {
            state.apply(c).map_err(|e| rep.problems.push(problem(at_record(e, *offset)))).ok()?;
        }
    }
    rep.manifest = Some(ManifestReport {
        number,
        file: show_path(&path),
        records: records.len() as u64,
        torn_tail: torn(&end),
        log_number: state.log_number,
        next_file_number: state.next_file_number,
        hlc_floor: state.hlc_floor.to_string(),
    });
    Some((state, number))
}

fn inspect_tables(
    ctx: &Context<'_>,
    rep: &mut PartitionReport,
    dir: &Path,
    state: &ManifestState,
    versions: &mut Versions,
    verify: &mut VerifyReport,
) {
    let mut levels: BTreeMap<u8, Vec<TableReport>> = BTreeMap::new();
    for rec in state.tables.values() {
        let path = dir.join(table_file_name(rec.number));
        let mut t = TableReport {
            number: rec.number,
            file: show_path(&path),
            bytes: rec.size,
            opened: false,
            smallest_key: show_key(&rec.smallest),
            largest_key: show_key(&rec.largest),
            entries: 0,
            range_tombstones: 0,
            max_hlc: rec.max_hlc.to_string(),
            data_blocks: 0,
            syrups: 0,
        };
        if let Some(table) = open_table(rep, &path, rec.size) {
            t.opened = true;
            let meta = table.meta();
            t.entries = meta.entry_count;
            t.range_tombstones = meta.range_tombstone_count;
            t.data_blocks = table.block_count();
            t.syrups = meta.syrups.len();
            if meta.smallest_key != rec.smallest || meta.largest_key != rec.largest || meta.max_hlc != rec.max_hlc {
                // Recovery and compaction pick tables by the manifest's copy of these fields.
                rep.problems.push(format!(
                    "corrupt sstable {}: meta block key range or max HLC differs from the manifest's AddTable",
                    show_path(&path)
                ));
            }
            read_table(&table, &path, ctx.verify, versions, verify, &mut rep.problems);
        }
        levels.entry(rec.level).or_default().push(t);
    }
    for (level, tables) in levels {
        let smallest = state.tables.values().filter(|r| r.level == level).map(|r| &r.smallest).min();
        let largest = state.tables.values().filter(|r| r.level == level).map(|r| &r.largest).max();
        rep.levels.push(LevelReport {
            level,
            table_count: tables.len(),
            bytes: tables.iter().map(|t| t.bytes).sum(),
            smallest_key: smallest.map(|k| show_key(k)).unwrap_or_default(),
            largest_key: largest.map(|k| show_key(k)).unwrap_or_default(),
            entries: tables.iter().map(|t| t.entries).sum(),
            range_tombstones: tables.iter().map(|t| t.range_tombstones).sum(),
            max_hlc: state
                .tables
                .values()
                .filter(|r| r.level == level)
                .map(|r| r.max_hlc)
                .max()
                .unwrap_or(Hlc::ZERO)
                .to_string(),
            tables,
        });
    }
}

/// Opens a table as recovery does: the size the manifest recorded first, then `Table::open`.
fn open_table(rep: &mut PartitionReport, path: &Path, size: u64) -> Option<Table> {
    let bytes = read_file(path).map_err(|p| rep.problems.push(p)).ok()?;
    if bytes.len() as u64 != size {
        let e = DecodeError::Malformed { what: "table size differs from manifest", offset: bytes.len() as u64 };
        rep.problems.push(corrupt(FileKind::Table, path, e));
        return None;
    }
    Table::open(Bytes::from(bytes)).map_err(|e| rep.problems.push(corrupt(FileKind::Table, path, e))).ok()
}

/// Reads every data block of `table`, decodes every value as a CandyLocator and records each as
/// a version of its key (and the table's range tombstones); with `check`, also counts what it
/// read and checks the meta block lists every Syrup a value references.
fn read_table(
    table: &Table,
    path: &Path,
    check: bool,
    versions: &mut Versions,
    verify: &mut VerifyReport,
    problems: &mut Vec<String>,
) {
    if check {
        verify.tables += 1;
    }
    versions.range_tombstones.extend(table.range_tombstones().iter().cloned());
    let listed: BTreeSet<SyrupId> = table.meta().syrups.iter().copied().collect();
    for item in table.range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded, false) {
        let (key, value) = match item {
            Ok(kv) => kv,
            Err(e) => {
                problems.push(corrupt(FileKind::Table, path, e));
                return;
            }
        };
        if check {
            verify.table_entries += 1;
        }
        let locator = match CandyLocator::decode(&value) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{} (key \"{}\")", corrupt(FileKind::Locator, path, e), show_key(&key)));
                continue;
            }
        };
        // Syrup GC trusted the meta's list before live scans: a Syrup missing from it is damage.
        for id in locator.syrups().filter(|id| check && !listed.contains(id)) {
            problems.push(format!(
                "corrupt sstable {}: the value of key \"{}\" references syrup {id}, which the meta block does \
                 not list",
                show_path(path),
                show_key(&key)
            ));
        }
        versions.add(&key, locator, || format!("key \"{}\" in {}", show_key(&key), show_path(path)));
    }
}

fn inspect_wals(
    rep: &mut PartitionReport,
    dir: &Path,
    files: &PartitionFiles,
    state: &ManifestState,
    legacy: bool,
    versions: &mut Versions,
) {
    // The engine's rules for a format v1 partition (core/src/engine/open.rs): the log number's
    // WAL and every sealed WAL must exist; a sealed WAL is read up to its seal; only the newest
    // unsealed WAL may end in a torn tail. A partition with a flushed log position replays no WAL
    // (its first flush retired them all), so a WAL still there is neither needed nor read: what
    // is wrong with it is only a note, and its versions are not the partition's.
    let mut problems = Vec::new();
    let live: Vec<u64> = files.wals.iter().copied().filter(|n| *n >= state.log_number).collect();
    if !legacy && !live.is_empty() {
        let names: Vec<String> = live.iter().map(|n| wal::file_name(*n)).collect();
        rep.notes.push(format!(
            "{} not replayed: the manifest has a flushed log position, so the engine reads only the commit log",
            names.join(", ")
        ));
    }
    let needed = std::iter::once(state.log_number).chain(state.wal_seals.keys().copied());
    for needed in needed.filter(|_| legacy) {
        if !live.contains(&needed) {
            let path = dir.join(wal::file_name(needed));
            problems.push(corrupt(
                FileKind::Wal,
                &path,
                DecodeError::Malformed { what: "missing log that the manifest needs", offset: 0 },
            ));
        }
    }
    let newest = live.last().copied();
    for &number in &live {
        let seal = state.wal_seals.get(&number).copied();
        let may_tear = seal.is_none() && Some(number) == newest;
        let path = dir.join(wal::file_name(number));
        let bytes = match read_file(&path) {
            Ok(b) => b,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let mut w = WalReport {
            number,
            file: show_path(&path),
            bytes: bytes.len() as u64,
            records: 0,
            ops: 0,
            torn_tail: None,
        };
        let problem = |e| corrupt(FileKind::Wal, &path, e);
        let Some(header) = bytes.get(..wal::WAL_HEADER_BYTES) else {
            if may_tear {
                // Created but its header never became durable: nothing was acknowledged in it.
                w.torn_tail = Some(TornTail { offset: 0, bytes: bytes.len() as u64 });
            } else {
                problems
                    .push(problem(DecodeError::Truncated(Short { at: bytes.len(), needed: wal::WAL_HEADER_BYTES })));
            }
            rep.wals.push(w);
            continue;
        };
        match wal::decode_header(header) {
            Ok(n) if n == number => {}
            Ok(_) => {
                problems.push(problem(DecodeError::Malformed { what: "wal number", offset: 16 }));
                rep.wals.push(w);
                continue;
            }
            Err(e) => {
                problems.push(problem(e));
                rep.wals.push(w);
                continue;
            }
        }
        let whole = match seal {
            None => &bytes[..],
            Some(length) => match usize::try_from(length).ok().and_then(|l| bytes.get(..l)) {
                Some(b) => b,
                None => {
                    problems.push(problem(DecodeError::Truncated(Short { at: bytes.len(), needed: length as usize })));
                    rep.wals.push(w);
                    continue;
                }
            },
        };
        let body = whole.get(wal::WAL_HEADER_BYTES..).unwrap_or_default();
        let (records, end) =
            match record::scan_records(body, wal::WAL_HEADER_BYTES as u64, limits::WAL_RECORD_BYTES_MAX) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(problem(e));
                    rep.wals.push(w);
                    continue;
                }
            };
        w.torn_tail = torn(&end);
        if let (Some(t), false) = (&w.torn_tail, may_tear) {
            problems.push(problem(DecodeError::Malformed {
                what: "damaged record in a log that is not the newest",
                offset: t.offset,
            }));
        }
        'records: for (offset, rec) in &records {
            let ops = match wal::decode_body(rec) {
                Ok(ops) => ops,
                Err(e) => {
                    problems.push(problem(at_record(e, *offset)));
                    break 'records;
                }
            };
            w.records += 1;
            w.ops += ops.len() as u64;
            for op in ops {
                let (key, locator) = match op {
                    WalOp::Set { key, locator } => (key, locator),
                    WalOp::DeleteRange(rt) => {
                        if legacy {
                            versions.range_tombstones.push(rt);
                        }
                        continue;
                    }
                };
                let l = match CandyLocator::decode(&locator) {
                    Ok(l) => l,
                    Err(e) => {
                        let record_at = format!("record at offset {offset}, key \"{}\"", show_key(&key));
                        problems.push(format!("{} ({record_at})", problem(at_record(e, *offset))));
                        continue;
                    }
                };
                if legacy {
                    let referrer = || format!("key \"{}\" in {} at offset {offset}", show_key(&key), show_path(&path));
                    versions.add(&key, l, referrer);
                }
            }
        }
        rep.wals.push(w);
    }
    if legacy {
        rep.problems.extend(problems);
    } else {
        rep.notes.extend(problems.into_iter().map(|p| format!("(not replayed) {p}")));
    }
}

// ---------------------------------------------------------------------------------------------
// Shard commit logs.
// ---------------------------------------------------------------------------------------------

/// One record's ops for one partition.
#[derive(Debug)]
struct LogBatch {
    /// File offset of the record.
    offset: u64,
    /// Where the record ends: the partition's manifest flushed up to some such position.
    end: LogPosition,
    /// The partition's batch sequence.
    seq: u64,
    /// The segment file it was read from.
    path: Rc<Path>,
    ops: Vec<WalOp>,
}

/// What a log root holds for the partitions, as recovery hands it to them.
#[derive(Debug, Default)]
struct LogRecords {
    /// The log root.
    dir: PathBuf,
    /// Every partition's records, by Box incarnation and partition, in log order.
    batches: BTreeMap<(BoxUid, u16), Vec<LogBatch>>,
    /// Every damage, oldest first, for `Replay::needed_damage` to judge which partitions it
    /// quarantines.
    damage: Vec<LogDamage>,
}

/// A segment whose header was read, waiting for its run to be known.
struct ReadSegment {
    /// Its index in `LogReport::segments`.
    index: usize,
    path: PathBuf,
    header: SegmentHeader,
    bytes: Vec<u8>,
}

/// Reads every shard directory (`shard-NNN`) of the log root `root` as recovery does
/// (`core/src/log/recover.rs`), with the same verdicts; `None` when `root` does not exist.
fn scan_log_root(root: &Path) -> Option<(LogReport, LogRecords)> {
    if !root.exists() {
        return None;
    }
    let mut report = LogReport { dir: show_path(root), ..Default::default() };
    let mut records = LogRecords { dir: root.to_path_buf(), ..Default::default() };
    let names = match list_dir(root) {
        Ok(n) => n,
        Err(p) => {
            report.problems.push(p);
            return Some((report, records));
        }
    };
    let mut dirs: Vec<(u16, String)> =
        names.into_iter().filter_map(|n| Some((log_format::parse_shard_dir_name(&n)?, n))).collect();
    dirs.sort_unstable();
    for (_, name) in &dirs {
        scan_shard_dir(&root.join(name), name, &mut report, &mut records);
    }
    for batches in records.batches.values_mut() {
        batches.sort_by_key(|b| b.end);
    }
    records.damage.sort_by_key(|d| d.at);
    Some((report, records))
}

/// Reads one shard's log directory: every segment's header, then each writer run in order.
fn scan_shard_dir(dir: &Path, dir_name: &str, report: &mut LogReport, records: &mut LogRecords) {
    let names = match list_dir(dir) {
        Ok(n) => n,
        Err(p) => {
            report.problems.push(p);
            return;
        }
    };
    let mut numbers: Vec<u64> = names.iter().filter_map(|n| log_format::parse_file_name(n)).collect();
    numbers.sort_unstable();
    let newest = numbers.last().copied();
    // The segments of each writer's run, by the run's first segment.
    let mut runs: BTreeMap<u64, Vec<ReadSegment>> = BTreeMap::new();
    for number in numbers {
        let path = dir.join(log_format::file_name(number));
        let bytes = match read_file(&path) {
            Ok(b) => b,
            Err(p) => {
                report.problems.push(p);
                continue;
            }
        };
        let index = report.segments.len();
        report.segments.push(SegmentReport {
            name: format!("{dir_name}/{}", log_format::file_name(number)),
            file: show_path(&path),
            bytes: bytes.len() as u64,
            header: None,
            records: 0,
            sections: 0,
            ops: 0,
            torn_tail: None,
            damage: Vec::new(),
        });
        if bytes.len() < SEGMENT_HEADER_BYTES && Some(number) == newest {
            // Created, but its header never became durable: nothing was written to it.
            if let Some(seg) = report.segments.get_mut(index) {
                seg.torn_tail = Some(TornTail { offset: 0, bytes: bytes.len() as u64 });
            }
            continue;
        }
        let header = log_format::decode_named_header(&bytes, number);
        match header {
            Ok(header) => {
                if let Some(seg) = report.segments.get_mut(index) {
                    seg.header = Some(SegmentHeaderReport {
                        shard: header.shard,
                        number: header.number,
                        base: header.base,
                        first: header.first,
                        previous: header.previous,
                    });
                }
                runs.entry(header.first).or_default().push(ReadSegment { index, path, header, bytes });
            }
            Err(error) => {
                let damage = LogDamage {
                    at: LogPosition { segment: number, offset: 0 },
                    until: LogPosition { segment: number, offset: u64::MAX },
                    writer: None,
                    path,
                    error,
                };
                add_damage(report, records, index, 0, damage);
            }
        }
    }
    for segments in runs.values() {
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.iter().enumerate() {
            if let Some(prev) = i.checked_sub(1).and_then(|j| segments.get(j)) {
                if seg.header.previous != prev.header.number {
                    // Recovery names offset 32 here; the `previous` field is at 40 (see the report).
                    let offset = PREVIOUS_FIELD_OFFSET;
                    let damage = LogDamage {
                        at: LogPosition { segment: seg.header.previous, offset: 0 },
                        until: LogPosition { segment: seg.header.number, offset: 0 },
                        writer: Some(writer_of(&seg.header)),
                        path: seg.path.clone(),
                        error: DecodeError::Malformed { what: "a segment is missing before this one", offset },
                    };
                    add_damage(report, records, seg.index, offset, damage);
                }
            }
            scan_segment(seg, i == last, report, records);
        }
    }
}

/// Offset of a segment header's `previous` field (`core/src/log/format.rs`).
const PREVIOUS_FIELD_OFFSET: u64 = 40;

fn writer_of(h: &SegmentHeader) -> LogWriter {
    LogWriter { base: h.base, shard: h.shard }
}

/// Records `damage` (found at file offset `offset`) on segment `index`, as a problem, and for
/// the partitions' verdicts.
fn add_damage(report: &mut LogReport, records: &mut LogRecords, index: usize, offset: u64, damage: LogDamage) {
    let line = corrupt(FileKind::Wal, &damage.path, damage.error.clone());
    report.problems.push(match damage.error {
        // Their messages carry the offset already.
        DecodeError::ChecksumMismatch { .. } | DecodeError::Malformed { .. } => line,
        _ => format!("{line} (at offset {offset})"),
    });
    if let Some(seg) = report.segments.get_mut(index) {
        seg.damage.push(DamageReport { offset, error: damage.error.to_string() });
    }
    records.damage.push(damage);
}

/// The file offset a scan error names (the start of the bad record).
fn scan_error_offset(e: &DecodeError) -> Option<u64> {
    match e {
        DecodeError::ChecksumMismatch { offset, .. } | DecodeError::Malformed { offset, .. } => Some(*offset),
        _ => None,
    }
}

/// Reads the records of one segment. Only the last segment of its run (`may_tear`) may end in a
/// torn record; a record that fails to scan makes recovery read nothing of the segment.
fn scan_segment(seg: &ReadSegment, may_tear: bool, report: &mut LogReport, records: &mut LogRecords) {
    let number = seg.header.number;
    let header_bytes = SEGMENT_HEADER_BYTES as u64;
    let body = seg.bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or_default();
    let damage = |at: u64, error: DecodeError| LogDamage {
        at: LogPosition { segment: number, offset: at },
        until: LogPosition { segment: number, offset: u64::MAX },
        writer: Some(writer_of(&seg.header)),
        path: seg.path.clone(),
        error,
    };
    let (bodies, end) = match record::scan_records(body, header_bytes, limits::WAL_RECORD_BYTES_MAX) {
        Ok(r) => r,
        Err(e) => {
            let offset = scan_error_offset(&e).unwrap_or(header_bytes);
            // Recovery replays nothing of this segment; the whole records before the damage are
            // still counted, for the report only.
            let before = offset.saturating_sub(header_bytes);
            let prefix = usize::try_from(before).ok().and_then(|b| body.get(..b)).unwrap_or_default();
            if let Ok((whole, _)) = record::scan_records(prefix, header_bytes, limits::WAL_RECORD_BYTES_MAX) {
                read_records(seg, &whole, false, report, records);
            }
            add_damage(report, records, seg.index, offset, damage(header_bytes, e));
            return;
        }
    };
    if let ScanEnd::Torn { offset, discarded } = end {
        if let Some(s) = report.segments.get_mut(seg.index) {
            s.torn_tail = Some(TornTail { offset, bytes: discarded });
        }
        if !may_tear {
            // Whatever cut this segment short took acknowledged records with it: its writer had
            // moved on to a newer segment, which it does only after this one's records are durable.
            let e = DecodeError::Malformed { what: "damaged record in a segment that is not its log's newest", offset };
            add_damage(report, records, seg.index, offset, damage(offset, e));
        }
    }
    read_records(seg, &bodies, true, report, records);
}

/// Decodes and counts the records `bodies` of segment `seg`; with `replay`, hands each section to
/// its partition and records a body that fails to decode as damage (recovery reads on past it).
fn read_records(
    seg: &ReadSegment,
    bodies: &record::Records<'_>,
    replay: bool,
    report: &mut LogReport,
    records: &mut LogRecords,
) {
    let path: Rc<Path> = Rc::from(seg.path.as_path());
    for (offset, body) in bodies {
        let end = LogPosition {
            segment: seg.header.number,
            offset: offset + (record::RECORD_HEADER_BYTES + body.len()) as u64,
        };
        let sections = match log_format::decode_body(body) {
            Ok(s) => s,
            Err(e) => {
                if replay {
                    let damage = LogDamage {
                        at: LogPosition { segment: seg.header.number, offset: *offset },
                        until: LogPosition { segment: seg.header.number, offset: u64::MAX },
                        writer: Some(writer_of(&seg.header)),
                        path: seg.path.clone(),
                        error: at_record(e, *offset),
                    };
                    add_damage(report, records, seg.index, *offset, damage);
                }
                continue;
            }
        };
        if let Some(s) = report.segments.get_mut(seg.index) {
            s.records += 1;
            s.sections += sections.len() as u64;
            s.ops += sections.iter().map(|s| s.ops.len() as u64).sum::<u64>();
        }
        if !replay {
            continue;
        }
        for s in sections {
            records.batches.entry((s.box_uid, s.partition)).or_default().push(LogBatch {
                offset: *offset,
                end,
                seq: s.seq,
                path: path.clone(),
                ops: s.ops,
            });
        }
    }
}

/// A partition's place in the commit log, and what the next open replays: the records that end
/// after its flushed position, whose batch sequences must follow its flushed one without a gap,
/// and no damage it may need records from (`Replay::needed_damage`, the engine's own verdict).
fn inspect_partition_log(
    rep: &mut PartitionReport,
    state: &ManifestState,
    source: Option<&LogRecords>,
    batches: &[LogBatch],
    versions: &mut Versions,
) {
    let flushed = state.log_flushed;
    let legacy = flushed == LogPosition::ZERO;
    let mut log = PartitionLogReport {
        flushed: (!legacy).then(|| FlushedReport {
            position: flushed.to_string(),
            segment: flushed.segment,
            offset: flushed.offset,
            seq: state.log_flushed_seq,
            writer_base: state.log_flushed_writer.base,
            writer_shard: state.log_flushed_writer.shard,
        }),
        source: None,
        replay_records: 0,
        replay_ops: 0,
        replay_seq_first: None,
        replay_seq_last: None,
    };
    if let Some(records) = source {
        let judged = Replay { batches: Vec::new(), damage: records.damage.clone() };
        if let Some(d) = judged.needed_damage(flushed, state.log_flushed_writer) {
            let since = if legacy {
                "it has flushed nothing into a commit log yet".to_string()
            } else {
                format!("it is flushed up to {flushed}")
            };
            rep.problems.push(format!(
                "{} (this partition may need records from there: {since}; the engine refuses to open it)",
                corrupt(FileKind::Wal, &d.path, d.error.clone())
            ));
        }
    }
    let mut applied = state.log_flushed_seq;
    for b in batches.iter().filter(|b| b.end > flushed) {
        if applied.checked_add(1) != Some(b.seq) {
            // The batches in between were in a segment that is gone: acknowledged mutations would
            // be lost, so the engine refuses the partition.
            let e = DecodeError::Malformed {
                what: "a commit log segment holding records of this partition is missing",
                offset: b.end.offset,
            };
            rep.problems.push(format!(
                "{} (the record at offset {} is batch {} of this partition, expected batch {})",
                corrupt(FileKind::Wal, &b.path, e),
                b.offset,
                b.seq,
                applied.saturating_add(1)
            ));
            break;
        }
        applied = b.seq;
        log.replay_records += 1;
        log.replay_ops += b.ops.len() as u64;
        log.replay_seq_first.get_or_insert(b.seq);
        log.replay_seq_last = Some(b.seq);
        let at = |key: &[u8]| format!("key \"{}\" in {} at offset {}", show_key(key), show_path(&b.path), b.offset);
        for op in &b.ops {
            match op {
                WalOp::Set { key, locator } => match CandyLocator::decode(locator) {
                    Ok(l) => versions.add(key, l, || at(key)),
                    Err(e) => rep.problems.push(format!("{} ({})", corrupt(FileKind::Locator, &b.path, e), at(key))),
                },
                WalOp::DeleteRange(rt) => versions.range_tombstones.push(rt.clone()),
            }
        }
    }
    log.source = source.map(|s| show_path(&s.dir));
    if source.is_none() && !legacy {
        rep.notes.push("no commit log found (neither <data>/log nor <partition>/log): nothing to replay".into());
    }
    rep.log = Some(log);
}

/// Notes the partitions the node's logs hold records of that have no directory here: recovery
/// drops the records of a deleted Box incarnation (and refuses a partition whose Box still
/// exists but whose directory is gone, which only the coordination store can tell).
fn note_strangers(report: &mut LogReport, records: &LogRecords, partitions: &[PartitionDir]) {
    let known: BTreeSet<(BoxUid, u16)> = partitions.iter().map(|p| (p.box_uid, p.partition)).collect();
    for ((uid, partition), batches) in &records.batches {
        if !known.contains(&(*uid, *partition)) {
            report.notes.push(format!(
                "{} records of Box uid {:016x} partition {partition}, which has no directory under boxes/ \
                 (a deleted Box's records are dropped at the next start)",
                batches.len(),
                uid.0
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Node-global Syrups.
// ---------------------------------------------------------------------------------------------

fn inspect_syrups(syrup_dir: &Path) -> SyrupsReport {
    let mut rep = SyrupsReport { dir: show_path(syrup_dir), ..Default::default() };
    if !syrup_dir.exists() {
        return rep;
    }
    let names = match list_dir(syrup_dir) {
        Ok(n) => n,
        Err(p) => {
            rep.problems.push(p);
            return rep;
        }
    };
    for name in names {
        let path = syrup_dir.join(&name);
        let Some(id) = SyrupId::from_file_name(&name) else {
            rep.other_files.push(name);
            continue;
        };
        rep.count += 1;
        let mut header = Vec::with_capacity(SYRUP_HEADER_BYTES as usize);
        let read = File::open(&path).and_then(|f| {
            rep.bytes += f.metadata()?.len();
            f.take(SYRUP_HEADER_BYTES).read_to_end(&mut header)
        });
        if let Err(e) = read {
            rep.problems.push(io_problem("read", &path, e));
            continue;
        }
        match SyrupHeader::decode(&header) {
            Ok(h) if h.id == id => {}
            Ok(h) => {
                let e = DecodeError::Malformed { what: "syrup id differs from the file name", offset: 16 };
                rep.problems.push(format!("{} (header id {})", corrupt(FileKind::Syrup, &path, e), h.id));
            }
            Err(e) => rep.problems.push(corrupt(FileKind::Syrup, &path, e)),
        }
    }
    rep
}

/// Checks every referenced segment: inside its Syrup's file, and every chunk's CRC-32 at its
/// file offset. Each Syrup file is opened once and read with positioned reads, a bounded window
/// at a time.
fn verify_segments(syrup_dir: &Path, refs: &SegmentRefs, missing: &BTreeSet<SyrupId>, verify: &mut VerifyReport) {
    for (id, segments) in &refs.by_syrup {
        let path = syrup_dir.join(id.file_name());
        let file = match File::open(&path) {
            Ok(f) => f,
            // Already reported by the partition that references it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing.contains(id) => continue,
            Err(e) => {
                let referrer = segments.values().next().map(String::as_str).unwrap_or_default();
                verify.problems.push(format!("{} (referenced by {referrer})", io_problem("open", &path, e)));
                continue;
            }
        };
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                verify.problems.push(io_problem("stat", &path, e));
                continue;
            }
        };
        for (seg, referrer) in segments {
            verify.segments += 1;
            if let Err(p) = verify_segment(&file, &path, *id, len, *seg, verify) {
                verify.problems.push(format!("{p} (referenced by {referrer})"));
            }
        }
    }
}

/// Bytes read at a time while verifying a segment (rounded down to whole chunks, at least one).
const VERIFY_WINDOW_BYTES: u64 = 4 * 1024 * 1024;

fn verify_segment(
    file: &File,
    path: &Path,
    id: SyrupId,
    file_len: u64,
    seg: SegmentKey,
    verify: &mut VerifyReport,
) -> Result<(), String> {
    if seg.offset < SYRUP_HEADER_BYTES {
        let e = DecodeError::Malformed { what: "segment starts inside the syrup header", offset: seg.offset };
        return Err(corrupt(FileKind::Syrup, path, e));
    }
    let chunk_size = u64::from(seg.chunk_size);
    if chunk_size == 0 {
        // The locator decoder refuses it; checked again so the division below cannot panic.
        let e = DecodeError::Malformed { what: "chunk size", offset: seg.offset };
        return Err(corrupt(FileKind::Syrup, path, e));
    }
    let stride = chunk_size + CHUNK_TRAILER_BYTES;
    let chunks = seg.length.div_ceil(chunk_size);
    // The locator decoder refuses segments whose end overflows; checked again, never trusted.
    let end = chunks
        .checked_mul(CHUNK_TRAILER_BYTES)
        .and_then(|t| t.checked_add(seg.length))
        .and_then(|s| s.checked_add(seg.offset));
    let Some(end) = end.filter(|e| *e <= file_len) else {
        let e = ForgedLocator::BeyondDurable { syrup: id.0, end: end.unwrap_or(u64::MAX), durable: file_len };
        return Err(format!("{}: {e}", show_path(path)));
    };
    let window_chunks = (VERIFY_WINDOW_BYTES / stride).max(1);
    let mut buf = Vec::new();
    let mut bad: Option<String> = None;
    let mut bad_count = 0u64;
    let mut first = 0u64;
    while first < chunks {
        let count = window_chunks.min(chunks - first);
        let start = seg.offset + first * stride;
        let window_end = (start + count * stride).min(end);
        let window_len =
            usize::try_from(window_end - start).map_err(|_| format!("{}: segment too large", show_path(path)))?;
        buf.resize(window_len, 0);
        file.read_exact_at(&mut buf, start).map_err(|e| io_problem("read", path, e))?;
        for i in first..first + count {
            let chunk_offset = seg.offset + i * stride;
            let payload_len = chunk_size.min(seg.length - i * chunk_size);
            let at = usize::try_from(chunk_offset - start).unwrap_or(usize::MAX);
            let payload_end = at.saturating_add(usize::try_from(payload_len).unwrap_or(usize::MAX));
            let payload = buf.get(at..payload_end).unwrap_or_default();
            let trailer = buf.get(payload_end..payload_end.saturating_add(4)).and_then(|t| <[u8; 4]>::try_from(t).ok());
            let expected = trailer.map(u32::from_le_bytes).unwrap_or_default();
            let found = chunk_crc(chunk_offset, payload);
            verify.chunks += 1;
            verify.bytes += payload.len() as u64;
            if trailer.is_none() || found != expected || payload.len() as u64 != payload_len {
                bad_count += 1;
                if bad.is_none() {
                    let e = DecodeError::ChecksumMismatch { offset: chunk_offset, expected, found };
                    bad = Some(corrupt(FileKind::Syrup, path, e));
                }
            }
        }
        first += count;
    }
    match bad {
        None => Ok(()),
        Some(line) if bad_count == 1 => Err(line),
        Some(line) => Err(format!("{line}; {} more bad chunks in this segment", bad_count - 1)),
    }
}

// ---------------------------------------------------------------------------------------------
// Running and printing.
// ---------------------------------------------------------------------------------------------

/// A partition directory found under `boxes/`.
#[derive(Debug)]
struct PartitionDir {
    /// `<box>/<partition>`, or `<box>-<uid>/<partition>` when the Box has several incarnations.
    name: String,
    dir: PathBuf,
    /// The Box incarnation, from the directory name: the commit log's records carry it.
    box_uid: BoxUid,
    partition: u16,
}

/// The partition directories to inspect, sorted by Box and then by partition. The node's layout
/// (`shards/src/config.rs`): `boxes/<box>-<uid as 16 hex>/pNN`; a Box deleted and created again
/// may leave an older incarnation, named with its uid.
fn find_partitions(data_dir: &Path, only: Option<&PartitionArg>, problems: &mut Vec<String>) -> Vec<PartitionDir> {
    let root = data_dir.join("boxes");
    let mut out = Vec::new();
    if !root.exists() {
        return out;
    }
    let mut boxes: Vec<(String, String, PathBuf)> = match list_dir(&root) {
        Ok(b) => b
            .into_iter()
            .filter_map(|dir| {
                let (name, uid) = split_box_dir(&dir)?;
                Some((name.to_string(), uid.to_string(), root.join(&dir)))
            })
            .filter(|(_, _, path)| path.is_dir())
            .collect(),
        Err(p) => {
            problems.push(p);
            return out;
        }
    };
    boxes.sort();
    for (name, uid, box_dir) in &boxes {
        if only.is_some_and(|o| o.box_name != *name) {
            continue;
        }
        // `split_box_dir` checked for 16 hex digits, so this parses.
        let Ok(box_uid) = u64::from_str_radix(uid, 16).map(BoxUid) else {
            continue;
        };
        let incarnations = boxes.iter().filter(|(n, ..)| n == name).count();
        let shown = if incarnations > 1 { format!("{name}-{uid}") } else { name.clone() };
        let mut parts: Vec<(u16, String)> = match list_dir(box_dir) {
            Ok(p) => p.into_iter().filter_map(|d| Some((d.strip_prefix('p')?.parse().ok()?, d))).collect(),
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        parts.sort();
        for (p, dir_name) in parts {
            if only.is_some_and(|o| o.partition != p) {
                continue;
            }
            let dir = box_dir.join(&dir_name);
            if dir.is_dir() {
                out.push(PartitionDir { name: format!("{shown}/{p}"), dir, box_uid, partition: p });
            }
        }
    }
    out
}

/// `<box>-<16 hex>` → (box, uid hex).
fn split_box_dir(dir: &str) -> Option<(&str, &str)> {
    let (name, uid) = dir.rsplit_once('-')?;
    (uid.len() == 16 && uid.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty()).then_some((name, uid))
}

fn run(args: &Args) -> Report {
    let syrup_dir = args.data_dir.join("syrups");
    let ctx = Context {
        syrup_dir: &syrup_dir,
        verify: args.verify,
        now_ms: wall_ms(),
        key: args.key.as_deref().map(str::as_bytes),
    };
    let mut listing_problems = Vec::new();
    let partitions = find_partitions(&args.data_dir, args.partition.as_ref(), &mut listing_problems);
    let node_log = scan_log_root(&args.data_dir.join("log"));
    let mut refs = SegmentRefs::default();
    let mut verify = VerifyReport::default();
    let mut reports = Vec::new();
    let mut owned = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for part in &partitions {
        let outcome = inspect_partition(&ctx, part, node_log.as_ref().map(|(_, r)| r), &mut refs, &mut verify);
        owned.extend(outcome.own);
        missing.extend(outcome.referenced.into_iter().filter(|id| !ctx.syrup_dir.join(id.file_name()).exists()));
        reports.push(outcome.report);
    }
    let log = node_log.map(|(mut report, records)| {
        if args.partition.is_none() {
            note_strangers(&mut report, &records, &partitions);
        }
        report
    });
    let mut syrups = inspect_syrups(ctx.syrup_dir);
    syrups.problems.splice(0..0, listing_problems);
    // Only meaningful when every partition was inspected and each one's manifest was read.
    let owners_known = reports.iter().all(|r| r.manifest.is_some() || r.problems.is_empty());
    if args.partition.is_none() && owners_known {
        let on_disk = list_dir(ctx.syrup_dir).unwrap_or_default();
        let unowned =
            on_disk.iter().filter_map(|n| SyrupId::from_file_name(n)).filter(|id| !owned.contains(id)).count();
        syrups.unowned = Some(unowned);
    }
    let verification = args.verify.then(|| {
        verify_segments(ctx.syrup_dir, &refs, &missing, &mut verify);
        verify
    });
    let mut report = Report {
        data_dir: show_path(&args.data_dir),
        verify: args.verify,
        partitions: reports,
        log,
        syrups,
        verification,
        problem_count: 0,
    };
    report.problem_count = report.problems().count();
    report
}

fn print_text(r: &Report) {
    println!("data directory {}", r.data_dir);
    if r.partitions.is_empty() {
        println!("\nno partitions found under {}", Path::new(&r.data_dir).join("boxes").display());
    }
    for p in &r.partitions {
        print_partition(p);
    }
    if let Some(l) = &r.log {
        println!("\nlog {}", l.dir);
        println!("  {}", log_summary(l));
        print_segments(l, "  ");
    }
    let s = &r.syrups;
    println!("\nsyrups {}", s.dir);
    println!("  {} syrups, {} bytes, {} with problems", s.count, s.bytes, s.problems.len());
    match s.unowned {
        Some(0) | None => {}
        Some(n) => println!(
            "  {n} not created by any partition here (unreferenced leftovers: a crash between creating a Syrup \
             and logging SyrupCreated leaks it)"
        ),
    }
    if !s.other_files.is_empty() {
        println!("  other files (ignored): {}", s.other_files.join(", "));
    }
    if let Some(v) = &r.verification {
        println!("\nverify");
        println!(
            "  {} tables read, {} entries; {} live locators; {} segments, {} chunks, {} bytes checked; {} problems",
            v.tables,
            v.table_entries,
            v.live_locators,
            v.segments,
            v.chunks,
            v.bytes,
            v.problems.len()
        );
    }
    println!();
    if r.problem_count == 0 {
        println!("OK: no problems found");
    } else {
        println!("problems found: {}", r.problem_count);
        for p in r.problems() {
            println!("  {p}");
        }
    }
}

fn print_partition(p: &PartitionReport) {
    println!("\npartition {} ({})", p.name, p.path);
    for v in &p.key_versions {
        println!("  version    {v}");
    }
    if let Some(m) = &p.manifest {
        let tail = match m.torn_tail {
            None => "clean".to_string(),
            Some(t) => format!("torn tail at offset {} ({} bytes, discarded at open)", t.offset, t.bytes),
        };
        println!("  manifest   {} (named by CURRENT): {} records, {tail}", manifest::file_name(m.number), m.records);
        println!(
            "  state      log number {}, next file number {}, HLC floor {}",
            m.log_number, m.next_file_number, m.hlc_floor
        );
    }
    let tables: usize = p.levels.iter().map(|l| l.table_count).sum();
    let bytes: u64 = p.levels.iter().map(|l| l.bytes).sum();
    if p.manifest.is_some() {
        println!("  tables     {tables} tables, {bytes} bytes");
    }
    for l in &p.levels {
        println!(
            "    L{}  {} tables, {} bytes, keys \"{}\"..\"{}\", {} entries, {} range tombstones, max HLC {}",
            l.level, l.table_count, l.bytes, l.smallest_key, l.largest_key, l.entries, l.range_tombstones, l.max_hlc
        );
        for t in &l.tables {
            let status = if t.opened { "" } else { "  UNREADABLE" };
            println!(
                "      T-{:06}.sst  {} bytes, keys \"{}\"..\"{}\", {} entries, {} range tombstones, {} blocks, {} syrups, max HLC {}{status}",
                t.number, t.bytes, t.smallest_key, t.largest_key, t.entries, t.range_tombstones, t.data_blocks, t.syrups, t.max_hlc
            );
        }
    }
    if let Some(l) = &p.log {
        match &l.flushed {
            Some(f) => println!(
                "  log        flushed to {}, batch seq {} (writer base {} shard {})",
                f.position, f.seq, f.writer_base, f.writer_shard
            ),
            None => {
                println!("  log        nothing flushed into a commit log yet (format v1: its WALs are replayed first)")
            }
        }
        let batches = match (l.replay_seq_first, l.replay_seq_last) {
            (Some(first), Some(last)) => format!(" (batches {first}..{last})"),
            _ => String::new(),
        };
        let source = l.source.as_deref().map_or_else(|| " (no commit log found)".to_string(), |s| format!(" in {s}"));
        println!(
            "  replay     {} records, {} ops past the flushed position{batches}{source}",
            l.replay_records, l.replay_ops
        );
    }
    if let Some(l) = &p.private_log {
        println!("  own log    {}: {}", l.dir, log_summary(l));
        print_segments(l, "    ");
    }
    // A partition of format v2 has no WAL left: the line is shown when it has any, or is v1.
    let legacy = p.log.as_ref().is_some_and(|l| l.flushed.is_none());
    if legacy || !p.wals.is_empty() {
        let records: u64 = p.wals.iter().map(|w| w.records).sum();
        let ops: u64 = p.wals.iter().map(|w| w.ops).sum();
        println!("  wals       {} live WALs, {records} records, {ops} ops", p.wals.len());
    }
    for w in &p.wals {
        let tail = match w.torn_tail {
            None => "clean".to_string(),
            Some(t) => format!("torn tail at offset {} ({} bytes)", t.offset, t.bytes),
        };
        println!("    WAL-{:06}  {} bytes, {} records, {} ops, {tail}", w.number, w.bytes, w.records, w.ops);
    }
    if p.manifest.is_some() {
        println!("  syrups     {} created by this partition", p.own_syrups.len());
    }
    for s in &p.own_syrups {
        match s.bytes {
            Some(b) if s.exists => println!("    {}  {b} bytes", s.id),
            _ => println!("    {}  MISSING", s.id),
        }
    }
    if p.manifest.is_some() {
        println!("  uploads    {} in flight", p.uploads.len());
    }
    for u in &p.uploads {
        println!("    {}  key \"{}\", {} parts, {} bytes, age {}", u.id, u.key, u.parts, u.bytes, fmt_age(u.age_ms));
    }
    if p.manifest.is_some() {
        println!("  intents    {} rename intents", p.rename_intents.len());
    }
    for i in &p.rename_intents {
        println!(
            "    {}  \"{}\" -> \"{}\" (partition {}), source HLC {}, age {}",
            i.token,
            i.source_key,
            i.target_key,
            i.target_partition,
            i.source_hlc,
            fmt_age(i.age_ms)
        );
    }
    if !p.leftovers.is_empty() {
        println!("  leftovers  {} (not named by the manifest; deleted at the next open)", p.leftovers.join(", "));
    }
    for n in &p.notes {
        println!("  note       {n}");
    }
    let problems = p.problems.len() + p.private_log.as_ref().map_or(0, |l| l.problems.len());
    if problems > 0 {
        println!("  problems   {problems}");
    }
}

/// A commit log root's totals.
fn log_summary(l: &LogReport) -> String {
    let records: u64 = l.segments.iter().map(|s| s.records).sum();
    let sections: u64 = l.segments.iter().map(|s| s.sections).sum();
    let ops: u64 = l.segments.iter().map(|s| s.ops).sum();
    format!(
        "{} segments, {records} records, {sections} sections, {ops} ops, {} with problems",
        l.segments.len(),
        l.segments.iter().filter(|s| !s.damage.is_empty()).count()
    )
}

/// One line per segment of a commit log root, then its notes.
fn print_segments(l: &LogReport, indent: &str) {
    for s in &l.segments {
        println!("{indent}  {}", segment_line(s));
    }
    for n in &l.notes {
        println!("{indent}note  {n}");
    }
}

fn segment_line(s: &SegmentReport) -> String {
    let header = match &s.header {
        Some(h) => format!("shard {}, base {}, first {}, previous {}", h.shard, h.base, h.first, h.previous),
        None if s.damage.is_empty() => "shorter than its header (its creation was cut short; skipped at open)".into(),
        None => "header unreadable".into(),
    };
    let mut end = Vec::new();
    if let Some(t) = s.torn_tail {
        end.push(format!("torn tail at offset {} ({} bytes)", t.offset, t.bytes));
    }
    if !s.damage.is_empty() {
        let at: Vec<String> = s.damage.iter().map(|d| d.offset.to_string()).collect();
        end.push(format!("DAMAGED at offset {}", at.join(", ")));
    }
    if end.is_empty() {
        end.push("clean".into());
    }
    format!(
        "{}  {header}: {} bytes, {} records, {} sections, {} ops, {}",
        s.name,
        s.bytes,
        s.records,
        s.sections,
        s.ops,
        end.join(", ")
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    match std::fs::read_dir(&args.data_dir) {
        Ok(_) => {}
        Err(e) => {
            eprintln!("candybox-inspect: {}", IoError::new("open data directory", &args.data_dir, e));
            return ExitCode::from(2);
        }
    }
    if !args.data_dir.join("boxes").is_dir() && !args.data_dir.join("syrups").is_dir() {
        // A node creates both on first use: this is most likely a wrong path, and calling it
        // consistent would hide that.
        eprintln!(
            "candybox-inspect: {} is not a data directory: it has neither boxes/ nor syrups/",
            args.data_dir.display()
        );
        return ExitCode::from(2);
    }
    if let Some(p) = &args.partition {
        let mut listing = Vec::new();
        if find_partitions(&args.data_dir, Some(p), &mut listing).is_empty() {
            eprintln!(
                "candybox-inspect: no partition {}/{} under {}",
                p.box_name,
                p.partition,
                args.data_dir.join("boxes").display()
            );
            return ExitCode::from(2);
        }
    }
    let report = run(&args);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("candybox-inspect: encode the report as JSON: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print_text(&report);
    }
    if report.problem_count == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
