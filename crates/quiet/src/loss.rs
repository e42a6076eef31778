//! One Quiet-STaR training step's loss ("talk" and "learn").
//!
//! After thoughts are sampled (without gradients), one differentiable pass feeds, at every
//! position i, the whole thought block teacher-forced: start, the sampled thought, end, then the
//! true tokens x_{i+1} … x_{i+n_talk−1}. The hidden state after the end marker and after each
//! talk token is mixed with the base hidden state that predicts the same token; the mixed
//! prediction's NLL of x_{i+1} … x_{i+n_talk} is the talk loss (non-myopic: a thought is judged
//! by several future tokens). Its log-likelihood, minus the mean over the thoughts sampled at
//! the same position, is the REINFORCE reward of the thought's tokens.
//!
//! Everything that needs the vocabulary — the LM head's logits and log-softmax of the base, the
//! thought and the talk predictions — is a function of the final hidden states at each
//! position. [`quiet_gradients`] computes that part a few positions at a time, each chunk with
//! its own backward into the hidden states, then one backward of the transformer: no tensor of
//! the vocabulary's size exists for more than one chunk, whatever the sequence length.

use std::ops::Range;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use starling_thought::Kernel;

use crate::config::{PolicyReduction, Thinking, ThoughtSource};
use crate::model::{QuietModel, ThoughtState};
use crate::sample::sample_into;

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
    /// The numbers of [`StatTensors::stacked`], read back; `None` when some are missing.
    pub fn from_stacked(v: &[f64]) -> Option<LossStats> {
        let [loss, base_nll, talk_nll, talk_nll_base, post_nll, policy_loss, mean_reward, mix_weight] = *v else {
            return None;
        };
        Some(LossStats { loss, base_nll, talk_nll, talk_nll_base, post_nll, policy_loss, mean_reward, mix_weight })
    }

    /// The mean of micro-batches' numbers (equal-sized micro-batches: the large batch's numbers).
    pub fn mean(parts: &[LossStats]) -> LossStats {
        LossStats::combine(parts.iter().map(|s| (1.0, s)), parts.len().max(1) as f64)
    }

    /// The numbers of a batch from those of its parts, each weighted by its share of the
    /// batch's sequences (the weights sum to 1).
    pub fn weighted(parts: &[(f64, LossStats)]) -> LossStats {
        LossStats::combine(parts.iter().map(|(w, s)| (*w, s)), 1.0)
    }

    /// Every number as Σ weight × number / `divisor`.
    fn combine<'a>(parts: impl Iterator<Item = (f64, &'a LossStats)> + Clone, divisor: f64) -> LossStats {
        let avg = |f: fn(&LossStats) -> f64| parts.clone().map(|(w, s)| w * f(s)).sum::<f64>() / divisor;
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

/// The step's numbers as device scalars, read back together in one read (each a sum of the
/// chunks' parts): [`StatTensors::stacked`] is what a caller awaits where reads are
/// asynchronous (WebGPU in the browser), [`LossStats::from_stacked`] what it makes of the values.
pub struct StatTensors {
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
    /// The sum of two chunks' parts (detached: statistics only).
    fn add(self, o: StatTensors) -> StatTensors {
        let add = |a: Tensor<1>, b: Tensor<1>| a.detach() + b.detach();
        StatTensors {
            loss: add(self.loss, o.loss),
            base_nll: add(self.base_nll, o.base_nll),
            talk_nll: add(self.talk_nll, o.talk_nll),
            talk_nll_base: add(self.talk_nll_base, o.talk_nll_base),
            post_nll: add(self.post_nll, o.post_nll),
            policy_loss: add(self.policy_loss, o.policy_loss),
            mean_reward: add(self.mean_reward, o.mean_reward),
            mix_weight: add(self.mix_weight, o.mix_weight),
        }
    }

    /// Every number × `factor` (a slice's share of its batch, a micro-batch's of its step).
    pub fn scale(self, factor: f64) -> StatTensors {
        self.map(|t| t.detach().mul_scalar(factor))
    }

    /// Σ of the parts' numbers (each already scaled by its weight).
    pub fn sum(parts: Vec<StatTensors>) -> Option<StatTensors> {
        parts.into_iter().reduce(StatTensors::add)
    }

    /// The numbers on `device` (a data-parallel copy's join the model's device).
    pub fn to_device(self, device: &burn::tensor::Device) -> StatTensors {
        self.map(|t| t.to_device(device))
    }

    fn map(self, f: impl Fn(Tensor<1>) -> Tensor<1>) -> StatTensors {
        StatTensors {
            loss: f(self.loss),
            base_nll: f(self.base_nll),
            talk_nll: f(self.talk_nll),
            talk_nll_base: f(self.talk_nll_base),
            post_nll: f(self.post_nll),
            policy_loss: f(self.policy_loss),
            mean_reward: f(self.mean_reward),
            mix_weight: f(self.mix_weight),
        }
    }

    /// The numbers in one tensor (without autodiff), in the order [`LossStats::from_stacked`] reads.
    pub fn stacked(&self) -> Tensor<1> {
        let all = [
            &self.loss,
            &self.base_nll,
            &self.talk_nll,
            &self.talk_nll_base,
            &self.post_nll,
            &self.policy_loss,
            &self.mean_reward,
            &self.mix_weight,
        ];
        Tensor::cat(all.into_iter().map(|t| t.clone().detach().inner()).collect(), 0)
    }

    fn read(self) -> LossStats {
        LossStats::from_stacked(&self.stacked().into_data().iter::<f64>().collect::<Vec<_>>())
            .expect("eight numbers were stacked")
    }
}

/// `seqs[b][i + k]` for positions `i` in `at` of every row (0 past the end), flattened.
fn shifted(seqs: &[Vec<u32>], at: Range<usize>, k: usize) -> Vec<i64> {
    seqs.iter().flat_map(|s| at.clone().map(move |i| s.get(i + k).map_or(0, |&t| t as i64))).collect()
}

/// 1 where position i in `at` has a target k tokens ahead inside the sequence, for `rows` rows.
fn ahead_mask(rows: usize, len: usize, at: Range<usize>, k: usize) -> Vec<f32> {
    (0..rows).flat_map(|_| at.clone().map(move |i| if i + k < len { 1.0 } else { 0.0 })).collect()
}

/// Everything before the vocabulary: the thoughts and the final hidden states of the base pass
/// and of the teacher-forced thought block.
struct States {
    dims: Dims,
    /// The thinking positions.
    think: Range<usize>,
    /// `[batch, len, d]`
    h_base: Tensor<3>,
    /// `[rows, thought + 1 + talk, thinking positions, d]`: after the start marker and each
    /// thought token (they predict the next thought token), after the end marker and each talk
    /// token.
    h_diag: Tensor<4>,
    /// `[rows, thought, thinking positions]`
    thoughts: Tensor<3, Int>,
}

/// What the loss terms of positions `at` read: the base states from `at.start` to `talk − 1`
/// positions past `at.end` (the base predictions of the talk targets; cut at the sequence's
/// end), and, where `at` are thinking positions, the thought block's states and the thoughts.
struct Chunk {
    at: Range<usize>,
    /// `[batch, ≤ n + talk − 1, d]`
    h_base: Tensor<3>,
    thought: Option<ChunkThought>,
}

struct ChunkThought {
    /// `[rows, thought + 1 + talk, n, d]`
    h_diag: Tensor<4>,
    /// `[rows, thought, n]`
    thoughts: Tensor<3, Int>,
}

impl States {
    /// `at` lies inside the thinking positions or outside them.
    fn chunk(&self, at: Range<usize>) -> Chunk {
        let reach = (at.end + self.dims.talk - 1).min(self.dims.len) - at.start;
        let thinking = at.start >= self.think.start && at.end <= self.think.end;
        debug_assert!(thinking || at.end <= self.think.start || at.start >= self.think.end, "chunk {at:?} straddles");
        let thought = thinking.then(|| {
            let from = at.start - self.think.start;
            ChunkThought {
                h_diag: self.h_diag.clone().narrow(2, from, at.len()),
                thoughts: self.thoughts.clone().narrow(2, from, at.len()),
            }
        });
        Chunk { h_base: self.h_base.clone().narrow(1, at.start, reach), thought, at }
    }

    /// The sequence's positions in pieces of at most `size`, none straddling the thinking
    /// positions' bounds.
    fn pieces(&self, size: usize) -> Vec<Range<usize>> {
        let size = size.max(1);
        let mut out = Vec::new();
        for part in [0..self.think.start, self.think.clone(), self.think.end..self.dims.len] {
            let mut start = part.start;
            while start < part.end {
                let end = (start + size).min(part.end);
                out.push(start..end);
                start = end;
            }
        }
        out
    }
}

/// How many positions each loss term averages over (host counts, so that chunks' parts add up
/// to the whole batch's means).
#[derive(Debug, Clone, Copy)]
struct Counts {
    /// Positions with a next token, per batch.
    next: f64,
    /// (row, k, thinking position) triples with a talk target.
    talk: f64,
    /// (row, thinking position) pairs with a next token: the thoughts the policy loss averages.
    scored: f64,
}

impl Dims {
    fn counts(&self, think: &Range<usize>) -> Counts {
        let ahead = |k: usize| think.clone().filter(|&i| i + k < self.len).count();
        let talk_per_row: usize = (1..=self.talk).map(ahead).sum();
        Counts {
            next: (self.batch * (self.len - 1)) as f64,
            talk: (self.rows * talk_per_row) as f64,
            scored: (self.rows * ahead(1)) as f64,
        }
    }
}

fn forward_states(
    model: &QuietModel,
    sampler_model: &QuietModel,
    seqs: &[Vec<u32>],
    thinking: &Thinking,
    kernel: Kernel,
) -> States {
    let cfg = &model.config;
    let device = model.device();
    let len = seqs[0].len();
    assert!(len >= 2, "training sequences need a token to predict");
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
    let Dims { batch, passes, .. } = dims;
    let flat: Vec<i64> = seqs.iter().flat_map(|s| s.iter().map(|&t| t as i64)).collect();
    let think = thinking.range(len);
    assert!(think.start < think.end && think.end <= len, "thinking positions {think:?} outside {len} tokens");

    // Think: thoughts without gradients.
    let thoughts = match &thinking.source {
        ThoughtSource::Sampled => {
            let no_padding = vec![0usize; batch];
            let sample_device = sampler_model.device();
            let tokens_s = Tensor::<2, Int>::from_data(TensorData::new(flat.clone(), [batch, len]), &sample_device);
            let (_, cache) = sampler_model.base_pass(tokens_s, &no_padding);
            let mut state =
                ThoughtState::new(&cache, sampler_model.lm.config().num_layers, &no_padding, passes, kernel)
                    .thinking_at(think.start, think.len());
            let thoughts = sample_into(sampler_model, &mut state, cfg.thought_temperature);
            if sample_device == device.clone().without_autodiff() {
                // The sampler is the model without autodiff, on its device: the thoughts join
                // the graph as constants, with no read-back (which a page's WebGPU cannot do).
                if device.is_autodiff() { thoughts.autodiff() } else { thoughts }
            } else {
                Tensor::<3, Int>::from_data(thoughts.into_data(), &device)
            }
        }
        ThoughtSource::Pause { token } => {
            Tensor::<3, Int>::full([dims.rows, cfg.n_thought, think.len()], *token as i64, &device)
        }
        ThoughtSource::Random { tokens } => {
            let shape = [dims.rows, cfg.n_thought, think.len()];
            let pick =
                Tensor::<3>::random(shape, burn::tensor::Distribution::Uniform(0.0, tokens.len() as f64), &device)
                    .int()
                    .clamp(0, tokens.len() as i64 - 1);
            let table = Tensor::<1, Int>::from_data(
                TensorData::new(tokens.iter().map(|&t| t as i64).collect::<Vec<_>>(), [tokens.len()]),
                &device,
            );
            let count: usize = shape.iter().product();
            table.select(0, pick.reshape([count])).reshape(shape)
        }
    }; // [rows, thought, thinking positions]

    // Base pass with gradients.
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [batch, len]), &device);
    let (h_base, cache) = model.base_pass(tokens, &vec![0usize; batch]);

    // Talk: the thought block (start, thought, end, talk tokens but the last) teacher-forced at
    // every position.
    let h_diag = talk_pass(model, &cache, thoughts.clone(), seqs, dims, think.clone(), kernel);
    States { dims, think, h_base, h_diag, thoughts }
}

/// The loss terms of the chunk's positions (each divided by the whole batch's count, so the
/// parts of disjoint chunks add up to the loss), from its hidden states.
fn head_loss(model: &QuietModel, seqs: &[Vec<u32>], dims: Dims, x: &Chunk, counts: Counts) -> (Tensor<1>, StatTensors) {
    let cfg = &model.config;
    let device = model.device();
    let Dims { batch, len, passes, rows, thought, talk, .. } = dims;
    let at = x.at.clone();
    let n = at.len();

    // Base loss: next-token NLL.
    let h_base = x.h_base.clone().narrow(1, 0, n);
    let base_logp = log_softmax(model.lm.logits(h_base), 2);
    let next = Tensor::<3, Int>::from_data(TensorData::new(shifted(seqs, at.clone(), 1), [batch, n, 1]), &device);
    let has_next = Tensor::<2>::from_data(TensorData::new(ahead_mask(batch, len, at.clone(), 1), [batch, n]), &device);
    let base_tok = base_logp.gather(2, next).reshape([batch, n]);
    let base_nll = -(base_tok * has_next.clone()).sum().div_scalar(counts.next);

    let Some(ChunkThought { h_diag, thoughts }) = &x.thought else {
        let zero = || Tensor::<1>::zeros([1], &device);
        let loss = base_nll.clone().mul_scalar(cfg.base_loss_weight);
        let stats = StatTensors {
            loss: loss.clone(),
            base_nll,
            talk_nll: zero(),
            talk_nll_base: zero(),
            post_nll: zero(),
            policy_loss: zero(),
            mean_reward: zero(),
            mix_weight: zero(),
        };
        return (loss, stats);
    };
    let (h_diag, thoughts) = (h_diag.clone(), thoughts.clone());

    // Policy log-probabilities of the thought tokens (steps 0..thought predict tokens 1..=thought).
    let thought_logits = model.logits4(h_diag.clone().narrow(1, 0, thought)).div_scalar(cfg.reinforce_temperature);
    let thought_logp = log_softmax(thought_logits, 3)
        .gather(3, thoughts.reshape([rows, thought, n, 1]))
        .reshape([rows, thought, n])
        .sum_dim(1)
        .reshape([rows, n]);
    let thought_logp = match cfg.policy_reduction {
        PolicyReduction::Sum => thought_logp,
        PolicyReduction::Mean => thought_logp.div_scalar(thought as f64),
    };

    // Mixed predictions of x_{i+1+k}, k < talk: post-thought state at step thought+1+k, base
    // state at i+k.
    let h_post = h_diag.narrow(1, thought + 1, talk); // [rows, talk, n, d]
    let h_base_ahead = base_states_ahead(&x.h_base, n, dims); // [rows, talk, n, d]
    let (mixed, w) = model.mix(h_base_ahead.clone(), h_post.clone());
    // Row r = (pass, sequence b): for k = 1..=talk, x_{i+k} at every position i.
    let targets: Vec<i64> = (0..passes)
        .flat_map(|_| seqs.iter())
        .flat_map(|s| {
            let at = at.clone();
            (1..=talk).flat_map(move |k| at.clone().map(move |i| s.get(i + k).map_or(0, |&t| t as i64)))
        })
        .collect();
    let targets = Tensor::<4, Int>::from_data(TensorData::new(targets, [rows, talk, n, 1]), &device);
    let talk_valid: Vec<f32> =
        (0..rows).flat_map(|_| (1..=talk).flat_map(|k| ahead_mask(1, len, at.clone(), k))).collect();
    let talk_valid = Tensor::<3>::from_data(TensorData::new(talk_valid, [rows, talk, n]), &device);
    let target_logp = |h: Tensor<4>| {
        log_softmax(model.logits4(h), 3).gather(3, targets.clone()).reshape([rows, talk, n]) * talk_valid.clone()
    };
    let talk_logp = target_logp(mixed);
    let talk_nll = -talk_logp.clone().sum().div_scalar(counts.talk);
    // The post-thought state alone: a loss term only with a weight, otherwise a statistic (no graph).
    let h_post = if cfg.post_thought_loss_weight == 0.0 { h_post.detach() } else { h_post };
    let post_nll = -target_logp(h_post).sum().div_scalar(counts.talk);
    let base_logp_ahead = target_logp(h_base_ahead.detach());
    let talk_nll_base = -base_logp_ahead.clone().sum().div_scalar(counts.talk);

    // REINFORCE: reward = log-likelihood of the true continuation given the thought, minus a
    // baseline: the mean over the passes at the same position; with one pass (where that mean
    // is the reward itself), the base model's log-likelihood of the same tokens, as the official
    // code's reward is the improvement over the base prediction.
    let ll = talk_logp.sum_dim(1).reshape([passes, batch, n]).detach();
    let baseline =
        if passes > 1 { ll.clone().mean_dim(0) } else { base_logp_ahead.sum_dim(1).reshape([passes, batch, n]) };
    let mut reward = (ll - baseline).reshape([rows, n]);
    if cfg.drop_negative_rewards {
        reward = reward.clamp_min(0.0);
    }
    let scored = Tensor::cat(vec![has_next; passes], 0); // positions with at least one target
    let policy_loss = -(reward.clone() * thought_logp * scored.clone()).sum().div_scalar(counts.scored);
    let mean_reward = (reward * scored).sum().div_scalar(counts.scored);
    let mix_weight = (w.reshape([rows, talk, n]) * talk_valid).sum().div_scalar(counts.talk);

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
    };
    (loss, stats)
}

/// The loss of one batch of equal-length sequences, and its numbers, as one graph (every
/// vocabulary-sized tensor of the step at once: the reference for [`quiet_gradients`]). `model`
/// lives on an autodiff device; thoughts are sampled from `sampler_model` (its `valid()` twin).
pub fn quiet_loss(
    model: &QuietModel,
    sampler_model: &QuietModel,
    seqs: &[Vec<u32>],
    thinking: &Thinking,
    kernel: Kernel,
) -> (Tensor<1>, LossStats) {
    let st = forward_states(model, sampler_model, seqs, thinking, kernel);
    let counts = st.dims.counts(&st.think);
    let parts = st.pieces(st.dims.len).into_iter().map(|at| head_loss(model, seqs, st.dims, &st.chunk(at), counts));
    let (loss, stats) = parts.reduce(|(l, s), (l2, s2)| (l + l2, s.add(s2))).expect("a non-empty sequence");
    (loss, stats.read())
}

/// Bytes of vocabulary-sized tensors one chunk of [`quiet_gradients`] may hold (values and what
/// their backward keeps).
pub const CHUNK_BYTES: usize = 256 << 20;

/// Positions per chunk for a step of these sizes: as many as fit [`CHUNK_BYTES`].
pub fn chunk_positions(model: &QuietModel, batch: usize) -> usize {
    let c = &model.config;
    let rows = c.n_passes * batch;
    // Per position: thought logits, three talk predictions (mixed, post, base) per talk step,
    // the base prediction; each kept with its log-softmax.
    let per_position = (rows * (c.n_thought + 3 * c.n_talk) + batch) * model.lm.config().vocab_size * 4 * 2;
    (CHUNK_BYTES / per_position.max(1)).max(1)
}

/// The gradients of `scale` × the loss of one batch (parameter gradients, ready to accumulate),
/// and its numbers. The vocabulary-sized part runs `chunk` positions at a time (see the module
/// docs); the gradients are those of [`quiet_loss`] up to the order of float sums.
pub fn quiet_gradients(
    model: &QuietModel,
    sampler_model: &QuietModel,
    seqs: &[Vec<u32>],
    thinking: &Thinking,
    kernel: Kernel,
    scale: f64,
    chunk: usize,
) -> (GradientsParams, LossStats) {
    let (grads, stats) = quiet_gradients_pending(model, sampler_model, seqs, thinking, kernel, scale, chunk);
    (grads, stats.read())
}

/// [`quiet_gradients`] with the numbers left on the device, for the caller to read (nothing is
/// read back here: the step runs where reads must be awaited too).
pub fn quiet_gradients_pending(
    model: &QuietModel,
    sampler_model: &QuietModel,
    seqs: &[Vec<u32>],
    thinking: &Thinking,
    kernel: Kernel,
    scale: f64,
    chunk: usize,
) -> (GradientsParams, StatTensors) {
    let st = forward_states(model, sampler_model, seqs, thinking, kernel);
    let counts = st.dims.counts(&st.think);
    let mut accumulator = GradientsAccumulator::<QuietModel>::new();
    let mut stats: Option<StatTensors> = None;
    let plain = model.device().without_autodiff();
    // What the chunks send back to the hidden states: the thought block's gradient in pieces (the
    // chunks' positions are disjoint), the base states' as terms of the transformer's surrogate
    // loss (their windows overlap by talk − 1 positions).
    let mut g_diag = Vec::new();
    let mut base_terms: Option<Tensor<1>> = None;
    for at in st.pieces(chunk) {
        let x = st.chunk(at);
        // The chunk's states as leaves of a graph of its own, of the chunk's size.
        let leaves = Chunk {
            at: x.at.clone(),
            h_base: x.h_base.clone().detach().require_grad(),
            thought: x.thought.as_ref().map(|t| ChunkThought {
                h_diag: t.h_diag.clone().detach().require_grad(),
                thoughts: t.thoughts.clone(),
            }),
        };
        let (loss, part) = head_loss(model, seqs, st.dims, &leaves, counts);
        let mut grads = loss.mul_scalar(scale).backward();
        if let Some(g) = leaves.h_base.grad_remove(&mut grads) {
            let term = (x.h_base * g).sum();
            base_terms = Some(base_terms.map_or(term.clone(), |t| t + term));
        }
        if let (Some(leaf), Some(t)) = (&leaves.thought, &x.thought) {
            let g = leaf.h_diag.grad_remove(&mut grads).unwrap_or_else(|| Tensor::zeros(t.h_diag.dims(), &plain));
            g_diag.push(g);
        }
        accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
        stats = Some(match stats {
            Some(s) => s.add(part),
            None => part,
        });
    }
    // One backward of the transformer: the hidden states against the gradients the chunks sent
    // them (constants: they carry no graph).
    let diag_term = (st.h_diag * Tensor::cat(g_diag, 2)).sum();
    let surrogate = base_terms.map_or(diag_term.clone(), |t| t + diag_term);
    accumulator.accumulate(model, GradientsParams::from_grads(surrogate.backward(), model));
    (accumulator.grads(), stats.expect("at least one chunk"))
}

/// The teacher-forced thought block at every thinking position: start, the thought, end, then
/// the true tokens x_{i+1} … x_{i+talk−1}. Returns every step's hidden states.
fn talk_pass(
    model: &QuietModel,
    cache: &starling_model::cache::KvCache,
    thoughts: Tensor<3, Int>,
    seqs: &[Vec<u32>],
    dims: Dims,
    think: Range<usize>,
    kernel: Kernel,
) -> Tensor<4> {
    let Dims { batch, passes, rows, talk, width, .. } = dims;
    let n = think.len();
    let device = model.device();
    let no_padding = vec![0usize; batch];
    let mut state =
        ThoughtState::new(cache, model.lm.config().num_layers, &no_padding, passes, kernel).thinking_at(think.start, n);
    let mut blocks = model.thought_inputs(thoughts);
    if talk > 1 {
        let talk_in: Vec<i64> = (1..talk).flat_map(|k| shifted(seqs, think.clone(), k)).collect(); // [talk-1, batch, n]
        let talk_in =
            Tensor::<3, Int>::from_data(TensorData::new(talk_in, [talk - 1, batch, n]), &device).swap_dims(0, 1); // [batch, talk-1, n]
        let talk_in = Tensor::cat(vec![talk_in; passes], 0).reshape([rows, (talk - 1) * n]);
        blocks.push(model.lm.embed(talk_in).reshape([rows, talk - 1, n, width]));
    }
    model.thought_steps(Tensor::cat(blocks, 1), &mut state)
}

/// The base hidden state that predicts x_{i+1+k} (the state at position i+k; zeros past the
/// end) for the chunk's n positions and k < talk, repeated for every pass: `[rows, talk, n, d]`.
/// `window` holds the base states from the chunk's first position on ([`Chunk::h_base`]).
fn base_states_ahead(window: &Tensor<3>, n: usize, dims: Dims) -> Tensor<4> {
    let Dims { batch, passes, talk, width, .. } = dims;
    let have = window.dims()[1];
    let device = window.device();
    let mut window = window.clone();
    if have < n + talk - 1 {
        window = Tensor::cat(vec![window, Tensor::zeros([batch, n + talk - 1 - have, width], &device)], 1);
    }
    let shifted: Vec<Tensor<3>> = (0..talk).map(|k| window.clone().narrow(1, k, n)).collect();
    let ahead = Tensor::stack::<4>(shifted, 1); // [batch, talk, n, d]
    Tensor::cat(vec![ahead; passes], 0)
}
