//! `s3-bench`: a load generator of S3 servers (the Candybox gateway, and peers such as s3s-fs)
//! for one shape at a time: PUT or GET of objects of one size, over `--connections` keep-alive
//! HTTP/1.1 connections, each carrying one request at a time (closed loop), for `--seconds`.
//!
//! Invariants:
//! - Requests are SigV4-signed in the header with `UNSIGNED-PAYLOAD` (the generator does not
//!   hash bodies; both servers verify signatures the same way), and every byte of a GET is read.
//! - Every loop is bounded by the run's end time; a worker that meets 100 errors in a row stops
//!   and the report says so.
//! - The report (one JSON line) carries the generator's own CPU seconds per request next to the
//!   throughput, so a figure whose generator is as busy as the server reads as what it is.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

/// Load an S3 server with PUTs or GETs of one object size.
#[derive(Debug, Parser)]
#[command(name = "s3-bench")]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:7480")]
    endpoint: String,
    /// Access key.
    #[arg(long)]
    access_key: String,
    /// Secret key.
    #[arg(long)]
    secret_key: String,
    /// Region the signature names.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The bucket (created when missing).
    #[arg(long, default_value = "s3bench")]
    bucket: String,
    /// PUT or GET.
    #[arg(long, value_enum)]
    op: Op,
    /// Object size in bytes.
    #[arg(long)]
    size: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct keys (GET reads objects put beforehand).
    #[arg(long, default_value_t = 64)]
    objects: usize,
    /// A slow reader: sleep this long after each piece of a GET's body (0: read at once).
    #[arg(long, default_value_t = 0)]
    read_delay_ms: u64,
    /// Stop after this many requests per connection (0: run for --seconds).
    #[arg(long, default_value_t = 0)]
    requests_per_connection: u64,
    /// Skip the GET pre-load (the objects exist already).
    #[arg(long)]
    no_preload: bool,
    /// PUTs ask for SSE-S3 (`x-amz-server-side-encryption: AES256`); GETs of such objects are
    /// decrypted by the server.
    #[arg(long)]
    sse_s3: bool,
}

const ERRORS_IN_A_ROW_MAX: u32 = 100;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Whether a request carries `x-amz-server-side-encryption: AES256` (object PUTs under
/// `--sse-s3`).
fn sse_header(args: &Args, method: &str, path: &str) -> bool {
    args.sse_s3 && method == "PUT" && path.matches('/').count() >= 2
}

/// The SigV4 `Authorization` and `x-amz-date` of a request (header auth, unsigned payload).
fn sign(args: &Args, method: &str, path: &str, host: &str, now: SystemTime) -> (String, String) {
    let t = time::OffsetDateTime::from(now);
    let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
    let (sse_line, sse_name) = if sse_header(args, method, path) {
        ("x-amz-server-side-encryption:AES256\n", ";x-amz-server-side-encryption")
    } else {
        ("", "")
    };
    let signed = format!("host;x-amz-content-sha256;x-amz-date{sse_name}");
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:{amz_date}\n{sse_line}\n{signed}\nUNSIGNED-PAYLOAD"
    );
    let scope = format!("{date}/{}/s3/aws4_request", args.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{}", args.secret_key).as_bytes(), date.as_bytes());
    for part in [args.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        args.access_key
    );
    (auth, amz_date)
}

type Sender<B> = http1::SendRequest<B>;

async fn connect<B>(endpoint: &str) -> anyhow::Result<Sender<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(endpoint).await.with_context(|| format!("connect {endpoint}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request<B>(args: &Args, method: &str, path: &str, body: B, len: usize) -> anyhow::Result<http::Request<B>> {
    let (auth, amz_date) = sign(args, method, path, &args.endpoint, SystemTime::now());
    let mut builder = http::Request::builder();
    if sse_header(args, method, path) {
        builder = builder.header("x-amz-server-side-encryption", "AES256");
    }
    Ok(builder
        .method(method)
        .uri(path)
        .header("host", &args.endpoint)
        .header("x-amz-date", amz_date)
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("authorization", auth)
        .header("content-length", len)
        .body(body)?)
}

async fn put_once(args: &Args, s: &mut Sender<Full<Bytes>>, key: &str, body: &Bytes) -> anyhow::Result<()> {
    let path = format!("/{}/{key}", args.bucket);
    let resp = s.send_request(request(args, "PUT", &path, Full::new(body.clone()), body.len())?).await?;
    let status = resp.status();
    let _ = resp.into_body().collect().await?;
    if !status.is_success() {
        bail!("PUT {path}: {status}");
    }
    Ok(())
}

async fn get_once(args: &Args, s: &mut Sender<Empty<Bytes>>, key: &str) -> anyhow::Result<usize> {
    let path = format!("/{}/{key}", args.bucket);
    let resp = s.send_request(request(args, "GET", &path, Empty::new(), 0)?).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            n += d.len();
        }
        if args.read_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.read_delay_ms)).await;
        }
    }
    if !status.is_success() {
        bail!("GET {path}: {status}");
    }
    Ok(n)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

struct Outcome {
    hist: Histogram<u64>,
    bytes: u64,
    errors: u64,
    gave_up: bool,
}

async fn worker(args: Arc<Args>, id: usize, body: Bytes, start: Instant, end: Instant) -> anyhow::Result<Outcome> {
    let mut out = Outcome { hist: Histogram::new_with_bounds(1, 600_000_000, 3)?, bytes: 0, errors: 0, gave_up: false };
    let mut in_a_row = 0;
    let mut put = if args.op == Op::Put { Some(connect::<Full<Bytes>>(&args.endpoint).await?) } else { None };
    let mut get = if args.op == Op::Get { Some(connect::<Empty<Bytes>>(&args.endpoint).await?) } else { None };
    let mut i = id;
    let mut done = 0u64;
    while Instant::now() < end && (args.requests_per_connection == 0 || done < args.requests_per_connection) {
        done += 1;
        let key = format!("obj-{}", i % args.objects.max(1));
        i += args.connections;
        let t0 = Instant::now();
        let result = match (&mut put, &mut get) {
            (Some(s), _) => put_once(&args, s, &key, &body).await.map(|()| body.len()),
            (_, Some(s)) => get_once(&args, s, &key).await,
            _ => bail!("no connection"),
        };
        match result {
            Ok(n) => {
                in_a_row = 0;
                if t0 >= start {
                    out.hist.saturating_record(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX).max(1));
                    out.bytes += n as u64;
                }
            }
            Err(e) => {
                out.errors += 1;
                in_a_row += 1;
                if in_a_row == 1 {
                    eprintln!("s3-bench: {e:#}");
                }
                if in_a_row >= ERRORS_IN_A_ROW_MAX {
                    out.gave_up = true;
                    break;
                }
                // A failed exchange may have left the connection unusable: open a new one.
                if args.op == Op::Put {
                    put = Some(connect(&args.endpoint).await?);
                } else {
                    get = Some(connect(&args.endpoint).await?);
                }
            }
        }
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let body = Bytes::from((0..args.size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    // The bucket, then (for GETs) the objects.
    {
        let mut s = connect::<Empty<Bytes>>(&args.endpoint).await?;
        let path = format!("/{}", args.bucket);
        let resp = s.send_request(request(&args, "PUT", &path, Empty::new(), 0)?).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await?;
        if !(status.is_success() || status.as_u16() == 409) {
            bail!("create bucket {}: {status}", args.bucket);
        }
    }
    if args.op == Op::Get && !args.no_preload {
        let mut s = connect::<Full<Bytes>>(&args.endpoint).await?;
        for k in 0..args.objects {
            put_once(&args, &mut s, &format!("obj-{k}"), &body).await?;
        }
    }
    // One second of warm-up, then the measured window (none when each connection makes a fixed
    // number of requests: all of them count).
    let warmup = if args.requests_per_connection > 0 { 0 } else { 1 };
    let start = Instant::now() + Duration::from_secs(warmup);
    let end = start + Duration::from_secs(args.seconds);
    let cpu0 = cpu_seconds();
    let mut tasks = Vec::new();
    for id in 0..args.connections {
        tasks.push(tokio::spawn(worker(Arc::clone(&args), id, body.clone(), start, end)));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut bytes, mut errors, mut gave_up) = (0u64, 0u64, false);
    for t in tasks {
        let o = t.await??;
        hist.add(&o.hist)?;
        bytes += o.bytes;
        errors += o.errors;
        gave_up |= o.gave_up;
    }
    let cpu = cpu_seconds() - cpu0;
    let ops = hist.len();
    // The measured window, or less when every connection finished its requests sooner.
    let secs = Instant::now().min(end).saturating_duration_since(start).as_secs_f64().max(1e-3);
    let report = serde_json::json!({
        "op": format!("{:?}", args.op).to_lowercase(),
        "size": args.size,
        "connections": args.connections,
        "seconds": secs,
        "ops": ops,
        "ops_per_s": ops as f64 / secs,
        "mib_per_s": bytes as f64 / secs / (1024.0 * 1024.0),
        "p50_us": hist.value_at_quantile(0.5),
        "p99_us": hist.value_at_quantile(0.99),
        "errors": errors,
        "gave_up": gave_up,
        "client_cpu_s": cpu,
        "client_cpu_us_per_op": if ops > 0 { cpu * 1e6 / ops as f64 } else { 0.0 },
    });
    println!("{report}");
    Ok(())
}
