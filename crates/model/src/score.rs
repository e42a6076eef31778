//! Scoring text: per-token log-probabilities and perplexity.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::mask::{AttentionBias, positions};
use crate::model::Transformer;

/// `out[b][i] = log p(seqs[b][i+1] | seqs[b][..=i])` for a batch of sequences (right-padded
/// internally; each row gets `len − 1` values).
pub fn token_logprobs(model: &Transformer, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    let c = model.config();
    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if longest < 2 {
        return Err(ModelError::Input("scoring needs sequences of at least two tokens".into()));
    }
    if longest > c.max_position_embeddings {
        return Err(ModelError::Input(format!(
            "a sequence of {longest} tokens exceeds the model's context of {} tokens",
            c.max_position_embeddings
        )));
    }
    let device = model.device();
    let b = seqs.len();
    let flat: Vec<i64> = seqs
        .iter()
        .flat_map(|s| s.iter().map(|&t| t as i64).chain(std::iter::repeat_n(0, longest - s.len())))
        .collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, longest]), &device);
    let inputs = tokens.clone().narrow(1, 0, longest - 1);
    let targets = tokens.narrow(1, 1, longest - 1);
    // Right padding needs no key masking: padded tokens only come after the real ones.
    let zeros = vec![0; b];
    let pos = positions(&zeros, 0, longest - 1, &device);
    let bias = AttentionBias::causal(&zeros, 0, longest - 1, c.sliding_window, &device);
    let hidden = model.forward_embeds(model.embed(inputs), &pos, &bias, None);
    let logp = log_softmax(model.logits(hidden), 2);
    let picked = logp.gather(2, targets.unsqueeze_dim(2)).reshape([b, longest - 1]);
    let values: Vec<f32> = picked.into_data().try_into_vec_as::<f32>().expect("f32");
    Ok(seqs
        .iter()
        .enumerate()
        .map(|(r, s)| values[r * (longest - 1)..r * (longest - 1) + s.len() - 1].to_vec())
        .collect())
}

/// Negative log-likelihood of a long token stream, scored in windows of `window` tokens that
/// advance by `stride`: every token after the first is scored once, with up to
/// `window − stride` tokens of left context carried over from the previous window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NllSummary {
    pub total_nll: f64,
    pub tokens: usize,
}

impl NllSummary {
    pub fn mean(&self) -> f64 {
        self.total_nll / self.tokens.max(1) as f64
    }
    pub fn perplexity(&self) -> f64 {
        self.mean().exp()
    }
}

/// Windows `(start, end, first_scored)` of a stream of `n` tokens: the stream's tokens
/// `start..end` are fed, and predictions of tokens `first_scored..end` are counted.
pub fn windows(n: usize, window: usize, stride: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut scored_to = 1; // token 0 has no prediction
    let mut start = 0;
    while scored_to < n {
        let end = (start + window).min(n);
        out.push((start, end, scored_to));
        scored_to = end;
        if end == n {
            break;
        }
        start = (start + stride).min(end - 1);
    }
    out
}

pub fn stream_nll(
    model: &Transformer,
    ids: &[u32],
    window: usize,
    stride: usize,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<NllSummary> {
    if window < 2 || stride == 0 || stride > window {
        return Err(ModelError::Input(format!("need window ≥ 2 and 0 < stride ≤ window (got {window}, {stride})")));
    }
    let wins = windows(ids.len(), window, stride);
    let mut total = 0f64;
    let mut count = 0usize;
    for (i, chunk) in wins.chunks(batch.max(1)).enumerate() {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|&(s, e, _)| ids[s..e].to_vec()).collect();
        let lps = token_logprobs(model, &seqs)?;
        for (&(s, _, first), lp) in chunk.iter().zip(lps) {
            // lp[j] predicts stream token s + j + 1.
            for v in &lp[first - s - 1..] {
                total -= *v as f64;
                count += 1;
            }
        }
        progress(((i + 1) * batch).min(wins.len()), wins.len());
    }
    if !total.is_finite() {
        return Err(ModelError::Input("the model produced a non-finite log-probability (NaN/inf weights?)".into()));
    }
    Ok(NllSummary { total_nll: total, tokens: count })
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_score_every_token_once() {
        for (n, w, s) in [(10, 4, 2), (10, 4, 4), (3, 8, 4), (17, 5, 3), (2, 2, 1)] {
            let wins = windows(n, w, s);
            let mut scored = vec![0; n];
            for (start, end, first) in wins {
                assert!(end - start <= w && start < first && first <= end);
                for count in &mut scored[first..end] {
                    *count += 1;
                }
            }
            assert_eq!(scored[0], 0);
            assert!(scored[1..].iter().all(|&c| c == 1), "{n} {w} {s}: {scored:?}");
        }
    }
}
