//! `candybox-bench`: the load generator of a running node. Client threads each run their own
//! monoio executor (optionally pinned to a CPU) and their share of the connections; every
//! connection carries `--depth` requests at once. Closed loop by default; with `--rate`, open
//! loop: one dispatcher per thread issues intended send times on a fixed schedule to whichever
//! worker is free, with every latency measured from the request's intended send time,
//! so a stalled node shows as latency, not as fewer samples (coordinated omission corrected).
//!
//! Invariants:
//! - Nothing is relaxed: the node runs as configured, puts use its default durability, bodies are
//!   real bytes over real sockets, and every byte of a get is received.
//! - Every loop is bounded by the run's end time; a worker that meets 1000 errors in a row stops
//!   and the report says so.
//! - Only requests intended (open loop) or started (closed loop) inside the measured window are
//!   recorded; warm-up requests run the same code and are discarded.
//! - The node's counters are read when no load runs (after the pre-load and after the run), each
//!   after a maintenance pass, so its engine figures cover the same requests.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    cell::RefCell,
    fmt::Write as _,
    net::ToSocketAddrs as _,
    rc::Rc,
    sync::{Arc, Barrier, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use candybox_bench::{
    cpu_model, git_commit,
    load::{
        error_kind, key_name,
        lean::{self, LeanConfig, LeanPlan},
        raw::RawClient,
        rename_name,
        scrape::{self, NodeDelta, NodeWindow, Scrape},
        tally::{histogram, micros, Tally},
        wait_until, KeyChooser, Mix, OpKind, RenamePlacement, Schedule, SizeSpec, LIST_PAGE,
    },
    utc_now,
};
use candybox_core::runtime;
use candybox_wire::{
    client::{
        placement::PLACEMENT_V1, reply, request, ByteRange, ClientConfig, ClientError, ListOptions, MonoioClient,
        PutOptions,
    },
    frame::{FRAME_VERSION, FRAME_VERSION_MIN},
};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, SeedableRng as _};
use serde_json::json;

/// Errors in a row after which a worker gives up.
const ERRORS_IN_A_ROW_MAX: u32 = 1000;
/// How long to wait for a maintenance pass before reading the node's counters.
const PASS_WAIT: Duration = Duration::from_secs(5);
/// Target keys of one worker's copies (overwritten in turn, so the key count stays bounded).
const COPY_TARGETS: u64 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum ClientPath {
    /// Lean when the mix and size allow it, else library.
    Auto,
    /// The client library (`candybox_wire::client`): every operation and size.
    Library,
    /// Raw sockets, requests encoded once, replies checked in place: get, head and put of one
    /// size (gets up to 2 MiB, puts up to 1 MiB).
    Lean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Zipfian (hot keys), exponent `--zipf-theta`.
    Zipfian,
}

/// Load generator for a running candyboxd: closed or open loop, an operation mix, sizes, key
/// distributions; per-operation throughput and latency percentiles plus the node's own counters.
#[derive(Debug, Clone, Parser, serde::Serialize)]
#[command(
    name = "candybox-bench",
    after_help = "Examples:\n  candybox-bench --mix get=1 --size 1k --connections 64            # closed loop\n  \
                  candybox-bench --mix get=1 --rate 20000 --seconds 10             # open loop, 20k/s\n  \
                  candybox-bench --mix put=1,get=9 --size 1k-64k --dist zipfian --json out.json\n\n\
                  Durability is the node's (default: acknowledged after fdatasync); nothing here relaxes it."
)]
struct Args {
    /// The node's main port.
    #[arg(long, default_value = "127.0.0.1:7420")]
    server: String,
    /// The node's HTTP address, for its `/metrics` before and after the run.
    #[arg(long, default_value = "127.0.0.1:7419")]
    metrics: String,
    /// Do not read the node's metrics.
    #[arg(long)]
    no_metrics: bool,
    /// The node's process id on this machine: its CPU (every thread, from /proc/PID/stat) is then
    /// read with each reading of its metrics and counts as the node's, also for a node that does
    /// not report `candybox_process_cpu_seconds_total` itself (bench/ab passes it, so an older
    /// base is measured as the current node is).
    #[arg(long)]
    node_pid: Option<u32>,
    /// Client threads, each its own executor with its share of the connections.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// CPUs to pin the client threads to, e.g. `1` or `2,3` (thread i on the i-th, cycling).
    #[arg(long, value_delimiter = ',')]
    pin: Vec<usize>,
    /// Connections in all (each a client of its own).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests in flight on each connection (pipelining).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Open loop at this many requests per second in all (absent: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Operation weights: put, get, head, list, delete, copy, rename (e.g. `put=1,get=9`).
    #[arg(long, default_value = "get=1")]
    mix: String,
    /// Object size: `1k`, `64m`, `1g`, a uniform range `1k-64k`, or weights `1k:9,1m:1`.
    #[arg(long, default_value = "1k")]
    size: String,
    /// Keys in the key space (`k/0000000000` ...).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Key distribution.
    #[arg(long, value_enum, default_value = "uniform")]
    dist: Dist,
    /// Exponent of the zipfian distribution.
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Do not store the key space before the run (reads of absent keys count as NotFound).
    #[arg(long)]
    no_preload: bool,
    /// Seconds of warm-up (run, then discarded).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Send every request to the main port (no shard-aware routing).
    #[arg(long)]
    no_routing: bool,
    /// Load path: `lean` (raw sockets, requests encoded once, replies checked in place; get,
    /// head and put of one size, gets up to 2 MiB, puts up to 1 MiB) or `library` (the client
    /// library; every op and size). `auto`: lean when the mix and size allow it.
    #[arg(long, value_enum, default_value = "auto")]
    client: ClientPath,
    /// Frame version to speak (default: the newest this build knows). An older one drives a node
    /// that knows no later one (bench/ab does): the lean path then runs everything, set-up
    /// included, since the library speaks only the newest.
    #[arg(long)]
    frame_version: Option<u8>,
    /// The Box to use (created when missing).
    #[arg(long = "box", default_value = "bench")]
    box_name: String,
    /// Partitions of the Box when this run creates it (absent: the node's default).
    #[arg(long)]
    partitions: Option<u16>,
    /// Renames go across shards: each rename's target name is picked (with the node's placement
    /// function, from its topology and the Box's partition count) so that its partition lies on
    /// another shard than the source's. Needs rename in --mix and a node of 2 shards or more.
    /// Without it a rename's target is the worker's next name, on whichever shard that falls.
    #[arg(long)]
    rename_across_shards: bool,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// A label for the report and the JSON.
    #[arg(long)]
    label: Option<String>,
}

/// Everything a worker needs, shared read-only.
struct Plan {
    args: Args,
    /// The load path this run takes.
    lean: bool,
    mix: Mix,
    sizes: SizeSpec,
    keys: KeyChooser,
    /// One buffer of the largest size; bodies are slices of it (no copy per request).
    body: Bytes,
    /// With `--rename-across-shards`: where the Box's keys live, read from the node.
    rename_placement: Option<RenamePlacement>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mix: Mix = args.mix.parse().map_err(|e: String| anyhow::anyhow!("--mix: {e}"))?;
    let sizes: SizeSpec = args.size.parse().map_err(|e: String| anyhow::anyhow!("--size: {e}"))?;
    let keys = KeyChooser::new(args.keys, args.dist == Dist::Zipfian, args.zipf_theta)
        .map_err(|e| anyhow::anyhow!("--keys/--zipf-theta: {e}"))?;
    ensure!(args.connections >= 1, "--connections must be at least 1");
    ensure!(args.depth >= 1, "--depth must be at least 1");
    ensure!((1..=args.connections).contains(&args.threads), "--threads must be between 1 and --connections");
    ensure!(args.seconds > 0.0 && args.warmup >= 0.0, "--seconds must be positive and --warmup not negative");
    if let Some(rate) = args.rate {
        ensure!(rate.is_finite() && rate > 0.0, "--rate must be a positive number of requests per second");
    }
    ensure!(!args.rename_across_shards || mix.has(OpKind::Rename), "--rename-across-shards needs rename in --mix");
    let frame_version = args.frame_version.unwrap_or(FRAME_VERSION);
    ensure!(
        (FRAME_VERSION_MIN..=FRAME_VERSION).contains(&frame_version),
        "--frame-version must be between {FRAME_VERSION_MIN} and {FRAME_VERSION}"
    );
    let older = frame_version < FRAME_VERSION;
    let unsupported = lean::unsupported(&mix, &sizes, args.keys, frame_version, args.rate.is_some());
    let lean = match (args.client, &unsupported) {
        (ClientPath::Library, _) if older => {
            bail!("--frame-version {frame_version}: the library speaks only version {FRAME_VERSION}; use --client lean")
        }
        (_, Some(why)) if older => bail!("--frame-version {frame_version} needs the lean path, but {why}"),
        (ClientPath::Library, _) | (ClientPath::Auto, Some(_)) => false,
        (ClientPath::Auto | ClientPath::Lean, None) => true,
        (ClientPath::Lean, Some(why)) => bail!("--client lean: {why}; use --client library"),
    };
    if lean {
        ensure!(
            args.depth <= candybox_bench::load::pipeline::DEPTH_MAX,
            "--depth above {} is not supported by the lean path",
            candybox_bench::load::pipeline::DEPTH_MAX
        );
    }
    let body_len = usize::try_from(sizes.max()).context("--size does not fit in memory")?;
    let body = Bytes::from(
        (0..body_len).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect::<Vec<u8>>(),
    );
    let mut plan = Plan { args, lean, mix, sizes, keys, body, rename_placement: None };
    print_header(&plan, unsupported.as_deref());

    if older {
        runtime::block_on(prepare_raw(&plan, frame_version))?;
    } else {
        runtime::block_on(prepare(&plan))?;
    }
    if plan.args.rename_across_shards {
        let placement = runtime::block_on(rename_placement(&plan.args))?;
        println!(
            "renames across shards: {} shards, {} partitions; each rename's target on another shard than its source",
            placement.shard_count, placement.partitions
        );
        plan.rename_placement = Some(placement);
    }
    let plan = Arc::new(plan);
    let lean_plan = if plan.lean {
        let a = &plan.args;
        let config = LeanConfig {
            server: a.server.clone(),
            box_name: a.box_name.clone(),
            routing: !a.no_routing,
            connections: a.connections,
            depth: a.depth,
            threads: a.threads,
            rate: a.rate,
            warmup: Duration::from_secs_f64(a.warmup),
            seconds: Duration::from_secs_f64(a.seconds),
            mix: plan.mix.clone(),
            keys: plan.keys.clone(),
            key_count: a.keys,
            size: plan.sizes.max(),
            payload: if plan.mix.has(OpKind::Put) { plan.body.to_vec() } else { Vec::new() },
            cap: candybox_wire::FRAME_BODY_BYTES_MAX_DEFAULT,
            frame_version,
        };
        let lp = runtime::block_on(LeanPlan::build(config)).context("prepare the lean path")?;
        println!("lean path: {}", lp.routing_note);
        Some(Arc::new(lp))
    } else {
        None
    };
    let before = read_metrics(&plan.args, "before the run")?;

    let t0 = Arc::new(OnceLock::new());
    let connected = Arc::new(Barrier::new(plan.args.threads + 1));
    let go = Arc::new(Barrier::new(plan.args.threads + 1));
    let mut threads = Vec::new();
    for t in 0..plan.args.threads {
        let (plan, t0, connected, go) = (plan.clone(), t0.clone(), connected.clone(), go.clone());
        let lean_plan = lean_plan.clone();
        let cpu = (!plan.args.pin.is_empty()).then(|| plan.args.pin.get(t % plan.args.pin.len()).copied()).flatten();
        threads.push(
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || match lean_plan {
                    Some(lp) => lean_thread(t, cpu, lp, &t0, &connected, &go),
                    None => client_thread(t, cpu, &plan, &t0, &connected, &go),
                })
                .context("spawn a client thread")?,
        );
    }
    connected.wait();
    let start = Instant::now() + Duration::from_millis(20);
    let _ = t0.set(start);
    go.wait();
    let window = measure_window(&plan.args, start);
    let mut tally = Tally::new(&plan.mix)?;
    for th in threads {
        let part = th.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        tally.merge(&part)?;
    }
    let after = read_metrics(&plan.args, "after the run")?;
    let node = match (before, after) {
        (Some((b, fb)), Some((a, fa))) => Some(NodeDelta::between(&b, &a, fb && fa)),
        _ => None,
    };
    report(&plan, lean_plan.as_deref(), &tally, node.as_ref(), &window)
}

/// The measured window as this process and the node saw it: the generator's CPU (every thread,
/// getrusage) and the node's requests and shard CPU (two quick reads of `/metrics`, no wait for a
/// maintenance pass: both counters are live), from the start of the window to its end.
struct Window {
    /// Wall-clock seconds between the two CPU readings.
    wall_s: f64,
    /// CPU seconds of this process in them.
    generator_cpu_s: f64,
    /// The node's counters over (nearly) the same interval.
    node: Option<NodeWindow>,
}

/// Sleeps through the run on the main thread (which does nothing else, so the process's CPU is
/// the client threads'), reading the CPU and the node's counters at the window's edges. The node
/// is read outside the generator's CPU readings, so the reads are not counted as the generator's.
fn measure_window(args: &Args, start: Instant) -> Window {
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let node_before = read_window_metrics(args, "at the start of the measured window");
    let (cpu_before, wall_before) = (process_cpu_seconds(), Instant::now());
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let (cpu_after, wall_after) = (process_cpu_seconds(), Instant::now());
    let node_after = read_window_metrics(args, "at the end of the measured window");
    Window {
        wall_s: (wall_after - wall_before).as_secs_f64(),
        generator_cpu_s: (cpu_after - cpu_before).max(0.0),
        node: match (node_before, node_after) {
            (Some(b), Some(a)) => Some(NodeWindow::between(&b, &a)),
            _ => None,
        },
    }
}

/// One quick read of the node's `/metrics` (none with `--no-metrics`; a failure is a warning).
fn read_window_metrics(args: &Args, when: &str) -> Option<Scrape> {
    if args.no_metrics {
        return None;
    }
    match scrape::fetch(&args.metrics) {
        Ok(s) => Some(with_process_cpu(args, s)),
        Err(e) => {
            eprintln!("warning: cannot read the node's metrics {when}: {e}");
            None
        }
    }
}

/// `s` with the node's process CPU from `/proc` when `--node-pid` names it (a failure to read
/// it is a warning, and the node's own figures stand).
fn with_process_cpu(args: &Args, mut s: Scrape) -> Scrape {
    if let Some(pid) = args.node_pid {
        match scrape::process_cpu_seconds_of(pid) {
            Ok(cpu) => {
                s.totals.insert(scrape::PROCESS_CPU.to_string(), cpu);
            }
            Err(e) => eprintln!("warning: cannot read the node's CPU from /proc: {e}"),
        }
    }
    s
}

/// CPU seconds (user + system) of this process so far, every thread included.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is zeroed and lives here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Reads the node's metrics after a maintenance pass, or `None` with `--no-metrics`.
fn read_metrics(args: &Args, when: &str) -> anyhow::Result<Option<(Scrape, bool)>> {
    if args.no_metrics {
        return Ok(None);
    }
    let (s, fresh) = scrape::fetch_after_pass(&args.metrics, PASS_WAIT)
        .map_err(|e| anyhow::anyhow!("read the node's metrics {when}: {e} (use --no-metrics to skip them)"))?;
    let s = with_process_cpu(args, s);
    if !fresh {
        eprintln!("warning: no maintenance pass within {PASS_WAIT:?} {when}: the node's engine figures may lag");
    }
    Ok(Some((s, fresh)))
}

fn config(args: &Args) -> ClientConfig {
    let mut config = ClientConfig::new(args.server.clone());
    config.routing = !args.no_routing;
    config
}

/// Where the Box's keys live, for `--rename-across-shards`: its partition count and the node's
/// shard count (the node must name the placement function this build knows and have 2 shards or
/// more).
async fn rename_placement(args: &Args) -> anyhow::Result<RenamePlacement> {
    let admin = MonoioClient::connect(config(args)).await.with_context(|| format!("connect to {}", args.server))?;
    let partitions = admin.head_box(&args.box_name).await.context("head the box")?.partitions;
    let topology = admin.topology().await.context("--rename-across-shards: read the node's topology")?;
    ensure!(
        topology.placement == PLACEMENT_V1,
        "--rename-across-shards: the node names placement `{}`, this build knows `{PLACEMENT_V1}`",
        topology.placement
    );
    ensure!(
        topology.shard_count >= 2,
        "--rename-across-shards needs a node of 2 shards or more; this one has {}",
        topology.shard_count
    );
    Ok(RenamePlacement { partitions, shard_count: topology.shard_count })
}

/// Creates the Box and, unless `--no-preload` or a put-only mix, stores every key once (with
/// `connections` puts in flight), printing progress.
/// As [`prepare`], in frame version `version` over [`RawClient`]s (the library speaks only the
/// newest version): creates the Box and stores every key once, 16 connections at a time.
async fn prepare_raw(plan: &Plan, version: u8) -> anyhow::Result<()> {
    let args = &plan.args;
    let cap = candybox_wire::FRAME_BODY_BYTES_MAX_DEFAULT;
    let addr = args
        .server
        .to_socket_addrs()
        .with_context(|| format!("resolve {}", args.server))?
        .next()
        .with_context(|| format!("{} resolves to no address", args.server))?;
    let mut admin = RawClient::connect(addr, version, cap).await?;
    let created = admin
        .call(&request::create_box(&args.box_name, args.partitions, candybox_wire::client::Versioning::Off), &[])
        .await?;
    match reply::box_reply(&created, cap) {
        Ok(_) | Err(ClientError::BoxExists { .. }) => {}
        Err(e) => bail!("create box {}: {e}", args.box_name),
    }
    let needs_keys = plan.mix.weights.iter().any(|&(op, _)| op.reads_keys());
    if args.no_preload || !needs_keys {
        return Ok(());
    }
    let started = Instant::now();
    let next = Rc::new(std::cell::Cell::new(0u64));
    let mut tasks = Vec::new();
    for l in 0..args.connections.clamp(1, 16) as u64 {
        let mut client = RawClient::connect(addr, version, cap).await.context("connect a pre-load client")?;
        let (next, box_name, keys, sizes, body) =
            (next.clone(), args.box_name.clone(), args.keys, plan.sizes.clone(), plan.body.clone());
        let mut rng = SmallRng::seed_from_u64(0x5EED ^ l);
        tasks.push(runtime::spawn(async move {
            loop {
                let i = next.get();
                if i >= keys {
                    return Ok::<(), anyhow::Error>(());
                }
                next.set(i + 1);
                let len = usize::try_from(sizes.sample(&mut rng)).unwrap_or(usize::MAX).min(body.len());
                let options = PutOptions { size: Some(len as u64), ..PutOptions::default() };
                let put = request::put(&box_name, key_name(i).as_bytes(), &options);
                let done = client.call(&put, body.get(..len).unwrap_or_default()).await;
                reply::put_done(&done.with_context(|| format!("pre-load key {i}"))?, cap)
                    .with_context(|| format!("pre-load key {i}"))?;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    println!(
        "pre-load: {} keys of {} in {:.1} s (frame version {version})",
        args.keys,
        plan.sizes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn prepare(plan: &Plan) -> anyhow::Result<()> {
    let args = &plan.args;
    let admin = MonoioClient::connect(config(args)).await.with_context(|| format!("connect to {}", args.server))?;
    match admin.create_box(&args.box_name, args.partitions).await {
        Ok(_) | Err(ClientError::BoxExists { .. }) => {}
        Err(e) => bail!("create box {}: {e}", args.box_name),
    }
    let needs_keys = plan.mix.weights.iter().any(|&(op, _)| op.reads_keys());
    if args.no_preload || !needs_keys {
        return Ok(());
    }
    let started = Instant::now();
    let loaders = args.connections.clamp(1, 64) as u64;
    let next = Rc::new(std::cell::Cell::new(0u64));
    let mut tasks = Vec::new();
    for l in 0..loaders {
        let client = MonoioClient::connect(config(args)).await.context("connect a pre-load client")?;
        let (next, box_name, keys) = (next.clone(), args.box_name.clone(), args.keys);
        let mut rng = SmallRng::seed_from_u64(0x5EED ^ l);
        let sizes = plan.sizes.clone();
        let body = plan.body.clone();
        tasks.push(runtime::spawn(async move {
            loop {
                let i = next.get();
                if i >= keys {
                    return Ok::<(), anyhow::Error>(());
                }
                next.set(i + 1);
                let len = usize::try_from(sizes.sample(&mut rng)).unwrap_or(usize::MAX).min(body.len());
                client
                    .put_bytes(&box_name, key_name(i).as_bytes(), &PutOptions::default(), body.slice(..len))
                    .await
                    .with_context(|| format!("pre-load key {i}"))?;
            }
        }));
    }
    let progress = {
        let next = next.clone();
        let keys = args.keys;
        runtime::spawn(async move {
            let mut shown = Instant::now();
            while next.get() < keys {
                runtime::sleep(Duration::from_millis(100)).await;
                if shown.elapsed() >= Duration::from_secs(2) {
                    eprintln!("pre-load: {}/{keys} keys", next.get().min(keys));
                    shown = Instant::now();
                }
            }
        })
    };
    for t in tasks {
        t.await?;
    }
    progress.await;
    println!("pre-load: {} keys of {} in {:.1} s", args.keys, plan.sizes, started.elapsed().as_secs_f64());
    Ok(())
}

/// A client thread of the lean path: pinned like the library's, on an io_uring executor (the
/// precise open-loop timer reads its timerfd through the ring).
fn lean_thread(
    t: usize,
    cpu: Option<usize>,
    plan: Arc<LeanPlan>,
    t0: &OnceLock<Instant>,
    connected: &Barrier,
    go: &Barrier,
) -> anyhow::Result<Tally> {
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("warning: could not pin client thread {t} to CPU {id}");
        }
    }
    // The node's ring flags (shards/src/main.rs): completions are handed over when the thread next
    // enters the kernel, not by an interrupt per completion, so the generator pays no more per
    // reply than the node pays per request. Kernels without them get the plain ring.
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun().setup_taskrun_flag().setup_single_issuer();
    let rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .with_entries(1024)
        .uring_builder(ring)
        .build()
        .or_else(|_| monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().with_entries(1024).build());
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            // The other threads and the main thread wait at both barriers: meet them, then fail.
            connected.wait();
            go.wait();
            bail!("the lean path needs io_uring, which this kernel refused ({e}); use --client library");
        }
    };
    rt.block_on(lean::thread_main(plan, t, t0, connected, go))
}

fn client_thread(
    t: usize,
    cpu: Option<usize>,
    plan: &Arc<Plan>,
    t0: &OnceLock<Instant>,
    connected: &Barrier,
    go: &Barrier,
) -> anyhow::Result<Tally> {
    if let Some(id) = cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("warning: could not pin client thread {t} to CPU {id}");
        }
    }
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .context("build the monoio runtime")?;
    rt.block_on(async {
        let args = &plan.args;
        // Connections of this thread: t, t + threads, t + 2 × threads, ...
        let mine: Vec<usize> = (t..args.connections).step_by(args.threads).collect();
        let mut clients = Vec::new();
        let mut setup_error = None;
        for &c in &mine {
            match MonoioClient::connect(config(args)).await {
                Ok(client) => clients.push((c, client)),
                Err(e) => {
                    setup_error = Some(anyhow::anyhow!("connect load client {c}: {e}"));
                    break;
                }
            }
        }
        // Rename chains: each worker renames its own object, first copied from the key space.
        if setup_error.is_none() && plan.mix.has(OpKind::Rename) {
            'setup: for (c, client) in &clients {
                for d in 0..args.depth {
                    let w = c * args.depth + d;
                    let source = key_name(w as u64 % args.keys);
                    if let Err(e) = client.copy(&args.box_name, source.as_bytes(), rename_name(w, 0).as_bytes()).await {
                        setup_error = Some(anyhow::anyhow!("set up worker {w}'s rename object from {source}: {e}"));
                        break 'setup;
                    }
                }
            }
        }
        connected.wait();
        go.wait();
        if let Some(e) = setup_error {
            return Err(e);
        }
        let start = *t0.get().context("start time not set")?;
        let tally = Rc::new(RefCell::new(Tally::new(&plan.mix)?));
        let mut tasks = Vec::new();
        // Open loop: one dispatcher per thread issues the thread's share of the rate as intended
        // send times; any free worker takes the next. The queue is bounded: when every worker is
        // busy the dispatcher waits, and the waiting shows in the latencies (measured from the
        // intended times it carries), never as requests left out.
        let tokens = args.rate.map(|rate| {
            let (tx, rx) = async_channel::bounded::<Instant>(4 * mine.len() * args.depth);
            let schedule = Schedule::new(rate, args.threads, t);
            let end = start + Duration::from_secs_f64(args.warmup + args.seconds);
            tasks.push(runtime::spawn(dispatch(schedule, start, end, tx)));
            rx
        });
        for (c, client) in clients {
            let client = Rc::new(client);
            for d in 0..args.depth {
                let w = c * args.depth + d;
                let job = Worker {
                    w,
                    client: client.clone(),
                    plan: plan.clone(),
                    tally: tally.clone(),
                    start,
                    tokens: tokens.clone(),
                };
                tasks.push(runtime::spawn(job.run()));
            }
        }
        drop(tokens);
        for task in tasks {
            task.await;
        }
        let tally = Rc::try_unwrap(tally).map_err(|_| anyhow::anyhow!("a worker outlived the run"))?;
        Ok(tally.into_inner())
    })
}

/// Issues the intended send times of one thread's open-loop schedule until `end`.
async fn dispatch(schedule: Schedule, start: Instant, end: Instant, tx: async_channel::Sender<Instant>) {
    for k in 0u64.. {
        let intended = start + schedule.at(k);
        if intended >= end {
            break;
        }
        wait_until(intended).await;
        if tx.send(intended).await.is_err() {
            break;
        }
    }
}

/// One worker: one request at a time on its connection, until the end of the run.
struct Worker {
    w: usize,
    client: Rc<MonoioClient>,
    plan: Arc<Plan>,
    tally: Rc<RefCell<Tally>>,
    start: Instant,
    /// Open loop: the intended send times; closed loop: `None`, send at once.
    tokens: Option<async_channel::Receiver<Instant>>,
}

impl Worker {
    async fn run(self) {
        let Worker { w, client, plan, tally, start, tokens } = self;
        let args = &plan.args;
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let end = measure_from + Duration::from_secs_f64(args.seconds);
        let mut rng = SmallRng::seed_from_u64(0xB0B0_0000 ^ w as u64);
        let mut generation = 0u64;
        let mut copies = 0u64;
        let mut errors_in_a_row = 0u32;
        if tokens.is_none() {
            wait_until(start).await;
        }
        loop {
            let intended = match &tokens {
                Some(rx) => match rx.recv().await {
                    Ok(at) => at,
                    Err(_) => break,
                },
                None => Instant::now(),
            };
            if intended >= end {
                break;
            }
            let op = plan.mix.pick(&mut rng);
            let sent = Instant::now();
            let result = run_op(op, &client, &plan, &mut rng, w, &mut generation, &mut copies).await;
            let done = Instant::now();
            if intended >= measure_from {
                let mut t = tally.borrow_mut();
                if tokens.is_some() {
                    t.lag.saturating_record(micros(sent.saturating_duration_since(intended)));
                }
                if let Some(o) = t.op(op) {
                    match &result {
                        Ok(bytes) => {
                            o.latency.saturating_record(micros(done - intended).max(1));
                            o.service.saturating_record(micros(done - sent).max(1));
                            o.bytes += bytes;
                        }
                        Err(e) => *o.errors.entry(error_kind(e)).or_default() += 1,
                    }
                }
            }
            match result {
                Ok(_) => errors_in_a_row = 0,
                Err(e) => {
                    errors_in_a_row += 1;
                    if errors_in_a_row >= ERRORS_IN_A_ROW_MAX {
                        tally
                            .borrow_mut()
                            .gave_up
                            .push(format!("worker {w} stopped after {errors_in_a_row} errors in a row, the last: {e}"));
                        break;
                    }
                }
            }
        }
    }
}

/// Runs one operation; the bytes of object data it moved.
async fn run_op(
    op: OpKind,
    client: &MonoioClient,
    plan: &Plan,
    rng: &mut SmallRng,
    w: usize,
    generation: &mut u64,
    copies: &mut u64,
) -> Result<u64, ClientError> {
    let box_name = plan.args.box_name.as_str();
    let key = key_name(plan.keys.sample(rng));
    match op {
        OpKind::Put => {
            let len = usize::try_from(plan.sizes.sample(rng)).unwrap_or(usize::MAX).min(plan.body.len());
            client.put_bytes(box_name, key.as_bytes(), &PutOptions::default(), plan.body.slice(..len)).await?;
            Ok(len as u64)
        }
        OpKind::Get => {
            let mut stream = client.get(box_name, key.as_bytes(), ByteRange::Whole).await?;
            let mut n = 0u64;
            while let Some(piece) = stream.next_piece().await? {
                n += piece.len() as u64;
            }
            Ok(n)
        }
        OpKind::Head => client.head(box_name, key.as_bytes()).await.map(|_| 0),
        OpKind::List => {
            let options = ListOptions {
                prefix: Some(b"k/".to_vec()),
                start_after: Some(key.into_bytes()),
                limit: LIST_PAGE,
                ..ListOptions::default()
            };
            client.list(box_name, &options).await.map(|_| 0)
        }
        OpKind::Delete => client.delete(box_name, key.as_bytes()).await.map(|()| 0),
        OpKind::Copy => {
            let target = format!("cp/{w:05}/{:02}", *copies % COPY_TARGETS);
            *copies += 1;
            client.copy(box_name, key.as_bytes(), target.as_bytes()).await.map(|_| 0)
        }
        OpKind::Rename => {
            let next = match &plan.rename_placement {
                // Checked at start-up: the node has 2 shards or more, so a name on another shard
                // comes within a few generations.
                Some(p) => p.next_generation_across(box_name, w, *generation).unwrap_or(*generation + 1),
                None => *generation + 1,
            };
            let (from, to) = (rename_name(w, *generation), rename_name(w, next));
            client.rename(box_name, from.as_bytes(), to.as_bytes()).await?;
            *generation = next;
            Ok(0)
        }
    }
}

fn print_header(plan: &Plan, lean_unsupported: Option<&str>) {
    let a = &plan.args;
    let lp = match a.rate {
        Some(r) => format!("open loop at {r:.0} req/s (latency from the intended send time)"),
        None => "closed loop".to_string(),
    };
    println!("candybox-bench {}", a.label.as_deref().unwrap_or(""));
    println!("date {}  commit {}  cpu {}", utc_now(), git_commit().unwrap_or_else(|| "unknown".into()), cpu_model());
    println!(
        "{lp}; {} connections x depth {} on {} thread(s){}; mix {}; size {}; {} keys {}; routing {}; warm-up {} s, measured {} s",
        a.connections,
        a.depth,
        a.threads,
        if a.pin.is_empty() { String::new() } else { format!(" pinned to CPU {:?}", a.pin) },
        plan.mix,
        plan.sizes,
        a.keys,
        match a.dist {
            Dist::Uniform => "uniform".to_string(),
            Dist::Zipfian => format!("zipfian {}", a.zipf_theta),
        },
        if a.no_routing { "off" } else { "on" },
        a.warmup,
        a.seconds,
    );
    println!("durability: the node's (default: acknowledged after fdatasync); server {}", a.server);
    if let Some(v) = a.frame_version {
        println!("frame version {v} (set-up included)");
    }
    match (plan.lean, lean_unsupported) {
        (true, _) => println!("load path: lean (raw sockets, requests encoded once, replies checked in place)"),
        (false, Some(why)) => println!("load path: library ({why})"),
        (false, None) => println!("load path: library (--client library)"),
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    json!({
        "p50_us": h.value_at_quantile(0.5),
        "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "mean_us": h.mean(),
    })
}

fn report(
    plan: &Plan,
    lean_plan: Option<&LeanPlan>,
    tally: &Tally,
    node: Option<&NodeDelta>,
    window: &Window,
) -> anyhow::Result<()> {
    let secs = plan.args.seconds;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<8} {:>10} {:>11} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9}  errors",
        "op", "ops", "ops/s", "MB/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    let mut ops_json = Vec::new();
    let mut all = histogram()?;
    let (mut all_bytes, mut all_errors) = (0u64, 0u64);
    for op in OpKind::ALL {
        let Some(Some(o)) = tally.ops.get(op.index()) else { continue };
        let h = &o.latency;
        let count = h.len();
        let errors: u64 = o.errors.values().sum();
        all.add(h).context("merge histograms")?;
        all_bytes += o.bytes;
        all_errors += errors;
        let errors_text = if o.errors.is_empty() {
            "0".to_string()
        } else {
            o.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
        };
        let _ = writeln!(
            table,
            "{:<8} {:>10} {:>11.0} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>9}  {}",
            op.name(),
            count,
            count as f64 / secs,
            o.bytes as f64 / secs / 1e6,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            errors_text
        );
        let mut entry = json!({
            "op": op.name(),
            "count": count,
            "ops_per_s": count as f64 / secs,
            "bytes_per_s": o.bytes as f64 / secs,
            "errors": o.errors,
            "service": percentiles(&o.service),
        });
        if let (Some(e), serde_json::Value::Object(p)) = (entry.as_object_mut(), percentiles(h)) {
            e.extend(p);
        }
        ops_json.push(entry);
    }
    if plan.mix.weights.len() > 1 {
        let _ = writeln!(
            table,
            "{:<8} {:>10} {:>11.0} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>9}  {}",
            "all",
            all.len(),
            all.len() as f64 / secs,
            all_bytes as f64 / secs / 1e6,
            all.value_at_quantile(0.5),
            all.value_at_quantile(0.9),
            all.value_at_quantile(0.99),
            all.value_at_quantile(0.999),
            all.max(),
            all_errors
        );
    }
    print!("{table}");
    if plan.args.rate.is_some() {
        println!(
            "send lag against the schedule: p50 {} µs, p99 {} µs, max {} µs (offered {:.0} req/s, achieved {:.0})",
            tally.lag.value_at_quantile(0.5),
            tally.lag.value_at_quantile(0.99),
            tally.lag.max(),
            plan.args.rate.unwrap_or(0.0),
            (all.len() + all_errors) as f64 / secs
        );
    }
    let requests = (all.len() + all_errors).max(1) as f64;
    // CPU per second of the window over requests per second of the window: the two intervals
    // differ only by the few milliseconds of reading the node's metrics at its start.
    let generator_cpu_share = if window.wall_s > 0.0 { window.generator_cpu_s / window.wall_s } else { 0.0 };
    let generator_cpu_us_per_op = generator_cpu_share * 1e6 / (requests / secs);
    let load_path = if plan.lean { "lean" } else { "library" };
    println!(
        "generator ({load_path} path): CPU {generator_cpu_us_per_op:.2} µs/op, {:.0} % of one core ({} thread(s)), over the measured window only",
        generator_cpu_share * 100.0,
        plan.args.threads
    );
    if let Some(w) = &window.node {
        println!(
            "node over the measured window: {} requests, CPU {:.2} µs/op ({:.2} s); generator/node CPU per op {:.2}{}",
            w.requests,
            w.cpu_us_per_op,
            w.cpu_s,
            if w.cpu_us_per_op > 0.0 { generator_cpu_us_per_op / w.cpu_us_per_op } else { f64::NAN },
            if w.cpu_us_per_op > 0.0 && generator_cpu_us_per_op > 0.5 * w.cpu_us_per_op {
                "  [above 0.5: the figures may measure the generator]"
            } else {
                ""
            }
        );
    }
    if let Some(n) = node {
        let cpu: Vec<String> =
            n.cpu_s_by_shard.iter().enumerate().map(|(s, c)| format!("shard {s} {c:.2} s")).collect();
        println!(
            "node: {} requests, {:.3} fsyncs/op ({} WAL, {} Syrup), {:.1} ops/group commit, {:.1} ops/WAL fsync, {:.3} forwards/op, {} busy, CPU {:.1} µs/op ({}){}",
            n.requests,
            n.fsyncs_per_op,
            n.wal_fsyncs,
            n.syrup_fsyncs,
            n.ops_per_group_commit,
            n.ops_per_wal_fsync,
            n.forwards_per_op,
            n.busy_replies,
            n.cpu_us_per_op,
            if cpu.is_empty() { "no per-shard CPU metric".to_string() } else { cpu.join(", ") },
            if n.engine_figures_fresh { "" } else { " [engine figures may lag]" }
        );
        println!("      (node counters cover warm-up and measured window: everything after the pre-load)");
    }
    for g in &tally.gave_up {
        println!("warning: {g}");
    }
    if let Some(path) = &plan.args.json {
        let doc = json!({
            "label": plan.args.label,
            "date": utc_now(),
            "commit": git_commit(),
            "config": plan.args,
            "mode": if plan.args.rate.is_some() { "open" } else { "closed" },
            "elapsed_s": secs,
            "ops": ops_json,
            "total": {
                "count": all.len(),
                "ops_per_s": all.len() as f64 / secs,
                "bytes_per_s": all_bytes as f64 / secs,
                "p50_us": all.value_at_quantile(0.5),
                "p90_us": all.value_at_quantile(0.9),
                "p99_us": all.value_at_quantile(0.99),
                "p999_us": all.value_at_quantile(0.999),
                "max_us": all.max(),
                "errors_total": all_errors,
            },
            "send_lag": plan.args.rate.map(|_| percentiles(&tally.lag)),
            "generator_cpu_s": window.generator_cpu_s,
            "generator_cpu_share": generator_cpu_share,
            "generator": {
                "path": load_path,
                "cpu_s": window.generator_cpu_s,
                "wall_s": window.wall_s,
                "cpu_share": generator_cpu_share,
                "cpu_us_per_op": generator_cpu_us_per_op,
                "threads": plan.args.threads,
                "routing": lean_plan.map(|l| l.routing_note.clone()),
                "covers": "the whole process's CPU (getrusage: every thread, user + system) over the measured window \
                           only; the main thread sleeps through it. Per op: CPU per second / requests per second",
            },
            "node_window": window.node,
            "rename_targets": plan.rename_placement.map(|p| json!({
                "across_shards": true,
                "shard_count": p.shard_count,
                "partitions": p.partitions,
                "rule": "each rename's target name lies on another shard than its source (placement function of the node's topology)",
            })),
            "gave_up": tally.gave_up,
            "node": node,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    if !tally.gave_up.is_empty() {
        bail!("{} worker(s) gave up on errors", tally.gave_up.len());
    }
    Ok(())
}
