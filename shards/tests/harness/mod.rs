//! One fixture for every end-to-end test of the node: a `candyboxd` child process on loopback
//! ports, with a temporary data directory that outlives restarts and crashes, and clients of the
//! real client library (tokio driver) connected to it.
//!
//! Invariants:
//! - The node listens on 127.0.0.1 only, on ports the OS picks (`:0`, `--port-base 0`); the
//!   test learns them from the one JSON line the node prints to stdout when it is ready.
//! - A node is killed when its handle drops, so a failing test never leaves one behind.
//! - Every wait is bounded; a node that is not ready in time fails the test with its stderr.
#![allow(dead_code, reason = "each test binary uses a different part of the fixture")]

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use candybox_wire::client::{ClientConfig, TokioClient};

pub mod zk;

/// How long a node may take to recover and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports a ready node reported.
#[derive(Debug, Clone)]
pub struct Ports {
    /// `host:port` of the main port.
    pub listen: String,
    /// `host:port` of the HTTP endpoint.
    pub http: String,
    /// Each shard's own port.
    pub shard_ports: Vec<u16>,
}

/// A running `candyboxd`.
pub struct Node {
    child: Option<Child>,
    /// Where its data lives (kept across restarts).
    pub data_dir: PathBuf,
    /// What it reported when ready.
    pub ports: Ports,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    stderr_log: PathBuf,
}

impl Node {
    /// Starts a node (2 shards unless `args` has `--shards`) on the data directory `root/data`
    /// (fresh, or left by an earlier node on the same root), plus `args`/`envs`.
    pub fn start(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Node {
        let data_dir = root.join("data");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let stderr_log = root.join("candyboxd.stderr");
        let (child, ports) = spawn(&data_dir, &args, &envs, &stderr_log);
        Node { child: Some(child), data_dir, ports, args, envs, stderr_log }
    }

    /// A client of the real library with routing on or off.
    pub async fn client(&self, routing: bool) -> TokioClient {
        self.client_with(|c| c.routing = routing).await
    }

    /// A client with a customised configuration.
    pub async fn client_with(&self, f: impl FnOnce(&mut ClientConfig)) -> TokioClient {
        let mut config = ClientConfig::new(self.ports.listen.clone());
        f(&mut config);
        TokioClient::connect(config).await.expect("connect to the node")
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// The node's resident memory, from `/proc/<pid>/status` (bytes).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// SIGKILL: the node gets no chance to flush or sync anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the node");
        }
    }

    /// Sends `signal` to the running node (SIGSTOP / SIGCONT pause and resume it).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("node is running");
        // SAFETY: kill(2) with a pid this test owns and a valid signal number.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "send signal {signal}");
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("node is running");
        // SAFETY: kill(2) with a pid this test owns and a valid signal number.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "send SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the node") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node did not exit within 30 s of SIGTERM; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same data directory (after `kill` or `terminate`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node before restarting it");
        let (child, ports) = spawn(&self.data_dir, &self.args, &self.envs, &self.stderr_log);
        self.child = Some(child);
        self.ports = ports;
    }

    /// Everything the node wrote to stderr so far (its logs).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// GET `path` from the node's HTTP endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&self.ports.http).expect("connect to the http endpoint");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("set timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("send request");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read response");
        let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// The sum of a metric's samples across shards (0 when absent).
    pub fn metric_sum(&self, name: &str) -> f64 {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "/metrics answers");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(data_dir: &Path, args: &[String], envs: &[(String, String)], stderr_log: &Path) -> (Child, Ports) {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(stderr_log).expect("open stderr log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candyboxd"));
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--port-base", "0"])
        // Two shards unless the test asks for another count (a flag may be given only once).
        .args(if args.iter().any(|a| a == "--shards") { &[][..] } else { &["--shards", "2"][..] })
        .args(args)
        .env("CANDYBOX_LOG", "info")
        // A machine with little free disk must not turn every test into a disk-full test: a
        // small reserve and no ballast, unless the test's flags or environment say otherwise.
        .env("CANDYBOX_DISK_FREE_MIN_BYTES", "16777216")
        .env("CANDYBOX_DISK_BALLAST_BYTES", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start candyboxd");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.contains("\"ready\"") {
                let _ = tx.send(line);
            }
        }
    });
    let line = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(line) => line,
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // Its stdout closed without a ready line: it exited (a bad flag, a refused data
            // directory), so say how instead of blaming a timeout.
            let status = child.wait().map_or_else(|e| format!("unknown ({e})"), |s| s.to_string());
            let log = std::fs::read_to_string(stderr_log).unwrap_or_default();
            panic!("candyboxd exited before reporting ready ({status}); stderr:\n{log}");
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let log = std::fs::read_to_string(stderr_log).unwrap_or_default();
            panic!("candyboxd did not report ready within {READY_TIMEOUT:?}; stderr:\n{log}");
        }
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    let ports = Ports {
        listen: v["listen"].as_str().expect("listen").to_string(),
        http: v["http"].as_str().expect("http").to_string(),
        shard_ports: v["shard_ports"]
            .as_array()
            .expect("shard_ports")
            .iter()
            .map(|p| p.as_u64().expect("port") as u16)
            .collect(),
    };
    (child, ports)
}

/// Flags that make maintenance flush, compact and collect Syrups within a test's seconds: tiny
/// memtables and Syrups, no inline Candies, a 50 ms GC grace, no tombstone grace.
pub const EAGER_GC_ARGS: &[&str] = &[
    "--memtable-bytes",
    "2048",
    "--l0-compaction-trigger",
    "2",
    "--syrup-roll-bytes",
    "65536",
    "--chunk-bytes",
    "4096",
    "--inline-bytes-max",
    "0",
    "--gc-grace-ms",
    "50",
    "--tombstone-grace-ms",
    "0",
];

/// A valid `HeadBox` request body (for tests that write frames by hand).
pub fn head_box_body(name: &str) -> Vec<u8> {
    use candybox_wire::fb;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let name = fbb.create_string(name);
    let head = fb::HeadBox::create(&mut fbb, &fb::HeadBoxArgs { box_name: Some(name) });
    let root = fb::Request::create(
        &mut fbb,
        &fb::RequestArgs { body_type: fb::RequestBody::HeadBox, body: Some(head.as_union_value()) },
    );
    fbb.finish(root, None);
    fbb.finished_data().to_vec()
}

/// Flags that make space reclamation and GC give bytes back within a test's seconds: a 200 ms
/// grace, a maintenance pass every 100 ms, a live scan at every pass that follows a change, 4 MiB
/// Syrups and small memtables (tests add their own Syrup compaction thresholds).
pub const EAGER_RECLAIM_ARGS: &[&str] = &[
    "--gc-grace-ms",
    "200",
    "--maintenance-interval-ms",
    "100",
    "--reclaim-scan-interval-ms",
    "0",
    "--syrup-roll-bytes",
    "4194304",
    "--memtable-bytes",
    "65536",
];

/// `base` followed by `more`, as one argument list.
pub fn args_with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

/// Deterministic pseudo-random bytes (xorshift), so a test can regenerate what it wrote.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Waits until `f` returns true, checking every 100 ms, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Total bytes of the files directly in `dir` (0 when it does not exist).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
}

/// Finds a key with `prefix` whose partition (of `partitions`) is `want` or, with `want == None`,
/// any key: `(key, partition)`.
pub fn key_in_partition(prefix: &str, partitions: u16, want: impl Fn(u16) -> bool) -> (Vec<u8>, u16) {
    for i in 0..10_000 {
        let key = format!("{prefix}{i}").into_bytes();
        let p = candybox_wire::client::placement::partition_of(&key, partitions);
        if want(p) {
            return (key, p);
        }
    }
    panic!("no key with prefix {prefix} lands in a wanted partition");
}
