#![no_main]
//! Fuzz target: see `kvsweep::fuzz::sse`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsweep::fuzz::sse(data));
