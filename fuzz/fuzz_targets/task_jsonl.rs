//! libFuzzer entry point of [`starling_fuzz::task_jsonl`] (run: `fuzz/run.sh task_jsonl`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| starling_fuzz::task_jsonl(data));
