//! GGML tensor types and their dequantization to f32.
//!
//! Block layouts follow ggml's `ggml-common.h`: each block stores a few f16 scales and packed
//! integer codes for 32 (legacy quants) or 256 (k-quants) consecutive values. Checked against
//! the reference `gguf` Python package by `tests/fixtures/quant_blocks.json`.

use half::f16;

/// GGML tensor element types Starling can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

const QK_K: usize = 256;

impl GgmlType {
    /// Maps a GGML type id; `Err` carries a readable name for the unsupported ones.
    pub fn from_id(id: u32) -> Result<Self, String> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            other => {
                let name = match other {
                    9 => "Q8_1",
                    15 => "Q8_K",
                    16..=23 | 29 => "an IQ (importance-matrix) quant",
                    24 => "I8",
                    25 => "I16",
                    26 => "I32",
                    27 => "I64",
                    28 => "F64",
                    34 | 35 => "a ternary (TQ) quant",
                    39 => "MXFP4",
                    _ => "an unknown type",
                };
                return Err(format!("GGML type id {other} ({name})"));
            }
        })
    }

    /// (values per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q2K => (QK_K, 84),
            GgmlType::Q3K => (QK_K, 110),
            GgmlType::Q4K => (QK_K, 144),
            GgmlType::Q5K => (QK_K, 176),
            GgmlType::Q6K => (QK_K, 210),
        }
    }

    /// Bytes taken by `n` values; `None` when `n` is not a whole number of blocks, or when the
    /// byte count would not fit in a `usize` (a corrupt header's claim).
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        let (per_block, bytes) = self.block();
        if n.is_multiple_of(per_block) { (n / per_block).checked_mul(bytes) } else { None }
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantizes `data` (a whole number of blocks of `ty`) into f32 values.
pub fn dequantize(ty: GgmlType, data: &[u8]) -> Vec<f32> {
    let (per_block, block_bytes) = ty.block();
    let n_blocks = data.len() / block_bytes;
    let mut out = vec![0f32; n_blocks * per_block];
    for (block, y) in data.chunks_exact(block_bytes).zip(out.chunks_exact_mut(per_block)) {
        match ty {
            GgmlType::F32 => y[0] = f32::from_le_bytes(block.try_into().unwrap()),
            GgmlType::F16 => y[0] = f16_at(block, 0),
            GgmlType::BF16 => y[0] = half::bf16::from_le_bytes([block[0], block[1]]).to_f32(),
            GgmlType::Q4_0 => legacy4(block, y, false),
            GgmlType::Q4_1 => legacy4(block, y, true),
            GgmlType::Q5_0 => legacy5(block, y, false),
            GgmlType::Q5_1 => legacy5(block, y, true),
            GgmlType::Q8_0 => {
                let d = f16_at(block, 0);
                for (v, &q) in y.iter_mut().zip(&block[2..34]) {
                    *v = (q as i8) as f32 * d;
                }
            }
            GgmlType::Q2K => q2k(block, y),
            GgmlType::Q3K => q3k(block, y),
            GgmlType::Q4K => q4k(block, y),
            GgmlType::Q5K => q5k(block, y),
            GgmlType::Q6K => q6k(block, y),
        }
    }
    out
}

/// Q4_0 (`d`, codes − 8) and Q4_1 (`d`, `m`, codes): low nibbles are values 0..16, high 16..32.
fn legacy4(b: &[u8], y: &mut [f32], with_min: bool) {
    let d = f16_at(b, 0);
    let (m, qs, offset) = if with_min { (f16_at(b, 2), &b[4..20], 0.0) } else { (0.0, &b[2..18], 8.0) };
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0f) as f32 - offset) * d + m;
        y[j + 16] = ((qs[j] >> 4) as f32 - offset) * d + m;
    }
}

/// Q5_0 / Q5_1: as Q4, with each value's fifth bit in a 32-bit mask.
fn legacy5(b: &[u8], y: &mut [f32], with_min: bool) {
    let d = f16_at(b, 0);
    let (m, at, offset) = if with_min { (f16_at(b, 2), 4, 0.0) } else { (0.0, 2, 16.0) };
    let qh = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let qs = &b[at + 4..at + 20];
    for j in 0..16 {
        let hi0 = ((qh >> j) & 1) << 4;
        let hi1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (((qs[j] & 0x0f) as u32 | hi0) as f32 - offset) * d + m;
        y[j + 16] = (((qs[j] >> 4) as u32 | hi1) as f32 - offset) * d + m;
    }
}

/// Q2_K: 16 groups of 16 values; each group has a 4-bit scale and a 4-bit min.
fn q2k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    let mut out = 0;
    let mut group = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[group];
                group += 1;
                let (dl, ml) = (d * (sc & 0x0f) as f32, dmin * (sc >> 4) as f32);
                for l in 0..16 {
                    y[out] = dl * ((q[part * 16 + l] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// Q3_K: 2-bit codes plus a high-bit mask; 16 six-bit signed scales packed in 12 bytes.
fn q3k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let d = f16_at(b, 108);
    let mut aux = [0u32; 4];
    for (i, a) in aux.iter_mut().take(3).enumerate() {
        *a = u32::from_le_bytes(b[96 + 4 * i..100 + 4 * i].try_into().unwrap());
    }
    const K1: u32 = 0x0303_0303;
    const K2: u32 = 0x0f0f_0f0f;
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & K2) | (((tmp >> 4) & K1) << 4);
    aux[3] = ((aux[1] >> 4) & K2) | (((tmp >> 6) & K1) << 4);
    aux[0] = (aux[0] & K2) | ((tmp & K1) << 4);
    aux[1] = (aux[1] & K2) | (((tmp >> 2) & K1) << 4);
    let scales: Vec<i8> = aux.iter().flat_map(|a| a.to_le_bytes()).map(|x| x as i8).collect();
    let mut out = 0;
    let mut group = 0;
    let mut bit = 1u8;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let dl = d * (scales[group] as f32 - 32.0);
                group += 1;
                for l in 0..16 {
                    let i = part * 16 + l;
                    let low = ((q[i] >> shift) & 3) as i32;
                    let high = if hmask[i] & bit != 0 { 0 } else { 4 };
                    y[out] = dl * (low - high) as f32;
                    out += 1;
                }
            }
            bit <<= 1;
        }
    }
}

/// Six-bit scale and min of sub-block `j` in the 12-byte packing shared by Q4_K and Q5_K.
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
    } else {
        (((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4)) as f32, ((s[j + 4] >> 4) | ((s[j] >> 6) << 4)) as f32)
    }
}

/// Q4_K: 8 sub-blocks of 32 values, each with a six-bit scale and min.
fn q4k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (s1, m1) = scale_min_k4(2 * chunk, scales);
        let (s2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            y[l] = d * s1 * (q[l] & 0x0f) as f32 - dmin * m1;
            y[l + 32] = d * s2 * (q[l] >> 4) as f32 - dmin * m2;
        }
    }
}

/// Q5_K: Q4_K plus a fifth bit per value.
fn q5k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (s1, m1) = scale_min_k4(2 * chunk, scales);
        let (s2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d * s1 * ((q[l] & 0x0f) + h1) as f32 - dmin * m1;
            y[l + 32] = d * s2 * ((q[l] >> 4) + h2) as f32 - dmin * m2;
        }
    }
}

/// Q6_K: 4 low bits + 2 high bits per value, 16 signed 8-bit scales.
fn q6k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let y = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantizes_like_the_reference() {
        let fixtures: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/quant_blocks.json")).unwrap();
        let fixtures = fixtures.as_object().unwrap();
        assert_eq!(fixtures.len(), 10);
        for (name, case) in fixtures {
            let ty = GgmlType::from_id(case["type"].as_u64().unwrap() as u32).unwrap();
            let hex = case["bytes"].as_str().unwrap();
            let bytes: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            let expected: Vec<f32> =
                case["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let got = dequantize(ty, &bytes);
            assert_eq!(got.len(), expected.len(), "{name}");
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{name}[{i}]: {g} vs {e}");
            }
        }
    }

    #[test]
    fn q8_0_block_by_hand() {
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let y = dequantize(GgmlType::Q8_0, &block);
        assert_eq!(y[0], -8.0);
        assert_eq!(y[31], 7.5);
    }

    #[test]
    fn names_unsupported_types() {
        assert!(GgmlType::from_id(16).unwrap_err().contains("IQ"));
        assert_eq!(GgmlType::Q4K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4K.bytes_for(100), None);
    }
}
