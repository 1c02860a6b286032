//! A first load generator for a running node (the full `candybox-bench` comes with the
//! benchmark issue): closed loop, N clients of the real client library on one monoio executor,
//! each with one request in flight, doing durable puts or gets of one object size for a fixed
//! time; hdrhistogram percentiles.
//!
//! Invariants:
//! - Nothing is relaxed: puts use the node's default durability (acknowledged after fdatasync).
//! - Every loop is bounded by the run's duration; a failed request ends the run with its error.
//! - A get's latency includes receiving every byte of the body.

use std::{
    cell::RefCell,
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use candybox_wire::client::{ByteRange, ClientConfig, ClientError, MonoioClient, PutOptions};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// Durable puts of distinct keys.
    Put,
    /// Gets of keys stored before the timed run.
    Get,
}

/// Closed-loop load against a running candyboxd.
#[derive(Debug, Parser)]
struct Args {
    /// The node's main port.
    #[arg(long, default_value = "127.0.0.1:7420")]
    server: String,
    /// Operation to time.
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Concurrent clients (each its own connections, one request in flight).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Object size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Seconds of the timed run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Keys stored before a get run.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// Send every request to the main port (no shard-aware routing).
    #[arg(long)]
    no_routing: bool,
    /// The Box to use (created when missing).
    #[arg(long, default_value = "bench")]
    box_name: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .context("build the monoio runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ClientConfig::new(args.server.clone());
    config.routing = !args.no_routing;
    let admin = MonoioClient::connect(config.clone()).await.context("connect")?;
    match admin.create_box(&args.box_name, None).await {
        Ok(_) | Err(ClientError::BoxExists { .. }) => {}
        Err(e) => bail!("create box {}: {e}", args.box_name),
    }
    let body = Bytes::from(vec![0x5Au8; args.size]);
    if args.op == Op::Get {
        for i in 0..args.keys {
            let key = format!("get/{i:08}");
            admin.put_bytes(&args.box_name, key.as_bytes(), &PutOptions::default(), body.clone()).await?;
        }
    }
    let histogram = Rc::new(RefCell::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let client = MonoioClient::connect(config.clone()).await.context("connect a load client")?;
        let (histogram, body, box_name, op, keys) =
            (histogram.clone(), body.clone(), args.box_name.clone(), args.op, args.keys);
        tasks.push(monoio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                let started = Instant::now();
                match op {
                    Op::Put => {
                        let key = format!("put/{c:04}/{i:010}");
                        client.put_bytes(&box_name, key.as_bytes(), &PutOptions::default(), body.clone()).await?;
                    }
                    Op::Get => {
                        let key = format!("get/{:08}", (i as usize * 7919 + c * 104_729) % keys);
                        client.get_to_vec(&box_name, key.as_bytes(), ByteRange::Whole).await?;
                    }
                }
                let us = started.elapsed().as_micros().max(1) as u64;
                histogram.borrow_mut().saturating_record(us);
                i += 1;
            }
            Ok::<u64, ClientError>(i)
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.context("a load client failed")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let h = histogram.borrow();
    println!(
        "{:?} {} B x {} connections (routing {}): {:.0} ops/s, {:.1} MB/s, p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        args.op,
        args.size,
        args.connections,
        if args.no_routing { "off" } else { "on" },
        total as f64 / secs,
        total as f64 * args.size as f64 / secs / 1e6,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
    Ok(())
}
