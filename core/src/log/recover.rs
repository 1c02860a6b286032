//! Reading the shard commit logs back after a restart.
//!
//! Recovery reads every shard's log directory (the shard count may have changed since the logs
//! were written, and with it the shard that owns a partition), and hands each partition the
//! records of its Box incarnation in log order. The engine replays those that end past the
//! position its manifest has flushed up to.
//!
//! Invariants:
//! - Only the last segment of a writer's run may end in a torn record (it was being written when
//!   the process stopped, so it was never acknowledged); a torn record anywhere else, a damaged
//!   record, an unreadable header or a segment missing from the middle of a run is damage.
//! - Damage is never skipped silently: it is reported with its position, and every partition
//!   that may need records from there on (its flushed position is not past the damage) is
//!   refused with `Corrupt`, so the node quarantines it.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use super::format::{self, LogPosition, SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::{
    error::{Corruption, DecodeError, Error, FileKind, Result},
    limits,
    record::{self, ScanEnd},
    storage::Storage,
    types::BoxUid,
    wal::WalOp,
};

/// One record's ops for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayBatch {
    /// Where the record ends.
    pub end: LogPosition,
    /// The partition's batch sequence.
    pub seq: u64,
    /// The segment file it was read from.
    pub path: std::sync::Arc<Path>,
    /// The partition's ops in it.
    pub ops: Vec<WalOp>,
}

/// Damage found in a log: records from `at` up to `until` may be lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDamage {
    /// The start of the damaged record (or of the segment).
    pub at: LogPosition,
    /// Records ending before this are unaffected: a partition flushed up to here or later does
    /// not need what was lost. Damage inside a segment reaches its end (the length of a damaged
    /// record cannot be trusted).
    pub until: LogPosition,
    /// Who wrote the damaged segment (`None` when its header is unreadable).
    pub writer: Option<super::LogWriter>,
    /// The segment file.
    pub path: PathBuf,
    /// What was wrong.
    pub error: DecodeError,
}

impl LogDamage {
    /// The corruption error a partition that needs the damaged records is refused with.
    pub fn to_error(&self) -> Error {
        Error::Corrupt(Corruption::new(FileKind::Wal, self.path.clone(), self.error.clone()))
    }
}

/// What one partition gets from recovery.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Its records, in log order.
    pub batches: Vec<ReplayBatch>,
    /// Every damage found in the logs.
    pub damage: Vec<LogDamage>,
}

impl Replay {
    /// The first damage that a partition flushed up to `flushed` in `writer`'s log may need
    /// records from. Not needed: damage in a segment of an earlier node start (the partition
    /// replayed and flushed everything of those at the start it flushed in), or in another
    /// shard's log of the same start (its records were all in its own shard's log), or past
    /// what the damage reaches in its own log. Needed otherwise, when in doubt included.
    pub fn needed_damage(&self, flushed: LogPosition, writer: super::LogWriter) -> Option<&LogDamage> {
        self.damage.iter().find(|d| {
            if d.at.segment < writer.base {
                return false;
            }
            match d.writer {
                Some(w) if w.base == writer.base && w.shard != writer.shard => false,
                Some(w) if w == writer => flushed < d.until,
                _ => true,
            }
        })
    }
}

/// Everything recovery read from the logs.
#[derive(Debug, Default)]
pub struct Recovered {
    partitions: HashMap<(BoxUid, u16), Vec<ReplayBatch>>,
    /// Damage found, oldest first.
    pub damage: Vec<LogDamage>,
    /// Every segment file found: they belong to earlier runs, and are deleted once every
    /// partition they hold records of has flushed them.
    pub segments: Vec<PathBuf>,
    /// Above every segment number found: the new run numbers its segments from here.
    pub next_segment: u64,
    /// Torn tails discarded: (segment, offset, bytes).
    pub torn_tails: Vec<(PathBuf, u64, u64)>,
    /// Whole records read.
    pub records: u64,
}

impl Recovered {
    /// Takes the records of one partition (and every damage found).
    pub fn take(&mut self, box_uid: BoxUid, partition: u16) -> Replay {
        Replay {
            batches: self.partitions.remove(&(box_uid, partition)).unwrap_or_default(),
            damage: self.damage.clone(),
        }
    }

    /// The partitions with records not taken yet, with their op counts.
    pub fn untaken(&self) -> Vec<(BoxUid, u16, usize)> {
        let mut out: Vec<_> =
            self.partitions.iter().map(|((u, p), b)| (*u, *p, b.iter().map(|b| b.ops.len()).sum())).collect();
        out.sort_unstable();
        out
    }

    /// Drops the records of the partitions `keep` says no to (deleted Box incarnations), and
    /// returns how many partitions were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(BoxUid, u16) -> bool) -> usize {
        let before = self.partitions.len();
        self.partitions.retain(|(u, p), _| keep(*u, *p));
        before - self.partitions.len()
    }

    /// True when no partition has records left to take.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }
}

/// The shard log directories under `root` (none when it does not exist).
///
/// # Errors
/// I/O failures other than a missing root.
pub async fn log_dirs<S: Storage>(storage: &S, root: &Path) -> Result<Vec<PathBuf>> {
    let names = match storage.list(root).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut dirs: Vec<(u16, PathBuf)> =
        names.iter().filter_map(|n| format::parse_shard_dir_name(n).map(|s| (s, root.join(n)))).collect();
    dirs.sort_unstable();
    Ok(dirs.into_iter().map(|(_, d)| d).collect())
}

/// Deletes the prepared segments (`LOG-<n>.prep`, zeros written ahead of their records) in
/// `dirs`, and returns how many. They hold no record, and a shard that starts prepares its own;
/// one left in the directory of a shard that no longer runs (a restart with fewer shards) would
/// keep its space for good. Call it only while no log writes in `dirs`.
///
/// # Errors
/// I/O failures listing or deleting (a missing file or directory is not one).
pub async fn discard_prepared<S: Storage>(storage: &S, dirs: &[PathBuf]) -> Result<usize> {
    let mut removed = 0;
    for dir in dirs {
        let names = match storage.list(dir).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        for name in names.iter().filter(|n| n.ends_with(super::PREP_SUFFIX)) {
            match storage.remove(&dir.join(name)).await {
                Ok(()) => removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(removed)
}

struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    bytes: Vec<u8>,
}

/// Reads every segment of the log directories `dirs`.
///
/// # Errors
/// I/O failures. Damage is not an error here: it is reported in [`Recovered::damage`], and each
/// partition that needs the damaged records is refused when it opens.
pub async fn recover<S: Storage>(storage: &S, dirs: &[PathBuf]) -> Result<Recovered> {
    let mut out = Recovered { next_segment: 1, ..Default::default() };
    for dir in dirs {
        let names = match storage.list(dir).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        let mut numbers: Vec<u64> = names.iter().filter_map(|n| format::parse_file_name(n)).collect();
        numbers.sort_unstable();
        let newest = numbers.last().copied();
        // The segments of each writer's run, by the run's first segment.
        let mut runs: BTreeMap<u64, Vec<Segment>> = BTreeMap::new();
        for number in numbers {
            let path = dir.join(format::file_name(number));
            out.next_segment = out.next_segment.max(number + 1);
            out.segments.push(path.clone());
            let bytes = crate::storage::read_whole(storage, &path).await?;
            if bytes.len() < SEGMENT_HEADER_BYTES && Some(number) == newest {
                // Created, but its header never became durable: nothing was written to it.
                out.torn_tails.push((path, 0, bytes.len() as u64));
                continue;
            }
            let header = format::decode_named_header(&bytes, number);
            match header {
                Ok(header) => runs.entry(header.first).or_default().push(Segment { path, header, bytes }),
                Err(error) => out.damage.push(LogDamage {
                    at: LogPosition { segment: number, offset: 0 },
                    until: LogPosition { segment: number, offset: u64::MAX },
                    writer: None,
                    path,
                    error,
                }),
            }
        }
        for segments in runs.values() {
            let last = segments.len().saturating_sub(1);
            for (i, seg) in segments.iter().enumerate() {
                let next = segments.get(i + 1);
                if let Some(prev) = i.checked_sub(1).and_then(|j| segments.get(j)) {
                    if seg.header.previous != prev.header.number {
                        out.damage.push(LogDamage {
                            at: LogPosition { segment: seg.header.previous, offset: 0 },
                            until: LogPosition { segment: seg.header.number, offset: 0 },
                            writer: Some(writer_of(&seg.header)),
                            path: seg.path.clone(),
                            error: DecodeError::Malformed { what: "a segment is missing before this one", offset: 40 },
                        });
                    }
                }
                debug_assert_eq!(next.is_none(), i == last);
                scan_segment(seg, next, &mut out);
            }
        }
    }
    for batches in out.partitions.values_mut() {
        batches.sort_by_key(|b| b.end);
    }
    out.damage.sort_by_key(|d| d.at);
    Ok(out)
}

fn writer_of(h: &SegmentHeader) -> super::LogWriter {
    super::LogWriter { base: h.base, shard: h.shard }
}

/// Reads the records of `seg`; `next` is the segment its writer wrote after it in the run (none:
/// `seg` is the run's last, the only one whose end may be torn).
///
/// Where the records end: at the file's end, or where only zeros follow (a prepared segment's
/// unwritten space, or a record whose write never reached the disk). A version 2 successor says
/// where its predecessor's records end, and they must end exactly there; a version 1 successor
/// (its writer never prepared segments) requires records up to the file's end.
fn scan_segment(seg: &Segment, next: Option<&Segment>, out: &mut Recovered) {
    let may_tear = next.is_none();
    let number = seg.header.number;
    let body = seg.bytes.get(SEGMENT_HEADER_BYTES..).unwrap_or_default();
    let damage = |offset: u64, error: DecodeError| LogDamage {
        at: LogPosition { segment: number, offset },
        until: LogPosition { segment: number, offset: u64::MAX },
        writer: Some(writer_of(&seg.header)),
        path: seg.path.clone(),
        error,
    };
    let (records, end) = match record::scan_records(body, SEGMENT_HEADER_BYTES as u64, limits::WAL_RECORD_BYTES_MAX) {
        Ok(r) => r,
        Err(e) => {
            out.damage.push(damage(SEGMENT_HEADER_BYTES as u64, e));
            return;
        }
    };
    let records_end = match end {
        ScanEnd::Clean => Some(seg.bytes.len() as u64),
        ScanEnd::Torn { offset, .. } => {
            let rest = usize::try_from(offset).ok().and_then(|o| seg.bytes.get(o..)).unwrap_or_default();
            rest.iter().all(|b| *b == 0).then_some(offset)
        }
    };
    let said = next.and_then(|n| n.header.previous_end).map(u64::from);
    match (end, records_end, said) {
        // The successor says where the records end: they must end exactly there, with nothing but
        // zeros (prepared space) behind them.
        (_, Some(at), Some(said)) if at == said => {}
        (_, at, Some(said)) => {
            let found = at.map_or_else(|| "damaged bytes".to_owned(), |a| format!("records ending at {a}"));
            tracing::error!(file = %seg.path.display(), said, found, "a closed commit log segment does not end where its successor says");
            out.damage.push(damage(
                at.unwrap_or(SEGMENT_HEADER_BYTES as u64).min(said),
                DecodeError::Malformed {
                    what: "records end before (or after) where the next segment says",
                    offset: said,
                },
            ));
        }
        (ScanEnd::Clean, _, None) => {}
        // Only zeros after the last record of the run's last segment: space never written, not a
        // tear (nothing of a record reached the disk).
        (ScanEnd::Torn { .. }, Some(_), None) if may_tear => {}
        (ScanEnd::Torn { offset, discarded }, None, None) if may_tear => {
            tracing::warn!(file = %seg.path.display(), offset, discarded, "discarding torn commit log tail (a write cut short by the crash, never acknowledged)");
            out.torn_tails.push((seg.path.clone(), offset, discarded));
        }
        (ScanEnd::Torn { offset, .. }, _, None) => {
            // Whatever cut this segment short took acknowledged records with it: its writer had
            // moved on to a newer segment, which it does only after this one's records are durable.
            out.damage.push(damage(
                offset,
                DecodeError::Malformed { what: "damaged record in a segment that is not its log's newest", offset },
            ));
        }
    }
    let path: std::sync::Arc<Path> = seg.path.clone().into();
    for (offset, rec) in records {
        let end = LogPosition { segment: number, offset: offset + (record::RECORD_HEADER_BYTES + rec.len()) as u64 };
        match format::decode_body(rec) {
            Ok(sections) => {
                out.records += 1;
                for s in sections {
                    out.partitions.entry((s.box_uid, s.partition)).or_default().push(ReplayBatch {
                        end,
                        seq: s.seq,
                        path: path.clone(),
                        ops: s.ops,
                    });
                }
            }
            Err(e) => out.damage.push(damage(offset, record::body_error_at(e, offset))),
        }
    }
}
