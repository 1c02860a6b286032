//! Commands: a verified `Request` turned into an owned, checked value at the edge, so it can move
//! to the owning shard (`Send`) and be executed there without touching the flatbuffer again.
//!
//! Invariants:
//! - Parsing checks Box names and keys once, with typed errors (InvalidArgument naming the field,
//!   LimitExceeded for an over-long key); a command that exists is well-formed.
//! - Object bytes are never in a command: put and upload-part bodies arrive through a
//!   [`BodyRx`], a bounded channel fed by the connection.

use bytes::Bytes;
use candybox_core::{
    engine::{
        BodyStream, ByteRange, CopyOptions, ListOptions, MetaReplace, PutOptions, VersionListOptions, Versioning,
        WriteCondition,
    },
    error::Error as CoreError,
    hlc::Hlc,
    limits,
    types::{validate_box_name, validate_key},
};
use candybox_wire::fb;

use crate::{limits::BODY_PIECES_MAX, reply::NodeError};

/// A piece of a streamed body, or its end.
#[derive(Debug)]
pub enum BodyMsg {
    /// The next bytes.
    Piece(Bytes),
    /// The client sent the frame with END: the body is complete. It may carry a trailer
    /// (version 3): metadata committed with the object.
    End(Vec<(String, String)>),
    /// The body will not complete (the client cancelled it, or broke its flow control): the put
    /// fails with this reason and stores nothing.
    Abort(String),
}

/// Where a flow-controlled body (protocol version 2) reports the bytes it took, so that its
/// connection grants the client that much credit again: (request id, credit).
#[derive(Debug, Clone)]
pub struct Grants {
    /// The connection's grant queue.
    pub tx: async_channel::Sender<(u64, u64)>,
    /// The request whose body this is.
    pub request_id: u64,
}

/// The sending side of a streamed body (held by the connection).
pub type BodyTx = async_channel::Sender<BodyMsg>;

/// The receiving side of a streamed body (held by the engine's put). A body whose sender goes
/// away before [`BodyMsg::End`] fails the put: a connection that dies mid-body stores nothing.
#[derive(Debug)]
pub struct BodyRx {
    rx: async_channel::Receiver<BodyMsg>,
    ended: bool,
    grants: Option<Grants>,
    trailer: Vec<(String, String)>,
}

/// A bounded body channel of a version-1 connection (no flow control: its reader waits while
/// the channel is full).
pub fn body_channel() -> (BodyTx, BodyRx) {
    let (tx, rx) = async_channel::bounded(BODY_PIECES_MAX);
    (tx, BodyRx { rx, ended: false, grants: None, trailer: Vec::new() })
}

/// Pieces a flow-controlled body channel holds: every frame a stream's credit allows, its END and
/// an abort, so the connection's reader never waits on it.
pub const FLOW_BODY_PIECES_MAX: usize =
    (candybox_wire::frame::STREAM_WINDOW_BYTES / candybox_wire::frame::CREDIT_FRAME_COST_MIN) as usize + 2;

/// The body channel of a version-2 (flow-controlled) stream: each piece taken is granted back.
pub fn flow_body_channel(grants: Grants) -> (BodyTx, BodyRx) {
    let (tx, rx) = async_channel::bounded(FLOW_BODY_PIECES_MAX);
    (tx, BodyRx { rx, ended: false, grants: Some(grants), trailer: Vec::new() })
}

impl BodyStream for BodyRx {
    async fn next_piece(&mut self) -> Result<Option<Bytes>, CoreError> {
        if self.ended {
            return Ok(None);
        }
        match self.rx.recv().await {
            Ok(BodyMsg::Piece(b)) => {
                if let Some(g) = &self.grants {
                    let grant = (g.request_id, candybox_wire::frame::credit_cost(b.len()));
                    if let Err(async_channel::TrySendError::Full(grant)) = g.tx.try_send(grant) {
                        // The connection drains the queue on its own; a closed one needs no grant.
                        let _ = g.tx.send(grant).await;
                    }
                }
                Ok(Some(b))
            }
            Ok(BodyMsg::End(trailer)) => {
                self.ended = true;
                self.trailer = trailer;
                Ok(None)
            }
            Ok(BodyMsg::Abort(reason)) => {
                self.ended = true;
                Err(CoreError::Body(reason))
            }
            Err(_) => Err(CoreError::Body("the connection closed before the body ended".into())),
        }
    }

    fn take_trailer(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.trailer)
    }
}

/// An operation on one key; its partition is derived from the key.
#[derive(Debug)]
pub enum KeyedOp {
    /// Store a Candy.
    Put {
        /// Content type, metadata, size.
        opts: PutOptions,
        /// The body.
        body: BodyRx,
    },
    /// Read a Candy, whole or a range.
    Get {
        /// The range.
        range: Option<ByteRange>,
        /// This version instead of the current one.
        version: Option<Hlc>,
    },
    /// Metadata only.
    Head {
        /// This version instead of the current one.
        version: Option<Hlc>,
    },
    /// Point tombstone (a delete marker in a versioned Box), or a version deleted for good.
    Delete {
        /// Delete only if the key meets this.
        condition: Option<WriteCondition>,
        /// This version for good instead of the key.
        version: Option<Hlc>,
    },
    /// Rewrite a live object's metadata in place.
    SetMeta {
        /// The new metadata.
        replace: MetaReplace,
        /// Only if the key meets this.
        condition: Option<WriteCondition>,
    },
    /// Start a multipart upload.
    CreateUpload {
        /// Content type and metadata.
        opts: PutOptions,
    },
    /// Upload one part.
    UploadPart {
        /// The upload.
        upload_id: u64,
        /// 1-based part number.
        part_number: u32,
        /// Declared size.
        size: Option<u64>,
        /// The body.
        body: BodyRx,
    },
    /// Complete an upload.
    CompleteUpload {
        /// The upload.
        upload_id: u64,
        /// Parts in order.
        parts: Vec<u32>,
        /// Added to the upload's metadata.
        user_meta: Vec<(String, String)>,
        /// Only if the key meets this.
        condition: Option<WriteCondition>,
    },
    /// Abort an upload.
    AbortUpload {
        /// The upload.
        upload_id: u64,
    },
    /// Parts of an upload.
    ListParts {
        /// The upload.
        upload_id: u64,
    },
    /// The live locator (or a version's), to relay.
    GetLocator {
        /// This version instead of the current one.
        version: Option<Hlc>,
    },
    /// Record a rename intent; the key is the source.
    PrepareRename {
        /// The destination key.
        target_key: Vec<u8>,
    },
    /// Write a relayed locator under the key.
    ZeroCopyPut {
        /// The verified `Locator` flatbuffer bytes.
        locator: Bytes,
        /// For a rename: the intent's token.
        rename_token: Option<u128>,
        /// The source partition of a rename: known when the node runs the rename; for a client
        /// relay, found by asking every partition for the token's intent.
        source_partition: Option<u16>,
        /// The condition on the key and the metadata replacement.
        opts: CopyOptions,
    },
    /// Finish a rename at the source; the key is the source.
    CompleteRename {
        /// The intent's token.
        token: u128,
    },
}

impl KeyedOp {
    /// True when the operation changes the partition (it needs the partition's lease).
    pub fn mutates(&self) -> bool {
        !matches!(
            self,
            KeyedOp::Get { .. } | KeyedOp::Head { .. } | KeyedOp::ListParts { .. } | KeyedOp::GetLocator { .. }
        )
    }

    /// True when the operation stores new object bytes: refused while the disk is full (deletes,
    /// copies and renames only write a few bytes of log, which the free-space reserve keeps).
    pub fn adds_data(&self) -> bool {
        matches!(self, KeyedOp::Put { .. } | KeyedOp::CreateUpload { .. } | KeyedOp::UploadPart { .. })
    }
}

/// An operation on one named partition.
#[derive(Debug)]
pub enum PartitionOp {
    /// One listing page.
    List(ListOptions),
    /// One range tombstone (`prefix` wins over `start`/`end`).
    DeleteRange {
        /// First key.
        start: Vec<u8>,
        /// End (exclusive); empty: to the end.
        end: Vec<u8>,
        /// Prefix.
        prefix: Option<Vec<u8>>,
    },
    /// In-flight uploads.
    ListUploads,
    /// One page of versions and delete markers.
    ListVersions(VersionListOptions),
}

/// A parsed request.
#[derive(Debug)]
pub enum Command {
    /// Create a Box.
    CreateBox {
        /// Name.
        name: String,
        /// Partitions (0: the node's default).
        partitions: u16,
        /// Its versioning state.
        versioning: Versioning,
    },
    /// Set a Box's versioning state.
    SetVersioning {
        /// Name.
        name: String,
        /// The new state.
        versioning: Versioning,
    },
    /// Delete a Box.
    DeleteBox {
        /// Name.
        name: String,
        /// Delete even when it holds Candies.
        force: bool,
    },
    /// Describe a Box.
    HeadBox {
        /// Name.
        name: String,
    },
    /// Every Box.
    ListBoxes,
    /// Shards, ports, placement.
    Topology,
    /// Per-shard counters.
    Stats,
    /// A per-key operation.
    Keyed {
        /// Box.
        box_name: String,
        /// Key.
        key: Vec<u8>,
        /// What.
        op: KeyedOp,
    },
    /// A per-partition operation.
    Partitioned {
        /// Box.
        box_name: String,
        /// Partition.
        partition: u16,
        /// What.
        op: PartitionOp,
    },
    /// Copy or rename inside a Box, run by the node.
    CopyOrRename {
        /// Box.
        box_name: String,
        /// Source key.
        source_key: Vec<u8>,
        /// Target key.
        target_key: Vec<u8>,
        /// Rename (else copy).
        rename: bool,
        /// The condition on the target key and the metadata replacement.
        opts: CopyOptions,
        /// Copy this version of the source (a copy only).
        source_version: Option<Hlc>,
    },
    /// Delete several keys of a Box (each maybe conditional), one result per key.
    DeleteMany {
        /// Box.
        box_name: String,
        /// Each key with its condition or version, in request order.
        keys: Vec<DeleteOne>,
    },
}

/// True for requests whose body streams in data frames (put, upload-part).
pub fn is_streamed(kind: fb::RequestBody) -> bool {
    matches!(kind, fb::RequestBody::Put | fb::RequestBody::UploadPart)
}

/// The index of a request kind in `metrics::OPS`.
pub fn op_index(kind: fb::RequestBody) -> usize {
    usize::from(kind.0).wrapping_sub(1).min(crate::metrics::OP_UNKNOWN)
}

fn box_name(s: &str) -> Result<String, NodeError> {
    validate_box_name(s).map_err(|e| match e {
        CoreError::InvalidArgument { reason, .. } => NodeError::invalid("box_name", reason),
        other => NodeError::Engine(other),
    })?;
    Ok(s.to_string())
}

fn key(field: &'static str, k: Option<flatbuffers::Vector<'_, u8>>) -> Result<Vec<u8>, NodeError> {
    let k = k.map(|v| v.bytes()).unwrap_or_default();
    validate_key(k).map_err(|e| match e {
        CoreError::InvalidArgument { reason, .. } => NodeError::invalid(field, reason),
        other => NodeError::Engine(other),
    })?;
    Ok(k.to_vec())
}

fn bound(k: Option<flatbuffers::Vector<'_, u8>>) -> Result<Option<Vec<u8>>, NodeError> {
    match k {
        None => Ok(None),
        Some(v) if v.len() > limits::KEY_BYTES_MAX => Err(NodeError::Engine(CoreError::LimitExceeded {
            limit: "key length",
            value: v.len() as u64,
            max: limits::KEY_BYTES_MAX as u64,
        })),
        Some(v) => Ok(Some(v.bytes().to_vec())),
    }
}

/// The engine's condition of a wire `Condition` table (absent or `Always`: none).
///
/// # Errors
/// `InvalidArgument` (`condition`) for an unknown kind or an `IfVersion` without its version.
pub fn condition(c: Option<fb::Condition<'_>>) -> Result<Option<WriteCondition>, NodeError> {
    let Some(c) = c else { return Ok(None) };
    Ok(match c.kind() {
        fb::ConditionKind::Always => None,
        fb::ConditionKind::IfAbsent => Some(WriteCondition::IfAbsent),
        fb::ConditionKind::IfVersion => {
            let v = c.version().ok_or_else(|| NodeError::invalid("condition", "IfVersion needs its version"))?;
            Some(WriteCondition::IfVersion(Hlc { physical_ms: v.physical_ms(), logical: v.logical(), node: v.node() }))
        }
        fb::ConditionKind::IfUnmodifiedSince => Some(WriteCondition::IfUnmodifiedSince(c.since_ms())),
        fb::ConditionKind::IfMeta => {
            let key = c.meta_key().filter(|k| !k.is_empty());
            let key = key.ok_or_else(|| NodeError::invalid("condition", "IfMeta needs its meta_key"))?;
            Some(WriteCondition::IfMeta { key: key.to_string(), value: c.meta_value().unwrap_or_default().to_string() })
        }
        other => return Err(NodeError::invalid("condition", format!("unknown condition kind {}", other.0))),
    })
}

/// The pairs of a wire `KeyValue` vector.
///
/// # Errors
/// `InvalidArgument` (`field`) for more entries than metadata may hold.
pub fn key_values<'a>(
    field: &'static str,
    kvs: Option<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::KeyValue<'a>>>>,
) -> Result<Vec<(String, String)>, NodeError> {
    let Some(kvs) = kvs else { return Ok(Vec::new()) };
    if kvs.len() > limits::USER_META_BYTES_MAX {
        return Err(NodeError::invalid(field, "too many entries"));
    }
    Ok(kvs.iter().map(|kv| (kv.key().to_string(), kv.value().to_string())).collect())
}

/// The metadata replacement of a wire `MetaReplace` (absent: none).
///
/// # Errors
/// As [`key_values`].
pub fn meta_replace(r: Option<fb::MetaReplace<'_>>) -> Result<Option<MetaReplace>, NodeError> {
    let Some(r) = r else { return Ok(None) };
    Ok(Some(MetaReplace {
        content_type: r.content_type().unwrap_or_default().to_string(),
        user_meta: key_values("replace.user_meta", r.user_meta())?,
    }))
}

/// One key of a delete-many: the key, its condition, the version to delete for good.
pub type DeleteOne = (Vec<u8>, Option<WriteCondition>, Option<Hlc>);

/// A stamp of the wire.
pub fn hlc_of(h: Option<&fb::Hlc>) -> Option<Hlc> {
    h.map(|h| Hlc { physical_ms: h.physical_ms(), logical: h.logical(), node: h.node() })
}

/// The versioning state of the wire's enum.
///
/// # Errors
/// `InvalidArgument` (`versioning`) for an unknown value.
pub fn versioning_of(v: fb::Versioning) -> Result<Versioning, NodeError> {
    Ok(match v {
        fb::Versioning::Off => Versioning::Off,
        fb::Versioning::Enabled => Versioning::Enabled,
        fb::Versioning::Suspended => Versioning::Suspended,
        other => return Err(NodeError::invalid("versioning", format!("unknown versioning state {}", other.0))),
    })
}

/// The most keys one delete-many request may name (S3's DeleteObjects limit).
pub const DELETE_MANY_KEYS_MAX: usize = 1000;

pub fn put_options<'a>(
    content_type: Option<&str>,
    meta: Option<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::KeyValue<'a>>>>,
    size: i64,
    condition: Option<fb::Condition<'a>>,
) -> Result<PutOptions, NodeError> {
    let user_meta = key_values("user_meta", meta)?;
    let size = match size {
        -1 => None,
        s if s >= 0 => Some(s as u64),
        _ => return Err(NodeError::invalid("size", "must be -1 (unsized) or a byte count")),
    };
    Ok(PutOptions {
        content_type: content_type.unwrap_or_default().to_string(),
        user_meta,
        size,
        condition: self::condition(condition)?,
    })
}

fn token(t: Option<flatbuffers::Vector<'_, u8>>, field: &'static str) -> Result<u128, NodeError> {
    let bytes = t.map(|v| v.bytes()).unwrap_or_default();
    let arr: [u8; 16] = bytes.try_into().map_err(|_| NodeError::invalid(field, "must be 16 bytes"))?;
    Ok(u128::from_le_bytes(arr))
}

/// The bytes of `part` as a slice of `frame` (no copy) when `part` lies inside it.
fn slice_of(frame: &Bytes, part: &[u8]) -> Bytes {
    let (start, end) = (frame.as_ptr() as usize, frame.as_ptr() as usize + frame.len());
    let (p, q) = (part.as_ptr() as usize, part.as_ptr() as usize + part.len());
    if !part.is_empty() && p >= start && q <= end {
        frame.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// The listing window a list request asks for.
///
/// # Errors
/// `LimitExceeded` for a bound longer than a key.
pub fn list_options(r: &fb::List<'_>) -> Result<ListOptions, NodeError> {
    Ok(ListOptions {
        start: bound(r.start())?,
        end: bound(r.end())?,
        prefix: bound(r.prefix())?,
        start_after: bound(r.start_after())?,
        reverse: r.reverse(),
        limit: r.limit(),
        with_meta: r.with_meta(),
    })
}

/// The byte range a get asks for (`None`: the whole Candy).
///
/// # Errors
/// `InvalidArgument` for an unknown range kind.
pub fn get_range(r: &fb::Get<'_>) -> Result<Option<ByteRange>, NodeError> {
    range_of(r.range_kind(), r.first(), r.last())
}

/// The byte range of a get's `range_kind`, `first` and `last` (`None`: the whole Candy).
///
/// # Errors
/// `InvalidArgument` for an unknown range kind.
pub fn range_of(kind: fb::RangeKind, first: u64, last: u64) -> Result<Option<ByteRange>, NodeError> {
    Ok(match kind {
        fb::RangeKind::Whole => None,
        fb::RangeKind::FromTo => Some(ByteRange::FromTo(first, last)),
        fb::RangeKind::From => Some(ByteRange::From(first)),
        fb::RangeKind::Suffix => Some(ByteRange::Suffix(first)),
        other => return Err(NodeError::invalid("range_kind", format!("unknown range kind {}", other.0))),
    })
}

/// Turns a verified request into a command. `body` is the body channel of a streamed request
/// (put, upload-part); it is `None` for the others.
///
/// # Errors
/// Typed errors for bad contents: `InvalidArgument` with the field, `LimitExceeded`,
/// `UnknownRequest`.
pub fn parse(req: fb::Request<'_>, body: Option<BodyRx>, frame: &Bytes) -> Result<Command, NodeError> {
    let kind = req.body_type();
    let missing = || NodeError::invalid("body", "request body is missing");
    let need_body = |b: Option<BodyRx>| b.ok_or_else(|| NodeError::Internal("streamed request without a body".into()));
    Ok(match kind {
        fb::RequestBody::CreateBox => {
            let r = req.body_as_create_box().ok_or_else(missing)?;
            Command::CreateBox {
                name: box_name(r.box_name())?,
                partitions: r.partitions(),
                versioning: versioning_of(r.versioning())?,
            }
        }
        fb::RequestBody::DeleteBox => {
            let r = req.body_as_delete_box().ok_or_else(missing)?;
            Command::DeleteBox { name: box_name(r.box_name())?, force: r.force() }
        }
        fb::RequestBody::HeadBox => {
            let r = req.body_as_head_box().ok_or_else(missing)?;
            Command::HeadBox { name: box_name(r.box_name())? }
        }
        fb::RequestBody::ListBoxes => Command::ListBoxes,
        fb::RequestBody::Topology => Command::Topology,
        fb::RequestBody::Stats => Command::Stats,
        fb::RequestBody::Put => {
            let r = req.body_as_put().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::Put {
                    opts: put_options(r.content_type(), r.user_meta(), r.size(), r.condition())?,
                    body: need_body(body)?,
                },
            }
        }
        fb::RequestBody::Get => {
            let r = req.body_as_get().ok_or_else(missing)?;
            let range = get_range(&r)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::Get { range, version: hlc_of(r.version_id()) },
            }
        }
        fb::RequestBody::Head => {
            let r = req.body_as_head().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::Head { version: hlc_of(r.version_id()) },
            }
        }
        fb::RequestBody::Delete => {
            let r = req.body_as_delete().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::Delete { condition: condition(r.condition())?, version: hlc_of(r.version_id()) },
            }
        }
        fb::RequestBody::List => {
            let r = req.body_as_list().ok_or_else(missing)?;
            let opts = list_options(&r)?;
            Command::Partitioned {
                box_name: box_name(r.box_name())?,
                partition: r.partition(),
                op: PartitionOp::List(opts),
            }
        }
        fb::RequestBody::DeleteRange => {
            let r = req.body_as_delete_range().ok_or_else(missing)?;
            let op = PartitionOp::DeleteRange {
                start: bound(r.start())?.unwrap_or_default(),
                end: bound(r.end())?.unwrap_or_default(),
                prefix: bound(r.prefix())?,
            };
            Command::Partitioned { box_name: box_name(r.box_name())?, partition: r.partition(), op }
        }
        fb::RequestBody::Copy => {
            let r = req.body_as_copy().ok_or_else(missing)?;
            Command::CopyOrRename {
                box_name: box_name(r.box_name())?,
                source_key: key("source_key", Some(r.source_key()))?,
                target_key: key("target_key", Some(r.target_key()))?,
                rename: false,
                opts: CopyOptions { condition: condition(r.condition())?, replace: meta_replace(r.replace())? },
                source_version: hlc_of(r.source_version()),
            }
        }
        fb::RequestBody::Rename => {
            let r = req.body_as_rename().ok_or_else(missing)?;
            Command::CopyOrRename {
                box_name: box_name(r.box_name())?,
                source_key: key("source_key", Some(r.source_key()))?,
                target_key: key("target_key", Some(r.target_key()))?,
                rename: true,
                opts: CopyOptions { condition: condition(r.condition())?, replace: meta_replace(r.replace())? },
                source_version: None,
            }
        }
        fb::RequestBody::CreateUpload => {
            let r = req.body_as_create_upload().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::CreateUpload { opts: put_options(r.content_type(), r.user_meta(), -1, None)? },
            }
        }
        fb::RequestBody::UploadPart => {
            let r = req.body_as_upload_part().ok_or_else(missing)?;
            let size = put_options(None, None, r.size(), None)?.size;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::UploadPart {
                    upload_id: r.upload_id(),
                    part_number: r.part_number(),
                    size,
                    body: need_body(body)?,
                },
            }
        }
        fb::RequestBody::CompleteUpload => {
            let r = req.body_as_complete_upload().ok_or_else(missing)?;
            let parts: Vec<u32> = r.part_numbers().map(|v| v.iter().collect()).unwrap_or_default();
            if parts.len() > limits::MULTIPART_PARTS_MAX as usize {
                return Err(NodeError::Engine(CoreError::LimitExceeded {
                    limit: "parts per upload",
                    value: parts.len() as u64,
                    max: u64::from(limits::MULTIPART_PARTS_MAX),
                }));
            }
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::CompleteUpload {
                    upload_id: r.upload_id(),
                    parts,
                    user_meta: key_values("user_meta", r.user_meta())?,
                    condition: condition(r.condition())?,
                },
            }
        }
        fb::RequestBody::AbortUpload => {
            let r = req.body_as_abort_upload().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::AbortUpload { upload_id: r.upload_id() },
            }
        }
        fb::RequestBody::ListUploads => {
            let r = req.body_as_list_uploads().ok_or_else(missing)?;
            Command::Partitioned {
                box_name: box_name(r.box_name())?,
                partition: r.partition(),
                op: PartitionOp::ListUploads,
            }
        }
        fb::RequestBody::ListParts => {
            let r = req.body_as_list_parts().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::ListParts { upload_id: r.upload_id() },
            }
        }
        fb::RequestBody::GetLocator => {
            let r = req.body_as_get_locator().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::GetLocator { version: hlc_of(r.version_id()) },
            }
        }
        fb::RequestBody::PrepareRename => {
            let r = req.body_as_prepare_rename().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("source_key", Some(r.source_key()))?,
                op: KeyedOp::PrepareRename { target_key: key("target_key", Some(r.target_key()))? },
            }
        }
        fb::RequestBody::ZeroCopyPut => {
            let r = req.body_as_zero_copy_put().ok_or_else(missing)?;
            let rename_token = match r.rename_token() {
                Some(t) => Some(token(Some(t), "rename_token")?),
                None => None,
            };
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::ZeroCopyPut {
                    locator: slice_of(frame, r.locator().bytes()),
                    rename_token,
                    source_partition: u16::try_from(r.source_partition()).ok(),
                    opts: CopyOptions { condition: condition(r.condition())?, replace: meta_replace(r.replace())? },
                },
            }
        }
        fb::RequestBody::CompleteRename => {
            let r = req.body_as_complete_rename().ok_or_else(missing)?;
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("source_key", Some(r.source_key()))?,
                op: KeyedOp::CompleteRename { token: token(Some(r.token()), "token")? },
            }
        }
        fb::RequestBody::SetMeta => {
            let r = req.body_as_set_meta().ok_or_else(missing)?;
            let replace = meta_replace(Some(r.replace()))?.unwrap_or_default();
            Command::Keyed {
                box_name: box_name(r.box_name())?,
                key: key("key", Some(r.key()))?,
                op: KeyedOp::SetMeta { replace, condition: condition(r.condition())? },
            }
        }
        fb::RequestBody::SetVersioning => {
            let r = req.body_as_set_versioning().ok_or_else(missing)?;
            Command::SetVersioning { name: box_name(r.box_name())?, versioning: versioning_of(r.versioning())? }
        }
        fb::RequestBody::ListVersions => {
            let r = req.body_as_list_versions().ok_or_else(missing)?;
            let opts = VersionListOptions {
                prefix: bound(r.prefix())?,
                key_marker: bound(r.key_marker())?,
                version_marker: hlc_of(r.version_marker()),
                limit: r.limit(),
                with_meta: r.with_meta(),
            };
            Command::Partitioned {
                box_name: box_name(r.box_name())?,
                partition: r.partition(),
                op: PartitionOp::ListVersions(opts),
            }
        }
        fb::RequestBody::DeleteMany => {
            let r = req.body_as_delete_many().ok_or_else(missing)?;
            if r.keys().len() > DELETE_MANY_KEYS_MAX {
                return Err(NodeError::Engine(CoreError::LimitExceeded {
                    limit: "keys per delete-many",
                    value: r.keys().len() as u64,
                    max: DELETE_MANY_KEYS_MAX as u64,
                }));
            }
            let mut keys = Vec::with_capacity(r.keys().len());
            for k in r.keys() {
                let version = hlc_of(k.version_id());
                let condition = condition(k.condition())?;
                if version.is_some() && condition.is_some() {
                    return Err(NodeError::invalid("keys.condition", "a delete of a version by id takes no condition"));
                }
                keys.push((key("keys.key", Some(k.key()))?, condition, version));
            }
            Command::DeleteMany { box_name: box_name(r.box_name())?, keys }
        }
        other => return Err(NodeError::UnknownRequest(other.0)),
    })
}
