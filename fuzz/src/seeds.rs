//! Seeds written by Starling's own writers, so every target starts from inputs that reach deep:
//! a tiny llama GGUF with a tokenizer (BPE and SentencePiece) and a tensor of every block type,
//! safetensors, `config.json`, a model's files framed for the `memory` target, task lines and
//! run-folder JSON. Real files (data lines, a real config.json, the start of a real GGUF) are
//! committed beside them in `fuzz/seeds/`.

use std::collections::{BTreeMap, HashMap};

use starling_model::checkpoint::HostTensor;
use starling_model::checkpoint::gguf::{MetaValue, write_gguf};
use starling_model::checkpoint::quant::GgmlType;
use starling_model::checkpoint::safetensors::serialize_f32;
use starling_model::{ModelConfig, Tokenizer};

use crate::frame_files;
use crate::mutate::Rng;

/// (target, name, bytes).
pub type Seed = (&'static str, String, Vec<u8>);

const BLOCK_TYPES: [GgmlType; 13] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q3K,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// The GGML type id of `ty`.
fn type_id(ty: GgmlType) -> u8 {
    (0..64u8).find(|&i| GgmlType::from_id(u32::from(i)) == Ok(ty)).expect("every block type has an id")
}

/// `n` bytes of noise whose f16 scales stay small (no inf/NaN seeds: the mutator adds those).
fn noise(n: usize, rng: &mut Rng) -> Vec<u8> {
    (0..n).map(|_| (rng.next_u64() as u8) & 0x3f).collect()
}

fn strs(v: &[&str]) -> MetaValue {
    MetaValue::Array(v.iter().map(|s| MetaValue::Str((*s).to_string())).collect())
}

/// A tiny llama GGUF: architecture metadata, a tokenizer of `model` ("gpt2" or "llama"), and
/// `tensors` as (name, type, shape).
fn tiny_gguf(model: &str, tensors: &[(&str, GgmlType, Vec<usize>)], rng: &mut Rng) -> Vec<u8> {
    let tokens = ["<unk>", "<s>", "</s>", "a", "b", "ab", "▁", "▁a", "Ġ", "Ġa"];
    let mut meta = vec![
        ("general.architecture", MetaValue::Str("llama".into())),
        ("general.alignment", MetaValue::U64(32)),
        ("llama.embedding_length", MetaValue::U64(8)),
        ("llama.feed_forward_length", MetaValue::U64(16)),
        ("llama.block_count", MetaValue::U64(1)),
        ("llama.attention.head_count", MetaValue::U64(2)),
        ("llama.attention.head_count_kv", MetaValue::U64(1)),
        ("llama.context_length", MetaValue::U64(64)),
        ("llama.rope.freq_base", MetaValue::F64(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", MetaValue::F64(1e-5)),
        ("tokenizer.ggml.model", MetaValue::Str(model.into())),
        ("tokenizer.ggml.tokens", strs(&tokens)),
        ("tokenizer.ggml.bos_token_id", MetaValue::U64(1)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U64(2)),
    ];
    if model == "gpt2" {
        meta.push(("tokenizer.ggml.merges", strs(&["a b", "Ġ a"])));
        meta.push(("tokenizer.ggml.pre", MetaValue::Str("smollm".into())));
    } else {
        let scores = (0..tokens.len()).map(|i| MetaValue::F64(-(i as f64))).collect();
        meta.push(("tokenizer.ggml.scores", MetaValue::Array(scores)));
        let types = [2i64, 3, 3, 1, 1, 1, 1, 1, 1, 1].into_iter().map(MetaValue::I64).collect();
        meta.push(("tokenizer.ggml.token_type", MetaValue::Array(types)));
    }
    let data: Vec<(&str, GgmlType, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, ty, shape)| {
            let n: usize = shape.iter().product();
            (*name, *ty, shape.clone(), noise(ty.bytes_for(n).expect("whole blocks"), rng))
        })
        .collect();
    write_gguf(&meta, &data)
}

fn tiny_tensors() -> BTreeMap<String, HostTensor> {
    let t = |shape: Vec<usize>| {
        let n = shape.iter().product::<usize>();
        HostTensor::new(shape, (0..n).map(|i| i as f32 / 10.0).collect())
    };
    BTreeMap::from([
        ("model.embed_tokens.weight".to_string(), t(vec![10, 8])),
        ("model.norm.weight".to_string(), t(vec![8])),
    ])
}

/// Every synthetic seed.
pub fn synthetic() -> Vec<Seed> {
    let mut rng = Rng::new(7);
    let mut seeds: Vec<Seed> = Vec::new();

    // GGUF: a model in each tokenizer flavour; a tensor of every block type.
    let model_tensors = [
        ("token_embd.weight", GgmlType::F32, vec![10, 8]),
        ("output_norm.weight", GgmlType::F16, vec![8]),
        ("blk.0.attn_q.weight", GgmlType::Q8_0, vec![8, 32]),
    ];
    let gpt2 = tiny_gguf("gpt2", &model_tensors, &mut rng);
    let llama = tiny_gguf("llama", &model_tensors, &mut rng);
    seeds.push(("gguf", "tiny-gpt2.gguf".into(), gpt2.clone()));
    seeds.push(("gguf", "tiny-llama.gguf".into(), llama.clone()));
    for ty in BLOCK_TYPES {
        let per_block = ty.block().0;
        let name = format!("{ty:?}");
        let shape = vec![2, per_block.max(8)];
        let gguf =
            tiny_gguf("llama", &[("token_embd.weight", GgmlType::F32, vec![10, 8]), (&name, ty, shape)], &mut rng);
        seeds.push(("gguf", format!("block-{name}.gguf"), gguf));
        let bytes = ty.block().1 * 2;
        let mut q = vec![type_id(ty)];
        q.extend(noise(bytes, &mut rng));
        seeds.push(("quant", format!("{name}.bin"), q));
    }

    // safetensors, config.json, and a model's files framed for `memory`.
    let safetensors = serialize_f32(&tiny_tensors(), HashMap::from([("format".to_string(), "pt".to_string())]))
        .expect("serializable");
    seeds.push(("safetensors", "tiny.safetensors".into(), safetensors.clone()));
    let tokenizer = Tokenizer::char_level("ab0123456789+= ", &["<pad>", "<s>", "</s>"]).expect("tokenizer");
    let config = ModelConfig::builder(tokenizer.vocab_size())
        .layers(1)
        .hidden(8)
        .heads(2, 1)
        .context(64)
        .special_tokens(&tokenizer)
        .build()
        .expect("config");
    let config_json = config.to_hf_json().to_string();
    seeds.push(("hf_config", "tiny-config.json".into(), config_json.clone().into_bytes()));
    let tokenizer_json = tokenizer.to_json().expect("tokenizer JSON");
    let index = r#"{"metadata": {}, "weight_map": {"model.embed_tokens.weight": "model-1.safetensors", "model.norm.weight": "model-1.safetensors"}}"#;
    seeds.push((
        "memory",
        "hf-folder.bin".into(),
        frame_files(&[
            ("config.json", config_json.as_bytes()),
            ("tokenizer.json", tokenizer_json.as_bytes()),
            ("model.safetensors", &safetensors),
        ]),
    ));
    seeds.push((
        "memory",
        "sharded.bin".into(),
        frame_files(&[
            ("config.json", config_json.as_bytes()),
            ("tokenizer.json", tokenizer_json.as_bytes()),
            ("model.safetensors.index.json", index.as_bytes()),
            ("model-1.safetensors", &safetensors),
        ]),
    ));
    seeds.push(("memory", "gguf.bin".into(), frame_files(&[("model.gguf", &gpt2)])));

    // Task lines, answers, run-folder JSON.
    for (name, text) in [
        (
            "csqa.jsonl",
            r#"{"id": "q1", "question": {"stem": "Where is a seat?", "choices": [{"label": "A", "text": "theater"}, {"label": "B", "text": "car"}]}, "answerKey": "A"}"#,
        ),
        (
            "gsm8k.jsonl",
            "{\"question\": \"Tom has 3 apples and buys 4. How many?\", \"answer\": \"3 + 4 = <<3+4=7>>7\\n#### 7\"}",
        ),
        ("qa.jsonl", r#"{"question": "2+2?", "answer": "4", "rationale": "two and two"}"#),
    ] {
        seeds.push(("task_jsonl", name.into(), text.as_bytes().to_vec()));
    }
    for (name, text) in [
        ("sum.txt", "<scratch>\n1 2 + 3 4 , C: 0\n1 + 3 , 6 C: 0\n, 4 6 C: 0\n0 4 6\n</scratch>\n4 6\n\u{0}12+34"),
        ("choice.txt", "The answer is (b) theater.\u{0}kitchen|theater|car"),
        ("number.txt", "So 3 + 4 = 7.\n#### 7\u{0}7"),
    ] {
        seeds.push(("answers", name.into(), text.as_bytes().to_vec()));
    }
    let run_files: [(u8, &str, String); 4] = [
        (4, "quiet_config.json", serde_json::to_string(&starling_quiet::QuietConfig::default()).expect("JSON")),
        (3, "trainer_state.json", r#"{"step": 10, "optimizer_steps": 10}"#.into()),
        (6, "hops.json", r#"{"task": {"symbols": 8, "max_hops": 6}, "queries": 8}"#.into()),
        (2, "rationales.jsonl", r#"{"id": "1+2", "outcome": "kept", "completion": "3", "answer": "3"}"#.into()),
    ];
    for (which, name, text) in run_files {
        let mut bytes = vec![which];
        bytes.extend(text.as_bytes());
        seeds.push(("run_json", name.into(), bytes));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_and_the_model_seeds_load() {
        let seeds = synthetic();
        for (target, _) in crate::TARGETS {
            if target != "gguf_tokenizer" {
                assert!(seeds.iter().any(|s| s.0 == target), "no seed for {target}");
            }
        }
        // The seeds reach deep: they parse, and the framed folders open.
        for (target, name, bytes) in &seeds {
            match *target {
                "memory" => {
                    let files = crate::unframe_files(bytes);
                    assert!(starling_model::checkpoint::memory::open_from_memory(files).is_ok(), "{name}");
                }
                "gguf" => {
                    let file = starling_model::checkpoint::gguf::GgufFile::parse(
                        name.into(),
                        starling_model::checkpoint::FileBytes::Owned(bytes.clone()),
                    );
                    assert!(file.is_ok(), "{name}");
                }
                _ => {}
            }
        }
    }
}
