//! Hostile servers (raw TCP on 127.0.0.1, written here): a 1 GB body, an endless chunked
//! body, an endless SSE stream, a server that accepts and never answers, a connection
//! reset mid-body. Each request ends as a counted failure within its timeout, and the
//! probe's memory stays bounded (the engine stops reading at 16 MiB).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// `Content-Length: 1073741824`, then bytes as fast as the client takes them.
    GigabyteBody,
    /// `Transfer-Encoding: chunked`, 64 KiB chunks forever.
    EndlessChunked,
    /// `text/event-stream`, one small event every 10 ms, forever.
    EndlessSse,
    /// Reads the request, then says nothing.
    Silent,
    /// Headers announce 100000 bytes; 1000 are sent, then the connection is reset (RST).
    ResetMidBody,
}

/// A server on 127.0.0.1 that answers every request the same hostile way.
struct Hostile {
    port: u16,
    requests: Arc<AtomicU64>,
    /// The most body bytes one connection managed to write.
    most_written: Arc<AtomicU64>,
}

fn read_request(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return true;
        }
    }
}

fn serve(mut s: TcpStream, how: Behaviour, most: &AtomicU64) {
    let data = vec![b'a'; 64 * 1024];
    let mut written = 0u64;
    let mut note = |n: usize| {
        written += n as u64;
        most.fetch_max(written, Ordering::Relaxed);
    };
    match how {
        Behaviour::GigabyteBody => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
            );
            for _ in 0..(1 << 30) / data.len() {
                if s.write_all(&data).is_err() {
                    return;
                }
                note(data.len());
            }
        }
        Behaviour::EndlessChunked => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            );
            loop {
                let head = format!("{:x}\r\n", data.len());
                if s.write_all(head.as_bytes()).is_err()
                    || s.write_all(&data).is_err()
                    || s.write_all(b"\r\n").is_err()
                {
                    return;
                }
                note(data.len());
            }
        }
        Behaviour::EndlessSse => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            );
            let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
            loop {
                let head = format!("{:x}\r\n", event.len());
                if s.write_all(head.as_bytes()).is_err()
                    || s.write_all(event).is_err()
                    || s.write_all(b"\r\n").is_err()
                {
                    return;
                }
                note(event.len());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Behaviour::Silent => {
            // Hold the connection until the client gives up.
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
        Behaviour::ResetMidBody => {
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n",
            );
            let _ = s.write_all(&data[..1000]);
            note(1000);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(50));
            // SO_LINGER 0: close() sends RST instead of FIN.
            use std::os::fd::AsRawFd;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
    }
}

impl Hostile {
    fn start(how: Behaviour) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let most_written = Arc::new(AtomicU64::new(0));
        let (r, m) = (requests.clone(), most_written.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let (r, m) = (r.clone(), m.clone());
                std::thread::spawn(move || {
                    // One request per connection: the client reconnects after a failure.
                    if read_request(&mut s) {
                        r.fetch_add(1, Ordering::Relaxed);
                        serve(s, how, &m);
                    }
                });
            }
        });
        Hostile {
            port,
            requests,
            most_written,
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    peak_rss_mib: u64,
    result: serde_json::Value,
}

/// Probes the hostile server (3 workers, 6 prompts, no retries, 2 s timeout), sampling
/// the peak resident memory until the process ends.
fn probe(how: Behaviour, extra: &[&str]) -> (Outcome, Hostile) {
    let server = Hostile::start(how);
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{}/v1", server.port);
    let mut args = vec![
        "--model",
        "gpt-4o",
        "--provider",
        "openai",
        "--base-url",
        &base,
        "--timeout",
        "2s",
        "--retries",
        "0",
        "--max-workers",
        "3",
        "--output-file",
        "result.json",
    ];
    args.extend_from_slice(extra);
    let started = Instant::now();
    let mut p = spawn_in(dir.path(), &args, &[("OPENAI_API_KEY", "sk-limits-test")]);
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = p.peak_rss_kib() {
            peak = peak.max(kib);
        }
        if let Some(s) = p.wait_timeout(Duration::from_millis(25)) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{how:?}: still running after 60 s:\n{}",
            p.stderr_so_far()
        );
    };
    let elapsed = started.elapsed();
    let (_, _, stderr) = p.finish(Duration::from_secs(5));
    let result = read_result(&dir.path().join("result.json"));
    (
        Outcome {
            code: status.code(),
            stderr,
            elapsed,
            peak_rss_mib: peak / 1024,
            result,
        },
        server,
    )
}

/// Every one of the 6 prompts of step 1 failed with `error`; exit 5 naming it.
fn assert_all_failed(how: Behaviour, o: &Outcome, error: &str) {
    assert_eq!(o.code, Some(5), "{how:?}: {}", o.stderr);
    let last = o.stderr.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "error: every prompt of the step at 3 workers failed after 0 retries (last: {error}); nothing can be measured"
        ),
        "{how:?}"
    );
    let run = &o.result["runs"][0];
    assert_eq!(o.result["runs"].as_array().unwrap().len(), 1);
    assert_eq!(run["workers"], 3);
    assert_eq!(run["prompts"], 6, "{how:?}: {run}");
    assert_eq!(run["failed"], 6);
    assert_eq!(run["success"], 0);
    assert_eq!(run["rate_limited"], 0);
    assert_eq!(run["error"], error);
    assert_eq!(o.result["outcome"], "fatal");
    assert_eq!(o.result["recommended_workers"], serde_json::Value::Null);
    // Bounded memory: nothing near the gigabyte (a debug build of the probe itself
    // peaks near 50 MiB).
    assert!(
        o.peak_rss_mib < 100,
        "{how:?}: peak RSS {} MiB",
        o.peak_rss_mib
    );
}

#[test]
fn a_gigabyte_body_is_refused_on_its_content_length() {
    let how = Behaviour::GigabyteBody;
    let (o, server) = probe(how, &[]);
    assert_all_failed(how, &o, "response body exceeds 16777216 bytes");
    assert_eq!(server.requests.load(Ordering::Relaxed), 6);
    // Refused on its announced length: the client read none of it, so the server could
    // write no more than the socket buffers hold.
    assert!(server.most_written.load(Ordering::Relaxed) < 16 << 20);
    // No timeout was needed: 6 prompts of 2 s each would take 6 s.
    assert!(o.elapsed < Duration::from_secs(6), "{:?}", o.elapsed);
}

#[test]
fn an_endless_chunked_body_is_cut_at_16_mib() {
    // The probe's own footprint, from a run that reads no body at all.
    let (baseline, _) = probe(Behaviour::GigabyteBody, &[]);
    let how = Behaviour::EndlessChunked;
    let (o, server) = probe(how, &[]);
    assert_all_failed(how, &o, "response body exceeds 16777216 bytes");
    // Each of the 3 workers holds at most its 16 MiB cap (plus a quarter for the
    // allocator and hyper's read buffers), never a copy beside it.
    let extra = o.peak_rss_mib.saturating_sub(baseline.peak_rss_mib);
    assert!(
        extra <= 3 * 16 * 5 / 4,
        "peak {} MiB, {extra} MiB above the baseline {} MiB",
        o.peak_rss_mib,
        baseline.peak_rss_mib
    );
    assert_eq!(server.requests.load(Ordering::Relaxed), 6);
    assert!(server.most_written.load(Ordering::Relaxed) < 64 << 20);
    assert!(o.elapsed < Duration::from_secs(6), "{:?}", o.elapsed);
}

#[test]
fn an_endless_event_stream_ends_at_the_timeout() {
    let how = Behaviour::EndlessSse;
    let (o, server) = probe(how, &["--stream"]);
    assert_all_failed(how, &o, "request timed out after 2s");
    assert_eq!(server.requests.load(Ordering::Relaxed), 6);
    // The first prompt alone, then five on three workers: three rounds of 2 s.
    assert!(o.elapsed >= Duration::from_secs(6), "{:?}", o.elapsed);
    assert!(o.elapsed < Duration::from_secs(6 + 4), "{:?}", o.elapsed);
}

#[test]
fn a_server_that_never_answers_ends_at_the_timeout() {
    let how = Behaviour::Silent;
    let (o, server) = probe(how, &[]);
    assert_all_failed(how, &o, "request timed out after 2s");
    assert_eq!(server.requests.load(Ordering::Relaxed), 6);
    assert!(o.elapsed >= Duration::from_secs(6), "{:?}", o.elapsed);
    assert!(o.elapsed < Duration::from_secs(6 + 4), "{:?}", o.elapsed);
}

#[test]
fn a_connection_reset_mid_body_is_a_failure() {
    let how = Behaviour::ResetMidBody;
    let (o, server) = probe(how, &[]);
    let error = o.result["runs"][0]["error"].as_str().unwrap().to_string();
    assert_all_failed(how, &o, &error);
    assert_eq!(
        error,
        "response body cut short: error reading a body from connection: Connection reset by peer (os error 104)"
    );
    assert_eq!(server.requests.load(Ordering::Relaxed), 6);
    assert!(o.elapsed < Duration::from_secs(6), "{:?}", o.elapsed);
}
