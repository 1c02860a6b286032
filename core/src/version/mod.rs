//! The LSM version of one partition: its live tables by level, the compactions that reshape
//! them, the merge that compaction and listing share, building a table from a frozen memtable,
//! and the obsolete files waiting for their grace period. [`Lsm`] owns these fields; the engine
//! changes them through its methods once the manifest edit that names the change is durable.
//!
//! Invariants:
//! - L0 tables are newest first and may overlap; L1+ tables are sorted by smallest key and
//!   disjoint by point keys (asserted when a compaction's output is installed).
//! - A table is live only once it is durable (written, fdatasync'd, directory synced) and a
//!   durable manifest edit names it.
//! - Obsolete tables and WALs are deleted only after the GC grace period; unlinking a mapped table
//!   keeps its mapping valid.

pub(crate) mod compaction;
pub(crate) mod flush;
pub(crate) mod merge;

use std::{path::PathBuf, rc::Rc};

use bytes::Bytes;

use crate::{
    error::{Corruption, DecodeError, Error, FileKind, Result},
    hlc::Hlc,
    limits,
    manifest::TableRecord,
    storage::{Storage, StorageFile},
    table::{Table, TableOptions},
    types::RangeTombstone,
};

/// The file name of table `number`.
pub fn table_file_name(number: u64) -> String {
    format!("T-{number:06}.sst")
}

/// Parses a table file name.
pub fn parse_table_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("T-")?.strip_suffix(".sst")?.parse().ok()
}

/// The error for damage found in table `number` of the partition in `dir`.
pub(crate) fn table_error(number: u64, dir: &std::path::Path) -> impl Fn(DecodeError) -> Error + '_ {
    move |e| Error::Corrupt(Corruption::new(FileKind::Table, dir.join(table_file_name(number)), e))
}

/// One live SSTable.
#[derive(Debug)]
pub(crate) struct TableHandle {
    pub(crate) rec: TableRecord,
    pub(crate) table: Table,
}

/// The live tables by level: L0 newest first, L1+ sorted by smallest key and disjoint.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    levels: Vec<Vec<Rc<TableHandle>>>,
}

impl Version {
    /// Every table, L0 newest first, then each level in key order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Rc<TableHandle>> {
        self.levels.iter().flatten()
    }

    /// The tables of each level.
    pub(crate) fn levels(&self) -> &[Vec<Rc<TableHandle>>] {
        &self.levels
    }

    /// Every range tombstone of every table.
    pub(crate) fn range_tombstones(&self) -> impl Iterator<Item = &RangeTombstone> {
        self.all().flat_map(|t| t.table.range_tombstones().iter())
    }

    /// The newest encoded version of `key` in the tables (tombstones included), not yet checked
    /// against range tombstones.
    ///
    /// # Errors
    /// `Corrupt` naming the table when a lookup fails its checks.
    pub(crate) fn get(&self, key: &[u8], dir: &std::path::Path) -> Result<Option<Bytes>> {
        for (level, tables) in self.levels.iter().enumerate() {
            if level == 0 {
                for t in tables {
                    if let Some(v) = t.table.get(key).map_err(table_error(t.rec.number, dir))? {
                        return Ok(Some(v));
                    }
                }
            } else {
                let i = tables.partition_point(|t| t.rec.largest.as_slice() < key);
                if let Some(t) = tables.get(i) {
                    if t.rec.smallest.as_slice() <= key {
                        if let Some(v) = t.table.get(key).map_err(table_error(t.rec.number, dir))? {
                            return Ok(Some(v));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Opens every table of `tables` in `dir` through a mapping and checks it (size against the
    /// manifest, footer, block checksums).
    ///
    /// # Returns
    /// The version and the greatest stamp any table holds.
    ///
    /// # Errors
    /// `Corrupt` naming the table; `Io`.
    pub(crate) async fn open<'a, S: Storage>(
        storage: &S,
        dir: &std::path::Path,
        tables: impl Iterator<Item = &'a TableRecord>,
    ) -> Result<(Version, Hlc)> {
        let corrupt =
            |path: PathBuf| move |e: DecodeError| Error::Corrupt(Corruption::new(FileKind::Table, path.clone(), e));
        let mut levels = vec![Vec::new(); limits::LEVELS_MAX];
        let mut max_hlc = Hlc::ZERO;
        for rec in tables {
            let path = dir.join(table_file_name(rec.number));
            let f = storage.open(&path).await?;
            let len = f.len().await?;
            if len != rec.size {
                return Err(corrupt(path)(DecodeError::Malformed {
                    what: "table size differs from manifest",
                    offset: len,
                }));
            }
            let map = f.map(0, usize::try_from(len).unwrap_or(usize::MAX))?;
            let table = Table::open(map).map_err(corrupt(path.clone()))?;
            max_hlc = max_hlc.max(table.meta().max_hlc);
            let level: &mut Vec<_> = levels.get_mut(usize::from(rec.level)).ok_or_else(|| {
                Error::Corrupt(Corruption::new(
                    FileKind::Manifest,
                    path.clone(),
                    DecodeError::Malformed { what: "level", offset: 0 },
                ))
            })?;
            level.push(Rc::new(TableHandle { rec: rec.clone(), table }));
        }
        if let Some(l0) = levels.get_mut(0) {
            l0.sort_by_key(|t| std::cmp::Reverse(t.rec.number));
        }
        for level in levels.iter_mut().skip(1) {
            level.sort_by(|a, b| a.rec.smallest.cmp(&b.rec.smallest));
        }
        Ok((Version { levels }, max_hlc))
    }
}

/// Writes table bytes durably (the caller syncs the directory) and opens them through a
/// mapping. On a full disk the file is removed again: nothing names it.
///
/// # Errors
/// `Io`; `Corrupt` when what was written does not read back as a table.
pub(crate) async fn write_table<S: Storage>(
    storage: &S,
    dir: &std::path::Path,
    number: u64,
    bytes: Vec<u8>,
) -> Result<Table> {
    let path = dir.join(table_file_name(number));
    let len = bytes.len();
    let file = storage.create(&path).await?;
    if let Err(e) = file.write_at(bytes, 0).await {
        if e.is_no_space() {
            let _ = storage.remove(&path).await;
        }
        return Err(e.into());
    }
    file.sync_data().await?;
    let map = file.map(0, len)?;
    Table::open(map).map_err(|e| Error::Corrupt(Corruption::new(FileKind::Table, path, e)))
}

/// The LSM state of a partition: the current version, where each level's round-robin
/// compaction resumes, and the files waiting to be deleted.
#[derive(Debug)]
pub(crate) struct Lsm {
    version: Rc<Version>,
    /// The largest key of the last table compacted out of each level.
    compact_cursor: Vec<Vec<u8>>,
    /// Files no manifest names any more, and since when.
    obsolete: Vec<(PathBuf, u64)>,
}

impl Lsm {
    /// The LSM state over `version`.
    pub(crate) fn new(version: Version) -> Self {
        Lsm { version: Rc::new(version), compact_cursor: vec![Vec::new(); limits::LEVELS_MAX], obsolete: Vec::new() }
    }

    /// The current version.
    pub(crate) fn version(&self) -> &Rc<Version> {
        &self.version
    }

    /// Tables in L0.
    pub(crate) fn l0_tables(&self) -> usize {
        self.version.levels.first().map_or(0, Vec::len)
    }

    /// Makes a flushed table the newest of L0.
    pub(crate) fn add_flushed(&mut self, table: Rc<TableHandle>) {
        let mut v = (*self.version).clone();
        if let Some(l0) = v.levels.first_mut() {
            l0.insert(0, table);
        }
        self.version = Rc::new(v);
    }

    /// Replaces a compaction's inputs with its outputs (the manifest edit saying so is durable),
    /// and notes the inputs' files as obsolete since `now`.
    ///
    /// # Panics
    /// When the output level's tables would overlap: the compaction merged the wrong inputs.
    pub(crate) fn compacted(
        &mut self,
        c: &compaction::Compaction,
        added: Vec<Rc<TableHandle>>,
        dir: &std::path::Path,
        now: u64,
    ) {
        let inputs = c.input_numbers();
        let mut v: Version = (*self.version).clone();
        for level in v.levels.iter_mut() {
            level.retain(|t| !inputs.contains(&t.rec.number));
        }
        if let Some(out) = v.levels.get_mut(c.output_level) {
            out.extend(added);
            out.sort_by(|a, b| a.rec.smallest.cmp(&b.rec.smallest));
            // Tables of range tombstones only have no point keys (both keys empty).
            let mut prev: Option<&[u8]> = None;
            for t in out.iter().filter(|t| !t.rec.largest.is_empty()) {
                assert!(
                    prev.is_none_or(|p| p < t.rec.smallest.as_slice()),
                    "the tables of L{} overlap after a compaction",
                    c.output_level
                );
                prev = Some(&t.rec.largest);
            }
        }
        self.version = Rc::new(v);
        if c.output_level >= 2 {
            if let (Some(first), Some(cur)) = (c.inputs.first(), self.compact_cursor.get_mut(c.output_level - 1)) {
                *cur = first.rec.largest.clone();
            }
        }
        for n in inputs {
            self.obsolete.push((dir.join(table_file_name(n)), now));
        }
    }

    /// Notes a file no manifest names any more, since `now`.
    pub(crate) fn obsolete(&mut self, path: PathBuf, now: u64) {
        self.obsolete.push((path, now));
    }

    /// Takes the obsolete files whose grace period has passed at `now`.
    pub(crate) fn take_due(&mut self, now: u64, grace: u64) -> Vec<PathBuf> {
        let (due, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.obsolete).into_iter().partition(|(_, since)| since.saturating_add(grace) <= now);
        self.obsolete = keep;
        due.into_iter().map(|(p, _)| p).collect()
    }

    /// Where level `level`'s round-robin compaction resumes.
    pub(crate) fn cursor(&self, level: usize) -> &[u8] {
        self.compact_cursor.get(level).map_or(&[], Vec::as_slice)
    }

    /// Options of the tables a flush or compaction writes.
    pub(crate) fn table_options(block_bytes_target: usize, bloom_bits_per_key: u32) -> TableOptions {
        TableOptions { block_bytes_target, bloom_bits_per_key }
    }
}
