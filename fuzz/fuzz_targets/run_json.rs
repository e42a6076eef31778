//! libFuzzer entry point of [`starling_fuzz::run_json`] (run: `fuzz/run.sh run_json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::run_json(data));
