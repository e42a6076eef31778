//! Fuzz targets for every reader of input Starling did not write itself, or wrote and may find
//! damaged: GGUF files (header, metadata, tensor table, every quant block type, the tokenizer
//! built from the metadata), safetensors, `config.json`, a model's files in memory (the browser's
//! loader), the tasks' JSONL, answer extraction, and the JSON of run folders.
//!
//! Each target takes arbitrary bytes and must return — a value or a clean error — without
//! panicking (these builds check arithmetic overflow), and without allocating more than the input
//! justifies (libFuzzer's `-malloc_limit_mb` stops a target that tries). Where a target can state
//! more, it asserts it: a dequantized tensor has its shape's number of values, a config or a run
//! file Starling writes reads back the same, an answer written as the task writes it is read back
//! as right.
//!
//! Three ways to run them: `cargo test -p starling-fuzz` replays the seed corpora in `seeds/`,
//! the regressions in `regressions/` and seeded mutations of both (stable toolchain, bounded:
//! the CI pass); `fuzz/run.sh TARGET` runs one coverage-guided with cargo-fuzz (nightly); the
//! binaries in `fuzz_targets/` are the libFuzzer entry points.

pub mod mutate;
pub mod seeds;

use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};
use serde::Serialize;
use serde::de::DeserializeOwned;

use starling_model::ModelConfig;
use starling_model::checkpoint::gguf::{GgufFile, GgufSource, MetaValue, write_gguf};
use starling_model::checkpoint::gguf_tokenizer::tokenizer_from_gguf;
use starling_model::checkpoint::memory::open_from_memory;
use starling_model::checkpoint::quant::{GgmlType, dequantize};
use starling_model::checkpoint::safetensors::SafetensorsSource;
use starling_model::checkpoint::{FileBytes, WeightSource};
use starling_tasks::arithmetic::{Addition, parse_answer};
use starling_tasks::{OnBadLine, PromptStyle, TaskKind, answer, csqa, gsm8k, qa};

/// A fuzz target: arbitrary bytes in, a panic on failure.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `fuzz_targets/` and of the folders in `seeds/`).
pub const TARGETS: [(&str, Target); 9] = [
    ("gguf", gguf),
    ("quant", quant),
    ("gguf_tokenizer", gguf_tokenizer),
    ("safetensors", safetensors),
    ("hf_config", hf_config),
    ("memory", memory),
    ("task_jsonl", task_jsonl),
    ("answers", answers),
    ("run_json", run_json),
];

/// Reads every tensor of a weight source, checking each has its shape's number of values.
fn load_all(source: &dyn WeightSource) {
    for name in source.names() {
        if let Ok(t) = source.load(&name) {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>(), "tensor {name}");
        }
    }
}

/// A GGUF file: header, metadata, tensor table; then every tensor, the model config and the
/// tokenizer derived from it.
pub fn gguf(data: &[u8]) {
    let Ok(file) = GgufFile::parse(PathBuf::from("fuzz.gguf"), FileBytes::Owned(data.to_vec())) else {
        return;
    };
    for (name, info) in &file.tensors {
        if let Ok(t) = file.dequantize(name) {
            assert_eq!(t.data.len(), info.shape.iter().product::<usize>(), "tensor {name}");
        }
    }
    let _ = file.model_config();
    if let Ok(tok) = tokenizer_from_gguf(&file) {
        use_tokenizer(&tok, "Hello world 12");
    }
    if let Ok(source) = GgufSource::new(file) {
        load_all(&source);
    }
}

/// One block type (the first byte, a GGML type id) dequantized from the rest.
pub fn quant(data: &[u8]) {
    let Some((&id, rest)) = data.split_first() else { return };
    let Ok(ty) = GgmlType::from_id(u32::from(id)) else { return };
    let (per_block, block_bytes) = ty.block();
    assert_eq!(dequantize(ty, rest).len(), rest.len() / block_bytes * per_block);
}

/// `tokenizer.ggml.*` metadata as a GGUF writer could put it, built from structured input (deeper
/// than byte mutations of a whole file reach): ids out of range, lists of unequal length,
/// merges of unknown tokens.
#[derive(Arbitrary, Debug)]
struct TokenizerMeta {
    model: TokenizerModel,
    tokens: Vec<String>,
    scores: Option<Vec<f32>>,
    types: Option<Vec<i32>>,
    merges: Option<Vec<String>>,
    pre: Option<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    unknown: Option<u32>,
    add_bos: Option<bool>,
    text: String,
}

#[derive(Arbitrary, Debug)]
enum TokenizerModel {
    Gpt2,
    Llama,
    Other(String),
}

pub fn gguf_tokenizer(data: &[u8]) {
    let Ok(m) = TokenizerMeta::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let strs = |v: &[String]| MetaValue::Array(v.iter().map(|s| MetaValue::Str(s.clone())).collect());
    let model = match &m.model {
        TokenizerModel::Gpt2 => "gpt2".to_string(),
        TokenizerModel::Llama => "llama".to_string(),
        TokenizerModel::Other(s) => s.clone(),
    };
    let mut meta = vec![("tokenizer.ggml.model", MetaValue::Str(model)), ("tokenizer.ggml.tokens", strs(&m.tokens))];
    if let Some(s) = &m.scores {
        meta.push(("tokenizer.ggml.scores", MetaValue::Array(s.iter().map(|&x| MetaValue::F64(x.into())).collect())));
    }
    if let Some(t) = &m.types {
        meta.push((
            "tokenizer.ggml.token_type",
            MetaValue::Array(t.iter().map(|&x| MetaValue::I64(x.into())).collect()),
        ));
    }
    if let Some(merges) = &m.merges {
        meta.push(("tokenizer.ggml.merges", strs(merges)));
    }
    if let Some(p) = &m.pre {
        meta.push(("tokenizer.ggml.pre", MetaValue::Str(p.clone())));
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", m.bos),
        ("tokenizer.ggml.eos_token_id", m.eos),
        ("tokenizer.ggml.unknown_token_id", m.unknown),
    ] {
        if let Some(id) = id {
            meta.push((key, MetaValue::U64(id.into())));
        }
    }
    if let Some(b) = m.add_bos {
        meta.push(("tokenizer.ggml.add_bos_token", MetaValue::Bool(b)));
    }
    let bytes = write_gguf(&meta, &[]);
    let file =
        GgufFile::parse(PathBuf::from("fuzz.gguf"), FileBytes::Owned(bytes)).expect("write_gguf's output parses");
    if let Ok(tok) = tokenizer_from_gguf(&file) {
        use_tokenizer(&tok, &m.text);
    }
}

/// Encodes and decodes `text`: every id is in the vocabulary.
fn use_tokenizer(tok: &starling_model::Tokenizer, text: &str) {
    if let Ok(ids) = tok.encode(text, true) {
        let vocab = tok.vocab_size();
        assert!(ids.iter().all(|&i| (i as usize) < vocab), "ids within the vocabulary of {vocab}");
        let _ = tok.decode(&ids, false);
    }
}

/// A safetensors file, then every tensor in it.
pub fn safetensors(data: &[u8]) {
    let path = PathBuf::from("fuzz.safetensors");
    if let Ok(source) = SafetensorsSource::new(path.clone(), vec![(path, FileBytes::Owned(data.to_vec()))]) {
        load_all(&source);
    }
}

/// A Hugging Face `config.json`: a config that validates is written back and reads the same.
pub fn hf_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = ModelConfig::from_hf_json(text) else { return };
    if config.validate().is_ok() {
        let written = config.to_hf_json();
        let again = ModelConfig::from_hf_json(&written.to_string()).expect("a written config reads back");
        // Floats within an ulp: serde_json's default parser is not correctly rounded (a written
        // rope_theta of 1.0000000000000001e81 reads back as 1e81). README: found by this target.
        assert!(json_close(&again.to_hf_json(), &written), "config.json round trip: {again:?} vs {config:?}");
        let _ = config.num_parameters();
    }
}

/// Equal JSON, numbers within a relative 1e-15 (one or two ulps of an f64).
fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

/// Splits the input into named files: records of a name (one length byte, then the name) and
/// the bytes (a little-endian u32 length, then the bytes). [`frame_files`] writes it.
pub fn unframe_files(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    while let Some((&n, rest)) = data.split_first() {
        let Some((name, rest)) = rest.split_at_checked(n as usize) else { break };
        let Some((len, rest)) = rest.split_first_chunk::<4>() else { break };
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        let (bytes, rest) = rest.split_at(len);
        files.push((String::from_utf8_lossy(name).into_owned(), bytes.to_vec()));
        data = rest;
    }
    files
}

/// The inverse of [`unframe_files`] (for seeds).
pub fn frame_files(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        out.push(name.len() as u8);
        out.extend(name.as_bytes());
        out.extend((bytes.len() as u32).to_le_bytes());
        out.extend(*bytes);
    }
    out
}

/// A model's files in memory, as the browser picks or fetches them (HF folder, shards with an
/// index, or one GGUF), then every tensor.
pub fn memory(data: &[u8]) {
    if let Ok(ck) = open_from_memory(unframe_files(data)) {
        load_all(ck.weights.as_ref());
        let _ = ck.config.validate();
        use_tokenizer(&ck.tokenizer, "2 + 3 = 5");
    }
}

/// The tasks' JSONL readers, each in both modes (stop at a bad line / skip it), and prompts and
/// answers of every record read.
pub fn task_jsonl(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for on_bad in [OnBadLine::Error, OnBadLine::Skip] {
        let mut items = Vec::new();
        if let Ok(p) = csqa::parse_jsonl(&text, "fuzz.jsonl", on_bad) {
            items.extend(p.records.into_iter().map(|i| (TaskKind::Csqa, i)));
        }
        if let Ok(p) = gsm8k::parse_jsonl(&text, "fuzz.jsonl", on_bad) {
            items.extend(p.records.into_iter().map(|(i, _)| (TaskKind::Gsm8k, i)));
        }
        if let Ok(p) = qa::parse_jsonl(&text, "fuzz.jsonl", on_bad) {
            items.extend(p.records.into_iter().map(|(i, _)| (TaskKind::Qa, i)));
        }
        for (kind, item) in items.iter().take(8) {
            for style in [PromptStyle::Rationale, PromptStyle::Direct] {
                let _ = kind.prompt(&[], item, style, true);
                let written = kind.completion(item, "", style);
                let _ = kind.extract(item, &written);
            }
        }
    }
    let _ = qa::parse_exemplars(&text, "fuzz.jsonl");
}

/// Answer extraction on arbitrary completions, for every task kind; and the invariant that an
/// answer written as the task writes it is read back as right (sums and numbers).
pub fn answers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (completion, gold) = text.split_once('\0').unwrap_or((&text, "7"));
    let _ = answer::normalize_number(completion);
    let _ = answer::number_after(completion, gold);
    let _ = answer::normalize_text(completion);
    let _ = answer::text_after_answer_is(completion);
    let _ = gsm8k::split_solution(completion);
    let _ = gsm8k::strip_calculator(completion);
    let _ = parse_answer(completion);
    // At most 26 choices, one letter each, as every reader of choices enforces.
    let choices: Vec<String> = gold.split('|').take(26).map(str::to_string).collect();
    let _ = answer::choice_letter(completion, &choices);
    let items = [
        csqa::item(gold, gold, &choices, completion.len() % choices.len()),
        gsm8k::item(gold, completion, gold),
        starling_tasks::Item {
            id: gold.to_string(),
            question: completion.to_string(),
            hinted_question: completion.to_string(),
            hint: gold.to_string(),
            gold: starling_tasks::item::canonical_answer(gold),
            answer_text: gold.to_string(),
            choices: choices.clone(),
            group: None,
        },
    ];
    for item in &items {
        for kind in [TaskKind::Arithmetic, TaskKind::Csqa, TaskKind::Gsm8k, TaskKind::Qa] {
            let _ = kind.is_correct(item, completion);
            let _ = kind.leaks_hint(item, completion);
            let _ = kind.rationale_is_sound(item, completion);
        }
    }
    // Written right, read right: a sum's worked answer, a number as GSM8K's answer line.
    let word = |i: usize| data.get(i..i + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let add = Addition { a: u64::from(word(0)), b: u64::from(word(4)) };
    let item = add.item();
    assert!(TaskKind::Arithmetic.is_correct(&item, &add.worked_answer()), "{add:?}");
    assert_eq!(add.scratchpad_is_sound(&add.worked_answer()), Some(true), "{add:?}");
    let n = word(8).to_string();
    let numeric = gsm8k::item("n", completion, &n);
    let written = TaskKind::Gsm8k.completion(&numeric, "Step by step.", PromptStyle::Rationale);
    assert!(TaskKind::Gsm8k.is_correct(&numeric, &written), "{written:?} for {n}");
}

/// Parses `text` as `T`; what parses is written and must read back the same (floats within an
/// ulp, as in [`hf_config`]).
fn round_trip<T: Serialize + DeserializeOwned>(text: &str) -> Option<T> {
    let value: T = serde_json::from_str(text).ok()?;
    let written = serde_json::to_string(&value).expect("serializable");
    let again: T = serde_json::from_str(&written).expect("what Starling writes, it reads");
    let (a, b) =
        (serde_json::to_value(&again).expect("serializable"), serde_json::to_value(&value).expect("serializable"));
    assert!(json_close(&a, &b), "round trip: {a} vs {b}");
    Some(value)
}

/// The JSON files of run folders (the first byte picks which): STaR's config, rows and records,
/// the trainer's state, Quiet-STaR's config and run config, the multi-hop task card.
pub fn run_json(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match which % 8 {
        0 => {
            if let Some(c) = round_trip::<starling_star::config::StarConfig>(&text) {
                let _ = c.validate();
            }
        }
        1 => {
            round_trip::<starling_star::report::IterationRow>(&text);
        }
        2 => {
            round_trip::<starling_star::attempt::RationaleRecord>(&text);
            let _ = starling_star::run::parse_records(&text);
        }
        3 => {
            round_trip::<starling_train::run_dir::TrainerState>(&text);
        }
        4 => {
            if let Some(c) = round_trip::<starling_quiet::QuietConfig>(&text) {
                let _ = c.validate();
            }
        }
        5 => {
            round_trip::<starling_quiet::trainer::QuietRunConfig>(&text);
        }
        6 => {
            if let Ok(card) = starling_tasks::hops::HopsCard::parse(&text) {
                let again = serde_json::to_string(&card).expect("serializable");
                assert_eq!(starling_tasks::hops::HopsCard::parse(&again), Ok(card));
            }
        }
        _ => {
            round_trip::<starling_star::evaluate::EvalResult>(&text);
        }
    }
}
