//! A timer precise to tens of microseconds, for simulated latencies.
//!
//! Tokio's timer counts in millisecond ticks, rounds a deadline up to the next tick and
//! parks the runtime with a millisecond timeout: a reply due at 200 ms left at 201–203 ms,
//! and every client measuring the simulator counted those 1–3 ms as latency (oha as much
//! as this tool's engine). Here one thread keeps the deadlines in a heap and sleeps on a
//! condition variable until the earliest (a futex with a nanosecond timeout, which the
//! kernel honours to within its timer slack, ~50 µs), then wakes the tasks that are due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Ready at `at` (at once if it has passed).
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep { at, waker: None }
}

/// See [`sleep_until`].
#[derive(Debug)]
pub struct Sleep {
    at: Instant,
    /// The waker registered with the timer thread (registered again only if the task's
    /// waker changes).
    waker: Option<Waker>,
}

impl Sleep {
    pub fn deadline(&self) -> Instant {
        self.at
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            timer().add(self.at, cx.waker().clone());
            self.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

struct Due {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("sim-clock".into())
            .spawn(move || t.run())
            .expect("cannot start the simulator's clock thread");
        t
    })
}

impl Timer {
    fn add(&self, at: Instant, waker: Waker) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = q.heap.peek().is_none_or(|Reverse(d)| at < d.at);
        q.seq += 1;
        let seq = q.seq;
        q.heap.push(Reverse(Due { at, seq, waker }));
        drop(q);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = Vec::new();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while q.heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                if let Some(Reverse(d)) = q.heap.pop() {
                    due.push(d.waker);
                }
            }
            if !due.is_empty() {
                // Wake outside the lock: a woken task may add a deadline at once.
                drop(q);
                for w in due.drain(..) {
                    w.wake();
                }
                q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            q = match q.heap.peek() {
                None => self.changed.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse(d)) => {
                    let wait = d.at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_at_the_deadline_in_order() {
        let start = Instant::now();
        let (a, b) = tokio::join!(
            async {
                sleep_until(start + Duration::from_millis(30)).await;
                start.elapsed()
            },
            async {
                sleep_until(start + Duration::from_millis(10)).await;
                start.elapsed()
            }
        );
        assert!(a >= Duration::from_millis(30), "{a:?}");
        assert!(b >= Duration::from_millis(10), "{b:?}");
        assert!(b < a);
        // A deadline that has passed is ready at once.
        sleep_until(start).await;
    }
}
