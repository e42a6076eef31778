//! Quiet-STaR hyperparameters. `QuietConfig::default()` is Starling's preset;
//! `QuietPreset::Official.config()` is the official code's objective (ezelikman/quiet-star).
//! README's table lists every difference between the two.

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
    /// How the mixing head's output z becomes the mixing weight w.
    pub mixing: MixingWeight,
    /// How the policy loss combines the log-probabilities of a thought's tokens.
    pub policy_reduction: PolicyReduction,
    /// The mixing weight a fresh mixing head starts at. 0 (the official code's and the
    /// default) starts exactly at the base model, but while w = 0 the mixed prediction ignores
    /// the thought, so the reward is 0 for every thought and the policy term learns nothing;
    /// a head whose average gradient says "thoughts hurt" then stays there. Used only when a
    /// head is created.
    pub initial_mixing_weight: f64,
}

/// The mixing weight w from the mixing head's output z (`h = h_base + w·(h_post − h_base)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MixingWeight {
    /// w = z, unbounded: the official code's.
    Linear,
    /// w = tanh(|z|) ∈ [0, 1), starting at exactly 0 with a non-zero gradient (Starling's;
    /// README says why).
    TanhAbs,
}

/// How the REINFORCE loss combines a thought's token log-probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyReduction {
    /// Mean over the thought's tokens: the official code (one loss per sampled token, averaged).
    Mean,
    /// Sum over the thought's tokens: log p(thought), the textbook REINFORCE term (n_thought ×
    /// stronger at the same weight).
    Sum,
}

/// Where a training step takes thoughts and what they are: the controls of an experiment
/// (pause and random thoughts) train through the same loss with thoughts that are not sampled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thinking {
    /// Thoughts only after positions `from..to` of every training sequence (those whose
    /// predictions the experiment scores); `None`: after every position, as in the paper.
    /// Every position still trains the base language-model loss.
    pub positions: Option<(usize, usize)>,
    pub source: ThoughtSource,
}

impl Thinking {
    pub fn is_default(&self) -> bool {
        *self == Thinking::default()
    }

    /// The thinking positions of sequences of `len` tokens.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        self.positions.map_or(0..len, |(from, to)| from..to)
    }

    pub fn validate(&self, len: usize, vocab: usize) -> Result<()> {
        let bad = |m: String| Err(QuietError::Config(m));
        if let Some((from, to)) = self.positions
            && !(from < to && to <= len)
        {
            return bad(format!("thinking positions {from}..{to} do not fit sequences of {len} tokens"));
        }
        match &self.source {
            ThoughtSource::Sampled => Ok(()),
            ThoughtSource::Pause { token } if (*token as usize) < vocab => Ok(()),
            ThoughtSource::Random { tokens } if !tokens.is_empty() && tokens.iter().all(|&t| (t as usize) < vocab) => {
                Ok(())
            }
            other => bad(format!("thought source {other:?} names tokens outside the vocabulary of {vocab}")),
        }
    }
}

/// What fills a thought in training.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThoughtSource {
    /// Sampled from the model (Quiet-STaR).
    #[default]
    Sampled,
    /// The same token repeated: a pause (filler) thought, extra computation with no content.
    Pause { token: u32 },
    /// Tokens drawn uniformly from `tokens`: a thought with content unrelated to the text.
    Random { tokens: Vec<u32> },
}

/// A named set of Quiet-STaR settings: the objective and the training schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuietPreset {
    /// The official code's objective exactly (ezelikman/quiet-star, `quiet-star-train.py` and
    /// `modeling_mistral.py`): 9 sampled thought tokens in training (`n_ahead − 3`), an
    /// unbounded linear mixing weight, the policy loss averaged over thought tokens, no
    /// post-thought loss; a constant learning rate after warm-up.
    Official,
    /// Starling's: what it measured to train better at small scale (README's table).
    Starling,
}

impl QuietPreset {
    /// The objective of this preset.
    pub fn config(self) -> QuietConfig {
        match self {
            QuietPreset::Starling => QuietConfig::default(),
            QuietPreset::Official => QuietConfig {
                n_thought: 9,
                post_thought_loss_weight: 0.0,
                mixing: MixingWeight::Linear,
                policy_reduction: PolicyReduction::Mean,
                ..QuietConfig::default()
            },
        }
    }

    /// Whether the learning rate stays constant after warm-up (official) or decays (Starling).
    pub fn constant_lr(self) -> bool {
        self == QuietPreset::Official
    }
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
            // Checkpoints saved before these fields existed load with these, their behaviour.
            mixing: MixingWeight::TanhAbs,
            policy_reduction: PolicyReduction::Sum,
            initial_mixing_weight: 0.0,
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
        let w0 = self.initial_mixing_weight;
        let w0_ok = match self.mixing {
            MixingWeight::Linear => w0.is_finite(),
            MixingWeight::TanhAbs => (0.0..1.0).contains(&w0),
        };
        if !w0_ok {
            return bad(format!("initial_mixing_weight {w0} is out of reach of the {} mixing weight", self.mixing));
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

/// Parses the kebab-case names used on the command line and in JSON.
macro_rules! named {
    ($ty:ident { $($variant:ident = $name:literal),+ }) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!("`{s}`: expected one of {}", [$($name),+].join(", "))),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $($ty::$variant => $name,)+ })
            }
        }
    };
}

named!(MixingWeight { Linear = "linear", TanhAbs = "tanh-abs" });
named!(PolicyReduction { Mean = "mean", Sum = "sum" });
named!(QuietPreset { Official = "official", Starling = "starling" });
