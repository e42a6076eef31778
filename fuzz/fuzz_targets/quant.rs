//! libFuzzer entry point of [`starling_fuzz::quant`] (run: `fuzz/run.sh quant`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::quant(data));
