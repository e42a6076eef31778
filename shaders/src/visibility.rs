//! Sizes, offsets and the visibility rules shared by the thought-attention kernels.

use cubecl::prelude::*;

/// The sizes of one call.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
#[expand(derive(Clone, Copy))]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Query steps (the last `sq` of the `sk` thought steps).
    pub sq: usize,
    /// Thought steps with keys.
    pub sk: usize,
    /// Thinking positions (queries and thought keys).
    pub len: usize,
    /// Real positions (real keys).
    pub real_len: usize,
    /// The real position of thinking position 0.
    pub first: usize,
    /// Sliding window; 0: none.
    pub window: usize,
}

/// First real key seen by the step-`step` query of real position `p` in a row with `pad` padding
/// slots: it sees `lo..=p`. The step-`step` token after position `p` sits at slot `p + step + 1`
/// and sees at most `window - 1` slots back.
#[cube]
pub fn real_lo(d: Dims, pad: usize, p: usize, step: usize) -> usize {
    let mut lo = pad;
    if d.window != 0 && p + step + 2 > d.window {
        let w = p + step + 2 - d.window;
        if w > pad {
            lo = w;
        }
    }
    lo
}

/// First thought step whose key the step-`step` query sees (it sees `lo..=step`).
#[cube]
pub fn thought_lo(d: Dims, step: usize) -> usize {
    let mut lo = 0;
    if d.window != 0 && step + 1 > d.window {
        lo = step + 1 - d.window;
    }
    lo
}

/// Offset of real key `j` of batch `b`, kv head `g` (keys half; values are `real_half` later).
#[cube]
pub fn real_offset(d: Dims, b: usize, g: usize, j: usize, #[comptime] hd: usize) -> usize {
    ((b * d.kv_heads + g) * d.real_len + j) * hd
}

/// Offset of thought key (t, i) of batch `b`, kv head `g`.
#[cube]
pub fn diag_offset(d: Dims, b: usize, g: usize, t: usize, i: usize, #[comptime] hd: usize) -> usize {
    (((b * d.kv_heads + g) * d.sk + t) * d.len + i) * hd
}

/// Where query row `row` (b, h, s, i) sits: its batch, kv head, thinking position, absolute
/// thought step and real position.
#[derive(CubeType, Clone, Copy)]
#[expand(derive(Clone, Copy))]
pub struct QueryRow {
    pub b: usize,
    pub g: usize,
    pub i: usize,
    pub step: usize,
    pub pos: usize,
}

/// Decomposes a query row index (the inverse of [`fn@query_row`]).
#[cube]
pub fn query_of(d: Dims, row: usize) -> QueryRow {
    let i = row % d.len;
    let s = (row / d.len) % d.sq;
    let h = (row / (d.len * d.sq)) % d.heads;
    QueryRow {
        b: row / (d.len * d.sq * d.heads),
        g: h / (d.heads / d.kv_heads),
        i,
        step: d.sk - d.sq + s,
        pos: d.first + i,
    }
}

/// Row index of query (b, h, s, i).
#[cube]
pub fn query_row(d: Dims, b: usize, h: usize, s: usize, i: usize) -> usize {
    ((b * d.heads + h) * d.sq + s) * d.len + i
}

/// Elements in the keys half of `kv_real`.
#[cube]
pub fn real_half(d: Dims, #[comptime] hd: usize) -> usize {
    d.batch * d.kv_heads * d.real_len * hd
}

/// Elements in the keys half of `kv_diag`.
#[cube]
pub fn diag_half(d: Dims, #[comptime] hd: usize) -> usize {
    d.batch * d.kv_heads * d.sk * d.len * hd
}
