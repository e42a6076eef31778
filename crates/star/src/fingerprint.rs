//! A model's weights reduced to one hash: how a STaR run proves that every iteration's
//! fine-tuning started from the original base model.

use starling_model::Transformer;
use starling_model::weights::export_tensors;

/// FNV-1a over every tensor's name, shape and f32 bits, in name order; hex.
pub fn fingerprint(model: &Transformer) -> String {
    const PRIME: u64 = 0x100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, t) in export_tensors(model) {
        eat(name.as_bytes());
        for d in &t.shape {
            eat(&(*d as u64).to_le_bytes());
        }
        for v in &t.data {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    format!("{h:016x}")
}
