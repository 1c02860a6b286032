//! `candyboxd`, the Candybox node.
//!
//! The node (protocol, shards, coordination) comes with the node issue. Until then this binary runs
//! an **engine demo**: it opens one partition engine on real files in `--data-dir`, stores and
//! reads back a few Candies (inline, chunked, ranged, copied, renamed), lists them, prints the
//! engine's counters, and exits. Run it twice: the second run recovers what the first stored.

use std::{path::PathBuf, rc::Rc};

use anyhow::Context;
use candybox_core::{
    engine::{ByteRange, Engine, EngineConfig, ListOptions, PutOptions, SliceBody},
    runtime::{block_on, SystemClock},
    storage::uring::UringStorage,
    types::BoxUid,
};
use clap::Parser;

/// Candybox node (engine demo until the node lands).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory for partitions and Syrups; created if missing.
    #[arg(long, env = "CANDYBOX_DATA_DIR", default_value = "candybox-data")]
    data_dir: PathBuf,
    /// Bytes of the large demo Candy.
    #[arg(long, default_value_t = 3 * 1024 * 1024)]
    demo_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = EngineConfig::new(args.data_dir.join("partitions/demo/0"), args.data_dir.join("syrups"), BoxUid(1), 0);
    let (engine, report) = Engine::open(UringStorage::new(), Rc::new(SystemClock), config)
        .await
        .with_context(|| format!("open the demo partition in {}", args.data_dir.display()))?;
    println!(
        "candyboxd engine demo — data dir {} ({}; {} WAL records replayed)",
        args.data_dir.display(),
        if report.created { "new" } else { "recovered" },
        report.wal_records
    );
    let before = engine.list(&ListOptions::default()).await.context("list existing candies")?;
    println!("candies already stored: {}", before.entries.len());

    let big: Vec<u8> = (0..args.demo_bytes).map(|i| (i % 251) as u8).collect();
    let run = report.wal_records;
    let hello = format!("hello/{run}");
    let blob = format!("blob/{run}");
    let r = engine
        .put(
            hello.as_bytes(),
            PutOptions { content_type: "text/plain".into(), ..Default::default() },
            SliceBody::new(b"hello, candybox".to_vec()),
        )
        .await
        .context("put the small candy")?;
    println!("put {hello}: {} bytes inline, checksum {:08x}, hlc {}", r.size, r.checksum, r.hlc);
    let r = engine
        .put(
            blob.as_bytes(),
            PutOptions { size: Some(big.len() as u64), ..Default::default() },
            SliceBody::new(big.clone()),
        )
        .await
        .context("put the large candy")?;
    println!("put {blob}: {} bytes in checksummed chunks, hlc {}", r.size, r.hlc);
    let g = engine.get(blob.as_bytes(), Some(ByteRange::Suffix(16))).await.context("range get")?;
    let tail = g.body.read_to_vec().context("read the range")?;
    anyhow::ensure!(tail == big[big.len() - 16..], "range read returned wrong bytes");
    println!("get {blob} bytes={}-{}: verified", g.first, g.first + g.len - 1);
    engine.copy(blob.as_bytes(), format!("{blob}.copy").as_bytes()).await.context("copy")?;
    engine.rename(format!("{blob}.copy").as_bytes(), format!("{blob}.renamed").as_bytes()).await.context("rename")?;
    let whole = engine
        .get(format!("{blob}.renamed").as_bytes(), None)
        .await
        .context("get the renamed candy")?
        .body
        .read_to_vec()?;
    anyhow::ensure!(whole == big, "renamed candy differs");
    println!("copy + rename of {blob}: no bytes moved, content verified");
    let page = engine.list(&ListOptions { limit: 20, ..Default::default() }).await.context("list")?;
    for e in &page.entries {
        println!("  {:<28} {:>10} bytes  {}", String::from_utf8_lossy(&e.key), e.size, e.hlc);
    }
    let s = engine.stats();
    println!(
        "commits {} (ops {}), WAL fdatasyncs {}, Syrup fdatasyncs {}",
        s.commit_batches, s.commit_ops, s.wal_syncs, s.syrup_syncs
    );
    engine.close().await;
    Ok(())
}
