//! Little-endian encoding helpers shared by every on-disk format.
//!
//! - [`Reader`] is bounds-checked: every read returns `Err(Short)` instead of panicking, so a
//!   decoder fed arbitrary bytes can only fail with a typed error.
//! - Integers are always little-endian; lengths are written before the bytes they count.

/// A read ran past the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("input ended at byte {at}: needed {needed} more bytes")]
pub struct Short {
    /// Position in the input where the read started.
    pub at: usize,
    /// How many bytes the read needed.
    pub needed: usize,
}

/// A bounds-checked cursor over bytes read from disk or the network.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    ///
    /// # Errors
    /// [`Short`] when fewer than `n` bytes remain.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self.pos.checked_add(n).ok_or(Short { at: self.pos, needed: n })?;
        let out = self.buf.get(self.pos..end).ok_or(Short { at: self.pos, needed: n })?;
        self.pos = end;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    ///
    /// # Errors
    /// [`Short`] when fewer than `N` bytes remain.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let s = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads a `u8`.
    ///
    /// # Errors
    /// [`Short`] at end of input.
    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    /// [`Short`] at end of input.
    pub fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    /// [`Short`] at end of input.
    pub fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u64`.
    ///
    /// # Errors
    /// [`Short`] at end of input.
    pub fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a `u32` length followed by that many bytes.
    ///
    /// # Errors
    /// [`Short`] when the length runs past the input.
    pub fn bytes32(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u32()? as usize;
        self.bytes(n)
    }

    /// Reads a `u16` length followed by that many bytes.
    ///
    /// # Errors
    /// [`Short`] when the length runs past the input.
    pub fn bytes16(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes.
    ///
    /// # Errors
    /// [`Short`] at end of input or on an over-long varint.
    pub fn varint(&mut self) -> Result<u64, Short> {
        let mut out = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            // The tenth byte holds only the top bit of a u64; anything more is an overflow.
            if i == 9 && b > 1 {
                return Err(Short { at: self.pos, needed: 1 });
            }
            out |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(Short { at: self.pos, needed: 1 })
    }
}

/// Appends little-endian values to a byte vector.
pub trait Put {
    /// Appends a `u8`.
    fn put_u8(&mut self, v: u8);
    /// Appends a little-endian `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a little-endian `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, v: u64);
    /// Appends a `u32` length and the bytes.
    fn put_bytes32(&mut self, v: &[u8]);
    /// Appends a `u16` length and the bytes; callers guarantee `v.len() <= u16::MAX`.
    fn put_bytes16(&mut self, v: &[u8]);
    /// Appends an unsigned LEB128 varint.
    fn put_varint(&mut self, v: u64);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_bytes32(&mut self, v: &[u8]) {
        assert!(u32::try_from(v.len()).is_ok(), "field longer than u32");
        self.put_u32(v.len() as u32);
        self.extend_from_slice(v);
    }
    fn put_bytes16(&mut self, v: &[u8]) {
        assert!(u16::try_from(v.len()).is_ok(), "field longer than u16");
        self.put_u16(v.len() as u16);
        self.extend_from_slice(v);
    }
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }
}

/// CRC-32 (IEEE) of `parts` in order; the one checksum function of every format.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_rejects_overlong() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            b.put_varint(v);
            assert_eq!(Reader::new(&b).varint(), Ok(v));
        }
        let overlong = [0xffu8; 11];
        assert!(Reader::new(&overlong).varint().is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&overflow).varint().is_err());
    }

    #[test]
    fn short_reads_are_errors() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(r.u32(), Err(Short { at: 2, needed: 4 }));
        let mut r = Reader::new(&[9, 0, 0, 0, 1]);
        assert!(r.bytes32().is_err());
    }
}
