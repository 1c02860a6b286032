//! HTTP on its own thread (never a shard's core): `/healthz`, `/readyz`, `/metrics`.
//!
//! Invariants:
//! - The thread only reads atomics ([`crate::metrics::NodeMetrics`]); it never touches a shard.
//! - `/readyz` answers 200 only after every partition was recovered and every listener bound,
//!   and only while nothing is degraded (a quarantined partition); otherwise 503 with the
//!   reasons, one per line.

use std::{sync::Arc, thread::JoinHandle};

use crate::metrics::NodeMetrics;

/// Binds the HTTP server; [`serve`] runs it.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: std::net::SocketAddr) -> Result<Arc<tiny_http::Server>, crate::listener::BindError> {
    let fail = |source| crate::listener::BindError { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    tiny_http::Server::from_listener(listener, None)
        .map(Arc::new)
        .map_err(|e| fail(std::io::Error::other(e.to_string())))
}

/// The bound port.
pub fn port(server: &tiny_http::Server) -> u16 {
    server.server_addr().to_ip().map_or(0, |a| a.port())
}

/// `/readyz`: 200 `ready` when the node serves everything it owns; 503 with one line per reason
/// otherwise (still recovering or shutting down; a quarantined partition), so that an operator
/// or an orchestrator sees why.
fn readiness(metrics: &NodeMetrics) -> (u16, String, &'static str) {
    if !metrics.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return (503, "not ready\n".to_string(), "text/plain");
    }
    let degraded = metrics.degraded();
    if degraded.is_empty() {
        return (200, "ready\n".to_string(), "text/plain");
    }
    let mut body = String::from("degraded\n");
    for line in degraded {
        body.push_str(&line);
        body.push('\n');
    }
    (503, body, "text/plain")
}

/// Serves requests on a thread of its own until the server is unblocked.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn serve(server: Arc<tiny_http::Server>, metrics: Arc<NodeMetrics>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("candybox-http".into()).spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or_default().to_string();
            let (status, body, content_type) = match path.as_str() {
                "/healthz" => (200, "ok\n".to_string(), "text/plain"),
                "/readyz" => readiness(&metrics),
                "/metrics" => (200, metrics.render(), "text/plain; version=0.0.4"),
                _ => (404, "not found\n".to_string(), "text/plain"),
            };
            let mut response = tiny_http::Response::from_string(body).with_status_code(status);
            if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes()) {
                response = response.with_header(h);
            }
            if let Err(e) = request.respond(response) {
                tracing::debug!(error = %e, "http response failed");
            }
        }
    })
}
