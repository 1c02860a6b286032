//! Migration of a partition from before the shard commit log (format v1): it kept a WAL of its
//! own. Its WALs at or after the manifest's log number are replayed into the memtable at open,
//! oldest first; the first flush then retires them ([`crate::memtable::Memtables`] holds their
//! numbers until it does).
//!
//! Invariants:
//! - Every WAL the manifest needs is there: the one its log number names and every sealed one.
//! - Only the newest unsealed WAL may end in a torn tail (discarded: never acknowledged); damage
//!   anywhere else is corruption naming the file and offset.
//! - Each replayed WAL is sealed (in the manifest) at the end of its whole records, so a tear
//!   discarded now is not mistaken for damage later.

use bytes::Bytes;

use super::RecoveryReport;
use crate::{
    error::{Corruption, DecodeError, Error, FileKind, Result},
    hlc::HlcClock,
    limits,
    locator::CandyLocator,
    manifest::ManifestState,
    memtable::Memtable,
    record::{self, ScanEnd},
    storage::{read_whole, Storage},
    wal::{self, WalOp},
};

/// Replays the v1 WALs `wals` (sorted, at or after the log number) of the partition in `dir`
/// into `mem`, observing their stamps in `clock`, and seals each in `manifest`.
///
/// # Returns
/// The numbers of the WALs replayed.
///
/// # Errors
/// `Corrupt` naming the WAL for a missing log, or damage other than the newest log's torn tail;
/// `Io`.
pub(crate) async fn replay_v1_wals<S: Storage>(
    storage: &S,
    dir: &std::path::Path,
    wals: &[u64],
    manifest: &mut ManifestState,
    clock_state: &mut HlcClock,
    mem: &mut Memtable,
    report: &mut RecoveryReport,
) -> Result<Vec<u64>> {
    let corrupt =
        |kind, path: std::path::PathBuf| move |e: DecodeError| Error::Corrupt(Corruption::new(kind, path.clone(), e));
    let mut legacy_wals = Vec::new();
    // Every log the manifest needs must be there: the one named by the log number (its
    // header was durable before the manifest named it), and every sealed one.
    let needed = std::iter::once(manifest.log_number).chain(manifest.wal_seals.keys().copied());
    for number in needed {
        if !wals.contains(&number) {
            return Err(corrupt(FileKind::Wal, dir.join(wal::file_name(number)))(DecodeError::Malformed {
                what: "missing log that the manifest needs",
                offset: 0,
            }));
        }
    }
    // Only the newest unsealed WAL can end in a tear: every older one was whole when the
    // next was started, and a sealed one is read up to its seal.
    let newest = wals.last().copied();
    let mut seals = Vec::with_capacity(wals.len());
    for &number in wals {
        let path = dir.join(wal::file_name(number));
        let seal = manifest.wal_seals.get(&number).copied();
        let may_tear = seal.is_none() && Some(number) == newest;
        let bytes = read_whole(storage, &path).await?;
        if bytes.len() < wal::WAL_HEADER_BYTES {
            if !may_tear {
                return Err(corrupt(FileKind::Wal, path)(DecodeError::Truncated(crate::codec::Short {
                    at: bytes.len(),
                    needed: wal::WAL_HEADER_BYTES,
                })));
            }
            // Created but its header never became durable: nothing was acknowledged in it.
            report.torn_tails.push((number, 0, bytes.len() as u64));
            continue;
        }
        let n = wal::decode_header(bytes.get(..wal::WAL_HEADER_BYTES).unwrap_or_default())
            .map_err(corrupt(FileKind::Wal, path.clone()))?;
        if n != number {
            return Err(corrupt(FileKind::Wal, path)(DecodeError::Malformed { what: "wal number", offset: 16 }));
        }
        let whole = match seal {
            Some(length) => usize::try_from(length).ok().and_then(|l| bytes.get(..l)).ok_or_else(|| {
                corrupt(FileKind::Wal, path.clone())(DecodeError::Truncated(crate::codec::Short {
                    at: bytes.len(),
                    needed: length as usize,
                }))
            })?,
            None => &bytes[..],
        };
        let body = whole.get(wal::WAL_HEADER_BYTES..).unwrap_or_default();
        let (records, end) = record::scan_records(body, wal::WAL_HEADER_BYTES as u64, limits::WAL_RECORD_BYTES_MAX)
            .map_err(corrupt(FileKind::Wal, path.clone()))?;
        let valid_end = match end {
            ScanEnd::Clean => whole.len() as u64,
            ScanEnd::Torn { offset, .. } if !may_tear => {
                // A tear cannot happen here: whatever cut this log short or damaged its
                // end took acknowledged records with it.
                return Err(corrupt(FileKind::Wal, path)(DecodeError::Malformed {
                    what: "damaged record in a log that is not the newest",
                    offset,
                }));
            }
            ScanEnd::Torn { offset, discarded } => {
                tracing::warn!(file = %path.display(), offset, discarded, "discarding torn WAL tail (a write cut short by the crash, never acknowledged)");
                report.torn_tails.push((number, offset, discarded));
                offset
            }
        };
        for (offset, rec) in records {
            let ops = wal::decode_body(rec)
                .map_err(|e| corrupt(FileKind::Wal, path.clone())(record::body_error_at(e, offset)))?;
            for op in ops {
                match op {
                    WalOp::Set { key, locator } => {
                        let l = CandyLocator::decode(&locator)
                            .map_err(|e| corrupt(FileKind::Wal, path.clone())(record::body_error_at(e, offset)))?;
                        clock_state.observe(l.hlc);
                        mem.set(Bytes::from(key), Bytes::from(locator), &l);
                    }
                    WalOp::DeleteRange(rt) => {
                        clock_state.observe(rt.hlc);
                        mem.delete_range(rt);
                    }
                }
            }
            report.wal_records += 1;
        }
        seals.push((number, valid_end));
        legacy_wals.push(number);
    }
    // The checkpoint below records where each replayed log's whole records end, so a
    // tear discarded now is not mistaken for damage once a newer log exists.
    for (number, length) in seals {
        manifest.wal_seals.insert(number, length);
    }
    Ok(legacy_wals)
}
