//! Listeners: the main port (one SO_REUSEPORT socket per shard, so the kernel spreads
//! connections over the shards) and each shard's own port; and the accept loop.
//!
//! Invariants:
//! - Every socket is bound by the main thread before any shard starts, so the ready line names
//!   ports that already accept (the kernel queues connections until a shard takes them).
//! - The node-wide connection cap is enforced at accept: one over the cap is closed at once.

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

/// Binds the main port once per shard and each shard's own port.
///
/// # Errors
/// The address and the operating system's error when a bind fails.
pub fn bind(listen: SocketAddr, port_base: impl Fn(u16) -> u16, shard_count: u16) -> Result<Bound, String> {
    let fail = |addr: SocketAddr, e: std::io::Error| format!("bind {addr}: {e}");
    let first = bind_one(listen, true).map_err(|e| fail(listen, e))?;
    let main_port = port_of(&first).map_err(|e| fail(listen, e))?;
    let main_addr = SocketAddr::new(listen.ip(), main_port);
    let mut main = vec![first];
    for _ in 1..shard_count {
        main.push(bind_one(main_addr, true).map_err(|e| fail(main_addr, e))?);
    }
    let base = port_base(main_port);
    let mut own = Vec::with_capacity(usize::from(shard_count));
    let mut ports = Vec::with_capacity(usize::from(shard_count));
    for s in 0..shard_count {
        let port = if base == 0 {
            0
        } else {
            base.checked_add(s).ok_or_else(|| format!("port_base {base} + shard {s} exceeds 65535"))?
        };
        let addr = SocketAddr::new(listen.ip(), port);
        let l = bind_one(addr, false).map_err(|e| fail(addr, e))?;
        ports.push(port_of(&l).map_err(|e| fail(addr, e))?);
        own.push(l);
    }
    Ok(Bound { main, own, main_port, ports })
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
                    tracing::warn!(%peer, connections_max = max, "connection refused: too many connections");
                    drop(stream);
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
