//! The engine benchmark: one durable partition engine on real files, driven by concurrent tasks on
//! one monoio executor, with put, get, head and list workloads reported one by one.
//!
//! Invariants:
//! - Durability is the engine's default and is never relaxed: every put is acknowledged only after
//!   the fdatasync of its Syrup bytes and of its WAL record (group commit shares both).
//! - The engine runs with `EngineConfig::new` defaults, so the figures show what a user gets.
//! - A latency sample spans from just before the call to the moment the reply is complete; for a
//!   get that includes taking every byte of the body from the reader.
//! - Every loop is bounded: by the op count of its workload, by the concurrency, or by
//!   `BUSY_RETRIES_MAX`.
//! - Every figure of the table is also written, unchanged, to the JSON file.

use std::{
    cell::{Cell, RefCell},
    fmt::Write as _,
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use candybox_bench::{command_output, cpu_model, git_commit, latency_histogram, utc_now};
use candybox_core::{
    engine::{Engine, EngineConfig, EngineStats, ListOptions, PutOptions, SliceBody},
    error::Error,
    runtime::{self, SystemClock},
    storage::uring::UringStorage,
    types::BoxUid,
};
use clap::Parser;
use hdrhistogram::Histogram;

/// Size of the small objects: below the default 4 KiB inline limit, so they live in the WAL and
/// the memtable and never touch a Syrup.
const SMALL_OBJECT_BYTES: u64 = 1024;
/// Size of the large objects: streamed into a Syrup as 64 KiB chunks.
const LARGE_OBJECT_BYTES: u64 = 1024 * 1024;
/// Keys under the list prefix: one full page.
const LIST_KEY_COUNT: usize = 1000;
/// Page size of the list workload.
const LIST_PAGE_ENTRIES: u32 = 1000;
/// A get touches one byte per page of the body, on top of the engine's own checksum pass.
const TOUCH_STRIDE_BYTES: usize = 4096;
/// Retries of one op that the engine answered `Busy`; past this the benchmark fails.
const BUSY_RETRIES_MAX: u32 = 1000;
/// Largest latency the histograms hold; a slower op is recorded as this value.
const LATENCY_US_MAX: u64 = 60 * 60 * 1_000_000;
/// Shortest workload whose CPU share is printed: CPU time is counted in clock ticks (10 ms), so a
/// shorter one would show mostly rounding.
const CPU_MEASURED_SECONDS_MIN: f64 = 0.5;

const _: () = assert!(SMALL_OBJECT_BYTES <= 4096, "the small put must stay below the default inline limit");
const _: () = assert!(LIST_PAGE_ENTRIES as usize >= LIST_KEY_COUNT, "one page must hold the whole prefix");

/// Benchmark of one durable Candybox partition engine (default settings) on real files, on one
/// monoio executor: put 1 KiB and 1 MiB, get 1 KiB and 1 MiB, head, list 1000 keys.
#[derive(Debug, Parser)]
#[command(name = "engine-bench")]
struct Args {
    /// Directory whose file system holds the data: a fresh temporary directory is created in it
    /// and removed at the end. Use a real disk: on tmpfs fdatasync does nothing.
    #[arg(long, default_value = ".")]
    dir: PathBuf,

    /// Tasks issuing operations at once on the one executor (lets group commit batch puts).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: u64,

    /// Operations of each 1 KiB workload (put, get and head each do this many).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,

    /// Operations of each 1 MiB workload (put and get each do this many).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    large_ops: u64,

    /// Listings of the 1000-key prefix (one page of 1000 each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    list_ops: u64,

    /// Flush the memtable into an SSTable before the read workloads, so that get, head and list
    /// read tables instead of the memtable (off by default: with default settings the data of a
    /// default run fits in the memtable).
    #[arg(long)]
    flush_before_reads: bool,

    /// Also write every figure as JSON to this file (its directory must exist).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Where and on what the benchmark ran.
#[derive(Debug)]
struct MachineContext {
    date_utc: String,
    commit: Option<String>,
    kernel: String,
    cores: usize,
    cpu_model: String,
    data_dir: PathBuf,
    fs_type: String,
    io_uring: bool,
}

/// What one task of a workload did.
#[derive(Debug, Clone, Copy, Default)]
struct TaskTally {
    ops: u64,
    bytes: u64,
}

/// Process counters from `/proc/self/stat`, summed over every thread of the process (the io_uring
/// workers that run blocking fdatasyncs included).
#[derive(Debug, Clone, Copy, Default)]
struct ProcCounters {
    minor_faults: u64,
    major_faults: u64,
    user_ticks: u64,
    system_ticks: u64,
}

/// What one op did.
#[derive(Debug, Clone, Copy, Default)]
struct OpDone {
    /// Body bytes written or read.
    bytes: u64,
    /// Times the engine answered `Busy` before the op went through.
    busy_retries: u32,
}

/// The future of one op of a workload.
type OpFuture = Pin<Box<dyn Future<Output = anyhow::Result<OpDone>>>>;

/// The figures of one workload.
struct Workload {
    name: &'static str,
    object_bytes: Option<u64>,
    ops: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
    bytes: u64,
    task_ops_min: u64,
    task_ops_max: u64,
    busy_retries: u64,
    engine: EngineStats,
    user_seconds: f64,
    system_seconds: f64,
    minor_faults: u64,
    major_faults: u64,
    note: &'static str,
}

impl Workload {
    fn ops_per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    fn megabytes_per_second(&self) -> Option<f64> {
        self.object_bytes.map(|_| self.bytes as f64 / 1e6 / self.seconds)
    }

    fn ops_per_commit(&self) -> Option<f64> {
        (self.engine.commit_batches > 0).then(|| self.engine.commit_ops as f64 / self.engine.commit_batches as f64)
    }

    /// CPU time over wall time, or `None` when the workload was too short for clock ticks to
    /// measure it.
    fn cpu_percent(&self) -> Option<f64> {
        (self.seconds >= CPU_MEASURED_SECONDS_MIN)
            .then(|| 100.0 * (self.user_seconds + self.system_seconds) / self.seconds)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let parent = args.dir.canonicalize().with_context(|| format!("resolve --dir {}", args.dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".engine-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("create a temporary directory in {}", parent.display()))?;
    let context = machine_context(tmp.path());
    print_context(&context, &args);
    if context.fs_type == "tmpfs" || context.fs_type == "ramfs" {
        println!(
            "WARNING: the data directory is on {}: fdatasync is a no-op, durability costs nothing here",
            context.fs_type
        );
    }
    let clock_ticks_per_second = clock_ticks_per_second();
    let workloads = runtime::block_on(run_all(&args, tmp.path(), clock_ticks_per_second))?;
    println!();
    print_table(&workloads);
    if let Some(path) = &args.json {
        let json = render_json(&context, &args, &workloads);
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    tmp.close().context("remove the temporary data directory")?;
    Ok(())
}

/// Opens the engine and runs every workload in order: each read workload reads what the put
/// workloads wrote.
async fn run_all(args: &Args, root: &Path, clock_ticks_per_second: u64) -> anyhow::Result<Vec<Workload>> {
    let config = EngineConfig::new(root.join("partitions/bench/0"), root.join("syrups"), BoxUid(1), 0);
    let inline_bytes_max = config.inline_bytes_max as u64;
    ensure!(SMALL_OBJECT_BYTES <= inline_bytes_max, "1 KiB puts must be inline for the labels to be right");
    ensure!(LARGE_OBJECT_BYTES > inline_bytes_max, "1 MiB puts must go to a Syrup for the labels to be right");
    println!(
        "engine: defaults (inline_bytes_max {} B, chunk_bytes {} B, memtable_bytes {} MiB, auto_maintenance {})",
        config.inline_bytes_max,
        config.chunk_bytes,
        config.memtable_bytes / (1024 * 1024),
        config.auto_maintenance
    );
    let (engine, _report) =
        Engine::open(UringStorage::new(), Rc::new(SystemClock), config).await.context("open the engine")?;
    let concurrency = args.concurrency;
    let small_keys = keys("small/", args.ops);
    let large_keys = keys("large/", args.large_ops);
    let small_payload = payload(SMALL_OBJECT_BYTES, 1);
    let large_payload = payload(LARGE_OBJECT_BYTES, 2);
    let meter = Meter { engine: engine.clone(), clock_ticks_per_second };
    let mut workloads = Vec::new();

    workloads.push(
        meter
            .run(
                "put 1 KiB",
                Some(SMALL_OBJECT_BYTES),
                "inline: WAL record only, no Syrup write",
                concurrency,
                args.ops,
                put_op(&engine, &small_keys, &small_payload),
            )
            .await?,
    );
    workloads.push(
        meter
            .run(
                "put 1 MiB",
                Some(LARGE_OBJECT_BYTES),
                "Syrup write + Syrup fdatasync, then WAL",
                concurrency,
                args.large_ops,
                put_op(&engine, &large_keys, &large_payload),
            )
            .await?,
    );

    // The list prefix is loaded outside any measured workload.
    let list_keys = keys("list/", LIST_KEY_COUNT as u64);
    meter
        .run(
            "load list keys",
            None,
            "",
            concurrency,
            LIST_KEY_COUNT as u64,
            put_op(&engine, &list_keys, &small_payload),
        )
        .await?;

    if args.flush_before_reads {
        engine.flush().await.context("flush the memtable before the reads")?;
    }
    let levels = engine.level_table_counts();
    let stats = engine.stats();
    println!(
        "before reads: tables per level {levels:?}, flushes {}, compactions {} ({})",
        stats.flushes,
        stats.compactions,
        if levels.iter().sum::<usize>() == 0 {
            "every read is served by the memtable"
        } else {
            "reads may go to SSTables"
        }
    );

    let read_note = match (args.flush_before_reads, levels.iter().sum::<usize>()) {
        (true, _) => "from an SSTable (flushed before reads)",
        (false, 0) => "from memtable",
        (false, _) => "from memtable and SSTables",
    };
    workloads.push(
        meter
            .run(
                "get 1 KiB",
                Some(SMALL_OBJECT_BYTES),
                read_note,
                concurrency,
                args.ops,
                get_op(&engine, &shuffled(&small_keys, 3), SMALL_OBJECT_BYTES),
            )
            .await?,
    );
    workloads.push(
        meter
            .run(
                "get 1 MiB",
                Some(LARGE_OBJECT_BYTES),
                "locator lookup, then mmap of the Syrup",
                concurrency,
                args.large_ops,
                get_op(&engine, &shuffled(&large_keys, 4), LARGE_OBJECT_BYTES),
            )
            .await?,
    );
    workloads.push(
        meter
            .run(
                "head 1 KiB",
                None,
                read_note,
                concurrency,
                args.ops,
                head_op(&engine, &shuffled(&small_keys, 5), SMALL_OBJECT_BYTES),
            )
            .await?,
    );
    workloads.push(
        meter
            .run(
                "list 1000 keys",
                None,
                "one page of 1000 over a 1000-key prefix",
                concurrency,
                args.list_ops,
                list_op(&engine),
            )
            .await?,
    );
    engine.close().await;
    Ok(workloads)
}

/// Runs workloads against one engine and takes the engine's and the process's counters around
/// each one.
struct Meter {
    engine: Engine<UringStorage>,
    clock_ticks_per_second: u64,
}

impl Meter {
    /// Runs `ops` calls of `op` (each given its op index) from `concurrency` tasks.
    async fn run<F>(
        &self,
        name: &'static str,
        object_bytes: Option<u64>,
        note: &'static str,
        concurrency: u64,
        ops: u64,
        op: F,
    ) -> anyhow::Result<Workload>
    where
        F: Fn(usize) -> OpFuture + 'static,
    {
        let op = Rc::new(op);
        let next_op = Rc::new(Cell::new(0u64));
        let busy_retries = Rc::new(Cell::new(0u64));
        // One histogram for all tasks, made before the clock starts: the tasks share one thread,
        // and a histogram per task would put the allocation and zeroing of its counts in the
        // measured time.
        let latency_us = Rc::new(RefCell::new(new_histogram()?));
        let stats_before = self.engine.stats();
        let proc_before = proc_counters();
        let started = Instant::now();
        let handles: Vec<_> = (0..concurrency)
            .map(|_| {
                let (op, next_op, busy_retries, latency_us) =
                    (Rc::clone(&op), Rc::clone(&next_op), Rc::clone(&busy_retries), Rc::clone(&latency_us));
                runtime::spawn(async move {
                    let mut tally = TaskTally::default();
                    // Bounded: the shared counter reaches `ops` after `ops` iterations in total.
                    loop {
                        let index = next_op.get();
                        if index >= ops {
                            break;
                        }
                        next_op.set(index + 1);
                        let index = usize::try_from(index).context("op index")?;
                        let start = Instant::now();
                        let done = op(index).await.with_context(|| format!("{name} op {index}"))?;
                        let elapsed_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        latency_us.borrow_mut().saturating_record(elapsed_us.clamp(1, LATENCY_US_MAX));
                        tally.ops += 1;
                        tally.bytes += done.bytes;
                        busy_retries.set(busy_retries.get() + u64::from(done.busy_retries));
                    }
                    anyhow::Ok(tally)
                })
            })
            .collect();
        let mut tallies = Vec::with_capacity(handles.len());
        for handle in handles {
            tallies.push(handle.await?);
        }
        let seconds = started.elapsed().as_secs_f64();
        let proc_after = proc_counters();
        let stats_after = self.engine.stats();
        let latency_us = latency_us.borrow().clone();
        let done: u64 = tallies.iter().map(|t| t.ops).sum();
        ensure!(done == ops, "{name}: {done} ops done of {ops}");
        let ticks = self.clock_ticks_per_second as f64;
        Ok(Workload {
            name,
            object_bytes,
            ops,
            seconds,
            latency_us,
            bytes: tallies.iter().map(|t| t.bytes).sum(),
            task_ops_min: tallies.iter().map(|t| t.ops).min().unwrap_or(0),
            task_ops_max: tallies.iter().map(|t| t.ops).max().unwrap_or(0),
            busy_retries: busy_retries.get(),
            engine: stats_delta(&stats_before, &stats_after),
            user_seconds: proc_after.user_ticks.saturating_sub(proc_before.user_ticks) as f64 / ticks,
            system_seconds: proc_after.system_ticks.saturating_sub(proc_before.system_ticks) as f64 / ticks,
            minor_faults: proc_after.minor_faults.saturating_sub(proc_before.minor_faults),
            major_faults: proc_after.major_faults.saturating_sub(proc_before.major_faults),
            note,
        })
    }
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    latency_histogram(LATENCY_US_MAX)
}

/// What `after` counted since `before`.
fn stats_delta(before: &EngineStats, after: &EngineStats) -> EngineStats {
    EngineStats {
        commit_batches: after.commit_batches - before.commit_batches,
        commit_ops: after.commit_ops - before.commit_ops,
        commit_sizes: std::array::from_fn(|i| {
            after.commit_sizes.get(i).copied().unwrap_or(0) - before.commit_sizes.get(i).copied().unwrap_or(0)
        }),
        wal_syncs: after.wal_syncs - before.wal_syncs,
        syrup_syncs: after.syrup_syncs - before.syrup_syncs,
        flushes: after.flushes - before.flushes,
        compactions: after.compactions - before.compactions,
        syrups_deleted: after.syrups_deleted - before.syrups_deleted,
        syrup_bytes_reclaimed: after.syrup_bytes_reclaimed - before.syrup_bytes_reclaimed,
        files_deleted: after.files_deleted - before.files_deleted,
        torn_tails_discarded: after.torn_tails_discarded - before.torn_tails_discarded,
    }
}

/// Keys `{prefix}{index:08}`, in index order.
fn keys(prefix: &str, count: u64) -> Rc<Vec<Bytes>> {
    Rc::new((0..count).map(|i| Bytes::from(format!("{prefix}{i:08}"))).collect())
}

/// The same keys in a fixed pseudo-random order, so reads do not walk the key space in order.
fn shuffled(keys: &[Bytes], seed: u64) -> Rc<Vec<Bytes>> {
    let mut out = keys.to_vec();
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for i in (1..out.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    Rc::new(out)
}

/// Body bytes that do not repeat with a short period.
fn payload(len: u64, seed: u64) -> Bytes {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>().into()
}

/// xorshift64: enough randomness for key order and body bytes, with no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `attempt` again while the engine answers `Busy`, waiting the time it asks for.
///
/// # Returns
/// The value and the number of retries.
async fn retry_busy<T, Fut>(mut attempt: impl FnMut() -> Fut) -> anyhow::Result<(T, u32)>
where
    Fut: Future<Output = Result<T, Error>>,
{
    for retries in 0..=BUSY_RETRIES_MAX {
        match attempt().await {
            Ok(v) => return Ok((v, retries)),
            Err(Error::Busy { retry_after_ms, .. }) => {
                runtime::sleep(Duration::from_millis(u64::from(retry_after_ms))).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("still busy after {BUSY_RETRIES_MAX} retries")
}

fn put_op(engine: &Engine<UringStorage>, keys: &Rc<Vec<Bytes>>, body: &Bytes) -> impl Fn(usize) -> OpFuture + 'static {
    let (engine, keys, body) = (engine.clone(), Rc::clone(keys), body.clone());
    move |index| {
        let (engine, key, body) = (engine.clone(), keys.get(index).cloned().unwrap_or_default(), body.clone());
        Box::pin(async move {
            let size = body.len() as u64;
            let options = || PutOptions { size: Some(size), ..PutOptions::default() };
            let (reply, busy_retries) =
                retry_busy(|| engine.put(&key, options(), SliceBody::new(body.clone()))).await?;
            ensure!(reply.size == size, "put stored {} bytes of {size}", reply.size);
            Ok(OpDone { bytes: size, busy_retries })
        })
    }
}

fn get_op(engine: &Engine<UringStorage>, keys: &Rc<Vec<Bytes>>, size: u64) -> impl Fn(usize) -> OpFuture + 'static {
    let (engine, keys) = (engine.clone(), Rc::clone(keys));
    move |index| {
        let (engine, key) = (engine.clone(), keys.get(index).cloned().unwrap_or_default());
        Box::pin(async move {
            let reply = engine.get(&key, None).await?;
            let mut taken = 0u64;
            let mut sum = 0u64;
            // The reader verifies each chunk's checksum (and the Part's) as it is taken; the
            // benchmark also reads a byte per page so the bytes are surely touched.
            for piece in reply.body {
                let piece = piece?;
                sum = piece.iter().step_by(TOUCH_STRIDE_BYTES).fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
                taken += piece.len() as u64;
            }
            std::hint::black_box(sum);
            ensure!(taken == size, "get returned {taken} bytes of {size}");
            Ok(OpDone { bytes: taken, busy_retries: 0 })
        })
    }
}

fn head_op(engine: &Engine<UringStorage>, keys: &Rc<Vec<Bytes>>, size: u64) -> impl Fn(usize) -> OpFuture + 'static {
    let (engine, keys) = (engine.clone(), Rc::clone(keys));
    move |index| {
        let (engine, key) = (engine.clone(), keys.get(index).cloned().unwrap_or_default());
        Box::pin(async move {
            let locator = engine.head(&key).await?;
            ensure!(locator.size == size, "head says {} bytes, expected {size}", locator.size);
            Ok(OpDone::default())
        })
    }
}

fn list_op(engine: &Engine<UringStorage>) -> impl Fn(usize) -> OpFuture + 'static {
    let engine = engine.clone();
    move |_| {
        let engine = engine.clone();
        Box::pin(async move {
            let options =
                ListOptions { prefix: Some(b"list/".to_vec()), limit: LIST_PAGE_ENTRIES, ..ListOptions::default() };
            let page = engine.list(&options).await?;
            ensure!(page.entries.len() == LIST_KEY_COUNT, "listed {} keys of {LIST_KEY_COUNT}", page.entries.len());
            ensure!(page.next_start_after.is_none(), "the listing says more keys follow the prefix's {LIST_KEY_COUNT}");
            Ok(OpDone::default())
        })
    }
}

// ---- Machine context ----

fn machine_context(data_dir: &Path) -> MachineContext {
    let date_utc = utc_now();
    let commit = git_commit();
    let kernel = command_output("uname", &["-r"]).unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu_model = cpu_model();
    let dir = data_dir.to_string_lossy().into_owned();
    let fs_type = command_output("df", &["--output=fstype", &dir])
        .and_then(|s| s.lines().nth(1).map(|l| l.trim().to_string()))
        .or_else(|| command_output("stat", &["-f", "-c", "%T", &dir]))
        .unwrap_or_else(|| "unknown".into());
    MachineContext {
        date_utc,
        commit,
        kernel,
        cores,
        cpu_model,
        data_dir: data_dir.to_path_buf(),
        fs_type,
        io_uring: monoio::utils::detect_uring(),
    }
}

fn clock_ticks_per_second() -> u64 {
    command_output("getconf", &["CLK_TCK"]).and_then(|s| s.parse().ok()).filter(|&t| t > 0).unwrap_or(100)
}

/// Page faults and CPU ticks of the whole process so far; zeros when `/proc` is unreadable.
fn proc_counters() -> ProcCounters {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return ProcCounters::default() };
    // The command name may hold spaces; the fields after its closing parenthesis start at field 3.
    let Some((_, rest)) = stat.rsplit_once(')') else { return ProcCounters::default() };
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let field = |number: usize| fields.get(number - 3).copied().unwrap_or(0);
    ProcCounters { minor_faults: field(10), major_faults: field(12), user_ticks: field(14), system_ticks: field(15) }
}

// ---- Output ----

fn print_context(c: &MachineContext, args: &Args) {
    println!("Candybox engine benchmark");
    println!("date        {}", c.date_utc);
    println!("commit      {}", c.commit.as_deref().unwrap_or("unknown"));
    println!("kernel      {}", c.kernel);
    println!("cores       {} ({})", c.cores, c.cpu_model);
    println!("data dir    {} (file system: {})", c.data_dir.display(), c.fs_type);
    println!(
        "runtime     monoio, one executor, io_uring {}",
        if c.io_uring { "available" } else { "NOT available (legacy driver)" }
    );
    println!("durability  durable: each put is acknowledged after fdatasync of its Syrup bytes and its WAL record");
    println!(
        "workloads   concurrency {}, {} ops per 1 KiB workload, {} per 1 MiB workload, {} listings",
        args.concurrency, args.ops, args.large_ops, args.list_ops
    );
    println!("note        1 KiB is below the default 4 KiB inline limit: a 1 KiB put is a WAL-only put");
}

fn print_table(workloads: &[Workload]) {
    println!(
        "{:<15} {:>6} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11} {:>8} {:>9}",
        "workload",
        "ops",
        "s",
        "ops/s",
        "MB/s",
        "p50 µs",
        "p99 µs",
        "p999 µs",
        "max µs",
        "mean µs",
        "WAL syncs",
        "Syrup syncs",
        "batches",
        "ops/batch"
    );
    for w in workloads {
        let h = &w.latency_us;
        println!(
            "{:<15} {:>6} {:>7.3} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8.0} {:>9} {:>11} {:>8} {:>9}",
            w.name,
            w.ops,
            w.seconds,
            w.ops_per_second(),
            w.megabytes_per_second().map_or("-".into(), |v| format!("{v:.1}")),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.mean(),
            w.engine.wal_syncs,
            w.engine.syrup_syncs,
            w.engine.commit_batches,
            w.ops_per_commit().map_or("-".into(), |v| format!("{v:.1}")),
        );
    }
    println!();
    println!(
        "{:<15} {:>6} {:>6} {:>6} {:>10} {:>10} {:>13} {:>6} {:>8} {:>11}  note",
        "workload", "usr s", "sys s", "CPU %", "min faults", "maj faults", "ops/task", "busy", "flushes", "compactions"
    );
    for w in workloads {
        println!(
            "{:<15} {:>6.2} {:>6.2} {:>6} {:>10} {:>10} {:>13} {:>6} {:>8} {:>11}  {}",
            w.name,
            w.user_seconds,
            w.system_seconds,
            w.cpu_percent().map_or("-".into(), |v| format!("{v:.0}")),
            w.minor_faults,
            w.major_faults,
            format!("{}..{}", w.task_ops_min, w.task_ops_max),
            w.busy_retries,
            w.engine.flushes,
            w.engine.compactions,
            w.note,
        );
    }
    println!();
    println!("MB/s counts 10^6 bytes of object bodies. usr s and sys s are CPU time of the whole process (io_uring");
    println!("workers included) at clock-tick resolution; CPU % is their sum relative to one core, shown for");
    println!("workloads of 0.5 s or more. ops/task is the fewest and most ops one of the concurrent tasks");
    println!("completed. busy counts retries after Error::Busy.");
}

/// A JSON string literal of `s`.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number, or `null` for a value JSON cannot hold.
fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

fn render_json(c: &MachineContext, args: &Args, workloads: &[Workload]) -> String {
    let mut j = String::new();
    let opt_str = |v: Option<&str>| v.map_or("null".into(), json_string);
    let _ = writeln!(j, "{{");
    let _ = writeln!(j, "  \"benchmark\": \"engine-bench\",");
    let _ = writeln!(j, "  \"context\": {{");
    let _ = writeln!(j, "    \"date_utc\": {},", json_string(&c.date_utc));
    let _ = writeln!(j, "    \"commit\": {},", opt_str(c.commit.as_deref()));
    let _ = writeln!(j, "    \"kernel\": {},", json_string(&c.kernel));
    let _ = writeln!(j, "    \"cores\": {},", c.cores);
    let _ = writeln!(j, "    \"cpu_model\": {},", json_string(&c.cpu_model));
    let _ = writeln!(j, "    \"data_dir\": {},", json_string(&c.data_dir.to_string_lossy()));
    let _ = writeln!(j, "    \"fs_type\": {},", json_string(&c.fs_type));
    let _ = writeln!(j, "    \"io_uring\": {},", c.io_uring);
    let _ = writeln!(j, "    \"durable\": true,");
    let _ = writeln!(j, "    \"engine_config\": \"EngineConfig::new defaults\"");
    let _ = writeln!(j, "  }},");
    let _ = writeln!(j, "  \"args\": {{");
    let _ = writeln!(j, "    \"concurrency\": {},", args.concurrency);
    let _ = writeln!(j, "    \"ops\": {},", args.ops);
    let _ = writeln!(j, "    \"large_ops\": {},", args.large_ops);
    let _ = writeln!(j, "    \"list_ops\": {},", args.list_ops);
    let _ = writeln!(j, "    \"flush_before_reads\": {}", args.flush_before_reads);
    let _ = writeln!(j, "  }},");
    let _ = writeln!(j, "  \"workloads\": [");
    for (i, w) in workloads.iter().enumerate() {
        let h = &w.latency_us;
        let _ = writeln!(j, "    {{");
        let _ = writeln!(j, "      \"name\": {},", json_string(w.name));
        let _ = writeln!(j, "      \"object_bytes\": {},", w.object_bytes.map_or("null".into(), |b| b.to_string()));
        let _ = writeln!(j, "      \"ops\": {},", w.ops);
        let _ = writeln!(j, "      \"seconds\": {},", json_f64(w.seconds));
        let _ = writeln!(j, "      \"ops_per_second\": {},", json_f64(w.ops_per_second()));
        let _ = writeln!(
            j,
            "      \"megabytes_per_second\": {},",
            w.megabytes_per_second().map_or("null".into(), json_f64)
        );
        let _ = writeln!(
            j,
            "      \"latency_us\": {{ \"p50\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}, \"mean\": {} }},",
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            json_f64(h.mean())
        );
        let e = &w.engine;
        let _ = writeln!(
            j,
            "      \"engine\": {{ \"wal_syncs\": {}, \"syrup_syncs\": {}, \"commit_batches\": {}, \"commit_ops\": {}, \"ops_per_commit\": {}, \"flushes\": {}, \"compactions\": {} }},",
            e.wal_syncs,
            e.syrup_syncs,
            e.commit_batches,
            e.commit_ops,
            w.ops_per_commit().map_or("null".into(), json_f64),
            e.flushes,
            e.compactions
        );
        let _ = writeln!(
            j,
            "      \"process\": {{ \"user_seconds\": {}, \"system_seconds\": {}, \"cpu_percent\": {}, \"minor_faults\": {}, \"major_faults\": {} }},",
            json_f64(w.user_seconds),
            json_f64(w.system_seconds),
            w.cpu_percent().map_or("null".into(), json_f64),
            w.minor_faults,
            w.major_faults
        );
        let _ = writeln!(j, "      \"task_ops_min\": {},", w.task_ops_min);
        let _ = writeln!(j, "      \"task_ops_max\": {},", w.task_ops_max);
        let _ = writeln!(j, "      \"busy_retries\": {},", w.busy_retries);
        let _ = writeln!(j, "      \"note\": {}", json_string(w.note));
        let _ = writeln!(j, "    }}{}", if i + 1 < workloads.len() { "," } else { "" });
    }
    let _ = writeln!(j, "  ]");
    let _ = writeln!(j, "}}");
    j
}
