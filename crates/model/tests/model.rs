//! The model's own consistency, on the CPU backend and on wgpu: KV-cached decoding equals a full
//! recompute, left-padded batches equal single prompts, saved folders reload identically, and
//! seeded sampling repeats.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};

use starling_model::ModelConfig;
use starling_model::Tokenizer;
use starling_model::batching::{ContinuousDecoder, generate_continuous};
use starling_model::cache::KvCache;
use starling_model::checkpoint::files::{hf_folder_files, open_checkpoint, save_hf_folder};
use starling_model::checkpoint::memory::open_from_memory;
use starling_model::generate::{GenerateConfig, decode_step, generate_after_prefix, generate_ids, prefill};
use starling_model::host::{Blocking, block_on};
use starling_model::prefix::SharedPrefix;
use starling_model::sampling::SamplingConfig;
use starling_model::weights::{init_transformer, load_transformer};

fn tiny_config() -> ModelConfig {
    ModelConfig::builder(40).layers(2).hidden(48).heads(6, 2).ffn(96).context(64).qkv_bias(true).build().unwrap()
}

/// A random model with its own LM head: a tied one mostly repeats its last input token.
fn untied_config() -> ModelConfig {
    let mut c = tiny_config();
    c.tie_word_embeddings = false;
    c
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn tokens(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]), device)
}

/// Logits of the last position from a full forward pass over `ids`.
fn full_last_logits(model: &starling_model::Transformer, ids: &[u32], device: &Device) -> Vec<f32> {
    let logits = model.forward(tokens(ids, device));
    to_vec(logits.narrow(1, ids.len() - 1, 1).reshape([1, model.config().vocab_size]))
}

fn cache_matches_recompute(device: Device) {
    let model = init_transformer(&tiny_config(), 1, &device).unwrap();
    let mut seq: Vec<u32> = vec![3, 17, 5, 9, 30];
    let mut cache = KvCache::new(model.config().num_layers);
    let mut logits = prefill(&model, tokens(&seq, &device), &[0], &mut cache, &device);
    for step in 0..6 {
        let cached = to_vec(logits.clone());
        let full = full_last_logits(&model, &seq, &device);
        assert!(max_diff(&cached, &full) < 1e-4, "step {step}: {}", max_diff(&cached, &full));
        let next = (step * 7 + 2) as u32 % 40;
        seq.push(next);
        logits = decode_step(&model, tokens(&[next], &device), &[0], &mut cache, &device);
    }
}

/// Slots appended after a point can be dropped (Quiet-STaR discards a thought's cache entries):
/// decoding after the truncation equals decoding without the detour.
fn cache_truncation_forgets_the_detour(device: Device) {
    let model = init_transformer(&tiny_config(), 8, &device).unwrap();
    let prompt = [9u32, 4, 22, 13];
    let mut straight = KvCache::new(2);
    prefill(&model, tokens(&prompt, &device), &[0], &mut straight, &device);
    let want = to_vec(decode_step(&model, tokens(&[5], &device), &[0], &mut straight, &device));
    let mut detour = KvCache::new(2);
    prefill(&model, tokens(&prompt, &device), &[0], &mut detour, &device);
    for t in [30, 31, 32] {
        decode_step(&model, tokens(&[t], &device), &[0], &mut detour, &device);
    }
    assert_eq!(detour.len(), 7);
    detour.truncate(4);
    let got = to_vec(decode_step(&model, tokens(&[5], &device), &[0], &mut detour, &device));
    assert!(max_diff(&want, &got) < 1e-5);
}

fn padded_batch_matches_single(device: Device) {
    let model = init_transformer(&tiny_config(), 2, &device).unwrap();
    let tok = Tokenizer::char_level("abcdefghijklmnopqrstuvwxyz0123456789", &[]).unwrap();
    let prompts: Vec<Vec<u32>> = vec![vec![4, 8, 15, 16, 23, 35], vec![7], vec![1, 2, 3]];
    let cfg = GenerateConfig { max_new_tokens: 8, ..GenerateConfig::default() };
    let batched = generate_ids(&model, &tok, &prompts, &cfg, &mut |_| {}).unwrap();
    for (p, b) in prompts.iter().zip(&batched) {
        let alone = generate_ids(&model, &tok, std::slice::from_ref(p), &cfg, &mut |_| {}).unwrap();
        assert_eq!(alone[0].ids, b.ids, "prompt {p:?}");
        assert_eq!(b.ids.len(), 8);
    }
    // And the cached logits of a padded row equal the unpadded forward.
    let mut cache = KvCache::new(2);
    let padded: Vec<u32> = [0, 0, 0].iter().chain(&prompts[2]).copied().collect();
    let two = Tensor::<2, Int>::from_data(
        TensorData::new(prompts[0].iter().chain(&padded).map(|&t| t as i64).collect(), [2, 6]),
        &device,
    );
    let logits = to_vec(prefill(&model, two, &[0, 3], &mut cache, &device));
    let v = model.config().vocab_size;
    let full = full_last_logits(&model, &prompts[2], &device);
    assert!(max_diff(&logits[v..], &full) < 1e-4);
}

fn save_and_reload(device: Device) {
    // Tied and untied LM heads, with and without projection biases.
    let mut untied = tiny_config();
    untied.tie_word_embeddings = false;
    untied.qkv_bias = false;
    untied.o_bias = true;
    untied.mlp_bias = true;
    for (i, config) in [tiny_config(), untied].into_iter().enumerate() {
        save_and_reload_one(&config, &device, i);
    }
}

fn save_and_reload_one(config: &ModelConfig, device: &Device, tag: usize) {
    let device = device.clone();
    let model = init_transformer(config, 3, &device).unwrap();
    let tok = Tokenizer::char_level("abc", &["<pad>"]).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "starling-save-{}-{:?}-{tag}",
        std::process::id(),
        std::thread::current().id()
    ));
    save_hf_folder(&dir, &model, &tok).unwrap();
    let ck = open_checkpoint(&dir, None).unwrap();
    assert_eq!(ck.config, *model.config());
    let (again, report) = load_transformer(&ck.config, ck.weights.as_ref(), &device).unwrap();
    assert!(report.unused.is_empty());
    let ids = [1, 2, 3, 4, 5];
    assert_eq!(full_last_logits(&model, &ids, &device), full_last_logits(&again, &ids, &device));
    // The same files handed over in memory (as the browser has them) load the same model.
    let files = hf_folder_files(&model, &tok).unwrap().into_iter().map(|(n, b)| (format!("picked/{n}"), b)).collect();
    let ck = open_from_memory(files).unwrap();
    let (in_memory, _) = load_transformer(&ck.config, ck.weights.as_ref(), &device).unwrap();
    assert_eq!(full_last_logits(&model, &ids, &device), full_last_logits(&in_memory, &ids, &device));
    // Saving again over the folder replaces it completely.
    save_hf_folder(&dir, &again, &tok).unwrap();
    assert!(open_checkpoint(&dir, None).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Device RNGs are process-wide, so the sampling tests must not interleave with each other.
static SAMPLING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded_sampling_repeats(device: Device) {
    let _guard = SAMPLING.lock().unwrap_or_else(|e| e.into_inner());
    let model = init_transformer(&tiny_config(), 4, &device).unwrap();
    let tok = Tokenizer::char_level("abcdefghijklmnopqrstuvwxyz0123456789", &[]).unwrap();
    let cfg = GenerateConfig {
        max_new_tokens: 12,
        sampling: SamplingConfig { temperature: 1.0, top_k: Some(20), top_p: Some(0.95), suppress: vec![] },
        seed: 42,
        ..GenerateConfig::default()
    };
    let prompts = vec![vec![5, 6, 7]; 3];
    let a = generate_ids(&model, &tok, &prompts, &cfg, &mut |_| {}).unwrap();
    let b = generate_ids(&model, &tok, &prompts, &cfg, &mut |_| {}).unwrap();
    assert_eq!(a.iter().map(|g| &g.ids).collect::<Vec<_>>(), b.iter().map(|g| &g.ids).collect::<Vec<_>>());
    // A random model samples different continuations for identical rows.
    assert!(a[0].ids != a[1].ids || a[1].ids != a[2].ids);
}

fn context_overflow_is_an_error(device: Device) {
    let model = init_transformer(&tiny_config(), 5, &device).unwrap();
    let tok = Tokenizer::char_level("ab", &[]).unwrap();
    let cfg = GenerateConfig { max_new_tokens: 10, ..GenerateConfig::default() };
    let err = generate_ids(&model, &tok, &[vec![1; 60]], &cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("exceeds the model's context of 64"), "{err}");
    let err = generate_ids(&model, &tok, &[vec![]], &cfg, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
}

/// Rows that continue a shared prefix, computed once and attended from its cache, decode as if
/// each prompt were run whole: the same logits up to rounding, the same greedy tokens — also
/// with a sliding window that moves past the prefix's start, and when a prompt leaves the
/// prefix early (only the part every prompt shares is used).
fn shared_prefix_matches_whole_prompts(device: Device) {
    for window in [None, Some(7)] {
        let mut config = tiny_config();
        config.sliding_window = window;
        let model = init_transformer(&config, 9, &device).unwrap();
        let prefix: Vec<u32> = vec![3, 17, 5, 9, 30, 11, 2, 8];
        let shared = SharedPrefix::compute(&model, prefix.clone()).unwrap();
        let suffixes: [&[u32]; 3] = [&[4, 8, 15], &[16], &[23, 35, 1, 2, 39]];
        let prompts: Vec<Vec<u32>> = suffixes.iter().map(|s| prefix.iter().chain(*s).copied().collect()).collect();

        // First-step logits and one decode step, row by row against a whole-prompt forward.
        let (tokens, pad) =
            starling_model::generate::left_padded(&suffixes.iter().map(|s| s.to_vec()).collect::<Vec<_>>(), 0, &device);
        let mut cache = KvCache::after_prefix(&shared);
        let logits = to_vec(prefill(&model, tokens, &pad, &mut cache, &device));
        let v = config.vocab_size;
        for (r, p) in prompts.iter().enumerate() {
            let d = max_diff(&logits[r * v..(r + 1) * v], &full_last_logits(&model, p, &device));
            assert!(d < 1e-4, "window {window:?}, row {r}: {d}");
        }
        let next = Tensor::<2, Int>::from_data(TensorData::new(vec![7i64, 7, 7], [3, 1]), &device);
        let logits = to_vec(decode_step(&model, next, &pad, &mut cache, &device));
        for (r, p) in prompts.iter().enumerate() {
            let whole: Vec<u32> = p.iter().copied().chain([7]).collect();
            let d = max_diff(&logits[r * v..(r + 1) * v], &full_last_logits(&model, &whole, &device));
            assert!(d < 1e-4, "window {window:?}, row {r} after one step: {d}");
        }

        // Generation: the same tokens with and without the prefix, including a prompt that
        // leaves the prefix after 5 tokens.
        let mut prompts = prompts;
        prompts.push(vec![3, 17, 5, 9, 30, 12, 12]);
        let tok = Tokenizer::char_level("abcdefghijklmnopqrstuvwxyz0123456789", &[]).unwrap();
        let cfg = GenerateConfig { max_new_tokens: 10, ..GenerateConfig::default() };
        let run = |prefix: Option<&SharedPrefix>| {
            block_on(generate_after_prefix(&model, &tok, &prompts, prefix, &cfg, &mut |_| {}, &mut Blocking))
                .unwrap()
                .into_iter()
                .map(|g| g.ids)
                .collect::<Vec<_>>()
        };
        let (plain, cached) = (run(None), run(Some(&shared)));
        assert_eq!(plain, cached, "window {window:?}");
        assert!(plain.iter().all(|ids| ids.len() == 10));
        assert_eq!(shared.usable_len(&prompts), 5);
    }
}

/// Prompts of several lengths with rows that end at different steps, so that finished rows are
/// refilled, the batch grows its padding for a longer newcomer and sheds rows at the end.
fn varied_prompts() -> (Vec<u32>, Vec<Vec<u32>>) {
    let prefix: Vec<u32> = vec![3, 17, 5, 9, 30, 11];
    let suffixes: [&[u32]; 7] = [
        &[4, 8, 15],
        &[16],
        &[23, 35, 1, 2, 39, 6, 6, 7, 12],
        &[2, 2],
        &[38, 1, 9, 27],
        &[5],
        &[30, 31, 32, 33, 34, 35],
    ];
    (prefix.clone(), suffixes.iter().map(|s| prefix.iter().chain(*s).copied().collect()).collect())
}

/// Continuous batching writes what one static batch writes (greedy), whatever the number of
/// rows, with and without a shared prefix.
fn continuous_batching_matches_static(device: Device) {
    let model = init_transformer(&untied_config(), 12, &device).unwrap();
    let tok = Tokenizer::char_level("abcdefghijklmnopqrstuvwxyz0123456789", &[]).unwrap();
    let (prefix, prompts) = varied_prompts();
    // Several end-of-text ids, so the rows of a random model end at different steps.
    let cfg = GenerateConfig { max_new_tokens: 9, eos_ids: vec![2, 8, 15], ..GenerateConfig::default() };
    let want: Vec<Vec<u32>> =
        generate_ids(&model, &tok, &prompts, &cfg, &mut |_| {}).unwrap().into_iter().map(|g| g.ids).collect();
    let lengths: std::collections::BTreeSet<usize> = want.iter().map(Vec::len).collect();
    assert!(lengths.len() >= 3, "rows should end at different steps: {want:?}");
    let shared = SharedPrefix::compute(&model, prefix).unwrap();
    for rows in [1, 2, 3, 7, 10] {
        for prefix in [None, Some(&shared)] {
            let mut seen = vec![0; prompts.len()];
            let got = block_on(generate_continuous(
                &model,
                &tok,
                &prompts,
                prefix,
                &cfg,
                rows,
                &mut |t| seen[t.row] += 1,
                &mut Blocking,
            ))
            .unwrap();
            let got: Vec<Vec<u32>> = got.into_iter().map(|g| g.ids).collect();
            assert_eq!(got, want, "{rows} rows, prefix {}", prefix.is_some());
            assert_eq!(seen, want.iter().map(Vec::len).collect::<Vec<_>>(), "token events per prompt");
        }
    }
    // Padding no row needs is dropped, and finished rows leave: the batch never holds more
    // slots than its longest prompt's own part plus the token budget.
    let mut decoder = ContinuousDecoder::new(&model, &tok, &prompts, Some(&shared), &cfg, 3).unwrap();
    let bound = prompts.iter().map(|p| p.len() - shared.len()).max().unwrap() + cfg.max_new_tokens;
    let mut rows_seen = Vec::new();
    while !decoder.finished() {
        assert!(decoder.slots() <= bound, "{} slots > {bound}", decoder.slots());
        rows_seen.push(decoder.batch_rows());
        let ids: Vec<i64> = decoder.propose().into_data().try_into_vec_as().unwrap();
        decoder.accept(&ids, &mut |_| {}).unwrap();
    }
    assert_eq!(rows_seen[0], 3);
    assert!(rows_seen.last() < Some(&3), "rows leave at the end: {rows_seen:?}");
}

/// Sampled continuous batching: a prompt's text depends on the seed and the prompt alone, not
/// on how many rows decode at once or which prompts share its batch.
fn continuous_sampling_is_per_prompt(device: Device) {
    let model = init_transformer(&untied_config(), 13, &device).unwrap();
    let tok = Tokenizer::char_level("abcdefghijklmnopqrstuvwxyz0123456789", &[]).unwrap();
    let (_, prompts) = varied_prompts();
    let cfg = GenerateConfig {
        max_new_tokens: 8,
        sampling: SamplingConfig { temperature: 1.0, top_k: Some(12), top_p: None, suppress: vec![] },
        eos_ids: vec![0, 7],
        seed: 5,
        ..GenerateConfig::default()
    };
    let run = |prompts: &[Vec<u32>], rows: usize, seed: u64| {
        let cfg = GenerateConfig { seed, ..cfg.clone() };
        block_on(generate_continuous(&model, &tok, prompts, None, &cfg, rows, &mut |_| {}, &mut Blocking))
            .unwrap()
            .into_iter()
            .map(|g| g.ids)
            .collect::<Vec<_>>()
    };
    let all = run(&prompts, 7, 5);
    assert_eq!(run(&prompts, 1, 5), all);
    assert_eq!(run(&prompts, 3, 5), all);
    assert_ne!(run(&prompts, 3, 6), all, "another seed draws other tokens");
    // Identical prompts still draw independently (their seeds differ by index).
    let same = run(&vec![prompts[0].clone(); 4], 4, 5);
    assert!(same.iter().any(|ids| ids != &same[0]), "{same:?}");
}

/// A checkpoint split across two safetensors shards with an index, as large models ship.
#[test]
fn sharded_folder_loads_like_a_single_file() {
    use starling_model::checkpoint::safetensors::serialize_f32;
    use starling_model::weights::export_tensors;
    use std::collections::{BTreeMap, HashMap};
    let device = common::cpu();
    let model = init_transformer(&tiny_config(), 6, &device).unwrap();
    let tok = Tokenizer::char_level("abc", &[]).unwrap();
    let dir = std::env::temp_dir().join(format!("starling-sharded-{}", std::process::id()));
    save_hf_folder(&dir, &model, &tok).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let tensors = export_tensors(&model);
    let (first, second): (BTreeMap<_, _>, BTreeMap<_, _>) =
        tensors.into_iter().partition(|(name, _)| name.contains("layers.0") || name.contains("embed"));
    let mut index = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", &first), ("model-00002-of-00002.safetensors", &second)] {
        std::fs::write(dir.join(file), serialize_f32(part, HashMap::new()).unwrap()).unwrap();
        for name in part.keys() {
            index.insert(name.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": index});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let ck = open_checkpoint(&dir, None).unwrap();
    let (again, _) = load_transformer(&ck.config, ck.weights.as_ref(), &device).unwrap();
    let ids = [3, 1, 4, 1, 5];
    assert_eq!(full_last_logits(&model, &ids, &device), full_last_logits(&again, &ids, &device));
    // A missing shard is named.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let err = open_checkpoint(&dir, None).err().unwrap().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors") && err.contains("incomplete"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A weight that is NaN or infinite is refused at load, naming the tensor, the count and the
/// first bad value.
#[test]
fn a_model_with_non_finite_weights_is_refused_by_name() {
    use starling_model::checkpoint::safetensors::serialize_f32;
    use starling_model::weights::export_tensors;
    use std::collections::HashMap;
    let device = common::cpu();
    let model = init_transformer(&tiny_config(), 8, &device).unwrap();
    let tok = Tokenizer::char_level("abc", &[]).unwrap();
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
        let mut tensors = export_tensors(&model);
        let w = tensors.get_mut("model.layers.1.mlp.up_proj.weight").unwrap();
        w.data[5] = bad;
        w.data[9] = bad;
        let dir = std::env::temp_dir().join(format!("starling-nonfinite-{}-{shown}", std::process::id()));
        save_hf_folder(&dir, &model, &tok).unwrap();
        std::fs::write(dir.join("model.safetensors"), serialize_f32(&tensors, HashMap::new()).unwrap()).unwrap();
        let ck = open_checkpoint(&dir, None).unwrap();
        let err = load_transformer(&ck.config, ck.weights.as_ref(), &device).err().unwrap().to_string();
        assert!(
            err.contains("model.layers.1.mlp.up_proj.weight")
                && err.contains("holds 2 NaN or infinite")
                && err.contains(&format!("index 5: {shown}")),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A tiny model saved as a Hugging Face folder in the temp folder, for tests that damage it.
fn tiny_folder(tag: &str) -> std::path::PathBuf {
    let model = init_transformer(&tiny_config(), 8, &common::cpu()).unwrap();
    let dir = std::env::temp_dir().join(format!("starling-{tag}-{}", std::process::id()));
    save_hf_folder(&dir, &model, &Tokenizer::char_level("abc", &[]).unwrap()).unwrap();
    dir
}

/// Hostile tokenizer files are refused before they cost memory or reach the weights: one whose
/// ids run past the model's embedding (a 4-billion id), and one far bigger than any tokenizer.
#[test]
fn tokenizers_that_do_not_fit_the_model_are_refused() {
    let dir = tiny_folder("huge-vocab");
    assert!(open_checkpoint(&dir, None).is_ok());
    let tok = dir.join("tokenizer.json");
    let huge_id = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"a":0,"b":3999999999},"unk_token":"a"}}"#;
    std::fs::write(&tok, huge_id).unwrap();
    let err = open_checkpoint(&dir, None).err().unwrap().to_string();
    assert!(err.contains("token ids up to 3999999999") && err.contains("vocabulary has"), "{err}");
    // A 300 MiB tokenizer.json (sparse: no disk used) is refused from its size alone.
    std::fs::File::create(&tok).unwrap().set_len(300 << 20).unwrap();
    let err = open_checkpoint(&dir, None).err().unwrap().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("is 300.0 MiB") && err.contains("without reading"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A zip-bomb-like safetensors header — a header length of 2⁶² bytes, or a tensor claiming
/// 2⁶² values in a 16-byte file — is refused from the header, before anything is allocated.
#[test]
fn safetensors_headers_claiming_huge_sizes_are_refused() {
    let dir = tiny_folder("bomb");
    let weights = dir.join("model.safetensors");
    let with_header = |len: u64, header: &str| [&len.to_le_bytes()[..], header.as_bytes(), &[0u8; 16]].concat();
    std::fs::write(&weights, with_header(1 << 62, "{}")).unwrap();
    let err = open_checkpoint(&dir, None).err().unwrap().to_string();
    assert!(err.contains("model.safetensors") && err.contains("not a valid safetensors file"), "{err}");
    let header =
        r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,16]}}"#;
    std::fs::write(&weights, with_header(header.len() as u64, header)).unwrap();
    let err = open_checkpoint(&dir, None).err().unwrap().to_string();
    assert!(err.contains("model.safetensors") && err.contains("not a valid safetensors file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `save_hf_folder` writes has the names, shapes and config keys of a folder written by
/// transformers itself (the shared SmolLM2 folder), so transformers can load it back.
#[test]
fn saved_folder_has_the_transformers_layout() {
    let src = common::shared().join("models/smollm2-135m-instruct-4layer-hf");
    let device = common::cpu();
    let ck = open_checkpoint(&src, None).unwrap();
    let (model, _) = load_transformer(&ck.config, ck.weights.as_ref(), &device).unwrap();
    let out = std::env::temp_dir().join(format!("starling-resave-{}", std::process::id()));
    save_hf_folder(&out, &model, &ck.tokenizer).unwrap();
    let again = open_checkpoint(&out, None).unwrap();
    let mut original = ck.weights.names();
    let mut saved = again.weights.names();
    original.sort();
    saved.sort();
    assert_eq!(original, saved);
    for name in &original {
        assert_eq!(ck.weights.shape(name), again.weights.shape(name), "{name}");
    }
    // Values survive exactly (f16 → f32 is exact, and we store f32).
    let name = "model.layers.2.self_attn.k_proj.weight";
    assert_eq!(ck.weights.load(name).unwrap(), again.weights.load(name).unwrap());
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let ours: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    for key in [
        "architectures",
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "tie_word_embeddings",
        "rms_norm_eps",
        "max_position_embeddings",
    ] {
        assert_eq!(ours[key], theirs[key], "config key {key}");
    }
    assert_eq!(ours["rope_theta"], theirs["rope_parameters"]["rope_theta"]);
    let header_len = {
        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        String::from_utf8(bytes[8..8 + n].to_vec()).unwrap()
    };
    assert!(header_len.contains("\"format\":\"pt\""), "transformers expects format=pt metadata");
    std::fs::remove_dir_all(&out).unwrap();
}

macro_rules! on_both_devices {
    ($($name:ident),*) => {
        mod cpu { $( #[test] fn $name() { super::$name(super::common::cpu()) } )* }
        mod wgpu { $( #[test] fn $name() { super::$name(super::common::wgpu()) } )* }
    };
}

on_both_devices!(
    cache_matches_recompute,
    cache_truncation_forgets_the_detour,
    padded_batch_matches_single,
    save_and_reload,
    seeded_sampling_repeats,
    context_overflow_is_an_error,
    shared_prefix_matches_whole_prompts,
    continuous_batching_matches_static,
    continuous_sampling_is_per_prompt
);
