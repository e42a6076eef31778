//! Zero-shot evaluation with and without thoughts, two ways:
//! - [`official_scores`]: the Quiet-STaR paper's metric (the official `eval_helpers.py`): the
//!   item in the official format ([`starling_tasks::official`]), and the probability of the
//!   gold answer's tokens, each renormalised over the answer alphabet, from the mixed
//!   predictions with sampled thoughts (averaged over seeded samples) and from the base model.
//! - [`score_items`]: candidate answers after Starling's prompt scored by log-likelihood —
//!   multiple choice: the most likely candidate is the model's answer (accuracy); every task: the
//!   gold answer's NLL.
//!
//! Both generate thoughts only at the positions that predict the scored tokens: the question
//! costs one ordinary pass.

use burn::tensor::{Int, Tensor, TensorData, Transaction};
use serde::Serialize;
use starling_model::Tokenizer;
use starling_model::generate::left_padded;
use starling_tasks::Item;
use starling_tasks::official::official_text;
use starling_tasks::zero_shot::candidates;
use starling_thought::Kernel;

use crate::analyze::{TokenDelta, continuation_deltas, token_deltas_from};
use crate::model::{QuietModel, ThoughtState};
use crate::sample::think_and_end;
use crate::{QuietError, Result};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Thought sampling temperature (0: greedy, deterministic).
    pub thought_temperature: f64,
    /// Candidate sequences scored together in one pass.
    pub batch_size: usize,
    pub kernel: Kernel,
    /// Think at every position, as before thoughts were limited to the scored ones: the same
    /// scores at the old cost, kept to measure the difference.
    pub think_everywhere: bool,
}

/// One item's candidates, scored.
#[derive(Debug, Clone, Serialize)]
pub struct ItemScore {
    pub id: String,
    pub gold: usize,
    /// Tokens of each candidate continuation.
    pub tokens: Vec<usize>,
    /// Log-likelihood of each candidate without thoughts.
    pub logp_base: Vec<f64>,
    /// Log-likelihood of each candidate with a thought before each of its tokens.
    pub logp_thought: Vec<f64>,
}

impl ItemScore {
    /// Index of the most likely candidate.
    pub fn choice(&self, thoughts: bool) -> usize {
        let lp = if thoughts { &self.logp_thought } else { &self.logp_base };
        (0..lp.len()).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap_or(0)
    }

    pub fn correct(&self, thoughts: bool) -> bool {
        self.choice(thoughts) == self.gold
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub items: usize,
    /// Multiple-choice accuracy (None when items have a single candidate).
    pub accuracy_base: Option<f64>,
    pub accuracy_thought: Option<f64>,
    /// Mean NLL per token of the gold answers.
    pub gold_nll_base: f64,
    pub gold_nll_thought: f64,
    pub gold_tokens: usize,
}

/// Scores `items`, `opts.batch_size` candidate sequences per pass; `on_item` sees each item as
/// soon as all its candidates are scored (for progress and streaming output).
pub fn score_items(
    model: &QuietModel,
    tokenizer: &Tokenizer,
    items: &[Item],
    opts: &EvalOptions,
    on_item: &mut dyn FnMut(&ItemScore),
) -> Result<Vec<ItemScore>> {
    // Every item as (prompt, candidates, gold).
    let mut tokenized = Vec::with_capacity(items.len());
    for item in items {
        let c = candidates(item);
        let prompt = tokenizer.encode(&c.prompt, false)?;
        let conts =
            c.continuations.iter().map(|t| tokenizer.encode(t, false)).collect::<std::result::Result<Vec<_>, _>>()?;
        for cont in &conts {
            model.check_length(prompt.len() + cont.len())?;
        }
        tokenized.push((prompt, conts, c.gold));
    }
    let mut out = Vec::with_capacity(items.len());
    // Whole items per pass, about `batch_size` candidate sequences.
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        let mut seqs = tokenized[start].1.len();
        while end < items.len() && seqs + tokenized[end].1.len() <= opts.batch_size.max(1) {
            seqs += tokenized[end].1.len();
            end += 1;
        }
        let chunk = &tokenized[start..end];
        let deltas: Vec<Vec<Vec<TokenDelta>>> = if opts.think_everywhere {
            let seqs: Vec<Vec<u32>> =
                chunk.iter().flat_map(|(p, cs, _)| cs.iter().map(|c| [p.as_slice(), c].concat())).collect();
            let from: Vec<usize> = chunk.iter().flat_map(|(p, cs, _)| cs.iter().map(|_| p.len())).collect();
            let mut flat = token_deltas_from(model, &seqs, &vec![1; seqs.len()], opts.thought_temperature, opts.kernel)
                .into_iter()
                .zip(from)
                .map(|(d, f)| d.into_iter().filter(|t| t.index >= f).collect::<Vec<_>>());
            chunk.iter().map(|(_, cs, _)| flat.by_ref().take(cs.len()).collect()).collect()
        } else {
            let prompts: Vec<Vec<u32>> = chunk.iter().map(|(p, _, _)| p.clone()).collect();
            let conts: Vec<Vec<Vec<u32>>> = chunk.iter().map(|(_, cs, _)| cs.clone()).collect();
            continuation_deltas(model, &prompts, &conts, opts.thought_temperature, opts.kernel)
        };
        for ((item, (_, _, gold)), per_candidate) in items[start..end].iter().zip(chunk).zip(deltas) {
            let mut s = ItemScore {
                id: item.id.clone(),
                gold: *gold,
                tokens: Vec::new(),
                logp_base: Vec::new(),
                logp_thought: Vec::new(),
            };
            for d in per_candidate {
                s.logp_base.push(d.iter().map(|t| t.logp_base as f64).sum());
                s.logp_thought.push(d.iter().map(|t| t.logp_thought as f64).sum());
                s.tokens.push(d.len());
            }
            on_item(&s);
            out.push(s);
        }
        start = end;
    }
    Ok(out)
}

pub fn summarize(scores: &[ItemScore]) -> EvalSummary {
    let n = scores.len().max(1) as f64;
    let choice = scores.iter().any(|s| s.tokens.len() > 1);
    let accuracy = |thoughts: bool| choice.then(|| scores.iter().filter(|s| s.correct(thoughts)).count() as f64 / n);
    let gold_tokens: usize = scores.iter().map(|s| s.tokens[s.gold]).sum();
    let nll = |f: fn(&ItemScore) -> f64| -scores.iter().map(f).sum::<f64>() / gold_tokens.max(1) as f64;
    EvalSummary {
        items: scores.len(),
        accuracy_base: accuracy(false),
        accuracy_thought: accuracy(true),
        gold_nll_base: nll(|s| s.logp_base[s.gold]),
        gold_nll_thought: nll(|s| s.logp_thought[s.gold]),
        gold_tokens,
    }
}

/// Settings of the official metric.
#[derive(Debug, Clone)]
pub struct OfficialOptions {
    /// Thoughts sampled per item; the item's score is the mean over them.
    pub samples: usize,
    /// Thought sampling temperature: the official evaluation samples at 1 (a hard
    /// Gumbel-softmax draw, whose small `tau` only sharpens the relaxation).
    pub temperature: f64,
    /// Seeds the device's sampler once, before the first batch.
    pub seed: u64,
    /// Items per pass (each repeated `samples` times).
    pub batch_size: usize,
    pub kernel: Kernel,
    /// Think at every position, not only where answer tokens are predicted: the same scores at
    /// the cost of thinking everywhere, kept to measure the difference.
    pub think_everywhere: bool,
}

/// One item under the official metric.
#[derive(Debug, Clone, Serialize)]
pub struct OfficialScore {
    pub id: String,
    /// Answer tokens scored: those in the alphabet (a space token before a number is skipped,
    /// as the official code skips it).
    pub scored_tokens: usize,
    /// Probability of the gold answer, renormalised over the alphabet, without thoughts.
    pub p_base: f64,
    /// The same from the mixed predictions, for each thought sample.
    pub p_thought: Vec<f64>,
}

impl OfficialScore {
    pub fn p_thought_mean(&self) -> f64 {
        self.p_thought.iter().sum::<f64>() / self.p_thought.len().max(1) as f64
    }
}

/// The official metric over a data set: the mean gold-answer probability, which the paper
/// reports as accuracy.
#[derive(Debug, Clone, Serialize)]
pub struct OfficialSummary {
    pub items: usize,
    pub samples: usize,
    pub accuracy_base: f64,
    pub accuracy_thought: f64,
    /// Standard error of `accuracy_thought` over items.
    pub stderr_thought: f64,
}

pub fn summarize_official(scores: &[OfficialScore], samples: usize) -> OfficialSummary {
    let n = scores.len().max(1) as f64;
    let thought: Vec<f64> = scores.iter().map(OfficialScore::p_thought_mean).collect();
    let mean = thought.iter().sum::<f64>() / n;
    let var = thought.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    OfficialSummary {
        items: scores.len(),
        samples,
        accuracy_base: scores.iter().map(|s| s.p_base).sum::<f64>() / n,
        accuracy_thought: mean,
        stderr_thought: (var / n).sqrt(),
    }
}

/// One item tokenized for the official metric.
struct OfficialItem {
    id: String,
    ids: Vec<u32>,
    /// Index of the first answer token.
    answer_at: usize,
    /// The alphabet's token ids.
    alphabet: Vec<u32>,
}

/// The token that carries `symbol` when the tokenizer writes `text` (its last token).
fn symbol_token(tokenizer: &Tokenizer, text: &str) -> Result<u32> {
    tokenizer.encode(text, false)?.last().copied().ok_or_else(|| {
        QuietError::Input(format!("the tokenizer encodes {text:?} as nothing, so the answer alphabet is undefined"))
    })
}

fn official_item(tokenizer: &Tokenizer, item: &Item) -> Result<OfficialItem> {
    let text = official_text(item);
    let mut ids = tokenizer.encode(&text.prompt, false)?;
    let answer_at = ids.len();
    ids.extend(tokenizer.encode(&text.answer, false)?);
    // Letters as they follow the marker (` A`), digits bare (a number's first token may carry the
    // space), and the newline that ends every answer — the official code's valid tokens.
    let numeric = item.choices.is_empty();
    let mut alphabet = text
        .alphabet
        .iter()
        .map(|a| symbol_token(tokenizer, &if numeric { a.clone() } else { format!(" {a}") }))
        .collect::<Result<Vec<_>>>()?;
    alphabet.push(symbol_token(tokenizer, "\n")?);
    alphabet.sort_unstable();
    alphabet.dedup();
    if answer_at == 0 || answer_at == ids.len() {
        return Err(QuietError::Input(format!("item {}: empty question or answer after tokenizing", item.id)));
    }
    Ok(OfficialItem { id: item.id.clone(), ids, answer_at, alphabet })
}

/// log p(gold) renormalised over `alphabet`, from `row` = logits over `columns` (sorted ids).
fn alphabet_logp(row: &[f32], columns: &[u32], alphabet: &[u32], gold: u32) -> f64 {
    let at = |id: u32| columns.binary_search(&id).expect("alphabet ⊂ columns");
    let lse = {
        let m = alphabet.iter().map(|&a| row[at(a)] as f64).fold(f64::NEG_INFINITY, f64::max);
        m + alphabet.iter().map(|&a| (row[at(a)] as f64 - m).exp()).sum::<f64>().ln()
    };
    row[at(gold)] as f64 - lse
}

/// Scores `items` with the official metric, `opts.batch_size` items per pass; `on_item` sees
/// each item as soon as it is scored.
pub fn official_scores(
    model: &QuietModel,
    tokenizer: &Tokenizer,
    items: &[Item],
    opts: &OfficialOptions,
    on_item: &mut dyn FnMut(&OfficialScore),
) -> Result<Vec<OfficialScore>> {
    let prepared = items.iter().map(|i| official_item(tokenizer, i)).collect::<Result<Vec<_>>>()?;
    for p in &prepared {
        model.check_length(p.ids.len())?;
    }
    let device = model.device();
    if opts.temperature > 0.0 {
        device.seed(opts.seed);
    }
    let mut out = Vec::with_capacity(items.len());
    for chunk in prepared.chunks(opts.batch_size.max(1)) {
        for score in official_batch(model, chunk, opts) {
            on_item(&score);
            out.push(score);
        }
    }
    Ok(out)
}

/// One batch: a base pass, `samples` thoughts at each answer-predicting position, and the
/// logits of the alphabet tokens read back for the host to renormalise.
fn official_batch(model: &QuietModel, batch: &[OfficialItem], opts: &OfficialOptions) -> Vec<OfficialScore> {
    let device = model.device();
    let b = batch.len();
    let samples = opts.samples.max(1);
    let d = model.hidden_size();
    let seqs: Vec<Vec<u32>> = batch.iter().map(|x| x.ids.clone()).collect();
    let (tokens, pad) = left_padded(&seqs, model.lm.config().pad_id(), &device);
    let l = tokens.dims()[1];
    let first = if opts.think_everywhere {
        0
    } else {
        batch.iter().zip(&pad).map(|(x, &p)| p + x.answer_at - 1).min().expect("a non-empty batch")
    };
    let lq = l - 1 - first; // the last position predicts nothing
    let (h_base, cache) = model.base_pass(tokens, &pad);
    let mut state =
        ThoughtState::new(&cache, model.lm.config().num_layers, &pad, samples, opts.kernel).thinking_at(first, lq);
    let (_, h_post) = think_and_end(model, &mut state, opts.temperature); // [rows, 1, Lq, d]
    let h_base = h_base.narrow(1, first, lq).reshape([b, 1, lq, d]);
    let (mixed, _) = model.mix(Tensor::cat(vec![h_base.clone(); samples], 0), h_post);
    // Only the alphabet's columns leave the device.
    let mut columns: Vec<u32> = batch.iter().flat_map(|x| x.alphabet.iter().copied()).collect();
    columns.sort_unstable();
    columns.dedup();
    let cols = Tensor::<1, Int>::from_data(
        TensorData::new(columns.iter().map(|&c| c as i64).collect::<Vec<_>>(), [columns.len()]),
        &device,
    );
    let pick = |h: Tensor<4>| model.logits4(h).select(3, cols.clone());
    let data: [TensorData; 2] =
        Transaction::default().register(pick(h_base)).register(pick(mixed)).execute().try_into().expect("two results");
    let [base, mixed] = data;
    let host = |t: TensorData| -> Vec<f32> { t.try_into_vec_as().expect("f32") };
    let (base, mixed) = (host(base), host(mixed));
    let nc = columns.len();
    // The probability of row r's answer from `logits` laid out [rows, Lq, columns].
    let answer_p = |logits: &[f32], row: usize, x: &OfficialItem, p: usize| -> (f64, usize) {
        let mut logp = 0.0;
        let mut scored = 0;
        for index in x.answer_at..x.ids.len() {
            let gold = x.ids[index];
            if x.alphabet.binary_search(&gold).is_err() {
                continue;
            }
            let q = p + index - 1 - first;
            let at = (row * lq + q) * nc;
            logp += alphabet_logp(&logits[at..at + nc], &columns, &x.alphabet, gold);
            scored += 1;
        }
        (logp.exp(), scored)
    };
    batch
        .iter()
        .zip(&pad)
        .enumerate()
        .map(|(r, (x, &p))| {
            let (p_base, scored_tokens) = answer_p(&base, r, x, p);
            let p_thought = (0..samples).map(|s| answer_p(&mixed, s * b + r, x, p).0).collect();
            OfficialScore { id: x.id.clone(), scored_tokens, p_base, p_thought }
        })
        .collect()
}
