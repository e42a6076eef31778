//! Prefix caching: the keys and values of a token prefix that many prompts share — a few-shot
//! prompt's exemplars — computed once (one row) and attended by every row of every batch that
//! continues it, as serving engines' prefix caches do (vLLM, llama.cpp). Rows never copy it: see
//! [`crate::cache::KvCache::after_prefix`].

use std::cell::RefCell;

use burn::tensor::{Tensor, TensorData};

use crate::cache::{Kv, KvCache};
use crate::error::Result;
use crate::generate::{GenerateConfig, check_request, run_slots};
use crate::model::Transformer;

/// A prefix's ids and, per layer, its keys and values `[1, kvh, P, hd]`.
#[derive(Debug, Clone)]
pub struct SharedPrefix {
    ids: Vec<u32>,
    layers: Vec<Kv>,
}

impl SharedPrefix {
    /// Runs `ids` through `model` once and keeps their keys and values.
    pub fn compute(model: &Transformer, ids: Vec<u32>) -> Result<Self> {
        let c = model.config();
        let request = GenerateConfig { max_new_tokens: 0, ..GenerateConfig::default() };
        check_request(model, std::slice::from_ref(&ids), &request)?;
        let device = model.device();
        let mut cache = KvCache::new(c.num_layers);
        let data = TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, ids.len()]);
        run_slots(model, Tensor::from_data(data, &device), &[0], &mut cache, &device);
        let layers = cache
            .into_layers()
            .into_iter()
            .map(|l| l.into_prefix_entries().expect("every layer appended the prefix's entries"))
            .collect();
        Ok(Self { ids, layers })
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub(crate) fn layers(&self) -> &[Kv] {
        &self.layers
    }

    /// The first `len` tokens of this prefix (a token's entries do not depend on what follows).
    pub fn truncated(&self, len: usize) -> Self {
        let len = len.min(self.len());
        Self {
            ids: self.ids[..len].to_vec(),
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (k.clone().narrow(2, 0, len), v.clone().narrow(2, 0, len)))
                .collect(),
        }
    }

    /// The part of this prefix that every prompt of `prompts` can continue (`None` if none).
    pub fn for_prompts(&self, prompts: &[Vec<u32>]) -> Option<Self> {
        let len = self.usable_len(prompts);
        (len > 0).then(|| self.truncated(len))
    }

    /// How many leading tokens every prompt shares with this prefix, leaving at least one token
    /// of each prompt after it (the decoder needs a last token to predict from).
    pub fn usable_len(&self, prompts: &[Vec<u32>]) -> usize {
        prompts.iter().fold(self.len(), |n, p| n.min(common_prefix(&self.ids, p)).min(p.len().saturating_sub(1)))
    }
}

/// Length of the longest common prefix of two id sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The shared prefixes computed with one model, by their ids: a caller that prompts the same
/// model with the same exemplars batch after batch (STaR's generation and evaluation) computes
/// each prefix once. The caller names the model with a tag; a new tag empties the store, since
/// entries of one model's weights are wrong for another's.
#[derive(Debug, Default)]
pub struct PrefixStore {
    inner: RefCell<(Option<u64>, Vec<SharedPrefix>)>,
}

impl PrefixStore {
    /// The cached prefix `ids` of the model tagged `model_tag` (computed with `model` if new).
    pub fn get(&self, model: &Transformer, model_tag: u64, ids: &[u32]) -> Result<SharedPrefix> {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.0 != Some(model_tag) {
                *inner = (Some(model_tag), Vec::new());
            }
            if let Some(p) = inner.1.iter().find(|p| p.ids == ids) {
                return Ok(p.clone());
            }
        }
        let p = SharedPrefix::compute(model, ids.to_vec())?;
        self.inner.borrow_mut().1.push(p.clone());
        Ok(p)
    }

    /// Number of prefixes held.
    pub fn len(&self) -> usize {
        self.inner.borrow().1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_leading_matches() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
