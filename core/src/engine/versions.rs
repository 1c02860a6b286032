//! Versioned Boxes (docs/versioning.md): the versioning state, reads of a version by id, deletes
//! of a version, and the listing of versions and delete markers.
//!
//! Invariants:
//! - Every version of a key lives in the version space (`keyspace::version_key`); its value
//!   carries its id (`version_id`), so a version reads the same whatever stamp it was written
//!   or relocated with.
//! - The user-space entry of a key is its newest version (a tombstone when that is a delete
//!   marker): a delete of a version by id that removes the newest one makes the next newest
//!   current again in the same batch.

use std::collections::BTreeMap;

use super::{commit::Op, ByteRange, Engine, GetReply, ListOptions};
use crate::{
    error::{Error, Result},
    hlc::Hlc,
    keyspace::{self, Versioning},
    locator::{CandyLocator, Kind},
    storage::Storage,
    types::{prefix_end, validate_key},
};

/// What a list-versions page asks for: versions of keys with `prefix`, after the markers, in
/// (key, version id descending) order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionListOptions {
    /// Only keys with this prefix.
    pub prefix: Option<Vec<u8>>,
    /// Continue after this key: after its version `version_marker` when given, else after all
    /// of its versions (S3's key-marker and version-id-marker).
    pub key_marker: Option<Vec<u8>>,
    /// With `key_marker`: the last version returned.
    pub version_marker: Option<Hlc>,
    /// Page size; 0 means the maximum (`LIST_PAGE_ENTRIES_MAX`).
    pub limit: u32,
    /// Entries carry their user metadata.
    pub with_meta: bool,
}

/// One version (or delete marker) of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// The user key.
    pub key: Vec<u8>,
    /// Its id (`Hlc::ZERO`: the null version).
    pub version: Hlc,
    /// It is the key's current version (or current delete marker).
    pub is_latest: bool,
    /// The version's locator: a Candy, or a delete marker (`kind == Kind::DeleteMarker`). Its
    /// user metadata is empty unless asked for.
    pub locator: CandyLocator,
}

impl VersionEntry {
    /// True for a delete marker.
    pub fn is_delete_marker(&self) -> bool {
        self.locator.kind == Kind::DeleteMarker
    }
}

/// A page of list-versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Entries in (key, newest first) order.
    pub entries: Vec<VersionEntry>,
    /// When more follow: the key and version markers of the next page.
    pub next: Option<(Vec<u8>, Hlc)>,
}

impl<S: Storage> Engine<S> {
    /// The Box's versioning state as this partition applies it.
    pub fn versioning(&self) -> Versioning {
        self.inner.versioning.get()
    }

    /// Applies the Box's new versioning state to mutations admitted from now on.
    ///
    /// # Errors
    /// `InvalidArgument` when asked to go back to `Off` from a versioned state (S3: versioning
    /// can be suspended, never removed).
    pub fn set_versioning(&self, v: Versioning) -> Result<()> {
        if v == Versioning::Off && self.versioning() != Versioning::Off {
            return Err(Error::invalid("versioning", "a versioned Box can be suspended, not turned off"));
        }
        self.inner.versioning.set(v);
        Ok(())
    }

    /// Every version of `key` with its locator, committed or queued, in version-space order
    /// (newest first; the null version, whose id is zero, last).
    ///
    /// # Errors
    /// `Corrupt` when a table fails its checks.
    pub fn versions_of(&self, key: &[u8]) -> Result<Vec<(Hlc, CandyLocator)>> {
        let prefix = keyspace::versions_prefix(key);
        let opts = ListOptions { start: Some(prefix.clone()), end: prefix_end(&prefix), ..ListOptions::default() };
        let (committed, _) = self.page_of(&opts, usize::MAX, true)?;
        let mut all: BTreeMap<Vec<u8>, CandyLocator> = committed.into_iter().collect();
        // Queued mutations, oldest first, over the committed state.
        let st = self.inner.state.borrow();
        for op in st.commit.queued_oldest_first() {
            match op {
                Op::Set { key: k, locator, .. } if k.starts_with(&prefix) => {
                    if locator.kind == Kind::Tombstone {
                        all.remove(k.as_ref());
                    } else {
                        all.insert(k.to_vec(), locator.clone());
                    }
                }
                Op::DeleteRange(rt) => all.retain(|k, _| !rt.covers_key(k)),
                _ => {}
            }
        }
        Ok(all.into_iter().filter_map(|(k, l)| keyspace::decode_version_key(&k).map(|(_, id)| (id, l))).collect())
    }

    /// The locator of version `id` of `key`: from the version space, or the current Candy when
    /// `id` is its version (an object written before versioning, or in a Box never versioned).
    ///
    /// # Errors
    /// `NotFound` when there is no such version; `DeleteMarker` when it is one; `Corrupt`.
    pub fn version_locator(&self, key: &[u8], id: Hlc) -> Result<CandyLocator> {
        validate_key(key)?;
        self.check_usable()?;
        if let Some(l) = self.current_locator(&keyspace::version_key(key, id))? {
            return match l.kind {
                Kind::DeleteMarker => Err(Error::DeleteMarker { version: id }),
                _ => Ok(l),
            };
        }
        match self.current_locator(key)? {
            Some(cur) if cur.version() == id => Ok(cur),
            _ => Err(Error::NotFound),
        }
    }

    /// The locator of version `id` of `key` to relay, its bytes checked as
    /// [`Engine::get_locator`] checks the current one's.
    ///
    /// # Errors
    /// As [`Engine::version_locator`]; `ChecksumMismatch` for damaged bytes.
    pub async fn get_version_locator(&self, key: &[u8], id: Hlc) -> Result<CandyLocator> {
        let l = self.version_locator(key, id)?;
        self.verify_candy(&l).await?;
        Ok(l)
    }

    /// Reads version `id` of `key` (whole or a range), as [`Engine::get`] reads the current one.
    ///
    /// # Errors
    /// As [`Engine::version_locator`] and [`Engine::get`].
    pub async fn get_version(&self, key: &[u8], id: Hlc, range: Option<ByteRange>) -> Result<GetReply> {
        let l = self.version_locator(key, id)?;
        self.read_locator(l, range).await
    }

    /// Deletes version `id` of `key` for good (a delete marker too): the next newest version
    /// becomes current when it was the current one. Deleting a version that does not exist
    /// succeeds and writes nothing.
    ///
    /// # Returns
    /// Whether the version deleted was a delete marker.
    ///
    /// # Errors
    /// A bad key; `Busy`; I/O failures.
    pub async fn delete_version(&self, key: &[u8], id: Hlc) -> Result<bool> {
        validate_key(key)?;
        let (was_marker, _) = self
            .commit_with(|e| {
                let vkey = keyspace::version_key(key, id);
                let versions = e.versions_of(key)?;
                let cur = e.current_locator(key)?;
                let in_space = versions.iter().any(|(v, _)| *v == id);
                let current = match &cur {
                    Some(c) => c.version() == id,
                    // The current state is a marker: the newest by stamp.
                    None => versions.iter().max_by_key(|(_, l)| l.hlc).is_some_and(|(v, _)| *v == id),
                };
                let was_marker = versions.iter().any(|(v, l)| *v == id && l.kind == Kind::DeleteMarker);
                let mut ops = Vec::new();
                if in_space {
                    ops.push(Op::set_plain(&vkey, CandyLocator::tombstone(Hlc::ZERO)));
                }
                if current {
                    // The newest remaining version (by its write stamp) becomes current again.
                    let next = versions.into_iter().filter(|(v, _)| *v != id).max_by_key(|(_, l)| l.hlc);
                    ops.push(match next {
                        Some((v, l)) if l.is_live() => Op::set_plain(key, CandyLocator { version_id: Some(v), ..l }),
                        _ => Op::set_plain(key, CandyLocator::tombstone(Hlc::ZERO)),
                    });
                }
                Ok((ops, was_marker))
            })
            .await?;
        Ok(was_marker)
    }

    /// One page of versions and delete markers, in (key, newest first) order, from the committed
    /// state; the page also ends at `LIST_PAGE_BYTES_MAX` of keys and metadata.
    ///
    /// # Errors
    /// `LimitExceeded` for a page size over the limit; `Corrupt`.
    pub fn list_versions(&self, opts: &VersionListOptions) -> Result<VersionPage> {
        self.check_usable()?;
        let limit = super::read::page_limit(opts.limit)?;
        // The window of the version space: the prefix's keys, after the markers.
        // With metadata, the page's byte budget counts it too.
        let mut window = ListOptions { with_meta: opts.with_meta, ..ListOptions::default() };
        match &opts.prefix {
            Some(p) => {
                let mut start = keyspace::versions_prefix(p);
                start.pop(); // the terminator: longer keys with the prefix follow
                window.end = prefix_end(&start);
                window.start = Some(start);
            }
            None => window.start = Some(keyspace::USER_SPACE_END.to_vec()),
        }
        match (&opts.key_marker, opts.version_marker) {
            (Some(k), Some(v)) => window.start_after = Some(keyspace::version_key(k, v)),
            (Some(k), None) => {
                if let Some(after) = prefix_end(&keyspace::versions_prefix(k)) {
                    window.start = window.start.max(Some(after));
                }
            }
            (None, _) => {}
        }
        let (found, next) = self.page_of(&window, limit, true)?;
        let mut latest: Option<(Vec<u8>, Option<Hlc>)> = None;
        let mut entries = Vec::with_capacity(found.len());
        for (vkey, mut l) in found {
            let Some((key, id)) = keyspace::decode_version_key(&vkey) else { continue };
            if latest.as_ref().is_none_or(|(k, _)| *k != key) {
                latest = Some((key.clone(), self.latest_version(&key)?));
            }
            let is_latest = latest.as_ref().is_some_and(|(_, v)| *v == Some(id));
            if !opts.with_meta {
                l.user_meta.clear();
            }
            entries.push(VersionEntry { key, version: id, is_latest, locator: l });
        }
        let next = next.and_then(|k| keyspace::decode_version_key(&k));
        Ok(VersionPage { entries, next })
    }

    /// The id of `key`'s current version, or of its current delete marker.
    fn latest_version(&self, key: &[u8]) -> Result<Option<Hlc>> {
        if let Some(cur) = self.current_locator(key)? {
            return Ok(Some(cur.version()));
        }
        Ok(self.versions_of(key)?.into_iter().max_by_key(|(_, l)| l.hlc).map(|(v, _)| v))
    }
}
