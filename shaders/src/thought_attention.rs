//! Thought-parallel attention: forward (online softmax) and a flash-attention style backward
//! that recomputes the probabilities from the saved log-sum-exp. One unit per output row; the
//! head-sized rows a unit works on live in registers (`Array`s of the comptime head dim `hd`).
//!
//! Query (b, h, s, i) has absolute step `a = sk - sq + s`, sits at real position `p = first + i`
//! and sees the real keys `real_lo..=p` and the thought keys (t, i) for `thought_lo..=a`: its own
//! position's thought only.

use cubecl::prelude::*;

use crate::visibility::{
    Dims, QueryRow, diag_half, diag_offset, query_of, query_row, real_half, real_lo, real_offset, thought_lo,
};

/// Output `[B, H, Sq, Lq, hd]` and log-sum-exp `[B, H, Sq, Lq]` of every query row.
#[cube(launch_unchecked)]
pub fn thought_attention_fwd(
    q: &[f32],
    kv_real: &[f32],
    kv_diag: &[f32],
    pads: &[u32],
    out: &mut [f32],
    lse: &mut [f32],
    d: Dims,
    scale: f32,
    #[comptime] hd: usize,
) {
    let row = ABSOLUTE_POS;
    if row >= d.batch * d.heads * d.sq * d.len {
        terminate!();
    }
    let QueryRow { b, g, i, step, pos } = query_of(d, row);
    let v_real = real_half(d, hd);
    let v_diag = diag_half(d, hd);

    let mut qv = Array::<f32>::new(hd);
    let mut acc = Array::<f32>::new(hd);
    let qo = row * hd;
    for c in 0..hd {
        qv[c] = q[qo + c] * scale;
        acc[c] = 0.0;
    }
    // The running maximum starts very negative (WGSL cannot spell -inf).
    let mut m = f32::new(-3.0e38);
    let mut l = f32::new(0.0);

    for j in real_lo(d, pads[b] as usize, pos, step)..pos + 1 {
        let ko = real_offset(d, b, g, j, hd);
        let mut sc = 0.0f32;
        for c in 0..hd {
            sc += qv[c] * kv_real[ko + c];
        }
        let m_new = f32::max(m, sc);
        let corr = f32::exp(m - m_new);
        let p = f32::exp(sc - m_new);
        l = l * corr + p;
        for c in 0..hd {
            acc[c] = acc[c] * corr + p * kv_real[v_real + ko + c];
        }
        m = m_new;
    }
    for t in thought_lo(d, step)..step + 1 {
        let ko = diag_offset(d, b, g, t, i, hd);
        let mut sc = 0.0f32;
        for c in 0..hd {
            sc += qv[c] * kv_diag[ko + c];
        }
        let m_new = f32::max(m, sc);
        let corr = f32::exp(m - m_new);
        let p = f32::exp(sc - m_new);
        l = l * corr + p;
        for c in 0..hd {
            acc[c] = acc[c] * corr + p * kv_diag[v_diag + ko + c];
        }
        m = m_new;
    }
    let inv = 1.0f32 / l;
    for c in 0..hd {
        out[qo + c] = acc[c] * inv;
    }
    lse[row] = m + f32::ln(l);
}

/// `stats[2·row] = lse[row]`, `stats[2·row + 1] = ⟨dO, O⟩` of the row (the softmax backward's
/// delta): the two per-row numbers the backward kernels read, in one buffer.
#[cube(launch_unchecked)]
pub fn thought_attention_stats(
    out: &[f32],
    dout: &[f32],
    lse: &[f32],
    stats: &mut [f32],
    rows: usize,
    #[comptime] hd: usize,
) {
    let row = ABSOLUTE_POS;
    if row >= rows {
        terminate!();
    }
    let o = row * hd;
    let mut dl = 0.0f32;
    for c in 0..hd {
        dl += dout[o + c] * out[o + c];
    }
    stats[2 * row] = lse[row];
    stats[2 * row + 1] = dl;
}

/// dQ of every query row.
#[cube(launch_unchecked)]
pub fn thought_attention_bwd_dq(
    q: &[f32],
    kv_real: &[f32],
    kv_diag: &[f32],
    pads: &[u32],
    stats: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    d: Dims,
    scale: f32,
    #[comptime] hd: usize,
) {
    let row = ABSOLUTE_POS;
    if row >= d.batch * d.heads * d.sq * d.len {
        terminate!();
    }
    let QueryRow { b, g, i, step, pos } = query_of(d, row);
    let v_real = real_half(d, hd);
    let v_diag = diag_half(d, hd);

    let mut qv = Array::<f32>::new(hd);
    let mut dov = Array::<f32>::new(hd);
    let mut acc = Array::<f32>::new(hd);
    let qo = row * hd;
    for c in 0..hd {
        qv[c] = q[qo + c] * scale;
        dov[c] = dout[qo + c];
        acc[c] = 0.0;
    }
    let row_lse = stats[2 * row];
    let dl = stats[2 * row + 1];

    for j in real_lo(d, pads[b] as usize, pos, step)..pos + 1 {
        let ko = real_offset(d, b, g, j, hd);
        let mut sc = 0.0f32;
        let mut dp = 0.0f32;
        for c in 0..hd {
            sc += qv[c] * kv_real[ko + c];
            dp += dov[c] * kv_real[v_real + ko + c];
        }
        let ds = f32::exp(sc - row_lse) * (dp - dl);
        for c in 0..hd {
            acc[c] += ds * kv_real[ko + c];
        }
    }
    for t in thought_lo(d, step)..step + 1 {
        let ko = diag_offset(d, b, g, t, i, hd);
        let mut sc = 0.0f32;
        let mut dp = 0.0f32;
        for c in 0..hd {
            sc += qv[c] * kv_diag[ko + c];
            dp += dov[c] * kv_diag[v_diag + ko + c];
        }
        let ds = f32::exp(sc - row_lse) * (dp - dl);
        for c in 0..hd {
            acc[c] += ds * kv_diag[ko + c];
        }
    }
    for c in 0..hd {
        dq[qo + c] = acc[c] * scale;
    }
}

/// Loads key/value row `ko` (values `half` later) of a packed buffer into registers, and zeroes
/// its gradient accumulators.
#[cube]
fn load_key(
    kv_buf: &[f32],
    ko: usize,
    half: usize,
    kv: &mut Array<f32>,
    vv: &mut Array<f32>,
    dk: &mut Array<f32>,
    dv: &mut Array<f32>,
    #[comptime] hd: usize,
) {
    for c in 0..hd {
        kv[c] = kv_buf[ko + c];
        vv[c] = kv_buf[half + ko + c];
        dk[c] = 0.0;
        dv[c] = 0.0;
    }
}

/// Adds query row `row`'s share to a key's gradients: with p = softmax probability of the key
/// (recomputed from the row's log-sum-exp) and ds = p·(⟨dO, v⟩ − delta), dK += ds·q, dV += p·dO.
#[cube]
fn add_query_to_key_grads(
    q: &[f32],
    dout: &[f32],
    stats: &[f32],
    row: usize,
    kv: &Array<f32>,
    vv: &Array<f32>,
    dk: &mut Array<f32>,
    dv: &mut Array<f32>,
    scale: f32,
    #[comptime] hd: usize,
) {
    let qo = row * hd;
    let mut sc = 0.0f32;
    let mut dp = 0.0f32;
    for c in 0..hd {
        sc += q[qo + c] * kv[c];
        dp += dout[qo + c] * vv[c];
    }
    let p = f32::exp(sc * scale - stats[2 * row]);
    let ds = p * (dp - stats[2 * row + 1]);
    for c in 0..hd {
        dk[c] += ds * q[qo + c];
        dv[c] += p * dout[qo + c];
    }
}

/// Writes a key's gradients into a packed `[2, ...]` output (dK scaled by the softmax scale).
#[cube]
fn store_key_grads(
    out: &mut [f32],
    ko: usize,
    half: usize,
    dk: &Array<f32>,
    dv: &Array<f32>,
    scale: f32,
    #[comptime] hd: usize,
) {
    for c in 0..hd {
        out[ko + c] = dk[c] * scale;
        out[half + ko + c] = dv[c];
    }
}

/// dK and dV of the real tokens, packed like `kv_real`: one unit per (b, kv head, j), summing
/// over the group's query heads, every step, and the thinking positions that see key j (real
/// position ≥ j, within the window).
#[cube(launch_unchecked)]
pub fn thought_attention_bwd_dkv_real(
    q: &[f32],
    kv_real: &[f32],
    pads: &[u32],
    stats: &[f32],
    dout: &[f32],
    dkv_real: &mut [f32],
    d: Dims,
    scale: f32,
    #[comptime] hd: usize,
) {
    let idx = ABSOLUTE_POS;
    if idx >= d.batch * d.kv_heads * d.real_len {
        terminate!();
    }
    let j = idx % d.real_len;
    let g = (idx / d.real_len) % d.kv_heads;
    let b = idx / (d.real_len * d.kv_heads);
    let rep = d.heads / d.kv_heads;
    let ko = real_offset(d, b, g, j, hd);
    let v_real = real_half(d, hd);

    let mut kv = Array::<f32>::new(hd);
    let mut vv = Array::<f32>::new(hd);
    let mut dk = Array::<f32>::new(hd);
    let mut dv = Array::<f32>::new(hd);
    load_key(kv_real, ko, v_real, &mut kv, &mut vv, &mut dk, &mut dv, hd);
    let pad = pads[b] as usize;
    if j >= pad {
        // Thinking positions before j cannot see it.
        let mut i_lo = 0;
        if j > d.first {
            i_lo = j - d.first;
        }
        for r in 0..rep {
            let h = g * rep + r;
            for s in 0..d.sq {
                let step = d.sk - d.sq + s;
                for i in i_lo..d.len {
                    if real_lo(d, pad, d.first + i, step) <= j {
                        let row = query_row(d, b, h, s, i);
                        add_query_to_key_grads(q, dout, stats, row, &kv, &vv, &mut dk, &mut dv, scale, hd);
                    }
                }
            }
        }
    }
    store_key_grads(dkv_real, ko, v_real, &dk, &dv, scale, hd);
}

/// dK and dV of the thought tokens, packed like `kv_diag`: one unit per (b, kv head, t, i); only
/// position i's queries at steps ≥ t (within the window) see thought key (t, i).
#[cube(launch_unchecked)]
pub fn thought_attention_bwd_dkv_diag(
    q: &[f32],
    kv_diag: &[f32],
    stats: &[f32],
    dout: &[f32],
    dkv_diag: &mut [f32],
    d: Dims,
    scale: f32,
    #[comptime] hd: usize,
) {
    let idx = ABSOLUTE_POS;
    if idx >= d.batch * d.kv_heads * d.sk * d.len {
        terminate!();
    }
    let i = idx % d.len;
    let t = (idx / d.len) % d.sk;
    let g = (idx / (d.len * d.sk)) % d.kv_heads;
    let b = idx / (d.len * d.sk * d.kv_heads);
    let rep = d.heads / d.kv_heads;
    let ko = diag_offset(d, b, g, t, i, hd);
    let v_diag = diag_half(d, hd);
    let first_step = d.sk - d.sq;

    let mut kv = Array::<f32>::new(hd);
    let mut vv = Array::<f32>::new(hd);
    let mut dk = Array::<f32>::new(hd);
    let mut dv = Array::<f32>::new(hd);
    load_key(kv_diag, ko, v_diag, &mut kv, &mut vv, &mut dk, &mut dv, hd);
    for r in 0..rep {
        let h = g * rep + r;
        for s in 0..d.sq {
            let step = first_step + s;
            if step >= t && thought_lo(d, step) <= t {
                let row = query_row(d, b, h, s, i);
                add_query_to_key_grads(q, dout, stats, row, &kv, &vv, &mut dk, &mut dv, scale, hd);
            }
        }
    }
    store_key_grads(dkv_diag, ko, v_diag, &dk, &dv, scale, hd);
}
