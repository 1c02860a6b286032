//! A real ZooKeeper server for tests: Debian's `zookeeper` package, standalone, on a free
//! loopback port, with a temporary data directory; stopped when the handle drops.
//!
//! Invariants:
//! - A missing installation fails the test with the command that installs it (never a skip).
//! - The server listens on 127.0.0.1 only; every wait is bounded.
//! - `stop` and `start` keep the port and the data directory, so a restarted server has the same
//!   address and the same data (sessions survive a restart shorter than their timeout).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where Debian's package puts the server's jar.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// How long a server may take to answer `ruok`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running (or stopped) standalone ZooKeeper.
pub struct ZkServer {
    child: Option<Child>,
    /// The client port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    tick_ms: u32,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Sends a four-letter word and returns the answer ("" when the server does not answer).
pub fn four_letter(port: u16, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

impl ZkServer {
    /// Starts a server whose tickTime is `tick_ms` (sessions may last 2–20 ticks: a short tick
    /// lets session-expiry tests run in seconds).
    ///
    /// # Panics
    /// When ZooKeeper is not installed (with the command that installs it), or it does not start.
    pub fn start_with_tick(tick_ms: u32) -> ZkServer {
        assert!(
            Path::new(ZOOKEEPER_JAR).exists(),
            "ZooKeeper is not installed ({ZOOKEEPER_JAR} is missing): run `apt-get update && apt-get install -y \
             zookeeper`, or ./scripts/test.sh, which installs it"
        );
        let dir = tempfile::tempdir().expect("zookeeper temp dir");
        let mut server = ZkServer { child: None, port: free_port(), dir, tick_ms };
        server.start();
        server
    }

    /// Starts a server with a 500 ms tick (session timeouts of 1–10 s).
    pub fn start_default() -> ZkServer {
        ZkServer::start_with_tick(500)
    }

    /// The connect string.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default()
    }

    /// Starts the (stopped) server again on the same port and data directory.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        std::fs::create_dir_all(self.data_dir()).expect("zookeeper data dir");
        let cfg = self.dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime={}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=ruok,srvr,cons\nmaxSessionTimeout={}\n",
                self.tick_ms,
                self.data_dir().display(),
                self.port,
                self.tick_ms * 20,
            ),
        )
        .expect("write zoo.cfg");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("zookeeper.log"))
            .expect("zookeeper log");
        let child = Command::new("java")
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-Dzookeeper.admin.enableServer=false", "-cp"])
            .arg(format!("{ZOOKEEPER_JAR}:/usr/share/java/*"))
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start java (the zookeeper package depends on a JRE: apt-get install -y zookeeper)");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        // `ruok` answers before the server serves requests; `srvr` names a mode only once it does.
        while four_letter(self.port, "ruok") != "imok" || !four_letter(self.port, "srvr").contains("Mode:") {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("zookeeper exited with {status} at start; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "zookeeper did not answer ruok in {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL: no goodbye to its clients); the data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
    }
}
