//! Settings of a STaR run. Defaults follow the official code where it applies to any model
//! (steps growing 20% per iteration, near-greedy decoding, loss on rationale + answer only).

use serde::{Deserialize, Serialize};

use starling_model::sampling::SamplingConfig;
use starling_tasks::TaskKind;
use starling_train::TrainConfig;
use starling_train::optim::AdamWConfig;
use starling_train::schedule::ScheduleKind;

use crate::gate::BaseGate;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StarConfig {
    pub task: TaskKind,
    /// Outer iterations (Algorithm 1's N).
    pub iterations: usize,
    /// Rationalize failures with the hint (off: the "STaR without rationalization" ablation).
    pub rationalize: bool,
    /// Few-shot exemplars in generation prompts (0 for a model that learned the format).
    pub shots: usize,
    /// Optimizer steps of iteration 1; iteration n trains `first_steps · step_growth^(n-1)`.
    pub first_steps: usize,
    pub step_growth: f64,
    /// Fine-tuning settings (its `steps` is replaced per iteration).
    pub train: TrainConfig,
    /// Decoding for rationale generation and rationalization.
    pub sampling: SamplingConfig,
    pub max_new_tokens: usize,
    /// Questions per generation step (the unit a killed run resumes from).
    pub gen_batch: usize,
    /// Fine-tune each iteration for this many passes over its examples instead of the step
    /// schedule (`first_steps`, `step_growth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// Rows decoding at once within a step: a finished row takes the step's next question
    /// (continuous batching); `None`: all `gen_batch` questions at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen_rows: Option<usize>,
    /// Stop when dev accuracy has not improved on its best for this many iterations (0: never).
    pub patience: usize,
    pub seed: u64,
    /// What the base model must do before STaR starts on it (checked after iteration 0, which
    /// then also scores the base model with the hint); `None`: no gate.
    #[serde(default)]
    pub gate: Option<BaseGate>,
    /// Train only on rationales whose every step is right (tasks whose steps can be checked);
    /// the paper filters on the final answer alone.
    #[serde(default)]
    pub require_sound: bool,
    /// Share of rationalizations trained on with the hint still in the question (the official
    /// code's `p_show_hint_save`, default 0).
    #[serde(default)]
    pub p_show_hint_save: f64,
    /// Prompt fine-tuned models without exemplars (the official code's `--no_prompt`): rationale
    /// generation from iteration 2 on, and the dev evaluation of every fine-tuned model.
    #[serde(default)]
    pub no_prompt: bool,
}

/// STaR's fine-tuning recipe, the official code's: AdamW without weight decay, a constant
/// learning rate after `warmup_steps`, gradients clipped to norm 1, no evaluation during
/// training. Its `steps` and `seed` are set per iteration by the loop.
pub fn fine_tuning(batch_size: usize, lr: f64, warmup_steps: usize, max_len: usize) -> TrainConfig {
    TrainConfig {
        batch_size,
        lr,
        warmup_steps,
        max_len,
        schedule: ScheduleKind::Constant,
        min_lr_ratio: 1.0,
        adamw: AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() },
        grad_clip: Some(1.0),
        eval_every: None,
        keep_checkpoints: 1,
        ..TrainConfig::default()
    }
}

impl StarConfig {
    /// The settings a run keeps for life: all but the stopping rules (iterations and patience),
    /// which a resumed run may change. Two processes of one run must agree on these.
    pub fn fixed_part(&self) -> StarConfig {
        StarConfig { iterations: 0, patience: 0, ..self.clone() }
    }

    /// Optimizer steps of iteration `n` (1-based).
    /// The fine-tuning settings of iteration `n` on `examples` examples: its step count, a seed
    /// of its own, no evaluation. With `epochs`, warm-up is at most a quarter of the steps (a
    /// short iteration would otherwise never reach its learning rate).
    pub fn train_config_for(&self, n: usize, examples: usize) -> TrainConfig {
        let steps = self.steps_for_examples(n, examples);
        let warmup_steps =
            if self.epochs.is_some() { self.train.warmup_steps.min(steps / 4) } else { self.train.warmup_steps };
        TrainConfig {
            steps,
            warmup_steps,
            seed: self.seed.wrapping_add(n as u64),
            eval_every: None,
            ..self.train.clone()
        }
    }

    /// How the records of an iteration become fine-tuning examples.
    pub fn training_set(&self) -> crate::attempt::TrainingSet {
        crate::attempt::TrainingSet {
            require_sound: self.require_sound,
            hint_share: self.p_show_hint_save,
            seed: self.seed,
        }
    }

    /// Optimizer steps of iteration `n` fine-tuning on `records`' examples.
    pub fn steps_for_records(&self, n: usize, records: &[crate::attempt::RationaleRecord]) -> usize {
        self.steps_for_examples(n, self.training_set().count(records))
    }

    pub fn steps_for(&self, n: usize) -> usize {
        let s = self.first_steps as f64 * self.step_growth.powi(n.saturating_sub(1) as i32);
        s.round().max(1.0) as usize
    }

    /// Optimizer steps of iteration `n`, which fine-tunes on `examples` examples: with `epochs`,
    /// that many passes over them (a small kept set is not repeated dozens of times); else the
    /// official schedule, [`StarConfig::steps_for`].
    pub fn steps_for_examples(&self, n: usize, examples: usize) -> usize {
        match self.epochs {
            Some(e) => {
                let per_step = (self.train.batch_size * self.train.grad_accum.max(1)).max(1);
                (e * examples as f64 / per_step as f64).ceil().max(1.0) as usize
            }
            None => self.steps_for(n),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.iterations == 0 {
            return Err("iterations must be at least 1".into());
        }
        if self.first_steps == 0 {
            return Err("the first iteration needs at least one training step".into());
        }
        if !(self.step_growth >= 1.0 && self.step_growth.is_finite()) {
            return Err("step growth must be at least 1 (1.2 = 20% more steps each iteration)".into());
        }
        if self.gen_batch == 0 || self.max_new_tokens == 0 {
            return Err("generation batch and max new tokens must be at least 1".into());
        }
        if let Some(e) = self.epochs
            && !(e > 0.0 && e.is_finite())
        {
            return Err(format!("epochs must be a positive number (got {e})"));
        }
        if self.gen_rows == Some(0) {
            return Err("generation rows must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.p_show_hint_save) {
            return Err(format!("p_show_hint_save must be a share in [0, 1] (got {})", self.p_show_hint_save));
        }
        if self.require_sound && !self.task.steps_checkable() {
            return Err(format!(
                "require_sound needs a task whose rationale steps can be checked (arithmetic), not {}",
                self.task.name()
            ));
        }
        self.sampling.validate().map_err(|e| e.to_string())?;
        self.train.validate().map_err(|e| e.to_string())
    }
}

/// A complete configuration for unit tests of this crate: 5 iterations, 40 steps growing 20%,
/// greedy decoding.
#[cfg(test)]
pub(crate) fn example(task: TaskKind) -> StarConfig {
    StarConfig {
        task,
        iterations: 5,
        rationalize: true,
        shots: 0,
        first_steps: 40,
        step_growth: 1.2,
        train: TrainConfig::default(),
        sampling: SamplingConfig::greedy(),
        max_new_tokens: 10,
        gen_batch: 8,
        gen_rows: None,
        epochs: None,
        patience: 0,
        seed: 0,
        gate: None,
        require_sound: false,
        p_show_hint_save: 0.0,
        no_prompt: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_grow_twenty_percent_per_iteration() {
        let c = example(TaskKind::Arithmetic);
        assert_eq!((1..=5).map(|n| c.steps_for(n)).collect::<Vec<_>>(), vec![40, 48, 58, 69, 83]);
        assert_eq!(c.steps_for_examples(2, 1000), 48, "without epochs the schedule decides");
        let per_epoch = StarConfig { epochs: Some(2.0), ..c.clone() };
        let batch = per_epoch.train.batch_size * per_epoch.train.grad_accum.max(1);
        assert_eq!(per_epoch.steps_for_examples(2, 10 * batch), 20);
        assert_eq!(per_epoch.steps_for_examples(1, 1), 1);
        // Warm-up fits inside a short iteration, and only under `epochs`.
        let short = per_epoch.train_config_for(1, 2 * batch);
        assert_eq!((short.steps, short.warmup_steps), (4, 1));
        assert_eq!(c.train_config_for(1, 2 * batch).warmup_steps, c.train.warmup_steps);
        assert_eq!(short.seed, per_epoch.seed + 1);
        assert!(c.validate().is_ok());
        assert!(StarConfig { step_growth: 0.5, ..c.clone() }.validate().is_err());
        assert!(StarConfig { iterations: 0, ..c.clone() }.validate().is_err());
        assert!(StarConfig { p_show_hint_save: 1.5, ..c.clone() }.validate().is_err());
        assert!(StarConfig { require_sound: true, task: TaskKind::Csqa, ..c }.validate().is_err());
    }
}
