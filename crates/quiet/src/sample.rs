//! Thoughts sampled in parallel at every thinking position ("think"): one forward step per
//! thought token for all positions together.

use burn::tensor::{Int, Tensor};
use starling_model::sampling::{Sampler, SamplingConfig};
use starling_thought::Kernel;

use crate::model::{QuietModel, ThoughtState};

/// Samples `passes` thoughts of `n_thought` tokens after every position of `tokens` `[B, L]`.
/// Returns ids `[passes·B, n_thought, L]` (row `p·B + b`). `temperature` 0 is greedy.
/// Run it on a model without autodiff (`model.valid()`): sampling needs no gradients.
pub fn sample_thoughts(
    model: &QuietModel,
    tokens: Tensor<2, Int>,
    pad_left: &[usize],
    passes: usize,
    temperature: f64,
    kernel: Kernel,
) -> Tensor<3, Int> {
    let (_, cache) = model.base_pass(tokens, pad_left);
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, pad_left, passes, kernel);
    sample_into(model, &mut state, temperature)
}

/// Samples a thought of `n_thought` tokens at each thinking position of `state` (fresh: no step
/// taken yet): ids `[N, n_thought, Lq]`. Afterwards `state` holds the start marker and every
/// sampled token but the last, so feeding the last token and the end marker continues the
/// same computation a teacher-forced pass would repeat.
pub fn sample_into(model: &QuietModel, state: &mut ThoughtState, temperature: f64) -> Tensor<3, Int> {
    assert_eq!(state.steps, 0, "thoughts are sampled from a fresh thought state");
    let n = state.pad_left.len();
    let l = state.thinking;
    let cfg = SamplingConfig { temperature: temperature as f32, ..SamplingConfig::greedy() };
    let vocab = model.lm.config().vocab_size;
    let sampler = Sampler::new(&cfg, vocab, &model.device());
    let mut input = model.marker_block(false, n, l);
    let mut ids = Vec::with_capacity(model.config.n_thought);
    for t in 0..model.config.n_thought {
        let hidden = model.thought_steps(input, state);
        let logits = model.logits4(hidden).reshape([n * l, vocab]);
        let next = sampler.sample(logits).reshape([n, 1, l]);
        ids.push(next.clone());
        if t + 1 == model.config.n_thought {
            break;
        }
        input = model.lm.embed(next.reshape([n, l])).reshape([n, 1, l, model.hidden_size()]);
    }
    Tensor::cat(ids, 1)
}

/// Samples the thought at each thinking position of `state` (fresh) and ends it — the last
/// thought token, then the end marker. Returns the thought ids `[N, n_thought, Lq]` and the
/// hidden states after the end marker `[N, 1, Lq, d]` (those that predict the next real token).
pub fn think_and_end(model: &QuietModel, state: &mut ThoughtState, temperature: f64) -> (Tensor<3, Int>, Tensor<4>) {
    let thoughts = sample_into(model, state, temperature);
    let [n, nt, l] = thoughts.dims();
    let last =
        model.lm.embed(thoughts.clone().narrow(1, nt - 1, 1).reshape([n, l])).reshape([n, 1, l, model.hidden_size()]);
    let block = Tensor::cat(vec![last, model.marker_block(true, n, l)], 1);
    let h_post = model.thought_steps(block, state).narrow(1, 1, 1);
    (thoughts, h_post)
}
