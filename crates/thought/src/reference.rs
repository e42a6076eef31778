//! The op from plain burn tensor ops: differentiable on every backend, the oracle of the fused
//! kernels.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

/// Score added to keys a query must not see (finite, so a softmax never sees NaN).
const MASKED: f32 = -1.0e30;

/// One explicit mask over all `L + Sk·L` keys (real keys, then the thought keys step-major), as
/// the official code builds it: `O(Sq·L · Sk·L)` memory.
pub fn dense(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    pad_left: &[usize],
) -> Tensor<5> {
    let [b, h, sq, l, hd] = q.dims();
    let [_, kvh, sk, _, _] = k_diag.dims();
    let rep = h / kvh;
    let t = l + sk * l;
    let keys = Tensor::cat(vec![k_real, k_diag.reshape([b, kvh, sk * l, hd])], 2);
    let values = Tensor::cat(vec![v_real, v_diag.reshape([b, kvh, sk * l, hd])], 2);
    // Heads h = g·rep + r: the rep query heads sharing KV head g are adjacent.
    let q = q.reshape([b, kvh, rep * sq * l, hd]);
    let scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(crate::scale(hd));
    let mask = dense_mask(pad_left, sq, sk, l, &scores.device());
    let scores = scores.reshape([b, kvh, rep, sq * l, t]) + mask.reshape([b, 1, 1, sq * l, t]);
    let probs = softmax(scores, 4).reshape([b, kvh, rep * sq * l, t]);
    probs.matmul(values).reshape([b, h, sq, l, hd])
}

fn dense_mask(pad_left: &[usize], sq: usize, sk: usize, l: usize, device: &Device) -> Tensor<3> {
    let t = l + sk * l;
    let mut data = vec![MASKED; pad_left.len() * sq * l * t];
    for (row, &pad) in pad_left.iter().enumerate() {
        for s in 0..sq {
            let step = sk - sq + s;
            for i in 0..l {
                let base = ((row * sq + s) * l + i) * t;
                for j in pad..=i {
                    data[base + j] = 0.0;
                }
                for tt in 0..=step {
                    data[base + l + tt * l + i] = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [pad_left.len(), sq * l, t]), device)
}

/// Real keys scored as an ordinary causal L×L block, thought keys as a per-position Sq×Sk block;
/// one softmax over both. Memory `O(Sq·L·(L + Sk))`, what plain attention over L tokens costs
/// per step.
pub fn split(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    pad_left: &[usize],
) -> Tensor<5> {
    let [b, h, sq, l, hd] = q.dims();
    let [_, kvh, sk, _, _] = k_diag.dims();
    let rep = h / kvh;
    let device = q.device();
    let q = q.reshape([b, kvh, rep * sq, l, hd]).mul_scalar(crate::scale(hd));

    // Real block [B, KVH, rep·Sq, L, L].
    let real = q.clone().reshape([b, kvh, rep * sq * l, hd]).matmul(k_real.clone().swap_dims(2, 3));
    let real = real.reshape([b, kvh, rep * sq, l, l]) + causal_mask(pad_left, l, &device).reshape([b, 1, 1, l, l]);

    // Thought block, per position: [B, KVH, L, rep·Sq, Sk] → [B, KVH, rep·Sq, L, Sk].
    let q_by_pos = q.swap_dims(2, 3);
    let k_by_pos = k_diag.swap_dims(2, 3);
    let diag =
        q_by_pos.matmul(k_by_pos.swap_dims(3, 4)) + step_mask(rep, sq, sk, &device).reshape([1, 1, 1, rep * sq, sk]);
    let diag = diag.swap_dims(2, 3);

    let probs = softmax(Tensor::cat(vec![real, diag], 4), 4);
    let p_real = probs.clone().narrow(4, 0, l).reshape([b, kvh, rep * sq * l, l]);
    let p_diag = probs.narrow(4, l, sk).swap_dims(2, 3); // [B, KVH, L, rep·Sq, Sk]
    let out_real = p_real.matmul(v_real).reshape([b, kvh, rep * sq, l, hd]);
    let out_diag = p_diag.matmul(v_diag.swap_dims(2, 3)).swap_dims(2, 3);
    (out_real + out_diag).reshape([b, h, sq, l, hd])
}

/// `[B, L, L]`: query i sees real keys j in `[pad, i]`.
fn causal_mask(pad_left: &[usize], l: usize, device: &Device) -> Tensor<3> {
    let mut data = vec![MASKED; pad_left.len() * l * l];
    for (row, &pad) in pad_left.iter().enumerate() {
        for i in 0..l {
            for j in pad..=i {
                data[(row * l + i) * l + j] = 0.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [pad_left.len(), l, l]), device)
}

/// `[rep·Sq, Sk]`: query step s (absolute `Sk − Sq + s`) sees thought steps up to its own.
fn step_mask(rep: usize, sq: usize, sk: usize, device: &Device) -> Tensor<2> {
    let mut data = vec![MASKED; rep * sq * sk];
    for r in 0..rep {
        for s in 0..sq {
            for t in 0..=(sk - sq + s) {
                data[(r * sq + s) * sk + t] = 0.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [rep * sq, sk]), device)
}
