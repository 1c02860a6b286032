//! `candyboxd`, the Candybox node: one pinned monoio (io_uring) executor per shard, each owning
//! its partitions' engines; a control thread for coordination; an HTTP thread for health and
//! metrics. See docs/architecture.md ("The node") and docs/operations.md.
//!
//! Start-up order: configuration (exit 2 on a bad key or value) → signal handlers → data
//! directory and coordination → every socket bound → shards start and recover every partition
//! they own → one ready line on stdout:
//! `{"ready":true,"listen":"IP:PORT","http":"IP:PORT","shard_ports":[P0,P1,...]}`.
//! SIGTERM/SIGINT: stop accepting, drain in-flight requests, flush and close engines, exit 0.

/// Every allocation of the node: mimalloc's per-thread heaps suit thread-per-core shards, which
/// allocate and free on their own thread (glibc's arenas spent ~20 % of a pipelined get in
/// malloc, free and chunk consolidation).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod command;
mod config;
mod connection;
mod convert;
mod coord;
mod disk;
mod frame_memory;
mod http;
mod limits;
mod listener;
mod maintenance;
mod metrics;
mod placement;
mod reply;
mod shard;
mod splice;

use std::{
    io::Write as _,
    process::ExitCode,
    rc::Rc,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context};
use candybox_core::{
    log::{
        recover::{LogDamage, Replay},
        CommitLog,
    },
    storage::uring::UringStorage,
    types::BoxUid,
};

use crate::{
    config::{Cli, Config},
    metrics::NodeMetrics,
    reply::Topology,
    shard::{NodeShared, Shard, ShardJob},
};

fn main() -> ExitCode {
    let cli = Cli::parse_with_defaults();
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("candyboxd: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "candyboxd stopped");
            eprintln!("candyboxd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct ShardStart {
    id: u16,
    shared: Arc<NodeShared>,
    main: std::net::TcpListener,
    own: std::net::TcpListener,
    jobs: async_channel::Receiver<ShardJob>,
    stop: async_channel::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<ShardReady, String>>,
    core: Option<core_affinity::CoreId>,
    /// This shard's commit log: its first segment number and the stride between its segments.
    log_first: u64,
    log_stride: u64,
    /// What the logs of earlier runs hold for the partitions this shard owns now.
    replays: std::collections::HashMap<(BoxUid, u16), Replay>,
    /// Damage found in those logs: every partition that may need the lost records is refused.
    damage: Vec<LogDamage>,
    /// Spin-before-park window (zero: off).
    spin: Duration,
}

/// What a shard reports once it has recovered.
struct ShardReady {
    /// Partitions opened.
    opened: usize,
    /// Partitions whose records from earlier runs are not flushed yet (not opened, or their
    /// flush failed): the old log segments are kept for them.
    unretired: usize,
}

/// What start-up recovery read from the shard commit logs of earlier runs.
struct LogRecovery {
    /// Each shard's share, by the partition placement of this run.
    per_shard: Vec<std::collections::HashMap<(BoxUid, u16), Replay>>,
    /// The segment files read: deleted once every partition has flushed their records.
    segments: Vec<std::path::PathBuf>,
    /// The directories they are in.
    dirs: Vec<std::path::PathBuf>,
    /// Damage found in them.
    damage: Vec<LogDamage>,
    /// The first segment number of this run.
    run_base: u64,
}

/// Reads every shard commit log under the data directory (whatever the shard count was when they
/// were written), drops the records of deleted Box incarnations, and gives each shard the records
/// of the partitions it owns now.
fn recover_logs(config: &Config, coord: &coord::CoordClient, shard_count: u16) -> anyhow::Result<LogRecovery> {
    let root = config.log_dir();
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .context("build the io_uring executor for commit log recovery")?;
    let (dirs, mut found) = runtime
        .block_on(async {
            let storage = UringStorage::new();
            let dirs = candybox_core::log::recover::log_dirs(&storage, &root).await?;
            let found = candybox_core::log::recover::recover(&storage, &dirs).await?;
            // No shard runs yet: the segments prepared by the last run go, also in the
            // directories of shards this start no longer has.
            candybox_core::log::recover::discard_prepared(&storage, &dirs).await?;
            Ok::<_, candybox_core::error::Error>((dirs, found))
        })
        .with_context(|| format!("read the commit logs in {}", root.display()))?;
    drop(runtime);
    let boxes = monoio_free_block_on(coord.list_boxes()).context("list the Boxes for commit log recovery")?;
    let live: std::collections::HashMap<BoxUid, (String, u16)> =
        boxes.into_iter().map(|(name, meta)| (meta.box_uid, (name, meta.partitions))).collect();
    let dropped = found.retain(|uid, p| live.get(&uid).is_some_and(|(_, n)| p < *n));
    let mut per_shard = vec![std::collections::HashMap::new(); usize::from(shard_count)];
    for (uid, p, _) in found.untaken() {
        let Some((name, _)) = live.get(&uid) else { continue };
        let shard = placement::shard_for(name, p, shard_count);
        if let Some(map) = per_shard.get_mut(usize::from(shard)) {
            map.insert((uid, p), found.take(uid, p));
        }
    }
    for d in &found.damage {
        tracing::error!(file = %d.path.display(), at = %d.at, error = %d.error, "commit log damaged: the partitions that may need these records are quarantined when they open");
    }
    if !found.segments.is_empty() {
        tracing::info!(
            segments = found.segments.len(),
            records = found.records,
            partitions = per_shard.iter().map(|m| m.len()).sum::<usize>(),
            deleted_box_partitions = dropped,
            torn_tails = found.torn_tails.len(),
            "commit logs of the last run read"
        );
    }
    Ok(LogRecovery { per_shard, segments: found.segments, dirs, damage: found.damage, run_base: found.next_segment })
}

/// Deletes the segments of earlier runs once every partition has flushed their records.
fn retire_segments(recovery: &LogRecovery) -> anyhow::Result<()> {
    for path in &recovery.segments {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!(e).context(format!("delete {}", path.display()))),
        }
    }
    for dir in &recovery.dirs {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("sync the directory {}", dir.display()))?;
    }
    Ok(())
}

/// The spin-before-park window: `spin_before_park_us`, but zero (off) when the shards outnumber
/// the cores the node may run on: a spinning shard would then take the core from a sibling that
/// has work (two shards on one core ran at 0.77x of one with spinning on).
fn spin_window(config: &Config, shard_count: u16) -> Duration {
    let window = Duration::from_micros(config.spin_before_park_us);
    // The CPUs of this thread's affinity mask (what `taskset` or a cgroup leaves the node).
    let cores = core_affinity::get_core_ids().map_or(0, |c| c.len());
    if !window.is_zero() && cores < usize::from(shard_count) {
        tracing::info!(shards = shard_count, cores, "spin-before-park is off: the shards outnumber the cores");
        return Duration::ZERO;
    }
    window
}

fn run(config: Config) -> anyhow::Result<()> {
    // Registered first, so a signal during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .context("install signal handlers")?;
    std::fs::create_dir_all(config.syrup_dir())
        .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
    // One node process per data directory, whatever the coordination store: two would write the
    // same partitions. Held until the process exits.
    let _data_lock = lock_data_dir(&config.data_dir)?;
    // Free space first: on a full disk the ballast is released now, so that the coordination
    // store and recovery can write their few bytes.
    let disk_config = disk::DiskConfig {
        data_dir: config.data_dir.clone(),
        free_min_bytes: config.disk_free_min_bytes,
        ballast_bytes: config.disk_ballast_bytes,
    };
    let disk_state = Arc::new(disk::DiskState::default());
    disk::check(&disk_config, &disk_state, true);
    let store: Box<dyn candybox_core::coord::Coordination> = match config.coordination.as_str() {
        "memory" => {
            tracing::warn!("coordination = \"memory\": Box descriptors are not durable (tests and experiments only)");
            Box::new(coord::MemoryCoordination::default())
        }
        "zookeeper" => {
            let zk = candybox_shards::zk::ZkConfig {
                connect: config.zookeeper_connect.clone(),
                chroot: config.zookeeper_chroot.clone(),
                session_timeout: Duration::from_millis(config.zookeeper_session_timeout_ms),
                call_timeout: Duration::from_millis(crate::limits::COORD_CALL_TIMEOUT_MS),
            };
            Box::new(candybox_shards::zk::ZooKeeperCoordination::connect(zk).with_context(|| {
                format!(
                    "connect to ZooKeeper at {} (chroot {}); is it running? (deploy/zookeeper-local.sh start)",
                    config.zookeeper_connect, config.zookeeper_chroot
                )
            })?)
        }
        _ => {
            let dir = config.data_dir.join("coord");
            Box::new(
                candybox_core::coord::embedded::EmbeddedCoordination::open(&dir)
                    .with_context(|| format!("open the embedded coordination store in {}", dir.display()))?,
            )
        }
    };
    let (coord_client, coord_thread) = coord::start(store).context("start the control thread")?;

    let shard_count = config.shard_count();
    let bind_within = Duration::from_millis(crate::limits::BIND_RETRY_MS);
    let bound = listener::bind_retrying(bind_within, || {
        listener::bind(config.listen, |main| config.port_base_resolved(main), shard_count)
    })?;
    let advertise = config.advertise.clone().unwrap_or_else(|| {
        let ip = if config.listen.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            config.listen.ip()
        };
        std::net::SocketAddr::new(ip, bound.main_port).to_string()
    });
    // Registered before the shards recover, so that Boxes created from now on may be placed here
    // and other nodes can name this one in their not-owner replies.
    let member = candybox_core::coord::MemberEntry {
        node: config.node_id,
        session: 0,
        addr: advertise.clone(),
        shard_ports: bound.ports.clone(),
    };
    register(&coord_client, member, &config)?;
    let http_server = listener::bind_retrying(bind_within, || http::bind(config.http)).context("bind the http port")?;
    let http_port = http::port(&http_server);
    let metrics = Arc::new(NodeMetrics::new(
        shard_count,
        disk_state.clone(),
        frame_memory::FrameMemory::new(config.frame_memory_bytes_max),
    ));
    disk::watch(disk_config, disk_state).context("start the disk watcher")?;
    let _ = metrics.session.set(coord_client.watch_handle());
    let http_thread = http::serve(http_server.clone(), metrics.clone()).context("start the http thread")?;

    let queues: Vec<_> =
        (0..shard_count).map(|_| async_channel::bounded::<ShardJob>(config.shard_queue_max as usize)).collect();
    let shared = Arc::new(NodeShared {
        topology: Topology { node_id: config.node_id, ports: bound.ports.clone(), main_port: bound.main_port },
        config: config.clone(),
        metrics: metrics.clone(),
        coord: coord_client.clone(),
        peers: queues.iter().map(|(tx, _)| tx.clone()).collect(),
        connections: std::sync::atomic::AtomicU32::new(0),
    });
    let mut recovery = recover_logs(&config, &coord_client, shard_count)?;
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let cores = if config.pin_cores { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
    let spin = spin_window(&config, shard_count);
    let started = Instant::now();
    let mut threads = Vec::new();
    for (((id, main), own), (_, jobs)) in (0..shard_count).zip(bound.main).zip(bound.own).zip(queues) {
        let start = ShardStart {
            id,
            shared: shared.clone(),
            main,
            own,
            jobs,
            stop: stop_rx.clone(),
            ready: ready_tx.clone(),
            core: if cores.is_empty() { None } else { cores.get(usize::from(id) % cores.len()).copied() },
            spin,
            log_first: recovery.run_base + u64::from(id),
            log_stride: u64::from(shard_count),
            replays: recovery.per_shard.get_mut(usize::from(id)).map(std::mem::take).unwrap_or_default(),
            damage: recovery.damage.clone(),
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("candybox-shard-{id}"))
                .spawn(move || shard_thread(start))
                .context("spawn a shard thread")?,
        );
    }
    drop(ready_tx);
    let mut failure = None;
    let mut partitions = 0;
    let mut unretired = 0;
    for _ in 0..shard_count {
        match ready_rx.recv() {
            Ok(Ok(r)) => {
                partitions += r.opened;
                unretired += r.unretired;
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a shard thread stopped during start-up".to_string()),
        }
        if failure.is_some() {
            break;
        }
    }
    if let Some(e) = failure {
        stop_tx.close();
        for t in threads {
            let _ = t.join();
        }
        coord_client.close();
        return Err(anyhow!("start-up recovery failed: {e}"));
    }
    if unretired == 0 {
        // Every record of the earlier runs is in a table now.
        retire_segments(&recovery).context("delete the commit log segments of the last run")?;
    } else if !recovery.segments.is_empty() {
        tracing::warn!(
            partitions = unretired,
            segments = recovery.segments.len(),
            "commit log segments of the last run are kept: some partitions could not flush their records yet (see the errors above); the next start reads them again"
        );
    }
    metrics.ready.store(true, Relaxed);
    tracing::info!(
        shards = shard_count,
        partitions,
        recovery_ms = started.elapsed().as_millis() as u64,
        main_port = bound.main_port,
        "candyboxd ready"
    );
    let ready_line = format!(
        "{{\"ready\":true,\"listen\":{},\"http\":{},\"shard_ports\":{}}}",
        serde_json::Value::from(std::net::SocketAddr::new(config.listen.ip(), bound.main_port).to_string()),
        serde_json::Value::from(std::net::SocketAddr::new(config.http.ip(), http_port).to_string()),
        serde_json::Value::from(bound.ports.clone()),
    );
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{ready_line}").context("print the ready line")?;
    stdout.flush().context("print the ready line")?;
    drop(stdout);

    let signal = signals.forever().next();
    tracing::info!(?signal, "shutting down: draining in-flight requests");
    metrics.ready.store(false, Relaxed);
    stop_tx.close();
    let mut panicked = false;
    for t in threads {
        panicked |= t.join().is_err();
    }
    drop(shared);
    // Tasks left on the shards' executors may still hold clients: close the queue explicitly.
    coord_client.close();
    let _ = coord_thread.join();
    http_server.unblock();
    let _ = http_thread.join();
    if panicked {
        return Err(anyhow!("a shard thread panicked"));
    }
    tracing::info!("candyboxd stopped cleanly");
    Ok(())
}

/// Registers this node's member entry. An entry of another session is waited out for up to the
/// session timeout (plus a margin): it may be a process of this node that died without this data
/// directory remembering it; if it stays, another live process uses this node id.
///
/// # Errors
/// When the entry stays held, or the store fails.
fn register(
    coord: &coord::CoordClient,
    member: candybox_core::coord::MemberEntry,
    config: &Config,
) -> anyhow::Result<()> {
    let session_file = config.data_dir.join("coord-session");
    let deadline = Instant::now() + Duration::from_millis(config.zookeeper_session_timeout_ms + 2_000);
    let mut warned = false;
    loop {
        match monoio_free_block_on(coord.register(member.clone(), session_file.clone())) {
            Ok(()) => return Ok(()),
            Err(candybox_core::coord::CoordError::NodeExists(what)) if Instant::now() < deadline => {
                if !warned {
                    tracing::warn!(node = member.node, entry = %what, "node id registered by another session; waiting for it to expire");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => {
                return Err(anyhow!(e)).with_context(|| {
                    format!(
                        "register node {} ({}): is another node running with node_id {}?",
                        member.node, member.addr, member.node
                    )
                })
            }
        }
    }
}

/// Takes the exclusive flock of `<data_dir>/LOCK` without waiting.
///
/// # Errors
/// When another process holds it (naming the file), or the file cannot be opened.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock takes a file descriptor and flags and touches no memory; the descriptor is
    // valid for the call because `file` owns it.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(anyhow!(
                "data directory {} is in use by another candyboxd ({} is locked)",
                dir.display(),
                path.display()
            ));
        }
        return Err(anyhow!(e).context(format!("flock {}", path.display())));
    }
    Ok(file)
}

/// Runs one future to completion on this (non-shard) thread: the control thread's calls answer
/// through channels that any executor can wait on.
fn monoio_free_block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

fn shard_thread(start: ShardStart) {
    if let Some(core) = start.core {
        if !core_affinity::set_for_current(core) {
            tracing::warn!(shard = start.id, core = core.id, "could not pin the shard to its core");
        }
    }
    // Completions are handed to the shard when it next enters the kernel (it submits on every
    // turn of its loop) instead of by an inter-processor interrupt per completion: on loopback
    // each request's arrival otherwise costs an IPI and a task-work run on the shard's core.
    // Kernels without these flags (before 6.0) get the plain ring.
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun().setup_taskrun_flag().setup_single_issuer();
    let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .with_entries(1024)
        .uring_builder(ring)
        .build()
        .or_else(|e| {
            tracing::info!(shard = start.id, error = %e, "io_uring setup flags refused; using a plain ring");
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().with_entries(1024).build()
        });
    let mut runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            let _ = start.ready.send(Err(format!("shard {}: build the io_uring executor: {e}", start.id)));
            return;
        }
    };
    // SAFETY: gettid has no preconditions; it returns the calling thread's id.
    let tid = unsafe { libc::gettid() };
    if let Some(m) = start.shared.metrics.shards.get(usize::from(start.id)) {
        m.thread_id.store(u64::try_from(tid).unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }
    runtime.block_on(run_shard(start));
}

async fn run_shard(start: ShardStart) {
    let ShardStart { id, shared, main, own, jobs, stop, ready, spin, log_first, log_stride, replays, damage, .. } =
        start;
    let log_dir = shared.config.log_dir().join(candybox_core::log::format::shard_dir_name(id));
    let mut log_config = shared.config.log_config();
    let disk = shared.metrics.disk.clone();
    log_config.free_bytes = Some(candybox_core::log::FreeBytes(Arc::new(move || {
        disk.free_bytes.load(std::sync::atomic::Ordering::Relaxed)
    })));
    let base = log_first - u64::from(id);
    let log = match CommitLog::create(UringStorage::new(), &log_dir, id, base, log_first, log_stride, log_config).await
    {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: start the commit log in {}: {e}", log_dir.display())));
            return;
        }
    };
    let shard = Shard::new(id, shared, stop.clone(), log, replays, damage);
    // Other shards may forward work during recovery (they are recovering too): serve the queue.
    drop(monoio::spawn(shard.clone().serve_queue(jobs)));
    let opened = match shard.recover().await {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: {e}")));
            return;
        }
    };
    let unretired = shard.retire_replayed().await;
    let listeners =
        monoio::net::TcpListener::from_std(main).and_then(|m| Ok((m, monoio::net::TcpListener::from_std(own)?)));
    let (main, own) = match listeners {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(format!("shard {id}: register listeners: {e}")));
            return;
        }
    };
    drop(monoio::spawn(listener::accept_loop(shard.clone(), main)));
    drop(monoio::spawn(listener::accept_loop(shard.clone(), own)));
    drop(monoio::spawn(maintenance::run(shard.clone())));
    drop(monoio::spawn(shard.clone().poll_while_busy(spin)));
    drop(monoio::spawn(connection::watchdog(shard.clone())));
    let _ = ready.send(Ok(ShardReady { opened, unretired }));
    // Closed (never sent on) by the main thread at shutdown.
    let _ = stop.recv().await;
    drain(&shard).await;
}

async fn drain(shard: &Rc<Shard>) {
    shard.stopping.set(true);
    // Connections stop reading; each finishes what is in flight and closes.
    shard.connections.close_reads();
    let deadline = Instant::now() + Duration::from_millis(crate::limits::SHUTDOWN_DRAIN_MS);
    while shard.in_flight.get() > 0 && Instant::now() < deadline {
        candybox_core::runtime::sleep(Duration::from_millis(2)).await;
    }
    if shard.in_flight.get() > 0 {
        tracing::warn!(shard = shard.id, in_flight = shard.in_flight.get(), "drain timed out; closing anyway");
    }
    shard.close_all().await;
    maintenance::refresh_gauges(shard);
}
