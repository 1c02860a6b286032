//! The fixed-size footer at the end of every SSTable, and the block handles it holds.
//!
//! ```text
//! offset  size  field
//!      0    16  index handle             (offset u64, length u32, crc32 u32)
//!     16    16  bloom handle
//!     32    16  range-tombstone handle
//!     48    16  meta handle
//!     64     4  footer_crc               CRC-32 of footer bytes [0, 64) ++ [68, 80)
//!     68     2  reserved                 zero
//!     70     2  version                  1
//!     72     8  magic                    "CBYSST\0\x01"
//!     80        (end of file)
//! ```
//!
//! Invariants:
//! - The footer is the last [`FOOTER_BYTES`] bytes of the file and its magic is the file's last
//!   8 bytes, so a truncated or foreign file fails on the magic before anything is interpreted.
//! - The version sits right before the magic and keeps that place in every future version, so a
//!   reader can tell a newer format apart from corruption before it interprets the rest.
//! - The footer's CRC-32 covers every other footer byte; the four blocks it points to carry their
//!   CRC-32 in their handles here.
//! - Offsets below are computed with `offset_of!` from the `#[repr(C)]` structs and asserted at
//!   compile time; the encoder and decoder assert that they write and read in that order.

use std::mem::{offset_of, size_of};

use crate::{
    codec::{crc32, Put, Reader, Short},
    error::DecodeError,
};

/// The SSTable magic: the last 8 bytes of every table file. The trailing `\0\x01` make it
/// binary, so a text-mode copy or a stray text file cannot carry it by accident.
pub const TABLE_MAGIC: [u8; 8] = *b"CBYSST\0\x01";

/// The SSTable format versions this build can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum FormatVersion {
    /// The first format: the layout described in this module and `docs/format.md`.
    V1 = 1,
}

impl FormatVersion {
    /// The version the writer produces.
    pub const CURRENT: FormatVersion = FormatVersion::V1;

    /// The version with number `v`, if this build knows it.
    pub fn from_u16(v: u16) -> Option<FormatVersion> {
        match v {
            1 => Some(FormatVersion::V1),
            _ => None,
        }
    }
}

/// Where a block lies in the table file, and its checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BlockHandle {
    /// File offset of the block's first byte: where to read it.
    pub offset: u64,
    /// Block length in bytes: how much to read, and where the block ends so the reader can check
    /// that the next block starts exactly there (no gaps, no overlaps).
    pub length: u32,
    /// CRC-32 of the block's bytes. It lives in the pointer rather than in the block, so a
    /// misdirected read of another, self-consistent block is still caught.
    pub crc32: u32,
}

/// Encoded size of a [`BlockHandle`].
pub const BLOCK_HANDLE_BYTES: usize = size_of::<BlockHandle>();
const _: () = assert!(BLOCK_HANDLE_BYTES == 16);
const _: () = assert!(offset_of!(BlockHandle, offset) == 0);
const _: () = assert!(offset_of!(BlockHandle, length) == offset_of!(BlockHandle, offset) + size_of::<u64>());
const _: () = assert!(offset_of!(BlockHandle, crc32) == offset_of!(BlockHandle, length) + size_of::<u32>());
const _: () = assert!(offset_of!(BlockHandle, crc32) + size_of::<u32>() == BLOCK_HANDLE_BYTES);

impl BlockHandle {
    /// Appends the 16-byte encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u64(self.offset);
        out.put_u32(self.length);
        out.put_u32(self.crc32);
        assert_eq!(out.len() - start, BLOCK_HANDLE_BYTES);
    }

    /// Reads the 16-byte encoding.
    ///
    /// # Errors
    /// [`Short`] at end of input.
    pub fn decode(r: &mut Reader<'_>) -> Result<BlockHandle, Short> {
        Ok(BlockHandle { offset: r.u64()?, length: r.u32()?, crc32: r.u32()? })
    }

    /// # Returns
    /// The file offset one past the block's last byte, or `None` when it overflows `u64`.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(u64::from(self.length))
    }
}

/// The fixed-size trailer of an SSTable: where the index, bloom, range-tombstone and meta blocks
/// are, the format version and the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Footer {
    /// The index block: the entry point to every data block.
    pub index: BlockHandle,
    /// The bloom filter block: lets a lookup of an absent key skip reading a data block.
    pub bloom: BlockHandle,
    /// The range-tombstone block: deletions of key ranges, which must travel with the table.
    pub range_tombstones: BlockHandle,
    /// The meta block: key range, HLC range, counts and referenced Syrups, which the engine reads
    /// without touching data blocks (compaction picking, Syrup garbage collection, HLC recovery).
    pub meta: BlockHandle,
    /// CRC-32 of every other byte of the footer: the handles above hold every other block's
    /// checksum, so this one protects them all.
    pub footer_crc: u32,
    /// Zero; kept so the version and magic stay aligned, and so a later version can use it
    /// (a v1 reader refuses non-zero).
    pub reserved: u16,
    /// The format version ([`FormatVersion`]). It stays right before the magic in every version so
    /// a reader can refuse a newer file by name instead of calling it corrupt.
    pub version: u16,
    /// [`TABLE_MAGIC`]; protects against opening a foreign or truncated file as a table.
    pub magic: [u8; 8],
}

/// Encoded size of the [`Footer`].
pub const FOOTER_BYTES: usize = size_of::<Footer>();
const FOOTER_CRC_OFFSET: usize = offset_of!(Footer, footer_crc);
const FOOTER_CRC_END: usize = FOOTER_CRC_OFFSET + size_of::<u32>();
const FOOTER_RESERVED_OFFSET: usize = offset_of!(Footer, reserved);
const FOOTER_VERSION_OFFSET: usize = offset_of!(Footer, version);
const FOOTER_MAGIC_OFFSET: usize = offset_of!(Footer, magic);

const _: () = assert!(FOOTER_BYTES == 80);
const _: () = assert!(offset_of!(Footer, index) == 0);
const _: () = assert!(offset_of!(Footer, bloom) == offset_of!(Footer, index) + BLOCK_HANDLE_BYTES);
const _: () = assert!(offset_of!(Footer, range_tombstones) == offset_of!(Footer, bloom) + BLOCK_HANDLE_BYTES);
const _: () = assert!(offset_of!(Footer, meta) == offset_of!(Footer, range_tombstones) + BLOCK_HANDLE_BYTES);
const _: () = assert!(FOOTER_CRC_OFFSET == offset_of!(Footer, meta) + BLOCK_HANDLE_BYTES);
const _: () = assert!(FOOTER_RESERVED_OFFSET == FOOTER_CRC_END);
const _: () = assert!(FOOTER_VERSION_OFFSET == FOOTER_RESERVED_OFFSET + size_of::<u16>());
const _: () = assert!(FOOTER_MAGIC_OFFSET == FOOTER_VERSION_OFFSET + size_of::<u16>());
// The magic is the file's last bytes: nothing, not even struct padding, follows it.
const _: () = assert!(FOOTER_MAGIC_OFFSET + TABLE_MAGIC.len() == FOOTER_BYTES);

impl Footer {
    /// A current-version footer pointing at the four blocks, with its checksum computed.
    pub fn new(index: BlockHandle, bloom: BlockHandle, range_tombstones: BlockHandle, meta: BlockHandle) -> Footer {
        let mut footer = Footer {
            index,
            bloom,
            range_tombstones,
            meta,
            footer_crc: 0,
            reserved: 0,
            version: FormatVersion::CURRENT as u16,
            magic: TABLE_MAGIC,
        };
        footer.footer_crc = footer_crc(&footer.encode());
        footer
    }

    /// # Returns
    /// The [`FOOTER_BYTES`]-byte encoding of the fields as they are (the stored checksum is not
    /// recomputed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_BYTES);
        self.index.encode(&mut out);
        self.bloom.encode(&mut out);
        self.range_tombstones.encode(&mut out);
        self.meta.encode(&mut out);
        assert_eq!(out.len(), FOOTER_CRC_OFFSET);
        out.put_u32(self.footer_crc);
        assert_eq!(out.len(), FOOTER_RESERVED_OFFSET);
        out.put_u16(self.reserved);
        assert_eq!(out.len(), FOOTER_VERSION_OFFSET);
        out.put_u16(self.version);
        assert_eq!(out.len(), FOOTER_MAGIC_OFFSET);
        out.extend_from_slice(&self.magic);
        assert_eq!(out.len(), FOOTER_BYTES);
        out
    }

    /// Decodes and verifies a footer: exactly [`FOOTER_BYTES`] bytes, checked in the order magic,
    /// version, checksum, reserved. Offsets in errors are relative to `bytes`.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] when `bytes` is short, [`DecodeError::BadMagic`],
    /// [`DecodeError::UnsupportedVersion`], [`DecodeError::ChecksumMismatch`], or
    /// [`DecodeError::Malformed`] for a wrong length or non-zero reserved bytes.
    pub fn decode(bytes: &[u8]) -> Result<Footer, DecodeError> {
        if bytes.len() < FOOTER_BYTES {
            return Err(DecodeError::Truncated(Short { at: 0, needed: FOOTER_BYTES }));
        }
        if bytes.len() > FOOTER_BYTES {
            return Err(DecodeError::Malformed { what: "footer length", offset: FOOTER_BYTES as u64 });
        }
        let mut tail = Reader::new(bytes.get(FOOTER_VERSION_OFFSET..).unwrap_or_default());
        let version = tail.u16()?;
        let magic: [u8; 8] = tail.array()?;
        if magic != TABLE_MAGIC {
            return Err(DecodeError::BadMagic { found: magic.to_vec() });
        }
        if FormatVersion::from_u16(version).is_none() {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let found = footer_crc(bytes);
        let mut r = Reader::new(bytes);
        let index = BlockHandle::decode(&mut r)?;
        let bloom = BlockHandle::decode(&mut r)?;
        let range_tombstones = BlockHandle::decode(&mut r)?;
        let meta = BlockHandle::decode(&mut r)?;
        assert_eq!(r.position(), FOOTER_CRC_OFFSET);
        let footer_crc = r.u32()?;
        if footer_crc != found {
            return Err(DecodeError::ChecksumMismatch { offset: 0, expected: footer_crc, found });
        }
        assert_eq!(r.position(), FOOTER_RESERVED_OFFSET);
        let reserved = r.u16()?;
        if reserved != 0 {
            return Err(DecodeError::Malformed { what: "footer reserved", offset: FOOTER_RESERVED_OFFSET as u64 });
        }
        Ok(Footer { index, bloom, range_tombstones, meta, footer_crc, reserved, version, magic })
    }
}

/// CRC-32 of an encoded footer's bytes other than its checksum field.
fn footer_crc(encoded: &[u8]) -> u32 {
    let before = encoded.get(..FOOTER_CRC_OFFSET).unwrap_or_default();
    let after = encoded.get(FOOTER_CRC_END..).unwrap_or_default();
    crc32(&[before, after])
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests index buffers they just built; a panic fails the test")]
mod tests {
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    use super::*;

    fn sample() -> Footer {
        let h = |offset, length, crc32| BlockHandle { offset, length, crc32 };
        Footer::new(h(100, 7, 1), h(10, 20, 2), h(30, 40, 3), h(70, 30, 4))
    }

    #[test]
    fn round_trips() {
        let f = sample();
        let bytes = f.encode();
        assert_eq!(bytes.len(), FOOTER_BYTES);
        assert_eq!(bytes.get(FOOTER_MAGIC_OFFSET..), Some(&TABLE_MAGIC[..]));
        assert_eq!(Footer::decode(&bytes), Ok(f));
    }

    #[test]
    fn every_byte_flip_is_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x ^= mask;
                }
                assert!(Footer::decode(&b).is_err(), "flip {mask:#x} at {i} accepted");
            }
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let good = sample().encode();
        assert!(matches!(Footer::decode(&good[..79]), Err(DecodeError::Truncated(_))));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(Footer::decode(&long), Err(DecodeError::Malformed { what: "footer length", .. })));
        let mut b = good.clone();
        b[FOOTER_MAGIC_OFFSET] = b'X';
        assert!(matches!(Footer::decode(&b), Err(DecodeError::BadMagic { .. })));
        let mut b = good.clone();
        b[FOOTER_VERSION_OFFSET] = 2;
        assert_eq!(Footer::decode(&b), Err(DecodeError::UnsupportedVersion(2)));
        let mut b = good.clone();
        b[3] ^= 1;
        assert!(matches!(Footer::decode(&b), Err(DecodeError::ChecksumMismatch { offset: 0, .. })));
        // Non-zero reserved bytes with a matching checksum: a future format, refused by name.
        let mut f = sample();
        f.reserved = 1;
        let mut b = f.encode();
        let crc = footer_crc(&b);
        b[FOOTER_CRC_OFFSET..FOOTER_CRC_END].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(Footer::decode(&b), Err(DecodeError::Malformed { what: "footer reserved", .. })));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0xF007);
        let good = sample().encode();
        for i in 0..20_000 {
            let len = if i % 2 == 0 { FOOTER_BYTES } else { rng.gen_range(0..2 * FOOTER_BYTES) };
            let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if i % 4 == 0 {
                // Keep the magic and version so decoding reaches the checksum and handles.
                b = good.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..FOOTER_MAGIC_OFFSET);
                    b[at] = rng.gen();
                }
            }
            let _ = Footer::decode(&b);
        }
    }
}
