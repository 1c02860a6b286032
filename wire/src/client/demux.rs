//! Demultiplexing the node's frames by request id, with no I/O: which request a frame belongs
//! to, whether it is in sequence, and when a request's reply has ended.
//!
//! Invariants:
//! - A request id is registered before its first frame is written and never reused: ids grow
//!   from 1 and a `u64` does not wrap.
//! - Per request: exactly one Reply frame, then (when it lacks `END`) Data frames until one with
//!   `END`. Anything else — a frame for an id never registered, a second Reply, Data before the
//!   Reply — is a protocol error and the connection must close.
//! - An abandoned request (its caller gave up: timeout, dropped stream) leaves the live set at
//!   once, so it frees its in-flight slot, but its id is remembered until its reply ends, so that
//!   late frames are dropped rather than taken for protocol errors.

use std::collections::HashMap;

use bytes::Bytes;

use super::codec::Frame;
use super::error::ClientError;
use crate::frame::FrameKind;

/// What a request receives.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// The Reply frame: a verified `Reply` flatbuffer and the first payload piece.
    Reply {
        /// The `Reply` flatbuffer.
        body: Bytes,
        /// The first payload piece (a get's first bytes).
        payload: Bytes,
        /// True when no Data frames follow.
        end: bool,
    },
    /// A Data frame's payload.
    Data {
        /// The piece.
        payload: Bytes,
        /// True for the last piece.
        end: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingReply,
    Streaming,
}

/// Where a frame goes.
#[derive(Debug)]
pub enum Routed<T> {
    /// To a live request, with what it receives; `finished` says its reply has ended.
    Deliver {
        /// The request id.
        request_id: u64,
        /// The request's attachment (its inbox).
        to: T,
        /// What it receives.
        inbound: Inbound,
        /// True when this frame ended the reply.
        finished: bool,
    },
    /// To an abandoned request: nobody listens; drop it.
    Dropped {
        /// The request id.
        request_id: u64,
    },
    /// The node ended a live request abandoned (a `Cancel` frame): its caller gets an error.
    Cancelled {
        /// The request id.
        request_id: u64,
        /// The request's attachment (its inbox).
        to: T,
    },
}

/// The request ids of one connection and where each one stands.
#[derive(Debug)]
pub struct Demux<T> {
    next_id: u64,
    live: HashMap<u64, (Phase, T)>,
    abandoned: HashMap<u64, Phase>,
}

impl<T: Clone> Default for Demux<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Demux<T> {
    /// No request yet; the first id is 1.
    pub fn new() -> Demux<T> {
        Demux { next_id: 1, live: HashMap::new(), abandoned: HashMap::new() }
    }

    /// Allocates the next request id and registers it with its attachment.
    pub fn register(&mut self, to: T) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let previous = self.live.insert(id, (Phase::AwaitingReply, to));
        assert!(previous.is_none(), "request id {id} reused");
        id
    }

    /// Requests whose reply has not ended and whose caller still waits.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Abandoned requests whose reply has not ended yet.
    pub fn abandoned(&self) -> usize {
        self.abandoned.len()
    }

    /// The caller of `id` gave up. Returns true when the id was live.
    pub fn abandon(&mut self, id: u64) -> bool {
        match self.live.remove(&id) {
            Some((phase, _)) => {
                self.abandoned.insert(id, phase);
                true
            }
            None => false,
        }
    }

    /// Forgets a request that was never sent (no reply will come).
    pub fn forget(&mut self, id: u64) {
        self.live.remove(&id);
    }

    /// Forgets every request (the connection closed) and returns the live ones' attachments.
    pub fn drain(&mut self) -> Vec<T> {
        self.abandoned.clear();
        self.live.drain().map(|(_, (_, t))| t).collect()
    }

    /// Routes one frame.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the frame is out of sequence.
    pub fn route(&mut self, frame: Frame) -> Result<Routed<T>, ClientError> {
        let id = frame.header.request_id;
        if frame.header.kind == FrameKind::Cancel {
            // The last frame of a cancelled request.
            if self.abandoned.remove(&id).is_some() {
                return Ok(Routed::Dropped { request_id: id });
            }
            return match self.live.remove(&id) {
                Some((_, to)) => Ok(Routed::Cancelled { request_id: id, to }),
                None => Err(out_of_sequence(id, "no request with this id is waiting")),
            };
        }
        let end = frame.header.is_end();
        let phase = match (self.live.get(&id), self.abandoned.get(&id)) {
            (Some((phase, _)), _) => *phase,
            (None, Some(phase)) => *phase,
            (None, None) => return Err(out_of_sequence(id, "no request with this id is waiting")),
        };
        let inbound = match (frame.header.kind, phase) {
            (FrameKind::Reply, Phase::AwaitingReply) => {
                Inbound::Reply { body: frame.body, payload: frame.payload, end }
            }
            (FrameKind::Data, Phase::Streaming) => Inbound::Data { payload: frame.payload, end },
            (FrameKind::Reply, Phase::Streaming) => return Err(out_of_sequence(id, "a second Reply frame")),
            (FrameKind::Data, Phase::AwaitingReply) => {
                return Err(out_of_sequence(id, "a Data frame before the Reply"))
            }
            (FrameKind::Request, _) => return Err(out_of_sequence(id, "a Request frame")),
            (FrameKind::Credit | FrameKind::Cancel, _) => return Err(out_of_sequence(id, "a control frame")),
        };
        if let Some(phase) = self.abandoned.get_mut(&id) {
            if end {
                self.abandoned.remove(&id);
            } else {
                *phase = Phase::Streaming;
            }
            return Ok(Routed::Dropped { request_id: id });
        }
        let to = if end {
            self.live.remove(&id).map(|(_, t)| t)
        } else {
            self.live.get_mut(&id).map(|(phase, t)| {
                *phase = Phase::Streaming;
                t.clone()
            })
        };
        match to {
            Some(to) => Ok(Routed::Deliver { request_id: id, to, inbound, finished: end }),
            None => Err(out_of_sequence(id, "no request with this id is waiting")),
        }
    }
}

fn out_of_sequence(id: u64, what: &str) -> ClientError {
    ClientError::protocol(format!("frame for request id {id} out of sequence: {what}"))
}
