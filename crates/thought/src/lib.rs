//! Thought-parallel attention, the core operation of Quiet-STaR.
//!
//! Every one of the L positions of a sequence carries its own thought. At thought step `a`, the
//! new token of position i attends to the real tokens j ≤ i (from the row's first non-padding
//! slot) and to the thought tokens (t, i) of *its own* position for t ≤ a — never to another
//! position's thought. All L thoughts therefore advance together, one step per forward pass.
//!
//! Three implementations, same results:
//! - [`Kernel::Fused`]: WGSL compute shaders (`shaders/thought_attention_*.wgsl`), forward and a
//!   hand-written backward, online softmax, memory O(L·S·d) — on wgpu devices.
//! - [`Kernel::Split`]: plain burn tensor ops that score the real keys (an L×L causal block) and
//!   the position's own thought keys (an Sq×Sk block per position) separately — every backend.
//! - [`Kernel::Dense`]: the formulation of the official code, one explicit mask over all
//!   L·(Sk+1) keys — the test oracle and the benchmark baseline.
//!
//! Shapes: queries `[B, H, Sq, L, hd]` for Sq steps (the last Sq of Sk), real keys/values
//! `[B, KVH, L, hd]`, thought keys/values `[B, KVH, Sk, L, hd]` (H a multiple of KVH: grouped-
//! query attention), output `[B, H, Sq, L, hd]`. `pad_left[b]` real slots of row b are padding.

mod fused;
pub mod reference;

use burn::backend::DispatchDevice;
use burn::tensor::{Device, Tensor};

pub use fused::{ThoughtAttentionBackend, ThoughtAttentionKernels};

/// Which implementation computes the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// Fused WGSL on wgpu devices, [`Kernel::Split`] elsewhere.
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
    /// The implementation that runs on `device`. Asking for `Fused` off wgpu is a programming
    /// error (the kernels exist only as WGSL).
    pub fn resolve(self, device: &Device) -> Kernel {
        match self {
            Kernel::Auto if fused_available(device) => Kernel::Fused,
            Kernel::Auto => Kernel::Split,
            Kernel::Fused => {
                assert!(fused_available(device), "the fused thought-attention kernel needs a wgpu device");
                Kernel::Fused
            }
            k => k,
        }
    }
}

/// Whether the WGSL kernels can run on `device` (a wgpu device, with or without autodiff).
pub fn fused_available(device: &Device) -> bool {
    matches!(device.clone().without_autodiff().as_dispatch(), DispatchDevice::Cube(_))
}

/// Why a kernel cannot run where it was asked to (front ends say which setting to change).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("the fused thought-attention kernel runs only on wgpu devices")]
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

/// Largest head dimension the WGSL kernels accept (they keep a few head-sized rows per
/// invocation in private memory).
pub const MAX_FUSED_HEAD_DIM: usize = 256;

/// Thought-parallel attention; see the crate docs for shapes and visibility.
pub fn thought_attention(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    pad_left: &[usize],
    kernel: Kernel,
) -> Tensor<5> {
    check_shapes(&q, &k_real, &v_real, &k_diag, &v_diag, pad_left);
    match kernel.resolve(&q.device()) {
        Kernel::Fused => fused::thought_attention_fused(q, k_real, v_real, k_diag, v_diag, pad_left),
        Kernel::Dense => reference::dense(q, k_real, v_real, k_diag, v_diag, pad_left),
        _ => reference::split(q, k_real, v_real, k_diag, v_diag, pad_left),
    }
}

fn check_shapes(
    q: &Tensor<5>,
    k_real: &Tensor<4>,
    v_real: &Tensor<4>,
    k_diag: &Tensor<5>,
    v_diag: &Tensor<5>,
    pad: &[usize],
) {
    let [b, h, sq, l, hd] = q.dims();
    let [kb, kvh, kl, khd] = k_real.dims();
    let [db, dkvh, sk, dl, dhd] = k_diag.dims();
    assert_eq!(k_real.dims(), v_real.dims(), "real keys and values differ in shape");
    assert_eq!(k_diag.dims(), v_diag.dims(), "thought keys and values differ in shape");
    assert!(
        kb == b && db == b && kl == l && dl == l && khd == hd && dhd == hd && dkvh == kvh,
        "thought attention shapes disagree: q {:?}, real k {:?}, thought k {:?}",
        q.dims(),
        k_real.dims(),
        k_diag.dims()
    );
    assert!(kvh > 0 && h % kvh == 0, "{h} query heads are not a multiple of {kvh} key/value heads");
    assert!(sq >= 1 && sq <= sk, "{sq} query steps but only {sk} thought key steps");
    assert_eq!(pad.len(), b, "one padding count per row");
    assert!(pad.iter().all(|&p| p <= l), "padding longer than the sequence");
}

/// Softmax scale 1/√hd.
pub(crate) fn scale(head_dim: usize) -> f32 {
    1.0 / (head_dim as f32).sqrt()
}
