//! Thoughtful generation with a KV cache. For each new token: a thought of `n_thought` tokens
//! is generated from the real-prefix cache (start marker, sampled tokens, end marker), its cache
//! entries are dropped, the mixing head combines the post-thought and base predictions, and the
//! real token is sampled from the mix and appended to the cache.
//!
//! Per token this costs `n_thought + 2` thought steps plus one real step of single-token
//! decoding: the floor for thinking before every token.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData, Transaction};
use serde::Serialize;
use starling_model::Tokenizer;
use starling_model::cache::KvCache;
use starling_model::generate::{FinishReason, GenerateConfig, RowText, check_prompts, left_padded};
use starling_model::mask::{AttentionBias, positions};
use starling_model::sampling::{Sampler, SamplingConfig};

use crate::Result;
use crate::model::QuietModel;

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
    /// How much the thought helped this token: log p(token) from the mix minus from the base
    /// model alone (natural log, at temperature 1).
    pub logp_gain: f32,
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
    let thought_cfg = ThoughtfulDecoder::thought_sampling(thought_temperature);
    let Some(mut decoder) = ThoughtfulDecoder::new(model, tokenizer, prompts, cfg, &thought_cfg)? else {
        return Ok(Vec::new());
    };
    while !decoder.finished() {
        let (ids, scores) = decoder.propose();
        // One read-back per token for both results.
        let [ids, scores]: [TensorData; 2] =
            Transaction::default().register(ids).register(scores).execute().try_into().expect("two results");
        let ids: Vec<i64> = ids.try_into_vec_as().expect("int ids");
        let scores: Vec<f32> = scores.try_into_vec_as().expect("f32 scores");
        for (row, token) in decoder.accept(&ids, &scores)? {
            on_token(row, &token);
        }
    }
    Ok(decoder.into_generations())
}

/// Thoughtful decoding one token at a time, with the host reads left to the caller: natively
/// they are synchronous ([`generate_thoughtful`]); on WebGPU in the browser they must be awaited.
/// `propose` thinks and samples on the device; `accept` takes the host copies of its results.
pub struct ThoughtfulDecoder<'a> {
    model: &'a QuietModel,
    tokenizer: &'a Tokenizer,
    cfg: &'a GenerateConfig,
    pad_left: Vec<usize>,
    cache: KvCache,
    /// Base hidden state that predicts the next token, `[B, 1, d]`.
    h_last: Tensor<3>,
    /// The token sampled by the last `propose`, `[B]`.
    next: Option<Tensor<1, Int>>,
    thought_sampler: Sampler<'a>,
    sampler: Sampler<'a>,
    prompts: Vec<Vec<u32>>,
    rows: Vec<ThoughtRow<'a>>,
    steps: usize,
}

/// One row's tokens with their thoughts, and its text.
struct ThoughtRow<'t> {
    tokens: Vec<ThoughtToken>,
    text: RowText<'t>,
}

impl<'a> ThoughtfulDecoder<'a> {
    /// How thoughts are sampled: at `temperature` (0: greedy), nothing else.
    pub fn thought_sampling(temperature: f64) -> SamplingConfig {
        SamplingConfig { temperature: temperature as f32, ..SamplingConfig::greedy() }
    }

    /// Checks the prompts and runs them through the model (prefill). `None` for no prompts.
    /// `thought_cfg` samples the thoughts (see [`thought_sampling`](Self::thought_sampling)).
    pub fn new(
        model: &'a QuietModel,
        tokenizer: &'a Tokenizer,
        prompts: &[Vec<u32>],
        cfg: &'a GenerateConfig,
        thought_cfg: &'a SamplingConfig,
    ) -> Result<Option<Self>> {
        cfg.sampling.validate()?;
        if prompts.is_empty() {
            return Ok(None);
        }
        let c = model.lm.config();
        let longest = check_prompts(prompts, c.vocab_size)?;
        model.check_length(longest + cfg.max_new_tokens)?;
        let device = model.device();
        device.seed(cfg.seed);
        let b = prompts.len();
        let (tokens, pad_left) = left_padded(prompts, c.pad_id(), &device);
        thought_cfg.validate()?;
        let mut decoder = Self {
            model,
            tokenizer,
            cfg,
            pad_left,
            cache: KvCache::new(c.num_layers),
            h_last: Tensor::zeros([b, 1, model.hidden_size()], &device),
            next: None,
            thought_sampler: Sampler::new(thought_cfg, c.vocab_size, &device),
            sampler: Sampler::new(&cfg.sampling, c.vocab_size, &device),
            prompts: prompts.to_vec(),
            rows: (0..b).map(|_| ThoughtRow { tokens: Vec::new(), text: RowText::new(tokenizer) }).collect(),
            steps: 0,
        };
        let hidden = decoder.feed(model.lm.embed(tokens));
        decoder.h_last = hidden.narrow(1, longest - 1, 1);
        Ok(Some(decoder))
    }

    /// Feeds embeddings `[B, n, d]` after the cached slots; returns their hidden states.
    fn feed(&mut self, x: Tensor<3>) -> Tensor<3> {
        let device = x.device();
        let (past, new) = (self.cache.len(), x.dims()[1]);
        let pos = positions(&self.pad_left, past, new, &device);
        let bias = AttentionBias::causal(&self.pad_left, past, new, self.model.lm.config().sliding_window, &device);
        self.model.lm.forward_embeds(x, &pos, &bias, Some(&mut self.cache))
    }

    pub fn finished(&self) -> bool {
        self.steps >= self.cfg.max_new_tokens || self.rows.iter().all(|r| r.text.finished())
    }

    /// Thinks from the real prefix (the thought's cache entries are dropped afterwards), mixes,
    /// and samples every row's next token. Returns, on the device, `[B, 1 + n_thought]` ids (the
    /// token, then its thought) and scores `[B, 2]`: the mixing weight and the log-prob gain of
    /// the token (mix minus base).
    pub fn propose(&mut self) -> (Tensor<2, Int>, Tensor<2>) {
        let model = self.model;
        let (b, d, vocab) = (self.rows.len(), model.hidden_size(), model.lm.config().vocab_size);
        let marker = |end: bool| model.marker(end).reshape([1, 1, d]).expand([b, 1, d]);
        let prefix = self.cache.len();
        let mut h = self.feed(marker(false));
        let mut thought = Vec::with_capacity(model.config.n_thought);
        for _ in 0..model.config.n_thought {
            let t = self.thought_sampler.sample(model.lm.logits(h).reshape([b, vocab]));
            thought.push(t.clone().reshape([b, 1]));
            h = self.feed(model.lm.embed(t.reshape([b, 1])));
        }
        let h_post = self.feed(marker(true));
        self.cache.truncate(prefix);
        let (mixed, w) = model.mix(self.h_last.clone().reshape([b, 1, 1, d]), h_post.reshape([b, 1, 1, d]));
        let logits = model.lm.logits(mixed.reshape([b, 1, d])).reshape([b, vocab]);
        let next = self.sampler.sample(logits.clone());
        let base_logits = model.lm.logits(self.h_last.clone()).reshape([b, vocab]);
        let logp = |l: Tensor<2>| log_softmax(l, 1).gather(1, next.clone().reshape([b, 1]));
        let gain = logp(logits) - logp(base_logits);
        self.next = Some(next.clone());
        (
            Tensor::cat(vec![next.reshape([b, 1]), Tensor::cat(thought, 1)], 1),
            Tensor::cat(vec![w.reshape([b, 1]), gain], 1),
        )
    }

    /// Takes the host copies of [`propose`](Self::propose)'s results; returns the tokens kept
    /// this step as `(row, token)`, and feeds the sampled tokens unless decoding is over.
    pub fn accept(&mut self, ids: &[i64], scores: &[f32]) -> Result<Vec<(usize, ThoughtToken)>> {
        let n = self.model.config.n_thought + 1;
        let mut kept = Vec::new();
        for (r, row) in self.rows.iter_mut().enumerate() {
            if row.text.finished() {
                continue;
            }
            let row_ids = &ids[r * n..(r + 1) * n];
            let id = row_ids[0] as u32;
            let Some(text) = row.text.push(id, self.cfg)? else { continue };
            let thought_ids: Vec<u32> = row_ids[1..].iter().map(|&t| t as u32).collect();
            let (mix_weight, logp_gain) = (scores[2 * r], scores[2 * r + 1]);
            let token = ThoughtToken {
                id,
                text,
                thought: self.tokenizer.decode(&thought_ids, true)?,
                thought_ids,
                mix_weight,
                logp_gain,
            };
            row.tokens.push(token.clone());
            kept.push((r, token));
        }
        self.steps += 1;
        let next = self.next.take().expect("accept follows propose");
        if !self.finished() {
            let b = self.rows.len();
            self.h_last = self.feed(self.model.lm.embed(next.reshape([b, 1])));
        }
        Ok(kept)
    }

    pub fn into_generations(self) -> Vec<ThoughtfulGeneration> {
        self.rows
            .into_iter()
            .zip(self.prompts)
            .map(|(r, prompt_ids)| ThoughtfulGeneration {
                prompt_ids,
                tokens: r.tokens,
                finish: r.text.finish.unwrap_or(FinishReason::Length),
                text: r.text.text,
            })
            .collect()
    }
}
