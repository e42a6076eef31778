//! The built-in demonstration (`starling quiet demo`): does thinking help? A tiny model learns
//! two-digit sums `a+b=c` from a stream of them; the digits of c are the hard tokens, where a
//! thought has work to do. As in the paper (Quiet-STaR starts from a pretrained model), a base
//! model is pretrained first; then the same base weights are trained on for the same steps on
//! the same batches — once as a plain language model, once with Quiet-STaR — and both are scored
//! on held-out sums: NLL of the sum digits (the plain model's, the Quiet-STaR model's with its
//! thoughts, and the Quiet-STaR model's own base predictions without them) and of the other tokens.

use std::fmt::Write as _;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use starling_model::score::token_logprobs;
use starling_model::weights::init_transformer;
use starling_model::{ModelConfig, Tokenizer, Transformer};
use starling_thought::Kernel;
use starling_train::data::Example;
use starling_train::data::fixed_windows;
use starling_train::trainer::{StepMetrics, TrainConfig, TrainError, TrainObserver, train};

use crate::analyze::token_deltas;
use crate::loss::LossStats;
use crate::trainer::{QuietObserver, QuietRunConfig, QuietStepMetrics, train_quiet};
use crate::{QuietConfig, QuietModel, Result};

/// The demo's settings (the CLI's defaults: one layer of width 64, 300 + 300 steps).
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// Plain pretraining steps of the shared base model.
    pub base_steps: usize,
    /// Steps of each continuation (plain and Quiet-STaR).
    pub steps: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    pub lr: f64,
    pub layers: usize,
    /// Width of the model (4 query heads, 2 key/value heads).
    pub hidden: usize,
    pub seed: u64,
    /// Held-out sequences scored at the end.
    pub eval_sequences: usize,
    pub kernel: Kernel,
    pub quiet: QuietConfig,
}

/// Progress of the demo's three training phases.
pub trait DemoObserver {
    /// A phase starts: `name` is "base model", "plain LM" or "quiet-star".
    fn phase(&mut self, _name: &str, _steps: usize) {}
    fn plain_step(&mut self, _m: &StepMetrics) {}
    fn quiet_step(&mut self, _m: &QuietStepMetrics) {}
}

/// A mean of per-token values.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Mean {
    sum: f64,
    pub count: usize,
}

impl Mean {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
    }

    pub fn value(&self) -> f64 {
        self.sum / self.count.max(1) as f64
    }
}

/// NLLs (nats per token) of the sum digits ("hard") and of the other tokens ("easy").
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SplitNll {
    pub hard: Mean,
    pub easy: Mean,
}

/// What the demo measured, and the trained Quiet-STaR model.
pub struct DemoResult {
    pub settings: DemoSettings,
    pub model_config: ModelConfig,
    /// Sum-digit NLL of the shared base model.
    pub base_nll: f64,
    /// Held-out sequences scored.
    pub held_out: usize,
    pub plain: SplitNll,
    /// The Quiet-STaR model with its thoughts (mixed predictions).
    pub quiet: SplitNll,
    /// The Quiet-STaR model's own base predictions, without thoughts.
    pub quiet_base: SplitNll,
    /// Sum-digit NLL from the post-thought state alone (w = 1).
    pub post_thought_hard: Mean,
    /// Mean mixing weight on the sum digits.
    pub mix_weight_hard: Mean,
    pub last_step: LossStats,
    /// A held-out token a thought helped a lot, in words.
    pub example: Option<String>,
    pub plain_seconds: f64,
    pub quiet_seconds: f64,
    pub model: QuietModel,
    pub tokenizer: Tokenizer,
}

const ALPHABET: &str = "0123456789+=\n-";

fn sums(n: usize, rng: &mut ChaCha8Rng) -> String {
    (0..n)
        .map(|_| {
            let (a, b) = (rng.random_range(0..100u32), rng.random_range(0..100u32));
            format!("{a}+{b}={}\n", a + b)
        })
        .collect()
}

/// Positions (index of the predicted token) that are digits of a sum: after `=`, before `\n`.
fn sum_digit_mask(ids: &[u32], tok: &Tokenizer) -> Vec<bool> {
    let eq = tok.token_to_id("=");
    let nl = tok.token_to_id("\n");
    let mut inside = false;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        out.push(inside && Some(id) != nl);
        if Some(id) == eq {
            inside = true;
        } else if Some(id) == nl {
            inside = false;
        }
    }
    out
}

/// Runs the demo on `device` (training on its autodiff twin).
pub fn run_demo(s: &DemoSettings, device: &Device, obs: &mut dyn DemoObserver) -> Result<DemoResult> {
    let tok = Tokenizer::char_level(ALPHABET, &["<pad>"])?;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let needed = (s.base_steps + s.steps) * s.batch_size * s.seq_len / 8 + 64;
    let train_seqs = fixed_windows(&tok.encode(&sums(needed, &mut rng), false)?, s.seq_len);
    let mut eval_rng = ChaCha8Rng::seed_from_u64(s.seed ^ 0xe7a1);
    let eval_ids = tok.encode(&sums(s.eval_sequences * s.seq_len / 8 + 16, &mut eval_rng), false)?;
    let eval_seqs: Vec<Vec<u32>> = fixed_windows(&eval_ids, s.seq_len).into_iter().take(s.eval_sequences).collect();

    let model_config = ModelConfig::builder(tok.vocab_size())
        .layers(s.layers)
        .hidden(s.hidden)
        .heads(4, 2)
        .context(128)
        .special_tokens(&tok)
        .build()?;
    let train_cfg = TrainConfig {
        steps: s.steps,
        batch_size: s.batch_size,
        max_len: s.seq_len,
        lr: s.lr,
        warmup_steps: 20,
        seed: s.seed,
        ..TrainConfig::default()
    };
    let ad = device.clone().autodiff();

    // The shared base model: plain pretraining.
    let examples: Vec<Example> = train_seqs.iter().map(|q| Example::full(q.clone())).collect();
    let base_cfg = TrainConfig { steps: s.base_steps, seed: s.seed.wrapping_add(1), ..train_cfg.clone() };
    obs.phase("base model", s.base_steps);
    let fresh = init_transformer(&model_config, s.seed, &ad)?;
    let (base, _) = train(fresh, &examples, None, &base_cfg, None, &mut Plain(obs))?;
    let base_nll = plain_nll(&base.valid(), &eval_seqs, &tok)?.hard.value();

    // Plain continuation.
    let t0 = Instant::now();
    obs.phase("plain LM", s.steps);
    let (plain, _) = train(base.clone(), &examples, None, &train_cfg, None, &mut Plain(obs))?;
    let plain_seconds = t0.elapsed().as_secs_f64();

    // Quiet-STaR continuation from the same weights, same batches.
    let t0 = Instant::now();
    let qmodel = QuietModel::new(base, &tok, s.quiet.clone(), s.seed)?;
    let run_cfg =
        QuietRunConfig { train: train_cfg, quiet: s.quiet.clone(), loss_chunk: None, thinking: Default::default() };
    obs.phase("quiet-star", s.steps);
    let (qmodel, history) = train_quiet(qmodel, &train_seqs, &run_cfg, s.kernel, None, None, &mut Quiet(obs))?;
    let quiet_seconds = t0.elapsed().as_secs_f64();

    let plain = plain_nll(&plain.valid(), &eval_seqs, &tok)?;
    let qmodel = qmodel.valid();
    let mut result = DemoResult {
        settings: s.clone(),
        model_config,
        base_nll,
        held_out: eval_seqs.len(),
        plain,
        quiet: SplitNll::default(),
        quiet_base: SplitNll::default(),
        post_thought_hard: Mean::default(),
        mix_weight_hard: Mean::default(),
        last_step: history.last().map(|m| m.stats.clone()).unwrap_or_default(),
        example: None,
        plain_seconds,
        quiet_seconds,
        model: qmodel,
        tokenizer: tok,
    };
    result.score_quiet(&eval_seqs)?;
    Ok(result)
}

impl DemoResult {
    /// The Quiet-STaR model on the held-out sums, token by token, with and without thoughts.
    fn score_quiet(&mut self, eval_seqs: &[Vec<u32>]) -> Result<()> {
        let tok = &self.tokenizer;
        for seq in eval_seqs {
            let mask = sum_digit_mask(seq, tok);
            for d in token_deltas(&self.model, seq, 0.0, self.settings.kernel) {
                let hard = mask[d.index];
                let (q, qb) = if hard {
                    (&mut self.quiet.hard, &mut self.quiet_base.hard)
                } else {
                    (&mut self.quiet.easy, &mut self.quiet_base.easy)
                };
                q.add(-d.logp_thought as f64);
                qb.add(-d.logp_base as f64);
                if !hard {
                    continue;
                }
                self.mix_weight_hard.add(d.mix_weight as f64);
                self.post_thought_hard.add(-d.logp_post as f64);
                if self.example.is_none() && d.delta() > 0.5 {
                    self.example = Some(format!(
                        "after {:?} the thought {:?} raised log p({:?}) from {:.2} to {:.2} (w = {:.2})",
                        tok.decode(&seq[..d.index], false)?.rsplit('\n').next().unwrap_or(""),
                        tok.decode(&d.thought_ids, false)?,
                        tok.decode(&[d.id], false)?,
                        d.logp_base,
                        d.logp_thought,
                        d.mix_weight
                    ));
                }
            }
        }
        Ok(())
    }

    /// The report: settings, the NLL table and the verdict, in Markdown.
    pub fn report(&self, device_name: &str) -> String {
        let (s, c, q) = (&self.settings, &self.model_config, &self.settings.quiet);
        let mut r = String::new();
        let _ = writeln!(r, "# Quiet-STaR demo: two-digit sums\n");
        let _ = writeln!(
            r,
            "Base model: {} plain steps (sum-digit NLL {:.4}). Then {} more steps each × batch {} × {} tokens, \
             lr {}, seed {}; model d={} × {} layers; thought {} tokens, talk {}, {} passes; device: {device_name}\n",
            s.base_steps,
            self.base_nll,
            s.steps,
            s.batch_size,
            s.seq_len,
            s.lr,
            s.seed,
            c.hidden_size,
            c.num_layers,
            q.n_thought,
            q.n_talk,
            q.n_passes,
        );
        let _ = writeln!(
            r,
            "Held-out: {} sequences ({} sum-digit tokens, {} other tokens). NLL in nats per token:\n",
            self.held_out, self.plain.hard.count, self.plain.easy.count
        );
        let _ = writeln!(r, "| model | sum digits | other tokens | training time |");
        let _ = writeln!(r, "|---|---:|---:|---:|");
        let row = |name: &str, nll: &SplitNll, secs: Option<f64>| {
            let time = secs.map(|t| format!("{t:.0} s")).unwrap_or_default();
            format!("| {name} | {:.4} | {:.4} | {time} |\n", nll.hard.value(), nll.easy.value())
        };
        r.push_str(&row("plain LM (same base, steps, batches)", &self.plain, Some(self.plain_seconds)));
        r.push_str(&row("Quiet-STaR, with thoughts", &self.quiet, Some(self.quiet_seconds)));
        r.push_str(&row("Quiet-STaR, its base predictions (no thought)", &self.quiet_base, None));
        let _ =
            writeln!(r, "| Quiet-STaR, post-thought state alone (w = 1) | {:.4} | | |", self.post_thought_hard.value());
        let last = &self.last_step;
        let _ = writeln!(
            r,
            "\nMean mixing weight on sum digits: {:.3}. Last training step: talk NLL {:.4} with thoughts vs {:.4} \
             without, mean reward {:.4}.",
            self.mix_weight_hard.value(),
            last.talk_nll,
            last.talk_nll_base,
            last.mean_reward
        );
        if let Some(example) = &self.example {
            let _ = writeln!(r, "\nExample: {example}.");
        }
        let (with, plain) = (self.quiet.hard.value(), self.plain.hard.value());
        let verdict = if with < plain { "lower" } else { "not lower" };
        let _ = writeln!(
            r,
            "\nWith thoughts, the NLL of the sum digits is **{verdict}** than the plain model's ({:+.4} nats/token).",
            with - plain
        );
        r
    }
}

/// NLL of a plain model on the sum digits and on the other tokens of `seqs`.
fn plain_nll(model: &Transformer, seqs: &[Vec<u32>], tok: &Tokenizer) -> Result<SplitNll> {
    let mut out = SplitNll::default();
    for (seq, lp) in seqs.iter().zip(token_logprobs(model, seqs)?) {
        let mask = sum_digit_mask(seq, tok);
        for (i, v) in lp.iter().enumerate() {
            if mask[i + 1] { &mut out.hard } else { &mut out.easy }.add(-*v as f64);
        }
    }
    Ok(out)
}

/// Passes plain training steps to a demo's observer.
pub(crate) struct Plain<'o>(pub(crate) &'o mut dyn DemoObserver);

impl TrainObserver for Plain<'_> {
    fn on_step(&mut self, m: &StepMetrics) -> std::result::Result<(), TrainError> {
        self.0.plain_step(m);
        Ok(())
    }
}

/// Passes Quiet-STaR training steps to a demo's observer.
pub(crate) struct Quiet<'o>(pub(crate) &'o mut dyn DemoObserver);

impl QuietObserver for Quiet<'_> {
    fn on_step(&mut self, m: &QuietStepMetrics) {
        self.0.quiet_step(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_digits_are_the_tokens_after_the_equals_sign() {
        let tok = Tokenizer::char_level(ALPHABET, &["<pad>"]).unwrap();
        let ids = tok.encode("12+3=15\n4+4=8\n", false).unwrap();
        let mask: String = sum_digit_mask(&ids, &tok).iter().map(|&h| if h { 'x' } else { '.' }).collect();
        assert_eq!(mask, ".....xx.....x.");
    }
}
