//! The node-wide budget of memory for request frames being read and their bodies on their way
//! to the engines.
//!
//! A connection reserves a frame's whole length before it reads any byte of its body, waiting
//! while the node is over `frame_memory_bytes_max`; the body's buffer then grows as bytes arrive
//! (never the length a header merely claims), and the reservation is released when the last
//! `Bytes` of the frame is dropped (a put's data once the engine wrote it). A connection that has
//! reserved a frame can always finish reading it, so waiting never deadlocks: what holds the
//! budget is owned by requests that make progress on their own, or by a connection that the frame
//! timeout closes.
//!
//! Invariants:
//! - `used` counts every reserved byte exactly once; every reservation is released exactly once
//!   (on drop).
//! - A single frame never exceeds the budget (the configuration requires the budget ≥ the frame
//!   cap), so a reservation always succeeds eventually.

use std::sync::{
    atomic::{AtomicU64, Ordering::AcqRel},
    Arc,
};

use bytes::Bytes;

/// How long a reservation waits between two looks at the budget (only while the node is over it).
const RESERVE_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// The budget: bytes reserved now, and the limit.
#[derive(Debug)]
pub struct FrameMemory {
    used: AtomicU64,
    max: u64,
}

impl FrameMemory {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Arc<FrameMemory> {
        Arc::new(FrameMemory { used: AtomicU64::new(0), max })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn try_reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(AcqRel, std::sync::atomic::Ordering::Acquire, |u| {
                // One frame alone may always go (it is never larger than the budget).
                (u == 0 || u.saturating_add(n) <= self.max).then_some(u + n)
            })
            .is_ok()
    }
}

/// `n` bytes of the budget, released on drop.
#[derive(Debug)]
pub struct Reservation {
    memory: Arc<FrameMemory>,
    n: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.used.fetch_sub(self.n, AcqRel);
    }
}

/// Reserves `n` bytes when the budget has them now.
pub fn try_reserve(memory: &Arc<FrameMemory>, n: u64) -> Option<Reservation> {
    memory.try_reserve(n).then(|| Reservation { memory: memory.clone(), n })
}

/// Reserves `n` bytes, waiting while the node is over its budget.
pub async fn reserve(memory: &Arc<FrameMemory>, n: u64) -> Reservation {
    while !memory.try_reserve(n) {
        candybox_core::runtime::sleep(RESERVE_POLL).await;
    }
    Reservation { memory: memory.clone(), n }
}

/// A frame's bytes together with their reservation: dropping the last `Bytes` made from it
/// releases the budget.
struct Reserved {
    bytes: Vec<u8>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The bytes of a frame that keep their reservation until the last slice of them is dropped.
pub fn into_bytes(bytes: Vec<u8>, reservation: Reservation) -> Bytes {
    Bytes::from_owner(Reserved { bytes, _reservation: reservation })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_released_with_the_last_slice() {
        candybox_core::runtime::block_on(async {
            let m = FrameMemory::new(100);
            let a = reserve(&m, 60).await;
            assert_eq!(m.used(), 60);
            assert!(!m.try_reserve(60), "over the budget");
            let bytes = into_bytes(vec![7; 60], a);
            let slice = bytes.slice(10..20);
            drop(bytes);
            assert_eq!(m.used(), 60, "a slice still holds the frame");
            drop(slice);
            assert_eq!(m.used(), 0);
            // A frame as large as the budget goes alone.
            let whole = reserve(&m, 100).await;
            assert_eq!(m.used(), 100);
            drop(whole);
            assert_eq!(m.used(), 0);
        });
    }
}
