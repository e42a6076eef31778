//! Starling's GPU kernels, one source for every GPU target: the `#[cube]` functions here are
//! compiled by cubecl at run time to WGSL (wgpu, the browser's WebGPU), SPIR-V (Vulkan), MSL
//! (Metal) or CUDA, whichever the device's runtime uses.
//!
//! Thought-parallel attention (Quiet-STaR), launched by `starling-thought`:
//!
//! | kernel | one unit per | computes |
//! |---|---|---|
//! | [`fn@thought_attention_fwd`] | query row (b, h, step, i) | output and log-sum-exp (online softmax) |
//! | [`fn@thought_attention_stats`] | query row | (log-sum-exp, delta = ⟨dO, O⟩), read by the three below |
//! | [`fn@thought_attention_bwd_dq`] | query row | dQ |
//! | [`fn@thought_attention_bwd_dkv_real`] | real key (b, kv head, j) | dK, dV of the real tokens |
//! | [`fn@thought_attention_bwd_dkv_diag`] | thought key (b, kv head, t, i) | dK, dV of the thought tokens |
//!
//! Layout (contiguous f32, row-major), the same for every kernel:
//! - `q` `[B, H, Sq, Lq, hd]`: Sq thought steps (the last Sq of Sk) of the Lq thinking positions,
//!   which are the real positions `first..first + Lq`.
//! - `kv_real` `[2, B, KVH, L, hd]`: keys then values of the real tokens (packed in one buffer).
//! - `kv_diag` `[2, B, KVH, Sk, Lq, hd]`: keys then values of the thought tokens, step-major.
//! - `pads` `[B]` (u32): padding slots at the start of each row.
//!
//! Keys and values share a buffer, and so do the two per-row statistics, so that no kernel binds
//! more than 7 buffers: with cubecl's one metadata buffer that fits WebGPU's default limit of 8
//! storage buffers per shader stage, and the browser can train.
//!
//! The visibility rules (which real and thought keys a query sees, padding, sliding window) are
//! `Visibility` in `crates/thought/src/lib.rs`; [`visibility`] repeats them for the GPU and the
//! tests of `starling-thought` hold the two together.

pub mod thought_attention;
pub mod visibility;

pub use thought_attention::{
    thought_attention_bwd_dkv_diag, thought_attention_bwd_dkv_real, thought_attention_bwd_dq, thought_attention_fwd,
    thought_attention_stats,
};
pub use visibility::{Dims, DimsLaunch};
