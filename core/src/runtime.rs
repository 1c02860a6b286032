//! The thin runtime layer over monoio: spawn, time, blocking helpers, and a yield that really
//! yields. The rest of the crate names no runtime directly, so the runtime can change in one place.
//!
//! Invariants:
//! - [`yield_now`] returns `Pending` once, and every task that was ready when it was called runs
//!   before the caller continues. monoio 0.2.4 puts a task that wakes itself while it is being
//!   polled at the *front* of the run queue (`Harness::poll` → `LocalScheduler::yield_now` →
//!   `push_front`), so a plain self-wake (as in `futures_lite::yield_now`) runs the caller again
//!   at once; the wake is therefore handed to a helper task queued at the back.
//! - [`Bouncer::yield_now`] yields the same way without a spawn per turn: a partner task, spawned
//!   once, is woken (queued at the back, as it is not the task being polled) and wakes the caller
//!   in turn. For loops that yield at every turn (the spin-before-park poller).
//! - [`unblock`] runs a closure on a fresh helper thread; it is only for rare work that has no
//!   io_uring operation (directory listing), never for the data path.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use monoio::task::JoinHandle;

/// Spawns a task on the current shard's executor.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    monoio::spawn(fut)
}

/// Sleeps for `d` on the current executor's timer.
pub async fn sleep(d: Duration) {
    monoio::time::sleep(d).await;
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Yields to every other ready task once: each task that is ready now runs before the caller
/// continues.
///
/// # Panics
/// When polled outside a monoio runtime (the wake is handed to a spawned task).
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// Future of [`yield_now`].
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // A wake from inside this poll would put the caller at the front of monoio's run queue.
        // The helper is spawned at the back, behind every ready sibling; when it runs, the caller
        // is not being polled, so its wake queues the caller at the back too.
        let waker = cx.waker().clone();
        drop(monoio::spawn(async move { waker.wake() }));
        Poll::Pending
    }
}

/// A yield that really yields (like [`yield_now`]) without spawning a task per turn: the caller's
/// wake goes through a partner task spawned once by [`Bouncer::new`]. The partner ends when the
/// `Bouncer` is dropped.
#[derive(Debug)]
pub struct Bouncer {
    state: std::rc::Rc<BounceState>,
}

#[derive(Debug, Default)]
struct BounceState {
    /// The yielding task's waker, handed to the partner.
    caller: std::cell::RefCell<Option<std::task::Waker>>,
    /// The partner's waker, once it has parked.
    partner: std::cell::RefCell<Option<std::task::Waker>>,
    closed: std::cell::Cell<bool>,
}

impl Bouncer {
    /// Spawns the partner task on the current executor.
    pub fn new() -> Bouncer {
        let state = std::rc::Rc::new(BounceState::default());
        let partner = state.clone();
        drop(monoio::spawn(std::future::poll_fn(move |cx| {
            if let Some(w) = partner.caller.borrow_mut().take() {
                w.wake();
            }
            if partner.closed.get() {
                return Poll::Ready(());
            }
            *partner.partner.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })));
        Bouncer { state }
    }

    /// Returns after every task that was ready when it was called has run.
    pub async fn yield_now(&self) {
        let Some(partner) = self.state.partner.borrow_mut().take() else {
            // The partner has not run yet (it was just spawned): the spawning yield works too.
            return yield_now().await;
        };
        let mut yielded = false;
        std::future::poll_fn(|cx| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            *self.state.caller.borrow_mut() = Some(cx.waker().clone());
            partner.wake_by_ref();
            Poll::Pending
        })
        .await;
    }
}

impl Default for Bouncer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        self.state.closed.set(true);
        if let Some(w) = self.state.partner.borrow_mut().take() {
            w.wake();
        }
    }
}

/// Runs `f` on a helper thread and awaits its result; `None` if the thread panicked.
pub async fn unblock<T, F>(f: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.ok()
}

/// Runs `fut` to completion on a new single-thread executor with io_uring and a timer: the entry
/// point of tests, tools and benchmarks.
///
/// # Panics
/// When the executor cannot be built (no io_uring and no fallback).
pub fn block_on<F: Future>(fut: F) -> F::Output {
    #[expect(clippy::expect_used, reason = "no executor is a setup failure, not an operating error")]
    let mut rt =
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("build monoio runtime");
    rt.block_on(fut)
}

/// A source of wall-clock time; tests substitute a manual clock so time-dependent behaviour
/// (grace periods, TTLs, rename abandonment) is deterministic.
pub trait Clock: 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        wall_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: std::cell::Cell<u64>,
}

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        Self { now: std::cell::Cell::new(ms) }
    }

    /// Moves the clock forward (or back, to test regressions).
    pub fn set(&self, ms: u64) {
        self.now.set(ms);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.set(self.now.get() + d.as_millis() as u64);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
}

impl<C: Clock> Clock for std::rc::Rc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// A mutual-exclusion lock for tasks of one shard (`!Send`). It serializes async sections such
/// as manifest appends, where two interleaved writers would leave a hole in the log.
#[derive(Debug, Default)]
pub struct LocalMutex {
    locked: std::cell::Cell<bool>,
    waiters: std::cell::RefCell<std::collections::VecDeque<std::task::Waker>>,
}

/// Held while the lock is taken; releasing wakes the next waiter.
#[derive(Debug)]
pub struct LocalMutexGuard<'a> {
    lock: &'a LocalMutex,
}

impl LocalMutex {
    /// An unlocked lock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until the lock is free and takes it.
    pub async fn lock(&self) -> LocalMutexGuard<'_> {
        std::future::poll_fn(|cx| {
            if self.locked.get() {
                self.waiters.borrow_mut().push_back(cx.waker().clone());
                Poll::Pending
            } else {
                self.locked.set(true);
                Poll::Ready(())
            }
        })
        .await;
        LocalMutexGuard { lock: self }
    }
}

impl Drop for LocalMutexGuard<'_> {
    fn drop(&mut self) {
        self.lock.locked.set(false);
        // Wake every waiter: a woken task that was cancelled meanwhile must not strand the rest.
        let waiters: Vec<_> = self.lock.waiters.borrow_mut().drain(..).collect();
        for w in waiters {
            w.wake();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on any surprise")]
mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;

    #[test]
    fn yield_now_lets_siblings_run_first() {
        let log = block_on(async {
            let log = Rc::new(RefCell::new(String::new()));
            let tasks: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|name| {
                    let log = Rc::clone(&log);
                    spawn(async move {
                        for _ in 0..3 {
                            log.borrow_mut().push_str(name);
                            yield_now().await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
            log.take()
        });
        assert_eq!(log, "ababab");
    }

    #[test]
    fn a_bouncer_yields_behind_its_siblings_at_every_turn_and_its_partner_ends_with_it() {
        let (log, partner_done) = block_on(async {
            let log = Rc::new(RefCell::new(String::new()));
            let bouncing = {
                let log = Rc::clone(&log);
                spawn(async move {
                    let bouncer = Bouncer::new();
                    for _ in 0..4 {
                        log.borrow_mut().push('a');
                        bouncer.yield_now().await;
                    }
                    Rc::downgrade(&bouncer.state)
                })
            };
            let sibling = {
                let log = Rc::clone(&log);
                spawn(async move {
                    for _ in 0..4 {
                        log.borrow_mut().push('b');
                        yield_now().await;
                    }
                })
            };
            let state = bouncing.await;
            sibling.await;
            // The partner held the last other reference; it ends once the Bouncer is dropped.
            for _ in 0..4 {
                yield_now().await;
            }
            (log.take(), state.upgrade().is_none())
        });
        assert_eq!(log, "abababab");
        assert!(partner_done, "the partner task still holds the bouncer's state");
    }
}
