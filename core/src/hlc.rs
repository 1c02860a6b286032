//! Hybrid logical clock: physical milliseconds, a logical counter, and the node id.
//!
//! Invariants:
//! - [`HlcClock::now`] is strictly increasing, even when the wall clock goes backwards.
//! - After [`HlcClock::observe`] of a stamp, every later stamp is greater than it: recovery
//!   observes every durable stamp (WAL, SSTables, manifest) before the engine serves writes.
//! - Stamps order by (physical, logical, node): last writer wins.

use crate::codec::{Put, Reader, Short};

/// A hybrid logical clock stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch, as seen by the stamping node (never less than any
    /// stamp it has observed).
    pub physical_ms: u64,
    /// Orders stamps within one millisecond.
    pub logical: u32,
    /// The stamping node; breaks ties between nodes.
    pub node: u16,
}

impl Hlc {
    /// Encoded size in bytes.
    pub const ENCODED_BYTES: usize = 14;
    /// The smallest stamp.
    pub const ZERO: Hlc = Hlc { physical_ms: 0, logical: 0, node: 0 };

    /// Appends the 14-byte little-endian encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.physical_ms);
        out.put_u32(self.logical);
        out.put_u16(self.node);
    }

    /// Reads the 14-byte encoding.
    ///
    /// # Errors
    /// [`Short`] at end of input.
    pub fn decode(r: &mut Reader<'_>) -> Result<Hlc, Short> {
        Ok(Hlc { physical_ms: r.u64()?, logical: r.u32()?, node: r.u16()? })
    }
}

impl std::fmt::Display for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}@{}", self.physical_ms, self.logical, self.node)
    }
}

/// The clock of one partition engine.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    node: u16,
}

impl HlcClock {
    /// A clock for `node` that has observed nothing yet.
    pub fn new(node: u16) -> Self {
        Self { last: Hlc { node, ..Hlc::ZERO }, node }
    }

    /// A new stamp greater than every stamp issued or observed so far.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let next = if wall_ms > self.last.physical_ms {
            Hlc { physical_ms: wall_ms, logical: 0, node: self.node }
        } else if self.last.logical == u32::MAX {
            Hlc { physical_ms: self.last.physical_ms + 1, logical: 0, node: self.node }
        } else {
            Hlc { physical_ms: self.last.physical_ms, logical: self.last.logical + 1, node: self.node }
        };
        assert!(next > self.last, "hlc must increase");
        self.last = next;
        next
    }

    /// Advances the clock past `seen`.
    pub fn observe(&mut self, seen: Hlc) {
        if seen > self.last {
            self.last = seen;
        }
    }

    /// The greatest stamp issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_across_wall_clock_regression() {
        let mut c = HlcClock::new(7);
        let a = c.now(1000);
        let b = c.now(500);
        let d = c.now(1000);
        assert!(b > a);
        assert!(d > b);
        c.observe(Hlc { physical_ms: 5000, logical: 3, node: 1 });
        let e = c.now(10);
        assert!(e > Hlc { physical_ms: 5000, logical: 3, node: 1 });
    }
}
