//! Stand-in SSE parser until `classify::parse_sse` lands on main.

use crate::classify::SseEvent;

/// Splits a `text/event-stream` body into events (WHATWG rules, simplified: `event:` and
/// `data:` fields; comments and other fields ignored).
pub(crate) fn parse(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(body);
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    let mut flush = |event: &mut Option<String>, data: &mut Vec<&str>| {
        if !data.is_empty() {
            let joined = data.join("\n");
            let json = serde_json::from_str(&joined).ok();
            events.push(SseEvent {
                event: event.take(),
                data: joined,
                json,
            });
        }
        *event = None;
        data.clear();
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            flush(&mut event, &mut data);
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    flush(&mut event, &mut data);
    events
}
