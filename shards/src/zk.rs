//! The ZooKeeper implementation of the coordination interface (`coordination = "zookeeper"`),
//! over the `zookeeper-client` crate.
//!
//! Invariants:
//! - It runs on the node's control thread only: every call blocks that thread (never a data-path
//!   core) for at most the call timeout. The client's own tasks run on the
//!   `async-global-executor` threads; a small monitor thread per session mirrors the session's
//!   state into the shared [`SessionWatch`] that shards read before each mutation.
//! - Paths are the interface's (`boxes/<b>/meta`), below the chroot (default `/candybox`, created
//!   when missing); validation is core's `validate_path`, applied before anything is sent.
//! - A session that expired (or was closed) is replaced by a new one at the next call; the new
//!   session has a new id, and the ephemeral entries of the old one are gone (ZooKeeper's rule).
//! - Fenced writes are one multi-operation (a version check of the fence entry, then the write):
//!   ZooKeeper applies both or neither, so a writer whose fencing token is stale changes nothing.
//! - Errors keep the interface's meaning: a lost connection, a timed-out call or an expired
//!   session are `Unavailable` (mutations stop); an unknown server answer is `Store`.

use std::{
    sync::{mpsc, Arc},
    time::Duration,
};

use candybox_core::coord::{
    validate_data, validate_path, CoordError, Coordination, CreateMode, Fence, SessionWatch, Version,
};
use zookeeper_client as zk;

/// How to reach the ensemble.
#[derive(Debug, Clone)]
pub struct ZkConfig {
    /// `host:port[,host:port...]`.
    pub connect: String,
    /// Absolute path below which every entry lives (created when missing).
    pub chroot: String,
    /// The session timeout asked of the server (it clamps it to 2–20 × its tickTime).
    pub session_timeout: Duration,
    /// Bound of one call; a call that takes longer is `Unavailable` (its effect is unknown).
    pub call_timeout: Duration,
}

/// One live ZooKeeper session and its monitor.
struct Session {
    client: zk::Client,
    id: u64,
    /// Ends (is dropped by the monitor) when the session reaches a terminal state.
    ended: mpsc::Receiver<()>,
}

/// The coordination store on a ZooKeeper ensemble. See the module invariants.
pub struct ZooKeeperCoordination {
    config: ZkConfig,
    session: Option<Session>,
    watch: Arc<SessionWatch>,
}

impl std::fmt::Debug for ZooKeeperCoordination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZooKeeperCoordination")
            .field("connect", &self.config.connect)
            .field("chroot", &self.config.chroot)
            .field("session", &self.session.as_ref().map(|s| format!("{:#x}", s.id)))
            .finish()
    }
}

fn unavailable(what: impl std::fmt::Display) -> CoordError {
    CoordError::Unavailable(format!("zookeeper: {what}"))
}

/// Runs one call of the client against the live session, bounded by the call timeout:
/// `zk_call!(self, path, "what", |client| future)`.
macro_rules! zk_call {
    ($self:ident, $path:expr, $what:literal, |$c:ident| $e:expr) => {{
        let $c = $self.client()?;
        let started = candybox_core::coord::monotonic_ms();
        let r = run($self.config.call_timeout, &format!("{} {}", $what, $path), $e);
        $self.answered(started, &r);
        r
    }};
}

/// Runs one client future on this thread, bounded by `timeout`.
fn run<T, E>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, CoordError> {
    let timed = async {
        async_io::Timer::after(timeout).await;
        None
    };
    match async_io::block_on(futures_lite::future::or(async { Some(fut.await) }, timed)) {
        Some(r) => Ok(r),
        None => Err(unavailable(format!("{what}: no answer within {} ms", timeout.as_millis()))),
    }
}

/// True for the errors that mean the server did not answer for this session: the connection or
/// the session is gone (anything else is an answer, and proves the session live).
fn session_lost(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss
            | zk::Error::Timeout
            | zk::Error::SessionExpired
            | zk::Error::SessionMoved
            | zk::Error::ClientClosed
            | zk::Error::NoHosts
    )
}

fn acls() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn ephemeral() -> zk::CreateOptions<'static> {
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all())
}

fn to_zk_version(path: &str, v: Version) -> Result<i32, CoordError> {
    // ZooKeeper versions are i32; a larger expected version can never match.
    i32::try_from(v).map_err(|_| CoordError::BadVersion { path: path.to_owned(), expected: v, found: 0 })
}

fn from_zk_version(v: i32) -> Version {
    u64::try_from(v).unwrap_or(0)
}

impl ZooKeeperCoordination {
    /// Connects: establishes a session, creates the chroot when missing.
    ///
    /// # Errors
    /// `Unavailable` when no session can be established within the session timeout (the message
    /// names the connect string); `BadPath` for a chroot that is not an absolute path.
    pub fn connect(config: ZkConfig) -> Result<ZooKeeperCoordination, CoordError> {
        let chroot = config.chroot.trim_end_matches('/');
        if !chroot.is_empty() && (!chroot.starts_with('/') || validate_path(&chroot[1..]).is_err()) {
            return Err(CoordError::BadPath(config.chroot.clone()));
        }
        let mut store = ZooKeeperCoordination { config, session: None, watch: SessionWatch::new(0) };
        store.watch.set_disconnected();
        store.watch.set_valid_until(0);
        store.live()?;
        Ok(store)
    }

    /// The current session's client, establishing a new session when there is none or the last
    /// one ended.
    fn live(&mut self) -> Result<&zk::Client, CoordError> {
        let ended = match &self.session {
            None => true,
            Some(s) => matches!(
                s.client.state(),
                zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed
            ),
        };
        if ended {
            if let Some(old) = self.session.take() {
                tracing::warn!(session = %format!("{:#x}", old.id), state = ?old.client.state(), "zookeeper session ended; establishing a new one");
            }
            self.watch.set_disconnected();
            let session = self.establish()?;
            tracing::info!(session = %format!("{:#x}", session.id), connect = %self.config.connect, chroot = %self.config.chroot, "zookeeper session established");
            let id = session.id;
            self.session = Some(session);
            // Connecting was the server's answer; validity starts now (with the negotiated timeout).
            self.watch.set_valid_until(candybox_core::coord::monotonic_ms() + self.valid_ms());
            self.watch.set(id, true);
        }
        match &self.session {
            Some(s) => Ok(&s.client),
            None => Err(unavailable("no session")),
        }
    }

    fn establish(&self) -> Result<Session, CoordError> {
        let connect = self.config.connect.clone();
        let connector = zk::Client::connector().with_session_timeout(self.config.session_timeout);
        // Connecting may take up to the session timeout (the client retries every server).
        let bound = self.config.session_timeout + self.config.call_timeout;
        let root = run(bound, "connect", connector.connect(&connect))?
            .map_err(|e| unavailable(format!("connect to {connect}: {e}")))?;
        let chroot = self.config.chroot.trim_end_matches('/').to_owned();
        let client = if chroot.is_empty() {
            root
        } else {
            run(self.config.call_timeout, "create the chroot", root.mkdir(&chroot, &acls()))?
                .map_err(|e| unavailable(format!("create the chroot {chroot}: {e}")))?;
            root.chroot(chroot.clone()).map_err(|_| CoordError::BadPath(chroot.clone()))?
        };
        let id = client.session_id().0 as u64;
        let (ended_tx, ended) = mpsc::channel::<()>();
        let mut states = client.state_watcher();
        let watch = self.watch.clone();
        std::thread::Builder::new()
            .name("candybox-zk-session".into())
            .spawn(move || {
                async_io::block_on(async move {
                    loop {
                        let state = states.changed().await;
                        tracing::info!(session = %format!("{id:#x}"), ?state, "zookeeper session state");
                        match state {
                            zk::SessionState::SyncConnected => {
                                // Only this session's own state: a newer session owns the watch.
                                if watch.session() == id {
                                    watch.set(id, true);
                                }
                            }
                            zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                                if watch.session() == id {
                                    watch.set_disconnected();
                                }
                            }
                            zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed => {
                                if watch.session() == id {
                                    watch.set_disconnected();
                                }
                                break;
                            }
                        }
                    }
                });
                drop(ended_tx);
            })
            .map_err(|e| CoordError::Store(format!("spawn the zookeeper session monitor: {e}")))?;
        Ok(Session { client, id, ended })
    }

    /// How long after the start of an answered call the session is known live: two thirds of the
    /// negotiated session timeout. The server restarts its expiry timer at every packet it gets
    /// from this session, and it got the call after the call started, so it cannot expire the
    /// session (and nobody else can take its leases) sooner than the full timeout after that
    /// start; the last third is the margin for clock rates and scheduling.
    fn valid_ms(&self) -> u64 {
        let timeout = self.session.as_ref().map_or(self.config.session_timeout, |s| s.client.session_timeout());
        u64::try_from(timeout.as_millis() * 2 / 3).unwrap_or(u64::MAX).max(1)
    }

    /// Renews the session's validity when the server answered (any answer but a lost
    /// connection or session is one).
    fn answered<T>(&self, started_ms: u64, r: &Result<Result<T, zk::Error>, CoordError>) {
        let answered = match r {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => !session_lost(e),
            Err(_) => false,
        };
        if answered {
            self.watch.renew(started_ms, self.valid_ms());
        }
    }

    /// A handle on the live session (a cheap clone).
    fn client(&mut self) -> Result<zk::Client, CoordError> {
        Ok(self.live()?.clone())
    }

    fn zk_path(path: &str) -> String {
        format!("/{path}")
    }

    /// The version of an entry now, for error reports (`None` when absent or unknown).
    fn version_now(&mut self, path: &str) -> Option<Version> {
        let zp = Self::zk_path(path);
        let c = self.client().ok()?;
        match run(self.config.call_timeout, "stat", c.check_stat(&zp)) {
            Ok(Ok(Some(stat))) => Some(from_zk_version(stat.version)),
            _ => None,
        }
    }

    fn map_error(&mut self, path: &str, e: zk::Error) -> CoordError {
        match e {
            zk::Error::NoNode => CoordError::NoNode(path.to_owned()),
            zk::Error::NodeExists => CoordError::NodeExists(path.to_owned()),
            zk::Error::NotEmpty => CoordError::NotEmpty(path.to_owned()),
            zk::Error::NoChildrenForEphemerals | zk::Error::BadArguments(_) => CoordError::BadPath(path.to_owned()),
            ref lost if session_lost(lost) => unavailable(format!("{path}: {e}")),
            zk::Error::Throttled | zk::Error::NotReadOnly => unavailable(format!("{path}: {e}")),
            other => CoordError::Store(format!("zookeeper: {path}: {other}")),
        }
    }

    fn bad_version(&mut self, path: &str, expected: Version) -> CoordError {
        let found = self.version_now(path).unwrap_or(0);
        CoordError::BadVersion { path: path.to_owned(), expected, found }
    }

    /// Creates every missing ancestor of `path` as an empty persistent entry.
    fn create_parents(&mut self, path: &str) -> Result<(), CoordError> {
        let mut at = 0;
        while let Some(i) = path.get(at..).and_then(|rest| rest.find('/')) {
            let parent = path.get(..at + i).unwrap_or_default().to_owned();
            at += i + 1;
            let zp = Self::zk_path(&parent);
            match zk_call!(self, &parent, "create", |c| c.create(&zp, &[], &acls()))? {
                Ok(_) | Err(zk::Error::NodeExists) => {}
                // Below an ephemeral entry: nothing may be created there.
                Err(zk::Error::NoChildrenForEphemerals) => return Err(CoordError::BadPath(path.to_owned())),
                Err(e) => return Err(self.map_error(&parent, e)),
            }
        }
        Ok(())
    }

    /// Runs a check of `fence` and `op` as one multi-operation.
    fn fenced_multi(
        &mut self,
        fence: &Fence,
        path: &str,
        op: FencedOp<'_>,
    ) -> Result<Result<Vec<zk::MultiWriteResult>, zk::MultiWriteError>, CoordError> {
        let fence_version = i32::try_from(fence.version).map_err(|_| CoordError::Fenced {
            path: fence.path.clone(),
            token: fence.version,
            found: None,
        })?;
        let (fp, zp) = (Self::zk_path(&fence.path), Self::zk_path(path));
        let timeout = self.config.call_timeout;
        let client = self.live()?.clone();
        let mut writer = client.new_multi_writer();
        let added = writer.add_check_version(&fp, fence_version).and_then(|()| match op {
            FencedOp::Set(data) => writer.add_set_data(&zp, data, None),
            FencedOp::Create(data) => writer.add_create(&zp, data, &acls()),
            FencedOp::Delete => writer.add_delete(&zp, None),
        });
        if added.is_err() {
            return Err(CoordError::BadPath(path.to_owned()));
        }
        let started = candybox_core::coord::monotonic_ms();
        let r = run(timeout, &format!("fenced write {path}"), writer.commit())?;
        let lost = matches!(&r, Err(zk::MultiWriteError::RequestFailed { source }) if session_lost(source));
        if !lost {
            self.watch.renew(started, self.valid_ms());
        }
        Ok(r)
    }

    /// Maps the failure of a fenced multi-operation: index 0 is the fence check.
    fn fenced_error(&mut self, fence: &Fence, path: &str, e: zk::MultiWriteError) -> Result<(), CoordError> {
        match e {
            zk::MultiWriteError::OperationFailed { index: 0, .. } => Err(CoordError::Fenced {
                path: fence.path.clone(),
                token: fence.version,
                found: self.version_now(&fence.path),
            }),
            zk::MultiWriteError::OperationFailed { source, .. } => Err(self.map_error(path, source)),
            zk::MultiWriteError::RequestFailed { source } => Err(self.map_error(path, source)),
        }
    }
}

enum FencedOp<'a> {
    Set(&'a [u8]),
    Create(&'a [u8]),
    Delete,
}

impl Drop for ZooKeeperCoordination {
    fn drop(&mut self) {
        // Close the session now, so its ephemeral entries vanish at once rather than after the
        // session timeout; wait (bounded) until the server confirmed.
        if let Some(s) = self.session.take() {
            drop(s.client);
            let _ = s.ended.recv_timeout(self.config.call_timeout);
        }
        self.watch.set_disconnected();
    }
}

impl Coordination for ZooKeeperCoordination {
    fn get(&mut self, path: &str) -> Result<Option<(Vec<u8>, Version)>, CoordError> {
        validate_path(path)?;
        let zp = Self::zk_path(path);
        match zk_call!(self, path, "get", |c| c.get_data(&zp))? {
            Ok((data, stat)) => Ok(Some((data, from_zk_version(stat.version)))),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(self.map_error(path, e)),
        }
    }

    fn create(&mut self, path: &str, data: &[u8], mode: CreateMode) -> Result<Version, CoordError> {
        validate_path(path)?;
        validate_data(path, data)?;
        let zp = Self::zk_path(path);
        let options = match mode {
            CreateMode::Persistent => acls(),
            CreateMode::Ephemeral => ephemeral(),
        };
        for attempt in 0..2 {
            match zk_call!(self, path, "create", |c| c.create(&zp, data, &options))? {
                Ok((stat, _)) => return Ok(from_zk_version(stat.version)),
                Err(zk::Error::NoNode) if attempt == 0 => self.create_parents(path)?,
                Err(zk::Error::NoChildrenForEphemerals) => return Err(CoordError::BadPath(path.to_owned())),
                Err(e) => return Err(self.map_error(path, e)),
            }
        }
        // The parents were created and then deleted by someone else: report it as absent.
        Err(CoordError::Unavailable(format!("zookeeper: create {path}: its parent vanished twice")))
    }

    fn set(&mut self, path: &str, data: &[u8], expected: Option<Version>) -> Result<Version, CoordError> {
        validate_path(path)?;
        validate_data(path, data)?;
        let zp = Self::zk_path(path);
        let version = expected.map(|v| to_zk_version(path, v)).transpose()?;
        match zk_call!(self, path, "set", |c| c.set_data(&zp, data, version))? {
            Ok(stat) => Ok(from_zk_version(stat.version)),
            Err(zk::Error::BadVersion) => Err(self.bad_version(path, expected.unwrap_or(0))),
            Err(e) => Err(self.map_error(path, e)),
        }
    }

    fn delete(&mut self, path: &str, expected: Option<Version>) -> Result<(), CoordError> {
        validate_path(path)?;
        let zp = Self::zk_path(path);
        let version = expected.map(|v| to_zk_version(path, v)).transpose()?;
        match zk_call!(self, path, "delete", |c| c.delete(&zp, version))? {
            Ok(()) => Ok(()),
            Err(zk::Error::BadVersion) => Err(self.bad_version(path, expected.unwrap_or(0))),
            Err(e) => Err(self.map_error(path, e)),
        }
    }

    fn children(&mut self, path: &str) -> Result<Vec<String>, CoordError> {
        validate_path(path)?;
        let zp = Self::zk_path(path);
        match zk_call!(self, path, "children", |c| c.list_children(&zp))? {
            Ok(mut names) => {
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                Ok(names)
            }
            Err(e) => Err(self.map_error(path, e)),
        }
    }

    fn put_fenced(&mut self, fence: &Fence, path: &str, data: &[u8]) -> Result<Version, CoordError> {
        validate_path(path)?;
        validate_path(&fence.path)?;
        validate_data(path, data)?;
        for _ in 0..3 {
            match self.fenced_multi(fence, path, FencedOp::Set(data))? {
                Ok(results) => return Ok(set_version(&results)),
                Err(zk::MultiWriteError::OperationFailed { index: 1, source: zk::Error::NoNode }) => {}
                Err(e) => {
                    self.fenced_error(fence, path, e)?;
                }
            }
            // Absent: create it (parents first; they are harmless empty entries).
            self.create_parents(path)?;
            match self.fenced_multi(fence, path, FencedOp::Create(data))? {
                Ok(results) => return Ok(create_version(&results)),
                // Created by someone else in between: set it on the next round.
                Err(zk::MultiWriteError::OperationFailed { index: 1, source: zk::Error::NodeExists }) => {}
                Err(e) => {
                    self.fenced_error(fence, path, e)?;
                }
            }
        }
        Err(unavailable(format!("fenced put {path}: the entry kept appearing and vanishing")))
    }

    fn delete_fenced(&mut self, fence: &Fence, path: &str) -> Result<(), CoordError> {
        validate_path(path)?;
        validate_path(&fence.path)?;
        match self.fenced_multi(fence, path, FencedOp::Delete)? {
            Ok(_) => Ok(()),
            Err(zk::MultiWriteError::OperationFailed { index: 1, source: zk::Error::NoNode }) => Ok(()),
            Err(e) => self.fenced_error(fence, path, e),
        }
    }

    fn session_id(&mut self) -> Result<u64, CoordError> {
        self.live()?;
        Ok(self.session.as_ref().map(|s| s.id).unwrap_or(0))
    }

    fn session_watch(&self) -> Arc<SessionWatch> {
        self.watch.clone()
    }

    fn keepalive(&mut self) {
        // The chroot itself: always present once the session is established.
        let mut probe = || -> Result<(), CoordError> {
            match zk_call!(self, "/", "keepalive", |c| c.check_stat("/"))? {
                Ok(_) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        };
        if let Err(e) = probe() {
            tracing::debug!(error = %e, "zookeeper keepalive failed");
        }
    }
}

fn set_version(results: &[zk::MultiWriteResult]) -> Version {
    results
        .iter()
        .find_map(|r| match r {
            zk::MultiWriteResult::SetData { stat } => Some(from_zk_version(stat.version)),
            _ => None,
        })
        .unwrap_or(0)
}

fn create_version(results: &[zk::MultiWriteResult]) -> Version {
    results
        .iter()
        .find_map(|r| match r {
            zk::MultiWriteResult::Create { stat, .. } => Some(from_zk_version(stat.version)),
            _ => None,
        })
        .unwrap_or(0)
}
