#![no_main]
//! Fuzz target: see `kvsweep::fuzz::kvct`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsweep::fuzz::kvct(data));
