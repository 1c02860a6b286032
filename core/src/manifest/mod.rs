//! The manifest of one partition: an append-only log of versioned edits (`MANIFEST-<number>`)
//! and the `CURRENT` pointer file that names the live log.
//!
//! ```text
//! MANIFEST header  0..8 magic "CANDYMAN" | 8..10 version u16 (=1) | 10..16 reserved
//!                 16..24 manifest number u64 | 24..28 reserved | 28..32 CRC-32 of 0..28
//! record body      version u8 (=1) | change count u32 | changes (tag u8 + fields)
//! CURRENT          0..8 magic "CANDYCUR" | 8..10 version u16 (=1) | 10..18 manifest number u64
//!                 18..22 CRC-32 of 0..18
//! ```
//!
//! Invariants:
//! - One record is one edit, applied atomically: a flush adds its table and advances the flushed
//!   log position in the same record, so a crash never leaves both or neither of a log record and
//!   its table live.
//! - `CURRENT` is replaced only by write-temp, fdatasync, rename, fsync-directory; it always names a
//!   complete, durable manifest.
//! - A checkpoint writes the whole state as the first edit of a new manifest before `CURRENT`
//!   switches to it, so replay reads at most one snapshot plus the edits since.
//! - A torn last record is discarded (it was never acknowledged); a bad record followed by more
//!   records is corruption and stops the open with an error naming the file.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    codec::{crc32, Put, Reader},
    error::DecodeError,
    hlc::Hlc,
    limits,
    locator::{decode_parts, encode_parts, Part},
    log::{LogPosition, LogWriter},
    types::SyrupId,
};

/// Magic bytes of a manifest log.
pub const MANIFEST_MAGIC: [u8; 8] = *b"CANDYMAN";
/// Magic bytes of the CURRENT pointer.
pub const CURRENT_MAGIC: [u8; 8] = *b"CANDYCUR";
/// Current manifest format version.
pub const MANIFEST_VERSION: u16 = 1;
/// Version byte of an edit record.
pub const EDIT_VERSION: u8 = 1;
/// Bytes of the manifest header.
pub const MANIFEST_HEADER_BYTES: usize = crate::record::LOG_HEADER_BYTES;
/// Bytes of the CURRENT file.
pub const CURRENT_BYTES: usize = 22;
/// Name of the pointer file.
pub const CURRENT_FILE: &str = "CURRENT";

/// An SSTable as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRecord {
    /// File number (`T-<number>.sst`).
    pub number: u64,
    /// LSM level.
    pub level: u8,
    /// File size, checked at open: a truncated table is caught before its footer is read.
    pub size: u64,
    /// Smallest point key.
    pub smallest: Vec<u8>,
    /// Largest point key.
    pub largest: Vec<u8>,
    /// Largest HLC in the table: recovery advances the clock past it.
    pub max_hlc: Hlc,
}

/// A part of an in-flight multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// Where the part's bytes are.
    pub part: Part,
    /// When it was uploaded.
    pub created_ms: u64,
}

/// An in-flight multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Upload id.
    pub id: u64,
    /// Destination key.
    pub key: Vec<u8>,
    /// Content type of the final Candy.
    pub content_type: String,
    /// User metadata of the final Candy.
    pub user_meta: Vec<(String, String)>,
    /// Creation time; the TTL sweep expires uploads older than the TTL.
    pub created_ms: u64,
    /// Uploaded parts by part number.
    pub parts: BTreeMap<u32, UploadPart>,
}

/// A durable cross-partition rename intent, kept at the source partition (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameIntent {
    /// Unique token; names the rendezvous marker.
    pub token: u128,
    /// Key being renamed.
    pub source_key: Vec<u8>,
    /// The source's HLC when the intent was made: finalize deletes only this version.
    pub source_hlc: Hlc,
    /// New key.
    pub target_key: Vec<u8>,
    /// Partition of the new key.
    pub target_partition: u16,
    /// When the intent was made; abandoned after the rename window.
    pub created_ms: u64,
}

/// One change inside an edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A table became live.
    AddTable(TableRecord),
    /// A table stopped being live.
    RemoveTable(u64),
    /// WALs numbered below this are flushed and obsolete.
    LogNumber(u64),
    /// The next unused file number.
    NextFileNumber(u64),
    /// This partition created a Syrup (it is responsible for deleting it).
    SyrupCreated(SyrupId),
    /// This partition deleted a Syrup.
    SyrupDropped(SyrupId),
    /// No stamp at or below this was issued: recovery starts the clock above it.
    HlcFloor(Hlc),
    /// A multipart upload started.
    UploadCreated {
        /// Upload id.
        id: u64,
        /// Destination key.
        key: Vec<u8>,
        /// Content type.
        content_type: String,
        /// User metadata.
        user_meta: Vec<(String, String)>,
        /// Creation time.
        created_ms: u64,
    },
    /// A part was uploaded (replaces an earlier part of the same number).
    UploadPart {
        /// Upload id.
        id: u64,
        /// Part number, 1-based.
        number: u32,
        /// The part.
        part: UploadPart,
    },
    /// An upload was completed, aborted or expired.
    UploadEnded(u64),
    /// A rename intent was recorded.
    Intent(RenameIntent),
    /// A rename intent was finalized or abandoned.
    IntentCleared(u128),
    /// WAL `number` was replayed at an open and ends, as far as it holds acknowledged records,
    /// at `length`: the bytes behind are a discarded torn tail. Recovery reads it up to there and
    /// requires every byte before to be whole records; a WAL that is neither sealed nor the newest
    /// must be whole to its end, so damage there is corruption, never a tear.
    WalSealed {
        /// The WAL's number.
        number: u64,
        /// Bytes of the WAL (header included) that hold whole records.
        length: u64,
    },
    /// Every record of this partition in its shard's commit log up to `position` is in a table
    /// (or, for a new partition, there was none before), the last of them batch `seq`: recovery
    /// replays the records after it, which must be batches `seq + 1`, `seq + 2`, ...
    LogFlushed {
        /// The log position.
        position: LogPosition,
        /// The partition's batch sequence there.
        seq: u64,
        /// The log the position is in.
        writer: LogWriter,
    },
}

/// The state a manifest describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Live tables by number.
    pub tables: BTreeMap<u64, TableRecord>,
    /// Oldest WAL still needed.
    pub log_number: u64,
    /// Next unused file number.
    pub next_file_number: u64,
    /// Syrups this partition created and has not deleted.
    pub syrups: BTreeSet<SyrupId>,
    /// Clock floor.
    pub hlc_floor: Hlc,
    /// In-flight uploads.
    pub uploads: BTreeMap<u64, Upload>,
    /// Pending rename intents.
    pub intents: BTreeMap<u128, RenameIntent>,
    /// Replayed WALs at or after the log number, by number: the length of their whole records.
    pub wal_seals: BTreeMap<u64, u64>,
    /// The commit log position flushed up to; `ZERO` for a partition that still has its v1 WALs
    /// (it has never been flushed since the shard commit log came).
    pub log_flushed: LogPosition,
    /// The batch sequence at the flushed position.
    pub log_flushed_seq: u64,
    /// The log the flushed position is in.
    pub log_flushed_writer: LogWriter,
}

impl ManifestState {
    /// Applies one change.
    ///
    /// # Errors
    /// [`DecodeError::Malformed`] when the change contradicts the state (a part for an unknown
    /// upload): the log cannot be trusted.
    pub fn apply(&mut self, c: &Change) -> Result<(), DecodeError> {
        match c {
            Change::AddTable(t) => {
                self.tables.insert(t.number, t.clone());
            }
            Change::RemoveTable(n) => {
                self.tables.remove(n);
            }
            Change::LogNumber(n) => {
                self.log_number = self.log_number.max(*n);
                let keep = self.wal_seals.split_off(&self.log_number);
                self.wal_seals = keep;
            }
            Change::NextFileNumber(n) => self.next_file_number = self.next_file_number.max(*n),
            Change::SyrupCreated(s) => {
                self.syrups.insert(*s);
            }
            Change::SyrupDropped(s) => {
                self.syrups.remove(s);
            }
            Change::HlcFloor(h) => self.hlc_floor = self.hlc_floor.max(*h),
            Change::UploadCreated { id, key, content_type, user_meta, created_ms } => {
                self.uploads.insert(
                    *id,
                    Upload {
                        id: *id,
                        key: key.clone(),
                        content_type: content_type.clone(),
                        user_meta: user_meta.clone(),
                        created_ms: *created_ms,
                        parts: BTreeMap::new(),
                    },
                );
            }
            Change::UploadPart { id, number, part } => {
                let u = self
                    .uploads
                    .get_mut(id)
                    .ok_or(DecodeError::Malformed { what: "part of unknown upload", offset: 0 })?;
                u.parts.insert(*number, part.clone());
            }
            Change::UploadEnded(id) => {
                self.uploads.remove(id);
            }
            Change::Intent(i) => {
                self.intents.insert(i.token, i.clone());
            }
            Change::IntentCleared(t) => {
                self.intents.remove(t);
            }
            Change::WalSealed { number, length } => {
                if *number >= self.log_number {
                    self.wal_seals.insert(*number, *length);
                }
            }
            Change::LogFlushed { position, seq, writer } => {
                // Later edits are later flushes: positions of a later node start are above every
                // earlier one.
                if *position >= self.log_flushed {
                    self.log_flushed = *position;
                    self.log_flushed_seq = *seq;
                    self.log_flushed_writer = *writer;
                }
            }
        }
        Ok(())
    }

    /// The whole state as changes: the first edit of a checkpointed manifest.
    pub fn snapshot(&self) -> Vec<Change> {
        let mut out = vec![
            Change::LogNumber(self.log_number),
            Change::NextFileNumber(self.next_file_number),
            Change::HlcFloor(self.hlc_floor),
        ];
        out.extend(self.tables.values().cloned().map(Change::AddTable));
        out.extend(self.syrups.iter().copied().map(Change::SyrupCreated));
        for u in self.uploads.values() {
            out.push(Change::UploadCreated {
                id: u.id,
                key: u.key.clone(),
                content_type: u.content_type.clone(),
                user_meta: u.user_meta.clone(),
                created_ms: u.created_ms,
            });
            for (n, p) in &u.parts {
                out.push(Change::UploadPart { id: u.id, number: *n, part: p.clone() });
            }
        }
        out.extend(self.intents.values().cloned().map(Change::Intent));
        out.extend(self.wal_seals.iter().map(|(n, l)| Change::WalSealed { number: *n, length: *l }));
        if self.log_flushed != LogPosition::ZERO {
            out.push(Change::LogFlushed {
                position: self.log_flushed,
                seq: self.log_flushed_seq,
                writer: self.log_flushed_writer,
            });
        }
        out
    }
}

/// The file name of manifest `number`.
pub fn file_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// Parses a manifest file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("MANIFEST-")?.parse().ok()
}

/// The header of manifest `number` (the shared log header of [`crate::record`]).
pub fn encode_header(number: u64) -> Vec<u8> {
    crate::record::encode_log_header(&MANIFEST_MAGIC, MANIFEST_VERSION, number)
}

/// Checks a manifest header and returns its number.
///
/// # Errors
/// [`DecodeError`] for a bad magic, version, checksum or reserved bytes.
pub fn decode_header(buf: &[u8]) -> Result<u64, DecodeError> {
    crate::record::decode_log_header(buf, &MANIFEST_MAGIC, MANIFEST_VERSION)
}

/// The bytes of `CURRENT` naming manifest `number`.
pub fn encode_current(number: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(CURRENT_BYTES);
    c.extend_from_slice(&CURRENT_MAGIC);
    c.put_u16(MANIFEST_VERSION);
    c.put_u64(number);
    let crc = crc32(&[&c]);
    c.put_u32(crc);
    assert!(c.len() == CURRENT_BYTES);
    c
}

/// Reads `CURRENT`.
///
/// # Errors
/// [`DecodeError`] for a bad magic, version, checksum or length.
pub fn decode_current(buf: &[u8]) -> Result<u64, DecodeError> {
    let mut r = Reader::new(buf);
    let magic = r.array::<8>()?;
    if magic != CURRENT_MAGIC {
        return Err(DecodeError::BadMagic { found: magic.to_vec() });
    }
    let version = r.u16()?;
    if version != MANIFEST_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let number = r.u64()?;
    let expected = r.u32()?;
    let found = crc32(&[buf.get(..CURRENT_BYTES - 4).unwrap_or_default()]);
    if found != expected {
        return Err(DecodeError::ChecksumMismatch { offset: 0, expected, found });
    }
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed { what: "current length", offset: CURRENT_BYTES as u64 });
    }
    Ok(number)
}

fn put_meta(out: &mut Vec<u8>, meta: &[(String, String)]) {
    out.put_u16(meta.len() as u16);
    for (k, v) in meta {
        out.put_bytes16(k.as_bytes());
        out.put_bytes16(v.as_bytes());
    }
}

fn get_string(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let at = r.position() as u64;
    std::str::from_utf8(r.bytes16()?)
        .map(str::to_owned)
        .map_err(|_| DecodeError::Malformed { what: "utf-8 string", offset: at })
}

fn get_meta(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, DecodeError> {
    let n = r.u16()?;
    let mut out = Vec::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        out.push((get_string(r)?, get_string(r)?));
    }
    Ok(out)
}

/// Encodes one edit (a list of changes applied atomically).
pub fn encode_edit(changes: &[Change]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u8(EDIT_VERSION);
    out.put_u32(changes.len() as u32);
    for c in changes {
        match c {
            Change::AddTable(t) => {
                out.put_u8(1);
                out.put_u64(t.number);
                out.put_u8(t.level);
                out.put_u64(t.size);
                out.put_bytes16(&t.smallest);
                out.put_bytes16(&t.largest);
                t.max_hlc.encode(&mut out);
            }
            Change::RemoveTable(n) => {
                out.put_u8(2);
                out.put_u64(*n);
            }
            Change::LogNumber(n) => {
                out.put_u8(3);
                out.put_u64(*n);
            }
            Change::NextFileNumber(n) => {
                out.put_u8(4);
                out.put_u64(*n);
            }
            Change::SyrupCreated(s) => {
                out.put_u8(5);
                out.put_u64(s.0);
            }
            Change::SyrupDropped(s) => {
                out.put_u8(6);
                out.put_u64(s.0);
            }
            Change::HlcFloor(h) => {
                out.put_u8(7);
                h.encode(&mut out);
            }
            Change::UploadCreated { id, key, content_type, user_meta, created_ms } => {
                out.put_u8(8);
                out.put_u64(*id);
                out.put_bytes16(key);
                out.put_bytes16(content_type.as_bytes());
                put_meta(&mut out, user_meta);
                out.put_u64(*created_ms);
            }
            Change::UploadPart { id, number, part } => {
                out.put_u8(9);
                out.put_u64(*id);
                out.put_u32(*number);
                out.put_u64(part.created_ms);
                encode_parts(std::slice::from_ref(&part.part), &mut out);
            }
            Change::UploadEnded(id) => {
                out.put_u8(10);
                out.put_u64(*id);
            }
            Change::Intent(i) => {
                out.put_u8(11);
                out.extend_from_slice(&i.token.to_le_bytes());
                out.put_bytes16(&i.source_key);
                i.source_hlc.encode(&mut out);
                out.put_bytes16(&i.target_key);
                out.put_u16(i.target_partition);
                out.put_u64(i.created_ms);
            }
            Change::IntentCleared(t) => {
                out.put_u8(12);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Change::WalSealed { number, length } => {
                out.put_u8(13);
                out.put_u64(*number);
                out.put_u64(*length);
            }
            Change::LogFlushed { position, seq, writer } => {
                out.put_u8(14);
                out.put_u64(position.segment);
                out.put_u64(position.offset);
                out.put_u64(*seq);
                out.put_u64(writer.base);
                out.put_u16(writer.shard);
            }
        }
    }
    out
}

/// Decodes one edit.
///
/// # Errors
/// [`DecodeError`] for an unknown version or tag, a short edit, or an invalid field.
pub fn decode_edit(buf: &[u8]) -> Result<Vec<Change>, DecodeError> {
    if buf.len() > limits::MANIFEST_EDIT_BYTES_MAX {
        return Err(DecodeError::Malformed { what: "edit length", offset: 0 });
    }
    let mut r = Reader::new(buf);
    let version = r.u8()?;
    if version != EDIT_VERSION {
        return Err(DecodeError::UnsupportedVersion(u16::from(version)));
    }
    let count = r.u32()?;
    let mut out = Vec::with_capacity((count as usize).min(4096));
    for _ in 0..count {
        let at = r.position() as u64;
        let c = match r.u8()? {
            1 => {
                let number = r.u64()?;
                let level = r.u8()?;
                if usize::from(level) >= limits::LEVELS_MAX {
                    return Err(DecodeError::Malformed { what: "table level", offset: at });
                }
                Change::AddTable(TableRecord {
                    number,
                    level,
                    size: r.u64()?,
                    smallest: r.bytes16()?.to_vec(),
                    largest: r.bytes16()?.to_vec(),
                    max_hlc: Hlc::decode(&mut r)?,
                })
            }
            2 => Change::RemoveTable(r.u64()?),
            3 => Change::LogNumber(r.u64()?),
            4 => Change::NextFileNumber(r.u64()?),
            5 => Change::SyrupCreated(SyrupId(r.u64()?)),
            6 => Change::SyrupDropped(SyrupId(r.u64()?)),
            7 => Change::HlcFloor(Hlc::decode(&mut r)?),
            8 => Change::UploadCreated {
                id: r.u64()?,
                key: r.bytes16()?.to_vec(),
                content_type: get_string(&mut r)?,
                user_meta: get_meta(&mut r)?,
                created_ms: r.u64()?,
            },
            9 => {
                let id = r.u64()?;
                let number = r.u32()?;
                let created_ms = r.u64()?;
                let mut parts = decode_parts(&mut r)?;
                if parts.len() != 1 {
                    return Err(DecodeError::Malformed { what: "upload part", offset: at });
                }
                let part = parts.remove(0);
                Change::UploadPart { id, number, part: UploadPart { part, created_ms } }
            }
            10 => Change::UploadEnded(r.u64()?),
            11 => Change::Intent(RenameIntent {
                token: u128::from_le_bytes(r.array()?),
                source_key: r.bytes16()?.to_vec(),
                source_hlc: Hlc::decode(&mut r)?,
                target_key: r.bytes16()?.to_vec(),
                target_partition: r.u16()?,
                created_ms: r.u64()?,
            }),
            12 => Change::IntentCleared(u128::from_le_bytes(r.array()?)),
            13 => Change::WalSealed { number: r.u64()?, length: r.u64()? },
            14 => {
                let position = LogPosition { segment: r.u64()?, offset: r.u64()? };
                // Segment numbers start at 1: a flushed position in segment 0 was never written,
                // and would read as "no flushed position" (a v1 partition).
                if position.segment == 0 {
                    return Err(DecodeError::Malformed { what: "flushed log position", offset: at });
                }
                Change::LogFlushed { position, seq: r.u64()?, writer: LogWriter { base: r.u64()?, shard: r.u16()? } }
            }
            _ => return Err(DecodeError::Malformed { what: "change tag", offset: at }),
        };
        out.push(c);
    }
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed { what: "trailing bytes", offset: r.position() as u64 });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locator::SegmentRef;

    fn all_changes() -> Vec<Change> {
        let part = Part {
            length: 10,
            chunk_size: 1024,
            checksum: 5,
            segments: vec![SegmentRef { syrup: SyrupId(9), offset: 64, length: 10 }],
        };
        vec![
            Change::AddTable(TableRecord {
                number: 3,
                level: 1,
                size: 100,
                smallest: b"a".to_vec(),
                largest: b"z".to_vec(),
                max_hlc: Hlc::ZERO,
            }),
            Change::RemoveTable(2),
            Change::LogNumber(4),
            Change::NextFileNumber(5),
            Change::SyrupCreated(SyrupId(9)),
            Change::SyrupDropped(SyrupId(8)),
            Change::HlcFloor(Hlc { physical_ms: 1, logical: 2, node: 3 }),
            Change::UploadCreated {
                id: 1,
                key: b"k".to_vec(),
                content_type: "x/y".into(),
                user_meta: vec![("a".into(), "b".into())],
                created_ms: 7,
            },
            Change::UploadPart { id: 1, number: 2, part: UploadPart { part, created_ms: 8 } },
            Change::UploadEnded(1),
            Change::Intent(RenameIntent {
                token: 77,
                source_key: b"s".to_vec(),
                source_hlc: Hlc::ZERO,
                target_key: b"t".to_vec(),
                target_partition: 3,
                created_ms: 9,
            }),
            Change::IntentCleared(77),
            Change::WalSealed { number: 6, length: 4096 },
            Change::LogFlushed {
                position: LogPosition { segment: 9, offset: 4242 },
                seq: 17,
                writer: LogWriter { base: 3, shard: 2 },
            },
        ]
    }

    /// Found by fuzzing (`manifest_edit`): a flushed position in segment 0 applied, but the
    /// snapshot left it out (a zero position means "none"), so a checkpoint lost its sequence.
    #[test]
    fn a_flushed_position_in_segment_zero_is_refused() {
        let edit = encode_edit(&[Change::LogFlushed {
            position: LogPosition { segment: 0, offset: 0 },
            seq: 7,
            writer: LogWriter { base: 1, shard: 0 },
        }]);
        assert!(matches!(decode_edit(&edit), Err(DecodeError::Malformed { what: "flushed log position", .. })));
    }

    #[test]
    fn seals_below_the_log_number_are_dropped() {
        let mut s = ManifestState::default();
        for n in [3, 5, 8] {
            s.apply(&Change::WalSealed { number: n, length: 100 + n }).expect("seal");
        }
        s.apply(&Change::LogNumber(5)).expect("log number");
        assert_eq!(s.wal_seals.keys().copied().collect::<Vec<_>>(), vec![5, 8]);
        // A seal for a log already flushed is not taken.
        s.apply(&Change::WalSealed { number: 4, length: 1 }).expect("seal");
        assert!(!s.wal_seals.contains_key(&4));
        let mut t = ManifestState::default();
        for c in s.snapshot() {
            t.apply(&c).expect("apply");
        }
        assert_eq!(s, t);
    }

    #[test]
    fn edits_round_trip_and_truncations_fail() {
        let changes = all_changes();
        let enc = encode_edit(&changes);
        assert_eq!(decode_edit(&enc), Ok(changes));
        for n in 0..enc.len() {
            assert!(decode_edit(&enc[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn snapshot_rebuilds_the_state() {
        let mut s = ManifestState::default();
        for c in all_changes().iter().take(9) {
            s.apply(c).expect("apply");
        }
        let mut t = ManifestState::default();
        for c in s.snapshot() {
            t.apply(&c).expect("apply");
        }
        assert_eq!(s, t);
        assert_eq!(t.uploads.len(), 1);
    }

    #[test]
    fn an_upload_part_with_a_segment_length_near_u64_max_is_malformed() {
        // Found by fuzzing (fuzz target `manifest_edit`): the part's segment range check overflowed
        // in `locator::stored_len` and panicked instead of refusing the edit.
        let length = u64::MAX;
        let segments = vec![SegmentRef { syrup: SyrupId(1), offset: 0, length }];
        let part = Part { length, chunk_size: 512, checksum: 0, segments };
        let edit = encode_edit(&[Change::UploadPart { id: 1, number: 1, part: UploadPart { part, created_ms: 0 } }]);
        assert!(matches!(decode_edit(&edit), Err(DecodeError::Malformed { what: "segment range", .. })));
    }

    #[test]
    fn headers_and_current_round_trip() {
        assert_eq!(decode_header(&encode_header(12)), Ok(12));
        assert_eq!(decode_current(&encode_current(12)), Ok(12));
        let mut c = encode_current(12);
        c[12] ^= 4;
        assert!(matches!(decode_current(&c), Err(DecodeError::ChecksumMismatch { .. })));
    }
}

mod log;
pub(crate) use log::ManifestLog;
