//! The file-I/O threads: every blocking file operation of the crate runs here.
//!
//! A small fixed set of threads, started on first use and shared by every engine of the
//! process, instead of tokio's blocking pool. That pool grows a thread per job that finds no
//! idle one, up to 512: thousands of open downloads landing their first bytes at once get
//! hundreds of threads, each with its stack and its own malloc arena, and more threads than
//! the disk can serve only contend for the same directories. Here at most [`THREADS`] file operations run
//! at once; the rest wait in one FIFO queue. A transfer has at most one job in flight (one
//! write, or one read ahead for an upload), so a queue of jobs is a queue of transfers.
//!
//! A job cannot be cancelled once submitted (neither can tokio's): dropping its [`Pending`] only
//! drops the result. A job that panics reports [`JobLost`] and leaves its thread running.

use std::{
    fmt,
    future::Future,
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    sync::{mpsc, Arc, Mutex, OnceLock},
    task::{Context, Poll},
    thread,
};

use futures::channel::oneshot;

use crate::error::TransferError;

/// File operations that run at once.
pub(crate) const THREADS: usize = 8;

type Task = Box<dyn FnOnce() + Send>;

fn queue() -> &'static mpsc::Sender<Task> {
    static QUEUE: OnceLock<mpsc::Sender<Task>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("actix-transfer-io-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next task, never while one runs.
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(task) => task(),
                        Err(mpsc::RecvError) => return,
                    }
                })
                .expect("start a file I/O thread");
        }
        tx
    })
}

/// How long a transfer's file job should be, in its own data: a write buffer (sink) or a read
/// (upload source) holds about this much of the transfer, so that what fast transfers hold
/// together stays proportional to the bandwidth they share, not to their number.
const FILL_TIME: std::time::Duration = std::time::Duration::from_millis(250);

/// The size of a file job for a transfer that moved `bytes` in `took`: `FILL_TIME` of data at
/// that rate, between `min` and `max`.
pub(crate) fn job_size(bytes: usize, took: std::time::Duration, min: usize, max: usize) -> usize {
    let rate = bytes as f64 / took.as_secs_f64().max(1e-6);
    ((rate * FILL_TIME.as_secs_f64()) as usize).clamp(min, max)
}

/// Run `f` on a file-I/O thread; the returned [`Pending`] resolves with its result.
pub(crate) fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Pending<T> {
    let (tx, rx) = oneshot::channel();
    let task: Task = Box::new(move || {
        let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)).ok());
    });
    // The threads never end (a panicking job is caught), so the queue is always received.
    let _ = queue().send(task);
    Pending(rx)
}

/// The result of a file job, as a future.
#[derive(Debug)]
pub(crate) struct Pending<T>(oneshot::Receiver<Option<T>>);

/// A file job panicked before it produced its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobLost;

impl fmt::Display for JobLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file I/O job panicked")
    }
}

/// A lost file job fails its transfer as [`TransferError::Panicked`].
impl From<JobLost> for TransferError {
    fn from(lost: JobLost) -> Self {
        TransferError::Panicked(lost.to_string())
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, JobLost>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.ok().flatten().ok_or(JobLost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn jobs_run_off_thread_at_most_threads_at_once_and_panics_are_contained() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let here = thread::current().id();
        assert_ne!(run(move || thread::current().id()).await.unwrap(), here);

        // Many jobs that each wait a moment: never more than THREADS run together.
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..THREADS * 4)
            .map(|i| {
                let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
                run(move || {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, SeqCst);
                    i
                })
            })
            .collect();
        let results = futures::future::join_all(jobs).await;
        assert_eq!(
            results.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
            (0..THREADS * 4).collect::<Vec<_>>()
        );
        assert!(peak.load(SeqCst) <= THREADS, "peak {}", peak.load(SeqCst));

        // A panicking job reports JobLost; the threads go on.
        assert_eq!(run(|| -> u8 { panic!("boom") }).await, Err(JobLost));
        for _ in 0..THREADS * 2 {
            assert_eq!(run(|| 7).await, Ok(7));
        }
    }
}
