//! Plain value types shared by the engine, the wire protocol, the client library and the node,
//! each defined once here (the engine and the client library re-export them).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// A listing request: a window of keys, its direction and a page size. The engine lists one
/// partition with it; the client library lists a whole Box (each partition's page, merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys with this prefix.
    pub prefix: Option<Vec<u8>>,
    /// Only keys `>= start`.
    pub start: Option<Vec<u8>>,
    /// Only keys `< end`.
    pub end: Option<Vec<u8>>,
    /// Continue after this key (forward: keys `>` it; reverse: keys `<` it): the cursor of the
    /// previous page.
    pub start_after: Option<Vec<u8>>,
    /// Descending key order.
    pub reverse: bool,
    /// Page size; 0 means the maximum (`LIST_PAGE_ENTRIES_MAX` of the engine's limits).
    pub limit: u32,
    /// Entries carry their user metadata too (a page then ends early when its entries reach
    /// the engine's `LIST_PAGE_BYTES_MAX`).
    pub with_meta: bool,
}

/// A Box's versioning state (S3's; docs/versioning.md): never enabled, enabled, or suspended.
/// A versioned Box can be suspended but never turned off again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Versioning {
    /// Never enabled: one current object per key, no versions kept.
    #[default]
    Off,
    /// Every write makes a version; a delete writes a delete marker.
    Enabled,
    /// Writes replace the key's null version; versions made while enabled stay.
    Suspended,
}

impl Versioning {
    /// Its byte in the coordination entry (0 off, 1 enabled, 2 suspended).
    pub fn to_u8(self) -> u8 {
        match self {
            Versioning::Off => 0,
            Versioning::Enabled => 1,
            Versioning::Suspended => 2,
        }
    }

    /// The state of byte `b`, if it names one.
    pub fn from_u8(b: u8) -> Option<Versioning> {
        match b {
            0 => Some(Versioning::Off),
            1 => Some(Versioning::Enabled),
            2 => Some(Versioning::Suspended),
            _ => None,
        }
    }
}

impl std::fmt::Display for Versioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Versioning::Off => "off",
            Versioning::Enabled => "enabled",
            Versioning::Suspended => "suspended",
        })
    }
}
