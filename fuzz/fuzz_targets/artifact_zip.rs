#![no_main]
//! Fuzz target: see `kvsweep::fuzz::artifact_zip`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| kvsweep::fuzz::artifact_zip(data));
