//! One STaR generation phase over a batch of questions: a rationale for each with the current
//! model; for the wrong ones, a rationalization with the hint; the outcome of each.

use serde::{Deserialize, Serialize};

use starling_model::generate::{GenerateConfig, Generation, generate_ids};
use starling_model::{Tokenizer, Transformer};
use starling_tasks::item::STOP_STRINGS;
use starling_tasks::{Exemplar, Item, PromptStyle, TaskKind};
use starling_train::Example;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The model's own rationale reached the gold answer.
    Kept,
    /// The rationale was wrong, but the hinted one reached the gold answer (trained on without the hint).
    Rationalized,
    /// Neither reached the gold answer (or the rationalization leaked the hint).
    Rejected,
}

/// What happened to one training question in one iteration (a line of `rationales.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RationaleRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub outcome: Outcome,
    /// The model's completion of the plain question, and the answer read from it.
    pub completion: String,
    pub answer: Option<String>,
    /// The completion of the hinted question (when the first was wrong and rationalization is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationalization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationalization_answer: Option<String>,
    /// The rationalization repeated the hint's text, so it cannot be trained on without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaked_hint: bool,
}

impl RationaleRecord {
    /// The completion to fine-tune on, if this question yielded one.
    pub fn training_completion(&self) -> Option<&str> {
        match self.outcome {
            Outcome::Kept => Some(&self.completion),
            Outcome::Rationalized => self.rationalization.as_deref(),
            Outcome::Rejected => None,
        }
    }
}

/// How to generate: prompt exemplars, decoding, and whether to rationalize.
pub struct Generator<'a> {
    pub model: &'a Transformer,
    pub tokenizer: &'a Tokenizer,
    pub task: TaskKind,
    pub exemplars: &'a [Exemplar],
    pub decode: GenerateConfig,
}

impl Generator<'_> {
    /// Greedy/sampled completions of `items` in one batch, with or without the hint.
    pub fn complete(
        &self,
        items: &[&Item],
        style: PromptStyle,
        hinted: bool,
        seed: u64,
    ) -> starling_model::Result<Vec<String>> {
        Ok(self.generations(items, style, hinted, seed)?.into_iter().map(|g| g.text).collect())
    }

    /// Like [`Generator::complete`], with token ids and finish reasons.
    pub fn generations(
        &self,
        items: &[&Item],
        style: PromptStyle,
        hinted: bool,
        seed: u64,
    ) -> starling_model::Result<Vec<Generation>> {
        let prompts = self.prompts(items, style, hinted)?;
        generate_ids(self.model, self.tokenizer, &prompts, &self.decode_config(seed), &mut |_| {})
    }

    /// The tokenized prompts of `items`, with or without the hint.
    pub fn prompts(&self, items: &[&Item], style: PromptStyle, hinted: bool) -> starling_model::Result<Vec<Vec<u32>>> {
        items
            .iter()
            .map(|it| self.tokenizer.encode(&self.task.prompt(self.exemplars, it, style, hinted), true))
            .collect()
    }

    /// Decoding settings for one batch: the configured ones, seeded, stopping at the task's
    /// stop strings (the end of an answer).
    pub fn decode_config(&self, seed: u64) -> GenerateConfig {
        let mut cfg = self.decode.clone();
        cfg.seed = seed;
        for s in STOP_STRINGS {
            if !cfg.stop_strings.iter().any(|x| x == s) {
                cfg.stop_strings.push(s.to_string());
            }
        }
        cfg
    }

    /// Rationales for a batch of training questions, then rationalizations of the wrong ones
    /// (with the same model), classified. `seed` makes sampled decoding repeatable per batch.
    pub fn attempt(
        &self,
        items: &[&Item],
        rationalize: bool,
        seed: u64,
    ) -> starling_model::Result<Vec<RationaleRecord>> {
        let first = self.complete(items, PromptStyle::Rationale, false, seed)?;
        let mut records = classify_rationales(self.task, items, first);
        let wrong = to_rationalize(&records, rationalize);
        if wrong.is_empty() {
            return Ok(records);
        }
        let hinted_items: Vec<&Item> = wrong.iter().map(|&i| items[i]).collect();
        let second = self.complete(&hinted_items, PromptStyle::Rationale, true, rationalization_seed(seed))?;
        apply_rationalizations(self.task, items, &mut records, &wrong, second);
        Ok(records)
    }
}

/// Step 1 of an attempt: each item's own completion, kept when it reaches the gold answer.
pub fn classify_rationales(task: TaskKind, items: &[&Item], completions: Vec<String>) -> Vec<RationaleRecord> {
    items
        .iter()
        .zip(completions)
        .map(|(it, completion)| {
            let answer = task.extract(it, &completion);
            let ok = answer.as_deref() == Some(it.gold.as_str());
            RationaleRecord {
                id: it.id.clone(),
                group: it.group.clone(),
                outcome: if ok { Outcome::Kept } else { Outcome::Rejected },
                completion: normalize_completion(&completion),
                answer,
                rationalization: None,
                rationalization_answer: None,
                leaked_hint: false,
            }
        })
        .collect()
}

/// Indices of the records that step 2 rationalizes with the hint (none when rationalization is off).
pub fn to_rationalize(records: &[RationaleRecord], rationalize: bool) -> Vec<usize> {
    if !rationalize {
        return Vec::new();
    }
    (0..records.len()).filter(|&i| records[i].outcome == Outcome::Rejected).collect()
}

/// The seed of step 2's decoding, derived from step 1's so the two rounds draw differently.
pub fn rationalization_seed(seed: u64) -> u64 {
    seed ^ 0x5e_ed0f_4a11
}

/// Step 2 of an attempt: the hinted completions of `records[wrong[k]]`; one that reaches the gold
/// answer without repeating the hint is rationalized (and trained on without the hint).
pub fn apply_rationalizations(
    task: TaskKind,
    items: &[&Item],
    records: &mut [RationaleRecord],
    wrong: &[usize],
    completions: Vec<String>,
) {
    for (&i, completion) in wrong.iter().zip(completions) {
        let it = items[i];
        let answer = task.extract(it, &completion);
        let leaked = it.leaks_hint(&completion);
        let r = &mut records[i];
        if answer.as_deref() == Some(it.gold.as_str()) && !leaked {
            r.outcome = Outcome::Rationalized;
        }
        r.leaked_hint = leaked;
        r.rationalization = Some(normalize_completion(&completion));
        r.rationalization_answer = answer;
    }
}

/// A completion as it is stored and trained on: trailing blank space removed, one final newline.
pub fn normalize_completion(text: &str) -> String {
    format!("{}\n", text.trim_end())
}

/// `prompt` + `completion` tokenized together (as the model saw them when generating: tokenizers
/// such as SentencePiece's mark the start of every separately encoded text), with the loss on the
/// completion's tokens and a final end-of-text.
pub fn prompt_completion_example(
    tokenizer: &Tokenizer,
    prompt: &str,
    completion: &str,
    eos: Option<u32>,
) -> starling_model::Result<Example> {
    let mut ids = tokenizer.encode(&format!("{prompt}{completion}"), true)?;
    let prompt_ids = tokenizer.encode(prompt, true)?;
    // Tokens shared with the prompt alone are context; a token spanning the boundary is learned.
    let context = ids.iter().zip(&prompt_ids).take_while(|(a, b)| a == b).count();
    ids.extend(eos);
    let train = (0..ids.len()).map(|i| i >= context).collect();
    Ok(Example { ids, train })
}

/// Fine-tuning examples from an iteration's records: the *plain* question (never the hinted
/// one) as context, the kept completion + end-of-text as the target.
pub fn training_examples(
    records: &[RationaleRecord],
    items: &std::collections::HashMap<&str, &Item>,
    tokenizer: &Tokenizer,
    eos: Option<u32>,
) -> starling_model::Result<Vec<Example>> {
    let mut out = Vec::new();
    for r in records {
        let Some(completion) = r.training_completion() else { continue };
        let Some(item) = items.get(r.id.as_str()) else {
            return Err(starling_model::ModelError::Input(format!(
                "rationale record {:?} names no question of this run's training set",
                r.id
            )));
        };
        out.push(prompt_completion_example(tokenizer, &item.question, completion, eos)?);
    }
    Ok(out)
}
