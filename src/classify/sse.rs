//! A server-sent events parser, as the WHATWG spec reads a `text/event-stream`:
//! lines end in CRLF, LF or CR; `field: value` lines (one optional space after the
//! colon); lines starting with `:` are comments (`: keep-alive`, `: OPENROUTER
//! PROCESSING`) and skipped; a blank line ends an event; several `data:` lines join with
//! `\n`. Unlike a browser, a last event that the stream cut before its blank line is
//! kept: a truncated stream's final error event is still evidence.
//!
//! [`SseParser`] takes the body in chunks as they arrive (a chunk may split a line, or a
//! CRLF); [`parse_sse`] parses a whole body at once.

use std::sync::Arc;

use super::SseEvent;
use crate::jsonpath::{Parsed, PathSet};

/// Parses a whole `text/event-stream` body.
pub fn parse_sse(bytes: &[u8]) -> Vec<SseEvent> {
    SseParser::new().parse(bytes)
}

/// An incremental SSE parser: [`feed`](SseParser::feed) chunks, then
/// [`finish`](SseParser::finish) at the end of the body.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The unfinished line carried over from the previous chunk.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    /// No line was read yet (the first may start with a byte-order mark, dropped; it is
    /// looked for in the whole line, as a chunk may split it).
    at_start: bool,
    event: Option<String>,
    data: Option<String>,
    /// What of each event's JSON to keep; `None`: all of it.
    paths: Option<Arc<PathSet>>,
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser {
            at_start: true,
            ..SseParser::default()
        }
    }

    /// A parser that keeps of each event's JSON only what `paths` reach (see
    /// [`PathSet::parse`]).
    pub fn keeping(paths: Arc<PathSet>) -> SseParser {
        SseParser {
            paths: Some(paths),
            ..SseParser::new()
        }
    }

    /// Reads one chunk; returns the events it completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        if self.after_cr && !chunk.is_empty() {
            chunk = chunk.strip_prefix(b"\n".as_slice()).unwrap_or(chunk);
            self.after_cr = false;
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line_end = chunk[end];
            let mut next = end + 1;
            if line_end == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if self.line.is_empty() {
                self.line_done(&chunk[..end], &mut events);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&chunk[..end]);
                self.line_done(&line, &mut events);
            }
            chunk = &chunk[next..];
        }
        self.line.extend_from_slice(chunk);
        events
    }

    /// A whole body at once: [`feed`](SseParser::feed), then [`finish`](SseParser::finish).
    pub fn parse(mut self, bytes: &[u8]) -> Vec<SseEvent> {
        let mut events = self.feed(bytes);
        events.extend(self.finish());
        events
    }

    /// Ends the body: the unfinished last line and event, if any.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut events);
        }
        self.dispatch(&mut events);
        events.pop()
    }

    fn line_done(&mut self, mut line: &[u8], events: &mut Vec<SseEvent>) {
        if self.at_start {
            self.at_start = false;
            line = line
                .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                .unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (
                    &line[..colon],
                    value.strip_prefix(b" ".as_slice()).unwrap_or(value),
                )
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            // `id`, `retry` and unknown fields say nothing about the outcome.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = self.event.take();
        let data = self.data.take();
        if event.is_none() && data.is_none() {
            return;
        }
        let data = data.unwrap_or_default();
        let json = parse_json_data(&data, self.paths.as_deref());
        events.push(SseEvent { event, data, json });
    }
}

/// The `data:` payload as JSON when it is a JSON object or array (a `[DONE]` marker or
/// a bare word is not).
fn parse_json_data(data: &str, paths: Option<&PathSet>) -> Option<Parsed> {
    match data.trim_start().as_bytes().first() {
        Some(b'{') | Some(b'[') => match paths {
            Some(paths) if paths.is_empty() => None,
            Some(paths) => paths.parse(data.as_bytes()).ok(),
            None => serde_json::from_str(data).ok().map(Parsed::Whole),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
            json: parse_json_data(data, None),
        }
    }

    #[test]
    fn events_with_names_and_json() {
        let body = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n";
        let events = parse_sse(body);
        assert_eq!(
            events,
            vec![
                ev(Some("message_start"), "{\"type\":\"message_start\"}"),
                ev(Some("ping"), "{\"type\": \"ping\"}")
            ]
        );
        assert_eq!(
            events[0].json,
            Some(Parsed::Whole(json!({"type": "message_start"})))
        );
    }

    #[test]
    fn crlf_and_lone_cr_end_lines() {
        let crlf = b"event: a\r\ndata: {\"x\":1}\r\n\r\ndata: {\"x\":2}\r\n\r\n";
        assert_eq!(
            parse_sse(crlf),
            vec![ev(Some("a"), "{\"x\":1}"), ev(None, "{\"x\":2}")]
        );
        let cr = b"event: a\rdata: {\"x\":1}\r\rdata: {\"x\":2}\r\r";
        assert_eq!(
            parse_sse(cr),
            vec![ev(Some("a"), "{\"x\":1}"), ev(None, "{\"x\":2}")]
        );
    }

    #[test]
    fn comments_and_keep_alives_are_skipped() {
        let body = b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: {\"x\":1}\n: mid-event comment\n\n:\n\n";
        assert_eq!(parse_sse(body), vec![ev(None, "{\"x\":1}")]);
        // Blank lines alone (DeepSeek under load) make no event either.
        assert_eq!(parse_sse(b"\n\n\n\n"), vec![]);
    }

    #[test]
    fn multi_line_data_joins_with_newlines() {
        let body = b"data: {\"a\":\ndata: 1}\n\ndata:no-space\ndata:  two spaces\n\n";
        let events = parse_sse(body);
        assert_eq!(
            events,
            vec![ev(None, "{\"a\":\n1}"), ev(None, "no-space\n two spaces")]
        );
        assert_eq!(events[0].json, Some(Parsed::Whole(json!({"a": 1}))));
        // `data` with no colon is an empty data line.
        assert_eq!(parse_sse(b"data\ndata\n\n"), vec![ev(None, "\n")]);
    }

    #[test]
    fn done_marker_is_an_event_without_json() {
        let body = b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n";
        let events = parse_sse(body);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1],
            SseEvent {
                event: None,
                data: "[DONE]".into(),
                json: None
            }
        );
    }

    #[test]
    fn trailing_partial_event_is_kept() {
        let body = b"data: {\"x\":1}\n\nevent: error\ndata: {\"type\":\"error\"}";
        assert_eq!(
            parse_sse(body),
            vec![
                ev(None, "{\"x\":1}"),
                ev(Some("error"), "{\"type\":\"error\"}")
            ]
        );
        // Cut in the middle of the JSON: the data is kept, it is not JSON.
        let cut = parse_sse(b"data: {\"x\":");
        assert_eq!(
            cut,
            vec![SseEvent {
                event: None,
                data: "{\"x\":".into(),
                json: None
            }]
        );
    }

    #[test]
    fn chunks_may_split_lines_and_crlf_anywhere() {
        let body: &[u8] =
            b"\xEF\xBB\xBFevent: a\r\ndata: {\"x\":1}\r\n\r\n: c\r\ndata: [DONE]\r\n\r\n";
        let whole = parse_sse(body);
        assert_eq!(whole, vec![ev(Some("a"), "{\"x\":1}"), ev(None, "[DONE]")]);
        for split in 0..body.len() {
            for split2 in split..body.len() {
                let mut p = SseParser::new();
                let mut events = p.feed(&body[..split]);
                events.extend(p.feed(&body[split..split2]));
                events.extend(p.feed(&body[split2..]));
                events.extend(p.finish());
                assert_eq!(events, whole, "split at {split}, {split2}");
            }
        }
    }

    #[test]
    fn binary_garbage_never_panics() {
        let mut noise = Vec::new();
        for i in 0..4096u32 {
            noise.push((i.wrapping_mul(2_654_435_761) >> 13) as u8);
        }
        let _ = parse_sse(&noise);
        let events = parse_sse(b"data: \xff\xfe\n\n");
        assert_eq!(events[0].data, "\u{fffd}\u{fffd}");
    }
}
