//! The merge of sorted sources that listing and compaction share: each step takes the next key
//! among the sources' heads and, of all its versions, the one with the greatest stamp (last
//! writer wins).

use bytes::Bytes;

use crate::{
    error::{Corruption, DecodeError, Error, FileKind, Result},
    hlc::Hlc,
    locator::{CandyLocator, Kind},
};

/// One sorted source of a merge: a memtable or a table, as (key, encoded locator).
pub(crate) type Source<'a> = Box<dyn Iterator<Item = Result<(Bytes, Bytes)>> + 'a>;

/// The newest version of one key, as a merge yields it.
pub(crate) struct Newest {
    pub(crate) key: Bytes,
    pub(crate) hlc: Hlc,
    pub(crate) kind: Kind,
    pub(crate) value: Bytes,
}

/// The error for a locator whose header does not decode.
pub(crate) fn locator_error(e: DecodeError) -> Error {
    Error::Corrupt(Corruption::new(FileKind::Locator, "<locator>", e))
}

/// Takes the next key (ascending, or descending with `reverse`) among the heads of `sources`, and
/// of all its versions the one with the greatest stamp.
///
/// # Errors
/// The first error a source yields; a locator whose header does not decode.
pub(crate) fn next_newest(sources: &mut [std::iter::Peekable<Source<'_>>], reverse: bool) -> Result<Option<Newest>> {
    let mut next: Option<Bytes> = None;
    for s in sources.iter_mut() {
        match s.peek() {
            Some(Ok((k, _))) if next.as_ref().is_none_or(|n| if reverse { k > n } else { k < n }) => {
                next = Some(k.clone());
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => {
                if let Some(Err(e)) = s.next() {
                    return Err(e);
                }
            }
            None => {}
        }
    }
    let Some(key) = next else { return Ok(None) };
    let mut newest: Option<(Hlc, Kind, Bytes)> = None;
    for s in sources.iter_mut() {
        if matches!(s.peek(), Some(Ok((k, _))) if *k == key) {
            if let Some(Ok((_, v))) = s.next() {
                let (kind, hlc) = CandyLocator::peek(&v).map_err(locator_error)?;
                if newest.as_ref().is_none_or(|(h, _, _)| hlc > *h) {
                    newest = Some((hlc, kind, v));
                }
            }
        }
    }
    Ok(newest.map(|(hlc, kind, value)| Newest { key, hlc, kind, value }))
}
