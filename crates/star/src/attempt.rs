//! One STaR generation phase over a batch of questions: a rationale for each with the current
//! model; for the wrong ones, a rationalization with the hint; the outcome of each.

use serde::{Deserialize, Serialize};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use starling_model::batching::generate_continuous;
use starling_model::generate::{GenerateConfig, Generation, TokenEvent};
use starling_model::host::{Blocking, Host, block_on};
use starling_model::prefix::{PrefixStore, SharedPrefix};
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
    /// Whether every step of the completion trained on (kept or rationalized) is right, for
    /// tasks whose steps can be checked (arithmetic); a right answer can come from wrong steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sound: Option<bool>,
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
    /// Where the exemplars' keys and values are kept between batches, with the tag of `model`
    /// in it (see [`PrefixStore`]); `None` computes the whole prompt for every row.
    pub prefixes: Option<(&'a PrefixStore, u64)>,
    /// Rows decoding at once: a finished row takes the next question (continuous batching);
    /// `None`: every question of a call in one batch, rows leaving it as they finish.
    pub max_rows: Option<usize>,
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
        block_on(self.complete_with(items, style, hinted, seed, &mut Blocking, &mut |_| {}))
    }

    /// [`Generator::complete`] with the device reads done by `host`; `on_token` sees every token.
    pub async fn complete_with(
        &self,
        items: &[&Item],
        style: PromptStyle,
        hinted: bool,
        seed: u64,
        host: &mut impl Host,
        on_token: &mut dyn FnMut(TokenEvent<'_>),
    ) -> starling_model::Result<Vec<String>> {
        let out = self.generations_with(items, style, hinted, seed, host, on_token).await?;
        Ok(out.into_iter().map(|g| g.text).collect())
    }

    /// Like [`Generator::complete`], with token ids and finish reasons.
    pub fn generations(
        &self,
        items: &[&Item],
        style: PromptStyle,
        hinted: bool,
        seed: u64,
    ) -> starling_model::Result<Vec<Generation>> {
        block_on(self.generations_with(items, style, hinted, seed, &mut Blocking, &mut |_| {}))
    }

    /// The generations of `items`: the exemplars from the prefix cache, `max_rows` rows at a
    /// time.
    async fn generations_with(
        &self,
        items: &[&Item],
        style: PromptStyle,
        hinted: bool,
        seed: u64,
        host: &mut impl Host,
        on_token: &mut dyn FnMut(TokenEvent<'_>),
    ) -> starling_model::Result<Vec<Generation>> {
        let prompts = self.prompts(items, style, hinted)?;
        let prefix = self.shared_prefix(style, hinted)?;
        let cfg = self.decode_config(seed);
        let rows = self.rows_for(prompts.len());
        generate_continuous(self.model, self.tokenizer, &prompts, prefix.as_ref(), &cfg, rows, on_token, host).await
    }

    fn rows_for(&self, questions: usize) -> usize {
        self.max_rows.unwrap_or(questions).clamp(1, questions.max(1))
    }

    /// The exemplars' cached keys and values (`None` without exemplars or a store). Each prompt
    /// uses as much of it as its tokens share, so a tokenizer that merges across the boundary
    /// costs speed, never correctness.
    pub fn shared_prefix(&self, style: PromptStyle, hinted: bool) -> starling_model::Result<Option<SharedPrefix>> {
        let Some((store, tag)) = self.prefixes else { return Ok(None) };
        if self.exemplars.is_empty() {
            return Ok(None);
        }
        let ids = self.tokenizer.encode(&self.task.exemplar_block(self.exemplars, style, hinted), true)?;
        Ok(Some(store.get(self.model, tag, &ids)?))
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
        block_on(self.attempt_with(items, rationalize, seed, &mut Blocking, &mut |_, _| {}))
    }

    /// [`Generator::attempt`] with the device reads done by `host`; `on_token(hinted, token)`
    /// sees every token of both rounds.
    pub async fn attempt_with(
        &self,
        items: &[&Item],
        rationalize: bool,
        seed: u64,
        host: &mut impl Host,
        on_token: &mut dyn FnMut(bool, TokenEvent<'_>),
    ) -> starling_model::Result<Vec<RationaleRecord>> {
        let first =
            self.complete_with(items, PromptStyle::Rationale, false, seed, host, &mut |t| on_token(false, t)).await?;
        let mut records = classify_rationales(self.task, items, first);
        let wrong = to_rationalize(&records, rationalize);
        if wrong.is_empty() {
            return Ok(records);
        }
        let hinted_items: Vec<&Item> = wrong.iter().map(|&i| items[i]).collect();
        let seed = rationalization_seed(seed);
        let second = self
            .complete_with(&hinted_items, PromptStyle::Rationale, true, seed, host, &mut |t| on_token(true, t))
            .await?;
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
                sound: if ok { task.rationale_is_sound(it, &completion) } else { None },
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
        let leaked = task.leaks_hint(it, &completion);
        let r = &mut records[i];
        if answer.as_deref() == Some(it.gold.as_str()) && !leaked {
            r.outcome = Outcome::Rationalized;
            r.sound = task.rationale_is_sound(it, &completion);
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

/// How an iteration's records become fine-tuning examples: the *plain* question as context
/// (never the hinted one, unless `hint_share` keeps a share of rationalizations with their hint,
/// as the official code's `p_show_hint_save`), the kept or rationalized completion + end-of-text
/// as the target. With `require_sound`, a completion whose steps are not all right is left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainingSet {
    pub require_sound: bool,
    /// Share of rationalized examples trained on with the hinted question as context.
    pub hint_share: f64,
    /// Seeds the draws of `hint_share` (with the iteration).
    pub seed: u64,
}

impl TrainingSet {
    /// How many examples [`TrainingSet::examples`] makes of `records`.
    pub fn count(&self, records: &[RationaleRecord]) -> usize {
        records.iter().filter(|r| self.trains_on(r)).count()
    }

    /// Whether `record` becomes an example.
    pub fn trains_on(&self, record: &RationaleRecord) -> bool {
        record.training_completion().is_some() && (!self.require_sound || record.sound == Some(true))
    }

    /// The examples of iteration `iteration`'s `records`, in record order.
    pub fn examples(
        &self,
        records: &[RationaleRecord],
        items: &std::collections::HashMap<&str, &Item>,
        tokenizer: &Tokenizer,
        eos: Option<u32>,
        iteration: usize,
    ) -> starling_model::Result<Vec<Example>> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x41_6e73 ^ ((iteration as u64) << 40));
        let mut out = Vec::new();
        for r in records {
            let Some(completion) = r.training_completion() else { continue };
            if self.require_sound && r.sound != Some(true) {
                continue;
            }
            let Some(item) = items.get(r.id.as_str()) else {
                return Err(starling_model::ModelError::Input(format!(
                    "rationale record {:?} names no question of this run's training set",
                    r.id
                )));
            };
            let with_hint = r.outcome == Outcome::Rationalized && self.hint_share > 0.0 && {
                let draw: f64 = rng.random();
                draw < self.hint_share
            };
            let context = if with_hint { &item.hinted_question } else { &item.question };
            out.push(prompt_completion_example(tokenizer, context, completion, eos)?);
        }
        Ok(out)
    }
}

/// Fine-tuning examples from an iteration's records with the paper's defaults (see
/// [`TrainingSet`]): the plain question as context, every kept or rationalized completion.
pub fn training_examples(
    records: &[RationaleRecord],
    items: &std::collections::HashMap<&str, &Item>,
    tokenizer: &Tokenizer,
    eos: Option<u32>,
) -> starling_model::Result<Vec<Example>> {
    TrainingSet::default().examples(records, items, tokenizer, eos, 0)
}
