#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Must never panic, hang or blow the stack: only Ok or diagnostics.
        let _ = bulkhead_spec::load_str("fuzz.yaml", text);
    }
});
