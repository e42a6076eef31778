//! The decoder-only transformer of the Llama family: token embedding, `num_layers` pre-norm
//! blocks (RMSNorm → grouped-query attention with RoPE → residual; RMSNorm → SwiGLU MLP →
//! residual), a final RMSNorm and the LM head (tied to the embedding or not).
//!
//! The pieces are public so later stages can reach inside: Quiet-STaR feeds its own embeddings
//! (start/end-of-thought) through [`Transformer::forward_embeds`] and mixes hidden states before
//! [`Transformer::logits`].

use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, RmsNorm};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::mask::AttentionBias;

/// Deterministic parameter id from the parameter's Hugging Face name, so optimizer state saved
/// in one run lines up with the same parameters when a checkpoint is loaded in another.
pub fn param_id(name: &str) -> ParamId {
    ParamId::from(crate::hash::Fnv1a::of(name.as_bytes()))
}

/// A parameter named `name` (see [`param_id`]), trainable when `device` has autodiff.
pub fn param<const D: usize>(name: &str, data: TensorData, device: &Device) -> Param<Tensor<D>> {
    let t = Tensor::from_data(data, device);
    let t = if device.is_autodiff() { t.require_grad() } else { t };
    Param::initialized(param_id(name), t)
}

/// A parameter named `name` initialized from a tensor computed on its device (detached from
/// any graph): no read-back, which a page's WebGPU device cannot do synchronously.
pub fn param_from<const D: usize>(name: &str, init: Tensor<D>) -> Param<Tensor<D>> {
    let t = init.detach();
    let t = if t.device().is_autodiff() { t.require_grad() } else { t };
    Param::initialized(param_id(name), t)
}

#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    #[module(skip)]
    pub num_heads: usize,
    #[module(skip)]
    pub num_kv_heads: usize,
    #[module(skip)]
    pub head_dim: usize,
}

/// RoPE angles of a batch of positions, computed once per forward pass and shared by all layers.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[B, L, 1, head_dim]`: cos of the angles, repeated for both halves.
    cos: Tensor<4>,
    /// `[B, L, 1, head_dim]`: −sin for the first half, +sin for the second.
    sin: Tensor<4>,
}

impl Rope {
    /// Angles for RoPE positions `[B, L]` (floats), inverse frequencies θ^(−2i/d).
    pub fn new(positions: &Tensor<2>, head_dim: usize, theta: f64) -> Self {
        let [b, l] = positions.dims();
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
        let inv_freq = Tensor::<1>::from_data(TensorData::new(inv_freq, [half]), &positions.device());
        // [B, L, 1] × [1, 1, half] → angles [B, L, half].
        let angles = positions.clone().reshape([b, l, 1]) * inv_freq.reshape([1, 1, half]);
        let (cos, sin) = (angles.clone().cos(), angles.sin());
        Self {
            cos: Tensor::cat(vec![cos.clone(), cos], 2).reshape([b, l, 1, head_dim]),
            sin: Tensor::cat(vec![sin.clone().neg(), sin], 2).reshape([b, l, 1, head_dim]),
        }
    }

    /// Rotates q or k (`[B, L, heads, hd]`) in the "rotate half" layout of Hugging Face Llama:
    /// [x1, x2] → [x1·cos − x2·sin, x2·cos + x1·sin], computed as x·cos + [x2, x1]·(∓sin).
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let half = x.dims()[3] / 2;
        let swapped = Tensor::cat(vec![x.clone().narrow(3, half, half), x.clone().narrow(3, 0, half)], 3);
        x * self.cos.clone() + swapped * self.sin.clone()
    }
}

/// SiLU as x / (1 + e^(−x)): the same function as burn's `silu`, about twice as fast on the CPU
/// backend (one exp and one division instead of a sigmoid and a product).
pub fn silu(x: Tensor<3>) -> Tensor<3> {
    x.clone() / x.neg().exp().add_scalar(1.0)
}

impl Attention {
    /// `x`: `[B, L, d]`; `rope`: angles of the L positions; `bias`: additive attention bias
    /// over all keys (cached + new); `cache`: this layer's keys/values, extended in place.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        bias: &AttentionBias,
        cache: Option<&mut crate::cache::LayerCache>,
    ) -> Tensor<3> {
        let (q, k, v) = self.project(x, rope);
        let (prefix, (k, v)) = match cache {
            Some(c) => (c.prefix().cloned(), c.append(k, v)),
            None => (None, (k, v)),
        };
        let out = match prefix {
            Some((pk, pv)) => prefixed_attention(q, (k, v), (pk, pv), bias),
            None if use_fused_attention(&k) => fused_attention(q, k, v, bias),
            None => grouped_attention(q, k, v, bias),
        };
        self.o_proj.forward(out)
    }

    /// Rotated queries `[B, L, h, hd]` and keys/values `[B, kvh, L, hd]` of `x` (`[B, L, d]`).
    pub fn project(&self, x: Tensor<3>, rope: &Rope) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, l, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = rope.apply(self.q_proj.forward(x.clone()).reshape([b, l, h, hd]));
        let k = rope.apply(self.k_proj.forward(x.clone()).reshape([b, l, kvh, hd]));
        let v = self.v_proj.forward(x).reshape([b, l, kvh, hd]);
        (q, k.swap_dims(1, 2), v.swap_dims(1, 2))
    }
}

/// burn's attention op where it is a fused, grouped-query-aware kernel: the CPU backend without
/// autodiff. Under autodiff burn decomposes it, and on wgpu (burn 0.22) it falls back to plain
/// matmuls; neither handles fewer KV heads than query heads.
fn use_fused_attention(k: &Tensor<4>) -> bool {
    !k.is_autodiff() && crate::device::backend_of(&k.device()) == crate::device::BackendKind::Flex
}

/// q `[B, L, h, hd]`, k/v `[B, kvh, T, hd]` → `[B, L, h·hd]`.
fn fused_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: &AttentionBias) -> Tensor<3> {
    let [b, l, h, hd] = q.dims();
    let t = k.dims()[2];
    let bias = bias.tensor().clone().reshape([b, 1, l, t]);
    let out = burn::tensor::module::attention(q.swap_dims(1, 2), k, v, None, Some(bias), Default::default());
    out.swap_dims(1, 2).reshape([b, l, h * hd])
}

/// Attention from plain tensor ops (differentiable on every backend). Grouped-query attention
/// without copying K/V: the `rep` query heads that share a KV head are stacked along the query
/// axis, `[B, kvh, rep·L, hd]`.
fn grouped_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: &AttentionBias) -> Tensor<3> {
    let [b, l, h, hd] = q.dims();
    let [_, kvh, t, _] = k.dims();
    let rep = h / kvh;
    let q = q.reshape([b, l, kvh, rep, hd]).permute([0, 2, 3, 1, 4]).reshape([b, kvh, rep * l, hd]);
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale).reshape([b, kvh, rep, l, t]);
    let scores = scores + bias.tensor().clone().reshape([b, 1, 1, l, t]);
    let probs = softmax(scores, 4).reshape([b, kvh, rep * l, t]);
    let out = probs.matmul(v); // [B, kvh, rep·L, hd]
    out.reshape([b, kvh, rep, l, hd]).permute([0, 3, 1, 2, 4]).reshape([b, l, h * hd])
}

/// Attention over a shared prefix's keys (`[1, kvh, P, hd]`, the same for every row) and each
/// row's own keys (`[B, kvh, T, hd]`), as one softmax over both. The prefix is never copied per
/// row: every row's queries are stacked along the query axis and meet the prefix in one
/// product per KV head, `[1, kvh, B·rep·L, hd] × [1, kvh, hd, P]`.
fn prefixed_attention(
    q: Tensor<4>,
    own: (Tensor<4>, Tensor<4>),
    prefix: (Tensor<4>, Tensor<4>),
    bias: &AttentionBias,
) -> Tensor<3> {
    let [b, l, h, hd] = q.dims();
    let (k, v) = own;
    let (pk, pv) = prefix;
    let [_, kvh, t, _] = k.dims();
    let p = pk.dims()[2];
    let rep = h / kvh;
    let rows = rep * l;
    let q = q.reshape([b, l, kvh, rep, hd]).permute([0, 2, 3, 1, 4]).reshape([b, kvh, rows, hd]);
    let q = q.mul_scalar(1.0 / (hd as f64).sqrt());
    // [B, kvh, rows, hd] ↔ [1, kvh, B·rows, hd]: all rows' queries against the one prefix.
    let stack = |x: Tensor<4>, width: usize| x.swap_dims(0, 1).reshape([1, kvh, b * rows, width]);
    let unstack = |x: Tensor<4>, width: usize| x.reshape([kvh, b, rows, width]).swap_dims(0, 1);
    let with_bias = |scores: Tensor<4>, bias: &Tensor<3>, keys: usize| {
        (scores.reshape([b, kvh, rep, l, keys]) + bias.clone().reshape([b, 1, 1, l, keys]))
            .reshape([b, kvh, rows, keys])
    };
    let prefix_scores = unstack(stack(q.clone(), hd).matmul(pk.swap_dims(2, 3)), p);
    let prefix_scores = match bias.prefix() {
        Some(pb) => with_bias(prefix_scores, pb, p),
        None => prefix_scores,
    };
    let own_scores = with_bias(q.matmul(k.swap_dims(2, 3)), bias.tensor(), t);
    let probs = softmax(Tensor::cat(vec![prefix_scores, own_scores], 3), 3);
    let from_prefix = unstack(stack(probs.clone().narrow(3, 0, p), p).matmul(pv), hd);
    let out = from_prefix + probs.narrow(3, p, t).matmul(v); // [B, kvh, rows, hd]
    out.reshape([b, kvh, rep, l, hd]).permute([0, 3, 1, 2, 4]).reshape([b, l, h * hd])
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: Attention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        bias: &AttentionBias,
        cache: Option<&mut crate::cache::LayerCache>,
    ) -> Tensor<3> {
        let attn = self.self_attn.forward(self.input_layernorm.forward(x.clone()), rope, bias, cache);
        self.finish(x, attn)
    }

    /// The layer with the attention core supplied by `attend` (q `[B, L, h, hd]`, k/v
    /// `[B, kvh, L, hd]` → `[B, L, h·hd]` before the output projection).
    pub fn forward_with(
        &self,
        x: Tensor<3>,
        rope: &Rope,
        attend: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<3>,
    ) -> Tensor<3> {
        let (q, k, v) = self.self_attn.project(self.input_layernorm.forward(x.clone()), rope);
        let attn = self.self_attn.o_proj.forward(attend(q, k, v));
        self.finish(x, attn)
    }

    /// Residual around attention, then the MLP block.
    fn finish(&self, x: Tensor<3>, attn: Tensor<3>) -> Tensor<3> {
        let x = x + attn;
        let mlp = self.mlp.forward(self.post_attention_layernorm.forward(x.clone()));
        x + mlp
    }
}

/// The whole decoder. Parameter names follow Hugging Face (`model.layers.N…` is `layers.N…`).
#[derive(Module, Debug)]
pub struct Transformer {
    /// `[vocab, d]`.
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `[d, vocab]` when the head is not tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub config: ModelConfig,
}

impl Transformer {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.embed_tokens.val().device()
    }

    /// Token embeddings, `[B, L]` → `[B, L, d]`.
    pub fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        burn::tensor::module::embedding(self.embed_tokens.val(), tokens)
    }

    /// Runs the decoder stack on embeddings and returns the final-normed hidden states
    /// `[B, L, d]`. `positions` are RoPE positions `[B, L]` (as floats); `bias` masks keys.
    pub fn forward_embeds(
        &self,
        embeds: Tensor<3>,
        positions: &Tensor<2>,
        bias: &AttentionBias,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let mut x = embeds;
        let rope = Rope::new(positions, self.config.head_dim, self.config.rope_theta);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| c.layer_mut(i));
            x = layer.forward(x, &rope, bias, layer_cache);
        }
        if let Some(c) = cache {
            c.advance(positions.dims()[1]);
        }
        self.norm.forward(x)
    }

    /// Like [`Transformer::forward_embeds`] with the attention core of layer `i` supplied by
    /// `attend(i, q, k, v)` (Quiet-STaR's thought-parallel attention plugs in here).
    pub fn forward_embeds_with(
        &self,
        embeds: Tensor<3>,
        positions: &Tensor<2>,
        mut attend: impl FnMut(usize, Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<3>,
    ) -> Tensor<3> {
        let rope = Rope::new(positions, self.config.head_dim, self.config.rope_theta);
        let mut x = embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward_with(x, &rope, |q, k, v| attend(i, q, k, v));
        }
        self.norm.forward(x)
    }

    /// LM head: hidden `[B, L, d]` → logits `[B, L, vocab]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let [b, l, d] = hidden.dims();
        let flat = hidden.reshape([b * l, d]);
        let logits = match &self.lm_head {
            Some(w) => flat.matmul(w.val()),
            None => flat.matmul(self.embed_tokens.val().transpose()),
        };
        logits.reshape([b, l, self.config.vocab_size])
    }

    /// Full-sequence forward with a causal mask and no padding: tokens `[B, L]` → logits.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = tokens.dims();
        let device = tokens.device();
        let positions = crate::mask::positions(&vec![0; b], 0, l, &device);
        let bias = AttentionBias::causal(&vec![0; b], 0, l, self.config.sliding_window, &device);
        let hidden = self.forward_embeds(self.embed(tokens), &positions, &bias, None);
        self.logits(hidden)
    }
}
