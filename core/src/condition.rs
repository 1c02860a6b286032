//! Conditions on a mutation's key (issue 14): what a conditional put, delete, copy or rename
//! requires of the key's current version. The engine checks them when the mutation joins its
//! partition's commit queue (`engine/commit.rs`), so this module only says when one holds.

use crate::hlc::Hlc;

/// A condition on a mutation's key, checked when the mutation joins the commit queue: against
/// the committed state and every mutation queued before it, in one synchronous step with its
/// stamp, so of two writers racing on one key at most one can win a condition the other's
/// write breaks. A failed condition is `Error::PreconditionFailed` naming the current version;
/// nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// No live object under the key.
    IfAbsent,
    /// The key's current version is this one: the stamp its put, copy or rename returned, which
    /// head, get and list report as its version.
    IfVersion(Hlc),
    /// The key holds a live object last written at or before this time (milliseconds since the
    /// Unix epoch; the physical part of its version's stamp).
    IfUnmodifiedSince(u64),
    /// The key holds a live object whose user metadata has entry `key` with value `value`: a
    /// content digest the writer attached (S3's If-Match on an ETag).
    IfMeta {
        /// The entry's name.
        key: String,
        /// Its value, compared byte for byte.
        value: String,
    },
}

/// What a condition is checked against: the key's live version.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    /// Its version id.
    pub version: Hlc,
    /// When it was last modified, ms since the Unix epoch.
    pub modified_ms: u64,
    /// Its user metadata.
    pub meta: &'a [(String, String)],
}

impl WriteCondition {
    /// Whether the condition holds for `current`, the key's live version (`None`: absent).
    pub fn holds(&self, current: Option<Current<'_>>) -> bool {
        match (self, current) {
            (WriteCondition::IfAbsent, c) => c.is_none(),
            (WriteCondition::IfVersion(want), Some(c)) => c.version == *want,
            (WriteCondition::IfUnmodifiedSince(ms), Some(c)) => c.modified_ms <= *ms,
            (WriteCondition::IfMeta { key, value }, Some(Current { meta, .. })) => {
                meta.iter().any(|(k, v)| k == key && v == value)
            }
            (_, None) => false,
        }
    }
}
