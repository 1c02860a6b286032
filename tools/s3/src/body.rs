//! Bodies both ways: an S3 request body as the source of a node put (hashed and verified while
//! it streams), and a node get as an S3 response body.
//!
//! Invariants:
//! - Nothing is buffered whole: a piece read from the S3 client goes to the node before the
//!   next is read, under the node request's own flow control, and a get's pieces go to the S3
//!   client as the node sends them.
//! - A put whose bytes do not match what the sender announced (`Content-MD5`, an
//!   `x-amz-checksum-*` header or trailer, `Content-Length`) is never committed: the source
//!   fails instead of ending, the client library cancels the node request, and the handler
//!   answers with the reason kept in [`Upload::failure`].
//! - An S3 client that stops reading or goes away drops its response body, which drops the node
//!   get and cancels that one request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use candybox_wire::client::{BodySource, GetStream, TokioDriver};
use futures::{Stream, StreamExt};
use md5::Digest as _;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, ChecksumAlgorithm, StreamingBlob};
use s3s::stream::{ByteStream, RemainingLength};
use s3s::{s3_error, S3Error};

use crate::meta;

/// Which checksums a put must compute, and the values the sender announced for them.
#[derive(Debug, Default, Clone)]
pub struct Expected {
    /// `Content-MD5`, decoded.
    pub content_md5: Option<Vec<u8>>,
    /// `x-amz-checksum-*` headers (base64), as s3s parsed them.
    pub checksums: Checksum,
    /// Algorithms named without a value: `x-amz-checksum-algorithm`, `x-amz-trailer`.
    pub algorithms: Vec<String>,
    /// `Content-Length` (or `x-amz-decoded-content-length`) when known.
    pub length: Option<u64>,
}

impl Expected {
    /// What a put's or part's request announces: `Content-MD5`, `x-amz-checksum-*` headers,
    /// the algorithms named by `x-amz-checksum-algorithm` and `x-amz-trailer`, and its length
    /// (`x-amz-decoded-content-length` for an aws-chunked body, else `Content-Length`).
    ///
    /// # Errors
    /// `InvalidDigest` for a `Content-MD5` that is not one.
    pub fn of_request(
        headers: &http::HeaderMap,
        content_md5: Option<&str>,
        checksums: Checksum,
        algorithm: Option<&ChecksumAlgorithm>,
        content_length: Option<i64>,
    ) -> Result<Expected, S3Error> {
        let decoded_length = headers
            .get("x-amz-decoded-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut algorithms: Vec<String> = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default();
        if let Some(a) = algorithm {
            algorithms.push(algorithm_name(a));
        }
        Ok(Expected {
            content_md5: content_md5.map(self::content_md5).transpose()?,
            checksums,
            algorithms,
            length: decoded_length.or(content_length.and_then(|n| u64::try_from(n).ok())),
        })
    }
}

/// What a finished upload computed.
#[derive(Debug, Default, Clone)]
pub struct Computed {
    /// MD5 of the bytes, lowercase hex (the ETag).
    pub md5_hex: String,
    /// The S3 checksums computed (base64).
    pub checksums: Checksum,
    /// Bytes read.
    pub length: u64,
}

/// An S3 request body on its way to the node.
pub struct Upload {
    stream: Option<StreamingBlob>,
    md5: md5::Md5,
    hasher: Option<ChecksumHasher>,
    expected: Expected,
    trailers: Option<s3s::TrailingHeaders>,
    received: u64,
    /// Why the body was refused (a digest mismatch, a short body, the client's own error).
    pub failure: Option<S3Error>,
    /// What it computed, once it ended well.
    pub computed: Option<Computed>,
}

impl Upload {
    /// An upload of `stream` (`None`: an empty body).
    pub fn new(stream: Option<StreamingBlob>, expected: Expected, trailers: Option<s3s::TrailingHeaders>) -> Upload {
        let mut names: Vec<String> = expected.algorithms.iter().map(|a| a.to_ascii_lowercase()).collect();
        let c = &expected.checksums;
        for (name, given) in [
            ("crc32", &c.checksum_crc32),
            ("crc32c", &c.checksum_crc32c),
            ("sha1", &c.checksum_sha1),
            ("sha256", &c.checksum_sha256),
            ("crc64nvme", &c.checksum_crc64nvme),
        ] {
            if given.is_some() {
                names.push(name.to_owned());
            }
        }
        let hasher = hasher_for(&names);
        Upload { stream, md5: md5::Md5::new(), hasher, expected, trailers, received: 0, failure: None, computed: None }
    }

    fn fail(&mut self, err: S3Error) -> io::Error {
        let text = err.message().unwrap_or("refused").to_owned();
        self.failure = Some(err);
        io::Error::other(text)
    }

    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        let Some(stream) = self.stream.as_mut() else { return self.end() };
        match stream.next().await {
            Some(Ok(piece)) => {
                self.received += piece.len() as u64;
                if let Some(n) = self.expected.length.filter(|&n| self.received > n) {
                    return Err(
                        self.fail(s3_error!(IncompleteBody, "the body is longer than its Content-Length ({n})"))
                    );
                }
                self.md5.update(&piece);
                if let Some(h) = &mut self.hasher {
                    h.update(&piece);
                }
                Ok(Some(piece))
            }
            Some(Err(e)) => {
                let msg = e.to_string();
                // s3s reports its own S3 errors (a bad chunk signature, a bad chunk) through the
                // stream; anything else is the connection's failure.
                let err = match e.downcast::<S3Error>() {
                    Ok(s3) => *s3,
                    Err(_) => s3_error!(IncompleteBody, "the request body ended early: {msg}"),
                };
                Err(self.fail(err))
            }
            None => self.end(),
        }
    }

    fn end(&mut self) -> io::Result<Option<Bytes>> {
        if self.computed.is_some() {
            return Ok(None);
        }
        if let Some(n) = self.expected.length.filter(|&n| self.received != n) {
            let got = self.received;
            return Err(self.fail(s3_error!(IncompleteBody, "the body has {got} bytes, not its Content-Length of {n}")));
        }
        let md5 = std::mem::take(&mut self.md5).finalize();
        if let Some(want) = &self.expected.content_md5 {
            if want.as_slice() != md5.as_slice() {
                return Err(
                    self.fail(s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."))
                );
            }
        }
        let checksums = self.hasher.take().map(ChecksumHasher::finalize).unwrap_or_default();
        let mut announced = self.expected.checksums.clone();
        if let Some(trailers) = &self.trailers {
            trailers.read(|h| {
                for (name, slot) in meta::checksum_fields(&mut announced) {
                    if let Some(v) = h.get(format!("x-amz-checksum-{name}")).and_then(|v| v.to_str().ok()) {
                        *slot = Some(v.to_owned());
                    }
                }
            });
        }
        let mut computed_slots = checksums.clone();
        for ((name, want), (_, got)) in
            meta::checksum_fields(&mut announced).into_iter().zip(meta::checksum_fields(&mut computed_slots))
        {
            if let (Some(want), Some(got)) = (want.as_ref(), got.as_ref()) {
                if want != got {
                    let upper = name.to_ascii_uppercase();
                    return Err(self.fail(s3_error!(
                        BadDigest,
                        "The {upper} you specified did not match the calculated checksum."
                    )));
                }
            }
        }
        self.computed = Some(Computed { md5_hex: hex::encode(md5), checksums, length: self.received });
        Ok(None)
    }
}

/// A hasher computing every algorithm in `names` (S3's spellings, any case, with or without
/// the `x-amz-checksum-` prefix); `None` when there is none.
fn hasher_for(names: &[String]) -> Option<ChecksumHasher> {
    let mut h = ChecksumHasher::default();
    let mut any = false;
    for name in names {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("x-amz-checksum-").unwrap_or(&name);
        match name {
            "crc32" => h.crc32 = Some(s3s::crypto::Crc32::new()),
            "crc32c" => h.crc32c = Some(s3s::crypto::Crc32c::new()),
            "sha1" => h.sha1 = Some(s3s::crypto::Sha1::new()),
            "sha256" => h.sha256 = Some(s3s::crypto::Sha256::new()),
            "crc64nvme" => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            _ => continue,
        }
        any = true;
    }
    any.then_some(h)
}

/// The algorithm names of `x-amz-checksum-algorithm`.
pub fn algorithm_name(a: &ChecksumAlgorithm) -> String {
    a.as_str().to_ascii_lowercase()
}

/// Decodes a `Content-MD5` header.
///
/// # Errors
/// `InvalidDigest` when it is not the base64 of 16 bytes.
pub fn content_md5(value: &str) -> Result<Vec<u8>, S3Error> {
    match base64::engine::general_purpose::STANDARD.decode(value.trim()) {
        Ok(d) if d.len() == 16 => Ok(d),
        _ => Err(s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid.")),
    }
}

/// Borrows an [`Upload`] as the source of a node put or part.
pub struct Source<'a> {
    upload: &'a mut Upload,
    /// A put commits its ETag and checksums in its trailer; a part takes no metadata (the
    /// gateway records a part's digests itself).
    trailer: bool,
    seal: Option<Sealing>,
}

/// The encryption of a source's bytes on their way to the node.
struct Sealing {
    sealer: crate::sse::Sealer,
    key: crate::sse::DataKey,
    md5_etag: bool,
    ended: bool,
}

impl<'a> Source<'a> {
    /// The source of a put, whose trailer carries the digests.
    pub fn put(upload: &'a mut Upload) -> Source<'a> {
        Source { upload, trailer: true, seal: None }
    }

    /// The source of a multipart part (no trailer).
    pub fn part(upload: &'a mut Upload) -> Source<'a> {
        Source { upload, trailer: false, seal: None }
    }

    /// Encrypts the bytes under `key` (`None`: as they are). `md5_etag`: whether the ETag stays
    /// the plaintext's MD5 (SSE-S3) or is derived from it and the key (SSE-C, SSE-KMS).
    pub fn sealed(mut self, key: Option<&crate::sse::DataKey>, md5_etag: bool) -> Source<'a> {
        self.seal = key.map(|k| Sealing { sealer: crate::sse::Sealer::new(k), key: k.clone(), md5_etag, ended: false });
        self
    }
}

impl BodySource for Source<'_> {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        let Some(seal) = self.seal.as_mut() else { return self.upload.next().await };
        while !seal.ended {
            let out = match self.upload.next().await? {
                Some(piece) => seal.sealer.push(&piece)?,
                None => {
                    seal.ended = true;
                    seal.sealer.finish()?
                }
            };
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    fn trailer(&mut self) -> Vec<(String, String)> {
        match &self.upload.computed {
            Some(c) if self.trailer => {
                let mut entries = meta::digest_entries(c);
                if let Some(seal) = &self.seal {
                    if !seal.md5_etag {
                        entries[0].1 = seal.key.etag(&c.md5_hex);
                    }
                    entries.push((crate::sse::SIZE.to_owned(), c.length.to_string()));
                }
                entries
            }
            _ => Vec::new(),
        }
    }
}

/// A node get as an S3 response body.
pub struct Download {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send + Sync>>,
    remaining: u64,
}

impl Download {
    /// The body of `get`.
    pub fn new(get: GetStream<TokioDriver>) -> Download {
        let remaining = get.length();
        let stream = futures::stream::unfold(Some(get), |state| async move {
            let mut get = state?;
            match get.next_piece().await {
                Ok(Some(piece)) => Some((Ok(piece), Some(get))),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "a get from the node failed mid-body");
                    Some((Err(io::Error::other(e.to_string())), None))
                }
            }
        });
        Download { inner: Box::pin(sync_wrapper::SyncStream::new(stream)), remaining }
    }

    /// The plaintext of `get`, the stored span of an encrypted object that `opener` decrypts
    /// (`length` plaintext bytes).
    pub fn decrypting(get: GetStream<TokioDriver>, opener: crate::sse::Opener, length: u64) -> Download {
        let state = (get, opener, std::collections::VecDeque::new());
        let stream = futures::stream::unfold(Some(state), |state| async move {
            let (mut get, mut opener, mut ready) = state?;
            loop {
                if let Some(piece) = ready.pop_front() {
                    return Some((Ok(piece), Some((get, opener, ready))));
                }
                if opener.done() {
                    return None;
                }
                let failed = match get.next_piece().await {
                    Ok(Some(piece)) => {
                        let mut out = Vec::new();
                        match opener.push(piece, &mut out) {
                            Ok(()) => {
                                ready.extend(out);
                                continue;
                            }
                            Err(e) => e,
                        }
                    }
                    Ok(None) => io::Error::other("the stored bytes ended before the encrypted object's last chunk"),
                    Err(e) => io::Error::other(e.to_string()),
                };
                tracing::warn!(error = %failed, "an encrypted get failed mid-body");
                return Some((Err(failed), None));
            }
        });
        Download { inner: Box::pin(sync_wrapper::SyncStream::new(stream)), remaining: length }
    }

    /// An empty body.
    pub fn empty() -> Download {
        Download { inner: Box::pin(sync_wrapper::SyncStream::new(futures::stream::empty())), remaining: 0 }
    }

    /// As an s3s body.
    pub fn into_blob(self) -> StreamingBlob {
        StreamingBlob::new(self)
    }
}

impl Stream for Download {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(piece))) => {
                self.remaining = self.remaining.saturating_sub(piece.len() as u64);
                Poll::Ready(Some(Ok(piece)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ByteStream for Download {
    fn remaining_length(&self) -> RemainingLength {
        RemainingLength::new_exact(usize::try_from(self.remaining).unwrap_or(usize::MAX))
    }
}
