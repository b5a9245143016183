//! The response body: either all at once, or a timeline of chunks released at their due
//! times (streams, and the truncated-body fault). It carries the request's in-flight
//! slot and frees it as the last byte is handed to the connection — not when the client
//! has read it — so that a client that sends its next request the moment a response
//! completes always finds the slot free again.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::time::Instant;

use super::clock::{self, Sleep};

use super::limits::InFlight;

/// A response body of the simulator.
#[derive(Debug)]
pub struct SimBody {
    kind: Kind,
    slot: Option<InFlight>,
}

#[derive(Debug)]
enum Kind {
    /// One piece, sent at once (`None` once sent).
    Full(Option<Bytes>),
    /// Chunks due at offsets from `start`; after the last, the body either ends or
    /// fails, which makes hyper drop the connection mid-body.
    Timeline {
        start: Instant,
        chunks: Vec<(Duration, Bytes)>,
        next: usize,
        sleep: Option<Sleep>,
        abort: bool,
    },
}

impl SimBody {
    pub fn full(bytes: impl Into<Bytes>) -> SimBody {
        SimBody {
            kind: Kind::Full(Some(bytes.into())),
            slot: None,
        }
    }

    pub fn empty() -> SimBody {
        SimBody {
            kind: Kind::Full(None),
            slot: None,
        }
    }

    /// Chunks released at their offsets from `start` (offsets ascending). When `abort`,
    /// the body fails after the last chunk: the connection is closed without finishing
    /// the message (a truncated body). All-zero offsets without abort collapse into one
    /// piece.
    pub fn timeline(start: Instant, chunks: Vec<(Duration, Bytes)>, abort: bool) -> SimBody {
        if !abort && chunks.iter().all(|(at, _)| at.is_zero()) {
            let total: usize = chunks.iter().map(|(_, b)| b.len()).sum();
            let mut all = Vec::with_capacity(total);
            for (_, b) in &chunks {
                all.extend_from_slice(b);
            }
            return SimBody::full(all);
        }
        SimBody {
            kind: Kind::Timeline {
                start,
                chunks,
                next: 0,
                sleep: None,
                abort,
            },
            slot: None,
        }
    }

    /// Makes the body hold the request's in-flight slot until its last byte is out.
    pub fn holding(mut self, slot: InFlight) -> SimBody {
        self.slot = Some(slot);
        self
    }

    fn release(&mut self) {
        if let Some(mut s) = self.slot.take() {
            s.release();
        }
    }
}

/// How long a truncated body waits after its last bytes before it fails the connection.
const ABORT_GRACE: Duration = Duration::from_millis(20);

/// Ready once `due` has passed; otherwise arms `sleep` for it and is pending.
fn wait_until(sleep: &mut Option<Sleep>, due: Instant, cx: &mut Context<'_>) -> Poll<()> {
    if due <= Instant::now() {
        return Poll::Ready(());
    }
    let s = match sleep {
        Some(s) if s.deadline() == due => s,
        _ => sleep.insert(clock::sleep_until(due)),
    };
    Pin::new(s).poll(cx)
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(data) => {
                let out = data.take();
                this.release();
                Poll::Ready(out.map(|b| Ok(Frame::data(b))))
            }
            Kind::Timeline {
                start,
                chunks,
                next,
                sleep,
                abort,
            } => {
                if *next >= chunks.len() {
                    if *abort {
                        // Fail only once what was sent has been flushed: hyper drops its
                        // unwritten buffer when a body fails, and the client must see the
                        // head and the partial body before the connection closes.
                        let last = chunks.last().map_or(Duration::ZERO, |(at, _)| *at);
                        if wait_until(sleep, *start + last + ABORT_GRACE, cx).is_pending() {
                            return Poll::Pending;
                        }
                        this.release();
                        return Poll::Ready(Some(Err(io::Error::other(
                            "simulated truncated body",
                        ))));
                    }
                    this.release();
                    return Poll::Ready(None);
                }
                if wait_until(sleep, *start + chunks[*next].0, cx).is_pending() {
                    return Poll::Pending;
                }
                let data = std::mem::take(&mut chunks[*next].1);
                *next += 1;
                if *next >= chunks.len() && !*abort {
                    this.release();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(data) => data.is_none(),
            Kind::Timeline {
                chunks,
                next,
                abort,
                ..
            } => !*abort && *next >= chunks.len(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            // Unknown: a stream is sent chunked, and a truncated body's declared
            // content-length header (larger than what is sent) is then what hyper uses.
            Kind::Timeline { .. } => SizeHint::default(),
        }
    }
}
