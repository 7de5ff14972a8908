#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = bulkhead_spec::Cpu::parse(text);
        let _ = bulkhead_spec::Bytes::parse(text);
        let _ = bulkhead_spec::Bandwidth::parse(text);
        let _ = bulkhead_spec::PortSpec::parse(text);
        let _ = bulkhead_spec::parse_cidr(text);
    }
});
