//! The thread's tick: one wait of at most [`TICK`] shared by every attempt on the thread, so
//! that an attempt arms a timer of its own only once it has lived that long.
//!
//! Most attempts end long before any of their timeouts could pass (a small fetch takes well
//! under a millisecond, the timeouts are seconds), and registering a timer in tokio's wheel and
//! removing it again was a measurable share of such an attempt's cost. An attempt whose every
//! timeout is longer than a tick first waits for the thread's next tick, which costs a slot in
//! a list; only an attempt still running then arms its timer (see `Ctx::watchdog`). Each of
//! its deadlines lies more than a tick after the attempt's start, so none passes unseen
//! meanwhile.
//!
//! The tick runs only while some attempt waits for it: a task that sleeps a tick, wakes every
//! waiting attempt, and ends at the first tick that finds none.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

/// How long a wait for the next tick lasts at most.
pub(crate) const TICK: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Ticker {
    /// Ticks so far: a wait that began during tick `n` ends once this is past `n`.
    now: u64,
    /// The waiting attempts' wakers, by slot (a slot freed is used again).
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
    /// The tick's task is running.
    running: bool,
}

thread_local! {
    static TICKER: RefCell<Ticker> = RefCell::default();
}

/// `f` on this thread's ticker from a destructor: nothing when the thread-local is already
/// gone (the thread is ending) or in use.
fn in_drop(f: impl FnOnce(&mut Ticker)) {
    let _ = TICKER.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            f(&mut t);
        }
    });
}

/// Wait until the thread's next tick: at most [`TICK`].
pub(crate) fn next_tick() -> NextTick {
    NextTick { at: None }
}

/// The future of [`next_tick`].
pub(crate) struct NextTick {
    /// The tick during which it began, and its slot.
    at: Option<(u64, usize)>,
}

impl Future for NextTick {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        TICKER.with(|t| {
            let mut t = t.borrow_mut();
            match self.at {
                Some((began, _)) if t.now > began => Poll::Ready(()),
                Some((_, slot)) => {
                    if let Some(w) = &mut t.slots[slot] {
                        w.clone_from(cx.waker());
                    }
                    Poll::Pending
                }
                None => {
                    let waker = Some(cx.waker().clone());
                    let slot = match t.free.pop() {
                        Some(slot) => {
                            t.slots[slot] = waker;
                            slot
                        }
                        None => {
                            t.slots.push(waker);
                            t.slots.len() - 1
                        }
                    };
                    if !t.running {
                        t.running = true;
                        actix_rt::spawn(run());
                    }
                    self.at = Some((t.now, slot));
                    Poll::Pending
                }
            }
        })
    }
}

impl Drop for NextTick {
    fn drop(&mut self) {
        let Some((began, slot)) = self.at else {
            return;
        };
        // Until its tick, the slot is this wait's own: free it.
        in_drop(|t| {
            if t.now == began && t.slots[slot].take().is_some() {
                t.free.push(slot);
            }
        });
    }
}

/// The tick: wake every waiting attempt once a tick, while there are any.
async fn run() {
    /// Clears `running` however this task ends: by itself, or dropped wherever it waits by a
    /// runtime that stops (the next runtime on this thread then starts a tick of its own).
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            in_drop(|t| t.running = false);
        }
    }
    let _running = Running;
    loop {
        actix_rt::time::sleep(TICK).await;
        let woken = TICKER.with(|t| {
            let mut t = t.borrow_mut();
            let t = &mut *t;
            t.now += 1;
            let mut woken = Vec::new();
            for (slot, waker) in t.slots.iter_mut().enumerate() {
                if let Some(waker) = waker.take() {
                    woken.push(waker);
                    t.free.push(slot);
                }
            }
            woken
        });
        if woken.is_empty() {
            return;
        }
        for waker in woken {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[actix_rt::test]
    async fn a_wait_ends_at_a_tick_and_the_tick_stops_when_nobody_waits() {
        let before = TICKER.with(|t| t.borrow().now);
        actix_rt::time::timeout(Duration::from_secs(10), next_tick())
            .await
            .expect("the wait ends");
        assert!(
            TICKER.with(|t| t.borrow().now) > before,
            "it ended at a tick"
        );
        // The tick that finds nobody waiting ends the task (bounded: a few ticks).
        let deadline = Instant::now() + Duration::from_secs(10);
        while TICKER.with(|t| t.borrow().running) {
            assert!(Instant::now() < deadline, "the tick kept running");
            actix_rt::time::sleep(TICK / 5).await;
        }
        // And a new wait starts it again.
        next_tick().await;
    }

    #[test]
    fn a_tick_dropped_with_its_runtime_does_not_stall_the_next_runtime() {
        std::thread::spawn(|| {
            let rt = actix_rt::Runtime::new().unwrap();
            rt.block_on(async {
                // A wait still pending when the runtime goes.
                actix_rt::spawn(async {
                    next_tick().await;
                    futures::future::pending::<()>().await;
                });
                actix_rt::task::yield_now().await;
                assert!(TICKER.with(|t| t.borrow().running));
            });
            drop(rt);
            assert!(
                !TICKER.with(|t| t.borrow().running),
                "the tick went with its runtime"
            );
            let rt = actix_rt::Runtime::new().unwrap();
            rt.block_on(async {
                actix_rt::time::timeout(Duration::from_secs(10), next_tick())
                    .await
                    .expect("a new runtime runs a tick of its own");
            });
        })
        .join()
        .unwrap();
    }

    #[actix_rt::test]
    async fn a_dropped_wait_gives_its_slot_back_and_is_never_woken() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut dropped = Box::pin(next_tick());
        assert!(dropped.as_mut().poll(&mut cx).is_pending());
        let slot = dropped.at.unwrap().1;
        drop(dropped);
        TICKER.with(|t| {
            let t = t.borrow();
            assert!(t.slots[slot].is_none());
            assert!(t.free.contains(&slot));
        });
        // A wait after it takes the slot again and still ends at the next tick.
        let mut again = Box::pin(next_tick());
        assert!(again.as_mut().poll(&mut cx).is_pending());
        assert_eq!(again.at.unwrap().1, slot);
        again.await;
    }
}
