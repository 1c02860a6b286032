//! The read path: point lookups, byte-range reads from Syrup mappings, and merged listings.
//!
//! Invariants:
//! - The newest version of a key is the first found in memtable, frozen memtable, L0 (newest
//!   first), then L1 and below; it is hidden when a range tombstone with a greater stamp covers it.
//! - Bytes are served from read-only mappings of durable Syrup ranges; every chunk a read touches
//!   is verified against its checksum, and a whole-Candy read also verifies each Part's checksum.
//! - Listings merge every source in key order (or reverse) and return each live key once.

use std::{collections::HashMap, ops::Bound};

use bytes::Bytes;
pub use candybox_types::ListOptions;

use super::{Engine, State};
use crate::{
    error::{Error, Result},
    hlc::Hlc,
    keyspace, limits,
    locator::{CandyBody, CandyLocator, Kind},
    memtable::Memtables,
    storage::Storage,
    syrup::CandyReader,
    types::{prefix_end, validate_key, RangeTombstone, SyrupId},
    version::{
        merge::{locator_error, next_newest, Newest, Source},
        table_error, Version,
    },
};

/// A byte range of a GET, with HTTP Range semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-last`, inclusive; `last` past the end is clamped.
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The `(first, len)` this range selects in a Candy of `size` bytes.
    ///
    /// # Errors
    /// `InvalidArgument` (field `range`) when the range is not satisfiable.
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        let bad = || Error::invalid("range", format!("not satisfiable for a candy of {size} bytes"));
        match self {
            ByteRange::FromTo(first, last) if first <= last && first < size => {
                Ok((first, last.min(size - 1) - first + 1))
            }
            ByteRange::From(first) if first < size => Ok((first, size - first)),
            ByteRange::Suffix(n) if n > 0 && size > 0 => {
                let n = n.min(size);
                Ok((size - n, n))
            }
            _ => Err(bad()),
        }
    }
}

/// The reply to a get: the locator and a reader of the selected bytes.
#[derive(Debug)]
pub struct GetReply {
    /// The Candy's locator (metadata, size, checksum, HLC).
    pub locator: CandyLocator,
    /// First byte returned.
    pub first: u64,
    /// Bytes returned.
    pub len: u64,
    /// The bytes, verified chunk by chunk as they are taken.
    pub body: CandyReader,
}

/// Pieces of a Candy checked by [`Engine::verify_candy`] between two yields (a piece is at most a
/// chunk, 64 KiB by default).
const VERIFY_YIELD_PIECES: usize = 16;

/// Live Candies of a window with their locators, and the cursor of the next page when more follow.
pub(crate) type LivePage = (Vec<(Vec<u8>, CandyLocator)>, Option<Vec<u8>>);

/// What a listed entry costs a page besides its key, content type and metadata (its fixed
/// fields and their framing), counted against `LIST_PAGE_BYTES_MAX`.
const LIST_ENTRY_OVERHEAD_BYTES: usize = 64;

/// One listed Candy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The key.
    pub key: Vec<u8>,
    /// Bytes.
    pub size: u64,
    /// CRC-32 of the Candy.
    pub checksum: u32,
    /// The version's stamp.
    pub hlc: Hlc,
    /// MIME type.
    pub content_type: String,
    /// Creation time.
    pub created_ms: u64,
    /// User metadata (only with `ListOptions::with_meta`, else empty).
    pub user_meta: Vec<(String, String)>,
}

/// A page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Entries in order.
    pub entries: Vec<ListEntry>,
    /// When more entries follow: pass this as `start_after` for the next page.
    pub next_start_after: Option<Vec<u8>>,
}

/// The newest stamp of a range tombstone covering `key` in any source.
fn tombstone_over(mem: &Memtables, version: &Version, key: &[u8]) -> Option<Hlc> {
    let rts = mem.all().flat_map(|m| m.range_tombstones().iter()).chain(version.range_tombstones());
    rts.filter(|rt| rt.covers_key(key)).map(|rt| rt.hlc).max()
}

impl State {
    /// The newest version of `key` in the committed state (ignores the commit queue).
    pub(crate) fn resolve(&self, key: &[u8], dir: &std::path::Path) -> Result<Option<(Bytes, CandyLocator)>> {
        let Some(found) = self.find_live(key, dir)? else { return Ok(None) };
        let value = match found {
            Found::Memtable(b) => b.clone(),
            Found::Table(b) => b,
        };
        let locator = CandyLocator::decode(&value).map_err(locator_error)?;
        Ok(Some((value, locator)))
    }

    /// The encoded newest live version of `key`: borrowed from the memtable (no reference count
    /// touched), or the slice a table returned.
    fn find_live(&self, key: &[u8], dir: &std::path::Path) -> Result<Option<Found<'_>>> {
        let mut found: Option<Found<'_>> = self.mem.all().find_map(|m| m.get(key).map(|e| Found::Memtable(&e.value)));
        if found.is_none() {
            found = self.lsm.version().get(key, dir)?.map(Found::Table);
        }
        let Some(value) = found else { return Ok(None) };
        let (kind, hlc) = CandyLocator::peek(value.bytes()).map_err(locator_error)?;
        // A delete marker is a value (only the version space holds them).
        if kind == crate::locator::Kind::Tombstone {
            return Ok(None);
        }
        if tombstone_over(&self.mem, self.lsm.version(), key).is_some_and(|rt| rt > hlc) {
            return Ok(None);
        }
        Ok(Some(value))
    }
}

/// An encoded locator found by a lookup.
enum Found<'a> {
    /// In a memtable: borrowed.
    Memtable(&'a Bytes),
    /// In a table: the slice its lookup returned.
    Table(Bytes),
}

impl Found<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Found::Memtable(b) => b,
            Found::Table(b) => b,
        }
    }
}

impl<S: Storage> Engine<S> {
    /// The live locator of `key`, including mutations queued for commit (newest first).
    pub(crate) fn current_locator(&self, key: &[u8]) -> Result<Option<CandyLocator>> {
        let st = self.inner.state.borrow();
        if let Some(queued) = st.commit.newest(key) {
            return Ok(queued);
        }
        Ok(st.resolve(key, &self.inner.config.partition_dir)?.map(|(_, l)| l))
    }

    /// Runs `f` on the encoded locator of `key`'s committed live version, viewed in place (a
    /// memtable entry is not even reference-counted): for readers that need no waiting and keep
    /// nothing of it ([`crate::locator::InlineView`]). `Ok(None)` when there is no live version.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad key; `Corrupt` when a table fails its checks; the engine's
    /// failure when it stopped.
    pub fn with_encoded<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        validate_key(key)?;
        self.check_usable()?;
        let state = self.inner.state.borrow();
        Ok(state.find_live(key, &self.inner.config.partition_dir)?.map(|v| f(v.bytes())))
    }

    /// Hints `key`'s memtable entry (its first `bytes_max` bytes) into the CPU's cache ahead of a
    /// read of it; nothing otherwise (not in the memtable, the state in use).
    pub fn prefetch(&self, key: &[u8], bytes_max: usize) {
        if let Ok(state) = self.inner.state.try_borrow() {
            state.mem.live().prefetch(key, bytes_max);
        }
    }

    /// The committed live locator of `key` and its encoding.
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<(Bytes, CandyLocator)>> {
        self.check_usable()?;
        self.inner.state.borrow().resolve(key, &self.inner.config.partition_dir)
    }

    /// Reads and checks every chunk and Part checksum of `l`'s bytes when the Candy is at most
    /// `copy_verify_bytes_max` bytes (larger ones are not read: a copy stays O(1) in their size,
    /// and damage shows when either copy is read).
    ///
    /// # Errors
    /// `ChecksumMismatch` (or `Corrupt`) for damaged bytes; read failures.
    pub(crate) async fn verify_candy(&self, l: &CandyLocator) -> Result<()> {
        if l.size > self.inner.config.copy_verify_bytes_max || !l.is_live() {
            return Ok(());
        }
        let read = self.read_locator(l.clone(), None).await?;
        // Checking runs on the shard (mapped pages, CRCs): it yields every few pieces so that
        // other requests are not held up behind a 16 MiB copy.
        for (i, piece) in read.body.enumerate() {
            piece?;
            if (i + 1) % VERIFY_YIELD_PIECES == 0 {
                crate::runtime::yield_now().await;
            }
        }
        Ok(())
    }

    /// Metadata of `key`.
    ///
    /// # Errors
    /// `NotFound` when absent; `Corrupt` when a table or locator fails its checks.
    pub async fn head(&self, key: &[u8]) -> Result<CandyLocator> {
        validate_key(key)?;
        self.lookup(key)?.map(|(_, l)| l).ok_or(Error::NotFound)
    }

    /// Reads `key`, whole or a byte range.
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for an unsatisfiable range; `Io` opening or mapping a Syrup;
    /// checksum errors surface from the reader as chunks are taken.
    pub async fn get(&self, key: &[u8], range: Option<ByteRange>) -> Result<GetReply> {
        validate_key(key)?;
        let (_, locator) = self.lookup(key)?.ok_or(Error::NotFound)?;
        self.read_locator(locator, range).await
    }

    /// Builds a reader of a locator's bytes (whole or a range).
    pub(crate) async fn read_locator(&self, locator: CandyLocator, range: Option<ByteRange>) -> Result<GetReply> {
        let (first, len) = match range {
            Some(r) => r.resolve(locator.size)?,
            None => (0, locator.size),
        };
        let whole = first == 0 && len == locator.size;
        let mut maps = HashMap::new();
        if let CandyBody::Parts(parts) = &locator.body {
            let mut ends: HashMap<SyrupId, u64> = HashMap::new();
            let mut at = 0u64;
            for p in parts {
                for s in &p.segments {
                    if at < first + len && at + s.length > first {
                        let end = s.offset + s.stored_len(p.chunk_size);
                        let e = ends.entry(s.syrup).or_insert(0);
                        *e = (*e).max(end);
                    }
                    at += s.length;
                }
            }
            for (syrup, end) in ends {
                maps.insert(syrup, self.inner.syrups.map(syrup, end).await?);
            }
        }
        let body = CandyReader::new(locator.body.clone(), maps, first, len, whole);
        Ok(GetReply { locator, first, len, body })
    }

    /// One page of the listing described by `opts`.
    ///
    /// # Errors
    /// `InvalidArgument` for a page size over the limit; `Corrupt` when a table fails its checks.
    pub async fn list(&self, opts: &ListOptions) -> Result<ListPage> {
        self.list_now(opts)
    }

    /// [`Engine::list`] in one synchronous step (it waits for nothing): for callers that run it
    /// in place.
    ///
    /// # Errors
    /// As [`Engine::list`].
    pub fn list_now(&self, opts: &ListOptions) -> Result<ListPage> {
        self.check_usable()?;
        let limit = page_limit(opts.limit)?;
        // A versioned Box's listing stops at its version space.
        let user_space;
        let opts = match &opts.end {
            Some(end) if end.as_slice() <= keyspace::USER_SPACE_END => opts,
            _ if self.inner.versioning.get() == keyspace::Versioning::Off => opts,
            _ => {
                user_space = ListOptions { end: Some(keyspace::USER_SPACE_END.to_vec()), ..opts.clone() };
                &user_space
            }
        };
        let (live, next_start_after) = self.live_page(opts, limit)?;
        let entries = live
            .into_iter()
            .map(|(key, l)| ListEntry {
                key,
                size: l.size,
                checksum: l.checksum,
                hlc: l.version(),
                content_type: l.content_type,
                created_ms: l.created_ms,
                user_meta: if opts.with_meta { l.user_meta } else { Vec::new() },
            })
            .collect();
        Ok(ListPage { entries, next_start_after })
    }

    /// Up to `limit` live Candies of the window `opts` describes (its own limit is ignored),
    /// each the newest version of its key, with the cursor of the next page when more follow.
    /// Computed in one synchronous step from the committed state (listing, and the live scans of
    /// space reclamation).
    pub(crate) fn live_page(&self, opts: &ListOptions, limit: usize) -> Result<LivePage> {
        self.page_of(opts, limit, false)
    }

    /// [`Engine::live_page`], with delete markers too when `markers` (the version space).
    pub(crate) fn page_of(&self, opts: &ListOptions, limit: usize, markers: bool) -> Result<LivePage> {
        let (lo, hi) = window(opts);
        let st = self.inner.state.borrow();
        let dir = &self.inner.config.partition_dir;
        if let (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) = (&lo, &hi) {
            if l >= h {
                return Ok((Vec::new(), None));
            }
        }
        let lo_ref = bound_ref(&lo);
        let hi_ref = bound_ref(&hi);
        let mut sources: Vec<std::iter::Peekable<Source<'_>>> = Vec::new();
        for m in st.mem.all() {
            sources.push((Box::new(m.range(lo_ref, hi_ref, opts.reverse).map(Ok)) as Source<'_>).peekable());
        }
        for t in st.lsm.version().all() {
            let n = t.rec.number;
            let it = t.table.range(lo.clone(), hi.clone(), opts.reverse).map(move |r| r.map_err(table_error(n, dir)));
            sources.push((Box::new(it) as Source<'_>).peekable());
        }
        let rts: Vec<&RangeTombstone> =
            st.mem.all().flat_map(|m| m.range_tombstones().iter()).chain(st.lsm.version().range_tombstones()).collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(Newest { key, hlc, kind, value }) = next_newest(&mut sources, opts.reverse)? {
            let wanted = kind == Kind::Put || (markers && kind == Kind::DeleteMarker);
            if !wanted || rts.iter().any(|rt| rt.deletes(&key, hlc)) {
                continue;
            }
            let l = CandyLocator::decode(&value).map_err(locator_error)?;
            let meta: usize =
                if opts.with_meta { l.user_meta.iter().map(|(k, v)| k.len() + v.len() + 8).sum() } else { 0 };
            let size = LIST_ENTRY_OVERHEAD_BYTES + key.len() + l.content_type.len() + meta;
            if out.len() == limit || (!out.is_empty() && bytes + size > limits::LIST_PAGE_BYTES_MAX) {
                let next = out.last().map(|(k, _): &(Vec<u8>, CandyLocator)| k.clone());
                return Ok((out, next));
            }
            bytes += size;
            out.push((key.to_vec(), l));
        }
        Ok((out, None))
    }
}

/// The entries a listing page asked for (`0`: the most a page holds).
///
/// # Errors
/// `LimitExceeded` past `LIST_PAGE_ENTRIES_MAX`.
pub(crate) fn page_limit(asked: u32) -> Result<usize> {
    let limit = if asked == 0 { limits::LIST_PAGE_ENTRIES_MAX } else { asked as usize };
    if limit > limits::LIST_PAGE_ENTRIES_MAX {
        return Err(Error::LimitExceeded {
            limit: "list page size",
            value: limit as u64,
            max: limits::LIST_PAGE_ENTRIES_MAX as u64,
        });
    }
    Ok(limit)
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The key window `[lo, hi)` a listing covers, after prefix, window and cursor.
fn window(opts: &ListOptions) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut lo: Bound<Vec<u8>> = Bound::Unbounded;
    let mut hi: Bound<Vec<u8>> = Bound::Unbounded;
    let raise = |lo: &mut Bound<Vec<u8>>, b: Bound<Vec<u8>>| {
        let replace = match (&*lo, &b) {
            (Bound::Unbounded, _) => true,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Included(x)) => x > a,
            (Bound::Included(a), Bound::Excluded(x)) => x >= a,
            (Bound::Excluded(a), Bound::Excluded(x)) => x > a,
            (_, Bound::Unbounded) => false,
        };
        if replace {
            *lo = b;
        }
    };
    let lower = |hi: &mut Bound<Vec<u8>>, b: Bound<Vec<u8>>| {
        let replace = match (&*hi, &b) {
            (Bound::Unbounded, _) => true,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(x)) => x <= a,
            (Bound::Excluded(a), Bound::Included(x)) => x < a,
            (Bound::Included(a), Bound::Included(x)) => x < a,
            (_, Bound::Unbounded) => false,
        };
        if replace {
            *hi = b;
        }
    };
    if let Some(p) = &opts.prefix {
        raise(&mut lo, Bound::Included(p.clone()));
        if let Some(e) = prefix_end(p) {
            lower(&mut hi, Bound::Excluded(e));
        }
    }
    if let Some(s) = &opts.start {
        raise(&mut lo, Bound::Included(s.clone()));
    }
    if let Some(e) = &opts.end {
        lower(&mut hi, Bound::Excluded(e.clone()));
    }
    if let Some(a) = &opts.start_after {
        if opts.reverse {
            lower(&mut hi, Bound::Excluded(a.clone()));
        } else {
            raise(&mut lo, Bound::Excluded(a.clone()));
        }
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_ranges() {
        assert_eq!(ByteRange::FromTo(0, 0).resolve(10).ok(), Some((0, 1)));
        assert_eq!(ByteRange::FromTo(5, 100).resolve(10).ok(), Some((5, 5)));
        assert_eq!(ByteRange::From(9).resolve(10).ok(), Some((9, 1)));
        assert_eq!(ByteRange::Suffix(3).resolve(10).ok(), Some((7, 3)));
        assert_eq!(ByteRange::Suffix(30).resolve(10).ok(), Some((0, 10)));
        assert!(ByteRange::From(10).resolve(10).is_err());
        assert!(ByteRange::FromTo(3, 2).resolve(10).is_err());
        assert!(ByteRange::Suffix(0).resolve(10).is_err());
        assert!(ByteRange::From(0).resolve(0).is_err());
    }

    #[test]
    fn windows_combine_prefix_bounds_and_cursor() {
        let o = ListOptions {
            prefix: Some(b"b".to_vec()),
            start: Some(b"a".to_vec()),
            start_after: Some(b"bb".to_vec()),
            ..Default::default()
        };
        assert_eq!(window(&o), (Bound::Excluded(b"bb".to_vec()), Bound::Excluded(b"c".to_vec())));
        let r = ListOptions {
            end: Some(b"m".to_vec()),
            start_after: Some(b"k".to_vec()),
            reverse: true,
            ..Default::default()
        };
        assert_eq!(window(&r), (Bound::Unbounded, Bound::Excluded(b"k".to_vec())));
    }
}
