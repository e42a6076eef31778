//! Quiet-STaR hyperparameters. Defaults are the official code's (ezelikman/quiet-star) where
//! the paper is silent; README lists where Starling differs.

use serde::{Deserialize, Serialize};

use crate::{QuietError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuietConfig {
    /// Thought tokens sampled between the start and end markers (official `n_ahead = 12` counts
    /// the two markers, so 10).
    pub n_thought: usize,
    /// True tokens after the thought whose likelihood trains and rewards it (`n_ahead_talk`).
    pub n_talk: usize,
    /// Thoughts sampled per position; the REINFORCE baseline is their mean reward (`n_passes`).
    pub n_passes: usize,
    /// Start/end embeddings are stored divided by this and multiplied when used: an effective
    /// learning rate this many times larger (official ×100).
    pub embedding_multiplier: f64,
    /// Temperature of the thought sampler.
    pub thought_temperature: f64,
    /// Temperature of the thought log-probabilities in the policy loss (official 3).
    pub reinforce_temperature: f64,
    /// Clamp rewards below 0 to 0 (official).
    pub drop_negative_rewards: bool,
    /// Weight of the ordinary next-token loss (official `original_loss_weight = 0.5`).
    pub base_loss_weight: f64,
    /// Weight of the mean talk-token loss through the mixing head.
    pub talk_loss_weight: f64,
    /// Weight of the REINFORCE loss (official `policy_loss_beta = 1e6`).
    pub policy_loss_weight: f64,
    /// Weight of the NLL of the talk tokens predicted from the post-thought state alone (not
    /// in the official code). With w bounded to [0, 1] and starting at 0, the mixed loss gives
    /// the thought branch no gradient while w = 0; this term trains it regardless.
    pub post_thought_loss_weight: f64,
}

impl Default for QuietConfig {
    fn default() -> Self {
        Self {
            n_thought: 10,
            n_talk: 4,
            n_passes: 2,
            embedding_multiplier: 100.0,
            thought_temperature: 1.0,
            reinforce_temperature: 3.0,
            drop_negative_rewards: true,
            base_loss_weight: 0.5,
            talk_loss_weight: 0.5,
            policy_loss_weight: 1e6,
            post_thought_loss_weight: 0.5,
        }
    }
}

impl QuietConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(QuietError::Config(m));
        if self.n_thought < 1 {
            return bad(format!(
                "n_thought must be at least 1 (got {}): a thought needs a token between its markers",
                self.n_thought
            ));
        }
        if self.n_talk < 1 {
            return bad("n_talk must be at least 1".into());
        }
        if self.n_passes < 1 {
            return bad("n_passes must be at least 1".into());
        }
        for (name, v) in [
            ("embedding_multiplier", self.embedding_multiplier),
            ("thought_temperature", self.thought_temperature),
            ("reinforce_temperature", self.reinforce_temperature),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return bad(format!("{name} must be positive (got {v})"));
            }
        }
        for (name, v) in [
            ("base_loss_weight", self.base_loss_weight),
            ("talk_loss_weight", self.talk_loss_weight),
            ("policy_loss_weight", self.policy_loss_weight),
            ("post_thought_loss_weight", self.post_thought_loss_weight),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{name} must be ≥ 0 (got {v})"));
            }
        }
        Ok(())
    }

    /// Slots one thought occupies after a position: start, the tokens, end.
    pub fn thought_slots(&self) -> usize {
        self.n_thought + 2
    }

    /// Thought steps of a training pass: start, thought, end, then the talk tokens but the last.
    pub fn train_steps(&self) -> usize {
        self.n_thought + 1 + self.n_talk
    }
}
