//! Which tokens do thoughts help? For every token of a text, the log-probability the model
//! gives it with a thought before it (mixed prediction) and without (base model).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData, Transaction};
use serde::Serialize;
use starling_thought::Kernel;

use crate::model::{QuietModel, ThoughtState};
use crate::sample::sample_thoughts;
use starling_model::generate::left_padded;

#[derive(Debug, Clone, Serialize)]
pub struct TokenDelta {
    /// Index of the predicted token in the sequence (≥ 1).
    pub index: usize,
    pub id: u32,
    pub logp_base: f32,
    pub logp_thought: f32,
    /// From the post-thought state alone (w = 1): what the thought branch predicts by itself.
    pub logp_post: f32,
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
    token_deltas_batch(model, &[ids.to_vec()], temperature, kernel).pop().unwrap_or_default()
}

/// [`token_deltas`] for a batch of sequences of any lengths (left-padded together, so one
/// thought pass serves them all). Sequences shorter than two tokens get no values.
pub fn token_deltas_batch(
    model: &QuietModel,
    seqs: &[Vec<u32>],
    temperature: f64,
    kernel: Kernel,
) -> Vec<Vec<TokenDelta>> {
    let device = model.device();
    let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if l < 2 {
        return vec![Vec::new(); seqs.len()];
    }
    let b = seqs.len();
    let d = model.hidden_size();
    let nt = model.config.n_thought;
    let pad_id = model.lm.config().pad_id();
    let (tokens, pad) = left_padded(seqs, pad_id, &device);
    let thoughts = sample_thoughts(model, tokens.clone(), &pad, 1, temperature, kernel); // [B, nt, L]
    let (h_base, cache) = model.base_pass(tokens, &pad);
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, &pad, 1, kernel);
    let block = Tensor::cat(model.thought_inputs(thoughts.clone()), 1);
    let h_post = model.thought_steps(block, &mut state).narrow(1, nt + 1, 1); // [B, 1, L, d]
    let h_base = h_base.reshape([b, 1, l, d]);
    let (mixed, w) = model.mix(h_base.clone(), h_post.clone());
    // Position j of row r predicts the padded row's token j + 1.
    let targets: Vec<i64> = seqs
        .iter()
        .zip(&pad)
        .flat_map(|(s, &p)| (0..l).map(move |j| if j >= p && j + 1 < l { s[j + 1 - p] as i64 } else { 0 }))
        .collect();
    let targets = Tensor::<4, Int>::from_data(TensorData::new(targets, [b, 1, l, 1]), &device);
    let pick = |h: Tensor<4>| log_softmax(model.logits4(h), 3).gather(3, targets.clone()).reshape([b * l]);
    // One read-back for everything the host needs.
    let data: [TensorData; 5] = Transaction::default()
        .register(pick(mixed))
        .register(pick(h_post))
        .register(pick(h_base))
        .register(w.reshape([b * l]))
        .register(thoughts)
        .execute()
        .try_into()
        .expect("five results");
    let [lp_mix, lp_post, lp_base, w, th] = data;
    let host = |t: TensorData| -> Vec<f32> { t.try_into_vec_as().expect("f32") };
    let (lp_mix, lp_post, lp_base, w) = (host(lp_mix), host(lp_post), host(lp_base), host(w));
    let th: Vec<i64> = th.try_into_vec_as().expect("ids");
    seqs.iter()
        .zip(&pad)
        .enumerate()
        .map(|(r, (s, &p))| {
            (1..s.len())
                .map(|index| {
                    let j = p + index - 1; // the padded position that predicts `index`
                    let at = r * l + j;
                    TokenDelta {
                        index,
                        id: s[index],
                        logp_base: lp_base[at],
                        logp_thought: lp_mix[at],
                        logp_post: lp_post[at],
                        mix_weight: w[at],
                        thought_ids: (0..nt).map(|t| th[(r * nt + t) * l + j] as u32).collect(),
                    }
                })
                .collect()
        })
        .collect()
}
