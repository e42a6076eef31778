//! The multi-hop demo's settings, and what a Quiet-STaR continuation of its warm start needs:
//! the documents, the training settings and the thinking model. Shared by the demo
//! ([`crate::hops_demo`], native) and the page's Learn view (which runs the continuation in the
//! browser, so nothing here touches files or clocks).

use serde::{Deserialize, Serialize};
use starling_model::{Tokenizer, Transformer};
use starling_tasks::hops::{CHAIN_CLOSE, CHAIN_OPEN, HopDocument, HopForm, HopSplit, HopTask, HopsCard};
use starling_thought::Kernel;
use starling_train::trainer::TrainConfig;

use crate::config::{Thinking, ThoughtSource};
use crate::stepper::QuietRunConfig;
use crate::{QuietConfig, QuietError, QuietModel, Result};

/// The file beside a saved warm start that holds the settings it was made with
/// ([`HopsSettings`] as JSON): what the page needs to run the Quiet-STaR continuation again.
pub const LESSON_FILE: &str = "lesson.json";

/// The demo's settings (the CLI's defaults are its documented defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HopsSettings {
    pub task: HopTask,
    /// Queries per document.
    pub queries: usize,
    /// Probability that a warm-start query is written in the explicit form.
    pub explicit_share: f64,
    pub pretrain_steps: usize,
    /// Steps of each continuation (the plain same-compute one runs more).
    pub steps: usize,
    pub batch_size: usize,
    pub pretrain_lr: f64,
    pub lr: f64,
    pub layers: usize,
    pub hidden: usize,
    /// Standard deviation of the initial weights (the usual 0.02 left a model of width 64 on a
    /// plateau without lookups for 3 000 steps: README).
    pub init_std: f64,
    pub seeds: Vec<u64>,
    /// Held-out documents scored (one answer each: the last query's).
    pub eval_docs: usize,
    /// Steps of the plain same-compute continuation; `None`: as many as fit the Quiet-STaR
    /// continuation's measured training time (then the number depends on the machine).
    #[serde(default)]
    pub same_compute_steps: Option<usize>,
    #[serde(skip)]
    pub kernel: Kernel,
    pub quiet: QuietConfig,
}

impl HopsSettings {
    /// Tokens of every document: the table, then `queries` compressed queries.
    pub fn doc_len(&self) -> usize {
        self.task.table_len() + self.queries * self.task.query_len(HopForm::Compressed)
    }

    /// What the page needs to pose questions to a model of these settings.
    pub fn card(&self) -> HopsCard {
        HopsCard { task: self.task, queries: self.queries }
    }

    /// The position whose next token is the last query's answer (its `=`).
    pub fn answer_position(&self) -> usize {
        self.doc_len() - 3
    }

    /// What every continuation of seed `seed` trains on: compressed documents of training
    /// tables, as token ids.
    pub fn continuation_sequences(&self, tok: &Tokenizer, seed: u64) -> Result<Vec<Vec<u32>>> {
        let docs = self.task.documents(HopSplit::Train, self.steps * self.batch_size, self.queries, seed);
        encode_docs(self, tok, &docs, |_, _| HopForm::Compressed)
    }

    /// The Quiet-STaR continuation's settings for seed `seed`: thoughts from `source` at the
    /// last query's `=`; `policy` false drops the policy term (the ablation; always dropped when
    /// nothing is sampled).
    pub fn continuation(&self, seed: u64, source: ThoughtSource, policy: bool) -> QuietRunConfig {
        let mut quiet = self.quiet.clone();
        if !policy || source != ThoughtSource::Sampled {
            quiet.policy_loss_weight = 0.0;
        }
        QuietRunConfig {
            train: train_config(self, self.steps, self.lr, seed.wrapping_add(1)),
            quiet,
            loss_chunk: None,
            thinking: Thinking { positions: Some((self.answer_position(), self.answer_position() + 1)), source },
        }
    }

    /// The warm start as a Quiet-STaR model about to learn to think: its thought markers are
    /// the chain's brackets (which the warm start learned to write a chain between).
    pub fn thinking_model(
        &self,
        warm: Transformer,
        tok: &Tokenizer,
        seed: u64,
        cfg: &QuietRunConfig,
    ) -> Result<QuietModel> {
        let (open, close) = (CHAIN_OPEN.to_string(), CHAIN_CLOSE.to_string());
        QuietModel::with_markers(warm, tok, cfg.quiet.clone(), seed, &open, &close)
    }

    pub fn validate(&self) -> Result<()> {
        self.task.validate().map_err(QuietError::Config)?;
        self.quiet.validate()?;
        let bad = |m: String| Err(QuietError::Config(m));
        if self.queries < 1 || self.seeds.is_empty() || self.eval_docs < 1 {
            return bad("the demo needs at least one query per document, one seed and one held-out document".into());
        }
        if !(0.0..=1.0).contains(&self.explicit_share) {
            return bad(format!("explicit_share must be within 0..=1 (got {})", self.explicit_share));
        }
        if self.quiet.n_thought < self.task.max_hops {
            return bad(format!(
                "a thought of {} tokens cannot write a chain of {} hops",
                self.quiet.n_thought, self.task.max_hops
            ));
        }
        Ok(())
    }
}

/// Token ids of documents, query q of document i in `form(i, q)`, cut to the demo's document
/// length.
pub(crate) fn encode_docs(
    s: &HopsSettings,
    tok: &Tokenizer,
    docs: &[HopDocument],
    form: impl Fn(usize, usize) -> HopForm,
) -> Result<Vec<Vec<u32>>> {
    let len = s.doc_len();
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            let mut ids = tok.encode(&s.task.text_with(d, |q| form(i, q)), false)?;
            ids.truncate(len);
            Ok(ids)
        })
        .collect()
}

pub(crate) fn train_config(s: &HopsSettings, steps: usize, lr: f64, seed: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: s.batch_size,
        max_len: s.doc_len(),
        lr,
        warmup_steps: (steps / 20).clamp(1, 100),
        seed,
        ..TrainConfig::default()
    }
}
