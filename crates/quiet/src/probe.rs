//! The next-token prediction at one position with a thought of one's choosing: sampled (and
//! cut to its first j tokens) or given (shuffled, random, the ground truth). The evaluation-time
//! interventions of an experiment are thoughts swapped here, the model unchanged.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use starling_thought::Kernel;

use crate::model::{QuietModel, ThoughtState};
use crate::sample::sample_into;

/// The prediction of the token after the probed position, as log-probabilities over the
/// vocabulary: the base model's (no thought, w = 0), the post-thought state's alone (w = 1),
/// and the mixed one Quiet-STaR predicts with.
#[derive(Debug, Clone)]
pub struct NextToken {
    pub base: Vec<f32>,
    pub post: Vec<f32>,
    pub mixed: Vec<f32>,
    pub weight: f32,
    /// The thought the prediction read.
    pub thought: Vec<u32>,
}

/// Sampled thoughts: `n_thought` tokens at `temperature` (0: greedy).
pub fn sample_at(model: &QuietModel, seqs: &[Vec<u32>], pos: usize, temperature: f64, kernel: Kernel) -> Vec<Vec<u32>> {
    let (_, cache, pad) = base(model, seqs);
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, &pad, 1, kernel).thinking_at(pos, 1);
    let ids = sample_into(model, &mut state, temperature); // [B, n_thought, 1]
    let [b, nt, _] = ids.dims();
    let flat: Vec<u32> = ids.into_data().iter::<i64>().map(|v| v as u32).collect();
    (0..b).map(|r| flat[r * nt..(r + 1) * nt].to_vec()).collect()
}

/// The predictions of token `pos + 1` of equal-length `seqs` with `thoughts[r]` (all of one
/// length, possibly 0: the start marker, then the end marker) after position `pos` of row r.
pub fn next_token_with(
    model: &QuietModel,
    seqs: &[Vec<u32>],
    pos: usize,
    thoughts: &[Vec<u32>],
    kernel: Kernel,
) -> Vec<NextToken> {
    assert_eq!(seqs.len(), thoughts.len(), "one thought per sequence");
    let j = thoughts.first().map_or(0, Vec::len);
    assert!(thoughts.iter().all(|t| t.len() == j), "thoughts of one length");
    let device = model.device();
    let (h_base, cache, pad) = base(model, seqs);
    let b = seqs.len();
    let d = model.hidden_size();
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, &pad, 1, kernel).thinking_at(pos, 1);
    let mut block = vec![model.marker_block(false, b, 1)];
    if j > 0 {
        let ids: Vec<i64> = thoughts.iter().flatten().map(|&t| t as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, j]), &device);
        block.push(model.lm.embed(ids).reshape([b, j, 1, d]));
    }
    block.push(model.marker_block(true, b, 1));
    let h_post = model.thought_steps(Tensor::cat(block, 1), &mut state).narrow(1, j + 1, 1); // [B, 1, 1, d]
    let h_base = h_base.narrow(1, pos, 1).reshape([b, 1, 1, d]);
    let (mixed, w) = model.mix(h_base.clone(), h_post.clone());
    let v = model.lm.config().vocab_size;
    let logp = |h: Tensor<4>| -> Vec<f32> {
        log_softmax(model.logits4(h).reshape([b, v]), 1).into_data().try_into_vec_as().expect("f32")
    };
    let (base, post, mixed) = (logp(h_base), logp(h_post), logp(mixed));
    let w: Vec<f32> = w.reshape([b]).into_data().try_into_vec_as().expect("f32");
    (0..b)
        .map(|r| NextToken {
            base: base[r * v..(r + 1) * v].to_vec(),
            post: post[r * v..(r + 1) * v].to_vec(),
            mixed: mixed[r * v..(r + 1) * v].to_vec(),
            weight: w[r],
            thought: thoughts[r].clone(),
        })
        .collect()
}

fn base(model: &QuietModel, seqs: &[Vec<u32>]) -> (Tensor<3>, starling_model::cache::KvCache, Vec<usize>) {
    let len = seqs[0].len();
    assert!(seqs.iter().all(|s| s.len() == len), "sequences of one length");
    let flat: Vec<i64> = seqs.iter().flatten().map(|&t| t as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [seqs.len(), len]), &model.device());
    let pad = vec![0; seqs.len()];
    let (h, cache) = model.base_pass(tokens, &pad);
    (h, cache, pad)
}

/// The index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0
}
