//! HTTP on its own thread (never a shard's core): `/healthz`, `/readyz`, `/metrics`.
//!
//! Invariants:
//! - The thread only reads atomics ([`crate::metrics::NodeMetrics`]); it never touches a shard.
//! - `/readyz` answers 200 only after every partition was recovered and every listener bound.

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
                "/readyz" if metrics.ready.load(std::sync::atomic::Ordering::Relaxed) => {
                    (200, "ready\n".to_string(), "text/plain")
                }
                "/readyz" => (503, "not ready\n".to_string(), "text/plain"),
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
