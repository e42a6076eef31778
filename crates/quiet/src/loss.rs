//! One Quiet-STaR training step's loss ("talk" and "learn").
//!
//! After thoughts are sampled (without gradients), one differentiable pass feeds, at every
//! position i, the whole thought block teacher-forced: start, the sampled thought, end, then the
//! true tokens x_{i+1} … x_{i+n_talk−1}. The hidden state after the end marker and after each
//! talk token is mixed with the base hidden state that predicts the same token; the mixed
//! prediction's NLL of x_{i+1} … x_{i+n_talk} is the talk loss (non-myopic: a thought is judged
//! by several future tokens). Its log-likelihood, minus the mean over the thoughts sampled at
//! the same position, is the REINFORCE reward of the thought's tokens.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use starling_thought::Kernel;

use crate::config::PolicyReduction;
use crate::model::{QuietModel, ThoughtState};
use crate::sample::sample_thoughts;

/// Numbers of one step (host values, for metrics and checks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossStats {
    pub loss: f64,
    /// Mean next-token NLL of the base model (no thought).
    pub base_nll: f64,
    /// Mean NLL of the talk tokens with thoughts (mixed prediction).
    pub talk_nll: f64,
    /// Mean NLL of the same tokens without thoughts.
    pub talk_nll_base: f64,
    /// Mean NLL of the same tokens from the post-thought state alone (no mixing).
    pub post_nll: f64,
    pub policy_loss: f64,
    /// Mean reward after the baseline (and clamping), over positions.
    pub mean_reward: f64,
    /// Mean mixing weight over the talk predictions.
    pub mix_weight: f64,
}

impl LossStats {
    /// The mean of micro-batches' numbers (equal-sized micro-batches: the large batch's numbers).
    pub fn mean(parts: &[LossStats]) -> LossStats {
        let n = parts.len().max(1) as f64;
        let avg = |f: fn(&LossStats) -> f64| parts.iter().map(f).sum::<f64>() / n;
        LossStats {
            loss: avg(|s| s.loss),
            base_nll: avg(|s| s.base_nll),
            talk_nll: avg(|s| s.talk_nll),
            talk_nll_base: avg(|s| s.talk_nll_base),
            post_nll: avg(|s| s.post_nll),
            policy_loss: avg(|s| s.policy_loss),
            mean_reward: avg(|s| s.mean_reward),
            mix_weight: avg(|s| s.mix_weight),
        }
    }
}

/// The sizes of one step, named once: `rows` = `passes` × `batch` (every sequence once per pass).
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    len: usize,
    passes: usize,
    rows: usize,
    thought: usize,
    talk: usize,
    width: usize,
}

/// The step's numbers as device scalars, read back together in one read.
struct StatTensors {
    loss: Tensor<1>,
    base_nll: Tensor<1>,
    talk_nll: Tensor<1>,
    talk_nll_base: Tensor<1>,
    post_nll: Tensor<1>,
    policy_loss: Tensor<1>,
    mean_reward: Tensor<1>,
    mix_weight: Tensor<1>,
}

impl StatTensors {
    fn read(self) -> LossStats {
        let all = [
            self.loss,
            self.base_nll,
            self.talk_nll,
            self.talk_nll_base,
            self.post_nll,
            self.policy_loss,
            self.mean_reward,
            self.mix_weight,
        ];
        let data = Tensor::cat(all.into_iter().map(|t| t.detach()).collect(), 0).into_data();
        let v: Vec<f64> = data.iter::<f64>().collect();
        LossStats {
            loss: v[0],
            base_nll: v[1],
            talk_nll: v[2],
            talk_nll_base: v[3],
            post_nll: v[4],
            policy_loss: v[5],
            mean_reward: v[6],
            mix_weight: v[7],
        }
    }
}

/// `seqs[b][i + k]` for every row and position (0 past the end), flattened `[batch, len]`.
fn shifted(seqs: &[Vec<u32>], len: usize, k: usize) -> Vec<i64> {
    seqs.iter().flat_map(|s| (0..len).map(move |i| s.get(i + k).map_or(0, |&t| t as i64))).collect()
}

/// 1 where position i has a target k tokens ahead inside the sequence, repeated for `rows` rows.
fn ahead_mask(rows: usize, len: usize, k: usize) -> Vec<f32> {
    (0..rows).flat_map(|_| (0..len).map(move |i| if i + k < len { 1.0 } else { 0.0 })).collect()
}

/// The loss of one batch of equal-length sequences, and its numbers. `model` lives on an
/// autodiff device; thoughts are sampled from `sampler_model` (its `valid()` twin).
pub fn quiet_loss(
    model: &QuietModel,
    sampler_model: &QuietModel,
    seqs: &[Vec<u32>],
    kernel: Kernel,
) -> (Tensor<1>, LossStats) {
    let cfg = &model.config;
    let device = model.device();
    let len = seqs[0].len();
    assert!(seqs.iter().all(|s| s.len() == len), "training sequences must have equal length");
    let dims = Dims {
        batch: seqs.len(),
        len,
        passes: cfg.n_passes,
        rows: cfg.n_passes * seqs.len(),
        thought: cfg.n_thought,
        talk: cfg.n_talk,
        width: model.hidden_size(),
    };
    let Dims { batch, passes, rows, thought, talk, .. } = dims;
    let no_padding = vec![0usize; batch];
    let flat: Vec<i64> = seqs.iter().flat_map(|s| s.iter().map(|&t| t as i64)).collect();

    // Think: sample thoughts without gradients.
    let sample_device = sampler_model.device();
    let tokens_s = Tensor::<2, Int>::from_data(TensorData::new(flat.clone(), [batch, len]), &sample_device);
    let thoughts = sample_thoughts(sampler_model, tokens_s, &no_padding, passes, cfg.thought_temperature, kernel);
    let thoughts = Tensor::<3, Int>::from_data(thoughts.into_data(), &device); // [rows, thought, len]

    // Base pass with gradients, and the base loss: next-token NLL.
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, len]), &device);
    let (h_base, cache) = model.base_pass(tokens, &no_padding);
    let base_logp = log_softmax(model.lm.logits(h_base.clone()), 2);
    let next = Tensor::<3, Int>::from_data(TensorData::new(shifted(seqs, len, 1), [batch, len, 1]), &device);
    let has_next = Tensor::<2>::from_data(TensorData::new(ahead_mask(batch, len, 1), [batch, len]), &device);
    let base_tok = base_logp.gather(2, next).reshape([batch, len]);
    let base_nll = -(base_tok * has_next.clone()).sum() / has_next.clone().sum();

    // Talk: the thought block (start, thought, end, talk tokens but the last) teacher-forced at
    // every position.
    let h_diag = talk_pass(model, &cache, thoughts.clone(), seqs, dims, kernel); // [rows, thought+1+talk, len, d]

    // Policy log-probabilities of the sampled thought tokens (steps 0..thought predict tokens 1..=thought).
    let thought_logits = model.logits4(h_diag.clone().narrow(1, 0, thought)).div_scalar(cfg.reinforce_temperature);
    let thought_logp = log_softmax(thought_logits, 3)
        .gather(3, thoughts.reshape([rows, thought, len, 1]))
        .reshape([rows, thought, len])
        .sum_dim(1)
        .reshape([rows, len]);
    let thought_logp = match cfg.policy_reduction {
        PolicyReduction::Sum => thought_logp,
        PolicyReduction::Mean => thought_logp.div_scalar(thought as f64),
    };

    // Mixed predictions of x_{i+1+k}, k < talk: post-thought state at step thought+1+k, base
    // state at i+k.
    let h_post = h_diag.narrow(1, thought + 1, talk); // [rows, talk, len, d]
    let h_base_ahead = base_states_ahead(&h_base, dims); // [rows, talk, len, d]
    let (mixed, w) = model.mix(h_base_ahead.clone(), h_post.clone());
    // Row r = (pass, sequence b): for k = 1..=talk, x_{i+k} at every position i.
    let targets: Vec<i64> = (0..passes)
        .flat_map(|_| seqs.iter())
        .flat_map(|s| (1..=talk).flat_map(move |k| (0..len).map(move |i| s.get(i + k).map_or(0, |&t| t as i64))))
        .collect();
    let targets = Tensor::<4, Int>::from_data(TensorData::new(targets, [rows, talk, len, 1]), &device);
    let talk_valid: Vec<f32> = (0..rows).flat_map(|_| (1..=talk).flat_map(|k| ahead_mask(1, len, k))).collect();
    let talk_valid = Tensor::<3>::from_data(TensorData::new(talk_valid, [rows, talk, len]), &device);
    let talk_count = talk_valid.clone().sum();
    let target_logp = |h: Tensor<4>| {
        log_softmax(model.logits4(h), 3).gather(3, targets.clone()).reshape([rows, talk, len]) * talk_valid.clone()
    };
    let talk_logp = target_logp(mixed);
    let talk_nll = -talk_logp.clone().sum() / talk_count.clone();
    let post_nll = -target_logp(h_post).sum() / talk_count.clone();
    let base_logp_ahead = target_logp(h_base_ahead).detach();
    let talk_nll_base = -base_logp_ahead.clone().sum() / talk_count;

    // REINFORCE: reward = log-likelihood of the true continuation given the thought, minus a
    // baseline: the mean over the passes at the same position; with one pass (where that mean
    // is the reward itself), the base model's log-likelihood of the same tokens, as the official
    // code's reward is the improvement over the base prediction.
    let ll = talk_logp.sum_dim(1).reshape([passes, batch, len]).detach();
    let baseline =
        if passes > 1 { ll.clone().mean_dim(0) } else { base_logp_ahead.sum_dim(1).reshape([passes, batch, len]) };
    let mut reward = (ll - baseline).reshape([rows, len]);
    if cfg.drop_negative_rewards {
        reward = reward.clamp_min(0.0);
    }
    let scored = Tensor::cat(vec![has_next; passes], 0); // positions with at least one target
    let policy_loss = -(reward.clone() * thought_logp * scored.clone()).sum() / scored.clone().sum();
    let mean_reward = (reward * scored.clone()).sum() / scored.sum();
    let mix_weight = (w.reshape([rows, talk, len]) * talk_valid.clone()).sum() / talk_valid.sum();

    let loss = base_nll.clone().mul_scalar(cfg.base_loss_weight)
        + talk_nll.clone().mul_scalar(cfg.talk_loss_weight)
        + policy_loss.clone().mul_scalar(cfg.policy_loss_weight)
        + post_nll.clone().mul_scalar(cfg.post_thought_loss_weight);
    let stats = StatTensors {
        loss: loss.clone(),
        base_nll,
        talk_nll,
        talk_nll_base,
        post_nll,
        policy_loss,
        mean_reward,
        mix_weight,
    }
    .read();
    (loss, stats)
}

/// The teacher-forced thought block at every position: start, the sampled thought, end, then
/// the true tokens x_{i+1} … x_{i+talk−1}. Returns every step's hidden states.
fn talk_pass(
    model: &QuietModel,
    cache: &starling_model::cache::KvCache,
    thoughts: Tensor<3, Int>,
    seqs: &[Vec<u32>],
    dims: Dims,
    kernel: Kernel,
) -> Tensor<4> {
    let Dims { batch, len, passes, rows, talk, width, .. } = dims;
    let device = model.device();
    let no_padding = vec![0usize; batch];
    let mut state = ThoughtState::new(cache, model.lm.config().num_layers, &no_padding, passes, kernel);
    let mut blocks = model.thought_inputs(thoughts);
    if talk > 1 {
        let talk_in: Vec<i64> = (1..talk).flat_map(|k| shifted(seqs, len, k)).collect(); // [talk-1, batch, len]
        let talk_in =
            Tensor::<3, Int>::from_data(TensorData::new(talk_in, [talk - 1, batch, len]), &device).swap_dims(0, 1); // [batch, talk-1, len]
        let talk_in = Tensor::cat(vec![talk_in; passes], 0).reshape([rows, (talk - 1) * len]);
        blocks.push(model.lm.embed(talk_in).reshape([rows, talk - 1, len, width]));
    }
    model.thought_steps(Tensor::cat(blocks, 1), &mut state)
}

/// The base hidden state that predicts x_{i+1+k} (the state at position i+k; zeros past the
/// end), for k < talk, repeated for every pass: `[rows, talk, len, d]`.
fn base_states_ahead(h_base: &Tensor<3>, dims: Dims) -> Tensor<4> {
    let Dims { batch, len, passes, talk, width, .. } = dims;
    let device = h_base.device();
    let shifted: Vec<Tensor<3>> = (0..talk)
        .map(|k| {
            if k == 0 {
                h_base.clone()
            } else {
                Tensor::cat(vec![h_base.clone().narrow(1, k, len - k), Tensor::zeros([batch, k, width], &device)], 1)
            }
        })
        .collect();
    let ahead = Tensor::stack::<4>(shifted, 1); // [batch, talk, len, d]
    Tensor::cat(vec![ahead; passes], 0)
}
