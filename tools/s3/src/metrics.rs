//! The gateway's metrics: per S3 operation, requests by status class and a latency histogram;
//! served in Prometheus' text format on the HTTP port.
//!
//! Invariants:
//! - The set of operation names is bounded by s3s's operations (plus `Unknown`), so the table
//!   cannot grow without bound.
//! - Latencies are recorded in microseconds, 1 µs to 1 hour, 3 significant digits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

struct Op {
    by_class: [u64; 5],
    latency_us: Histogram<u64>,
}

/// Counters and histograms, by operation.
pub struct Metrics {
    ops: Mutex<BTreeMap<String, Op>>,
    /// True once the gateway serves (the node reached, the reserved Box open).
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { ops: Mutex::new(BTreeMap::new()), ready: AtomicBool::new(false) }
    }
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

impl Metrics {
    /// Counts one request of `op` that answered `status` after `took`.
    pub fn record(&self, op: &str, status: u16, took: Duration) {
        let mut ops = self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !ops.contains_key(op) {
            let Ok(h) = Histogram::new_with_bounds(1, 3_600_000_000, 3) else { return };
            ops.insert(op.to_owned(), Op { by_class: [0; 5], latency_us: h });
        }
        let Some(entry) = ops.get_mut(op) else { return };
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        entry.by_class[class] += 1;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        entry.latency_us.saturating_record(us);
    }

    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        let ops = self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        out.push_str("# HELP candybox_s3_ready 1 once the gateway serves.\n# TYPE candybox_s3_ready gauge\n");
        let _ = writeln!(out, "candybox_s3_ready {}", u8::from(self.ready.load(Ordering::Relaxed)));
        out.push_str("# HELP candybox_s3_requests_total S3 requests answered, by operation and status class.\n");
        out.push_str("# TYPE candybox_s3_requests_total counter\n");
        for (name, op) in ops.iter() {
            for (i, class) in CLASSES.iter().enumerate() {
                if op.by_class[i] > 0 {
                    let _ = writeln!(
                        out,
                        "candybox_s3_requests_total{{op=\"{name}\",status=\"{class}\"}} {}",
                        op.by_class[i]
                    );
                }
            }
        }
        out.push_str("# HELP candybox_s3_request_latency_us Request latency in microseconds, by operation.\n");
        out.push_str("# TYPE candybox_s3_request_latency_us summary\n");
        for (name, op) in ops.iter() {
            for q in QUANTILES {
                let _ = writeln!(
                    out,
                    "candybox_s3_request_latency_us{{op=\"{name}\",quantile=\"{q}\"}} {}",
                    op.latency_us.value_at_quantile(q)
                );
            }
            let _ = writeln!(out, "candybox_s3_request_latency_us_count{{op=\"{name}\"}} {}", op.latency_us.len());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_operation_and_class() {
        let m = Metrics::default();
        m.record("GetObject", 200, Duration::from_micros(150));
        m.record("GetObject", 404, Duration::from_micros(90));
        m.record("PutObject", 503, Duration::from_millis(2));
        let text = m.render();
        assert!(text.contains("candybox_s3_requests_total{op=\"GetObject\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("candybox_s3_requests_total{op=\"GetObject\",status=\"4xx\"} 1"), "{text}");
        assert!(text.contains("candybox_s3_requests_total{op=\"PutObject\",status=\"5xx\"} 1"), "{text}");
        assert!(text.contains("candybox_s3_request_latency_us_count{op=\"GetObject\"} 2"), "{text}");
    }
}
