//! Batched, KV-cached text generation.
//!
//! Prompts of different lengths are left-padded into one batch; the prompt is run once (prefill)
//! and then one token per row per step reuses the cache. Sampling happens on the device and only
//! the sampled ids are read back, once per step, to check EOS and stop strings.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::cache::KvCache;
use crate::error::{ModelError, Result};
use crate::host::{Blocking, Host, block_on, read_ids};
use crate::mask::{AttentionBias, positions};
use crate::model::Transformer;
use crate::prefix::SharedPrefix;
use crate::sampling::{Sampler, SamplingConfig};
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Generation of a row ends when its text contains one of these (the stop string itself is
    /// cut from the returned text).
    pub stop_strings: Vec<String>,
    /// Ids that end a row (usually the tokenizer's EOS); not included in the text.
    pub eos_ids: Vec<u32>,
    /// Seeds the device RNG before the first step when sampling; same seed, same backend → same
    /// output.
    pub seed: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            sampling: SamplingConfig::greedy(),
            stop_strings: Vec::new(),
            eos_ids: Vec::new(),
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    StopString,
    Length,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated ids (EOS excluded; tokens after a stop string's start included).
    pub ids: Vec<u32>,
    /// Decoded text, cut before any stop string.
    pub text: String,
    pub finish: FinishReason,
}

/// One generated token, reported as it is produced.
#[derive(Debug, Clone)]
pub struct TokenEvent<'a> {
    pub row: usize,
    pub id: u32,
    /// The text this token completes (may be empty for a partial UTF-8 sequence).
    pub text: &'a str,
}

/// One row's text as its tokens arrive, shared by every decoder: an EOS id ends the row (and is
/// not kept), a stop string ends it and is cut from the text.
pub struct RowText<'t> {
    pub text: String,
    decoder: crate::tokenizer::StreamDecoder<'t>,
    pub finish: Option<FinishReason>,
}

impl<'t> RowText<'t> {
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self { text: String::new(), decoder: tokenizer.stream_decoder(true), finish: None }
    }

    pub fn finished(&self) -> bool {
        self.finish.is_some()
    }

    /// Takes the row's next id: `None` when it is an EOS id (the row ends there), else the text
    /// the id adds (possibly empty). A stop string in the text ends the row and is cut off.
    pub fn push(&mut self, id: u32, cfg: &GenerateConfig) -> Result<Option<String>> {
        if cfg.eos_ids.contains(&id) {
            self.finish = Some(FinishReason::Eos);
            return Ok(None);
        }
        let piece = self.decoder.push(id)?;
        self.text.push_str(&piece);
        if let Some(cut) = cfg.stop_strings.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(cut);
            self.finish = Some(FinishReason::StopString);
        }
        Ok(Some(piece))
    }
}

/// Checks a batch of prompts before decoding: none is empty and every id is inside the model's
/// vocabulary. Returns the longest prompt's length.
pub fn check_prompts(prompts: &[Vec<u32>], vocab_size: usize) -> Result<usize> {
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(ModelError::Input(format!("prompt {i} is empty; give at least one token of text")));
    }
    if let Some(bad) = prompts.iter().flatten().find(|&&id| id as usize >= vocab_size) {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the model's vocabulary ({vocab_size}); the tokenizer does not belong to this model"
        )));
    }
    Ok(prompts.iter().map(Vec::len).max().unwrap_or(0))
}

struct Row<'t> {
    ids: Vec<u32>,
    text: RowText<'t>,
}

/// Generates continuations of `prompts` (token ids). `on_token` sees every kept token.
pub fn generate_ids(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
) -> Result<Vec<Generation>> {
    block_on(generate_with(model, tokenizer, prompts, cfg, on_token, &mut Blocking))
}

/// [`generate_ids`] with the reads of sampled ids done by `host` (awaited in the browser).
pub async fn generate_with(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
    host: &mut impl Host,
) -> Result<Vec<Generation>> {
    generate_after_prefix(model, tokenizer, prompts, None, cfg, on_token, host).await
}

/// [`generate_with`] for prompts that may continue a cached shared prefix (see
/// [`Decoder::with_prefix`]).
pub async fn generate_after_prefix(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    prefix: Option<&SharedPrefix>,
    cfg: &GenerateConfig,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
    host: &mut impl Host,
) -> Result<Vec<Generation>> {
    let Some(mut decoder) = Decoder::with_prefix(model, tokenizer, prompts, cfg, prefix)? else {
        return Ok(Vec::new());
    };
    while !decoder.finished() {
        let ids = read_ids(host, decoder.propose()).await?;
        decoder.accept(&ids, on_token)?;
    }
    Ok(decoder.into_generations())
}

/// The decoding loop of [`generate_ids`], one token per row per round, with the read-back of
/// the sampled ids left to the caller: [`Decoder::propose`] samples on the device,
/// [`Decoder::accept`] takes the ids read back. The browser awaits that read (a synchronous
/// one cannot complete on WebGPU); [`generate_ids`] does it synchronously.
pub struct Decoder<'a> {
    model: &'a Transformer,
    cfg: &'a GenerateConfig,
    sampler: Sampler<'a>,
    prompts: Vec<Vec<u32>>,
    rows: Vec<Row<'a>>,
    pad_left: Vec<usize>,
    cache: KvCache,
    /// Logits to sample the next token from; `None` once every row has finished.
    logits: Option<Tensor<2>>,
    /// The ids sampled by the last `propose`, fed to the model by `accept`.
    proposed: Option<Tensor<1, Int>>,
    step: usize,
}

impl<'a> Decoder<'a> {
    /// Checks the prompts against the model and runs them through it (prefill). `None` for no
    /// prompts (as Quiet-STaR's `ThoughtfulDecoder`).
    pub fn new(
        model: &'a Transformer,
        tokenizer: &'a Tokenizer,
        prompts: &[Vec<u32>],
        cfg: &'a GenerateConfig,
    ) -> Result<Option<Self>> {
        Self::with_prefix(model, tokenizer, prompts, cfg, None)
    }

    /// [`Decoder::new`] for prompts that may continue `prefix` (computed once by
    /// [`SharedPrefix::compute`] and reused by every batch): the part of it that every prompt
    /// shares is attended from its cache instead of being run again for each row. Same tokens
    /// as without it; logits equal up to float rounding.
    pub fn with_prefix(
        model: &'a Transformer,
        tokenizer: &'a Tokenizer,
        prompts: &[Vec<u32>],
        cfg: &'a GenerateConfig,
        prefix: Option<&SharedPrefix>,
    ) -> Result<Option<Self>> {
        check_request(model, prompts, cfg)?;
        if prompts.is_empty() {
            return Ok(None);
        }
        let c = model.config();
        let device = model.device();
        let rows = (0..prompts.len()).map(|_| Row { ids: Vec::new(), text: RowText::new(tokenizer) }).collect();
        let prefix = prefix.and_then(|p| p.for_prompts(prompts));
        let mut cache = KvCache::continuing(c.num_layers, prefix.as_ref());
        let sampler = Sampler::new(&cfg.sampling, c.vocab_size, &device);
        let (pad_left, logits) = if cfg.max_new_tokens == 0 {
            (Vec::new(), None)
        } else {
            if !cfg.sampling.is_greedy() {
                // burn's device RNG is process-wide per backend: generations sampling concurrently on
                // one backend draw from the same stream, so only a sequential run repeats exactly.
                device.seed(cfg.seed);
            }
            let (pad_left, logits) = prefill_prompts(model, prompts, &mut cache);
            (pad_left, Some(logits))
        };
        Ok(Some(Self {
            model,
            cfg,
            sampler,
            prompts: prompts.to_vec(),
            rows,
            pad_left,
            cache,
            logits,
            proposed: None,
            step: 0,
        }))
    }

    /// Whether every row has ended (or the token budget is spent).
    pub fn finished(&self) -> bool {
        self.logits.is_none()
    }

    /// Samples the next token of every row on the device: ids `[B]`, to be read back and passed
    /// to [`Decoder::accept`].
    ///
    /// # Panics
    /// When called after [`Decoder::finished`] became true.
    pub fn propose(&mut self) -> Tensor<1, Int> {
        let logits = self.logits.take().expect("propose called on a finished decoder");
        let next = self.sampler.sample(logits);
        self.proposed = Some(next.clone());
        next
    }

    /// Takes the ids of the last [`Decoder::propose`] as read back (one per row), extends each
    /// unfinished row, and runs the next step unless every row has ended.
    pub fn accept(&mut self, ids: &[i64], on_token: &mut dyn FnMut(TokenEvent<'_>)) -> Result<()> {
        let next = self.proposed.take().ok_or_else(|| ModelError::Input("accept called without a proposal".into()))?;
        if ids.len() != self.rows.len() {
            return Err(ModelError::Input(format!("accept: {} ids for {} rows", ids.len(), self.rows.len())));
        }
        for (r, row) in self.rows.iter_mut().enumerate() {
            if row.text.finished() {
                continue;
            }
            let id = ids[r] as u32;
            if let Some(piece) = row.text.push(id, self.cfg)? {
                row.ids.push(id);
                on_token(TokenEvent { row: r, id, text: &piece });
            }
        }
        self.step += 1;
        if self.rows.iter().any(|r| !r.text.finished()) && self.step < self.cfg.max_new_tokens {
            let b = self.rows.len();
            let device = self.model.device();
            self.logits = Some(decode_step(self.model, next.reshape([b, 1]), &self.pad_left, &mut self.cache, &device));
        }
        Ok(())
    }

    /// Every row's generation (rows still running end with [`FinishReason::Length`]).
    pub fn into_generations(self) -> Vec<Generation> {
        self.rows
            .into_iter()
            .zip(self.prompts)
            .map(|(r, p)| Generation {
                prompt_ids: p,
                ids: r.ids,
                finish: r.text.finish.unwrap_or(FinishReason::Length),
                text: r.text.text,
            })
            .collect()
    }
}

/// Checks a request before any work: valid sampling settings, prompts the model can read, and
/// the longest prompt plus the token budget inside the model's context.
pub(crate) fn check_request(model: &Transformer, prompts: &[Vec<u32>], cfg: &GenerateConfig) -> Result<()> {
    cfg.sampling.validate()?;
    let c = model.config();
    let longest = check_prompts(prompts, c.vocab_size)?;
    if !prompts.is_empty() && longest + cfg.max_new_tokens > c.max_position_embeddings {
        return Err(ModelError::TooLong {
            prompt_tokens: longest,
            new_tokens: cfg.max_new_tokens,
            context: c.max_position_embeddings,
        });
    }
    Ok(())
}

/// Prefills `prompts` after what `cache` holds of them already (its shared prefix), left-padded
/// into one batch; returns each row's padding and the last-position logits.
pub(crate) fn prefill_prompts(
    model: &Transformer,
    prompts: &[Vec<u32>],
    cache: &mut KvCache,
) -> (Vec<usize>, Tensor<2>) {
    let device = model.device();
    let skip = cache.prefix_len();
    let suffixes: Vec<Vec<u32>> = prompts.iter().map(|p| p[skip..].to_vec()).collect();
    let (tokens, pad_left) = left_padded(&suffixes, model.config().pad_id(), &device);
    let logits = prefill(model, tokens, &pad_left, cache, &device);
    (pad_left, logits)
}

/// Prompts of different lengths as one left-padded batch `[B, longest]`, and each row's padding.
pub fn left_padded(prompts: &[Vec<u32>], pad_id: u32, device: &Device) -> (Tensor<2, Int>, Vec<usize>) {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pad_left: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let flat: Vec<i64> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(pad_id as i64, longest - p.len()).chain(p.iter().map(|&t| t as i64)))
        .collect();
    (Tensor::from_data(TensorData::new(flat, [prompts.len(), longest]), device), pad_left)
}

/// Runs the padded prompts through the model, filling `cache`; returns last-position logits.
pub fn prefill(
    model: &Transformer,
    tokens: Tensor<2, Int>,
    pad_left: &[usize],
    cache: &mut KvCache,
    device: &Device,
) -> Tensor<2> {
    let [b, l] = tokens.dims();
    let hidden = run_slots(model, tokens, pad_left, cache, device);
    last_logits(model, hidden.narrow(1, l - 1, 1), b)
}

/// Runs `tokens` (`[B, L]`) in the slots after the cached ones, with positions and mask that
/// account for each row's padding and the cache's shared prefix; returns the hidden states.
pub(crate) fn run_slots(
    model: &Transformer,
    tokens: Tensor<2, Int>,
    pad_left: &[usize],
    cache: &mut KvCache,
    device: &Device,
) -> Tensor<3> {
    let l = tokens.dims()[1];
    let (past, prefix) = (cache.len(), cache.prefix_len());
    let pos = positions(pad_left, past, l, device).add_scalar(prefix as f64);
    let bias = AttentionBias::causal_after_prefix(pad_left, past, l, model.config().sliding_window, prefix, device);
    model.forward_embeds(model.embed(tokens), &pos, &bias, Some(cache))
}

/// Feeds one token per row (`[B, 1]`) after the cached slots; returns its logits `[B, V]`.
pub fn decode_step(
    model: &Transformer,
    tokens: Tensor<2, Int>,
    pad_left: &[usize],
    cache: &mut KvCache,
    device: &Device,
) -> Tensor<2> {
    let b = tokens.dims()[0];
    let hidden = run_slots(model, tokens, pad_left, cache, device);
    last_logits(model, hidden, b)
}

fn last_logits(model: &Transformer, hidden: Tensor<3>, b: usize) -> Tensor<2> {
    model.logits(hidden).reshape([b, model.config().vocab_size])
}

/// Text-in, text-out convenience over [`generate_ids`]. `add_special` applies the tokenizer's
/// post-processor (BOS for tokenizers that want one).
pub fn generate(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[&str],
    add_special: bool,
    cfg: &GenerateConfig,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
) -> Result<Vec<Generation>> {
    let ids = prompts.iter().map(|p| tokenizer.encode(p, add_special)).collect::<Result<Vec<_>>>()?;
    generate_ids(model, tokenizer, &ids, cfg, on_token)
}
