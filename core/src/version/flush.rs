//! Building an L0 table from a frozen memtable.

use crate::{
    error::{Corruption, Error, FileKind, Result},
    limits,
    locator::CandyLocator,
    memtable::Memtable,
    table::{TableMeta, TableOptions, TableWriter},
};

/// Builds an L0 table of a frozen memtable, or `None` when it holds nothing, yielding every
/// `COMPACTION_YIELD_ENTRIES` entries (the memtable is immutable once frozen, so it is safe to
/// hold its iterator across a yield).
///
/// # Errors
/// `Corrupt` for a locator that does not decode.
pub(crate) async fn build_from_memtable(m: &Memtable, options: TableOptions) -> Result<Option<(Vec<u8>, TableMeta)>> {
    if m.is_empty() {
        return Ok(None);
    }
    let mut w = TableWriter::new(options);
    for (i, (k, e)) in m.iter().enumerate() {
        let l = CandyLocator::decode(&e.value)
            .map_err(|e| Error::Corrupt(Corruption::new(FileKind::Locator, "<memtable>", e)))?;
        w.add(k, &e.value, e.hlc, l.syrups().collect::<Vec<_>>());
        if (i + 1).is_multiple_of(limits::COMPACTION_YIELD_ENTRIES) {
            crate::runtime::yield_now().await;
        }
    }
    for rt in m.range_tombstones() {
        w.add_range_tombstone(rt.clone());
    }
    Ok(Some(w.finish()))
}
