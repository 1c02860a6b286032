//! Leveled compaction: which tables to merge next, and the merge itself.
//!
//! Invariants:
//! - L0 is compacted whole into L1 once it has `l0_compaction_trigger` tables; a level L ≥ 1 is
//!   compacted one table at a time into L+1 while it exceeds its byte budget (round-robin over
//!   its key space).
//! - Within a compaction the newest version of a key wins; a version covered by a newer range
//!   tombstone of the inputs is dropped. A point tombstone or range tombstone is dropped only when
//!   the output is the bottommost data for its keys and it is older than the tombstone grace.

use std::{collections::BTreeSet, ops::Bound, path::PathBuf, rc::Rc};

use super::{
    merge::{next_newest, Newest, Source},
    table_error, Lsm, TableHandle, Version,
};
use crate::{
    error::{Corruption, Error, FileKind, Result},
    hlc::Hlc,
    limits,
    locator::{CandyLocator, Kind},
    table::{TableMeta, TableOptions, TableWriter},
    types::{RangeTombstone, SyrupId},
};

/// What a compaction reads and where it writes, with what the version told about its inputs
/// when it was picked.
pub(crate) struct Compaction {
    pub(crate) output_level: usize,
    pub(crate) inputs: Vec<Rc<TableHandle>>,
    /// No table outside the inputs, at the input level or below, holds keys the inputs' points
    /// could cover (tables above hold only newer versions).
    bottom_points: bool,
    /// The same for each range tombstone of the inputs.
    bottom_tombstones: Vec<bool>,
}

/// The sizes and ages a compaction's merge works with.
pub(crate) struct MergeSettings {
    pub(crate) table_options: TableOptions,
    pub(crate) table_target_bytes: usize,
    pub(crate) now_ms: u64,
    pub(crate) tombstone_grace_ms: u64,
}

/// The settings that decide when a level needs a compaction.
pub(crate) struct LevelSettings {
    pub(crate) l0_compaction_trigger: usize,
    pub(crate) level_base_bytes: u64,
    pub(crate) level_multiplier: u64,
}

impl LevelSettings {
    fn budget(&self, level: usize) -> u64 {
        let mut b = self.level_base_bytes;
        for _ in 1..level {
            b = b.saturating_mul(self.level_multiplier);
        }
        b
    }
}

impl Lsm {
    /// The compaction the tree needs next, if any.
    pub(crate) fn pick_compaction(&self, s: &LevelSettings) -> Option<Compaction> {
        let v = self.version();
        let levels = v.levels();
        let l0 = levels.first()?;
        if l0.len() >= s.l0_compaction_trigger {
            let mut inputs: Vec<_> = l0.clone();
            let (lo, hi) = span(&inputs);
            inputs.extend(overlapping(levels.get(1)?, &lo, &hi));
            return Some(Compaction::new(v, 1, inputs));
        }
        for level in 1..limits::LEVELS_MAX - 1 {
            let tables = levels.get(level)?;
            let bytes: u64 = tables.iter().map(|t| t.rec.size).sum();
            if bytes <= s.budget(level) || tables.is_empty() {
                continue;
            }
            let cursor = self.cursor(level);
            let pick = tables.iter().find(|t| t.rec.smallest.as_slice() > cursor).or_else(|| tables.first())?.clone();
            let mut inputs = vec![pick.clone()];
            inputs.extend(overlapping(levels.get(level + 1)?, &pick.rec.smallest, &pick.rec.largest));
            return Some(Compaction::new(v, level + 1, inputs));
        }
        None
    }
}

impl Compaction {
    fn new(v: &Version, output_level: usize, inputs: Vec<Rc<TableHandle>>) -> Compaction {
        let numbers: BTreeSet<u64> = inputs.iter().map(|t| t.rec.number).collect();
        let (lo, hi) = span(&inputs);
        let others: Vec<&Rc<TableHandle>> = v
            .levels()
            .iter()
            // The input level's other tables count too: an L≥1 table's range tombstone can cover
            // a sibling's older keys.
            .skip(output_level.saturating_sub(1))
            .flatten()
            .filter(|t| !numbers.contains(&t.rec.number))
            .collect();
        let bottom_points = !others.iter().any(|t| t.rec.smallest <= hi && t.rec.largest >= lo);
        let bottom_tombstones = inputs
            .iter()
            .flat_map(|t| t.table.range_tombstones().iter())
            .map(|rt| {
                !others.iter().any(|t| {
                    t.rec.largest.as_slice() >= rt.start.as_slice()
                        && (rt.end.is_empty() || t.rec.smallest.as_slice() < rt.end.as_slice())
                })
            })
            .collect();
        Compaction { output_level, inputs, bottom_points, bottom_tombstones }
    }

    /// The file numbers of the inputs.
    pub(crate) fn input_numbers(&self) -> BTreeSet<u64> {
        self.inputs.iter().map(|t| t.rec.number).collect()
    }

    /// Merges the inputs (of the partition in `dir`) into the bytes of the output tables,
    /// yielding every `COMPACTION_YIELD_ENTRIES` entries.
    ///
    /// # Errors
    /// `Corrupt` when an input fails its checks or holds a locator that does not decode.
    pub(crate) async fn merge(&self, dir: &std::path::Path, s: &MergeSettings) -> Result<Vec<(Vec<u8>, TableMeta)>> {
        let aged = |h: Hlc| h.physical_ms.saturating_add(s.tombstone_grace_ms) <= s.now_ms;
        let rts: Vec<RangeTombstone> =
            self.inputs.iter().flat_map(|t| t.table.range_tombstones().iter().cloned()).collect();
        let dir_owned: PathBuf = dir.to_path_buf();
        let mut sources: Vec<std::iter::Peekable<Source<'static>>> = self
            .inputs
            .iter()
            .map(|t| {
                let (n, dir) = (t.rec.number, dir_owned.clone());
                let it = t.table.range(Bound::Unbounded, Bound::Unbounded, false);
                (Box::new(it.map(move |r| r.map_err(table_error(n, &dir)))) as Source<'static>).peekable()
            })
            .collect();
        let mut outputs = Vec::new();
        let mut writer = TableWriter::new(s.table_options);
        let mut processed = 0usize;
        while let Some(Newest { key, hlc, kind, value }) = next_newest(&mut sources, false)? {
            if rts.iter().any(|rt| rt.deletes(&key, hlc)) {
                continue;
            }
            if kind == Kind::Tombstone && self.bottom_points && aged(hlc) {
                continue;
            }
            let syrups: Vec<SyrupId> = if kind == Kind::Put {
                CandyLocator::decode(&value)
                    .map_err(|e| Error::Corrupt(Corruption::new(FileKind::Locator, dir, e)))?
                    .syrups()
                    .collect()
            } else {
                Vec::new()
            };
            writer.add(&key, &value, hlc, syrups);
            if writer.estimated_bytes() >= s.table_target_bytes {
                let w = std::mem::replace(&mut writer, TableWriter::new(s.table_options));
                outputs.push(w.finish());
            }
            processed += 1;
            if processed.is_multiple_of(limits::COMPACTION_YIELD_ENTRIES) {
                crate::runtime::yield_now().await;
            }
        }
        let mut kept_rts = 0usize;
        for (rt, bottom) in rts.into_iter().zip(self.bottom_tombstones.iter()) {
            if !(*bottom && aged(rt.hlc)) {
                writer.add_range_tombstone(rt);
                kept_rts += 1;
            }
        }
        if writer.entry_count() > 0 || kept_rts > 0 {
            outputs.push(writer.finish());
        }
        outputs.retain(|(_, meta)| meta.entry_count > 0 || meta.range_tombstone_count > 0);
        Ok(outputs)
    }
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
