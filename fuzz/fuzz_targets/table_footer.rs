//! Fuzzes the SSTable reader from the footer in: `table::Footer::decode`, then `Table::open` of
//! the whole input as a table file, a bounded scan in both directions and a few lookups.
//!
//! Every block of a table is covered by a CRC-32 held in what points to it, which random bytes
//! never match. So each input is also opened after its checksums are recomputed (data blocks'
//! in the index, the four other blocks' in the footer, then the footer's own), which lets the
//! fuzzer reach the structural checks of every block and the reader's agreement checks.
//!
//! Checked, besides "returns a typed error, never panics":
//! - a footer that decodes re-encodes to exactly its 80 bytes;
//! - a table that opens scans in strictly increasing key order forward and strictly decreasing in
//!   reverse; a complete scan without error yields `meta().entry_count` entries, and the reverse
//!   scan yields the same entries;
//! - a lookup of a scanned key that finds a value finds the scanned value (it may miss: the bloom
//!   filter is only checksummed, not checked against the keys, when the table opens).
#![no_main]

use std::ops::Bound;

use bytes::Bytes;
use candybox_core::{
    codec::crc32,
    table::{Footer, Table, BLOCK_HANDLE_BYTES, FOOTER_BYTES},
};
use libfuzzer_sys::fuzz_target;

/// Most entries one scan reads: inputs are small, this only bounds the work of one run.
const SCAN_ENTRIES_MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok(footer) = Footer::decode(data) {
        assert_eq!(footer.encode(), data, "a decoded footer does not re-encode to its bytes");
    }
    if let Ok(table) = Table::open(Bytes::copy_from_slice(data)) {
        exercise(&table);
    }
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed);
    if let Some(footer) = fixed.len().checked_sub(FOOTER_BYTES).and_then(|at| fixed.get(at..)) {
        if let Ok(decoded) = Footer::decode(footer) {
            assert_eq!(decoded.encode(), footer, "a decoded footer does not re-encode to its bytes");
        }
    }
    if let Ok(table) = Table::open(Bytes::from(fixed)) {
        exercise(&table);
    }
});

/// Scans `table` both ways, bounded, and looks a few keys up.
fn exercise(table: &Table) {
    let (forward, forward_complete) = scan(table, false);
    assert!(forward.windows(2).all(|w| w[0].0 < w[1].0), "a forward scan is out of order");
    let (mut reverse, reverse_complete) = scan(table, true);
    assert!(reverse.windows(2).all(|w| w[0].0 > w[1].0), "a reverse scan is out of order");
    if forward_complete {
        assert_eq!(forward.len() as u64, table.meta().entry_count, "a complete scan disagrees with the meta block");
    }
    if forward_complete && reverse_complete {
        reverse.reverse();
        assert_eq!(forward, reverse, "forward and reverse scans differ");
    }

    let meta = table.meta();
    let mut probes: Vec<Vec<u8>> =
        vec![Vec::new(), b"key".to_vec(), meta.smallest_key.clone(), meta.largest_key.clone()];
    for (key, _) in [forward.first(), forward.get(forward.len() / 2), forward.last()].into_iter().flatten() {
        let mut after = key.to_vec();
        after.push(0);
        probes.push(after);
    }
    for key in &probes {
        let _ = table.may_contain(key);
        let _ = table.get(key);
    }
    for (key, value) in [forward.first(), forward.get(forward.len() / 2), forward.last()].into_iter().flatten() {
        if let Ok(Some(found)) = table.get(key) {
            assert_eq!(&found, value, "a lookup found another value than the scan");
        }
        // A seek to a scanned key starts at that key.
        let from = table.range(Bound::Included(key.to_vec()), Bound::Unbounded, false).next();
        if let Some(Ok((first, _))) = from {
            assert_eq!(&first, key, "a seek to a present key starts elsewhere");
        }
    }
}

/// Scans the whole table in one direction, stopping at the first error or after
/// [`SCAN_ENTRIES_MAX`] entries.
///
/// # Returns
/// The entries read, and whether the scan reached its end without an error.
fn scan(table: &Table, reverse: bool) -> (Vec<(Bytes, Bytes)>, bool) {
    let mut out = Vec::new();
    for item in table.range(Bound::Unbounded, Bound::Unbounded, reverse).take(SCAN_ENTRIES_MAX) {
        match item {
            Ok(entry) => out.push(entry),
            Err(_) => return (out, false),
        }
    }
    let complete = out.len() < SCAN_ENTRIES_MAX;
    (out, complete)
}

/// Reads a little-endian integer of `N` bytes at `at`, if it lies in `buf`.
fn read<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The byte range of the block that the handle at `at` points to, if it lies in `file`.
fn handle_range(file: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    let offset = usize::try_from(u64::from_le_bytes(read(file, at)?)).ok()?;
    let length = u32::from_le_bytes(read(file, at + 8)?) as usize;
    let end = offset.checked_add(length)?;
    (end <= file.len()).then_some(offset..end)
}

/// Writes the CRC-32 of the block that the handle at `at` points to into the handle.
fn fix_handle(file: &mut [u8], at: usize) {
    if let Some(range) = handle_range(file, at) {
        let crc = crc32(&[&file[range]]);
        file[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes every checksum of a table file, best effort: data blocks' in the index entries,
/// the index, bloom, range-tombstone and meta blocks' in the footer, then the footer's.
fn fix_checksums(file: &mut [u8]) {
    let Some(footer_at) = file.len().checked_sub(FOOTER_BYTES) else {
        return;
    };
    // The footer holds the index, bloom, range-tombstone and meta handles, in this order.
    let handles: Vec<usize> = (0..4).map(|i| footer_at + i * BLOCK_HANDLE_BYTES).collect();
    if let Some(index) = handle_range(file, handles[0]) {
        // Index: count u32, then per entry a block handle, entry count u32, key length u16, key.
        let mut at = index.start + 4;
        let count = read::<4>(file, index.start).map_or(0, u32::from_le_bytes);
        for _ in 0..count {
            let Some(key_len) = read::<2>(file, at + BLOCK_HANDLE_BYTES + 4) else {
                break;
            };
            if at + BLOCK_HANDLE_BYTES > index.end {
                break;
            }
            fix_handle(file, at);
            at += BLOCK_HANDLE_BYTES + 4 + 2 + usize::from(u16::from_le_bytes(key_len));
        }
    }
    for &at in &handles {
        fix_handle(file, at);
    }
    let footer = &file[footer_at..];
    let crc = crc32(&[&footer[..64], &footer[68..]]);
    file[footer_at + 64..footer_at + 68].copy_from_slice(&crc.to_le_bytes());
}
