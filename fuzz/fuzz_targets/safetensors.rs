//! libFuzzer entry point of [`starling_fuzz::safetensors`] (run: `fuzz/run.sh safetensors`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::safetensors(data));
