#![no_main]
//! Fuzz target: see `kvsweep::fuzz::prometheus`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsweep::fuzz::prometheus(data));
