//! The high-level client: every operation of SPEC §6 over pipelined connections, with
//! shard-aware routing, busy retries, scatter-gather listing and the client-side locator relay.
//!
//! Invariants:
//! - With routing on and a topology naming [`PLACEMENT_V1`], a request for a key goes to the
//!   port of the shard that owns the key's partition, a per-partition request to the partition's
//!   shard; otherwise (routing off, an unknown placement, a topology the node does not answer)
//!   everything goes to the main port. Routing is only a hint: any port answers any request.
//! - One connection per port, opened lazily and reopened after it closed.
//! - `Busy` is retried (at most `busy_retries` times, waiting the larger of the node's
//!   `retry_after_ms` and an exponential backoff) only where the request can be sent again
//!   unchanged: every request without a streamed body, and puts of a whole buffer.
//! - Relayed locators go from the source's reply to the destination's request as the received
//!   `Bytes`, never decoded or re-encoded.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::connection::{Connection, ConnectionConfig, Exchange};
use super::demux::Inbound;
use super::digest::Hashers;
use super::driver::Driver;
use super::error::ClientError;
use super::list::merge_pages;
use super::placement::{partition_of, shard_of, PLACEMENT_V1};
use super::reply;
use super::request;
use super::source::{BodySource, Hashing, Take};
use super::types::{
    BoxInfo, ByteRange, CandyMeta, Condition, CopyOptions, DeleteDone, DeleteKey, DeleteOutcome, Hlc, KeyRange,
    ListOptions, ListPage, MetaReplace, PartInfo, PutDone, PutOptions, RelayedLocator, RenameOutcome, RenamePrepared,
    ShardStats, Topology, UploadInfo, VersionListOptions, VersionPage, Versioning,
};
use crate::frame::FRAME_BODY_BYTES_MAX_DEFAULT;

/// The default port of a node.
pub const DEFAULT_PORT: u16 = 7420;
/// The smallest multipart part the node accepts (except the last).
pub const MULTIPART_PART_BYTES_MIN: u64 = 5 * 1024 * 1024;
/// The most parts of one multipart upload.
pub const MULTIPART_PARTS_MAX: u32 = 10_000;
/// The most keys one delete-many request may name (S3's DeleteObjects limit).
pub const DELETE_MANY_KEYS_MAX: usize = 1000;

/// How to reach and talk to a node.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the node's main port.
    pub server: String,
    /// Send each request to the owning shard's own port (default on).
    pub routing: bool,
    /// How many times a `Busy` reply is retried.
    pub busy_retries: u32,
    /// The first backoff after `Busy`; it doubles per retry.
    pub busy_backoff_initial: Duration,
    /// The largest backoff.
    pub busy_backoff_max: Duration,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long to wait for each reply frame or data piece.
    pub request_timeout: Duration,
    /// Cap on a frame's body plus payload; must match the node's (default 16 MiB).
    pub frame_body_bytes_max: u32,
    /// Requests in flight per connection (default 64, the node's default `requests_in_flight_max`:
    /// past it the node stops reading the connection, or answers `Busy` while a body streams).
    pub requests_in_flight_max: usize,
    /// How long a Box's partition count (and the node serving it) is trusted before asking again.
    pub partition_cache_ttl: Duration,
    /// Follow not-owner replies to the node that serves a Box (default on; at most `HOPS_MAX`).
    pub follow_redirects: bool,
}

impl ClientConfig {
    /// The defaults for `server`.
    pub fn new(server: impl Into<String>) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            routing: true,
            busy_retries: 8,
            busy_backoff_initial: Duration::from_millis(10),
            busy_backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            frame_body_bytes_max: FRAME_BODY_BYTES_MAX_DEFAULT,
            requests_in_flight_max: 64,
            partition_cache_ttl: Duration::from_secs(5),
            follow_redirects: true,
        }
    }

    fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            frame_body_bytes_max: self.frame_body_bytes_max,
            requests_in_flight_max: self.requests_in_flight_max,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Main,
    Shard(u16),
}

#[derive(Debug, Clone)]
struct Routes {
    shard_count: u16,
    ports: Vec<u16>,
}

struct SlotState<D: Driver> {
    conn: Option<Arc<Connection<D>>>,
    connecting: bool,
    waiters: Vec<Waker>,
}

type Slot<D> = Mutex<SlotState<D>>;

fn empty_slot<D: Driver>() -> Slot<D> {
    Mutex::new(SlotState { conn: None, connecting: false, waiters: Vec::new() })
}

/// Ends a slot's connection attempt (opened, failed or cancelled) and wakes its waiters.
struct Connecting<'a, D: Driver> {
    slot: &'a Slot<D>,
}

impl<D: Driver> Drop for Connecting<'_, D> {
    fn drop(&mut self) {
        let mut s = lock(self.slot);
        s.connecting = false;
        for w in s.waiters.drain(..) {
            w.wake();
        }
    }
}

struct Inner<D: Driver> {
    config: ClientConfig,
    host: String,
    main: Slot<D>,
    routes: Option<Routes>,
    routing_off_reason: Option<String>,
    shards: Vec<Slot<D>>,
    partitions: Mutex<HashMap<String, (u16, Instant)>>,
    /// Where each Box is served: `None` here, else a client of the serving node (a cluster on
    /// ZooKeeper places each Box on one node; others answer not-owner naming it).
    homes: Mutex<HashMap<String, Home<D>>>,
    /// Clients of other nodes, by address, shared by the Boxes they serve.
    peers: Mutex<HashMap<String, Client<D>>>,
    /// Not-owner redirects followed to reach this client's node (bounded by `HOPS_MAX`).
    hops: u32,
}

/// Where a Box is served (`None`: this client's node) and since when that is known.
type Home<D> = (Option<Client<D>>, Instant);

/// Most not-owner redirects followed for one Box.
pub const HOPS_MAX: u32 = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A client of one node. Cheap to clone; clones share connections and caches.
pub struct Client<D: Driver> {
    inner: Arc<Inner<D>>,
}

impl<D: Driver> Clone for Client<D> {
    fn clone(&self) -> Self {
        Client { inner: Arc::clone(&self.inner) }
    }
}

/// A get in progress: the Candy's metadata and its selected bytes as a stream of pieces.
pub struct GetStream<D: Driver> {
    meta: CandyMeta,
    first: u64,
    length: u64,
    received: u64,
    head: Option<Bytes>,
    exchange: Option<Exchange<D>>,
}

impl<D: Driver> GetStream<D> {
    /// The Candy's metadata.
    pub fn meta(&self) -> &CandyMeta {
        &self.meta
    }

    /// The first byte of the selected range.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// How many bytes the stream yields in all.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The next piece of bytes, `None` after the last.
    ///
    /// # Errors
    /// The connection's errors; [`ClientError::Protocol`] when the node sends more or fewer
    /// bytes than it announced.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            if let Some(head) = self.head.take() {
                if !head.is_empty() {
                    return Ok(Some(head));
                }
            }
            let Some(exchange) = self.exchange.as_mut() else {
                if self.received != self.length {
                    return Err(ClientError::protocol(format!(
                        "get reply ended after {} of {} bytes",
                        self.received, self.length
                    )));
                }
                return Ok(None);
            };
            match exchange.recv().await? {
                Inbound::Data { payload, end } => {
                    if end {
                        self.exchange = None;
                    }
                    self.count(payload.len())?;
                    self.head = Some(payload);
                }
                Inbound::Reply { .. } => return Err(ClientError::protocol("a second Reply frame for a get")),
            }
        }
    }

    fn count(&mut self, n: usize) -> Result<(), ClientError> {
        self.received += n as u64;
        if self.received > self.length {
            return Err(ClientError::protocol(format!(
                "get reply carries more than the {} bytes it announced",
                self.length
            )));
        }
        Ok(())
    }

    /// Reads the rest of the stream into a vector.
    ///
    /// # Errors
    /// As [`GetStream::next_piece`].
    pub async fn to_vec(mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::with_capacity(usize::try_from(self.length.min(64 << 20)).unwrap_or(0));
        while let Some(piece) = self.next_piece().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

impl<D: Driver> Client<D> {
    /// Connects to the node's main port and, with routing on, reads its topology.
    ///
    /// # Errors
    /// [`ClientError::Io`] or [`ClientError::Timeout`] when the node cannot be reached; the
    /// node's error for the topology request (other than `UnknownRequest`, which turns routing
    /// off).
    pub async fn connect(config: ClientConfig) -> Result<Client<D>, ClientError> {
        let host = match config.server.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => host.to_owned(),
            _ => return Err(ClientError::local_argument("server", format!("`{}` is not HOST:PORT", config.server))),
        };
        let main = Connection::<D>::open(&config.server, &config.connection()).await?;
        let mut inner = Inner {
            config,
            host,
            main: Mutex::new(SlotState { conn: Some(Arc::new(main)), connecting: false, waiters: Vec::new() }),
            routes: None,
            routing_off_reason: None,
            shards: Vec::new(),
            partitions: Mutex::new(HashMap::new()),
            homes: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            hops: 0,
        };
        if !inner.config.routing {
            inner.routing_off_reason = Some("routing is turned off".to_owned());
        } else {
            let probe = Client { inner: Arc::new(inner) };
            let topology = probe.topology().await;
            let Ok(mut inner) = Arc::try_unwrap(probe.inner) else { unreachable!("the probe client was not cloned") };
            match topology {
                Ok(t) => match routes_of(&t) {
                    Ok(routes) => {
                        inner.shards = (0..routes.shard_count).map(|_| empty_slot()).collect();
                        inner.routes = Some(routes);
                    }
                    Err(why) => inner.routing_off_reason = Some(why),
                },
                Err(ClientError::UnknownRequest { .. }) => {
                    inner.routing_off_reason = Some("the node does not answer topology requests".to_owned());
                }
                Err(e) => return Err(e),
            }
            return Ok(Client { inner: Arc::new(inner) });
        }
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The configuration this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// True when requests go to their owning shard's port.
    pub fn is_routing(&self) -> bool {
        self.inner.routes.is_some()
    }

    /// Why requests all go to the main port (`None` when routing).
    pub fn routing_off_reason(&self) -> Option<&str> {
        self.inner.routing_off_reason.as_deref()
    }

    fn cap(&self) -> u32 {
        self.inner.config.frame_body_bytes_max
    }

    /// The client of the node that serves `box_name` when that is another node (learned once per
    /// `partition_cache_ttl` with a one-entry listing of partition 0, which another node answers
    /// with not-owner naming the serving node); `None` when it is this node or unknown (the
    /// request then goes here and reports its own error).
    async fn home_elsewhere(&self, box_name: &str) -> Option<Client<D>> {
        if !self.inner.config.follow_redirects {
            return None;
        }
        if let Some((home, at)) = lock(&self.inner.homes).get(box_name) {
            if at.elapsed() <= self.inner.config.partition_cache_ttl {
                return home.clone();
            }
        }
        let probe = request::list(box_name, 0, &ListOptions { limit: 1, ..ListOptions::default() });
        // Sent to partition 0's own shard, so that the probe is never forwarded between shards.
        let target = self.target_of_partition(box_name, 0);
        let home = match self.unary_with(target, probe, |b, cap| reply::list_page(b, cap), false).await {
            Ok(_) => None,
            Err(ClientError::NotOwner { owner, .. }) if self.inner.hops < HOPS_MAX && !owner.is_empty() => {
                self.peer(&owner).await
            }
            // Unknown (absent Box, unreachable node...): the request itself reports it.
            Err(_) => return None,
        };
        lock(&self.inner.homes).insert(box_name.to_owned(), (home.clone(), Instant::now()));
        home
    }

    /// A client of the node at `addr` (shared per address).
    async fn peer(&self, addr: &str) -> Option<Client<D>> {
        if let Some(p) = lock(&self.inner.peers).get(addr) {
            return Some(p.clone());
        }
        let mut config = self.inner.config.clone();
        config.server = addr.to_owned();
        // Unreachable: the request goes here and reports the not-owner answer itself.
        let peer = Box::pin(Client::<D>::connect(config)).await.ok()?;
        let peer = match Arc::try_unwrap(peer.inner) {
            Ok(mut inner) => {
                inner.hops = self.inner.hops + 1;
                Client { inner: Arc::new(inner) }
            }
            Err(shared) => Client { inner: shared },
        };
        lock(&self.inner.peers).insert(addr.to_owned(), peer.clone());
        Some(peer)
    }

    async fn connection(&self, target: Target) -> Result<Arc<Connection<D>>, ClientError> {
        let (slot, addr) = match (target, &self.inner.routes) {
            (Target::Shard(s), Some(routes)) => {
                match (self.inner.shards.get(usize::from(s)), routes.ports.get(usize::from(s))) {
                    (Some(slot), Some(port)) => (slot, format!("{}:{port}", self.inner.host)),
                    _ => (&self.inner.main, self.inner.config.server.clone()),
                }
            }
            _ => (&self.inner.main, self.inner.config.server.clone()),
        };
        // One connection attempt per slot at a time: concurrent requests wait for it instead of
        // each opening their own.
        let ready = poll_fn(|cx| {
            let mut s = lock(slot);
            if let Some(c) = s.conn.as_ref() {
                if !c.is_closed() {
                    return Poll::Ready(Some(Arc::clone(c)));
                }
            }
            if s.connecting {
                s.waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            s.connecting = true;
            Poll::Ready(None)
        })
        .await;
        if let Some(c) = ready {
            return Ok(c);
        }
        let guard = Connecting { slot };
        let fresh = Arc::new(Connection::<D>::open(&addr, &self.inner.config.connection()).await?);
        lock(guard.slot).conn = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    fn target_of_partition(&self, box_name: &str, partition: u16) -> Target {
        match &self.inner.routes {
            Some(r) => Target::Shard(shard_of(box_name, partition, r.shard_count)),
            None => Target::Main,
        }
    }

    async fn target_of_key(&self, box_name: &str, key: &[u8]) -> Target {
        if self.inner.routes.is_none() {
            return Target::Main;
        }
        // The partition count is only a routing hint here: when it cannot be had, the main port
        // answers (and reports the Box's absence itself).
        match self.partition_count(box_name, None).await {
            Ok(p) => self.target_of_partition(box_name, partition_of(key, p)),
            Err(_) => Target::Main,
        }
    }

    /// The Box's partition count, from the cache when younger than `max_age` (any age when
    /// `None`), else from head-box.
    async fn partition_count(&self, box_name: &str, max_age: Option<Duration>) -> Result<u16, ClientError> {
        if let Some((p, at)) = lock(&self.inner.partitions).get(box_name) {
            if max_age.is_none_or(|age| at.elapsed() <= age) {
                return Ok(*p);
            }
        }
        Ok(self.head_box(box_name).await?.partitions)
    }

    fn remember_partitions(&self, info: &BoxInfo) {
        lock(&self.inner.partitions).insert(info.name.clone(), (info.partitions, Instant::now()));
    }

    async fn backoff(&self, attempt: u32, error: &ClientError) -> bool {
        let ClientError::Busy { retry_after_ms, .. } = error else { return false };
        if attempt >= self.inner.config.busy_retries {
            return false;
        }
        let c = &self.inner.config;
        let exp = c.busy_backoff_initial.saturating_mul(1u32 << attempt.min(16)).min(c.busy_backoff_max);
        D::sleep(exp.max(Duration::from_millis(u64::from(*retry_after_ms)))).await;
        true
    }

    /// Sends a request without a payload and returns its reply body (retrying `Busy`).
    async fn unary<T>(
        &self,
        target: Target,
        body: Bytes,
        parse: impl Fn(&Bytes, u32) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.unary_with(target, body, parse, true).await
    }

    /// [`Client::unary`]; with `forget_homes`, a not-owner reply (a Box moved since its home was
    /// learned) makes the client learn every Box's home again at its next request. The home
    /// probe itself expects not-owner replies and passes false.
    async fn unary_with<T>(
        &self,
        target: Target,
        body: Bytes,
        parse: impl Fn(&Bytes, u32) -> Result<T, ClientError>,
        forget_homes: bool,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            let conn = self.connection(target).await?;
            let mut exchange = conn.start(body.clone()).await?;
            exchange.send(Bytes::new(), true).await?;
            let result = single_reply(&mut exchange).await.and_then(|b| parse(&b, self.cap()));
            if forget_homes && matches!(result, Err(ClientError::NotOwner { .. })) {
                lock(&self.inner.homes).clear();
            }
            match result {
                Err(e) if self.backoff(attempt, &e).await => attempt += 1,
                other => return other,
            }
        }
    }

    /// The client of the node that serves `box_name`: this one, or the home node's client when
    /// another node serves the Box (following at most `HOPS_MAX` redirects).
    async fn serving(&self, box_name: &str) -> Client<D> {
        let mut client = self.clone();
        while let Some(home) = client.home_elsewhere(box_name).await {
            client = home;
        }
        client
    }

    /// A request about one key of `box_name`, with its reply parsed by `parse`: sent to the
    /// serving node ([`Client::serving`]), to the shard of the key's partition, retried as
    /// [`Client::unary`] retries.
    async fn keyed<T>(
        &self,
        box_name: &str,
        key: &[u8],
        body: Bytes,
        parse: impl Fn(&Bytes, u32) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let client = self.serving(box_name).await;
        let target = client.target_of_key(box_name, key).await;
        client.unary(target, body, parse).await
    }

    /// Sends one request per partition at once and parses each reply.
    async fn scatter<T>(
        &self,
        box_name: &str,
        partitions: u16,
        body: impl Fn(u16) -> Bytes,
        parse: impl Fn(&Bytes, u32) -> Result<T, ClientError> + Copy,
    ) -> Result<Vec<T>, ClientError> {
        let mut exchanges = Vec::with_capacity(usize::from(partitions));
        for p in 0..partitions {
            let conn = self.connection(self.target_of_partition(box_name, p)).await?;
            let mut exchange = conn.start(body(p)).await?;
            exchange.send(Bytes::new(), true).await?;
            exchanges.push((p, exchange));
        }
        let mut out = Vec::with_capacity(exchanges.len());
        for (p, mut exchange) in exchanges {
            let result = single_reply(&mut exchange).await.and_then(|b| parse(&b, self.cap()));
            let value = match result {
                Err(e @ ClientError::Busy { .. }) if self.backoff(0, &e).await => {
                    self.unary(self.target_of_partition(box_name, p), body(p), parse).await?
                }
                other => other?,
            };
            out.push(value);
        }
        Ok(out)
    }

    /// The node's topology: shard count, ports, placement function.
    ///
    /// # Errors
    /// The node's or the connection's error.
    pub async fn topology(&self) -> Result<Topology, ClientError> {
        self.unary(Target::Main, request::topology(), |b, cap| reply::topology(b, cap)).await
    }

    /// Every shard's counters.
    ///
    /// # Errors
    /// The node's or the connection's error.
    pub async fn stats(&self) -> Result<Vec<ShardStats>, ClientError> {
        self.unary(Target::Main, request::stats(), |b, cap| reply::stats(b, cap)).await
    }

    /// Creates a Box of `partitions` partitions (the node's default, 8, when `None`).
    ///
    /// # Errors
    /// `BoxExists`, `InvalidArgument` (name, partition count), or the connection's error.
    pub async fn create_box(&self, box_name: &str, partitions: Option<u16>) -> Result<BoxInfo, ClientError> {
        self.create_box_with(box_name, partitions, Versioning::Off).await
    }

    /// [`Client::create_box`] with a versioning state (docs/versioning.md).
    ///
    /// # Errors
    /// As [`Client::create_box`].
    pub async fn create_box_with(
        &self,
        box_name: &str,
        partitions: Option<u16>,
        versioning: Versioning,
    ) -> Result<BoxInfo, ClientError> {
        let body = request::create_box(box_name, partitions, versioning);
        let info = self.unary(Target::Main, body, |b, cap| reply::box_reply(b, cap)).await?;
        self.remember_partitions(&info);
        Ok(info)
    }

    /// Sets a Box's versioning state: enabled or suspended (a versioned Box cannot go back to
    /// off). Writes admitted after the reply follow it.
    ///
    /// # Errors
    /// `BoxNotFound`, `InvalidArgument`, or the connection's error.
    pub async fn set_versioning(&self, box_name: &str, versioning: Versioning) -> Result<BoxInfo, ClientError> {
        let this = self.serving(box_name).await;
        this.unary(Target::Main, request::set_versioning(box_name, versioning), |b, cap| reply::box_reply(b, cap)).await
    }

    /// One page of versions and delete markers of the whole Box, in (key, newest first) order:
    /// every partition is asked at once and the pages merged; `next` continues exactly after
    /// the last entry.
    ///
    /// # Errors
    /// `BoxNotFound`, `InvalidArgument`, or the connection's error.
    pub async fn list_versions(
        &self,
        box_name: &str,
        options: &VersionListOptions,
    ) -> Result<VersionPage, ClientError> {
        let this = self.serving(box_name).await;
        let partitions = this.partition_count(box_name, Some(this.inner.config.partition_cache_ttl)).await?;
        let mut options = options.clone();
        for _ in 0..1024 {
            let pages = this
                .scatter(
                    box_name,
                    partitions,
                    |p| request::list_versions(box_name, p, &options),
                    |b, cap| reply::version_page(b, cap),
                )
                .await?;
            let merged = super::list::merge_version_pages(pages, options.limit);
            match (&merged.next, merged.entries.is_empty()) {
                (Some((k, v)), true)
                    if (options.key_marker.as_ref(), options.version_marker) != (Some(k), Some(*v)) =>
                {
                    options.key_marker = Some(k.clone());
                    options.version_marker = Some(*v);
                }
                _ => return Ok(merged),
            }
        }
        Err(ClientError::protocol("the node's version pages made no progress"))
    }

    /// Metadata of version `version` of `key` (zero: the null version).
    ///
    /// # Errors
    /// `NotFound`, `IsDeleteMarker`, or the connection's error.
    pub async fn head_version(&self, box_name: &str, key: &[u8], version: Hlc) -> Result<CandyMeta, ClientError> {
        let body = request::head_version(box_name, key, Some(version));
        self.keyed(box_name, key, body, |b, cap| reply::candy_meta_reply(b, cap)).await
    }

    /// Deletes version `version` of `key` for good (a delete marker too); the next newest
    /// becomes current when it was the current one.
    ///
    /// # Errors
    /// `BoxNotFound`, or the connection's error.
    pub async fn delete_version(&self, box_name: &str, key: &[u8], version: Hlc) -> Result<DeleteDone, ClientError> {
        let body = request::delete_version(box_name, key, None, Some(version));
        self.keyed(box_name, key, body, |b, cap| reply::delete_done(b, cap)).await
    }

    /// Deletes `key` (only if it meets `condition`), saying what was written: in a versioned Box
    /// a delete marker and its id.
    ///
    /// # Errors
    /// As [`Client::delete_if`].
    pub async fn delete_marked(
        &self,
        box_name: &str,
        key: &[u8],
        condition: Option<&Condition>,
    ) -> Result<DeleteDone, ClientError> {
        let body = request::delete(box_name, key, condition);
        self.keyed(box_name, key, body, |b, cap| reply::delete_done(b, cap)).await
    }

    /// Deletes a Box; without `force`, only an empty one.
    ///
    /// # Errors
    /// `BoxNotFound`, `BoxNotEmpty`, or the connection's error.
    pub async fn delete_box(&self, box_name: &str, force: bool) -> Result<(), ClientError> {
        let this = self.serving(box_name).await;
        lock(&this.inner.partitions).remove(box_name);
        this.unary(Target::Main, request::delete_box(box_name, force), |b, cap| reply::done(b, cap)).await
    }

    /// A Box's description (and refreshes the cached partition count).
    ///
    /// # Errors
    /// `BoxNotFound`, or the connection's error.
    pub async fn head_box(&self, box_name: &str) -> Result<BoxInfo, ClientError> {
        let info = self.unary(Target::Main, request::head_box(box_name), |b, cap| reply::box_reply(b, cap)).await?;
        self.remember_partitions(&info);
        Ok(info)
    }

    /// Every Box.
    ///
    /// # Errors
    /// The node's or the connection's error.
    pub async fn list_boxes(&self) -> Result<Vec<BoxInfo>, ClientError> {
        self.unary(Target::Main, request::list_boxes(), |b, cap| reply::box_list(b, cap)).await
    }

    /// Puts a Candy whose bytes come from `body`, streamed in frames (never buffered whole).
    /// `Busy` is not retried: the source cannot be replayed (see [`Client::put_bytes`]).
    ///
    /// # Errors
    /// The node's error (`BoxNotFound`, `InvalidArgument`, `LimitExceeded`, `Busy`, ...), the
    /// source's read error as [`ClientError::Io`], or the connection's error.
    pub async fn put<S: BodySource>(
        &self,
        box_name: &str,
        key: &[u8],
        options: &PutOptions,
        body: S,
    ) -> Result<PutDone, ClientError> {
        let this = self.serving(box_name).await;
        let target = this.target_of_key(box_name, key).await;
        let conn = this.connection(target).await?;
        let mut exchange = conn.start(request::put(box_name, key, options)).await?;
        let hashers = (!options.digests.is_empty()).then(|| Hashers::new(&options.digests));
        let (reply_body, sent) = stream_body_hashed(&mut exchange, body, hashers).await?;
        Ok(reply::put_done(&reply_body, this.cap())?.unwrap_or(PutDone { size: sent, ..PutDone::default() }))
    }

    /// Puts a Candy held in one buffer (retrying `Busy`).
    ///
    /// # Errors
    /// As [`Client::put`].
    pub async fn put_bytes(
        &self,
        box_name: &str,
        key: &[u8],
        options: &PutOptions,
        body: Bytes,
    ) -> Result<PutDone, ClientError> {
        let mut options = options.clone();
        options.size = Some(body.len() as u64);
        let mut attempt = 0;
        loop {
            match self.put(box_name, key, &options, body.clone()).await {
                Err(e) if self.backoff(attempt, &e).await => attempt += 1,
                other => return other,
            }
        }
    }

    /// Starts a get of `range`: the metadata at once, the bytes as a stream. Consume or drop
    /// the stream before awaiting other requests on the same task: an unread stream holds its
    /// connection's reader once its inbox is full.
    ///
    /// # Errors
    /// `NotFound`, `BoxNotFound`, `InvalidArgument` (an unsatisfiable range), or the
    /// connection's error.
    pub async fn get(&self, box_name: &str, key: &[u8], range: ByteRange) -> Result<GetStream<D>, ClientError> {
        self.get_version(box_name, key, range, None).await
    }

    /// [`Client::get`] of version `version` (`None`: the current one; zero: the null version).
    ///
    /// # Errors
    /// As [`Client::get`]; `IsDeleteMarker` for a version that is a delete marker.
    pub async fn get_version(
        &self,
        box_name: &str,
        key: &[u8],
        range: ByteRange,
        version: Option<Hlc>,
    ) -> Result<GetStream<D>, ClientError> {
        let this = self.serving(box_name).await;
        let target = this.target_of_key(box_name, key).await;
        let body = request::get_version(box_name, key, range, version);
        let mut attempt = 0;
        loop {
            let conn = this.connection(target).await?;
            let mut exchange = conn.start(body.clone()).await?;
            exchange.send(Bytes::new(), true).await?;
            let Inbound::Reply { body: reply_body, payload, end } = exchange.recv().await? else {
                return Err(ClientError::protocol("a Data frame before the Reply"));
            };
            match reply::get_done(&reply_body, this.cap()) {
                Ok((meta, first, length)) => {
                    let mut stream = GetStream {
                        meta,
                        first,
                        length,
                        received: 0,
                        head: None,
                        exchange: if end { None } else { Some(exchange) },
                    };
                    stream.count(payload.len())?;
                    stream.head = Some(payload);
                    return Ok(stream);
                }
                Err(e) if this.backoff(attempt, &e).await => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Gets `range` of a Candy into memory.
    ///
    /// # Errors
    /// As [`Client::get`] and [`GetStream::next_piece`].
    pub async fn get_to_vec(
        &self,
        box_name: &str,
        key: &[u8],
        range: ByteRange,
    ) -> Result<(CandyMeta, Vec<u8>), ClientError> {
        let stream = self.get(box_name, key, range).await?;
        let meta = stream.meta().clone();
        Ok((meta, stream.to_vec().await?))
    }

    /// A Candy's metadata.
    ///
    /// # Errors
    /// `NotFound`, `BoxNotFound`, or the connection's error.
    pub async fn head(&self, box_name: &str, key: &[u8]) -> Result<CandyMeta, ClientError> {
        self.keyed(box_name, key, request::head(box_name, key), |b, cap| reply::candy_meta_reply(b, cap)).await
    }

    /// Deletes a Candy (deleting an absent key succeeds).
    ///
    /// # Errors
    /// `BoxNotFound`, or the connection's error.
    pub async fn delete(&self, box_name: &str, key: &[u8]) -> Result<(), ClientError> {
        self.delete_if(box_name, key, None).await
    }

    /// Deletes `key` only if it meets `condition` (`None`: always).
    ///
    /// # Errors
    /// As [`Client::delete`]; `PreconditionFailed` (with the key's current version) when the
    /// condition does not hold, and then nothing was deleted.
    pub async fn delete_if(
        &self,
        box_name: &str,
        key: &[u8],
        condition: Option<&Condition>,
    ) -> Result<(), ClientError> {
        self.keyed(box_name, key, request::delete(box_name, key, condition), |b, cap| reply::done(b, cap)).await
    }

    /// Deletes up to 1,000 keys (each with its condition) in one request: the node fans them
    /// out to their partitions at once. One outcome per key, in the order given; a key's
    /// failure (a condition not met, say) does not stop the others.
    ///
    /// # Errors
    /// `LimitExceeded` for more than 1,000 keys, `BoxNotFound`, or the connection's error (the
    /// request as a whole failed; some keys may have been deleted).
    pub async fn delete_many(&self, box_name: &str, keys: &[DeleteKey]) -> Result<Vec<DeleteOutcome>, ClientError> {
        if keys.len() > DELETE_MANY_KEYS_MAX {
            return Err(ClientError::local_limit(
                "keys per delete-many",
                keys.len() as u64,
                DELETE_MANY_KEYS_MAX as u64,
                "split the keys over several requests",
            ));
        }
        let Some(first) = keys.first() else { return Ok(Vec::new()) };
        let n = keys.len();
        let results = self
            .keyed(box_name, &first.key, request::delete_many(box_name, keys), move |b, cap| {
                reply::delete_many(b, cap, n)
            })
            .await?;
        Ok(keys
            .iter()
            .zip(results)
            .map(|(k, result)| DeleteOutcome { key: k.key.clone(), version_id: k.version_id, result })
            .collect())
    }

    /// Rewrites the metadata of `key`'s live object in place (no byte of it moves): a new
    /// version with the same bytes, only if the key meets `condition`.
    ///
    /// # Errors
    /// `NotFound`, `PreconditionFailed`, `LimitExceeded` (metadata over its limits),
    /// `BoxNotFound`, or the connection's error.
    pub async fn set_meta(
        &self,
        box_name: &str,
        key: &[u8],
        replace: &MetaReplace,
        condition: Option<&Condition>,
    ) -> Result<Option<PutDone>, ClientError> {
        let body = request::set_meta(box_name, key, replace, condition);
        self.keyed(box_name, key, body, |b, cap| reply::put_done(b, cap)).await
    }

    /// One page of a listing of the whole Box: every partition is asked at once, the pages are
    /// merged in key order, and the returned cursor continues exactly after the last key.
    ///
    /// # Errors
    /// `BoxNotFound`, `InvalidArgument`, or the connection's error.
    pub async fn list(&self, box_name: &str, options: &ListOptions) -> Result<ListPage, ClientError> {
        let this = self.serving(box_name).await;
        let partitions = this.partition_count(box_name, Some(this.inner.config.partition_cache_ttl)).await?;
        let mut options = options.clone();
        // A page may come back empty with a cursor when a partition stopped short; ask again
        // from that cursor rather than hand the caller an empty page.
        for _ in 0..1024 {
            let pages = this
                .scatter(
                    box_name,
                    partitions,
                    |p| request::list(box_name, p, &options),
                    |b, cap| reply::list_page(b, cap),
                )
                .await?;
            let merged = merge_pages(pages, options.reverse, options.limit);
            match (&merged.next_start_after, merged.entries.is_empty()) {
                (Some(cursor), true) if options.start_after.as_ref() != Some(cursor) => {
                    options.start_after = Some(cursor.clone());
                }
                _ => return Ok(merged),
            }
        }
        Err(ClientError::protocol("the node's list pages made no progress"))
    }

    /// Every entry of a listing, paging until the end (memory grows with the result).
    ///
    /// # Errors
    /// As [`Client::list`].
    pub async fn list_all(&self, box_name: &str, options: &ListOptions) -> Result<Vec<super::ListEntry>, ClientError> {
        let mut options = options.clone();
        let mut out = Vec::new();
        loop {
            let page = self.list(box_name, &options).await?;
            out.extend(page.entries);
            match page.next_start_after {
                Some(cursor) => options.start_after = Some(cursor),
                None => return Ok(out),
            }
        }
    }

    /// Deletes every key in `range` with one range tombstone per partition, sent to all at once.
    ///
    /// # Errors
    /// `BoxNotFound`, `InvalidArgument`, or the connection's error (some partitions may then
    /// have applied it: deleting again is harmless).
    pub async fn delete_range(&self, box_name: &str, range: &KeyRange) -> Result<(), ClientError> {
        let this = self.serving(box_name).await;
        // Always fresh: a stale, smaller partition count would silently skip partitions.
        let partitions = this.head_box(box_name).await?.partitions;
        this.scatter(box_name, partitions, |p| request::delete_range(box_name, p, range), |b, cap| reply::done(b, cap))
            .await?;
        Ok(())
    }

    /// Copies `source_key` to `target_key`, run by the node in one request.
    ///
    /// # Errors
    /// `NotFound`, `BoxNotFound`, or the connection's error.
    pub async fn copy(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
    ) -> Result<Option<PutDone>, ClientError> {
        self.copy_or_rename_if(box_name, source_key, target_key, false, &CopyOptions::default()).await
    }

    /// Renames `source_key` to `target_key`, run by the node in one request.
    ///
    /// # Errors
    /// `NotFound`, `BoxNotFound`, or the connection's error.
    pub async fn rename(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
    ) -> Result<Option<PutDone>, ClientError> {
        self.copy_or_rename_if(box_name, source_key, target_key, true, &CopyOptions::default()).await
    }

    /// [`Client::copy`] (or, with `rename`, [`Client::rename`]) only if the target key meets
    /// `options.condition` (`None`: always), with `options.replace` as the target's metadata
    /// (S3's REPLACE directive; `None`: the source's). A refused rename keeps its source and
    /// releases it at once.
    ///
    /// # Errors
    /// As [`Client::copy`]; `PreconditionFailed` (with the target's current version) when the
    /// condition does not hold, and then nothing changed.
    pub async fn copy_or_rename_if(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
        rename: bool,
        options: &CopyOptions,
    ) -> Result<Option<PutDone>, ClientError> {
        let req = if rename {
            request::rename(box_name, source_key, target_key, options)
        } else {
            request::copy(box_name, source_key, target_key, options)
        };
        self.keyed(box_name, source_key, req, |b, cap| reply::put_done(b, cap)).await
    }

    /// Relay step: the live locator of `key`, as bytes to relay verbatim.
    ///
    /// # Errors
    /// `NotFound`, `BoxNotFound`, or the connection's error.
    pub async fn get_locator(&self, box_name: &str, key: &[u8]) -> Result<RelayedLocator, ClientError> {
        self.keyed(box_name, key, request::get_locator(box_name, key), reply::locator_reply).await
    }

    /// Relay step: the locator of version `version` of `key` (zero: the null version), to
    /// relay verbatim (a copy of an old version through the client).
    ///
    /// # Errors
    /// `NotFound`, `IsDeleteMarker`, `BoxNotFound`, or the connection's error.
    pub async fn get_locator_version(
        &self,
        box_name: &str,
        key: &[u8],
        version: Hlc,
    ) -> Result<RelayedLocator, ClientError> {
        let body = request::get_locator_version(box_name, key, Some(version));
        self.keyed(box_name, key, body, reply::locator_reply).await
    }

    /// Relay step: records a rename intent at the source and returns its token and locator.
    ///
    /// # Errors
    /// `NotFound`, `BoxNotFound`, or the connection's error.
    pub async fn prepare_rename(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
    ) -> Result<RenamePrepared, ClientError> {
        let body = request::prepare_rename(box_name, source_key, target_key);
        self.keyed(box_name, source_key, body, reply::rename_prepared).await
    }

    /// Relay step: writes `locator` (bytes exactly as received) under `key`; for a rename (the
    /// [`RenamePrepared`] of its prepare-rename), also writes the rendezvous marker. The token
    /// and the source partition travel with it, so the node needs no search for the intent.
    ///
    /// # Errors
    /// `ForgedLocator`, `BoxNotFound`, or the connection's error.
    pub async fn zero_copy_put(
        &self,
        box_name: &str,
        key: &[u8],
        locator: &Bytes,
        rename: Option<&RenamePrepared>,
    ) -> Result<Option<PutDone>, ClientError> {
        self.zero_copy_put_with(box_name, key, locator, rename, &CopyOptions::default()).await
    }

    /// [`Client::zero_copy_put`] only if `key` meets `options.condition`, with
    /// `options.replace` as the written object's metadata.
    ///
    /// # Errors
    /// As [`Client::zero_copy_put`]; `PreconditionFailed`.
    pub async fn zero_copy_put_with(
        &self,
        box_name: &str,
        key: &[u8],
        locator: &Bytes,
        rename: Option<&RenamePrepared>,
        options: &CopyOptions,
    ) -> Result<Option<PutDone>, ClientError> {
        let rename = rename.map(|r| (&r.token[..], r.source_partition));
        let body = request::zero_copy_put(box_name, key, locator, rename, options);
        self.keyed(box_name, key, body, |b, cap| reply::put_done(b, cap)).await
    }

    /// Relay step: finishes a rename at the source once the destination is durable.
    ///
    /// # Errors
    /// `BoxNotFound`, or the connection's error.
    pub async fn complete_rename(
        &self,
        box_name: &str,
        source_key: &[u8],
        token: &[u8],
    ) -> Result<RenameOutcome, ClientError> {
        let body = request::complete_rename(box_name, source_key, token);
        self.keyed(box_name, source_key, body, |b, cap| reply::rename_completed(b, cap)).await
    }

    /// Copies by relaying the source's locator to the destination (no bytes move).
    ///
    /// # Errors
    /// As [`Client::get_locator`] and [`Client::zero_copy_put`].
    pub async fn relay_copy(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
    ) -> Result<Option<PutDone>, ClientError> {
        self.relay_copy_with(box_name, source_key, target_key, &CopyOptions::default()).await
    }

    /// [`Client::relay_copy`] only if the target meets `options.condition`, with
    /// `options.replace` as its metadata.
    ///
    /// # Errors
    /// As [`Client::relay_copy`]; `PreconditionFailed`.
    pub async fn relay_copy_with(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
        options: &CopyOptions,
    ) -> Result<Option<PutDone>, ClientError> {
        let located = self.get_locator(box_name, source_key).await?;
        self.zero_copy_put_with(box_name, target_key, &located.locator, None, options).await
    }

    /// Renames by prepare-rename at the source, zero-copy-put at the destination and
    /// complete-rename at the source.
    ///
    /// # Errors
    /// As the three steps; after a failure past the first step the intent is finished or
    /// abandoned by the node's maintenance.
    pub async fn relay_rename(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
    ) -> Result<RenameOutcome, ClientError> {
        self.relay_rename_with(box_name, source_key, target_key, &CopyOptions::default()).await
    }

    /// [`Client::relay_rename`] only if the target meets `options.condition` (a refused rename
    /// keeps its source, and the node releases its claim at once), with `options.replace` as the
    /// target's metadata.
    ///
    /// # Errors
    /// As [`Client::relay_rename`]; `PreconditionFailed`.
    pub async fn relay_rename_with(
        &self,
        box_name: &str,
        source_key: &[u8],
        target_key: &[u8],
        options: &CopyOptions,
    ) -> Result<RenameOutcome, ClientError> {
        let prepared = self.prepare_rename(box_name, source_key, target_key).await?;
        self.zero_copy_put_with(box_name, target_key, &prepared.locator, Some(&prepared), options).await?;
        self.complete_rename(box_name, source_key, &prepared.token).await
    }

    /// Starts a multipart upload.
    ///
    /// # Errors
    /// `BoxNotFound`, `InvalidArgument`, or the connection's error.
    pub async fn create_upload(&self, box_name: &str, key: &[u8], options: &PutOptions) -> Result<u64, ClientError> {
        if options.condition.is_some() {
            // The completion checks it; refuse here rather than drop it silently.
            return Err(ClientError::local_argument(
                "condition",
                "a multipart upload's condition goes with its completion (complete_upload_with)",
            ));
        }
        if !options.digests.is_empty() {
            return Err(ClientError::local_argument(
                "digests",
                "a multipart upload's digests go with its completion (complete_upload_with's user_meta)",
            ));
        }
        self.keyed(box_name, key, request::create_upload(box_name, key, options), |b, cap| {
            reply::upload_created(b, cap)
        })
        .await
    }

    /// Uploads part `part_number` (from 1) of an upload, streamed from `body`.
    ///
    /// # Errors
    /// `NotFound` (no such upload), `InvalidArgument`, `LimitExceeded`, the source's read
    /// error, or the connection's error.
    pub async fn upload_part<S: BodySource>(
        &self,
        box_name: &str,
        key: &[u8],
        upload_id: u64,
        part_number: u32,
        size: Option<u64>,
        body: S,
    ) -> Result<PartInfo, ClientError> {
        let this = self.serving(box_name).await;
        let target = this.target_of_key(box_name, key).await;
        let conn = this.connection(target).await?;
        let mut exchange = conn.start(request::upload_part(box_name, key, upload_id, part_number, size)).await?;
        let (reply_body, sent) = stream_body(&mut exchange, body).await?;
        let done = reply::put_done(&reply_body, this.cap())?;
        Ok(PartInfo { part_number, size: done.map_or(sent, |d| d.size), checksum: done.map_or(0, |d| d.checksum) })
    }

    /// Completes an upload from the given parts, in order.
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument` (a part too small, missing or out of order), or the
    /// connection's error.
    pub async fn complete_upload(
        &self,
        box_name: &str,
        key: &[u8],
        upload_id: u64,
        part_numbers: &[u32],
    ) -> Result<Option<PutDone>, ClientError> {
        self.complete_upload_with(box_name, key, upload_id, part_numbers, &[], None).await
    }

    /// [`Client::complete_upload`] with `user_meta` added to the upload's metadata (committed
    /// with the object: a digest of the whole), only if the key meets `condition` (a refused
    /// completion leaves the upload in place).
    ///
    /// # Errors
    /// As [`Client::complete_upload`]; `PreconditionFailed`.
    pub async fn complete_upload_with(
        &self,
        box_name: &str,
        key: &[u8],
        upload_id: u64,
        part_numbers: &[u32],
        user_meta: &[(String, String)],
        condition: Option<&Condition>,
    ) -> Result<Option<PutDone>, ClientError> {
        let body = request::complete_upload(box_name, key, upload_id, part_numbers, user_meta, condition);
        self.keyed(box_name, key, body, |b, cap| reply::put_done(b, cap)).await
    }

    /// Aborts an upload and drops its parts.
    ///
    /// # Errors
    /// `NotFound`, or the connection's error.
    pub async fn abort_upload(&self, box_name: &str, key: &[u8], upload_id: u64) -> Result<(), ClientError> {
        self.keyed(box_name, key, request::abort_upload(box_name, key, upload_id), |b, cap| reply::done(b, cap)).await
    }

    /// Every in-progress upload of the Box, from all partitions, by key then upload id.
    ///
    /// # Errors
    /// `BoxNotFound`, or the connection's error.
    pub async fn list_uploads(&self, box_name: &str) -> Result<Vec<UploadInfo>, ClientError> {
        let this = self.serving(box_name).await;
        let partitions = this.partition_count(box_name, Some(this.inner.config.partition_cache_ttl)).await?;
        let lists = this
            .scatter(box_name, partitions, |p| request::list_uploads(box_name, p), |b, cap| reply::upload_list(b, cap))
            .await?;
        let mut all: Vec<UploadInfo> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
        Ok(all)
    }

    /// The parts uploaded so far.
    ///
    /// # Errors
    /// `NotFound`, or the connection's error.
    pub async fn list_parts(&self, box_name: &str, key: &[u8], upload_id: u64) -> Result<Vec<PartInfo>, ClientError> {
        self.keyed(box_name, key, request::list_parts(box_name, key, upload_id), |b, cap| reply::part_list(b, cap))
            .await
    }

    /// Uploads everything `body` yields as a multipart upload of `part_bytes` parts (the last
    /// may be smaller), then completes it; on failure the upload is aborted. `progress` is told
    /// the bytes of every finished part.
    ///
    /// # Errors
    /// `InvalidArgument` for a part size under the minimum or too many parts; as
    /// [`Client::upload_part`] and [`Client::complete_upload`].
    pub async fn put_multipart<S: BodySource>(
        &self,
        box_name: &str,
        key: &[u8],
        options: &PutOptions,
        part_bytes: u64,
        body: S,
        mut progress: impl FnMut(u64),
    ) -> Result<Option<PutDone>, ClientError> {
        if part_bytes == 0 {
            return Err(ClientError::local_argument("part_size", "a part size must be positive"));
        }
        // The condition and the digests (of the whole body, across its parts) go with the
        // completion, which commits the object.
        let create = PutOptions { condition: None, digests: Vec::new(), ..options.clone() };
        let mut body = Hashing::new(body, Hashers::new(&options.digests));
        let upload_id = self.create_upload(box_name, key, &create).await?;
        let result = async {
            let mut parts = Vec::new();
            let mut carry: Option<Bytes> = None;
            let mut exhausted = false;
            loop {
                if carry.is_none() && !exhausted {
                    carry = body.next_piece().await.map_err(|e| ClientError::io("read body", e))?;
                    exhausted = carry.is_none();
                }
                if carry.is_none() && exhausted && !parts.is_empty() {
                    break;
                }
                let number = u32::try_from(parts.len() + 1).unwrap_or(u32::MAX);
                if number > MULTIPART_PARTS_MAX {
                    return Err(ClientError::local_limit(
                        "multipart_parts_max",
                        u64::from(number),
                        u64::from(MULTIPART_PARTS_MAX),
                        "the body needs more parts than an upload may have: use larger parts",
                    ));
                }
                let part = Take::new(&mut body, &mut carry, part_bytes, &mut exhausted);
                let info = self.upload_part(box_name, key, upload_id, number, None, part).await?;
                progress(info.size);
                parts.push(number);
                if exhausted && carry.is_none() {
                    break;
                }
            }
            let digests = body.take_digests();
            self.complete_upload_with(box_name, key, upload_id, &parts, &digests, options.condition.as_ref()).await
        }
        .await;
        if result.is_err() {
            // Best effort: the node's TTL sweep removes it otherwise.
            let _ = self.abort_upload(box_name, key, upload_id).await;
        }
        result
    }
}

fn routes_of(t: &Topology) -> Result<Routes, String> {
    if t.placement != PLACEMENT_V1 {
        return Err(format!("the node's placement `{}` is unknown to this client", t.placement));
    }
    if t.shard_count == 0 || t.ports.len() != usize::from(t.shard_count) {
        return Err(format!("the topology names {} shards but {} ports", t.shard_count, t.ports.len()));
    }
    Ok(Routes { shard_count: t.shard_count, ports: t.ports.clone() })
}

/// Waits for a reply that has no data frames and returns its body.
async fn single_reply<D: Driver>(exchange: &mut Exchange<D>) -> Result<Bytes, ClientError> {
    match exchange.recv().await? {
        Inbound::Reply { body, end: true, .. } => Ok(body),
        Inbound::Reply { body, end: false, .. } => {
            // Unexpected data frames: read them off so the request ends cleanly.
            while !matches!(exchange.recv().await?, Inbound::Data { end: true, .. }) {}
            Ok(body)
        }
        Inbound::Data { .. } => Err(ClientError::protocol("a Data frame before the Reply")),
    }
}

/// Streams `body` as the payload of the exchange's request, one piece ahead, and returns the
/// reply body and the bytes sent. An early reply (an error before the end) stops the stream.
async fn stream_body<D: Driver, S: BodySource>(
    exchange: &mut Exchange<D>,
    body: S,
) -> Result<(Bytes, u64), ClientError> {
    stream_body_hashed(exchange, body, None).await
}

/// [`stream_body`], hashing the body with `hashers` when given and ending it with their digests
/// in a trailer.
async fn stream_body_hashed<D: Driver, S: BodySource>(
    exchange: &mut Exchange<D>,
    mut body: S,
    mut hashers: Option<Hashers>,
) -> Result<(Bytes, u64), ClientError> {
    let read = |e| ClientError::io("read body", e);
    let mut sent = 0u64;
    let mut pending = body.next_piece().await.map_err(read)?;
    loop {
        let piece = pending.take();
        let next = match piece {
            Some(_) => body.next_piece().await.map_err(read)?,
            None => None,
        };
        let end = next.is_none();
        let piece = piece.unwrap_or_default();
        sent += piece.len() as u64;
        if let Some(h) = &mut hashers {
            h.update(&piece);
        }
        if end {
            let mut trailer = hashers.take().map(Hashers::finish).unwrap_or_default();
            trailer.extend(body.trailer());
            if trailer.is_empty() {
                exchange.send(piece, true).await?;
            } else {
                exchange.send_with_trailer(piece, &request::put_trailer(&trailer)).await?;
            }
        } else {
            exchange.send(piece, false).await?;
        }
        if !end {
            if let Some(early) = exchange.try_recv() {
                // The node answered before the end (an error): end the message, whose rest it
                // drops, and report its answer.
                exchange.send(Bytes::new(), true).await?;
                return match early? {
                    Inbound::Reply { body, .. } => Ok((body, sent)),
                    Inbound::Data { .. } => Err(ClientError::protocol("a Data frame before the Reply")),
                };
            }
            pending = next;
            continue;
        }
        return Ok((single_reply(exchange).await?, sent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(placement: &str, shard_count: u16, ports: Vec<u16>) -> Topology {
        Topology { node_id: 1, shard_count, ports, main_port: 7420, placement: placement.to_owned(), shard: 0 }
    }

    #[test]
    fn routing_needs_the_known_placement_and_one_port_per_shard() {
        let routes = routes_of(&topology(PLACEMENT_V1, 2, vec![7421, 7422])).expect("routes");
        assert_eq!((routes.shard_count, routes.ports), (2, vec![7421, 7422]));
        let why = routes_of(&topology("crc32-box-plus-partition-v2", 2, vec![1, 2])).expect_err("unknown");
        assert!(why.contains("crc32-box-plus-partition-v2"), "{why}");
        assert!(routes_of(&topology(PLACEMENT_V1, 3, vec![1, 2])).is_err());
        assert!(routes_of(&topology(PLACEMENT_V1, 0, vec![])).is_err());
    }
}
