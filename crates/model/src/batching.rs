//! Continuous batching: many prompts decoded through a batch of at most `max_rows` rows, where
//! a row that finishes is handed the next waiting prompt at once, instead of the whole batch
//! waiting for its longest row (as serving engines schedule; Yu et al. 2022, "Orca").
//!
//! Rows of one batch have different lengths. Each row's own slots are left-padded to the
//! batch's slot count, as in the static [`Decoder`](crate::generate::Decoder): a prompt admitted
//! later is prefilled on its own and joins with its cache aligned to end where the others end.
//! Padding that no row needs any more is dropped; once no prompt waits, finished rows leave the
//! batch. A [`SharedPrefix`] is attended by every row and never copied.
//!
//! Reproducible sampling: each prompt draws its noise from its own RNG, seeded by the run's
//! seed and the prompt's index, on the host — so its text depends on neither the batch size nor
//! the prompts it shares a batch with, nor the backend's RNG. Greedy decoding draws nothing.

use std::collections::VecDeque;

use burn::tensor::{Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cache::KvCache;
use crate::error::{ModelError, Result};
use crate::generate::{
    FinishReason, GenerateConfig, Generation, RowText, TokenEvent, check_request, decode_step, prefill_prompts,
};
use crate::host::{Host, read_ids};
use crate::model::Transformer;
use crate::prefix::SharedPrefix;
use crate::sampling::Sampler;
use crate::tokenizer::Tokenizer;

/// One prompt being decoded in a row of the batch.
struct Active<'t> {
    prompt: usize,
    ids: Vec<u32>,
    text: RowText<'t>,
    /// Tokens sampled so far (EOS included).
    steps: usize,
    rng: ChaCha8Rng,
}

/// The decoding loop of [`generate_continuous`], one token per row per round, with the read-back
/// left to the caller as in [`Decoder`](crate::generate::Decoder).
pub struct ContinuousDecoder<'a> {
    model: &'a Transformer,
    tokenizer: &'a Tokenizer,
    cfg: &'a GenerateConfig,
    sampler: Sampler<'a>,
    prompts: Vec<Vec<u32>>,
    prefix: Option<SharedPrefix>,
    max_rows: usize,
    /// Prompt indices not yet admitted, in admission order.
    waiting: VecDeque<usize>,
    /// One entry per row of the batch; `None` for a row whose prompt finished.
    rows: Vec<Option<Active<'a>>>,
    pad_left: Vec<usize>,
    cache: KvCache,
    logits: Option<Tensor<2>>,
    proposed: Option<Tensor<1, Int>>,
    done: Vec<Option<Generation>>,
}

impl<'a> ContinuousDecoder<'a> {
    /// Checks the prompts and admits the first `max_rows` of them (shortest first: rows of
    /// similar length waste less padding). `prefix`: see
    /// [`Decoder::with_prefix`](crate::generate::Decoder::with_prefix).
    pub fn new(
        model: &'a Transformer,
        tokenizer: &'a Tokenizer,
        prompts: &[Vec<u32>],
        prefix: Option<&SharedPrefix>,
        cfg: &'a GenerateConfig,
        max_rows: usize,
    ) -> Result<Self> {
        if max_rows == 0 {
            return Err(ModelError::Input("continuous batching needs at least one row".into()));
        }
        check_request(model, prompts, cfg)?;
        let c = model.config();
        let prefix = prefix.and_then(|p| p.for_prompts(prompts));
        let mut waiting: Vec<usize> = (0..prompts.len()).collect();
        waiting.sort_by_key(|&i| prompts[i].len());
        let cache = KvCache::continuing(c.num_layers, prefix.as_ref());
        let mut decoder = Self {
            model,
            tokenizer,
            cfg,
            sampler: Sampler::new(&cfg.sampling, c.vocab_size, &model.device()),
            prompts: prompts.to_vec(),
            prefix,
            max_rows,
            waiting: waiting.into(),
            rows: Vec::new(),
            pad_left: Vec::new(),
            cache,
            logits: None,
            proposed: None,
            done: vec![None; prompts.len()],
        };
        // Without a token budget nothing is admitted, and every prompt ends empty.
        if cfg.max_new_tokens == 0 {
            decoder.waiting.clear();
        } else {
            decoder.admit();
        }
        Ok(decoder)
    }

    /// Whether every prompt has finished.
    pub fn finished(&self) -> bool {
        self.logits.is_none()
    }

    /// Rows in the batch now.
    pub fn batch_rows(&self) -> usize {
        self.rows.len()
    }

    /// Own slots per row in the batch now (its longest row plus the padding of the others):
    /// what every decode step attends to besides the shared prefix.
    pub fn slots(&self) -> usize {
        self.cache.len()
    }

    /// Samples the next token of every row on the device: ids `[rows]`, to be read back and
    /// passed to [`ContinuousDecoder::accept`].
    ///
    /// # Panics
    /// When called after [`ContinuousDecoder::finished`] became true.
    pub fn propose(&mut self) -> Tensor<1, Int> {
        let logits = self.logits.take().expect("propose called on a finished decoder");
        let [b, v] = logits.dims();
        let draws = self.sampler.draws_per_row(v);
        let uniforms = (draws > 0).then(|| {
            let mut u = vec![0.5f32; b * draws];
            for (row, chunk) in self.rows.iter_mut().zip(u.chunks_mut(draws)) {
                if let Some(a) = row {
                    // [1e-10, 1), as the device draws: the Gumbel transform takes two logarithms.
                    chunk.iter_mut().for_each(|x| *x = a.rng.random::<f32>().max(1e-10));
                }
            }
            Tensor::from_data(TensorData::new(u, [b, draws]), &logits.device())
        });
        let next = self.sampler.sample_with(logits, uniforms);
        self.proposed = Some(next.clone());
        next
    }

    /// Takes the ids of the last proposal (one per row), extends each row, ends the rows that
    /// finished, runs the next step for the others and admits waiting prompts into free rows.
    /// `on_token` sees every kept token, with the prompt's index as its row.
    pub fn accept(&mut self, ids: &[i64], on_token: &mut dyn FnMut(TokenEvent<'_>)) -> Result<()> {
        let next = self.proposed.take().ok_or_else(|| ModelError::Input("accept called without a proposal".into()))?;
        if ids.len() != self.rows.len() {
            return Err(ModelError::Input(format!("accept: {} ids for {} rows", ids.len(), self.rows.len())));
        }
        for (slot, &id) in self.rows.iter_mut().zip(ids) {
            let Some(a) = slot else { continue };
            let id = id as u32;
            a.steps += 1;
            if let Some(piece) = a.text.push(id, self.cfg)? {
                a.ids.push(id);
                on_token(TokenEvent { row: a.prompt, id, text: &piece });
            }
            if a.text.finished() || a.steps >= self.cfg.max_new_tokens {
                let a = slot.take().expect("the row is active");
                let prompt = a.prompt;
                self.done[prompt] = Some(finished(&self.prompts, a));
            }
        }
        // With no row left, `admit` starts a new batch or the decoder is done.
        if self.rows.iter().any(Option::is_some) {
            let device = self.model.device();
            let tokens = next.reshape([self.rows.len(), 1]);
            self.logits = Some(decode_step(self.model, tokens, &self.pad_left, &mut self.cache, &device));
        }
        self.admit();
        Ok(())
    }

    /// Fills free rows with waiting prompts (prefilled together), then drops rows that stay
    /// free once nothing waits, and padding that no row needs.
    fn admit(&mut self) {
        let free: Vec<usize> = (0..self.max_rows).filter(|&r| self.rows.get(r).is_none_or(Option::is_none)).collect();
        let n = free.len().min(self.waiting.len());
        // Prefilling reads every weight once per call, whatever the number of prompts: admit in
        // groups (a quarter of the rows, or whatever waits), unless the batch would idle.
        let group = (self.max_rows / 4).max(1).min(self.waiting.len());
        let idle = self.rows.iter().all(Option::is_none);
        if n > 0 && (n >= group || idle) {
            let joining: Vec<usize> = self.waiting.drain(..n).collect();
            self.join(&free[..n], &joining);
        }
        if self.waiting.is_empty() {
            self.drop_free_rows();
        }
        let unused = self.pad_left.iter().copied().min().unwrap_or(0);
        if unused > 0 {
            self.cache.drop_front(unused);
            self.pad_left.iter_mut().for_each(|p| *p -= unused);
        }
    }

    /// Prefills prompts `joining` and puts them in rows `into` (free rows, or new ones).
    fn join(&mut self, into: &[usize], joining: &[usize]) {
        let device = self.model.device();
        let prompts: Vec<Vec<u32>> = joining.iter().map(|&i| self.prompts[i].clone()).collect();
        let mut cache = KvCache::continuing(self.model.config().num_layers, self.prefix.as_ref());
        let (mut pad, logits) = prefill_prompts(self.model, &prompts, &mut cache);
        // Rows after this: the current ones, and new ones beyond them (`into` is ascending).
        let total = self.rows.len().max(into.last().map_or(0, |&m| m + 1));
        if self.rows.iter().all(Option::is_none) {
            // Nothing continues: the newcomers are the batch.
            self.rows.clear();
            self.pad_left = pad;
            self.cache = cache;
            self.logits = Some(logits);
        } else {
            // Align the two caches so that every row's last slot is the same.
            let (have, new) = (self.cache.len(), cache.len());
            self.cache.pad_front(new.saturating_sub(have));
            self.pad_left.iter_mut().for_each(|p| *p += new.saturating_sub(have));
            cache.pad_front(have.saturating_sub(new));
            pad.iter_mut().for_each(|p| *p += have.saturating_sub(new));
            // Row r keeps its own entry, or takes newcomer j (index rows + j of the concatenation).
            let rows = self.rows.len();
            let mut pick: Vec<i64> = (0..total as i64).collect();
            self.pad_left.resize(total, 0);
            for (j, &r) in into.iter().enumerate() {
                pick[r] = (rows + j) as i64;
                self.pad_left[r] = pad[j];
            }
            let pick = Tensor::<1, Int>::from_data(TensorData::new(pick, [total]), &device);
            self.cache = self.cache.merge_rows(&cache, pick.clone());
            let current = self.logits.take().expect("continuing rows have logits");
            self.logits = Some(Tensor::cat(vec![current, logits], 0).select(0, pick));
        }
        self.rows.resize_with(total, || None);
        for (&r, &i) in into.iter().zip(joining) {
            let seed = self.cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            self.rows[r] = Some(Active {
                prompt: i,
                ids: Vec::new(),
                text: RowText::new(self.tokenizer),
                steps: 0,
                rng: ChaCha8Rng::seed_from_u64(seed),
            });
        }
    }

    /// Removes finished rows from the batch (nothing waits to take them).
    fn drop_free_rows(&mut self) {
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&r| self.rows[r].is_some()).collect();
        if keep.is_empty() {
            self.logits = None;
            return;
        }
        if keep.len() == self.rows.len() {
            return;
        }
        let device = self.model.device();
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(keep.iter().map(|&r| r as i64).collect(), [keep.len()]),
            &device,
        );
        self.cache = self.cache.select_rows(index.clone());
        self.logits = self.logits.take().map(|l| l.select(0, index));
        self.pad_left = keep.iter().map(|&r| self.pad_left[r]).collect();
        let mut rows = std::mem::take(&mut self.rows);
        self.rows = keep.iter().map(|&r| rows[r].take()).collect();
    }

    /// Every prompt's generation, in the order of the prompts.
    pub fn into_generations(self) -> Vec<Generation> {
        let Self { mut done, rows, prompts, .. } = self;
        // Rows still running (only when the caller stops early) end with `Length`.
        for a in rows.into_iter().flatten() {
            let prompt = a.prompt;
            done[prompt] = Some(finished(&prompts, a));
        }
        done.into_iter().zip(&prompts).map(|(g, p)| g.unwrap_or_else(|| unstarted(p))).collect()
    }
}

/// Generates continuations of `prompts` with at most `max_rows` rows decoding at once, a finished
/// row taking the next prompt (see the module docs). Same tokens as
/// [`generate_after_prefix`](crate::generate::generate_after_prefix) when greedy.
#[allow(clippy::too_many_arguments)]
pub async fn generate_continuous(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    prefix: Option<&SharedPrefix>,
    cfg: &GenerateConfig,
    max_rows: usize,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
    host: &mut impl Host,
) -> Result<Vec<Generation>> {
    let mut decoder = ContinuousDecoder::new(model, tokenizer, prompts, prefix, cfg, max_rows)?;
    while !decoder.finished() {
        let ids = read_ids(host, decoder.propose()).await?;
        decoder.accept(&ids, on_token)?;
    }
    Ok(decoder.into_generations())
}

/// A row's generation as it stands (`Length` when it did not end by itself).
fn finished(prompts: &[Vec<u32>], a: Active<'_>) -> Generation {
    Generation {
        prompt_ids: prompts[a.prompt].clone(),
        finish: a.text.finish.unwrap_or(FinishReason::Length),
        ids: a.ids,
        text: a.text.text,
    }
}

/// The generation of a prompt that produced nothing.
fn unstarted(prompt: &[u32]) -> Generation {
    Generation { prompt_ids: prompt.to_vec(), ids: Vec::new(), text: String::new(), finish: FinishReason::Length }
}
