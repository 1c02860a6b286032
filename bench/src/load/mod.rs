//! The load generator's parts: the operation mix, object sizes, key choice, the open-loop
//! schedule, the node's `/metrics` scrape and the per-thread tally, all pure and tested; and the
//! lean load path (`lean`) with its pure wire pieces (`frames`, `pipeline`) and its timer.
//!
//! Invariants:
//! - Every choice is drawn from a seeded generator: a run is repeatable given its seeds.
//! - Key indexes are always in `0..keys`; sizes always in the spec's bounds.
//! - The open-loop schedule is fixed before the run: a request's intended send time never depends
//!   on when earlier replies came back (that dependence is coordinated omission).

pub mod frames;
pub mod lean;
pub mod pipeline;
pub mod raw;
pub mod scrape;
pub mod tally;
pub mod timer;

use std::{
    fmt,
    str::FromStr,
    time::{Duration, Instant},
};

use rand::{rngs::SmallRng, Rng as _};
use rand_distr::{Distribution as _, Zipf};

/// An operation of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Put of a key from the key space (overwrites), size drawn from the size spec.
    Put,
    /// Get of a whole object, every byte received.
    Get,
    /// Metadata of an object.
    Head,
    /// One page of up to [`LIST_PAGE`] keys, starting after a chosen key.
    List,
    /// Delete of a key from the key space (later gets of it answer NotFound).
    Delete,
    /// Node-side copy of a key to one of the worker's own target keys.
    Copy,
    /// Node-side rename of the worker's own object to its next name.
    Rename,
}

/// Page size of a list op.
pub const LIST_PAGE: u32 = 100;

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 7] =
        [OpKind::Put, OpKind::Get, OpKind::Head, OpKind::List, OpKind::Delete, OpKind::Copy, OpKind::Rename];

    /// The name used in `--mix`, the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Head => "head",
            OpKind::List => "list",
            OpKind::Delete => "delete",
            OpKind::Copy => "copy",
            OpKind::Rename => "rename",
        }
    }

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the op needs the key space stored before the run.
    pub fn reads_keys(self) -> bool {
        !matches!(self, OpKind::Put)
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OpKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!("unknown operation `{s}` (expected one of put, get, head, list, delete, copy, rename)")
        })
    }
}

/// Weighted operations, e.g. `put=1,get=9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Each operation with its weight (> 0), in the order given.
    pub weights: Vec<(OpKind, u32)>,
    total: u32,
}

impl Mix {
    /// Draws one operation.
    pub fn pick(&self, rng: &mut SmallRng) -> OpKind {
        let mut r = rng.gen_range(0..self.total);
        for &(op, w) in &self.weights {
            if r < w {
                return op;
            }
            r -= w;
        }
        // Unreachable: the weights sum to `total`; the last op is the safe answer.
        self.weights.last().map_or(OpKind::Get, |&(op, _)| op)
    }

    /// Whether `op` is in the mix.
    pub fn has(&self, op: OpKind) -> bool {
        self.weights.iter().any(|&(o, _)| o == op)
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights: Vec<(OpKind, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => (n.trim(), w.trim().parse::<u32>().map_err(|_| format!("bad weight in `{part}`"))?),
                None => (part, 1),
            };
            let op: OpKind = name.parse()?;
            if weight == 0 {
                continue;
            }
            if weights.iter().any(|&(o, _)| o == op) {
                return Err(format!("`{name}` appears twice in the mix"));
            }
            weights.push((op, weight));
        }
        let total = weights.iter().try_fold(0u32, |t, &(_, w)| t.checked_add(w)).ok_or("mix weights overflow")?;
        if total == 0 {
            return Err("the mix has no operation with a positive weight".into());
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.weights.iter().map(|(op, w)| format!("{}={w}", op.name())).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses `1024`, `1k`, `64m`, `1g`, `4KiB`, `1MB`: suffixes are binary (k = 1024).
///
/// # Errors
/// A message naming the bad value.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size (e.g. 1024, 1k, 64m, 1g)"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size suffix `{other}` in `{s}` (use k, m or g)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("`{s}` is too large"))
}

/// A size in the units a person reads: `1 KiB`, `64 MiB`, `1000 B`.
pub fn show_bytes(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

/// Object sizes: fixed (`1k`), uniform in a range (`1k-64k`), or weighted (`1k:9,1m:1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSpec {
    /// Every object this size.
    Fixed(u64),
    /// Uniform in `lo..=hi`.
    Uniform(u64, u64),
    /// Sizes with weights.
    Weighted(Vec<(u64, u32)>),
}

impl SizeSpec {
    /// The largest size the spec can draw.
    pub fn max(&self) -> u64 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Uniform(_, hi) => *hi,
            SizeSpec::Weighted(v) => v.iter().map(|&(n, _)| n).max().unwrap_or(0),
        }
    }

    /// Draws one size.
    pub fn sample(&self, rng: &mut SmallRng) -> u64 {
        match self {
            SizeSpec::Fixed(n) => *n,
            SizeSpec::Uniform(lo, hi) => rng.gen_range(*lo..=*hi),
            SizeSpec::Weighted(v) => {
                let total: u32 = v.iter().map(|&(_, w)| w).sum();
                let mut r = rng.gen_range(0..total.max(1));
                for &(n, w) in v {
                    if r < w {
                        return n;
                    }
                    r -= w;
                }
                self.max()
            }
        }
    }
}

impl FromStr for SizeSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.contains(':') {
            let mut v = Vec::new();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (n, w) = part.split_once(':').ok_or_else(|| format!("`{part}` is not SIZE:WEIGHT"))?;
                let w: u32 = w.trim().parse().map_err(|_| format!("bad weight in `{part}`"))?;
                if w > 0 {
                    v.push((parse_bytes(n)?, w));
                }
            }
            if v.is_empty() {
                return Err("the size spec has no size with a positive weight".into());
            }
            Ok(SizeSpec::Weighted(v))
        } else if let Some((lo, hi)) = s.split_once('-') {
            let (lo, hi) = (parse_bytes(lo)?, parse_bytes(hi)?);
            if lo > hi {
                return Err(format!("size range `{s}` is empty"));
            }
            Ok(SizeSpec::Uniform(lo, hi))
        } else {
            Ok(SizeSpec::Fixed(parse_bytes(s)?))
        }
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeSpec::Fixed(n) => f.write_str(&show_bytes(*n)),
            SizeSpec::Uniform(lo, hi) => write!(f, "{}–{} uniform", show_bytes(*lo), show_bytes(*hi)),
            SizeSpec::Weighted(v) => {
                let parts: Vec<String> = v.iter().map(|&(n, w)| format!("{}:{w}", show_bytes(n))).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// How keys are chosen from `0..keys`.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Every key equally likely.
    Uniform(u64),
    /// Zipfian ranks, scattered over the key space by a bijection so the hot keys do not sit
    /// next to each other (and in one partition).
    Zipfian {
        /// Key count.
        keys: u64,
        /// The rank distribution, `1..=keys`.
        zipf: Zipf<f64>,
    },
}

impl KeyChooser {
    /// A chooser over `keys` keys; `theta` is the zipfian exponent (YCSB's default is 0.99).
    ///
    /// # Errors
    /// When `keys` is 0 or `theta` is not a finite non-negative number.
    pub fn new(keys: u64, zipfian: bool, theta: f64) -> Result<KeyChooser, String> {
        if keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if !zipfian {
            return Ok(KeyChooser::Uniform(keys));
        }
        let zipf = Zipf::new(keys, theta).map_err(|e| format!("zipfian over {keys} keys, theta {theta}: {e}"))?;
        Ok(KeyChooser::Zipfian { keys, zipf })
    }

    /// Draws one key index in `0..keys`.
    pub fn sample(&self, rng: &mut SmallRng) -> u64 {
        match self {
            KeyChooser::Uniform(n) => rng.gen_range(0..*n),
            KeyChooser::Zipfian { keys, zipf } => {
                let rank = (zipf.sample(rng) as u64).clamp(1, *keys) - 1;
                scatter(rank, *keys)
            }
        }
    }
}

/// A bijection of `0..n`: multiplication by an odd constant modulo the next power of two, walked
/// until the value lands inside `0..n` (cycle walking keeps it a permutation).
pub fn scatter(rank: u64, n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let mut x = rank;
    // Each step (odd multiply, xorshift, odd multiply, all modulo 2^bits) is a permutation of
    // 0..=mask, so the walk from a value inside 0..n comes back inside 0..n in at most
    // mask + 1 − n + 1 steps (under 2 on average, since mask < 2n).
    for _ in 0..=mask {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) & mask;
        x ^= x >> bits.div_ceil(2);
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9) & mask;
        if x < n {
            return x;
        }
    }
    rank % n
}

/// The open-loop schedule of one worker: `workers` workers share `rate` requests per second;
/// worker `index` sends its k-th request at `offset + k × interval` after the start, staggered
/// so the workers do not send in bursts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Time between two requests of this worker.
    pub interval: Duration,
    /// Time of this worker's first request after the start.
    pub offset: Duration,
}

impl Schedule {
    /// The schedule of worker `index` of `workers` at a total of `rate` requests per second.
    pub fn new(rate: f64, workers: usize, index: usize) -> Schedule {
        let workers = workers.max(1) as f64;
        let interval = Duration::from_secs_f64(workers / rate.max(1e-9));
        let offset = interval.mul_f64(index as f64 / workers);
        Schedule { interval, offset }
    }

    /// Intended send time of request `k`, after the start.
    pub fn at(&self, k: u64) -> Duration {
        self.offset + self.interval.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX))
    }
}

/// The name of key `i` of the key space: `k/0000000000` ...
pub fn key_name(i: u64) -> String {
    format!("k/{i:010}")
}

/// The name of worker `worker`'s rename object after `generation` renames: `rn/00003/000000000007`.
pub fn rename_name(worker: usize, generation: u64) -> String {
    format!("rn/{worker:05}/{generation:012}")
}

/// Where a Box's keys live on the node, for renames across shards: its partition count and the
/// node's shard count (placement [`PLACEMENT_V1`](candybox_wire::client::placement::PLACEMENT_V1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenamePlacement {
    /// Partitions of the Box.
    pub partitions: u16,
    /// Shards of the node (at least 2).
    pub shard_count: u16,
}

impl RenamePlacement {
    /// The shard owning `key` of `box_name`.
    pub fn shard(&self, box_name: &str, key: &[u8]) -> u16 {
        use candybox_wire::client::placement::{partition_of, shard_of};
        shard_of(box_name, partition_of(key, self.partitions), self.shard_count)
    }

    /// The first generation after `generation` whose rename name lies on another shard than
    /// generation `generation`'s: the target of a rename across shards. `None` when no name in
    /// the next 65536 does (a node of one shard).
    pub fn next_generation_across(&self, box_name: &str, worker: usize, generation: u64) -> Option<u64> {
        let from = self.shard(box_name, rename_name(worker, generation).as_bytes());
        (generation + 1..generation.saturating_add(1 << 16))
            .find(|&g| self.shard(box_name, rename_name(worker, g).as_bytes()) != from)
    }
}

/// The name of an error's kind for the "errors by kind" count: the variant's name.
pub fn error_kind(e: &impl fmt::Debug) -> String {
    let debug = format!("{e:?}");
    debug.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("Unknown").to_string()
}

/// Waits until `at`: on monoio's timer while far off (its granularity is a millisecond), then by
/// yielding to the other tasks, so a send is not late by the timer's rounding.
pub async fn wait_until(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        let left = at - now;
        if left > Duration::from_millis(3) {
            candybox_core::runtime::sleep(left - Duration::from_millis(2)).await;
        } else {
            candybox_core::runtime::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn mixes_parse_and_draw_in_proportion() {
        let mix: Mix = "put=1, get=3".parse().unwrap();
        assert_eq!(mix.weights, vec![(OpKind::Put, 1), (OpKind::Get, 3)]);
        assert_eq!(mix.to_string(), "put=1,get=3");
        let mut rng = SmallRng::seed_from_u64(7);
        let gets = (0..40_000).filter(|_| mix.pick(&mut rng) == OpKind::Get).count();
        assert!((29_000..31_000).contains(&gets), "{gets} gets of 40000 for a 3/4 weight");
        assert!("get".parse::<Mix>().unwrap().has(OpKind::Get));
        assert!("get=0".parse::<Mix>().is_err());
        assert!("get,get".parse::<Mix>().unwrap_err().contains("twice"));
        assert!("fetch=1".parse::<Mix>().unwrap_err().contains("unknown operation"));
    }

    #[test]
    fn sizes_parse_with_binary_suffixes_and_stay_in_bounds() {
        assert_eq!(parse_bytes("1k"), Ok(1024));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("1t").is_err());
        assert!(parse_bytes("k").is_err());
        assert_eq!("1k".parse::<SizeSpec>(), Ok(SizeSpec::Fixed(1024)));
        assert_eq!("1k:9,1m:1".parse::<SizeSpec>(), Ok(SizeSpec::Weighted(vec![(1024, 9), (1 << 20, 1)])));
        let range: SizeSpec = "1k-64k".parse().unwrap();
        assert_eq!(range.max(), 64 << 10);
        let mut rng = SmallRng::seed_from_u64(1);
        let drawn: Vec<u64> = (0..10_000).map(|_| range.sample(&mut rng)).collect();
        assert!(drawn.iter().all(|n| (1024..=65_536).contains(n)));
        assert!(drawn.iter().any(|&n| n < 8 << 10) && drawn.iter().any(|&n| n > 56 << 10));
        assert!("64k-1k".parse::<SizeSpec>().is_err());
        assert_eq!(show_bytes(64 << 20), "64 MiB");
        assert_eq!(show_bytes(1000), "1000 B");
    }

    #[test]
    fn scatter_is_a_permutation() {
        for n in [1u64, 2, 3, 10, 1000, 1024, 4097] {
            let mut seen = vec![false; n as usize];
            for r in 0..n {
                let x = scatter(r, n);
                assert!(x < n);
                assert!(!seen[x as usize], "scatter({r}, {n}) = {x} twice");
                seen[x as usize] = true;
            }
        }
    }

    #[test]
    fn zipfian_keys_are_skewed_and_in_range() {
        let keys = 10_000;
        let chooser = KeyChooser::new(keys, true, 0.99).unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut counts = vec![0u32; keys as usize];
        for _ in 0..100_000 {
            let k = chooser.sample(&mut rng);
            assert!(k < keys);
            counts[k as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top_1_percent: u32 = counts[..100].iter().sum();
        // Uniform would put ~1% of draws on any 100 keys; zipfian 0.99 puts far more on the hot ones.
        assert!(top_1_percent > 30_000, "the 100 hottest keys got {top_1_percent} of 100000 draws");
        let uniform = KeyChooser::new(keys, false, 0.99).unwrap();
        let mut counts = vec![0u32; keys as usize];
        for _ in 0..100_000 {
            counts[uniform.sample(&mut rng) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c < 40), "uniform draws clustered");
        assert!(KeyChooser::new(0, false, 0.99).is_err());
    }

    #[test]
    fn open_loop_schedule_does_not_depend_on_replies() {
        // 64 workers sharing 32000 requests/s: each sends every 2 ms, staggered by 2 ms / 64.
        let s = Schedule::new(32_000.0, 64, 16);
        assert_eq!(s.interval, Duration::from_millis(2));
        assert_eq!(s.offset, Duration::from_micros(500));
        assert_eq!(s.at(0), Duration::from_micros(500));
        assert_eq!(s.at(10), Duration::from_micros(20_500));
        // Over one second the 64 workers send the rate, within one request each.
        let sent: u64 = (0..64)
            .map(|i| {
                (0..).take_while(|&k| Schedule::new(32_000.0, 64, i).at(k) < Duration::from_secs(1)).count() as u64
            })
            .sum();
        assert!((31_936..=32_064).contains(&sent), "{sent} requests scheduled in 1 s at 32000/s");
    }

    #[test]
    fn renames_across_shards_land_on_another_shard() {
        use candybox_wire::client::placement::{partition_of, shard_of};
        let placement = RenamePlacement { partitions: 8, shard_count: 2 };
        for worker in [0usize, 1, 63] {
            let mut generation = 0u64;
            for _ in 0..100 {
                let next = placement.next_generation_across("cr-x", worker, generation).expect("2 shards");
                let shard = |g: u64| shard_of("cr-x", partition_of(rename_name(worker, g).as_bytes(), 8), 2);
                assert_ne!(shard(next), shard(generation), "worker {worker}: {generation} -> {next}");
                // The first such name: every generation skipped is on the source's shard.
                assert!((generation + 1..next).all(|g| shard(g) == shard(generation)));
                generation = next;
            }
        }
        let one = RenamePlacement { partitions: 8, shard_count: 1 };
        assert_eq!(one.next_generation_across("cr-x", 0, 0), None);
        assert_eq!(rename_name(3, 7), "rn/00003/000000000007");
    }

    #[test]
    fn error_kinds_are_variant_names() {
        #[derive(Debug)]
        #[allow(dead_code, reason = "only the Debug text is read")]
        enum E {
            NotFound { message: String },
            Closed,
        }
        assert_eq!(error_kind(&E::NotFound { message: "x y".into() }), "NotFound");
        assert_eq!(error_kind(&E::Closed), "Closed");
    }
}
