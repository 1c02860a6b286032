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
