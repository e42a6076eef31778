//! libFuzzer entry point of [`starling_fuzz::hf_config`] (run: `fuzz/run.sh hf_config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::hf_config(data));
