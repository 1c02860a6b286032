//! The HTTP front of the gateway: every S3 request passes through here on its way to s3s.
//!
//! Invariants:
//! - Every reply carries `x-amz-request-id` (and `x-amz-id-2`), and every XML error body
//!   carries the same id as `RequestId`, and the request's path as `Resource`.
//! - Error bodies are small (s3s writes them whole); only a reply with an error status and an
//!   XML body up to `ERROR_BODY_BYTES_MAX` is rewritten, and object bodies are never touched.
//! - Each request is counted under its S3 operation (named by s3s's access check), with its
//!   latency and status class.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use s3s::access::{S3Access, S3AccessContext};
use s3s::service::S3Service;
use s3s::{Body, S3Result};

use crate::buckets::Buckets;
use crate::cors::{self, CorsRule};
use crate::host::Domains;
use crate::metrics::Metrics;

/// Largest error body the front rewrites.
pub const ERROR_BODY_BYTES_MAX: usize = 64 * 1024;

/// Where the access check writes the operation's name for the front to read.
#[derive(Clone, Default)]
pub struct OpSlot(Arc<Mutex<Option<String>>>);

impl OpSlot {
    fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(name.to_owned());
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// s3s's access hook: names the operation for the metrics. It lets every request through,
/// anonymous ones too: each handler checks the caller against the bucket's and object's ACLs
/// (an unsigned request reaches only what a grant to everyone allows).
pub struct Access;

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let name = cx.s3_op().name().to_owned();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            slot.set(&name);
        }
        Ok(())
    }
}

/// The address of the connection a request came on (a policy's `aws:SourceIp`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The service hyper calls for each request.
#[derive(Clone)]
pub struct Front {
    s3: S3Service,
    metrics: Arc<Metrics>,
    ids: Arc<RequestIds>,
    buckets: Arc<Buckets>,
    domains: Domains,
    peer: Option<Peer>,
}

/// Request ids: a random per-process prefix and a counter, 16 uppercase hex digits as S3's.
pub struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    /// Ids with a fresh random prefix.
    pub fn new() -> RequestIds {
        RequestIds { prefix: rand::random(), next: AtomicU64::new(1) }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:08X}{:08X}", self.prefix, n & 0xFFFF_FFFF)
    }
}

impl Front {
    /// The front of `s3`.
    pub fn new(s3: S3Service, metrics: Arc<Metrics>, buckets: Arc<Buckets>, domains: Domains) -> Front {
        Front { s3, metrics, ids: Arc::new(RequestIds::new()), buckets, domains, peer: None }
    }

    /// The front of one connection, from `peer`.
    pub fn for_peer(&self, peer: std::net::SocketAddr) -> Front {
        Front { peer: Some(Peer(peer)), ..self.clone() }
    }

    /// The CORS rules of the bucket a request names (none when it names none, or an unknown
    /// one).
    async fn cors_rules(&self, host: Option<&str>, path: &str) -> Vec<CorsRule> {
        let name = host.and_then(|h| self.domains.bucket_of_host(h)).or_else(|| cors::bucket_of_path(path));
        let Some(name) = name else { return Vec::new() };
        match self.buckets.resolve(name).await {
            Ok(b) => b.record.cors.clone(),
            Err(_) => Vec::new(),
        }
    }

    /// S3's answer to a CORS preflight, before (and without) any signature check.
    async fn preflight(&self, headers: &http::HeaderMap, path: &str) -> Response<Body> {
        let refuse = |status: StatusCode, code: &str, message: &str| {
            let mut r = Response::new(Body::from(error_xml(code, message)));
            *r.status_mut() = status;
            r
        };
        let origin = headers.get("origin").and_then(|v| v.to_str().ok());
        let method = headers.get("access-control-request-method").and_then(|v| v.to_str().ok());
        let (Some(origin), Some(method)) = (origin, method) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
            );
        };
        let host = headers.get(http::header::HOST).and_then(|v| v.to_str().ok());
        let rules = self.cors_rules(host, path).await;
        if rules.is_empty() {
            return refuse(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
            );
        }
        let requested = cors::requested_headers(headers);
        match cors::find(&rules, origin, method, &requested) {
            Some(rule) => {
                let mut r = Response::new(Body::empty());
                cors::answer(r.headers_mut(), rule, origin, Some(&requested));
                r
            }
            None => refuse(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            ),
        }
    }

    async fn serve(self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let id = self.ids.next();
        let path = req.uri().path().to_owned();
        let slot = OpSlot::default();
        let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        // `Expect: 100-continue` on a request without a body: hyper answers with the final
        // response alone (no body to ask for, as RFC 9110 allows). botocore then keeps that
        // response's status line for the connection's next `Expect` request and reads the next
        // response's status line as a header, waiting out its read timeout (60 s in the AWS
        // CLI). Closing such a connection after the answer costs one handshake and avoids it.
        let close_after = !has_body
            && req
                .headers()
                .get(http::header::EXPECT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        let keep = match (has_body, close_after) {
            (_, true) => Keep::Never,
            (true, false) => Keep::UnlessError,
            (false, false) => Keep::Always,
        };
        if cors::is_preflight(req.method()) {
            let resp = self.preflight(req.headers(), &path).await;
            return self.finish(resp, &id, &path, "PreflightCORS", started, keep).await;
        }
        let origin = req.headers().get("origin").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let host = req.headers().get(http::header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let method = req.method().as_str().to_owned();
        if let Some(refusal) = presign_refusal(req.uri()) {
            let mut r = Response::new(Body::from(error_xml("AuthorizationQueryParametersError", refusal)));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return self.finish(r, &id, &path, "Unknown", started, keep).await;
        }
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(slot.clone());
        if let Some(peer) = self.peer {
            parts.extensions.insert(peer);
        }
        let req = Request::from_parts(parts, Body::from(body));
        let resp = match self.s3.call(req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = ?e, "s3s failed a request");
                let mut r = Response::new(Body::from(error_xml("InternalError", "We encountered an internal error.")));
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        };
        let mut resp = resp;
        if let Some(origin) = origin {
            let rules = self.cors_rules(host.as_deref(), &path).await;
            if let Some(rule) = cors::find(&rules, &origin, &method, &[]) {
                cors::answer(resp.headers_mut(), rule, &origin, None);
            }
        }
        let op = slot.take().unwrap_or_else(|| "Unknown".to_owned());
        self.finish(resp, &id, &path, &op, started, keep).await
    }

    /// Adds the request id (and error details), and counts the request.
    ///
    /// An error answering a request whose body may be unread closes the connection: a client
    /// that sent `Expect: 100-continue` and got the error never sends that body, and on a kept
    /// connection hyper would read the next request's first bytes as its rest. So does any
    /// answer to an `Expect: 100-continue` request without a body (see `serve`).
    async fn finish(
        &self,
        mut resp: Response<Body>,
        id: &str,
        path: &str,
        op: &str,
        started: Instant,
        keep: Keep,
    ) -> Response<Body> {
        let status = resp.status();
        let failed = status.is_client_error() || status.is_server_error();
        if failed {
            resp = with_error_details(resp, id, path).await;
        }
        if matches!((keep, failed), (Keep::Never, _) | (Keep::UnlessError, true)) {
            resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Ok(v) = HeaderValue::from_str(id) {
            resp.headers_mut().insert("x-amz-request-id", v.clone());
            resp.headers_mut().insert("x-amz-id-2", v);
        }
        self.metrics.record(op, status.as_u16(), started.elapsed());
        resp
    }
}

/// Whether a request's connection stays open after its answer.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// It does.
    Always,
    /// Not after an error (the request's body may be unread).
    UnlessError,
    /// It is closed.
    Never,
}

/// Most seconds a presigned URL may stay valid (S3's: seven days).
pub const PRESIGN_EXPIRES_S_MAX: u64 = 7 * 24 * 3600;

/// Why a presigned URL's expiry is refused (S3 checks it before the signature).
fn presign_refusal(uri: &http::Uri) -> Option<&'static str> {
    let query = uri.query()?;
    let value = query.split('&').find_map(|kv| kv.strip_prefix("X-Amz-Expires="))?;
    match value.parse::<u64>() {
        Ok(n) if n <= PRESIGN_EXPIRES_S_MAX => None,
        Ok(_) => Some("X-Amz-Expires must be less than a week (in seconds) that is, the given X-Amz-Expires must be less than 604800 seconds"),
        Err(_) => Some("X-Amz-Expires should be a number"),
    }
}

fn error_xml(code: &str, message: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Adds `Resource` and `RequestId` to an XML error body that lacks them.
async fn with_error_details(resp: Response<Body>, id: &str, path: &str) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let small = http_body::Body::size_hint(&body).upper().is_some_and(|n| n <= ERROR_BODY_BYTES_MAX as u64);
    if !small {
        return Response::from_parts(parts, body);
    }
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Body::empty());
    };
    let bytes = collected.to_bytes();
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    // A POST form that breaks a condition of its policy is S3's 403 AccessDenied ("Invalid
    // according to Policy"); s3s 0.14 answers 400 InvalidPolicyDocument with a message starting
    // "Policy condition" (a malformed policy stays 400).
    let rewritten;
    let mut text = text;
    const POLICY_CONDITION: &str = "<Code>InvalidPolicyDocument</Code><Message>Policy condition";
    if parts.status == StatusCode::BAD_REQUEST && text.contains(POLICY_CONDITION) {
        rewritten = text.replace(
            POLICY_CONDITION,
            "<Code>AccessDenied</Code><Message>Invalid according to Policy: Policy condition",
        );
        text = &rewritten;
        parts.status = StatusCode::FORBIDDEN;
    }
    let Some(end) = text.rfind("</Error>") else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let mut extra = String::new();
    if !text.contains("<Resource>") {
        extra.push_str(&format!("<Resource>{}</Resource>", xml_escape(path)));
    }
    if !text.contains("<RequestId>") {
        extra.push_str(&format!("<RequestId>{id}</RequestId>"));
    }
    let mut out = String::with_capacity(text.len() + extra.len());
    out.push_str(&text[..end]);
    out.push_str(&extra);
    out.push_str(&text[end..]);
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(Bytes::from(out)))
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_urls_live_at_most_a_week() {
        let uri = |q: &str| format!("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&{q}").parse::<http::Uri>().expect("uri");
        assert_eq!(presign_refusal(&uri("X-Amz-Expires=604800")), None);
        assert!(presign_refusal(&uri("X-Amz-Expires=604801")).is_some());
        assert!(presign_refusal(&uri("X-Amz-Expires=-1")).is_some());
        assert_eq!(presign_refusal(&"/b/k".parse::<http::Uri>().expect("uri")), None);
    }
}
