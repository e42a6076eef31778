//! Parity with Hugging Face transformers on SmolLM2-135M-Instruct: the reference JSON files in
//! `shared/reference` hold transformers' token ids, per-token log-probs, last-position top-5 and
//! greedy continuations for six prompts. Checked for the 4-layer HF folder and the full 30-layer
//! GGUF, on the CPU backend and on wgpu.

mod common;

use std::path::Path;

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

use starling_model::checkpoint::files::open_checkpoint;
use starling_model::generate::{GenerateConfig, generate_ids};
use starling_model::score::token_logprobs;
use starling_model::weights::load_transformer;

const LOGPROB_TOL: f32 = 2e-3;
/// Greedy steps are compared while transformers' top-1/top-2 logit margin exceeds this.
const MARGIN: f64 = 0.01;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn check(model_path: &Path, reference: &str, device: &Device) {
    let shared = common::shared();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(shared.join("reference").join(reference)).unwrap()).unwrap();
    let ck = open_checkpoint(model_path, None).unwrap();
    let (model, _) = load_transformer(&ck.config, ck.weights.as_ref(), device).unwrap();
    let prompts = reference["prompts"].as_array().unwrap();
    let mut seqs = Vec::new();
    for p in prompts {
        // The tokenizer built from the checkpoint gives transformers' ids.
        let text = p["prompt"].as_str().unwrap();
        let ours = ck.tokenizer.encode(text, true).unwrap();
        assert_eq!(ours, ids(&p["input_ids"]), "token ids of {text:?}");
        seqs.push(ours);
    }

    // Per-token log-probs, all prompts in one right-padded batch.
    let lps = token_logprobs(&model, &seqs).unwrap();
    for (p, lp) in prompts.iter().zip(&lps) {
        let expected = floats(&p["next_token_logprobs"]);
        assert_eq!(lp.len(), expected.len());
        for (i, (a, b)) in lp.iter().zip(&expected).enumerate() {
            assert!(
                (a - *b as f32).abs() <= LOGPROB_TOL,
                "{:?} token {i}: log-prob {a} vs transformers {b}",
                p["prompt"].as_str().unwrap()
            );
        }
    }

    // Top-5 at the last position.
    for (p, s) in prompts.iter().zip(&seqs) {
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(s.iter().map(|&t| t as i64).collect(), [1, s.len()]), device);
        let logits = model.forward(tokens).narrow(1, s.len() - 1, 1).reshape([1, ck.config.vocab_size]);
        let logp = burn::tensor::activation::log_softmax(logits, 1);
        let (vals, idx) = logp.topk_with_indices(5, 1);
        let idx: Vec<i64> = idx.into_data().try_into_vec_as::<i64>().unwrap();
        let vals: Vec<f32> = vals.into_data().try_into_vec_as::<f32>().unwrap();
        let last = &p["last_position"];
        let want: Vec<i64> = ids(&last["top5_ids"]).into_iter().map(|x| x as i64).collect();
        assert_eq!(idx, want, "top-5 ids of {:?}", p["prompt"].as_str().unwrap());
        for (a, b) in vals.iter().zip(floats(&last["top5_logprobs"])) {
            assert!((a - b as f32).abs() <= LOGPROB_TOL, "top-5 log-prob {a} vs {b}");
        }
    }

    // Greedy continuation, all prompts batched (left-padded, KV-cached).
    let n_new = prompts[0]["greedy"]["n_new"].as_u64().unwrap() as usize;
    let cfg = GenerateConfig { max_new_tokens: n_new, ..GenerateConfig::default() };
    let out = generate_ids(&model, &ck.tokenizer, &seqs, &cfg, &mut |_| {}).unwrap();
    let mut compared = 0;
    for (p, g) in prompts.iter().zip(&out) {
        let want = ids(&p["greedy"]["ids"]);
        let margins = floats(&p["greedy"]["top1_minus_top2_logit_margin"]);
        for k in 0..n_new {
            if margins[k] <= MARGIN {
                break;
            }
            assert_eq!(
                g.ids[k],
                want[k],
                "greedy step {k} of {:?}: {:?} vs {:?}",
                p["prompt"].as_str().unwrap(),
                g.ids,
                want
            );
            compared += 1;
        }
    }
    // Most steps are confident; a bug could not hide behind low margins.
    assert!(compared >= prompts.len() * n_new / 2, "only {compared} greedy steps were compared");
}

fn hf_folder() -> std::path::PathBuf {
    common::shared().join("models/smollm2-135m-instruct-4layer-hf")
}

fn gguf() -> std::path::PathBuf {
    common::shared().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn hf_folder_matches_transformers_on_cpu() {
    check(&hf_folder(), "smollm2-135m-instruct-4layer-hf.json", &common::cpu());
}

#[test]
fn hf_folder_matches_transformers_on_wgpu() {
    check(&hf_folder(), "smollm2-135m-instruct-4layer-hf.json", &common::wgpu());
}

#[test]
fn gguf_matches_transformers_on_cpu() {
    check(&gguf(), "smollm2-135m-instruct.json", &common::cpu());
}

#[test]
fn gguf_matches_transformers_on_wgpu() {
    check(&gguf(), "smollm2-135m-instruct.json", &common::wgpu());
}
