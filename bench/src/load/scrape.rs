//! The node's own counters, read from its `/metrics` page (Prometheus text) before and after a
//! run.
//!
//! Invariants:
//! - A sample line is `name{labels} value` or `name value`; comments and lines that do not parse
//!   are skipped, never a failure (an older node may lack a metric: it then reads as absent).
//! - The HTTP exchange is bounded by a timeout on connect, read and write.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::{Duration, Instant},
};

use serde::Serialize;

/// One reading of `/metrics`: every series summed over its labels, plus the per-shard CPU time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Metric name → sum over all its series.
    pub totals: BTreeMap<String, f64>,
    /// `candybox_shard_cpu_seconds_total` by shard index.
    pub cpu_by_shard: BTreeMap<u32, f64>,
}

impl Scrape {
    /// Parses the text exposition.
    pub fn parse(text: &str) -> Scrape {
        let mut out = Scrape::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            *out.totals.entry(name.to_string()).or_default() += value;
            if name == "candybox_shard_cpu_seconds_total" {
                if let Some(shard) = label(labels, "shard").and_then(|s| s.parse().ok()) {
                    out.cpu_by_shard.insert(shard, value);
                }
            }
        }
        out
    }

    /// The sum of a metric, 0 when absent.
    pub fn get(&self, name: &str) -> f64 {
        self.totals.get(name).copied().unwrap_or(0.0)
    }
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// The node's CPU over its whole process (every thread, io_uring workers included).
pub const PROCESS_CPU: &str = "candybox_process_cpu_seconds_total";

/// CPU seconds (user + system) of process `pid` so far, every thread included, from
/// `/proc/PID/stat` (fields 14 and 15, in clock ticks).
///
/// # Errors
/// When the file cannot be read or does not parse.
pub fn process_cpu_seconds_of(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    cpu_seconds_from_stat(&text, clock_ticks_per_second()).ok_or_else(|| format!("{path} does not parse"))
}

/// utime + stime of a `/proc/PID/stat` line, in seconds. The command name (field 2) is in
/// parentheses and may hold spaces, so the fields are counted after its closing one.
fn cpu_seconds_from_stat(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace();
    // After the name: state (3), ..., utime (14), stime (15).
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf takes a plain constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// GETs `/metrics` from `addr` (`host:port`).
///
/// # Errors
/// A message when the node cannot be reached in 5 s or answers other than 200.
pub fn fetch(addr: &str) -> Result<Scrape, String> {
    let timeout = Duration::from_secs(5);
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("metrics address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("metrics address {addr} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("read /metrics from {addr}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("{addr}: not an HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(format!("{addr}/metrics answered HTTP {status}"));
    }
    Ok(Scrape::parse(body))
}

/// Reads `/metrics` once the node's maintenance loop has refreshed its engine figures (they are
/// sums the loop copies once per pass): waits for `candybox_maintenance_passes_total` to grow,
/// at most `wait`. Returns the reading and whether a pass was seen.
///
/// # Errors
/// As [`fetch`].
pub fn fetch_after_pass(addr: &str, wait: Duration) -> Result<(Scrape, bool), String> {
    let first = fetch(addr)?;
    let passes = first.get("candybox_maintenance_passes_total");
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let now = fetch(addr)?;
        if now.get("candybox_maintenance_passes_total") > passes {
            return Ok((now, true));
        }
    }
    Ok((fetch(addr)?, false))
}

/// What the node did during the run: the difference of two readings.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeDelta {
    /// Requests answered.
    pub requests: u64,
    /// WAL fdatasyncs.
    pub wal_fsyncs: u64,
    /// Syrup fdatasyncs.
    pub syrup_fsyncs: u64,
    /// (WAL + Syrup) fdatasyncs per request.
    pub fsyncs_per_op: f64,
    /// Mutations per group commit.
    pub ops_per_group_commit: f64,
    /// Mutations committed (`candybox_group_commit_ops_total`, summed over the shards).
    pub group_commit_ops: u64,
    /// Mutations committed per WAL (shard commit log) fdatasync: `group_commit_ops / wal_fsyncs`,
    /// 0 when there was none.
    pub ops_per_wal_fsync: f64,
    /// Requests forwarded between shards.
    pub cross_shard_forwards: u64,
    /// Forwards per request.
    pub forwards_per_op: f64,
    /// Busy answers.
    pub busy_replies: u64,
    /// CPU seconds of each shard's thread.
    pub cpu_s_by_shard: Vec<f64>,
    /// CPU µs of the node per request: the whole process where the node reports it (io_uring
    /// workers included), else its shard threads.
    pub cpu_us_per_op: f64,
    /// Seconds of that CPU spent spinning idle before parking (`candybox_shard_spin_seconds_total`;
    /// 0 from a node that does not report it).
    pub spin_s: f64,
    /// CPU µs per request without the idle spin: what the requests cost.
    pub request_cpu_us_per_op: f64,
    /// Whether both readings followed a maintenance pass (else the engine figures may lag).
    pub engine_figures_fresh: bool,
}

impl NodeDelta {
    /// `after − before`.
    pub fn between(before: &Scrape, after: &Scrape, fresh: bool) -> NodeDelta {
        let d = |name: &str| (after.get(name) - before.get(name)).max(0.0);
        let requests = d("candybox_requests_total");
        let per_op = |v: f64| if requests > 0.0 { v / requests } else { 0.0 };
        let cpu: Vec<f64> = after
            .cpu_by_shard
            .iter()
            .map(|(s, a)| (a - before.cpu_by_shard.get(s).copied().unwrap_or(0.0)).max(0.0))
            .collect();
        let commits = d("candybox_group_commits_total");
        let (commit_ops, wal_fsyncs) = (d("candybox_group_commit_ops_total"), d("candybox_wal_fsyncs_total"));
        let shards_total: f64 = cpu.iter().sum();
        // The whole process where the node reports it: its io_uring workers (which run spliced
        // sends) and other threads work for the requests too. An older node: its shard threads.
        let process = PROCESS_CPU;
        let cpu_total = if before.totals.contains_key(process) && after.totals.contains_key(process) {
            d(process).max(shards_total)
        } else {
            shards_total
        };
        let spin_s = d("candybox_shard_spin_seconds_total").min(cpu_total);
        NodeDelta {
            requests: requests as u64,
            wal_fsyncs: wal_fsyncs as u64,
            syrup_fsyncs: d("candybox_syrup_fsyncs_total") as u64,
            fsyncs_per_op: per_op(wal_fsyncs + d("candybox_syrup_fsyncs_total")),
            ops_per_group_commit: if commits > 0.0 { commit_ops / commits } else { 0.0 },
            group_commit_ops: commit_ops as u64,
            ops_per_wal_fsync: if wal_fsyncs > 0.0 { commit_ops / wal_fsyncs } else { 0.0 },
            cross_shard_forwards: d("candybox_cross_shard_forwards_total") as u64,
            forwards_per_op: per_op(d("candybox_cross_shard_forwards_total")),
            busy_replies: d("candybox_busy_replies_total") as u64,
            cpu_us_per_op: per_op(cpu_total * 1e6),
            spin_s,
            request_cpu_us_per_op: per_op((cpu_total - spin_s) * 1e6),
            cpu_s_by_shard: cpu,
            engine_figures_fresh: fresh,
        }
    }
}

/// The node's live counters over the measured window: two reads of `/metrics` without waiting
/// for a maintenance pass (requests and shard CPU are counted as they happen; the engine figures
/// of [`NodeDelta`] are not, so they are left out here).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeWindow {
    /// Requests answered between the two reads.
    pub requests: u64,
    /// Busy answers between them.
    pub busy_replies: u64,
    /// CPU seconds of each shard's thread between them.
    pub cpu_s_by_shard: Vec<f64>,
    /// CPU seconds of all shards.
    pub cpu_s: f64,
    /// CPU µs of all shards per request.
    pub cpu_us_per_op: f64,
    /// Seconds of that CPU spent spinning idle before parking.
    pub spin_s: f64,
    /// CPU µs per request without the idle spin: what the requests cost.
    pub request_cpu_us_per_op: f64,
    /// What the figures cover.
    pub covers: &'static str,
}

impl NodeWindow {
    /// `after − before`.
    pub fn between(before: &Scrape, after: &Scrape) -> NodeWindow {
        let d = NodeDelta::between(before, after, false);
        let cpu_s: f64 = d.cpu_s_by_shard.iter().sum();
        NodeWindow {
            requests: d.requests,
            busy_replies: d.busy_replies,
            cpu_us_per_op: d.cpu_us_per_op,
            spin_s: d.spin_s,
            request_cpu_us_per_op: d.request_cpu_us_per_op,
            cpu_s_by_shard: d.cpu_s_by_shard,
            cpu_s,
            covers: "the measured window only: the node process's CPU (candybox_process_cpu_seconds_total: \
                     every thread, io_uring workers included; a node without it: its shard threads', \
                     candybox_shard_cpu_seconds_total), its idle spin (candybox_shard_spin_seconds_total) and \
                     requests (candybox_requests_total) read at its start and end",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP candybox_requests_total x\n# TYPE candybox_requests_total counter\n\
        candybox_requests_total{shard=\"0\",op=\"get\"} 100\n\
        candybox_requests_total{shard=\"1\",op=\"put\"} 50\n\
        candybox_wal_fsyncs_total{shard=\"0\"} 10\n\
        candybox_shard_cpu_seconds_total{shard=\"0\"} 1.5\n\
        candybox_shard_cpu_seconds_total{shard=\"1\"} 0.5\n\
        candybox_ready 1\n\
        garbage line here\n";

    #[test]
    fn parses_sums_over_labels_and_cpu_by_shard() {
        let s = Scrape::parse(BEFORE);
        assert_eq!(s.get("candybox_requests_total"), 150.0);
        assert_eq!(s.get("candybox_ready"), 1.0);
        assert_eq!(s.get("absent"), 0.0);
        assert_eq!(s.cpu_by_shard.get(&1), Some(&0.5));
    }

    #[test]
    fn delta_divides_by_requests() {
        let before = Scrape::parse(BEFORE);
        let after = Scrape::parse(
            "candybox_requests_total{shard=\"0\",op=\"get\"} 1100\ncandybox_requests_total{shard=\"1\",op=\"put\"} 50\n\
             candybox_wal_fsyncs_total{shard=\"0\"} 60\ncandybox_shard_cpu_seconds_total{shard=\"0\"} 1.52\n\
             candybox_shard_cpu_seconds_total{shard=\"1\"} 0.5\n",
        );
        let d = NodeDelta::between(&before, &after, true);
        assert_eq!(d.requests, 1000);
        assert_eq!(d.wal_fsyncs, 50);
        assert!((d.fsyncs_per_op - 0.05).abs() < 1e-9);
        assert_eq!((d.group_commit_ops, d.ops_per_wal_fsync), (0, 0.0), "no commit counter in the readings");
        assert!((d.cpu_us_per_op - 20.0).abs() < 1e-6, "{}", d.cpu_us_per_op);
        assert_eq!(d.cpu_s_by_shard.len(), 2);
        assert!((d.request_cpu_us_per_op - 20.0).abs() < 1e-6, "no spin reported: the requests cost it all");
    }

    #[test]
    fn mutations_per_wal_fsync_sum_over_the_shards() {
        let before = Scrape::parse(
            "candybox_group_commit_ops_total{shard=\"0\"} 100\ncandybox_group_commit_ops_total{shard=\"1\"} 50\n\
             candybox_wal_fsyncs_total{shard=\"0\"} 10\ncandybox_wal_fsyncs_total{shard=\"1\"} 10\n\
             candybox_group_commits_total{shard=\"0\"} 40\n",
        );
        let after = Scrape::parse(
            "candybox_group_commit_ops_total{shard=\"0\"} 900\ncandybox_group_commit_ops_total{shard=\"1\"} 450\n\
             candybox_wal_fsyncs_total{shard=\"0\"} 110\ncandybox_wal_fsyncs_total{shard=\"1\"} 110\n\
             candybox_group_commits_total{shard=\"0\"} 440\n",
        );
        let d = NodeDelta::between(&before, &after, true);
        assert_eq!((d.group_commit_ops, d.wal_fsyncs), (1200, 200));
        assert!((d.ops_per_wal_fsync - 6.0).abs() < 1e-9, "{}", d.ops_per_wal_fsync);
        assert!((d.ops_per_group_commit - 3.0).abs() < 1e-9, "{}", d.ops_per_group_commit);
    }

    #[test]
    fn the_process_cpu_counts_where_the_node_reports_it() {
        // The shard threads took 0.02 s, the whole process 0.05 s (io_uring workers splicing).
        let before = Scrape::parse(&format!("{BEFORE}candybox_process_cpu_seconds_total 3.0\n"));
        let after = Scrape::parse(
            "candybox_requests_total{shard=\"0\",op=\"get\"} 1100\ncandybox_requests_total{shard=\"1\",op=\"put\"} 50\n\
             candybox_shard_cpu_seconds_total{shard=\"0\"} 1.52\ncandybox_shard_cpu_seconds_total{shard=\"1\"} 0.5\n\
             candybox_process_cpu_seconds_total 3.05\n",
        );
        let d = NodeDelta::between(&before, &after, true);
        assert!((d.cpu_us_per_op - 50.0).abs() < 1e-6, "{}", d.cpu_us_per_op);
        assert!((d.cpu_s_by_shard.iter().sum::<f64>() - 0.02).abs() < 1e-9, "the shard threads' own share stays");
    }

    #[test]
    fn idle_spin_is_taken_out_of_the_requests_cpu() {
        let before = Scrape::parse(
            "candybox_requests_total{shard=\"0\"} 0\ncandybox_shard_cpu_seconds_total{shard=\"0\"} 1.0\n\
             candybox_shard_spin_seconds_total{shard=\"0\"} 0.5\n",
        );
        let after = Scrape::parse(
            "candybox_requests_total{shard=\"0\"} 1000\ncandybox_shard_cpu_seconds_total{shard=\"0\"} 1.03\n\
             candybox_shard_spin_seconds_total{shard=\"0\"} 0.51\n",
        );
        let d = NodeDelta::between(&before, &after, true);
        assert!((d.cpu_us_per_op - 30.0).abs() < 1e-6, "{}", d.cpu_us_per_op);
        assert!((d.spin_s - 0.01).abs() < 1e-9, "{}", d.spin_s);
        assert!((d.request_cpu_us_per_op - 20.0).abs() < 1e-6, "{}", d.request_cpu_us_per_op);
    }

    #[test]
    fn process_cpu_is_read_from_proc() {
        // A command name with spaces and parentheses does not shift the fields.
        let line = "4242 (cand (y) d) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 99 0 0";
        assert_eq!(cpu_seconds_from_stat(line, 100.0), Some(3.0));
        assert_eq!(cpu_seconds_from_stat("4242 (x) S 1 2", 100.0), None);
        // This process has spent some CPU, and a second reading is never less.
        let pid = std::process::id();
        let first = process_cpu_seconds_of(pid).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let second = process_cpu_seconds_of(pid).unwrap();
        assert!(second >= first && first >= 0.0, "{first} then {second} ({x})");
        assert!(process_cpu_seconds_of(u32::MAX).is_err());
    }
}
