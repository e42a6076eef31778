//! A model's weights reduced to one hash: how a STaR run proves that every iteration's
//! fine-tuning started from the original base model.

use starling_model::Transformer;
use starling_model::hash::Fnv1a;
use starling_model::weights::export_tensors;

/// FNV-1a over every tensor's name, shape and f32 bits, in name order; hex.
pub fn fingerprint(model: &Transformer) -> String {
    let mut h = Fnv1a::new();
    for (name, t) in export_tensors(model) {
        h.write(name.as_bytes());
        for d in &t.shape {
            h.write(&(*d as u64).to_le_bytes());
        }
        for v in &t.data {
            h.write(&v.to_bits().to_le_bytes());
        }
    }
    h.hex()
}
