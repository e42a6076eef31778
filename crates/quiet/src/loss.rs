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

/// The loss of one batch of equal-length sequences, and its numbers. `model` lives on an
/// autodiff device; thoughts are sampled from `model.valid()`.
pub fn quiet_loss(
    model: &QuietModel,
    sampler_model: &QuietModel,
    seqs: &[Vec<u32>],
    kernel: Kernel,
) -> (Tensor<1>, LossStats) {
    let cfg = &model.config;
    let device = model.device();
    let b = seqs.len();
    let l = seqs[0].len();
    assert!(seqs.iter().all(|s| s.len() == l), "training sequences must have equal length");
    let (p, nt, nk) = (cfg.n_passes, cfg.n_thought, cfg.n_talk);
    let n = p * b;
    let d = model.hidden_size();
    let pad = vec![0usize; b];
    let flat: Vec<i64> = seqs.iter().flat_map(|s| s.iter().map(|&t| t as i64)).collect();

    // Think: sample thoughts without gradients.
    let sample_device = sampler_model.device();
    let tokens_s = Tensor::<2, Int>::from_data(TensorData::new(flat.clone(), [b, l]), &sample_device);
    let thoughts = sample_thoughts(sampler_model, tokens_s, &pad, p, cfg.thought_temperature, kernel);
    let thoughts = Tensor::<3, Int>::from_data(thoughts.into_data(), &device); // [N, nt, L]

    // Base pass with gradients.
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat.clone(), [b, l]), &device);
    let (h_base, cache) = model.base_pass(tokens.clone(), &pad);

    // Targets shifted by 1..=nk, with validity (the target exists inside the sequence).
    let shifted = |k: usize| -> Vec<i64> {
        seqs.iter().flat_map(|s| (0..l).map(move |i| s.get(i + k).map_or(0, |&t| t as i64))).collect()
    };
    let valid = |k: usize| -> Vec<f32> {
        (0..b).flat_map(|_| (0..l).map(move |i| if i + k < l { 1.0 } else { 0.0 })).collect()
    };

    // Base loss: next-token NLL.
    let base_logp = log_softmax(model.lm.logits(h_base.clone()), 2);
    let next = Tensor::<3, Int>::from_data(TensorData::new(shifted(1), [b, l, 1]), &device);
    let v1 = Tensor::<2>::from_data(TensorData::new(valid(1), [b, l]), &device);
    let base_tok = base_logp.gather(2, next).reshape([b, l]);
    let base_nll = -(base_tok * v1.clone()).sum() / v1.clone().sum();

    // Talk: the thought block teacher-forced at every position.
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, &pad, p, kernel);
    let mut blocks = model.thought_inputs(thoughts.clone());
    if nk > 1 {
        let talk_in: Vec<i64> = (1..nk).flat_map(&shifted).collect(); // [nk-1, B, L]
        let talk_in = Tensor::<3, Int>::from_data(TensorData::new(talk_in, [nk - 1, b, l]), &device).swap_dims(0, 1); // [B, nk-1, L]
        let talk_in = Tensor::cat(vec![talk_in; p], 0).reshape([n, (nk - 1) * l]);
        blocks.push(model.lm.embed(talk_in).reshape([n, nk - 1, l, d]));
    }
    let h_diag = model.thought_steps(Tensor::cat(blocks, 1), &mut state); // [N, nt+1+nk, L, d]

    // Policy log-probabilities of the sampled thought tokens (steps 0..nt predict tokens 1..=nt).
    let thought_logits = model.logits4(h_diag.clone().narrow(1, 0, nt)).div_scalar(cfg.reinforce_temperature);
    let thought_logp = log_softmax(thought_logits, 3)
        .gather(3, thoughts.reshape([n, nt, l, 1]))
        .reshape([n, nt, l])
        .sum_dim(1)
        .reshape([n, l]);

    // Mixed predictions of x_{i+1+k}, k < nk: post-thought state at step nt+1+k, base state at i+k.
    let h_post = h_diag.narrow(1, nt + 1, nk); // [N, nk, L, d]
    let base_shift: Vec<Tensor<3>> = (0..nk)
        .map(|k| {
            if k == 0 {
                h_base.clone()
            } else {
                Tensor::cat(vec![h_base.clone().narrow(1, k, l - k), Tensor::zeros([b, k, d], &device)], 1)
            }
        })
        .collect();
    let h_base_k = Tensor::stack::<4>(base_shift, 1); // [B, nk, L, d]
    let h_base_k = Tensor::cat(vec![h_base_k; p], 0); // [N, nk, L, d]
    let (mixed, w) = model.mix(h_base_k.clone(), h_post.clone());
    let targets: Vec<i64> = (0..p)
        .flat_map(|_| {
            (0..b).flat_map(|bi| {
                (1..=nk).flat_map(move |k| (0..l).map(move |i| seqs[bi].get(i + k).map_or(0, |&t| t as i64)))
            })
        })
        .collect();
    let targets = Tensor::<4, Int>::from_data(TensorData::new(targets, [n, nk, l, 1]), &device);
    let talk_valid: Vec<f32> = (0..n)
        .flat_map(|_| (1..=nk).flat_map(move |k| (0..l).map(move |i| if i + k < l { 1.0 } else { 0.0 })))
        .collect();
    let talk_valid = Tensor::<3>::from_data(TensorData::new(talk_valid, [n, nk, l]), &device);
    let talk_logp =
        log_softmax(model.logits4(mixed), 3).gather(3, targets.clone()).reshape([n, nk, l]) * talk_valid.clone();
    let talk_count = talk_valid.clone().sum();
    let talk_nll = -talk_logp.clone().sum() / talk_count.clone();
    let post_logp =
        log_softmax(model.logits4(h_post), 3).gather(3, targets.clone()).reshape([n, nk, l]) * talk_valid.clone();
    let post_nll = -post_logp.sum() / talk_count.clone();
    let talk_logp_base =
        log_softmax(model.logits4(h_base_k), 3).gather(3, targets).reshape([n, nk, l]) * talk_valid.clone();
    let talk_nll_base = -talk_logp_base.sum().detach() / talk_count;

    // REINFORCE: reward = log-likelihood of the true continuation given the thought, minus the
    // mean over the passes at the same position.
    let ll = talk_logp.sum_dim(1).reshape([p, b, l]).detach();
    let baseline = ll.clone().mean_dim(0);
    let mut reward = (ll - baseline).reshape([n, l]);
    if cfg.drop_negative_rewards {
        reward = reward.clamp_min(0.0);
    }
    let pos_valid = Tensor::cat(vec![v1.clone(); p], 0); // positions with at least one target
    let policy = -(reward.clone() * thought_logp * pos_valid.clone()).sum() / pos_valid.clone().sum();
    let mean_reward = (reward * pos_valid.clone()).sum() / pos_valid.sum();
    let mix_weight = (w.reshape([n, nk, l]) * talk_valid.clone()).sum() / talk_valid.sum();

    let loss = base_nll.clone().mul_scalar(cfg.base_loss_weight)
        + talk_nll.clone().mul_scalar(cfg.talk_loss_weight)
        + policy.clone().mul_scalar(cfg.policy_loss_weight)
        + post_nll.clone().mul_scalar(cfg.post_thought_loss_weight);
    let numbers = Tensor::cat(
        vec![
            loss.clone().detach(),
            base_nll.detach(),
            talk_nll.detach(),
            talk_nll_base,
            policy.detach(),
            mean_reward,
            mix_weight.detach(),
            post_nll.detach(),
        ],
        0,
    );
    let v: Vec<f32> = numbers.into_data().try_into_vec_as().expect("f32 stats");
    let stats = LossStats {
        loss: v[0] as f64,
        base_nll: v[1] as f64,
        talk_nll: v[2] as f64,
        talk_nll_base: v[3] as f64,
        policy_loss: v[4] as f64,
        mean_reward: v[5] as f64,
        mix_weight: v[6] as f64,
        post_nll: v[7] as f64,
    };
    (loss, stats)
}
