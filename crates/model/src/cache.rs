//! Key/value cache for incremental decoding: per layer, keys and values `[B, kv_heads, T, hd]`
//! of every slot seen so far.

use burn::tensor::{Int, Tensor};

#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
}

impl LayerCache {
    /// Appends new keys/values (`[B, kvh, L, hd]`) and returns the full ones.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let kv = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some(kv.clone());
        kv
    }

    /// Keys and values `[B, kvh, T, hd]` cached so far.
    pub fn kv(&self) -> Option<&(Tensor<4>, Tensor<4>)> {
        self.kv.as_ref()
    }

    fn truncate(&mut self, len: usize) {
        if let Some((k, v)) = self.kv.take()
            && len > 0
        {
            self.kv = Some((k.narrow(2, 0, len), v.narrow(2, 0, len)));
        }
    }
}

/// The cache of a whole model.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![LayerCache::default(); num_layers], len: 0 }
    }

    /// Number of cached slots.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn layer(&self, i: usize) -> &LayerCache {
        &self.layers[i]
    }

    pub fn layer_mut(&mut self, i: usize) -> &mut LayerCache {
        &mut self.layers[i]
    }

    /// Called by the model after every layer has appended `n` slots.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// The cache of rows `rows` (`[R]` indices into the batch, repeats allowed): one prompt's
    /// entries shared by several continuations of it, computed once.
    pub fn select_rows(&self, rows: Tensor<1, Int>) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| LayerCache {
                kv: l.kv.as_ref().map(|(k, v)| (k.clone().select(0, rows.clone()), v.clone().select(0, rows.clone()))),
            })
            .collect();
        Self { layers, len: self.len }
    }

    /// Drops the slots after `len` (Quiet-STaR discards a thought's entries this way).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            for l in &mut self.layers {
                l.truncate(len);
            }
            self.len = len;
        }
    }
}
