//! libFuzzer entry point of [`starling_fuzz::memory`] (run: `fuzz/run.sh memory`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::memory(data));
