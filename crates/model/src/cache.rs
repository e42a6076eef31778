//! Key/value cache for incremental decoding: per layer, keys and values `[B, kv_heads, T, hd]`
//! of every slot seen so far, optionally after a [`SharedPrefix`] that every row continues.

use burn::tensor::{Int, Tensor};

use crate::prefix::SharedPrefix;

/// Keys and values of one layer.
pub(crate) type Kv = (Tensor<4>, Tensor<4>);

#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    kv: Option<Kv>,
    /// The shared prefix's keys and values `[1, kvh, P, hd]`, attended by every row and never
    /// copied per row.
    prefix: Option<Kv>,
}

impl LayerCache {
    /// Takes the entries of a one-row cache that ran a prefix (see [`SharedPrefix`]).
    pub(crate) fn into_prefix_entries(self) -> Option<Kv> {
        self.kv
    }
}

impl LayerCache {
    /// Appends new keys/values (`[B, kvh, L, hd]`) and returns the full ones (the rows' own,
    /// not the shared prefix's).
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let kv = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some(kv.clone());
        kv
    }

    /// The rows' own keys and values `[B, kvh, T, hd]` cached so far.
    pub fn kv(&self) -> Option<&(Tensor<4>, Tensor<4>)> {
        self.kv.as_ref()
    }

    /// The shared prefix's keys and values `[1, kvh, P, hd]`, if the rows continue one.
    pub fn prefix(&self) -> Option<&(Tensor<4>, Tensor<4>)> {
        self.prefix.as_ref()
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
    prefix_len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![LayerCache::default(); num_layers], len: 0, prefix_len: 0 }
    }

    /// An empty cache, after `prefix` when there is one.
    pub fn continuing(num_layers: usize, prefix: Option<&SharedPrefix>) -> Self {
        prefix.map_or_else(|| Self::new(num_layers), Self::after_prefix)
    }

    /// An empty cache for rows that all continue `prefix`: its entries are attended, not copied.
    pub fn after_prefix(prefix: &SharedPrefix) -> Self {
        let layers = prefix.layers().iter().map(|kv| LayerCache { kv: None, prefix: Some(kv.clone()) }).collect();
        Self { layers, len: 0, prefix_len: prefix.len() }
    }

    /// Number of cached slots of the rows' own (after the shared prefix).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens of the shared prefix before the rows' own slots (0 without one); the RoPE
    /// position of own slot 0 of an unpadded row.
    pub fn prefix_len(&self) -> usize {
        self.prefix_len
    }

    /// The layers' caches, consumed (to keep a one-row cache as a shared prefix).
    pub(crate) fn into_layers(self) -> Vec<LayerCache> {
        self.layers
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
    /// entries shared by several continuations of it, computed once. A shared prefix stays shared.
    pub fn select_rows(&self, rows: Tensor<1, Int>) -> Self {
        let layers = self
            .layers
            .iter()
            .map(|l| LayerCache {
                kv: l.kv.as_ref().map(|(k, v)| (k.clone().select(0, rows.clone()), v.clone().select(0, rows.clone()))),
                prefix: l.prefix.clone(),
            })
            .collect();
        Self { layers, len: self.len, prefix_len: self.prefix_len }
    }

    /// Inserts `n` empty slots before the own ones (more left padding for every row), so rows
    /// with longer prompts can join the batch.
    pub fn pad_front(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        for l in &mut self.layers {
            if let Some((k, v)) = l.kv.take() {
                let [b, h, _, d] = k.dims();
                let zeros = Tensor::<4>::zeros([b, h, n, d], &k.device());
                l.kv = Some((Tensor::cat(vec![zeros.clone(), k], 2), Tensor::cat(vec![zeros, v], 2)));
            }
        }
        self.len += n;
    }

    /// Drops the first `n` own slots (padding that no row needs any more).
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        for l in &mut self.layers {
            if let Some((k, v)) = l.kv.take()
                && n < self.len
            {
                l.kv = Some((k.narrow(2, n, self.len - n), v.narrow(2, n, self.len - n)));
            }
        }
        self.len -= n;
    }

    /// Rows picked from this cache's rows followed by `other`'s (`pick[r]` indexes the
    /// concatenation): continuing rows and newly admitted ones as one batch. Both caches hold the
    /// same number of own slots after the same prefix.
    pub fn merge_rows(&self, other: &KvCache, pick: Tensor<1, Int>) -> Self {
        assert_eq!((self.len, self.prefix_len), (other.len, other.prefix_len), "caches of different lengths");
        let layers = self
            .layers
            .iter()
            .zip(&other.layers)
            .map(|(a, b)| LayerCache {
                kv: match (&a.kv, &b.kv) {
                    (Some((ak, av)), Some((bk, bv))) => Some((
                        Tensor::cat(vec![ak.clone(), bk.clone()], 0).select(0, pick.clone()),
                        Tensor::cat(vec![av.clone(), bv.clone()], 0).select(0, pick.clone()),
                    )),
                    _ => None,
                },
                prefix: a.prefix.clone(),
            })
            .collect();
        Self { layers, len: self.len, prefix_len: self.prefix_len }
    }

    /// Drops the own slots after `len` (Quiet-STaR discards a thought's entries this way).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            for l in &mut self.layers {
                l.truncate(len);
            }
            self.len = len;
        }
    }
}
