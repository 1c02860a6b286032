//! A bounded multi-producer, single-consumer queue that works on any executor (tokio, monoio, a
//! test's hand-rolled poll loop): a `Mutex` around a `VecDeque` and the wakers.
//!
//! Invariants:
//! - `send` never lets the queue hold more than `capacity` items; only [`QueueSender::push_final`]
//!   may add one more, and it is used for the single terminal error of a request.
//! - The receiver sees every item sent before the last sender dropped, then `None`.
//! - A sender sees `Err(item)` (its item back) once the receiver is gone.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver_alive: bool,
    receiver_waker: Option<Waker>,
    sender_wakers: Vec<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves only plain data behind: keep going.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sending side; clone it for more producers.
pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side.
pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `capacity` items (at least 1).
pub fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver_alive: true,
            receiver_waker: None,
            sender_wakers: Vec::new(),
        }),
    });
    (QueueSender { shared: Arc::clone(&shared) }, QueueReceiver { shared })
}

impl<T> QueueSender<T> {
    /// Waits for room and enqueues.
    ///
    /// # Errors
    /// The item back when the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let mut item = Some(item);
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if !s.receiver_alive {
                return Poll::Ready(Err(item.take()));
            }
            if s.items.len() < s.capacity {
                if let Some(v) = item.take() {
                    s.items.push_back(v);
                }
                if let Some(w) = s.receiver_waker.take() {
                    w.wake();
                }
                return Poll::Ready(Ok(()));
            }
            if !s.sender_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                s.sender_wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
        .map_err(|back| back.unwrap_or_else(|| unreachable!("the item is taken only once")))
    }

    /// Enqueues when there is room.
    ///
    /// # Errors
    /// The item back when the queue is full or the receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let mut s = self.shared.lock();
        if !s.receiver_alive || s.items.len() >= s.capacity {
            return Err(item);
        }
        s.items.push_back(item);
        if let Some(w) = s.receiver_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Enqueues past the capacity: only for the one terminal item of a stream (an error), so
    /// that it is never lost to a full queue.
    pub fn push_final(&self, item: T) {
        let mut s = self.shared.lock();
        if s.receiver_alive {
            s.items.push_back(item);
            if let Some(w) = s.receiver_waker.take() {
                w.wake();
            }
        }
    }

    /// True once the receiver is gone.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().receiver_alive
    }
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        QueueSender { shared: Arc::clone(&self.shared) }
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.senders -= 1;
        if s.senders == 0 {
            if let Some(w) = s.receiver_waker.take() {
                w.wake();
            }
        }
    }
}

impl<T> QueueReceiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| {
            let mut s = self.shared.lock();
            if let Some(v) = s.items.pop_front() {
                for w in s.sender_wakers.drain(..) {
                    w.wake();
                }
                return Poll::Ready(Some(v));
            }
            if s.senders == 0 {
                return Poll::Ready(None);
            }
            s.receiver_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let mut s = self.shared.lock();
        let v = s.items.pop_front();
        if v.is_some() {
            for w in s.sender_wakers.drain(..) {
                w.wake();
            }
        }
        v
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.receiver_alive = false;
        s.items.clear();
        for w in s.sender_wakers.drain(..) {
            w.wake();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    /// Polls a future once with a no-op waker.
    pub(crate) fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        f.poll(&mut cx)
    }

    #[test]
    fn queue_is_bounded_and_ordered() {
        let (tx, mut rx) = queue::<u32>(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(3));
        {
            let mut send = pin!(tx.send(3));
            assert!(poll_once(send.as_mut()).is_pending());
            assert_eq!(rx.try_recv(), Some(1));
            assert_eq!(poll_once(send.as_mut()), Poll::Ready(Ok(())));
        }
        tx.push_final(4);
        drop(tx);
        let mut all = Vec::new();
        while let Poll::Ready(Some(v)) = poll_once(pin!(rx.recv())) {
            all.push(v);
        }
        assert_eq!(all, vec![2, 3, 4]);
    }

    #[test]
    fn sender_sees_a_dropped_receiver() {
        let (tx, rx) = queue::<u32>(1);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(poll_once(pin!(tx.send(5))), Poll::Ready(Err(5)));
    }
}
