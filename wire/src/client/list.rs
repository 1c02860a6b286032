//! Merging the per-partition pages of a listing into one page of the whole Box, in key order,
//! as a pure function.
//!
//! Invariants (for pages that each list one partition's keys in order, starting after the same
//! cursor):
//! - The merged page holds the smallest keys (largest when reverse) of the union that are known
//!   to be complete: a partition that has more (`next_start_after` set) has not shown its keys
//!   past its cursor, so nothing past the nearest such cursor is returned.
//! - The merged cursor is the last key returned (or, when nothing could be returned, the nearest
//!   partition cursor): the next page, listed with it as `start_after` on every partition, starts
//!   exactly after it, and no key is skipped or repeated.
//! - The cursor is `None` only when every partition was exhausted and every entry was returned.

use std::cmp::Ordering;

use super::types::{Hlc, ListEntry, ListPage, VersionEntry, VersionPage};

/// Merges one page per partition into one page of at most `limit` entries (0: no cap).
pub fn merge_pages(pages: Vec<ListPage>, reverse: bool, limit: u32) -> ListPage {
    let order = |a: &[u8], b: &[u8]| if reverse { b.cmp(a) } else { a.cmp(b) };
    // The nearest cursor of a partition that has more: past it, keys of that partition are
    // unknown, so the merged page must stop there.
    let mut bound: Option<Vec<u8>> = None;
    for page in &pages {
        if let Some(cursor) = &page.next_start_after {
            let nearer = match &bound {
                None => true,
                Some(b) => order(cursor, b) == Ordering::Less,
            };
            if nearer {
                bound = Some(cursor.clone());
            }
        }
    }
    let mut entries: Vec<ListEntry> = pages
        .into_iter()
        .flat_map(|p| p.entries)
        .filter(|e| bound.as_deref().is_none_or(|b| order(&e.key, b) != Ordering::Greater))
        .collect();
    entries.sort_by(|a, b| order(&a.key, &b.key));
    // A key lives in one partition; a duplicate would be the node's bug, and listing it twice
    // would break the cursor's promise.
    entries.dedup_by(|a, b| a.key == b.key);
    let cap = if limit == 0 { usize::MAX } else { limit as usize };
    let more = entries.len() > cap || bound.is_some();
    entries.truncate(cap);
    let next_start_after = if more { entries.last().map(|e| e.key.clone()).or(bound) } else { None };
    ListPage { entries, next_start_after }
}

/// Merges per-partition version pages (each in (key, newest first) order) into one page of at
/// most `limit` entries (0: no limit), stopping where the nearest partition with more stopped.
pub fn merge_version_pages(pages: Vec<VersionPage>, limit: u32) -> VersionPage {
    let order = |a: &(Vec<u8>, Hlc), b: &(Vec<u8>, Hlc)| a.0.cmp(&b.0).then(b.1.cmp(&a.1));
    let bound = pages.iter().filter_map(|p| p.next.clone()).min_by(order);
    let mut entries: Vec<VersionEntry> = pages
        .into_iter()
        .flat_map(|p| p.entries)
        .filter(|e| bound.as_ref().is_none_or(|b| order(&(e.key.clone(), e.version), b) != Ordering::Greater))
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key).then(b.version.cmp(&a.version)));
    let cap = if limit == 0 { usize::MAX } else { limit as usize };
    let more = entries.len() > cap || bound.is_some();
    entries.truncate(cap);
    let next = if more { entries.last().map(|e| (e.key.clone(), e.version)).or(bound) } else { None };
    VersionPage { entries, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn entry(k: &str) -> ListEntry {
        ListEntry { key: k.as_bytes().to_vec(), ..ListEntry::default() }
    }

    fn page(keys: &[&str], next: Option<&str>) -> ListPage {
        ListPage { entries: keys.iter().map(|k| entry(k)).collect(), next_start_after: next.map(|n| n.into()) }
    }

    fn keys(p: &ListPage) -> Vec<String> {
        p.entries.iter().map(|e| e.key_lossy().into_owned()).collect()
    }

    #[test]
    fn forward_merge_interleaves_partitions() {
        let merged = merge_pages(vec![page(&["a", "d"], None), page(&["b", "c", "e"], None)], false, 10);
        assert_eq!(keys(&merged), ["a", "b", "c", "d", "e"]);
        assert_eq!(merged.next_start_after, None);
    }

    #[test]
    fn limit_cuts_and_sets_the_cursor_to_the_last_key() {
        let merged = merge_pages(vec![page(&["a", "d"], None), page(&["b", "c", "e"], None)], false, 3);
        assert_eq!(keys(&merged), ["a", "b", "c"]);
        assert_eq!(merged.next_start_after.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn exactly_limit_entries_and_nothing_more_has_no_cursor() {
        let merged = merge_pages(vec![page(&["a"], None), page(&["b"], None)], false, 2);
        assert_eq!(keys(&merged), ["a", "b"]);
        assert_eq!(merged.next_start_after, None);
    }

    #[test]
    fn a_truncated_partition_bounds_the_page() {
        // Partition 0 has more after "b": "c" from partition 1 may not come before its next key.
        let merged = merge_pages(vec![page(&["a", "b"], Some("b")), page(&["c", "d"], None)], false, 10);
        assert_eq!(keys(&merged), ["a", "b"]);
        assert_eq!(merged.next_start_after.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn a_truncated_partition_with_no_entries_moves_the_cursor_to_its_cursor() {
        let merged = merge_pages(vec![page(&[], Some("m")), page(&["x"], None)], false, 10);
        assert!(merged.entries.is_empty());
        assert_eq!(merged.next_start_after.as_deref(), Some(&b"m"[..]));
    }

    #[test]
    fn reverse_merge_descends_and_bounds_by_the_largest_cursor() {
        let merged = merge_pages(vec![page(&["z", "w"], Some("w")), page(&["y", "x", "a"], None)], true, 10);
        assert_eq!(keys(&merged), ["z", "y", "x", "w"]);
        assert_eq!(merged.next_start_after.as_deref(), Some(&b"w"[..]));
        let merged = merge_pages(vec![page(&["z", "w"], None), page(&["y", "x", "a"], None)], true, 3);
        assert_eq!(keys(&merged), ["z", "y", "x"]);
        assert_eq!(merged.next_start_after.as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn unbounded_limit_returns_every_known_entry() {
        let merged = merge_pages(vec![page(&["b"], None), page(&["a", "c"], None)], false, 0);
        assert_eq!(keys(&merged), ["a", "b", "c"]);
        assert_eq!(merged.next_start_after, None);
    }

    #[test]
    fn duplicates_are_listed_once() {
        let merged = merge_pages(vec![page(&["a", "b"], None), page(&["b"], None)], false, 10);
        assert_eq!(keys(&merged), ["a", "b"]);
    }

    /// Pages through a model Box of several partitions, each answering like a node (at most
    /// `limit` entries after the cursor, with a cursor when more remain), and checks that
    /// paging returns every key exactly once, in order, for many page sizes, in both directions.
    #[test]
    fn paging_through_a_model_box_returns_every_key_once_in_order() {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for partitions in [1usize, 2, 3, 8] {
            let mut parts: Vec<BTreeSet<Vec<u8>>> = vec![BTreeSet::new(); partitions];
            let mut all = BTreeSet::new();
            for _ in 0..200 {
                let key = format!("k{:05}", next() % 100_000).into_bytes();
                let p = crc32fast::hash(&key) as usize % partitions;
                parts[p].insert(key.clone());
                all.insert(key);
            }
            for reverse in [false, true] {
                for limit in [1u32, 2, 3, 7, 50, 1000] {
                    let mut cursor: Option<Vec<u8>> = None;
                    let mut seen = Vec::new();
                    for _round in 0..10_000 {
                        let pages = parts
                            .iter()
                            .map(|set| node_page(set, cursor.as_deref(), reverse, limit as usize))
                            .collect();
                        let merged = merge_pages(pages, reverse, limit);
                        assert!(merged.entries.len() <= limit as usize);
                        seen.extend(merged.entries.iter().map(|e| e.key.clone()));
                        match merged.next_start_after {
                            Some(c) => cursor = Some(c),
                            None => break,
                        }
                    }
                    let mut expected: Vec<Vec<u8>> = all.iter().cloned().collect();
                    if reverse {
                        expected.reverse();
                    }
                    assert_eq!(seen, expected, "partitions {partitions} reverse {reverse} limit {limit}");
                }
            }
        }
    }

    /// One partition's page as the node computes it.
    fn node_page(set: &BTreeSet<Vec<u8>>, after: Option<&[u8]>, reverse: bool, limit: usize) -> ListPage {
        let keys: Vec<&Vec<u8>> = if reverse {
            set.iter().rev().filter(|k| after.is_none_or(|a| k.as_slice() < a)).collect()
        } else {
            set.iter().filter(|k| after.is_none_or(|a| k.as_slice() > a)).collect()
        };
        let more = keys.len() > limit;
        let entries: Vec<ListEntry> =
            keys.into_iter().take(limit).map(|k| ListEntry { key: k.clone(), ..ListEntry::default() }).collect();
        let next_start_after = if more { entries.last().map(|e| e.key.clone()) } else { None };
        ListPage { entries, next_start_after }
    }
}
