//! libFuzzer entry point of [`starling_fuzz::gguf_tokenizer`] (run: `fuzz/run.sh gguf_tokenizer`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::gguf_tokenizer(data));
