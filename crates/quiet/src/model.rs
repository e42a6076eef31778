//! The Quiet-STaR model: a base transformer, learned start/end-of-thought embeddings, and the
//! mixing head that interpolates the base and post-thought predictions.
//!
//! Start and end are parameters of their own, not vocabulary entries: the LM head can never
//! produce them, so they are never sampled inside a thought nor emitted as text, and no
//! vocabulary slot is needed for them.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use starling_model::cache::KvCache;
use starling_model::mask::{AttentionBias, positions};
use starling_model::model::{param, param_from};
use starling_model::{Tokenizer, Transformer};
use starling_thought::{Kernel, Visibility, thought_attention};

use crate::config::{MixingWeight, QuietConfig};
use crate::{QuietError, Result};

/// `[h_base; h_post]` → Linear(2d→d) → ReLU → Linear(d→d) → ReLU → Linear(d→1) → z, and
/// w = tanh(|z|) ∈ [0, 1). The last layer starts at zero, so w = 0 and the model starts exactly
/// at the base model. The gradient is the true one, never zero: at z = 0 the derivative of |z|
/// is taken as +1, so a head pushed below 0 meets a rising w and is pushed back, hovering at
/// w ≈ 0 while thoughts do not help and opening as soon as they do. (A clamp to [0, 1] would
/// either stop learning below 0 or, with a straight-through gradient, let z run off to −∞ with
/// a gradient that never shrinks: that gradient swamped the global gradient norm, and with it
/// the clipped step of the whole language model.)
#[derive(Module, Debug)]
pub struct MixingHead {
    pub input: Linear,
    pub hidden: Linear,
    pub output: Linear,
}

impl MixingHead {
    /// A fresh head whose output starts at the z that gives the mixing weight `initial` (0 by
    /// default: the model starts exactly at the base model).
    pub fn new(d: usize, seed: u64, kind: MixingWeight, initial: f64, device: &Device) -> Self {
        let mut rng = SplitMix(seed ^ 0x6d69_7869_6e67);
        let z0 = match kind {
            MixingWeight::Linear => initial,
            MixingWeight::TanhAbs => initial.atanh(),
        } as f32;
        let mut linear = |name: &str, fan_in: usize, fan_out: usize, zero: bool| {
            let k = 1.0 / (fan_in as f32).sqrt();
            let w: Vec<f32> = (0..fan_in * fan_out).map(|_| if zero { 0.0 } else { rng.uniform(k) }).collect();
            let b: Vec<f32> = (0..fan_out).map(|_| if zero { z0 } else { rng.uniform(k) }).collect();
            Linear {
                weight: param(&format!("quiet.mixing.{name}.weight"), TensorData::new(w, [fan_in, fan_out]), device),
                bias: Some(param(&format!("quiet.mixing.{name}.bias"), TensorData::new(b, [fan_out]), device)),
            }
        };
        Self {
            input: linear("input", 2 * d, d, false),
            hidden: linear("hidden", d, d, false),
            output: linear("output", d, 1, true),
        }
    }

    /// Mixing weight `[.., 1]` for hidden states `[.., d]` (any leading shape of rank 4).
    pub fn weight(&self, h_base: Tensor<4>, h_post: Tensor<4>, kind: MixingWeight) -> Tensor<4> {
        let x = Tensor::cat(vec![h_base, h_post], 3);
        let z = self.output.forward(relu(self.hidden.forward(relu(self.input.forward(x)))));
        match kind {
            MixingWeight::Linear => z,
            MixingWeight::TanhAbs => {
                // |z| as z·sign(z) with sign(0) = +1, so the gradient at the start (z = 0) is not 0.
                let sign = z.clone().lower_elem(0.0).float().mul_scalar(-2.0).add_scalar(1.0).detach();
                (z * sign).tanh()
            }
        }
    }
}

/// Deterministic initializer (the mixing head is tiny; no need for a crate-level RNG).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, k: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * k
    }
}

#[derive(Module, Debug)]
pub struct QuietModel {
    pub lm: Transformer,
    /// Start-of-thought embedding `[d]`, stored divided by `embedding_multiplier`.
    pub start_thought: Param<Tensor<1>>,
    /// End-of-thought embedding `[d]`, stored divided by `embedding_multiplier`.
    pub end_thought: Param<Tensor<1>>,
    pub mixing: MixingHead,
    #[module(skip)]
    pub config: QuietConfig,
}

/// The text whose embedding initializes both thought markers (as in the official code).
pub const MARKER_INIT_TEXT: &str = "---";

impl QuietModel {
    /// Wraps a base model: markers from the mean embedding of "---", a fresh mixing head.
    pub fn new(lm: Transformer, tokenizer: &Tokenizer, config: QuietConfig, seed: u64) -> Result<Self> {
        Self::with_markers(lm, tokenizer, config, seed, MARKER_INIT_TEXT, MARKER_INIT_TEXT)
    }

    /// Wraps a base model with the start marker initialized from the mean embedding of
    /// `start_text` and the end marker from that of `end_text` (text the model already reads as
    /// opening and closing an aside gives thoughts a head start), and a fresh mixing head.
    pub fn with_markers(
        lm: Transformer,
        tokenizer: &Tokenizer,
        config: QuietConfig,
        seed: u64,
        start_text: &str,
        end_text: &str,
    ) -> Result<Self> {
        config.validate()?;
        let device = lm.device();
        let d = lm.config().hidden_size;
        let marker = |name: &str, text: &str| -> Result<Param<Tensor<1>>> {
            let ids = tokenizer.encode(text, false)?;
            if ids.is_empty() {
                return Err(QuietError::Input(format!(
                    "the tokenizer cannot encode {text:?}, whose embedding initializes a thought marker"
                )));
            }
            let idx = Tensor::<1, Int>::from_data(
                TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [ids.len()]),
                &device,
            );
            let init =
                lm.embed_tokens.val().select(0, idx).mean_dim(0).reshape([d]).div_scalar(config.embedding_multiplier);
            Ok(param_from(name, init))
        };
        Ok(Self {
            start_thought: marker("quiet.start_thought", start_text)?,
            end_thought: marker("quiet.end_thought", end_text)?,
            mixing: MixingHead::new(d, seed, config.mixing, config.initial_mixing_weight, &device),
            lm,
            config,
        })
    }

    pub fn device(&self) -> Device {
        self.lm.device()
    }

    pub fn hidden_size(&self) -> usize {
        self.lm.config().hidden_size
    }

    /// Start (`false`) or end (`true`) marker embedding, `[d]`, multiplier applied.
    pub fn marker(&self, end: bool) -> Tensor<1> {
        let p = if end { &self.end_thought } else { &self.start_thought };
        p.val().mul_scalar(self.config.embedding_multiplier)
    }

    /// The marker broadcast to `[n, 1, L, d]`.
    pub fn marker_block(&self, end: bool, n: usize, l: usize) -> Tensor<4> {
        let d = self.hidden_size();
        self.marker(end).reshape([1, 1, 1, d]).expand([n, 1, l, d])
    }

    /// The thought as teacher-forced input, `[N, n_thought + 2, L, d]` in three pieces: the start
    /// marker, the embedded thought tokens `thoughts` `[N, n_thought, L]`, the end marker.
    pub fn thought_inputs(&self, thoughts: Tensor<3, Int>) -> Vec<Tensor<4>> {
        let [n, nt, l] = thoughts.dims();
        let d = self.hidden_size();
        vec![
            self.marker_block(false, n, l),
            self.lm.embed(thoughts.reshape([n, nt * l])).reshape([n, nt, l, d]),
            self.marker_block(true, n, l),
        ]
    }

    /// Ordinary causal pass over left-padded `tokens` `[B, L]`: final hidden states `[B, L, d]`
    /// and every layer's keys/values.
    pub fn base_pass(&self, tokens: Tensor<2, Int>, pad_left: &[usize]) -> (Tensor<3>, KvCache) {
        let [_, l] = tokens.dims();
        let device = tokens.device();
        let mut cache = KvCache::new(self.lm.config().num_layers);
        let pos = positions(pad_left, 0, l, &device);
        let bias = AttentionBias::causal(pad_left, 0, l, self.lm.config().sliding_window, &device);
        let hidden = self.lm.forward_embeds(self.lm.embed(tokens), &pos, &bias, Some(&mut cache));
        (hidden, cache)
    }

    /// Advances the thought of every thinking position (see [`ThoughtState::thinking_at`]) by
    /// `Sq` steps: `embeds` `[N, Sq, Lq, d]` → hidden states
    /// `[N, Sq, Lq, d]`. `state` holds the real keys/values and the earlier steps.
    pub fn thought_steps(&self, embeds: Tensor<4>, state: &mut ThoughtState) -> Tensor<4> {
        let [n, sq, l, d] = embeds.dims();
        let device = embeds.device();
        let first_step = state.steps;
        let first_pos = state.first;
        // Thought step a of position p sits at RoPE position p + a + 1, as if inserted there.
        let pos: Vec<f32> = state
            .pad_left
            .iter()
            .flat_map(|&pad| {
                (0..sq).flat_map(move |s| {
                    (0..l).map(move |i| ((first_pos + i).saturating_sub(pad) + first_step + s + 1) as f32)
                })
            })
            .collect();
        let pos = Tensor::<2>::from_data(TensorData::new(pos, [n, sq * l]), &device);
        let (h, kvh, hd) = (self.lm.config().num_heads, self.lm.config().num_kv_heads, self.lm.config().head_dim);
        let kernel = state.kernel;
        let vis = Visibility {
            pad_left: state.pad_left.clone(),
            first: state.first,
            window: self.lm.config().sliding_window,
        };
        let hidden = self.lm.forward_embeds_with(embeds.reshape([n, sq * l, d]), &pos, |layer, q, k, v| {
            let q = q.reshape([n, sq, l, h, hd]).permute([0, 3, 1, 2, 4]);
            let k = k.reshape([n, kvh, sq, l, hd]);
            let v = v.reshape([n, kvh, sq, l, hd]);
            let (kd, vd) = match state.diag[layer].take() {
                Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
                None => (k, v),
            };
            state.diag[layer] = Some((kd.clone(), vd.clone()));
            let (kr, vr) = state.real[layer].clone();
            let out = thought_attention(q, kr, vr, kd, vd, &vis, kernel);
            out.permute([0, 2, 3, 1, 4]).reshape([n, sq * l, h * hd])
        });
        state.steps += sq;
        hidden.reshape([n, sq, l, d])
    }

    /// Mixes base and post-thought hidden states: `(h_base + w·(h_post − h_base), w)`.
    pub fn mix(&self, h_base: Tensor<4>, h_post: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let w = self.mixing.weight(h_base.clone(), h_post.clone(), self.config.mixing);
        (h_base.clone() + (h_post - h_base) * w.clone(), w)
    }

    /// LM head on `[N, S, L, d]` → logits `[N, S, L, V]`.
    pub fn logits4(&self, hidden: Tensor<4>) -> Tensor<4> {
        let [n, s, l, d] = hidden.dims();
        self.lm.logits(hidden.reshape([n, s * l, d])).reshape([n, s, l, self.lm.config().vocab_size])
    }

    /// Checks that `kernel` can run on this model's device and head size.
    pub fn check_kernel(&self, kernel: Kernel) -> Result<()> {
        Ok(starling_thought::check_kernel(kernel, &self.device(), self.lm.config().head_dim)?)
    }

    /// Checks that sequences of `len` tokens leave room for a thought within the context.
    pub fn check_length(&self, len: usize) -> Result<()> {
        let ctx = self.lm.config().max_position_embeddings;
        let need = len + self.config.thought_slots() + self.config.n_talk;
        if need > ctx {
            return Err(QuietError::Input(format!(
                "a sequence of {len} tokens plus a thought ({} slots) and {} talk tokens needs {need} positions, \
                 but the model's context is {ctx}; use sequences of at most {} tokens or a shorter thought",
                self.config.thought_slots(),
                self.config.n_talk,
                ctx.saturating_sub(self.config.thought_slots() + self.config.n_talk)
            )));
        }
        Ok(())
    }
}

/// What a thought pass keeps between steps: each layer's real keys/values `[N, KVH, L, hd]`
/// and the thought keys/values so far `[N, KVH, steps, Lq, hd]`.
pub struct ThoughtState {
    pub real: Vec<(Tensor<4>, Tensor<4>)>,
    pub diag: Vec<Option<(Tensor<5>, Tensor<5>)>>,
    pub pad_left: Vec<usize>,
    /// The thinking positions: `first..first + thinking` carry thoughts (all L by default).
    pub first: usize,
    pub thinking: usize,
    pub steps: usize,
    pub kernel: Kernel,
}

impl ThoughtState {
    /// From a base pass's cache, each row repeated `passes` times (row `p·B + b` is pass p of
    /// row b).
    pub fn new(cache: &KvCache, num_layers: usize, pad_left: &[usize], passes: usize, kernel: Kernel) -> Self {
        let repeat4 = |t: &Tensor<4>| if passes == 1 { t.clone() } else { Tensor::cat(vec![t.clone(); passes], 0) };
        let real = (0..num_layers)
            .map(|i| {
                let (k, v) = cache.layer(i).kv().expect("base pass fills every layer's cache");
                (repeat4(k), repeat4(v))
            })
            .collect();
        let pad_left = (0..passes).flat_map(|_| pad_left.iter().copied()).collect();
        let thinking = cache.len();
        Self { real, diag: vec![None; num_layers], pad_left, first: 0, thinking, steps: 0, kernel }
    }

    /// Thoughts only at the `count` positions from `first` (those whose predictions are
    /// scored): the rest of the sequence is read through the real keys/values alone, so it costs
    /// nothing beyond the base pass.
    pub fn thinking_at(mut self, first: usize, count: usize) -> Self {
        assert_eq!(self.steps, 0, "the thinking positions are chosen before the first step");
        assert!(first + count <= self.thinking, "thinking positions {first}..{} past the sequence", first + count);
        self.first = first;
        self.thinking = count;
        self
    }
}
