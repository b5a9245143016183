//! The built-in simulated provider: a hyper server on 127.0.0.1 speaking the OpenAI
//! chat-completions and Anthropic messages wire formats, with rate limits, latency and
//! injected faults. The demo, the test target and the benchmark target; it never stands
//! in for the engine.
//!
//! # Layout
//! - [`config`]: the user's [`SimulatorSettings`] resolved into checked values and
//!   defaults (ttft 100 ms, 200 tokens/s, 64 output tokens, time scale 1, no limits).
//! - [`limits`]: lock-free counters, the exact concurrency gate, the per-minute token
//!   buckets, the deterministic fault schedules.
//! - [`handler`]: one request from routing to reply; its module doc lists the order of
//!   checks, which decides what a client sees when several limits and faults apply.
//! - [`wire`]: the vendors' bodies, SSE events, error shapes and rate-limit headers.
//! - [`body`]: the response body, which releases the request's in-flight slot as its
//!   last byte leaves.
//! - [`timefmt`]: Go durations and RFC 3339 instants for the reset headers.
//!
//! # Time
//! Every simulated duration (time to first token, generation, the refill of the
//! per-minute buckets, the one-second hint of a concurrency 429) is divided by
//! `time_scale`; every hint the server sends (`retry-after`, reset headers) is in real
//! time, so a client needs to know nothing about the scale. `stall_ms` is real time.

pub mod body;
pub mod clock;
pub mod config;
pub mod handler;
pub mod limits;
pub mod timefmt;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::scenario::SimulatorSettings;
use config::SimConfig;
use handler::State;

/// Counters the simulator keeps, served as JSON at `GET /stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received on the API endpoints.
    pub requests: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 429 because of a rate limit (concurrency, rpm, tpm).
    pub rate_limited: u64,
    /// Answered with an injected fault (quota, bad key, 5xx, 529, ...).
    pub faults: u64,
    /// The most requests in flight at once since start (or the last reset).
    pub max_in_flight: u64,
    /// Requests in flight now.
    pub in_flight: u64,
}

/// A running simulator. Dropping it without `shutdown` leaves the task running until
/// the runtime ends.
pub struct SimServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl SimServer {
    /// Binds `addr` (port 0: any free port) and serves until `shutdown`. Invalid
    /// settings (a fault rate above 1, a zero time scale) are an `InvalidInput` error
    /// naming the option.
    pub async fn start(
        settings: SimulatorSettings,
        addr: SocketAddr,
    ) -> std::io::Result<SimServer> {
        let cfg = SimConfig::resolve(&settings)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(cfg));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state), cancel.clone()));
        Ok(SimServer {
            addr,
            state,
            cancel,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/v1`: the OpenAI base URL of this server.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`: the Anthropic base URL of this server.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.state.counters.snapshot()
    }

    /// Zeroes the counters (max_in_flight included) and restarts the fault schedules.
    pub fn reset_stats(&self) {
        self.state.reset();
    }

    /// The settings in force, defaults applied, as one line (for banners and logs).
    pub fn describe(&self) -> String {
        self.state.cfg.describe()
    }

    /// Stops accepting and ends the server task; open connections are closed, requests
    /// in flight (a stall, a stream) end there.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// The listening socket, its queue as long as the kernel allows. A step opens all its
/// connections at once (2,000 at the top of a probe): with the 128 of a plain `bind`,
/// a connection that finds the queue full has its SYN dropped and is retried a second
/// later, holding its whole step up by a second.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a port just released can be bound again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    // Linux caps it at net.core.somaxconn (4096 by default since 5.4).
    socket.listen(65_535)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: back off
                // briefly rather than spin; the server keeps running.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small SSE events must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handler::serve(Arc::clone(&state), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            // A connection error (client gone, truncated body fault) only ends this
            // connection.
            tokio::select! {
                _ = conn => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}
