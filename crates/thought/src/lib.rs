//! Thought-parallel attention, the core operation of Quiet-STaR.
//!
//! Every one of the L positions of a sequence carries its own thought. At thought step `a`, the
//! new token of position i attends to the real tokens j ≤ i (from the row's first non-padding
//! slot) and to the thought tokens (t, i) of *its own* position for t ≤ a — never to another
//! position's thought. All L thoughts therefore advance together, one step per forward pass.
//!
//! Three implementations, same results:
//! - [`Kernel::Fused`]: CubeCL kernels (`starling-shaders`, compiled to WGSL, SPIR-V, MSL or CUDA
//!   by the device's runtime), forward and a
//!   hand-written backward, online softmax, memory O(L·S·d) — on wgpu and CUDA devices.
//! - [`Kernel::Split`]: plain burn tensor ops that score the real keys (an L×L causal block) and
//!   the position's own thought keys (an Sq×Sk block per position) separately — every backend.
//! - [`Kernel::Dense`]: the formulation of the official code, one explicit mask over all
//!   L·(Sk+1) keys — the test oracle and the benchmark baseline.
//!
//! Shapes: queries `[B, H, Sq, Lq, hd]` for Sq steps (the last Sq of Sk), real keys/values
//! `[B, KVH, L, hd]`, thought keys/values `[B, KVH, Sk, Lq, hd]` (H a multiple of KVH: grouped-
//! query attention), output `[B, H, Sq, Lq, hd]`. The [`Visibility`] says which positions carry
//! thoughts (Lq consecutive ones from `first`: at evaluation only those that are scored), which
//! slots are padding, and the sliding window.

mod fused;
pub mod reference;

use burn::backend::DispatchDevice;
use burn::tensor::{Device, Tensor};

pub use fused::{ThoughtAttentionBackend, ThoughtAttentionKernels};

/// Which implementation computes the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// Fused kernels on GPU (cubecl) devices, [`Kernel::Split`] elsewhere.
    #[default]
    Auto,
    Fused,
    Split,
    Dense,
}

impl std::str::FromStr for Kernel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Kernel::Auto),
            "fused" => Ok(Kernel::Fused),
            "split" => Ok(Kernel::Split),
            "dense" => Ok(Kernel::Dense),
            other => Err(format!("unknown attention kernel `{other}` (expected auto, fused, split or dense)")),
        }
    }
}

impl Kernel {
    /// The implementation that runs on `device`. Asking for `Fused` off a GPU device is a programming
    /// error (the kernels run on cubecl's GPU runtimes).
    pub fn resolve(self, device: &Device) -> Kernel {
        match self {
            Kernel::Auto if fused_available(device) => Kernel::Fused,
            Kernel::Auto => Kernel::Split,
            Kernel::Fused => {
                assert!(
                    fused_available(device),
                    "the fused thought-attention kernel needs a GPU (wgpu or CUDA) device"
                );
                Kernel::Fused
            }
            k => k,
        }
    }
}

/// Whether the fused kernels can run on `device` (a cubecl device — wgpu or CUDA — with or
/// without autodiff).
pub fn fused_available(device: &Device) -> bool {
    matches!(device.clone().without_autodiff().as_dispatch(), DispatchDevice::Cube(_))
}

/// Why a kernel cannot run where it was asked to (front ends say which setting to change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("the fused thought-attention kernel runs only on GPU devices (wgpu or CUDA)")]
    FusedNeedsWgpu,
    #[error("head dim {head_dim} is above the fused thought-attention kernel's limit of {limit}")]
    HeadDimTooLarge { head_dim: usize, limit: usize },
}

/// Whether `kernel` can run on `device` for heads of `head_dim`: an error instead of the panic
/// inside the op.
pub fn check_kernel(kernel: Kernel, device: &Device, head_dim: usize) -> Result<(), KernelError> {
    if kernel == Kernel::Fused && !fused_available(device) {
        return Err(KernelError::FusedNeedsWgpu);
    }
    if kernel.resolve(device) == Kernel::Fused && head_dim > MAX_FUSED_HEAD_DIM {
        return Err(KernelError::HeadDimTooLarge { head_dim, limit: MAX_FUSED_HEAD_DIM });
    }
    Ok(())
}

/// Largest head dimension the fused kernels accept (they keep a few head-sized rows per
/// invocation in private memory).
pub const MAX_FUSED_HEAD_DIM: usize = 256;

/// Which keys a thought query sees, besides the thought structure itself (its own position's
/// thought, steps up to its own). The rules are written here once; the GPU kernels repeat them
/// (`shaders/src/visibility.rs`) and the tests hold the two to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// Padding slots at the start of each row: never visible.
    pub pad_left: Vec<usize>,
    /// The first position that carries a thought: queries and thought keys cover positions
    /// `first..first + Lq` (Lq from their shapes, `first + Lq ≤ L`). 0 in training (Lq = L); at
    /// evaluation the first scored position, so a prompt costs one ordinary pass and only the
    /// answer's positions think.
    pub first: usize,
    /// Mistral's sliding window: a query sees keys at most `window − 1` slots back, where the
    /// token of thought step `a` after position `p` sits at slot `p + a + 1` (where it is
    /// inserted, as its RoPE position says).
    pub window: Option<usize>,
}

impl Visibility {
    /// Every position thinks, no window.
    pub fn full(pad_left: &[usize]) -> Self {
        Self { pad_left: pad_left.to_vec(), first: 0, window: None }
    }

    /// The real keys `lo..=p` that the step-`step` query of position `p` in row `row` sees
    /// (empty when `p` is padding).
    pub fn real_keys(&self, row: usize, p: usize, step: usize) -> std::ops::Range<usize> {
        let pad = self.pad_left[row];
        let lo = match self.window {
            Some(w) => pad.max((p + step + 2).saturating_sub(w)),
            None => pad,
        };
        lo..p + 1
    }

    /// The first thought step whose key the step-`step` query sees (it sees `lo..=step`).
    pub fn first_thought_key(&self, step: usize) -> usize {
        self.window.map_or(0, |w| (step + 1).saturating_sub(w))
    }
}

/// Thought-parallel attention; see the crate docs for shapes and [`Visibility`].
pub fn thought_attention(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    vis: &Visibility,
    kernel: Kernel,
) -> Tensor<5> {
    check_shapes(&q, &k_real, &v_real, &k_diag, &v_diag, vis);
    match kernel.resolve(&q.device()) {
        Kernel::Fused => fused::thought_attention_fused(q, k_real, v_real, k_diag, v_diag, vis),
        Kernel::Dense => reference::dense(q, k_real, v_real, k_diag, v_diag, vis),
        _ => reference::split(q, k_real, v_real, k_diag, v_diag, vis),
    }
}

fn check_shapes(
    q: &Tensor<5>,
    k_real: &Tensor<4>,
    v_real: &Tensor<4>,
    k_diag: &Tensor<5>,
    v_diag: &Tensor<5>,
    vis: &Visibility,
) {
    let [b, h, sq, lq, hd] = q.dims();
    let [kb, kvh, kl, khd] = k_real.dims();
    let [db, dkvh, sk, dl, dhd] = k_diag.dims();
    assert_eq!(k_real.dims(), v_real.dims(), "real keys and values differ in shape");
    assert_eq!(k_diag.dims(), v_diag.dims(), "thought keys and values differ in shape");
    assert!(
        kb == b && db == b && dl == lq && khd == hd && dhd == hd && dkvh == kvh,
        "thought attention shapes disagree: q {:?}, real k {:?}, thought k {:?}",
        q.dims(),
        k_real.dims(),
        k_diag.dims()
    );
    assert!(kvh > 0 && h % kvh == 0, "{h} query heads are not a multiple of {kvh} key/value heads");
    assert!(sq >= 1 && sq <= sk, "{sq} query steps but only {sk} thought key steps");
    assert!(vis.first + lq <= kl, "{lq} thinking positions from {} run past the {kl} positions", vis.first);
    assert_eq!(vis.pad_left.len(), b, "one padding count per row");
    assert!(vis.pad_left.iter().all(|&p| p <= kl), "padding longer than the sequence");
    assert!(vis.window != Some(0), "a sliding window of 0 slots sees nothing");
}

/// Softmax scale 1/√hd.
pub(crate) fn scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_without_window_is_causal_from_the_padding() {
        let v = Visibility::full(&[0, 2]);
        assert_eq!(v.real_keys(0, 4, 7), 0..5);
        assert_eq!(v.real_keys(1, 4, 0), 2..5);
        // A padding position sees no real key (only its own thought).
        assert!(v.real_keys(1, 1, 0).is_empty());
        assert_eq!(v.first_thought_key(9), 0);
    }

    #[test]
    fn window_counts_the_thought_slots() {
        // Window 4: the slot-s token sees slots s−3..=s. Step a after position p sits at slot
        // p + a + 1, so step 0 after p = 5 (slot 6) sees real keys 3..=5, step 2 (slot 8) only 5.
        let v = Visibility { pad_left: vec![0], first: 0, window: Some(4) };
        assert_eq!(v.real_keys(0, 5, 0), 3..6);
        assert_eq!(v.real_keys(0, 5, 2), 5..6);
        assert!(v.real_keys(0, 5, 3).is_empty());
        // Thought keys: step 5 sees steps 2..=5 (slots p+3..=p+6).
        assert_eq!(v.first_thought_key(5), 2);
        assert_eq!(v.first_thought_key(2), 0);
        // The padding still bounds it from below.
        let v = Visibility { pad_left: vec![4], first: 0, window: Some(4) };
        assert_eq!(v.real_keys(0, 5, 0), 4..6);
    }
}
