//! The op from plain burn tensor ops: differentiable on every backend, the oracle of the fused
//! kernels. Both build their masks from [`Visibility`], where the rules are written once.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::Visibility;

/// Score added to keys a query must not see (finite, so a softmax never sees NaN).
const MASKED: f32 = -1.0e30;

/// One explicit mask over all `L + Sk·Lq` keys (real keys, then the thought keys step-major), as
/// the official code builds it: `O(Sq·Lq · (L + Sk·Lq))` memory.
pub fn dense(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    vis: &Visibility,
) -> Tensor<5> {
    let [b, h, sq, lq, hd] = q.dims();
    let [_, kvh, sk, _, _] = k_diag.dims();
    let l = k_real.dims()[2];
    let rep = h / kvh;
    let t = l + sk * lq;
    let keys = Tensor::cat(vec![k_real, k_diag.reshape([b, kvh, sk * lq, hd])], 2);
    let values = Tensor::cat(vec![v_real, v_diag.reshape([b, kvh, sk * lq, hd])], 2);
    // Heads h = g·rep + r: the rep query heads sharing KV head g are adjacent.
    let q = q.reshape([b, kvh, rep * sq * lq, hd]);
    let scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(crate::scale(hd));
    let mask = dense_mask(vis, sq, sk, lq, l, &scores.device());
    let scores = scores.reshape([b, kvh, rep, sq * lq, t]) + mask.reshape([b, 1, 1, sq * lq, t]);
    let probs = softmax(scores, 4).reshape([b, kvh, rep * sq * lq, t]);
    probs.matmul(values).reshape([b, h, sq, lq, hd])
}

fn dense_mask(vis: &Visibility, sq: usize, sk: usize, lq: usize, l: usize, device: &Device) -> Tensor<3> {
    let t = l + sk * lq;
    let rows = vis.pad_left.len();
    let mut data = vec![MASKED; rows * sq * lq * t];
    for row in 0..rows {
        for s in 0..sq {
            let step = sk - sq + s;
            for iq in 0..lq {
                let base = ((row * sq + s) * lq + iq) * t;
                for j in vis.real_keys(row, vis.first + iq, step) {
                    data[base + j] = 0.0;
                }
                for tt in vis.first_thought_key(step)..=step {
                    data[base + l + tt * lq + iq] = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [rows, sq * lq, t]), device)
}

/// Real keys scored as an ordinary causal Lq×L block, thought keys as a per-position Sq×Sk
/// block; one softmax over both. Memory `O(Sq·Lq·(L + Sk))`, what plain attention over L tokens
/// costs per step.
pub fn split(
    q: Tensor<5>,
    k_real: Tensor<4>,
    v_real: Tensor<4>,
    k_diag: Tensor<5>,
    v_diag: Tensor<5>,
    vis: &Visibility,
) -> Tensor<5> {
    let [b, h, sq, lq, hd] = q.dims();
    let [_, kvh, sk, _, _] = k_diag.dims();
    let l = k_real.dims()[2];
    let rep = h / kvh;
    let device = q.device();
    let q = q.reshape([b, kvh, rep * sq, lq, hd]).mul_scalar(crate::scale(hd));

    // Real block [B, KVH, rep·Sq, Lq, L]; the mask depends on the step only through the window.
    let real = q.clone().reshape([b, kvh, rep * sq * lq, hd]).matmul(k_real.clone().swap_dims(2, 3));
    let real = real.reshape([b, kvh, rep, sq * lq * l])
        + real_mask(vis, sq, sk, lq, l, &device).reshape([b, 1, 1, sq * lq * l]);
    let real = real.reshape([b, kvh, rep * sq, lq, l]);

    // Thought block, per position: [B, KVH, Lq, rep·Sq, Sk] → [B, KVH, rep·Sq, Lq, Sk].
    let q_by_pos = q.swap_dims(2, 3);
    let k_by_pos = k_diag.swap_dims(2, 3);
    let diag = q_by_pos.matmul(k_by_pos.swap_dims(3, 4))
        + step_mask(vis, rep, sq, sk, &device).reshape([1, 1, 1, rep * sq, sk]);
    let diag = diag.swap_dims(2, 3);

    let probs = softmax(Tensor::cat(vec![real, diag], 4), 4);
    let p_real = probs.clone().narrow(4, 0, l).reshape([b, kvh, rep * sq * lq, l]);
    let p_diag = probs.narrow(4, l, sk).swap_dims(2, 3); // [B, KVH, Lq, rep·Sq, Sk]
    let out_real = p_real.matmul(v_real).reshape([b, kvh, rep * sq, lq, hd]);
    let out_diag = p_diag.matmul(v_diag.swap_dims(2, 3)).swap_dims(2, 3);
    (out_real + out_diag).reshape([b, h, sq, lq, hd])
}

/// `[B, Sq, Lq, L]`: which real keys each query step of each thinking position sees.
fn real_mask(vis: &Visibility, sq: usize, sk: usize, lq: usize, l: usize, device: &Device) -> Tensor<4> {
    let rows = vis.pad_left.len();
    let mut data = vec![MASKED; rows * sq * lq * l];
    for row in 0..rows {
        for s in 0..sq {
            for iq in 0..lq {
                let base = ((row * sq + s) * lq + iq) * l;
                for j in vis.real_keys(row, vis.first + iq, sk - sq + s) {
                    data[base + j] = 0.0;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [rows, sq, lq, l]), device)
}

/// `[rep·Sq, Sk]`: query step s (absolute `Sk − Sq + s`) sees thought steps up to its own.
fn step_mask(vis: &Visibility, rep: usize, sq: usize, sk: usize, device: &Device) -> Tensor<2> {
    let mut data = vec![MASKED; rep * sq * sk];
    for r in 0..rep {
        for s in 0..sq {
            let step = sk - sq + s;
            for t in vis.first_thought_key(step)..=step {
                data[(r * sq + s) * sk + t] = 0.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [rep * sq, sk]), device)
}
