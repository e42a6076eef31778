//! Training examples with a loss mask, deterministic batch order, and padded batches.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use burn::tensor::{Device, Int, Tensor, TensorData};

/// A token sequence and which of its tokens are training targets. `train[i]` says whether the
/// prediction of token `i` (from tokens `..i`) counts in the loss; `train[0]` is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub train: Vec<bool>,
}

impl Example {
    /// Every token is a target.
    pub fn full(ids: Vec<u32>) -> Self {
        let train = vec![true; ids.len()];
        Self { ids, train }
    }

    /// `prompt` is context only; `completion` is learned (STaR trains on rationale + answer).
    pub fn prompt_completion(prompt: &[u32], completion: &[u32]) -> Self {
        let ids: Vec<u32> = prompt.iter().chain(completion).copied().collect();
        let train = (0..ids.len()).map(|i| i >= prompt.len()).collect();
        Self { ids, train }
    }

    /// Number of tokens that count in the loss.
    pub fn targets(&self) -> usize {
        self.train.iter().skip(1).filter(|&&t| t).count()
    }
}

/// Cuts a long token stream into examples of `len` tokens (the last shorter one dropped if it
/// has fewer than 2 tokens).
pub fn chunk_stream(ids: &[u32], len: usize) -> Vec<Example> {
    ids.chunks(len).filter(|c| c.len() >= 2).map(|c| Example::full(c.to_vec())).collect()
}

/// Cuts a token stream into windows of exactly `len` tokens (a shorter tail is dropped): the
/// equal-length sequences Quiet-STaR trains on.
pub fn fixed_windows(ids: &[u32], len: usize) -> Vec<Vec<u32>> {
    ids.chunks_exact(len).map(<[u32]>::to_vec).collect()
}

/// The order in which examples are visited: a fresh seeded shuffle every epoch, so batch `k` of
/// a run is a pure function of (seed, k) — the basis of exact resume.
#[derive(Debug, Clone)]
pub struct BatchOrder {
    n: usize,
    batch: usize,
    seed: u64,
}

impl BatchOrder {
    pub fn new(n: usize, batch: usize, seed: u64) -> Self {
        assert!(n > 0 && batch > 0);
        Self { n, batch, seed }
    }

    fn epoch_perm(&self, epoch: u64) -> Vec<usize> {
        let mut p: Vec<usize> = (0..self.n).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        p.shuffle(&mut rng);
        p
    }

    /// Example indices of micro-batch `k` (0-based, counting across epochs).
    pub fn batch(&self, k: usize) -> Vec<usize> {
        let start = k * self.batch;
        let mut out = Vec::with_capacity(self.batch);
        let mut epoch = (start / self.n) as u64;
        let mut perm = self.epoch_perm(epoch);
        for pos in start..start + self.batch {
            let e = (pos / self.n) as u64;
            if e != epoch {
                epoch = e;
                perm = self.epoch_perm(epoch);
            }
            out.push(perm[pos % self.n]);
        }
        out
    }

    /// Fractional epoch reached after `k` micro-batches.
    pub fn epoch_at(&self, k: usize) -> f64 {
        (k * self.batch) as f64 / self.n as f64
    }
}

/// A batch on the device: inputs and targets `[B, L]`, loss weights `[B, L]` (1 for targets).
pub struct Batch {
    pub inputs: Tensor<2, Int>,
    pub targets: Tensor<2, Int>,
    pub weights: Tensor<2>,
    /// Number of target tokens (sum of `weights`).
    pub target_count: usize,
    pub tokens: usize,
}

/// Pads examples (right side) into a batch of at most `max_len` tokens per row; longer examples
/// are cut to their first `max_len` tokens.
pub fn make_batch(examples: &[&Example], max_len: usize, pad_id: u32, device: &Device) -> Batch {
    let b = examples.len();
    let len = examples.iter().map(|e| e.ids.len().min(max_len)).max().unwrap_or(2).max(2);
    let l = len - 1;
    let mut inputs = vec![pad_id as i64; b * l];
    let mut targets = vec![pad_id as i64; b * l];
    let mut weights = vec![0f32; b * l];
    let mut count = 0;
    let mut tokens = 0;
    for (r, e) in examples.iter().enumerate() {
        let n = e.ids.len().min(len);
        tokens += n;
        for i in 0..n.saturating_sub(1) {
            inputs[r * l + i] = e.ids[i] as i64;
            targets[r * l + i] = e.ids[i + 1] as i64;
            if e.train[i + 1] {
                weights[r * l + i] = 1.0;
                count += 1;
            }
        }
    }
    Batch {
        inputs: Tensor::from_data(TensorData::new(inputs, [b, l]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, l]), device),
        weights: Tensor::from_data(TensorData::new(weights, [b, l]), device),
        target_count: count,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_tokens_are_not_targets() {
        let e = Example::prompt_completion(&[1, 2, 3], &[4, 5]);
        assert_eq!(e.train, vec![false, false, false, true, true]);
        assert_eq!(e.targets(), 2);
        let b = make_batch(&[&e, &Example::full(vec![7, 8])], 16, 0, &Device::flex());
        let w: Vec<f32> = b.weights.into_data().try_into_vec_as().unwrap();
        // Row 0 predicts tokens 2,3,4,5 → only 4 and 5 count; row 1 predicts 8.
        assert_eq!(w, vec![0., 0., 1., 1., 1., 0., 0., 0.]);
        assert_eq!(b.target_count, 3);
        let t: Vec<i64> = b.targets.into_data().try_into_vec_as::<i64>().unwrap();
        assert_eq!(&t[..4], &[2, 3, 4, 5]);
    }

    #[test]
    fn batch_order_is_a_pure_function_of_seed_and_index() {
        let o = BatchOrder::new(10, 4, 3);
        let first: Vec<usize> = (0..5).flat_map(|k| o.batch(k)).collect();
        // Two full epochs: each example exactly twice, reshuffled between epochs.
        let mut counts = [0; 10];
        first.iter().for_each(|&i| counts[i] += 1);
        assert_eq!(counts, [2; 10]);
        assert_ne!(&first[..10], &first[10..20]);
        assert_eq!(o.batch(3), BatchOrder::new(10, 4, 3).batch(3));
        assert_ne!(o.batch(0), BatchOrder::new(10, 4, 4).batch(0));
    }

    #[test]
    fn long_examples_are_cut() {
        let e = Example::full((0..100).collect());
        let b = make_batch(&[&e], 9, 0, &Device::flex());
        assert_eq!(b.inputs.dims(), [1, 8]);
        assert_eq!(b.target_count, 8);
        assert_eq!(chunk_stream(&(0..10).collect::<Vec<_>>(), 4).len(), 3);
        assert_eq!(chunk_stream(&(0..9).collect::<Vec<_>>(), 4).len(), 2);
    }
}
