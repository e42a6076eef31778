//! Inside a thought: everything a picture of Quiet-STaR's computation needs for one short text.
//! A thought is generated after every token, all positions in parallel, one step at a time; each
//! step's query sees the text up to its own token and the earlier steps of its own thought
//! ([`starling_thought::Visibility`], the rules the kernels run); after the end marker the
//! mixing head blends the base model's hidden state with the post-thought one. The browser's
//! "Inside a thought" view draws this; nothing here is specific to a page.

use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData, Transaction};
use serde::Serialize;
use starling_model::host::{Host, ids as read_ids};
use starling_thought::{Kernel, Visibility};

use crate::model::{QuietModel, ThoughtState};
use crate::sample::think_and_end;
use crate::{QuietError, Result};

/// The thought computation over one text.
#[derive(Debug, Clone, Serialize)]
pub struct Inside {
    /// The text's token ids.
    pub tokens: Vec<u32>,
    /// Query steps of a thought: the start marker, the thought's tokens, the end marker
    /// (`n_thought + 2`). Step `s` reads the token written at step `s − 1` (step 0: the start
    /// marker) and, before the end marker, predicts the next thought token.
    pub steps: usize,
    /// `sight[s][p]`: the keys the step-`s` query of position `p` attends to.
    pub sight: Vec<Vec<Sight>>,
    /// One entry per position of the text.
    pub positions: Vec<PositionInside>,
}

/// The keys one thought query attends to, as half-open ranges: the text's tokens
/// `text.0..text.1` and its own thought's steps `thought.0..thought.1` (no other position's
/// thought).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sight {
    pub text: (usize, usize),
    pub thought: (usize, usize),
}

/// What the model makes of one position: the thought after its token and the prediction of the
/// next token with and without it.
#[derive(Debug, Clone, Serialize)]
pub struct PositionInside {
    /// The thought's tokens (without the markers).
    pub thought_ids: Vec<u32>,
    /// The mixing head's weight on the post-thought state (0: the base model alone).
    pub mix_weight: f32,
    /// The likeliest next tokens of each prediction (the union of each one's top k), likeliest
    /// mixed first.
    pub candidates: Vec<Candidate>,
    /// The text's own next token, where there is one.
    pub next: Option<Candidate>,
}

/// One next token's probability under the base model (no thought), the post-thought state
/// alone (w = 1), and the mixture Quiet-STaR predicts with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    pub id: u32,
    pub base: f32,
    pub post: f32,
    pub mixed: f32,
}

/// Thinks after every token of `ids` (thoughts sampled at `temperature`, 0: greedy) and reads
/// back, in one read through `host`, the thoughts, the mixing weights and the top `top_k` next
/// tokens of each prediction at every position. Run it on a model without autodiff.
pub async fn look_inside(
    model: &QuietModel,
    ids: &[u32],
    top_k: usize,
    temperature: f64,
    kernel: Kernel,
    host: &mut impl Host,
) -> Result<Inside> {
    let l = ids.len();
    if l == 0 {
        return Err(QuietError::Input("no tokens to think after".into()));
    }
    model.check_length(l)?;
    model.check_kernel(kernel)?;
    let vocab = model.lm.config().vocab_size;
    let k = top_k.clamp(1, vocab);
    let device = model.device();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&t| t as i64).collect(), [1, l]), &device);
    let (h_base, cache) = model.base_pass(tokens, &[0]);
    let mut state = ThoughtState::new(&cache, model.lm.config().num_layers, &[0], 1, kernel);
    let (thoughts, h_post) = think_and_end(model, &mut state, temperature); // [1, nt, L], [1, 1, L, d]
    let d = model.hidden_size();
    let h_base = h_base.reshape([1, 1, l, d]);
    let (mixed, w) = model.mix(h_base.clone(), h_post.clone());
    let probs = |h: Tensor<4>| softmax(model.logits4(h), 3).reshape([l, vocab]);
    let (p_base, p_post, p_mixed) = (probs(h_base), probs(h_post), probs(mixed));
    // Each prediction's top k, then every distribution's probability of all of them and of the
    // text's next token (the last position has none: its slot reads token 0 and is dropped).
    let top = |p: &Tensor<2>| p.clone().topk_with_indices(k, 1).1;
    let next: Vec<i64> = (1..=l).map(|i| ids.get(i).map_or(0, |&t| t as i64)).collect();
    let next = Tensor::<2, Int>::from_data(TensorData::new(next, [l, 1]), &device);
    let asked = Tensor::cat(vec![top(&p_base), top(&p_post), top(&p_mixed), next], 1); // [L, 3k + 1]
    let at = |p: Tensor<2>| p.gather(1, asked.clone()).reshape([1, l, 3 * k + 1]);
    let picked = Tensor::cat(vec![at(p_base), at(p_post), at(p_mixed)], 0);
    let reads = Transaction::default().register(picked).register(asked).register(w.reshape([l])).register(thoughts);
    let [picked, asked, w, thoughts]: [TensorData; 4] = host
        .read(reads)
        .await?
        .try_into()
        .map_err(|_| QuietError::Input("the device returned the wrong number of results".into()))?;
    let floats = |t: TensorData| -> Result<Vec<f32>> {
        t.try_into_vec_as::<f32>().map_err(|e| QuietError::Input(format!("device values: {e:?}")))
    };
    let (picked, w) = (floats(picked)?, floats(w)?);
    let (asked, thoughts) = (read_ids(asked)?, read_ids(thoughts)?);
    let nt = model.config.n_thought;
    let width = 3 * k + 1;
    let positions = (0..l)
        .map(|p| {
            let candidate = |j: usize| Candidate {
                id: asked[p * width + j] as u32,
                base: picked[p * width + j],
                post: picked[(l + p) * width + j],
                mixed: picked[(2 * l + p) * width + j],
            };
            let mut candidates: Vec<Candidate> = Vec::with_capacity(3 * k);
            for c in (0..3 * k).map(candidate) {
                if !candidates.iter().any(|o| o.id == c.id) {
                    candidates.push(c);
                }
            }
            candidates.sort_by(|a, b| b.mixed.total_cmp(&a.mixed));
            PositionInside {
                thought_ids: (0..nt).map(|t| thoughts[t * l + p] as u32).collect(),
                mix_weight: w[p],
                candidates,
                next: (p + 1 < l).then(|| candidate(3 * k)),
            }
        })
        .collect();
    let steps = nt + 2;
    Ok(Inside { tokens: ids.to_vec(), steps, sight: sight(l, steps, model.lm.config().sliding_window), positions })
}

/// The keys each query of a thought pass over a text of `l` tokens attends to, step by step,
/// as [`Visibility`] decides for the kernels.
pub fn sight(l: usize, steps: usize, window: Option<usize>) -> Vec<Vec<Sight>> {
    let vis = Visibility { pad_left: vec![0], first: 0, window };
    (0..steps)
        .map(|s| {
            (0..l)
                .map(|p| {
                    let text = vis.real_keys(0, p, s);
                    Sight { text: (text.start, text.end), thought: (vis.first_thought_key(s), s + 1) }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thought_sees_the_text_so_far_and_its_own_earlier_steps() {
        // No window: step s of position p sees tokens 0..=p and its own steps 0..=s.
        let s = sight(4, 3, None);
        assert_eq!((s.len(), s[0].len()), (3, 4));
        assert_eq!(s[0][0], Sight { text: (0, 1), thought: (0, 1) });
        assert_eq!(s[2][3], Sight { text: (0, 4), thought: (0, 3) });
        // A window of 3 slots: step 1 of position 2 sits at slot 2 + 1 + 1 = 4 and sees slots
        // 2..=4 — token 2 and its own steps 0 and 1 (slots 3 and 4).
        let w = sight(4, 3, Some(3));
        assert_eq!(w[1][2], Sight { text: (2, 3), thought: (0, 2) });
        // Step 2 of position 0 sits at slot 3: slots 1..=3, its steps 0..=2 and no token.
        assert_eq!(w[2][0], Sight { text: (1, 1), thought: (0, 3) });
    }
}
