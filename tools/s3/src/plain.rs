//! Reads of an object's plaintext: the node's bytes as they are, or, for an encrypted object,
//! the stored chunks covering the asked range, decrypted (see `sse`).
//!
//! A read starts with one node get whose range is the one asked; its metadata tells whether the
//! object is encrypted. If it is (and the range is not the whole object), that get is dropped
//! (which cancels it) and the stored span of the plaintext range is got instead, of the same
//! version: a read whose second get finds another version starts over, at most a few times.

use candybox_wire::client::{ByteRange, CandyMeta, ClientError, GetStream, Hlc, TokioClient, TokioDriver};
use s3s::dto::Range;
use s3s::{s3_error, S3Result};

use crate::body::Download;
use crate::errors::{s3_error, Missing};
use crate::meta::{self, View};
use crate::sse::{Customer, KeyRing, Opener};

/// The plaintext a read asks for.
#[derive(Debug, Clone)]
pub enum Want {
    /// All of it.
    Whole,
    /// An HTTP range.
    Range(Range),
    /// `len` bytes from `first` (a part, a copy-source range).
    Span {
        /// The first byte.
        first: u64,
        /// How many.
        len: u64,
    },
}

impl Want {
    /// The node range of the first get.
    pub fn node_range(&self) -> ByteRange {
        match self {
            Want::Whole => ByteRange::Whole,
            Want::Range(r) => crate::gateway::byte_range(Some(r)),
            Want::Span { len: 0, .. } => ByteRange::Whole,
            Want::Span { first, len } => ByteRange::FromTo { first: *first, last: first + len - 1 },
        }
    }

    fn of_size(&self, total: u64) -> S3Result<(u64, u64)> {
        let unsatisfiable = || s3_error!(InvalidRange, "The requested range is not satisfiable");
        match self {
            Want::Whole => Ok((0, total)),
            Want::Range(r) => {
                let s = r.check(total).map_err(|_| unsatisfiable())?;
                Ok((s.start, s.end - s.start))
            }
            Want::Span { first, len } => {
                if first.checked_add(*len).is_none_or(|end| end > total) {
                    return Err(unsatisfiable());
                }
                Ok((*first, *len))
            }
        }
    }
}

/// An object's plaintext on its way out.
pub struct Plain {
    /// The bytes.
    pub body: Download,
    /// The object's metadata.
    pub meta: CandyMeta,
    /// Its S3 view.
    pub view: View,
    /// The first plaintext byte of the body.
    pub first: u64,
    /// The body's length.
    pub length: u64,
    /// The object's plaintext size.
    pub total: u64,
}

/// The object a read names: Box, key and version (`None`: the current one).
#[derive(Debug, Clone, Copy)]
pub struct Named<'a> {
    /// The Box.
    pub box_name: &'a str,
    /// The key.
    pub key: &'a [u8],
    /// The version.
    pub version: Option<Hlc>,
}

/// How many times a read starts over when the object changes under it.
const TRIES: usize = 4;

/// The plaintext `want` of the object `get` (already started with `want.node_range()` on
/// `named`) reads. `customer`: the SSE-C key the request gave.
///
/// # Errors
/// SSE-C refusals (see `Sealed::open`), `InvalidRange`, and the node's errors.
pub async fn finish(
    client: &TokioClient,
    keys: &KeyRing,
    mut get: GetStream<TokioDriver>,
    named: Named<'_>,
    want: &Want,
    customer: Option<&Customer>,
) -> S3Result<Plain> {
    let Named { box_name, key, version } = named;
    for _ in 0..TRIES {
        let meta = get.meta().clone();
        let view = meta::view_of(&meta);
        let Some(sealed) = view.sealed.as_ref() else {
            if customer.is_some() {
                return Err(s3_error!(InvalidRequest, "The encryption parameters are not applicable to this object."));
            }
            let (first, length, total) = (get.first(), get.length(), meta.size);
            return Ok(Plain { body: Download::new(get), meta, view, first, length, total });
        };
        let data_key = sealed.open(keys, customer)?;
        let layout = view
            .layout
            .clone()
            .ok_or_else(|| s3_error!(InternalError, "the encrypted object's plaintext size is not recorded"))?;
        let total = layout.size();
        let (first, length) = want.of_size(total)?;
        if length == 0 {
            return Ok(Plain { body: Download::empty(), meta, view, first, length, total });
        }
        let span = layout.span(first, length);
        let opener = Opener::new(&data_key, &layout, &span);
        if span.stored_first == get.first() && span.stored_last + 1 == get.first() + get.length() {
            return Ok(Plain { body: Download::decrypting(get, opener, length), meta, view, first, length, total });
        }
        drop(get);
        let range = ByteRange::FromTo { first: span.stored_first, last: span.stored_last };
        get = client.get_version(box_name, key, range, version).await.map_err(|e| read_again(e, version))?;
        if get.meta().hlc == meta.hlc {
            return Ok(Plain { body: Download::decrypting(get, opener, length), meta, view, first, length, total });
        }
        // Another version took its place between the two gets: read that one.
        drop(get);
        get =
            client.get_version(box_name, key, want.node_range(), version).await.map_err(|e| read_again(e, version))?;
    }
    Err(s3_error!(SlowDown, "The object changed while it was being read; please retry."))
}

fn read_again(e: ClientError, version: Option<Hlc>) -> s3s::S3Error {
    s3_error(e, if version.is_some() { Missing::Version } else { Missing::Key })
}
