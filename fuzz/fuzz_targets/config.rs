//! The config loader on arbitrary text: provider and scenario parsing (YAML → schema →
//! typed → cross-checks) and kind detection. Any input must give Ok or an error, never a
//! panic, and every error must render.
#![no_main]

use std::path::Path;

use find_workers_limit::config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yaml");
    if let Err(e) = config::parse_provider(file, text) {
        let _ = e.to_string();
    }
    if let Err(e) = config::parse_scenario(file, text) {
        let _ = e.to_string();
    }
    let _ = config::detect_kind(text);
});
