//! The shared fixture of the end-to-end tests: a `candyboxd` child process with a temporary data
//! directory, two shards and kernel-picked loopback ports, and the `candybox` CLI run against it.
//!
//! `candyboxd` is looked up next to the `candybox` test binary (the target directory's
//! `debug/candyboxd`); when missing it is built with `cargo build -p candybox-shards --bin
//! candyboxd`, and the test fails with a clear message when that fails. `CANDYBOXD` overrides the
//! path.

#![allow(dead_code, reason = "each test binary uses part of the fixture")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// The `candyboxd` binary, built once per test process when missing.
pub fn candyboxd() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(p) = std::env::var("CANDYBOXD") {
            return PathBuf::from(p);
        }
        let cli = PathBuf::from(env!("CARGO_BIN_EXE_candybox"));
        let path = cli.with_file_name("candyboxd");
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let status = Command::new(cargo)
                .args(["build", "-p", "candybox-shards", "--bin", "candyboxd"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status();
            assert!(
                matches!(status, Ok(s) if s.success()) && path.exists(),
                "candyboxd is not at {} and `cargo build -p candybox-shards --bin candyboxd` did not make it \
                 ({status:?}); build it first",
                path.display()
            );
        }
        path
    })
    .clone()
}

/// A running node; killed on drop.
pub struct Node {
    child: Child,
    pub listen: String,
    pub shard_ports: Vec<u64>,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn start(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(candyboxd())
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--port-base", "0", "--shards", "2"])
            .args(["--log", "warn", "--pin-cores", "false"])
            // Not a disk-full test on a machine with little free disk: a small reserve, no ballast.
            .env("CANDYBOX_DISK_FREE_MIN_BYTES", "16777216")
            .env("CANDYBOX_DISK_BALLAST_BYTES", "0")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", candyboxd().display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("candyboxd did not print its ready line within 60 s");
        };
        if line.trim().is_empty() {
            let status = child.wait().ok();
            panic!(
                "{} exited ({status:?}) before printing its ready line: is it the node (candybox-shards) \
                 and does it take --listen/--http/--port-base/--shards?",
                candyboxd().display()
            );
        }
        let v: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        assert_eq!(v["ready"], true, "{line}");
        Node {
            child,
            listen: v["listen"].as_str().unwrap().to_owned(),
            shard_ports: v["shard_ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect(),
            _dir: dir,
        }
    }

    /// Runs the CLI against this node with `args`, feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_candybox"))
            .args(["--server", &self.listen])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = wait_with_timeout(child, Duration::from_secs(120));
        writer.join().unwrap();
        out
    }

    /// Runs the CLI and expects success.
    pub fn ok(&self, args: &[&str]) -> Output {
        self.ok_in(args, b"")
    }

    pub fn ok_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "candybox {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs the CLI with `--json` and parses its stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("candybox {args:?}: stdout is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
        })
    }

    /// Runs the CLI and expects exit code `code` with one `candybox: ...` line on stderr (for 1).
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args, b"");
        assert_eq!(out.status.code(), Some(code), "candybox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if code == 1 {
            assert!(err.starts_with("candybox: "), "{err}");
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        }
        err
    }
}

impl Node {
    /// The node's data directory.
    pub fn data_dir(&self) -> &Path {
        self._dir.path()
    }

    /// SIGKILL, and waits for the process to be gone (the data directory stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_with_timeout(child: Child, limit: Duration) -> Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("candybox (pid {id}) did not finish within {limit:?}"),
    }
}

pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_owned()
}
