//! The SSE parser on arbitrary bytes. Properties: no panic, and feeding the body in
//! chunks (split where the input says) gives exactly the events of parsing it whole.
#![no_main]

use find_workers_limit::classify::{parse_sse, SseParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, body)) = data.split_first() else {
        return;
    };
    let whole = parse_sse(body);
    // Split into pieces of 1..=16 bytes, sizes drawn from `cuts` and the body itself.
    let mut parser = SseParser::new();
    let mut chunked = Vec::new();
    let mut rest = body;
    let mut seed = cuts as usize;
    while !rest.is_empty() {
        let n = (seed % 16 + 1).min(rest.len());
        seed = seed.wrapping_mul(31).wrapping_add(rest[0] as usize);
        chunked.extend(parser.feed(&rest[..n]));
        rest = &rest[n..];
    }
    chunked.extend(parser.finish());
    assert_eq!(whole, chunked);
});
