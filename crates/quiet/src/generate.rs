//! Thoughtful generation with a KV cache. For each new token: a thought of `n_thought` tokens
//! is generated from the real-prefix cache (start marker, sampled tokens, end marker), its cache
//! entries are dropped, the mixing head combines the post-thought and base predictions, and the
//! real token is sampled from the mix and appended to the cache.
//!
//! Per token this costs `n_thought + 2` thought steps plus one real step of single-token
//! decoding: the floor for thinking before every token.

use burn::tensor::Tensor;
use serde::Serialize;
use starling_model::cache::KvCache;
use starling_model::generate::{FinishReason, GenerateConfig, left_padded};
use starling_model::mask::{AttentionBias, positions};
use starling_model::sampling::{Sampler, SamplingConfig};
use starling_model::{ModelError, Tokenizer};

use crate::model::QuietModel;
use crate::{QuietError, Result};

/// One generated token with the thought that preceded it.
#[derive(Debug, Clone, Serialize)]
pub struct ThoughtToken {
    pub id: u32,
    /// The text this token adds.
    pub text: String,
    pub thought_ids: Vec<u32>,
    pub thought: String,
    /// Weight of the post-thought prediction in the mix (0 = base model only).
    pub mix_weight: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThoughtfulGeneration {
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<ThoughtToken>,
    /// Generated text, cut before any stop string.
    pub text: String,
    #[serde(skip)]
    pub finish: FinishReason,
}

/// Generates continuations of `prompts` with a thought before every token. `thought_temperature`
/// 0 samples thoughts greedily. `on_token(row, token)` sees every kept token.
pub fn generate_thoughtful(
    model: &QuietModel,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    thought_temperature: f64,
    on_token: &mut dyn FnMut(usize, &ThoughtToken),
) -> Result<Vec<ThoughtfulGeneration>> {
    cfg.sampling.validate()?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(QuietError::Input(format!("prompt {i} is empty; give at least one token of text")));
    }
    let c = model.lm.config().clone();
    if let Some(bad) = prompts.iter().flatten().find(|&&id| id as usize >= c.vocab_size) {
        return Err(ModelError::Input(format!("token id {bad} is outside the model's vocabulary ({})", c.vocab_size)).into());
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    model.check_length(longest + cfg.max_new_tokens)?;
    let device = model.device();
    device.seed(cfg.seed);
    let b = prompts.len();
    let d = model.hidden_size();
    let n_thought = model.config.n_thought;
    let (tokens, pad_left) = left_padded(prompts, c.pad_token_id.or(c.eos_token_id).unwrap_or(0), &device);

    let mut cache = KvCache::new(c.num_layers);
    let feed = |x: Tensor<3>, cache: &mut KvCache| -> Tensor<3> {
        let past = cache.len();
        let new = x.dims()[1];
        let pos = positions(&pad_left, past, new, &device);
        let bias = AttentionBias::causal(&pad_left, past, new, c.sliding_window, &device);
        model.lm.forward_embeds(x, &pos, &bias, Some(cache))
    };
    let hidden = feed(model.lm.embed(tokens), &mut cache);
    let mut h_last = hidden.narrow(1, longest - 1, 1); // [B, 1, d]

    let thought_cfg = SamplingConfig { temperature: thought_temperature as f32, ..SamplingConfig::greedy() };
    let thought_sampler = Sampler::new(&thought_cfg, c.vocab_size, &device);
    let sampler = Sampler::new(&cfg.sampling, c.vocab_size, &device);
    let marker = |end: bool| model.marker(end).reshape([1, 1, d]).expand([b, 1, d]);

    let mut rows: Vec<ThoughtfulGeneration> = prompts
        .iter()
        .map(|p| ThoughtfulGeneration { prompt_ids: p.clone(), tokens: Vec::new(), text: String::new(), finish: FinishReason::Length })
        .collect();
    let mut done = vec![false; b];
    let mut decoders: Vec<_> = (0..b).map(|_| tokenizer.stream_decoder(true)).collect();
    for step in 0..cfg.max_new_tokens {
        // Think from the real prefix, then forget the thought's cache entries.
        let prefix = cache.len();
        let mut h = feed(marker(false), &mut cache);
        let mut thought = Vec::with_capacity(n_thought);
        for _ in 0..n_thought {
            let t = thought_sampler.sample(model.lm.logits(h).reshape([b, c.vocab_size]));
            thought.push(t.clone().reshape([b, 1]));
            h = feed(model.lm.embed(t.reshape([b, 1])), &mut cache);
        }
        let h_post = feed(marker(true), &mut cache);
        cache.truncate(prefix);

        // Talk: mix, then sample the real token.
        let (mixed, w) = model.mix(h_last.clone().reshape([b, 1, 1, d]), h_post.reshape([b, 1, 1, d]));
        let next = sampler.sample(model.lm.logits(mixed.reshape([b, 1, d])).reshape([b, c.vocab_size]));
        let all = Tensor::cat(vec![next.clone().reshape([b, 1]), Tensor::cat(thought, 1)], 1);
        let host_ids: Vec<i64> = all.into_data().try_into_vec_as().expect("int ids");
        let host_w: Vec<f32> = w.reshape([b]).into_data().try_into_vec_as().expect("f32 weights");
        for r in 0..b {
            if done[r] {
                continue;
            }
            let row_ids = &host_ids[r * (n_thought + 1)..(r + 1) * (n_thought + 1)];
            let id = row_ids[0] as u32;
            if cfg.eos_ids.contains(&id) {
                rows[r].finish = FinishReason::Eos;
                done[r] = true;
                continue;
            }
            let thought_ids: Vec<u32> = row_ids[1..].iter().map(|&t| t as u32).collect();
            let text = decoders[r].push(id)?;
            let token = ThoughtToken { id, text, thought: tokenizer.decode(&thought_ids, true)?, thought_ids, mix_weight: host_w[r] };
            on_token(r, &token);
            rows[r].text.push_str(&token.text);
            rows[r].tokens.push(token);
            if let Some(cut) = cfg.stop_strings.iter().filter_map(|s| rows[r].text.find(s.as_str())).min() {
                rows[r].text.truncate(cut);
                rows[r].finish = FinishReason::StopString;
                done[r] = true;
            }
        }
        if done.iter().all(|&x| x) || step + 1 == cfg.max_new_tokens {
            break;
        }
        h_last = feed(model.lm.embed(next.reshape([b, 1])), &mut cache);
    }
    Ok(rows)
}
