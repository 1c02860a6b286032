//! `candybox-s3`: the S3 gateway of Candybox.
//!
//! Start-up: settings (flags > environment > `--config` file > defaults) → users file → the
//! node reached (retrying for `node_wait_s`) → the reserved Box opened → S3 and HTTP ports
//! bound → one ready line on stdout:
//! `{"ready":true,"listen":"IP:PORT","http":"IP:PORT","node":"HOST:PORT"}`.
//!
//! Signals: SIGHUP reloads the users file (a bad file keeps the users loaded, and says why);
//! SIGTERM or SIGINT stops accepting, lets requests in flight finish for `shutdown_grace_s`,
//! and exits 0.

mod acl;
mod body;
mod buckets;
mod conditions;
mod config;
mod copy;
mod cors;
mod errors;
mod front;
mod gateway;
mod host;
mod ids;
mod lifecycle;
mod meta;
mod metrics;
mod multipart;
mod objlock;
mod overlay;
mod plain;
mod policy;
mod sse;
mod tags;
mod users;
mod versions;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use candybox_wire::client::{ClientConfig, TokioClient};
use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::service::S3ServiceBuilder;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, Layer};
use crate::metrics::Metrics;
use crate::users::UserStore;

/// The S3 gateway of Candybox: serves the S3 API over a node.
#[derive(Debug, Parser)]
#[command(name = "candybox-s3", version, about, long_about = None)]
struct Args {
    /// A TOML file of settings (every key also a flag and a CANDYBOX_S3_* variable; see
    /// deploy/candybox-s3.example.toml).
    #[arg(long, env = "CANDYBOX_S3_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    layer: Layer,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(args.layer, args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("candybox-s3: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("candybox-s3: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("candybox-s3: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<TokioClient> {
    let deadline = Instant::now() + Duration::from_secs(config.node_wait_s);
    loop {
        match TokioClient::connect(ClientConfig::new(config.node.clone())).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::info!(node = %config.node, error = %e, "waiting for the node");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("reach the node at {}", config.node)),
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let users = Arc::new(UserStore::load(&config.users)?);
    let keys = if config.sse_keys_file.as_os_str().is_empty() {
        sse::KeyRing::default()
    } else {
        sse::KeyRing::load(&config.sse_keys_file)?
    };
    if !keys.is_empty() {
        tracing::info!(keys = keys.len(), file = %config.sse_keys_file.display(), "SSE-S3 and SSE-KMS keys loaded");
    }
    let metrics = Arc::new(Metrics::default());
    let http = tiny_http::Server::http(config.http_listen)
        .map_err(|e| anyhow::anyhow!("bind the HTTP port {}: {e}", config.http_listen))?;
    let http_addr = http.server_addr().to_ip().context("the HTTP port's address")?;
    let for_http = Arc::clone(&metrics);
    std::thread::Builder::new().name("http".into()).spawn(move || serve_http(&http, &for_http))?;

    let client = connect(&config).await?;
    let buckets = buckets::Buckets::open(client.clone(), Duration::from_millis(config.bucket_cache_ttl_ms))
        .await
        .context("open the gateway's reserved Box")?;
    let defaults = match config.new_bucket_defaults.as_str() {
        "open" => {
            buckets::NewBucketDefaults { ownership: buckets::OBJECT_WRITER.to_owned(), public_access_block: None }
        }
        _ => buckets::NewBucketDefaults {
            ownership: buckets::BUCKET_OWNER_ENFORCED.to_owned(),
            public_access_block: Some(buckets::PublicAccessBlock::ALL),
        },
    };
    let buckets = Arc::new(buckets);
    tokio::spawn(lifecycle::worker(
        client.clone(),
        Arc::clone(&buckets),
        Duration::from_secs(config.lifecycle_day_s),
        Duration::from_secs(config.lifecycle_interval_s),
    ));
    let gateway = gateway::Gateway::new(
        client,
        Arc::clone(&buckets),
        Arc::clone(&users),
        config.region.clone(),
        defaults,
        Arc::new(keys),
    );
    let mut builder = S3ServiceBuilder::new(gateway);
    builder.set_auth(users::Auth(Arc::clone(&users)));
    builder.set_access(front::Access);
    builder.set_validation(buckets::BucketNames);
    let domains = host::Domains::parse(&config.domains);
    builder.set_host(domains.clone());
    let front = front::Front::new(builder.build(), Arc::clone(&metrics), buckets, domains);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("bind the S3 port {}", config.listen))?;
    let listen = listener.local_addr()?;
    metrics.ready.store(true, Ordering::Relaxed);
    tracing::info!(%listen, http = %http_addr, node = %config.node, users = users.snapshot().len(), "candybox-s3 ready");
    println!(
        "{}",
        serde_json::json!({"ready": true, "listen": listen.to_string(), "http": http_addr.to_string(), "node": config.node})
    );

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.max_header_size(config.header_bytes_max).keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: wait, and keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = http1.serve_connection(TokioIo::new(stream), front.for_peer(peer));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = hup.recv() => match users.reload() {
                Ok(n) => tracing::info!(users = n, "users file reloaded"),
                Err(e) => tracing::error!(error = %format!("{e:#}"), "users file not reloaded; the users loaded before stay"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    metrics.ready.store(false, Ordering::Relaxed);
    drop(listener);
    tracing::info!("shutting down: waiting for requests in flight");
    let _ = TokioExecutor::new();
    match tokio::time::timeout(Duration::from_secs(config.shutdown_grace_s), graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown grace period over; closing the connections left"),
    }
    Ok(())
}

/// `/healthz` (alive), `/readyz` (serving), `/metrics` (Prometheus text).
fn serve_http(server: &tiny_http::Server, metrics: &Metrics) {
    for request in server.incoming_requests() {
        let (status, body) = match request.url() {
            "/healthz" => (200, "ok\n".to_owned()),
            "/readyz" if metrics.ready.load(Ordering::Relaxed) => (200, "ready\n".to_owned()),
            "/readyz" => (503, "not ready\n".to_owned()),
            "/metrics" => (200, metrics.render()),
            _ => (404, "not found: try /metrics, /healthz or /readyz\n".to_owned()),
        };
        let _ = request.respond(tiny_http::Response::from_string(body).with_status_code(status));
    }
}
