//! A partition's two memtables — the live one that commits apply to and the frozen one a flush
//! writes — with where in the shard commit log their records came from.
//!
//! Invariants (asserted, in release builds too: each is one comparison):
//! - A log position is applied at most once: positions applied strictly increase, and each
//!   batch's sequence is the previous one's + 1 (the log hands a partition one batch at a time).
//! - The frozen memtable holds every record of this partition up to `frozen.end`, which never
//!   passes `applied`; at most one memtable is frozen, and a flush retires it before the next
//!   freeze.
//! - `oldest_segment` is the oldest log segment holding a record either memtable holds (what the
//!   log must keep for this partition).

use std::rc::Rc;

use super::Memtable;
use crate::{log::LogPosition, types::SyrupId};

/// The frozen memtable and the log position it holds every record up to.
#[derive(Debug)]
struct Frozen {
    mem: Rc<Memtable>,
    end: LogPosition,
    seq: u64,
    first_segment: Option<u64>,
}

/// What a flush writes: the frozen memtable, and the log position and batch sequence that
/// become the partition's flushed position once it is in a table.
#[derive(Debug, Clone)]
pub(crate) struct ToFlush {
    pub(crate) mem: Rc<Memtable>,
    pub(crate) end: LogPosition,
    pub(crate) seq: u64,
}

/// The live and the frozen memtable of a partition, and its place in the commit log.
#[derive(Debug)]
pub(crate) struct Memtables {
    live: Memtable,
    frozen: Option<Frozen>,
    /// The oldest log segment holding a record of the live memtable.
    live_first_segment: Option<u64>,
    /// The end of the last log record applied: the memtables hold every record up to here.
    applied: LogPosition,
    /// The batch sequence of the last batch applied.
    applied_seq: u64,
    /// WALs of format v1 replayed at open (a partition from before the shard commit log): they
    /// are obsolete once the first flush has written what they held.
    legacy_wals: Vec<u64>,
}

impl Memtables {
    /// The memtables of a partition opened with `live` (what its v1 WALs held, if any) and
    /// everything up to `flushed` (batch `flushed_seq`) in its tables.
    pub(crate) fn recovered(live: Memtable, flushed: LogPosition, flushed_seq: u64, legacy_wals: Vec<u64>) -> Self {
        Memtables {
            live,
            frozen: None,
            live_first_segment: None,
            applied: flushed,
            applied_seq: flushed_seq,
            legacy_wals,
        }
    }

    /// The memtable commits apply to.
    pub(crate) fn live(&self) -> &Memtable {
        &self.live
    }

    /// Both memtables, newest first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Memtable> {
        std::iter::once(&self.live).chain(self.frozen.iter().map(|f| &*f.mem))
    }

    /// Bytes of the live memtable and of the frozen one (0 when none).
    pub(crate) fn bytes(&self) -> (usize, usize) {
        (self.live.bytes(), self.frozen.as_ref().map_or(0, |f| f.mem.bytes()))
    }

    /// Every Syrup either memtable references (overwritten versions included).
    pub(crate) fn syrups(&self) -> impl Iterator<Item = SyrupId> + '_ {
        self.all().flat_map(|m| m.syrups().iter().copied())
    }

    /// The sequence the partition's next batch carries.
    pub(crate) fn next_seq(&self) -> u64 {
        self.applied_seq + 1
    }

    /// Notes batch `seq`, which ends at `end`, as applied and returns the memtable its mutations
    /// go into.
    ///
    /// # Panics
    /// When `end` or `seq` does not follow the last batch applied: the log would be applying a
    /// record twice, or out of order.
    pub(crate) fn apply(&mut self, end: LogPosition, seq: u64) -> &mut Memtable {
        assert!(end > self.applied, "a log position is applied once, in order ({end} after {})", self.applied);
        assert_eq!(seq, self.next_seq(), "a partition's batches are applied in sequence");
        self.applied = end;
        self.applied_seq = seq;
        self.live_first_segment.get_or_insert(end.segment);
        &mut self.live
    }

    /// After replay: the log's durable end, past every record replayed (the positions of the
    /// records the log writes next).
    ///
    /// # Panics
    /// When a replayed record lies past `end`.
    pub(crate) fn caught_up(&mut self, end: LogPosition) {
        assert!(end >= self.applied, "a replayed record lies past the log's durable end");
        self.applied = end;
    }

    /// Freezes the live memtable when none is frozen and it holds at least `bytes_min` bytes
    /// (with `force`: anything).
    ///
    /// # Returns
    /// Whether it froze.
    pub(crate) fn freeze(&mut self, force: bool, bytes_min: usize) -> bool {
        let full = if force { !self.live.is_empty() } else { self.live.bytes() >= bytes_min };
        if self.frozen.is_some() || !full {
            return false;
        }
        self.frozen = Some(Frozen {
            mem: Rc::new(std::mem::take(&mut self.live)),
            end: self.applied,
            seq: self.applied_seq,
            first_segment: self.live_first_segment.take(),
        });
        true
    }

    /// What a flush writes now, if a memtable is frozen.
    pub(crate) fn to_flush(&self) -> Option<ToFlush> {
        self.frozen.as_ref().map(|f| ToFlush { mem: f.mem.clone(), end: f.end, seq: f.seq })
    }

    /// The v1 WALs the next flush retires.
    pub(crate) fn legacy_wals(&self) -> &[u64] {
        &self.legacy_wals
    }

    /// The frozen memtable is in a table: drops it.
    ///
    /// # Returns
    /// The v1 WALs that are obsolete now.
    pub(crate) fn flushed(&mut self) -> Vec<u64> {
        self.frozen = None;
        std::mem::take(&mut self.legacy_wals)
    }

    /// The oldest log segment holding a record either memtable holds.
    pub(crate) fn oldest_segment(&self) -> Option<u64> {
        let frozen = self.frozen.as_ref().and_then(|f| f.first_segment);
        match (frozen, self.live_first_segment) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(segment: u64, offset: u64) -> LogPosition {
        LogPosition { segment, offset }
    }

    #[test]
    fn batches_apply_in_order_and_a_freeze_notes_how_far() {
        let mut m = Memtables::recovered(Memtable::new(), at(3, 100), 7, Vec::new());
        assert_eq!(m.next_seq(), 8);
        assert_eq!(m.oldest_segment(), None);
        m.apply(at(4, 64), 8);
        m.apply(at(5, 64), 9);
        assert_eq!(m.oldest_segment(), Some(4), "the first segment applied since the last freeze");
        assert!(!m.freeze(false, usize::MAX), "not full");
        assert!(!m.freeze(true, 0), "nothing in it to freeze");
        let l = crate::locator::CandyLocator::tombstone(crate::hlc::Hlc { physical_ms: 1, logical: 0, node: 1 });
        m.apply(at(5, 200), 10).set(bytes::Bytes::from_static(b"k"), bytes::Bytes::from(l.encode()), &l);
        assert!(m.freeze(true, 0));
        let f = m.to_flush().expect("frozen");
        assert_eq!((f.end, f.seq), (at(5, 200), 10));
        assert!(!m.freeze(true, 0), "one frozen memtable at a time");
        m.apply(at(6, 64), 11);
        assert_eq!(m.oldest_segment(), Some(4), "the frozen memtable still needs segment 4");
        assert!(m.flushed().is_empty());
        assert_eq!(m.oldest_segment(), Some(6));
    }

    #[test]
    #[should_panic(expected = "applied once, in order")]
    fn a_position_applied_twice_is_refused() {
        let mut m = Memtables::recovered(Memtable::new(), at(3, 100), 0, Vec::new());
        m.apply(at(3, 200), 1);
        m.apply(at(3, 200), 2);
    }

    #[test]
    #[should_panic(expected = "applied in sequence")]
    fn a_batch_out_of_sequence_is_refused() {
        let mut m = Memtables::recovered(Memtable::new(), at(3, 100), 0, Vec::new());
        m.apply(at(3, 200), 2);
    }

    #[test]
    #[should_panic(expected = "past the log's durable end")]
    fn a_replayed_record_past_the_durable_end_is_refused() {
        let mut m = Memtables::recovered(Memtable::new(), at(3, 100), 0, Vec::new());
        m.apply(at(4, 200), 1);
        m.caught_up(at(4, 100));
    }
}
