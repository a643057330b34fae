//! Runs a connection's two halves (reader and writer) in one task until either ends,
//! polling only the half that was woken.
//!
//! Why not `tokio::select!`: it polls every branch whenever the task wakes. A busy
//! connection's task wakes once per batch of queued frames, and polling the idle
//! reader each time (the socket lock, tungstenite's waker proxies, the I/O
//! registration's readiness check, the config watch) cost about as much user time as
//! writing the batch. Here each half gets its own waker, which marks the half ready
//! before waking the task; a poll of the task polls the halves so marked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// One half's waker: marks the half ready and wakes the task.
#[derive(Debug, Default)]
struct HalfWaker {
    ready: AtomicBool,
    task: AtomicWaker,
}

impl Wake for HalfWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A half's waker and its state, created with the half.
struct Wakeup {
    state: Arc<HalfWaker>,
    waker: Waker,
}

impl Wakeup {
    fn new() -> Self {
        let state = Arc::new(HalfWaker::default());
        // Polled once at the start whatever happens.
        state.ready.store(true, Ordering::Relaxed);
        Self {
            waker: Waker::from(state.clone()),
            state,
        }
    }

    /// Polls `half` if it was woken since its last poll; `Ready` once it ended.
    fn poll_if_woken<F: Future<Output = ()>>(&self, half: Pin<&mut F>, task: &Waker) -> Poll<()> {
        // Register before taking the mark: a wake-up in between sets the mark again
        // and wakes the task, so none is lost.
        self.state.task.register(task);
        if !self.state.ready.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        half.poll(&mut Context::from_waker(&self.waker))
    }
}

pin_project_lite::pin_project! {
    /// The future of [`first_of`].
    struct FirstOf<A, B> {
        #[pin]
        a: A,
        #[pin]
        b: B,
        wake_a: Wakeup,
        wake_b: Wakeup,
    }
}

impl<A: Future<Output = ()>, B: Future<Output = ()>> Future for FirstOf<A, B> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.wake_a.poll_if_woken(this.a, cx.waker()).is_ready()
            || this.wake_b.poll_if_woken(this.b, cx.waker()).is_ready()
        {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Runs `a` and `b` until either ends; the other is dropped unfinished. Each is
/// polled only after its own waker fired (and once at the start).
///
/// A plain function, not an `async fn`: an `async fn` would keep its arguments and the
/// race built from them side by side in its state, doubling what every idle
/// connection holds.
pub fn first_of<A, B>(a: A, b: B) -> impl Future<Output = ()>
where
    A: Future<Output = ()>,
    B: Future<Output = ()>,
{
    FirstOf {
        a,
        b,
        wake_a: Wakeup::new(),
        wake_b: Wakeup::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    /// Waits on `notify` `rounds` times, counting its polls.
    async fn counted(notify: &Notify, polls: &AtomicUsize, rounds: usize) {
        for _ in 0..rounds {
            let notified = notify.notified();
            let mut notified = std::pin::pin!(notified);
            std::future::poll_fn(|cx| {
                polls.fetch_add(1, Ordering::Relaxed);
                notified.as_mut().poll(cx)
            })
            .await;
        }
    }

    #[tokio::test]
    async fn only_the_woken_half_is_polled() {
        let (na, nb) = (Notify::new(), Notify::new());
        let (pa, pb) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let race = first_of(counted(&na, &pa, 5), counted(&nb, &pb, usize::MAX));
        let mut race = std::pin::pin!(race);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(race.as_mut().poll(&mut cx).is_pending());
        assert_eq!((pa.load(Ordering::Relaxed), pb.load(Ordering::Relaxed)), (1, 1));
        for round in 1..5 {
            na.notify_one();
            assert!(race.as_mut().poll(&mut cx).is_pending());
            // `a` went on to its next wait (two polls: the wake-up and the new wait).
            assert_eq!(pa.load(Ordering::Relaxed), 1 + 2 * round);
            assert_eq!(pb.load(Ordering::Relaxed), 1, "b was not woken");
        }
        // A poll of the task nobody woke polls neither half.
        assert!(race.as_mut().poll(&mut cx).is_pending());
        assert_eq!(pa.load(Ordering::Relaxed), 9);
        nb.notify_one();
        assert!(race.as_mut().poll(&mut cx).is_pending());
        assert_eq!(pb.load(Ordering::Relaxed), 3);
        assert_eq!(pa.load(Ordering::Relaxed), 9);
        na.notify_one();
        assert!(race.as_mut().poll(&mut cx).is_ready(), "a finished its 5 rounds");
    }

    #[tokio::test]
    async fn a_wake_up_from_another_task_reaches_the_race() {
        let notify = Arc::new(Notify::new());
        let n = notify.clone();
        let waker = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            n.notify_one();
        });
        let wait = async move { notify.notified().await };
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            first_of(wait, std::future::pending()),
        )
        .await
        .expect("the race ends when its woken half does");
        waker.await.expect("waker task");
    }

    #[tokio::test]
    async fn the_other_half_is_dropped_when_one_ends() {
        struct Guard(Arc<AtomicBool>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Guard(dropped.clone());
        let pending = async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        };
        first_of(async {}, pending).await;
        assert!(dropped.load(Ordering::Relaxed));
    }
}
