//! Zero-shot evaluation with and without thoughts (the Quiet-STaR paper's protocol): candidate
//! answers after the question are scored by their log-likelihood — from the base predictions,
//! and from the mixed predictions with a thought before every token. Multiple choice: the most
//! likely candidate is the model's answer (accuracy); every task: the gold answer's NLL.

use serde::Serialize;
use starling_model::Tokenizer;
use starling_tasks::Item;
use starling_tasks::zero_shot::candidates;
use starling_thought::Kernel;

use crate::Result;
use crate::analyze::token_deltas_batch;
use crate::model::QuietModel;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Thought sampling temperature (0: greedy, deterministic).
    pub thought_temperature: f64,
    /// Candidate sequences scored together in one pass.
    pub batch_size: usize,
    pub kernel: Kernel,
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
    // Every candidate as (item index, prompt length, tokens).
    let mut seqs: Vec<(usize, usize, Vec<u32>)> = Vec::new();
    let mut golds = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let c = candidates(item);
        let prompt = tokenizer.encode(&c.prompt, false)?;
        for cont in &c.continuations {
            let mut ids = prompt.clone();
            ids.extend(tokenizer.encode(cont, false)?);
            model.check_length(ids.len())?;
            seqs.push((i, prompt.len(), ids));
        }
        golds.push((c.gold, c.continuations.len()));
    }
    let mut out: Vec<ItemScore> = items
        .iter()
        .zip(&golds)
        .map(|(item, &(gold, n))| ItemScore {
            id: item.id.clone(),
            gold,
            tokens: Vec::with_capacity(n),
            logp_base: Vec::with_capacity(n),
            logp_thought: Vec::with_capacity(n),
        })
        .collect();
    let mut next_done = 0;
    for chunk in seqs.chunks(opts.batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|(_, _, ids)| ids.clone()).collect();
        let deltas = token_deltas_batch(model, &batch, opts.thought_temperature, opts.kernel);
        for ((i, prompt_len, _), d) in chunk.iter().zip(deltas) {
            let answer = d.iter().filter(|t| t.index >= *prompt_len);
            let (base, thought, n) =
                answer.fold((0.0, 0.0, 0), |(b, t, n), x| (b + x.logp_base as f64, t + x.logp_thought as f64, n + 1));
            let s = &mut out[*i];
            s.logp_base.push(base);
            s.logp_thought.push(thought);
            s.tokens.push(n);
        }
        while next_done < out.len() && out[next_done].tokens.len() == golds[next_done].1 {
            on_item(&out[next_done]);
            next_done += 1;
        }
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
