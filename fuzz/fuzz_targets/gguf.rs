//! libFuzzer entry point of [`starling_fuzz::gguf`] (run: `fuzz/run.sh gguf`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::gguf(data));
