#![no_main]
//! Fuzz target: see `kvsweep::fuzz::mooncake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsweep::fuzz::mooncake(data));
