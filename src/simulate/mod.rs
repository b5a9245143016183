//! The built-in simulated provider: a hyper server on 127.0.0.1 speaking the OpenAI
//! chat-completions and Anthropic messages wire formats, with rate limits, latency and
//! injected faults. The demo, the test target and the benchmark target; it never stands
//! in for the engine.
//!
//! CONTRACT (filled in by the simulator work; signatures are fixed, bodies are not).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::scenario::SimulatorSettings;

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
}

impl SimServer {
    /// Binds `addr` (port 0: any free port) and serves until `shutdown`.
    pub async fn start(
        _settings: SimulatorSettings,
        _addr: SocketAddr,
    ) -> std::io::Result<SimServer> {
        unimplemented!("SimServer::start")
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
        unimplemented!("SimServer::stats")
    }

    /// Zeroes the counters (max_in_flight included).
    pub fn reset_stats(&self) {
        unimplemented!("SimServer::reset_stats")
    }

    /// Stops accepting and ends the server task.
    pub async fn shutdown(self) {
        unimplemented!("SimServer::shutdown")
    }
}
