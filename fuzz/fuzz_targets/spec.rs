#![no_main]
//! Fuzz target: see `kvsweep::fuzz::spec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsweep::fuzz::spec(data));
