//! Where a put's bytes come from: any source of `Bytes` pieces.
//!
//! Invariants:
//! - A source hands out pieces in order and `None` once, at the end; the client holds at most
//!   one piece ahead (to know which frame ends the message), so a put never buffers the object.
//! - Pieces may have any size; the client splits them at the frame cap without copying.

use std::future::Future;
use std::io;

use bytes::Bytes;

/// A source of body pieces.
pub trait BodySource {
    /// The next piece, or `None` at the end.
    ///
    /// # Errors
    /// The source's own read error; the put then fails with [`super::ClientError::Io`].
    fn next_piece(&mut self) -> impl Future<Output = io::Result<Option<Bytes>>>;

    /// User metadata the source adds once it has ended (asked after `next_piece` returned
    /// `None`): it is committed with the object, in the put's trailer, like the digests of
    /// [`super::PutOptions::digests`]. A gateway that hashes what it relays names its digests
    /// here. A source that finds its bytes wrong at the end (a checksum the sender announced does
    /// not match) returns an error from `next_piece` instead of `None`: the put is then cancelled
    /// and nothing is committed.
    fn trailer(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
}

impl BodySource for Bytes {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        if self.is_empty() {
            Ok(None)
        } else {
            Ok(Some(std::mem::take(self)))
        }
    }
}

/// A source over an iterator of pieces.
#[derive(Debug)]
pub struct Pieces<I>(pub I);

impl<I: Iterator<Item = Bytes>> BodySource for Pieces<I> {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        Ok(self.0.next())
    }
}

/// The first `remaining` bytes of another source (a multipart part), keeping what it read past
/// them for the next part.
#[derive(Debug)]
pub struct Take<'a, S> {
    source: &'a mut S,
    carry: &'a mut Option<Bytes>,
    remaining: u64,
    exhausted: &'a mut bool,
}

impl<'a, S: BodySource> Take<'a, S> {
    /// The next `limit` bytes of `source`, starting with `carry` (the rest of the previous piece).
    /// Sets `exhausted` when the source ended.
    pub fn new(source: &'a mut S, carry: &'a mut Option<Bytes>, limit: u64, exhausted: &'a mut bool) -> Self {
        Take { source, carry, remaining: limit, exhausted }
    }
}

impl<S: BodySource> BodySource for Take<'_, S> {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut piece = match self.carry.take() {
            Some(p) => p,
            None => match self.source.next_piece().await? {
                Some(p) => p,
                None => {
                    *self.exhausted = true;
                    return Ok(None);
                }
            },
        };
        if piece.len() as u64 > self.remaining {
            #[expect(clippy::cast_possible_truncation, reason = "less than a piece's usize length")]
            let rest = piece.split_off(self.remaining as usize);
            *self.carry = Some(rest);
        }
        self.remaining -= piece.len() as u64;
        Ok(Some(piece))
    }
}

/// A source that hashes what passes through it (the digests of a multipart put, computed across
/// its parts).
pub struct Hashing<S> {
    inner: S,
    hashers: super::digest::Hashers,
}

impl<S: BodySource> Hashing<S> {
    /// Hashes `inner`'s bytes with `hashers`.
    pub fn new(inner: S, hashers: super::digest::Hashers) -> Self {
        Hashing { inner, hashers }
    }

    /// The digests of everything read so far, as user-metadata entries (the hashers start
    /// over).
    pub fn take_digests(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.hashers).finish()
    }
}

impl<S: BodySource> BodySource for Hashing<S> {
    async fn next_piece(&mut self) -> io::Result<Option<Bytes>> {
        let piece = self.inner.next_piece().await?;
        if let Some(p) = &piece {
            self.hashers.update(p);
        }
        Ok(piece)
    }

    fn trailer(&mut self) -> Vec<(String, String)> {
        self.inner.trailer()
    }
}
