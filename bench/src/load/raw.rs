//! A one-request-at-a-time client over a raw socket, in a chosen frame version: what the lean
//! path needs before a run against a node the library cannot talk to (the library speaks only
//! the newest frame version; `bench/ab` drives older nodes in the version they know): create the
//! Box, read its partition count and the node's topology, store the key space.
//!
//! Invariants:
//! - Not on the measured path: it allocates per request and waits for each reply.
//! - A reply is read only after `next_frame` checked its header and body CRC; its body is handed
//!   to the library's own reply parsers (`candybox_wire::client::reply`), which verify it.
//! - A request's body is split into frames at the cap exactly as the library splits it: the
//!   Request frame carries the flatbuffer and as much of the body as fits, Data frames the rest,
//!   END on the last.

use std::net::SocketAddr;

use anyhow::{bail, Context as _};
use candybox_wire::frame::{FrameHeader, FrameKind, FLAG_END, FRAME_HEADER_BYTES};
use monoio::{
    buf::IoBufMut as _,
    io::{AsyncReadRent as _, AsyncWriteRentExt as _},
    net::TcpStream,
};

use super::frames::{next_frame, Scan};

/// A connection that sends one request at a time.
pub struct RawClient {
    stream: TcpStream,
    version: u8,
    cap: u32,
    next_id: u64,
    recv: Vec<u8>,
}

/// Frames of one request message, in `version`: the Request frame with `body` and as much of
/// `payload` as fits under `cap`, then Data frames of at most `cap` bytes; END on the last.
pub fn request_frames(version: u8, id: u64, cap: u32, body: &[u8], payload: &[u8]) -> Vec<u8> {
    let cap = cap as usize;
    let first = payload.len().min(cap.saturating_sub(body.len()));
    let (head, mut rest) = payload.split_at(first);
    let mut out =
        Vec::with_capacity(FRAME_HEADER_BYTES * (2 + payload.len() / cap.max(1)) + body.len() + payload.len());
    let flags = if rest.is_empty() { FLAG_END } else { 0 };
    #[expect(clippy::cast_possible_truncation, reason = "a piece is at most the cap, a u32")]
    let h = FrameHeader::for_body(FrameKind::Request, id, flags, body, head.len() as u32).in_version(version);
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(body);
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(rest.len().min(cap));
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END } else { 0 };
        #[expect(clippy::cast_possible_truncation, reason = "a piece is at most the cap, a u32")]
        let h = FrameHeader::for_body(FrameKind::Data, id, flags, &[], piece.len() as u32).in_version(version);
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(piece);
    }
    out
}

impl RawClient {
    /// Connects to `addr`; requests go out in frame `version`, frames are capped at `cap`.
    ///
    /// # Errors
    /// When the connection cannot be made.
    pub async fn connect(addr: SocketAddr, version: u8, cap: u32) -> anyhow::Result<RawClient> {
        let stream = TcpStream::connect_addr(addr).await.with_context(|| format!("connect to {addr}"))?;
        let _ = stream.set_nodelay(true);
        Ok(RawClient { stream, version, cap, next_id: 1, recv: Vec::with_capacity(64 * 1024) })
    }

    /// Sends one request (`body`, then `payload` as its object bytes) and returns the body of
    /// its reply (any payload of the reply is read and dropped).
    ///
    /// # Errors
    /// When the socket fails or closes, or the node sends a frame that does not check.
    pub async fn call(&mut self, body: &[u8], payload: &[u8]) -> anyhow::Result<Vec<u8>> {
        let id = self.next_id;
        self.next_id += 1;
        let frames = request_frames(self.version, id, self.cap, body, payload);
        let (result, _) = self.stream.write_all(frames).await;
        result.context("send a request")?;
        let mut reply: Option<Vec<u8>> = None;
        loop {
            let (frame_len, end) = match next_frame(&self.recv, self.cap).map_err(|e| anyhow::anyhow!("{e}"))? {
                Scan::Frame { frame, len } if frame.payload_missing() == 0 => {
                    let h = frame.header;
                    match h.kind {
                        // Grants for a body's Data frames: this client sends each body at once.
                        FrameKind::Credit => (len, false),
                        FrameKind::Reply if h.request_id == id && reply.is_none() => {
                            reply = Some(frame.body.to_vec());
                            (len, h.is_end())
                        }
                        FrameKind::Data if h.request_id == id && reply.is_some() => (len, h.is_end()),
                        kind => {
                            bail!("an unexpected {kind:?} frame for request id {} (waiting for {id})", h.request_id)
                        }
                    }
                }
                Scan::Frame { frame, len } => {
                    self.fill(len + usize::try_from(frame.payload_missing()).unwrap_or(usize::MAX)).await?;
                    continue;
                }
                Scan::Partial { needed } => {
                    self.fill(needed).await?;
                    continue;
                }
            };
            self.recv.drain(..frame_len);
            if end {
                return reply.context("a message ended before its Reply frame");
            }
        }
    }

    /// Reads until the buffer holds at least `needed` bytes.
    async fn fill(&mut self, needed: usize) -> anyhow::Result<()> {
        while self.recv.len() < needed {
            if self.recv.capacity() < needed {
                self.recv.reserve(needed - self.recv.len());
            }
            let len = self.recv.len();
            let buf = std::mem::take(&mut self.recv);
            let total = buf.capacity();
            let (result, slice) = self.stream.read(buf.slice_mut(len..total)).await;
            self.recv = slice.into_inner();
            if result.context("read a reply")? == 0 {
                bail!("the node closed the connection");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_larger_than_the_cap_is_split_as_the_library_splits_it() {
        let body = [7u8; 10];
        let payload = vec![1u8; 25];
        let frames = request_frames(1, 9, 16, &body, &payload);
        let mut at = 0;
        let mut seen = Vec::new();
        while at < frames.len() {
            let mut raw = [0u8; FRAME_HEADER_BYTES];
            raw.copy_from_slice(&frames[at..at + FRAME_HEADER_BYTES]);
            let h = FrameHeader::decode(&raw, 16).unwrap();
            assert_eq!((h.version, h.request_id), (1, 9));
            seen.push((h.kind, h.body_len, h.payload_len, h.is_end()));
            at += FRAME_HEADER_BYTES + h.frame_len();
        }
        assert_eq!(at, frames.len());
        assert_eq!(
            seen,
            vec![(FrameKind::Request, 10, 6, false), (FrameKind::Data, 0, 16, false), (FrameKind::Data, 0, 3, true)]
        );
        // A request that fits is one frame with END.
        let one = request_frames(2, 1, 1 << 20, &body, &payload);
        assert_eq!(one.len(), FRAME_HEADER_BYTES + body.len() + payload.len());
    }
}
