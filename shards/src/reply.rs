//! Replies: the node's error type, its one mapping onto the wire `Error` table, and the builders
//! of every reply body.
//!
//! Invariants:
//! - Every error reaches the wire through [`error_fields`], one explicit `match` from each error
//!   (the node's and core's) to an `ErrorCode` with its detail fields.
//! - A reply is a finished `Reply` flatbuffer (not size-prefixed), moved as `Bytes`.

use bytes::Bytes;
use candybox_core::{
    coord::CoordError,
    engine::{CandyReader, ListPage, PartInfo, PutReply, UploadInfo},
    error::Error as CoreError,
    hlc::Hlc,
    locator::{CandyLocator, Head},
};
use candybox_wire::fb;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

/// Why the node refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The partition engine refused or failed.
    #[error(transparent)]
    Engine(#[from] CoreError),
    /// No Box of that name.
    #[error("box not found: {0}")]
    BoxNotFound(String),
    /// create-box of an existing Box.
    #[error("box already exists: {0}")]
    BoxExists(String),
    /// delete-box of a Box that holds Candies, without force.
    #[error("box is not empty: {0}")]
    BoxNotEmpty(String),
    /// The coordination store failed.
    #[error(transparent)]
    Coord(#[from] CoordError),
    /// Overloaded (a full queue); retry later.
    #[error("busy: {reason}; retry after {retry_after_ms} ms")]
    Busy {
        /// Why.
        reason: &'static str,
        /// When to retry.
        retry_after_ms: u32,
    },
    /// A request field is invalid.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the schema.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A union member this node does not know.
    #[error("unknown request kind {0}")]
    UnknownRequest(u8),
    /// A relayed locator that fails the flatbuffers verifier or names another Box.
    #[error("forged locator: {0}")]
    Forged(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// Another node serves the Box: the client should ask it.
    #[error("box {box_name} is served by node {node} at {owner}")]
    NotOwner {
        /// The Box.
        box_name: String,
        /// The serving node's id.
        node: u16,
        /// `host:port` of its main port.
        owner: String,
    },
    /// The key has no current object because its newest version is this delete marker (a
    /// versioned Box): `NotFound` on the wire, naming the marker (S3's `x-amz-delete-marker`).
    #[error("not found: the key's newest version is delete marker {0}")]
    NotFoundMarker(Hlc),
    /// The partition cannot take mutations now: its lease is not held (the coordination
    /// session is suspended or lost, or the lease is being re-acquired). Reads go on; retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected condition.
    #[error("internal error: {0}")]
    Internal(String),
    /// The partition's files are damaged: it was not opened, and every request for it gets this
    /// answer until an operator repairs it (see `candybox-inspect`) and restarts the node. The
    /// node serves every other partition.
    #[error("partition {box_name}/{partition} is quarantined: {evidence}")]
    Quarantined {
        /// The Box.
        box_name: String,
        /// The partition.
        partition: u16,
        /// What is damaged: the file (relative to the data directory) and the offset.
        evidence: String,
    },
}

impl NodeError {
    /// An invalid field.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        NodeError::Invalid { field, reason: reason.into() }
    }

    /// True for Busy answers (counted apart).
    pub fn is_busy(&self) -> bool {
        matches!(self, NodeError::Busy { .. } | NodeError::Engine(CoreError::Busy { .. }))
    }
}

/// A node file as a client may see it: from the data directory's `boxes` or `syrups` folder on,
/// never the server's own path.
pub fn node_file(path: &std::path::Path) -> String {
    let parts: Vec<_> = path.components().collect();
    let from = parts
        .iter()
        .rposition(|c| matches!(c.as_os_str().to_str(), Some("boxes" | "syrups" | "coord")))
        .unwrap_or(parts.len().saturating_sub(1));
    parts.get(from..).unwrap_or_default().iter().collect::<std::path::PathBuf>().display().to_string()
}

/// The evidence of a corruption as a client may see it: the kind of file, the file (see
/// [`node_file`]) and what is wrong, with offsets and checksums.
pub fn evidence(c: &candybox_core::error::Corruption) -> String {
    format!("corrupt {} {}: {}", c.kind, node_file(&c.path), c.error)
}

/// The one-line message a client gets for `e`: I/O errors and corruption name the operation and
/// the file inside the data directory, never a server path (the node logs the whole error).
fn client_message(e: &NodeError) -> String {
    match e {
        NodeError::Engine(CoreError::Io(io)) => {
            tracing::error!(error = %io, "request failed with an I/O error");
            format!("I/O error on the node: {} {}: {}", io.op, node_file(&io.path), io.source)
        }
        NodeError::Engine(CoreError::Corrupt(c)) => {
            tracing::error!(error = %c, "request found corrupt data");
            evidence(c)
        }
        other => other.to_string(),
    }
}

/// The fields of a wire `Error` table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// The code.
    pub code: u16,
    /// One line: what and why.
    pub message: String,
    /// InvalidArgument: the field.
    pub field: Option<&'static str>,
    /// LimitExceeded: name, value, max.
    pub limit: Option<(&'static str, u64, u64)>,
    /// Busy: retry hint.
    pub retry_after_ms: u32,
    /// NotOwner: the owner's address.
    pub owner: Option<String>,
    /// PreconditionFailed: the key's current version (`None`: no live object).
    pub current_version: Option<Hlc>,
}

/// The one mapping from errors to the wire (`ErrorCode` and details).
pub fn error_fields(e: &NodeError) -> ErrorFields {
    let message = client_message(e);
    let mut f = ErrorFields { message, ..ErrorFields::default() };
    let code = match e {
        NodeError::Engine(core) => match core {
            CoreError::Io(_) => fb::ErrorCode::Internal,
            CoreError::Corrupt(_) => fb::ErrorCode::Corrupt,
            CoreError::PreviousIo => fb::ErrorCode::Unavailable,
            CoreError::NotFound => fb::ErrorCode::NotFound,
            CoreError::InvalidArgument { field, .. } => {
                f.field = Some(field);
                fb::ErrorCode::InvalidArgument
            }
            CoreError::LimitExceeded { limit, value, max } => {
                f.limit = Some((limit, *value, *max));
                fb::ErrorCode::LimitExceeded
            }
            CoreError::Busy { retry_after_ms, .. } => {
                f.retry_after_ms = *retry_after_ms;
                fb::ErrorCode::Busy
            }
            CoreError::Forged(_) => fb::ErrorCode::ForgedLocator,
            CoreError::ChecksumMismatch { .. } => fb::ErrorCode::ChecksumMismatch,
            CoreError::Body(_) => {
                f.field = Some("body");
                fb::ErrorCode::InvalidArgument
            }
            CoreError::Closed => fb::ErrorCode::ShuttingDown,
            CoreError::Conflict(_) => fb::ErrorCode::Conflict,
            CoreError::NoSpace => fb::ErrorCode::NoSpace,
            CoreError::PreconditionFailed { current, .. } => {
                f.current_version = *current;
                fb::ErrorCode::PreconditionFailed
            }
            CoreError::DeleteMarker { version } => {
                f.current_version = Some(*version);
                fb::ErrorCode::IsDeleteMarker
            }
        },
        NodeError::BoxNotFound(_) => fb::ErrorCode::BoxNotFound,
        NodeError::BoxExists(_) => fb::ErrorCode::BoxExists,
        NodeError::BoxNotEmpty(_) => fb::ErrorCode::BoxNotEmpty,
        NodeError::Coord(c) => match c {
            // A stale fencing token: the lease moved on; this node must not mutate.
            CoordError::Unavailable(_) | CoordError::Fenced { .. } => fb::ErrorCode::Unavailable,
            CoordError::NoNode(_)
            | CoordError::NodeExists(_)
            | CoordError::BadVersion { .. }
            | CoordError::NotEmpty(_)
            | CoordError::BadPath(_)
            | CoordError::Store(_) => fb::ErrorCode::Internal,
        },
        NodeError::Busy { retry_after_ms, .. } => {
            f.retry_after_ms = *retry_after_ms;
            fb::ErrorCode::Busy
        }
        NodeError::Invalid { field, .. } => {
            f.field = Some(field);
            fb::ErrorCode::InvalidArgument
        }
        NodeError::UnknownRequest(_) => fb::ErrorCode::UnknownRequest,
        NodeError::NotFoundMarker(v) => {
            f.current_version = Some(*v);
            fb::ErrorCode::NotFound
        }
        NodeError::Forged(_) => fb::ErrorCode::ForgedLocator,
        NodeError::ShuttingDown => fb::ErrorCode::ShuttingDown,
        NodeError::NotOwner { owner, .. } => {
            f.owner = Some(owner.clone());
            fb::ErrorCode::NotOwner
        }
        NodeError::Unavailable(_) => {
            f.retry_after_ms = crate::limits::UNAVAILABLE_RETRY_AFTER_MS;
            fb::ErrorCode::Unavailable
        }
        NodeError::Internal(_) => fb::ErrorCode::Internal,
        NodeError::Quarantined { .. } => fb::ErrorCode::Corrupt,
    };
    f.code = code.0;
    f
}

/// What the owner of a partition hands back for one request: a finished reply, or a get's reply
/// plus the reader of its bytes (slices of Syrup mappings; `Send`, so the shard that holds the
/// connection writes them).
#[derive(Debug)]
pub enum Outcome {
    /// A finished `Reply` flatbuffer.
    Reply(Bytes),
    /// A finished `Reply` flatbuffer carrying an error.
    Failed {
        /// The reply.
        reply: Bytes,
        /// True for Busy (counted apart).
        busy: bool,
        /// True for NoSpace (counted apart: `candybox_nospace_refusals_total`).
        no_space: bool,
    },
    /// A get: the `Reply` with `GetDone`, then exactly `len` bytes from `body`.
    Get {
        /// The finished `Reply`.
        reply: Bytes,
        /// Bytes to send.
        len: u64,
        /// The bytes.
        body: CandyReader,
    },
}

impl Outcome {
    /// The reply of an error.
    pub fn error(e: &NodeError) -> Outcome {
        Outcome::Failed {
            reply: error_reply(e),
            busy: e.is_busy(),
            no_space: matches!(e, NodeError::Engine(CoreError::NoSpace)),
        }
    }
}

fn finish(mut fbb: FlatBufferBuilder<'_>, root: WIPOffset<fb::Reply<'_>>) -> Bytes {
    fbb.finish_minimal(root);
    let (vec, head) = fbb.collapse();
    Bytes::from(vec).slice(head..)
}

fn body_reply(mut fbb: FlatBufferBuilder<'_>, body_type: fb::ReplyBody, body: WIPOffset<UnionWIPOffset>) -> Bytes {
    let root = fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: None, body_type, body: Some(body) });
    finish(fbb, root)
}

/// A reply carrying an error.
pub fn error_reply(e: &NodeError) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let err = error_table(&mut fbb, e);
    let root =
        fb::Reply::create(&mut fbb, &fb::ReplyArgs { error: Some(err), body_type: fb::ReplyBody::NONE, body: None });
    finish(fbb, root)
}

/// `DeleteManyReply`: one result per key, in request order (the version deleted or the marker
/// written, or the error).
pub fn delete_many(results: &[Result<(Hlc, bool), std::rc::Rc<NodeError>>]) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64 + 32 * results.len());
    let results: Vec<_> = results
        .iter()
        .map(|r| match r {
            Ok((version, delete_marker)) => {
                let h = hlc(*version);
                fb::DeleteResult::create(
                    &mut fbb,
                    &fb::DeleteResultArgs { error: None, version: Some(&h), delete_marker: *delete_marker },
                )
            }
            Err(e) => {
                let error = Some(error_table(&mut fbb, e));
                fb::DeleteResult::create(&mut fbb, &fb::DeleteResultArgs { error, ..Default::default() })
            }
        })
        .collect();
    let results = Some(fbb.create_vector(&results));
    let r = fb::DeleteManyReply::create(&mut fbb, &fb::DeleteManyReplyArgs { results });
    body_reply(fbb, fb::ReplyBody::DeleteManyReply, r.as_union_value())
}

fn error_table<'a>(fbb: &mut FlatBufferBuilder<'a>, e: &NodeError) -> WIPOffset<fb::Error<'a>> {
    let f = error_fields(e);
    let message = Some(fbb.create_string(&f.message));
    let field = f.field.map(|s| fbb.create_string(s));
    let limit_name = f.limit.map(|(n, _, _)| fbb.create_string(n));
    let owner = f.owner.as_deref().map(|o| fbb.create_string(o));
    fb::Error::create(
        fbb,
        &fb::ErrorArgs {
            code: fb::ErrorCode(f.code),
            message,
            field,
            limit_name,
            limit_value: f.limit.map_or(0, |l| l.1),
            limit_max: f.limit.map_or(0, |l| l.2),
            retry_after_ms: f.retry_after_ms,
            owner,
            current_version: f.current_version.map(hlc).as_ref(),
        },
    )
}

/// The wire form of a stamp.
pub fn hlc(h: Hlc) -> fb::Hlc {
    fb::Hlc::new(h.physical_ms, h.logical, h.node)
}

/// `Done`.
pub fn done() -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64);
    let d = fb::Done::create(&mut fbb, &fb::DoneArgs {});
    body_reply(fbb, fb::ReplyBody::Done, d.as_union_value())
}

/// The description of one Box: the client library's type, so node and client never disagree.
pub use candybox_wire::client::BoxInfo;

fn box_info<'a>(fbb: &mut FlatBufferBuilder<'a>, b: &BoxInfo) -> WIPOffset<fb::BoxInfo<'a>> {
    let name = Some(fbb.create_string(&b.name));
    fb::BoxInfo::create(
        fbb,
        &fb::BoxInfoArgs {
            box_name: name,
            partitions: b.partitions,
            created_ms: b.created_ms,
            box_uid: b.box_uid,
            node: b.node,
            versioning: match b.versioning {
                candybox_wire::client::Versioning::Off => fb::Versioning::Off,
                candybox_wire::client::Versioning::Enabled => fb::Versioning::Enabled,
                candybox_wire::client::Versioning::Suspended => fb::Versioning::Suspended,
            },
        },
    )
}

/// `DeleteDone`: the delete marker a versioned Box's delete wrote, or the version deleted.
pub fn delete_done(version: Hlc, delete_marker: bool) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64);
    let h = hlc(version);
    let d = fb::DeleteDone::create(&mut fbb, &fb::DeleteDoneArgs { version: Some(&h), delete_marker });
    body_reply(fbb, fb::ReplyBody::DeleteDone, d.as_union_value())
}

/// `VersionPage` of one partition.
pub fn version_page(page: &candybox_core::engine::VersionPage) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(256 + 128 * page.entries.len());
    let entries: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            let key = Some(fbb.create_vector(&e.key));
            let content_type = Some(fbb.create_string(&e.locator.content_type));
            let user_meta = candybox_wire::build::key_values(&mut fbb, e.locator.user_meta.iter().map(|(k, v)| (k, v)));
            let version = hlc(e.version);
            fb::VersionEntry::create(
                &mut fbb,
                &fb::VersionEntryArgs {
                    key,
                    version: Some(&version),
                    is_latest: e.is_latest,
                    delete_marker: e.is_delete_marker(),
                    size: e.locator.size,
                    checksum: e.locator.checksum,
                    content_type,
                    created_ms: e.locator.created_ms,
                    modified_ms: e.locator.modified_ms(),
                    user_meta,
                },
            )
        })
        .collect();
    let entries = Some(fbb.create_vector(&entries));
    let next_key_marker = page.next.as_ref().map(|(k, _)| fbb.create_vector(k));
    let next_version = page.next.as_ref().map(|(_, v)| hlc(*v));
    let r = fb::VersionPage::create(
        &mut fbb,
        &fb::VersionPageArgs { entries, next_key_marker, next_version_marker: next_version.as_ref() },
    );
    body_reply(fbb, fb::ReplyBody::VersionPage, r.as_union_value())
}

/// `BoxReply`.
pub fn box_reply(b: &BoxInfo) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(128);
    let info = Some(box_info(&mut fbb, b));
    let r = fb::BoxReply::create(&mut fbb, &fb::BoxReplyArgs { info });
    body_reply(fbb, fb::ReplyBody::BoxReply, r.as_union_value())
}

/// `BoxList`.
pub fn box_list(boxes: &[BoxInfo]) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + 64 * boxes.len());
    let infos: Vec<_> = boxes.iter().map(|b| box_info(&mut fbb, b)).collect();
    let boxes = Some(fbb.create_vector(&infos));
    let r = fb::BoxList::create(&mut fbb, &fb::BoxListArgs { boxes });
    body_reply(fbb, fb::ReplyBody::BoxList, r.as_union_value())
}

/// `PutDone`.
pub fn put_done(p: &PutReply) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(96);
    let h = hlc(p.hlc);
    let r = fb::PutDone::create(&mut fbb, &fb::PutDoneArgs { size: p.size, checksum: p.checksum, hlc: Some(&h) });
    body_reply(fbb, fb::ReplyBody::PutDone, r.as_union_value())
}

fn candy_meta<'a>(fbb: &mut FlatBufferBuilder<'a>, l: &CandyLocator) -> WIPOffset<fb::CandyMeta<'a>> {
    let head = MetaOf {
        size: l.size,
        checksum: l.checksum,
        hlc: l.version(),
        content_type: &l.content_type,
        created_ms: l.created_ms,
    };
    meta_table(fbb, &head, l.user_meta.iter().map(|(k, v)| (k, v)))
}

/// The fields of a `CandyMeta` other than the user metadata.
struct MetaOf<'s> {
    size: u64,
    checksum: u32,
    hlc: Hlc,
    content_type: &'s str,
    created_ms: u64,
}

fn meta_table<'a, K: AsRef<str>, V: AsRef<str>>(
    fbb: &mut FlatBufferBuilder<'a>,
    m: &MetaOf<'_>,
    user_meta: impl IntoIterator<Item = (K, V)>,
) -> WIPOffset<fb::CandyMeta<'a>> {
    let content_type = Some(fbb.create_string(m.content_type));
    let user_meta = candybox_wire::build::key_values(fbb, user_meta);
    let h = hlc(m.hlc);
    fb::CandyMeta::create(
        fbb,
        &fb::CandyMetaArgs {
            size: m.size,
            checksum: m.checksum,
            hlc: Some(&h),
            content_type,
            user_meta,
            created_ms: m.created_ms,
        },
    )
}

/// The `CandyMeta` of a locator head viewed in place.
fn view_meta<'a>(fbb: &mut FlatBufferBuilder<'a>, h: &Head<'_>) -> WIPOffset<fb::CandyMeta<'a>> {
    let m = MetaOf {
        size: h.size,
        checksum: h.checksum,
        hlc: h.version(),
        content_type: h.content_type,
        created_ms: h.created_ms,
    };
    meta_table(fbb, &m, h.user_meta())
}

/// Builds a reply in `fbb` (reset first, so one builder serves a connection's requests without
/// allocating) and returns its bytes.
fn reply_in<'f>(
    fbb: &'f mut FlatBufferBuilder<'static>,
    body_type: fb::ReplyBody,
    body: impl FnOnce(&mut FlatBufferBuilder<'static>) -> WIPOffset<UnionWIPOffset>,
) -> &'f [u8] {
    fbb.reset();
    let body = Some(body(fbb));
    let root = fb::Reply::create(fbb, &fb::ReplyArgs { error: None, body_type, body });
    fbb.finish_minimal(root);
    fbb.finished_data()
}

/// `GetDone` of a Candy whose locator head is viewed in place, built in `fbb`.
pub fn get_done_in<'f>(fbb: &'f mut FlatBufferBuilder<'static>, h: &Head<'_>, first: u64, length: u64) -> &'f [u8] {
    reply_in(fbb, fb::ReplyBody::GetDone, |fbb| {
        let meta = Some(view_meta(fbb, h));
        fb::GetDone::create(fbb, &fb::GetDoneArgs { meta, first, length }).as_union_value()
    })
}

/// A connection's reply scratch: the builder its in-place replies are built in (reset for each,
/// so nothing is allocated per reply), and the last `GetDone` shape it built.
///
/// Invariants:
/// - The template is a finished `Reply { GetDone { CandyMeta } }` built with every scalar field
///   written (defaults included), so each of them has a fixed place in its bytes; a reply for a
///   Candy with the template's content type and no user metadata differs from it only in those
///   places, and is the template with them overwritten (the flatbuffer's structure untouched).
/// - A Candy with user metadata, or another content type, is built field by field (the template
///   is then rebuilt for the new content type, so a run of one type pays for it once).
pub struct ReplyScratch {
    /// Where replies other than a templated `GetDone` are built.
    pub fbb: FlatBufferBuilder<'static>,
    get_done: Option<GetDoneTemplate>,
}

/// A finished `GetDone` reply and where its per-Candy fields lie in it.
struct GetDoneTemplate {
    content_type: String,
    body: Vec<u8>,
    size_at: usize,
    checksum_at: usize,
    hlc_at: usize,
    created_ms_at: usize,
    first_at: usize,
    length_at: usize,
}

impl Default for ReplyScratch {
    fn default() -> Self {
        ReplyScratch { fbb: FlatBufferBuilder::with_capacity(1024), get_done: None }
    }
}

impl ReplyScratch {
    /// `GetDone` of a Candy whose locator head is viewed in place: the template with this
    /// Candy's fields written when it fits (see the invariants), else built in the builder.
    pub fn get_done(&mut self, h: &Head<'_>, first: u64, length: u64) -> &[u8] {
        if h.has_user_meta() {
            return get_done_in(&mut self.fbb, h, first, length);
        }
        if self.get_done.as_ref().is_none_or(|t| t.content_type != h.content_type) {
            self.get_done = GetDoneTemplate::new(&mut self.fbb, h.content_type);
        }
        match self.get_done.as_mut() {
            Some(t) => t.fill(h, first, length),
            // Unreachable: the builder's own output always reads back.
            None => get_done_in(&mut self.fbb, h, first, length),
        }
    }
}

impl GetDoneTemplate {
    /// Builds the template for `content_type` (every scalar written) and finds its fields;
    /// `None` if the bytes do not read back as the reply built (never, for the builder's own).
    fn new(fbb: &mut FlatBufferBuilder<'static>, content_type: &str) -> Option<GetDoneTemplate> {
        fbb.reset();
        fbb.force_defaults(true);
        let ct = Some(fbb.create_string(content_type));
        let h = hlc(Hlc::ZERO);
        let meta = fb::CandyMeta::create(
            fbb,
            &fb::CandyMetaArgs {
                size: 0,
                checksum: 0,
                hlc: Some(&h),
                content_type: ct,
                user_meta: None,
                created_ms: 0,
            },
        );
        let g = fb::GetDone::create(fbb, &fb::GetDoneArgs { meta: Some(meta), first: 0, length: 0 });
        let root = fb::Reply::create(
            fbb,
            &fb::ReplyArgs { error: None, body_type: fb::ReplyBody::GetDone, body: Some(g.as_union_value()) },
        );
        fbb.finish_minimal(root);
        fbb.force_defaults(false);
        let body = fbb.finished_data().to_vec();
        let reply = candybox_wire::frame::verify_reply(&body, candybox_wire::frame::FRAME_BODY_BYTES_MAX_MIN).ok()?;
        let g = reply.body_as_get_done()?;
        let m = g.meta()?;
        let at = |t: &flatbuffers::Table<'_>, field: flatbuffers::VOffsetT| -> Option<usize> {
            let off = t.vtable().get(field);
            (off != 0).then(|| t.loc() + usize::from(off))
        };
        Some(GetDoneTemplate {
            content_type: content_type.to_owned(),
            size_at: at(&m._tab, fb::CandyMeta::VT_SIZE)?,
            checksum_at: at(&m._tab, fb::CandyMeta::VT_CHECKSUM)?,
            hlc_at: at(&m._tab, fb::CandyMeta::VT_HLC)?,
            created_ms_at: at(&m._tab, fb::CandyMeta::VT_CREATED_MS)?,
            first_at: at(&g._tab, fb::GetDone::VT_FIRST)?,
            length_at: at(&g._tab, fb::GetDone::VT_LENGTH)?,
            body,
        })
    }

    /// The template with this Candy's fields written in.
    fn fill(&mut self, h: &Head<'_>, first: u64, length: u64) -> &[u8] {
        let hlc = hlc(h.version());
        let writes: [(usize, &[u8]); 6] = [
            (self.size_at, &h.size.to_le_bytes()),
            (self.checksum_at, &h.checksum.to_le_bytes()),
            (self.hlc_at, &hlc.0),
            (self.created_ms_at, &h.created_ms.to_le_bytes()),
            (self.first_at, &first.to_le_bytes()),
            (self.length_at, &length.to_le_bytes()),
        ];
        for (at, bytes) in writes {
            if let Some(place) = self.body.get_mut(at..at + bytes.len()) {
                place.copy_from_slice(bytes);
            }
        }
        &self.body
    }
}

/// `CandyMeta` (head) of a locator head viewed in place, built in `fbb`.
pub fn head_in<'f>(fbb: &'f mut FlatBufferBuilder<'static>, h: &Head<'_>) -> &'f [u8] {
    reply_in(fbb, fb::ReplyBody::CandyMeta, |fbb| view_meta(fbb, h).as_union_value())
}

/// `CandyMeta` (head).
pub fn head(l: &CandyLocator) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let m = candy_meta(&mut fbb, l);
    body_reply(fbb, fb::ReplyBody::CandyMeta, m.as_union_value())
}

/// `GetDone` (the payload follows).
pub fn get_done(l: &CandyLocator, first: u64, length: u64) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let meta = Some(candy_meta(&mut fbb, l));
    let r = fb::GetDone::create(&mut fbb, &fb::GetDoneArgs { meta, first, length });
    body_reply(fbb, fb::ReplyBody::GetDone, r.as_union_value())
}

/// `ListPage`.
pub fn list_page(page: &ListPage) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(256 + 128 * page.entries.len());
    let entries: Vec<_> = page
        .entries
        .iter()
        .map(|e| {
            let key = Some(fbb.create_vector(&e.key));
            let content_type = Some(fbb.create_string(&e.content_type));
            let user_meta = candybox_wire::build::key_values(&mut fbb, e.user_meta.iter().map(|(k, v)| (k, v)));
            let h = hlc(e.hlc);
            fb::ListEntry::create(
                &mut fbb,
                &fb::ListEntryArgs {
                    key,
                    size: e.size,
                    checksum: e.checksum,
                    hlc: Some(&h),
                    content_type,
                    created_ms: e.created_ms,
                    user_meta,
                },
            )
        })
        .collect();
    let entries = Some(fbb.create_vector(&entries));
    let next_start_after = page.next_start_after.as_ref().map(|k| fbb.create_vector(k));
    let r = fb::ListPage::create(&mut fbb, &fb::ListPageArgs { entries, next_start_after });
    body_reply(fbb, fb::ReplyBody::ListPage, r.as_union_value())
}

/// `UploadCreated`.
pub fn upload_created(id: u64) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64);
    let r = fb::UploadCreated::create(&mut fbb, &fb::UploadCreatedArgs { upload_id: id });
    body_reply(fbb, fb::ReplyBody::UploadCreated, r.as_union_value())
}

/// `UploadList`.
pub fn upload_list(uploads: &[UploadInfo]) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + 64 * uploads.len());
    let items: Vec<_> = uploads
        .iter()
        .map(|u| {
            let key = Some(fbb.create_vector(&u.key));
            fb::UploadInfo::create(
                &mut fbb,
                &fb::UploadInfoArgs {
                    key,
                    upload_id: u.id,
                    created_ms: u.created_ms,
                    parts: u32::try_from(u.parts).unwrap_or(u32::MAX),
                },
            )
        })
        .collect();
    let uploads = Some(fbb.create_vector(&items));
    let r = fb::UploadList::create(&mut fbb, &fb::UploadListArgs { uploads });
    body_reply(fbb, fb::ReplyBody::UploadList, r.as_union_value())
}

/// `PartList`.
pub fn part_list(parts: &[PartInfo]) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + 32 * parts.len());
    let items: Vec<_> = parts
        .iter()
        .map(|p| {
            fb::PartInfo::create(
                &mut fbb,
                &fb::PartInfoArgs { part_number: p.number, size: p.size, checksum: p.checksum },
            )
        })
        .collect();
    let parts = Some(fbb.create_vector(&items));
    let r = fb::PartList::create(&mut fbb, &fb::PartListArgs { parts });
    body_reply(fbb, fb::ReplyBody::PartList, r.as_union_value())
}

/// `LocatorReply`.
pub fn locator_reply(locator: &[u8], partition: u16) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + locator.len());
    let locator = Some(fbb.create_vector(locator));
    let r = fb::LocatorReply::create(&mut fbb, &fb::LocatorReplyArgs { locator, partition });
    body_reply(fbb, fb::ReplyBody::LocatorReply, r.as_union_value())
}

/// `RenamePrepared`.
pub fn rename_prepared(
    token: u128,
    locator: &[u8],
    source_hlc: Hlc,
    source_partition: u16,
    target_partition: u16,
) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(160 + locator.len());
    let token = Some(fbb.create_vector(&token.to_le_bytes()));
    let locator = Some(fbb.create_vector(locator));
    let h = hlc(source_hlc);
    let r = fb::RenamePrepared::create(
        &mut fbb,
        &fb::RenamePreparedArgs { token, locator, source_hlc: Some(&h), source_partition, target_partition },
    );
    body_reply(fbb, fb::ReplyBody::RenamePrepared, r.as_union_value())
}

/// `RenameCompleted`.
pub fn rename_completed(outcome: fb::RenameOutcome) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(64);
    let r = fb::RenameCompleted::create(&mut fbb, &fb::RenameCompletedArgs { outcome });
    body_reply(fbb, fb::ReplyBody::RenameCompleted, r.as_union_value())
}

/// The facts of a topology reply.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Node id.
    pub node_id: u16,
    /// Each shard's own port.
    pub ports: Vec<u16>,
    /// The main port.
    pub main_port: u16,
}

/// `TopologyReply`.
pub fn topology(t: &Topology, shard: u16) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + 2 * t.ports.len());
    let ports = Some(fbb.create_vector(&t.ports));
    let placement = Some(fbb.create_string(crate::placement::PLACEMENT_NAME));
    let r = fb::TopologyReply::create(
        &mut fbb,
        &fb::TopologyReplyArgs {
            node_id: t.node_id,
            shard_count: u16::try_from(t.ports.len()).unwrap_or(u16::MAX),
            ports,
            main_port: t.main_port,
            placement,
            shard,
        },
    );
    body_reply(fbb, fb::ReplyBody::TopologyReply, r.as_union_value())
}

/// `StatsReply`: per shard, its counters by name.
pub fn stats(shards: &[Vec<(&'static str, u64)>]) -> Bytes {
    let mut fbb = FlatBufferBuilder::with_capacity(4096);
    let items: Vec<_> = shards
        .iter()
        .enumerate()
        .map(|(s, counters)| {
            let cs: Vec<_> = counters
                .iter()
                .map(|(name, value)| {
                    let name = Some(fbb.create_string(name));
                    fb::Counter::create(&mut fbb, &fb::CounterArgs { name, value: *value })
                })
                .collect();
            let counters = Some(fbb.create_vector(&cs));
            fb::ShardStats::create(&mut fbb, &fb::ShardStatsArgs { shard: s as u16, counters })
        })
        .collect();
    let shards = Some(fbb.create_vector(&items));
    let r = fb::StatsReply::create(&mut fbb, &fb::StatsReplyArgs { shards });
    body_reply(fbb, fb::ReplyBody::StatsReply, r.as_union_value())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_codes_with_details() {
        let f = error_fields(&NodeError::Engine(CoreError::Busy { reason: "x", retry_after_ms: 7 }));
        assert_eq!((f.code, f.retry_after_ms), (fb::ErrorCode::Busy.0, 7));
        let f = error_fields(&NodeError::invalid("box_name", "bad"));
        assert_eq!((f.code, f.field), (fb::ErrorCode::InvalidArgument.0, Some("box_name")));
        // Story: a full disk answered `internal error on the node: write /srv/candybox/syrups/...:
        // No space left on device`, the server's path in a client's message.
        let io = candybox_core::error::IoError::new(
            "write",
            "/srv/secret/candybox-data/syrups/0001.syrup",
            std::io::Error::from_raw_os_error(5),
        );
        let f = error_fields(&NodeError::Engine(CoreError::Io(io)));
        assert!(f.message.contains("write syrups/0001.syrup"), "{}", f.message);
        assert!(!f.message.contains("/srv/secret"), "{}", f.message);
        let f =
            error_fields(&NodeError::Engine(CoreError::LimitExceeded { limit: "key length", value: 2000, max: 1024 }));
        assert_eq!(f.limit, Some(("key length", 2000, 1024)));
        let bytes = error_reply(&NodeError::UnknownRequest(99));
        let r = candybox_wire::frame::verify_reply(&bytes, 1 << 20).unwrap();
        assert_eq!(r.error().unwrap().code(), fb::ErrorCode::UnknownRequest);
    }

    fn locator(content_type: &str, user_meta: &[(&str, &str)], size: u64, stamp: u64) -> CandyLocator {
        CandyLocator {
            hlc: Hlc { physical_ms: stamp, logical: (stamp % 7) as u32, node: 3 },
            kind: candybox_core::locator::Kind::Put,
            version_id: None,
            content_type: content_type.into(),
            user_meta: user_meta.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            created_ms: stamp * 3,
            size,
            checksum: (stamp as u32).wrapping_mul(0x9E37_79B9),
            body: candybox_core::locator::CandyBody::Inline(vec![7; size as usize]),
        }
    }

    /// Everything a `GetDone` body says: size, checksum, HLC, content type, user metadata,
    /// created-at, first, length.
    type Said = (u64, u32, (u64, u32, u16), String, Vec<(String, String)>, u64, u64, u64);

    /// What a `GetDone` body says, read through the verifier.
    fn said(body: &[u8]) -> Said {
        let r = candybox_wire::frame::verify_reply(body, 1 << 20).unwrap();
        let g = r.body_as_get_done().unwrap();
        let m = g.meta().unwrap();
        let h = m.hlc().unwrap();
        let meta = m
            .user_meta()
            .map(|v| v.iter().map(|kv| (kv.key().to_owned(), kv.value().to_owned())).collect())
            .unwrap_or_default();
        (
            m.size(),
            m.checksum(),
            (h.physical_ms(), h.logical(), h.node()),
            m.content_type().unwrap_or_default().to_owned(),
            meta,
            m.created_ms(),
            g.first(),
            g.length(),
        )
    }

    #[test]
    fn templated_get_replies_say_what_built_ones_say() {
        let mut scratch = ReplyScratch::default();
        let mut fbb = FlatBufferBuilder::new();
        // Runs of one content type, a change of type, zero fields, user metadata between.
        let cases = [
            locator("application/octet-stream", &[], 1024, 1),
            locator("application/octet-stream", &[], 0, 0),
            locator("application/octet-stream", &[], 77, 1 << 40),
            locator("text/plain", &[], 5, 9),
            locator("text/plain", &[("a", "b"), ("colour", "blue")], 5, 10),
            locator("text/plain", &[], 6, 11),
            locator("", &[], 3, 12),
            locator("application/octet-stream", &[], 4096, u64::MAX >> 20),
        ];
        for (i, l) in cases.iter().enumerate() {
            let encoded = l.encode();
            let head = Head::view(&encoded).unwrap().unwrap();
            let (first, length) = (i as u64 % 2, l.size - (i as u64 % 2).min(l.size));
            let built = said(get_done_in(&mut fbb, &head, first, length));
            let templated = said(scratch.get_done(&head, first, length));
            assert_eq!(templated, built, "case {i}");
            assert_eq!(templated.0, l.size, "case {i}");
            // The template served it (not a fall-back to the builder).
            if !l.user_meta.is_empty() {
                continue;
            }
            let t = scratch.get_done.as_ref().expect("a template");
            assert_eq!(t.content_type, l.content_type, "case {i}");
        }
        let encoded = cases[0].encode();
        let head = Head::view(&encoded).unwrap().unwrap();
        assert!(GetDoneTemplate::new(&mut fbb, head.content_type).is_some());
    }
}
