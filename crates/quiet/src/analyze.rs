//! Which tokens do thoughts help? For every token of a text, the log-probability the model
//! gives it with a thought before it (mixed prediction) and without (base model).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;
use starling_thought::Kernel;

use crate::model::{QuietModel, ThoughtState};
use crate::sample::sample_thoughts;

#[derive(Debug, Clone, Serialize)]
pub struct TokenDelta {
    /// Index of the predicted token in the sequence (≥ 1).
    pub index: usize,
    pub id: u32,
    pub logp_base: f32,
    pub logp_thought: f32,
    pub mix_weight: f32,
    /// The thought generated after the previous token.
    pub thought_ids: Vec<u32>,
}

impl TokenDelta {
    pub fn delta(&self) -> f32 {
        self.logp_thought - self.logp_base
    }
}

/// Per-token log-probabilities with and without thoughts for one sequence. Thoughts are
/// sampled at `temperature` (0: greedy), all positions in parallel.
pub fn token_deltas(model: &QuietModel, ids: &[u32], temperature: f64, kernel: Kernel) -> Vec<TokenDelta> {
    let device = model.device();
    let l = ids.len();
    if l < 2 {
        return Vec::new();
    }
    let d = model.hidden_size();
    let nt = model.config.n_thought;
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, l]), &device);
    let thoughts = sample_thoughts(model, tokens.clone(), &[0], 1, temperature, kernel); // [1, nt, L]
    let (h_base, cache) = model.base_pass(tokens, &[0]);
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, &[0], 1, kernel);
    let block = Tensor::cat(
        vec![
            model.marker_block(false, 1, l),
            model.lm.embed(thoughts.clone().reshape([1, nt * l])).reshape([1, nt, l, d]),
            model.marker_block(true, 1, l),
        ],
        1,
    );
    let h_post = model.thought_steps(block, &mut state).narrow(1, nt + 1, 1); // [1, 1, L, d]
    let h_base = h_base.reshape([1, 1, l, d]);
    let (mixed, w) = model.mix(h_base.clone(), h_post);
    let targets: Vec<i64> = (0..l).map(|i| ids.get(i + 1).map_or(0, |&t| t as i64)).collect();
    let targets = Tensor::<4, Int>::from_data(TensorData::new(targets, [1, 1, l, 1]), &device);
    let lp_mix = log_softmax(model.logits4(mixed), 3).gather(3, targets.clone()).reshape([l]);
    let lp_base = log_softmax(model.logits4(h_base), 3).gather(3, targets).reshape([l]);
    let host = |t: Tensor<1>| -> Vec<f32> { t.into_data().try_into_vec_as().expect("f32") };
    let (lp_mix, lp_base, w) = (host(lp_mix), host(lp_base), host(w.reshape([l])));
    let th: Vec<i64> = thoughts.into_data().try_into_vec_as().expect("ids");
    (0..l - 1)
        .map(|i| TokenDelta {
            index: i + 1,
            id: ids[i + 1],
            logp_base: lp_base[i],
            logp_thought: lp_mix[i],
            mix_weight: w[i],
            thought_ids: (0..nt).map(|t| th[t * l + i] as u32).collect(),
        })
        .collect()
}
