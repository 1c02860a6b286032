//! What one client thread of `candybox-bench` records: per operation the latency and service
//! time histograms, the bytes moved and the errors by kind; the open loop's send lag; and why a
//! connection or worker gave up. Both load paths (library and lean) record into the same tally,
//! so the report and its JSON do not depend on the path.
//!
//! Invariants:
//! - Only requests intended (open loop) or started (closed loop) inside the measured window are
//!   recorded; the callers decide, this module only counts.
//! - Counting an error of a kind already seen allocates nothing (the kind's name is looked up
//!   before it is inserted).

use std::collections::BTreeMap;

use anyhow::Context as _;
use hdrhistogram::Histogram;

use super::{Mix, OpKind};

/// Largest latency recorded (µs); a slower request is recorded as this.
pub const LATENCY_MAX_US: u64 = 120_000_000;

/// A latency histogram of this generator: 1 µs to [`LATENCY_MAX_US`], 3 significant figures.
///
/// # Errors
/// Never in practice (the bounds are constants); kept as a value for the caller's `?`.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    crate::latency_histogram(LATENCY_MAX_US)
}

/// Histograms and counts of one operation (per thread, merged at the end).
#[derive(Debug)]
pub struct OpTally {
    /// From intended send (open loop) or send (closed loop) to the complete reply.
    pub latency: Histogram<u64>,
    /// From the actual send to the complete reply.
    pub service: Histogram<u64>,
    /// Object bytes moved by the successful requests.
    pub bytes: u64,
    /// Failed requests by kind (the error's variant name, e.g. `NotFound`, `Busy`).
    pub errors: BTreeMap<String, u64>,
}

impl OpTally {
    /// An empty tally.
    ///
    /// # Errors
    /// As [`histogram`].
    pub fn new() -> anyhow::Result<OpTally> {
        Ok(OpTally { latency: histogram()?, service: histogram()?, bytes: 0, errors: BTreeMap::new() })
    }

    /// Adds `other` into this one.
    ///
    /// # Errors
    /// When the histograms cannot be merged (they share bounds, so never in practice).
    pub fn merge(&mut self, other: &OpTally) -> anyhow::Result<()> {
        self.latency.add(&other.latency).context("merge histograms")?;
        self.service.add(&other.service).context("merge histograms")?;
        self.bytes += other.bytes;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        Ok(())
    }

    /// Records a successful request: `latency_us` from its intended send, `service_us` from its
    /// actual send, `bytes` of object data.
    pub fn record_ok(&mut self, latency_us: u64, service_us: u64, bytes: u64) {
        self.latency.saturating_record(latency_us.max(1));
        self.service.saturating_record(service_us.max(1));
        self.bytes += bytes;
    }

    /// Counts a failed request of `kind`.
    pub fn record_error(&mut self, kind: &str) {
        match self.errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(kind.to_string(), 1);
            }
        }
    }
}

/// One thread's results.
#[derive(Debug)]
pub struct Tally {
    /// Indexed by [`OpKind::index`]; `None` for operations outside the mix.
    pub ops: Vec<Option<OpTally>>,
    /// Open loop: how late each request was sent against its schedule.
    pub lag: Histogram<u64>,
    /// Why workers or connections stopped before the end.
    pub gave_up: Vec<String>,
}

impl Tally {
    /// An empty tally for the operations of `mix`.
    ///
    /// # Errors
    /// As [`histogram`].
    pub fn new(mix: &Mix) -> anyhow::Result<Tally> {
        let mut ops = Vec::new();
        for op in OpKind::ALL {
            ops.push(if mix.has(op) { Some(OpTally::new()?) } else { None });
        }
        Ok(Tally { ops, lag: histogram()?, gave_up: Vec::new() })
    }

    /// The tally of `op`, `None` when `op` is not in the mix.
    pub fn op(&mut self, op: OpKind) -> Option<&mut OpTally> {
        self.ops.get_mut(op.index()).and_then(Option::as_mut)
    }

    /// Adds `other` into this one.
    ///
    /// # Errors
    /// As [`OpTally::merge`].
    pub fn merge(&mut self, other: &Tally) -> anyhow::Result<()> {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            if let (Some(m), Some(t)) = (mine.as_mut(), theirs.as_ref()) {
                m.merge(t)?;
            }
        }
        self.lag.add(&other.lag).context("merge histograms")?;
        self.gave_up.extend(other.gave_up.iter().cloned());
        Ok(())
    }
}

/// Whole µs of a duration, saturating.
pub fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_by_kind_and_merge() {
        let mix: Mix = "get=1".parse().unwrap();
        let mut a = Tally::new(&mix).unwrap();
        let mut b = Tally::new(&mix).unwrap();
        assert!(a.op(OpKind::Put).is_none());
        a.op(OpKind::Get).unwrap().record_error("NotFound");
        a.op(OpKind::Get).unwrap().record_error("NotFound");
        b.op(OpKind::Get).unwrap().record_error("Busy");
        b.op(OpKind::Get).unwrap().record_ok(10, 5, 1024);
        a.merge(&b).unwrap();
        let g = a.op(OpKind::Get).unwrap();
        assert_eq!(g.errors.get("NotFound"), Some(&2));
        assert_eq!(g.errors.get("Busy"), Some(&1));
        assert_eq!((g.latency.len(), g.bytes), (1, 1024));
    }
}
