//! Listeners: the main port (one SO_REUSEPORT socket per shard, so the kernel spreads
//! connections over the shards) and each shard's own port; and the accept loop.
//!
//! Invariants:
//! - Every socket is bound by the main thread before any shard starts, so the ready line names
//!   ports that already accept (the kernel queues connections until a shard takes them).
//! - The node-wide connection cap is enforced at accept: one over the cap gets its first request
//!   answered Busy ("too many connections") and is closed, never served.

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::atomic::Ordering::{AcqRel, Relaxed},
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{connection, shard::Shard};

/// The sockets of every shard.
#[derive(Debug)]
pub struct Bound {
    /// Per shard: its socket on the main port.
    pub main: Vec<std::net::TcpListener>,
    /// Per shard: its own port's socket.
    pub own: Vec<std::net::TcpListener>,
    /// The main port.
    pub main_port: u16,
    /// Each shard's own port.
    pub ports: Vec<u16>,
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn port_of(l: &std::net::TcpListener) -> std::io::Result<u16> {
    Ok(l.local_addr()?.port())
}

/// A bind that failed: which address, and the operating system's error.
#[derive(Debug, thiserror::Error)]
#[error("bind {addr}: {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl BindError {
    /// True when another socket still holds the address: after a crash, the dead process's
    /// listeners linger until the kernel has torn down its io_uring, well under a second.
    pub fn in_use(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }
}

/// Binds the main port once per shard and each shard's own port.
///
/// # Errors
/// The address and the operating system's error when a bind fails.
pub fn bind(listen: SocketAddr, port_base: impl Fn(u16) -> u16, shard_count: u16) -> Result<Bound, BindError> {
    let fail = |addr: SocketAddr| move |source: std::io::Error| BindError { addr, source };
    let first = bind_one(listen, true).map_err(fail(listen))?;
    let main_port = port_of(&first).map_err(fail(listen))?;
    let main_addr = SocketAddr::new(listen.ip(), main_port);
    let mut main = vec![first];
    for _ in 1..shard_count {
        main.push(bind_one(main_addr, true).map_err(fail(main_addr))?);
    }
    let base = port_base(main_port);
    let mut own = Vec::with_capacity(usize::from(shard_count));
    let mut ports = Vec::with_capacity(usize::from(shard_count));
    for s in 0..shard_count {
        let port = if base == 0 {
            0
        } else {
            base.checked_add(s).ok_or_else(|| BindError {
                addr: SocketAddr::new(listen.ip(), base),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("port_base {base} + shard {s} exceeds 65535"),
                ),
            })?
        };
        let addr = SocketAddr::new(listen.ip(), port);
        let l = bind_one(addr, false).map_err(fail(addr))?;
        ports.push(port_of(&l).map_err(fail(addr))?);
        own.push(l);
    }
    Ok(Bound { main, own, main_port, ports })
}

/// Runs `bind` until it succeeds, retrying while its address is still in use for at most
/// `within` (a restart right after `kill -9` finds the dead process's listeners still open for
/// a moment); every other error, and the last in-use error, is returned at once.
///
/// # Errors
/// The bind's error.
pub fn bind_retrying<T>(
    within: std::time::Duration,
    mut bind: impl FnMut() -> Result<T, BindError>,
) -> Result<T, BindError> {
    let deadline = std::time::Instant::now() + within;
    let mut said = false;
    loop {
        match bind() {
            Err(e) if e.in_use() && std::time::Instant::now() < deadline => {
                if !said {
                    tracing::warn!(addr = %e.addr, within_ms = within.as_millis() as u64, "address still in use (a previous process may be exiting); retrying the bind");
                    said = true;
                }
                std::thread::sleep(crate::limits::BIND_RETRY_INTERVAL);
            }
            other => {
                if said && other.is_ok() {
                    tracing::info!("bound after retrying");
                }
                return other;
            }
        }
    }
}

/// Accepts connections until shutdown; each connection runs as a task of this shard.
pub async fn accept_loop(shard: Rc<Shard>, listener: monoio::net::TcpListener) {
    let stop = shard.shutdown_signal();
    let max = shard.shared.config.connections_max;
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => r,
            _ = stop.recv() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let open = shard.shared.connections.fetch_add(1, AcqRel);
                if open >= max {
                    shard.shared.connections.fetch_sub(1, AcqRel);
                    let m = shard.metrics();
                    if m.connections_refused.fetch_add(1, Relaxed).is_multiple_of(1000) {
                        tracing::warn!(%peer, connections_max = max, "connection refused: too many connections (logged once per 1,000)");
                    }
                    // Answered Busy on its first request, then closed; a bounded number at once.
                    if shard.refusing.get() < crate::limits::REFUSALS_IN_FLIGHT_MAX {
                        shard.refusing.set(shard.refusing.get() + 1);
                        let shard = shard.clone();
                        drop(monoio::spawn(async move {
                            connection::refuse(stream, max).await;
                            shard.refusing.set(shard.refusing.get() - 1);
                        }));
                    }
                    continue;
                }
                let m = shard.metrics();
                m.connections_total.fetch_add(1, Relaxed);
                m.connections_open.fetch_add(1, Relaxed);
                let shard = shard.clone();
                drop(monoio::spawn(async move {
                    connection::serve(shard.clone(), stream, peer).await;
                    shard.shared.connections.fetch_sub(1, AcqRel);
                    shard.metrics().connections_open.fetch_sub(1, Relaxed);
                }));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                candybox_core::runtime::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use super::{bind, bind_retrying};

    /// Story: a restart right after `kill -9` failed in 6 of 15 tries with `Address already in
    /// use`: the dead process's listeners were still open for a moment, and start-up gave up at
    /// the first try. The bind is now retried while the address is in use.
    #[test]
    fn a_bind_retries_while_the_address_is_still_held() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind holder");
        let addr: SocketAddr = holder.local_addr().expect("addr");
        // Held throughout: the bind gives up after its window with the in-use error.
        let err = bind_retrying(Duration::from_millis(300), || bind(addr, |_| 0, 1)).expect_err("held");
        assert!(err.in_use(), "{err}");
        assert_eq!(err.addr, addr);
        // Released while the retries go on: the bind succeeds on the same port.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(holder);
        });
        let bound = bind_retrying(Duration::from_secs(20), || bind(addr, |_| 0, 1)).expect("bound after release");
        assert_eq!(bound.main_port, addr.port());
        release.join().expect("release thread");
    }
}
