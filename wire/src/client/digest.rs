//! Content digests the client computes while it streams a body ([`Digest`]): MD5, CRC-32,
//! CRC-32C, SHA-1 and SHA-256, each as lowercase hex, attached as user metadata in the trailer
//! that ends the put (frame version 3), so the node commits them with the object.

use md5::Digest as _;

use super::types::Digest;

/// The running hashes of the kinds asked for.
#[derive(Default, Clone)]
pub struct Hashers {
    md5: Option<md5::Md5>,
    crc32: Option<crc32fast::Hasher>,
    crc32c: Option<u32>,
    sha1: Option<sha1::Sha1>,
    sha256: Option<sha2::Sha256>,
}

impl Hashers {
    /// Hashers of `kinds` (repeats are one).
    pub fn new(kinds: &[Digest]) -> Hashers {
        let mut h = Hashers::default();
        for k in kinds {
            match k {
                Digest::Md5 => h.md5 = Some(md5::Md5::new()),
                Digest::Crc32 => h.crc32 = Some(crc32fast::Hasher::new()),
                Digest::Crc32c => h.crc32c = Some(0),
                Digest::Sha1 => h.sha1 = Some(sha1::Sha1::new()),
                Digest::Sha256 => h.sha256 = Some(sha2::Sha256::new()),
            }
        }
        h
    }

    /// Hashes the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.crc32 {
            h.update(data);
        }
        if let Some(c) = &mut self.crc32c {
            *c = crc32c::crc32c_append(*c, data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
    }

    /// The digests as user-metadata entries ([`Digest::meta_key`], lowercase hex), in
    /// [`Digest::ALL`] order.
    pub fn finish(self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut add = |d: Digest, value: String| out.push((d.meta_key().to_string(), value));
        if let Some(h) = self.md5 {
            add(Digest::Md5, hex(&h.finalize()));
        }
        // A CRC is a number: written most significant digit first, as its check values are.
        if let Some(h) = self.crc32 {
            add(Digest::Crc32, format!("{:08x}", h.finalize()));
        }
        if let Some(c) = self.crc32c {
            add(Digest::Crc32c, format!("{c:08x}"));
        }
        if let Some(h) = self.sha1 {
            add(Digest::Sha1, hex(&h.finalize()));
        }
        if let Some(h) = self.sha256 {
            add(Digest::Sha256, hex(&h.finalize()));
        }
        out
    }
}

/// The digest `kind` of `data`, lowercase hex.
pub fn digest_of(kind: Digest, data: &[u8]) -> String {
    let mut h = Hashers::new(&[kind]);
    h.update(data);
    h.finish().pop().map(|(_, v)| v).unwrap_or_default()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_their_published_test_vectors() {
        // RFC 1321 (MD5), the CRC catalogue's check values of "123456789", FIPS 180 (SHA).
        assert_eq!(digest_of(Digest::Md5, b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(digest_of(Digest::Crc32, b"123456789"), "cbf43926");
        assert_eq!(digest_of(Digest::Crc32c, b"123456789"), "e3069283");
        assert_eq!(digest_of(Digest::Sha1, b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            digest_of(Digest::Sha256, b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn streaming_in_pieces_gives_the_digest_of_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = Hashers::new(&Digest::ALL);
        for piece in data.chunks(4093) {
            h.update(piece);
        }
        let got = h.finish();
        let want: Vec<(String, String)> =
            Digest::ALL.iter().map(|d| (d.meta_key().to_string(), digest_of(*d, &data))).collect();
        assert_eq!(got, want);
    }
}
