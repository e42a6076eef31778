//! libFuzzer entry point of [`starling_fuzz::answers`] (run: `fuzz/run.sh answers`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::answers(data));
