//! Which tokens do thoughts help? For every token of a text, the log-probability the model
//! gives it with a thought before it (mixed prediction) and without (base model).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData, Transaction};
use serde::Serialize;
use starling_thought::Kernel;

use crate::model::{QuietModel, ThoughtState};
use crate::sample::think_and_end;
use starling_model::cache::KvCache;
use starling_model::generate::left_padded;
use starling_model::mask::{AttentionBias, positions};

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
    let from = vec![1; seqs.len()];
    token_deltas_from(model, seqs, &from, temperature, kernel)
}

/// [`token_deltas_batch`] for the tokens `from[r]..` of each sequence only: thoughts are
/// generated only at the positions that predict them (a prompt costs one ordinary pass), so
/// scoring a short answer after a long question costs about the answer's length in thought
/// positions. The values are those of the full computation at the same positions.
pub fn token_deltas_from(
    model: &QuietModel,
    seqs: &[Vec<u32>],
    from: &[usize],
    temperature: f64,
    kernel: Kernel,
) -> Vec<Vec<TokenDelta>> {
    assert_eq!(from.len(), seqs.len(), "one starting token per sequence");
    let device = model.device();
    let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
    if l < 2 {
        return vec![Vec::new(); seqs.len()];
    }
    let pad_id = model.lm.config().pad_id();
    let (tokens, pad) = left_padded(seqs, pad_id, &device);
    let (h_base, cache) = model.base_pass(tokens, &pad);
    deltas_after_base(model, seqs, &pad, from, h_base, &cache, temperature, kernel)
}

/// Candidate continuations of shared prompts (`continuations[i]` follow `prompts[i]`), each
/// prompt computed once: its keys/values serve all its continuations. Returns, per prompt and
/// continuation, the values of the continuation's tokens — those of [`token_deltas_from`] on
/// the concatenated sequences.
pub fn continuation_deltas(
    model: &QuietModel,
    prompts: &[Vec<u32>],
    continuations: &[Vec<Vec<u32>>],
    temperature: f64,
    kernel: Kernel,
) -> Vec<Vec<Vec<TokenDelta>>> {
    assert_eq!(prompts.len(), continuations.len(), "continuations for every prompt");
    assert!(prompts.iter().all(|p| !p.is_empty()), "every prompt has a token to continue");
    let device = model.device();
    let pad_id = model.lm.config().pad_id();
    let (tokens, pad) = left_padded(prompts, pad_id, &device);
    let p_len = tokens.dims()[1];
    let (h_prompt, cache) = model.base_pass(tokens, &pad);
    // Row r: prompt rows[r], one of its continuations, right-padded to the longest.
    let rows: Vec<usize> =
        continuations.iter().enumerate().flat_map(|(i, c)| std::iter::repeat_n(i, c.len())).collect();
    let conts: Vec<&Vec<u32>> = continuations.iter().flatten().collect();
    let c_len = conts.iter().map(|c| c.len()).max().unwrap_or(0);
    if rows.is_empty() || c_len == 0 {
        return continuations.iter().map(|c| vec![Vec::new(); c.len()]).collect();
    }
    let r = rows.len();
    let index =
        Tensor::<1, Int>::from_data(TensorData::new(rows.iter().map(|&i| i as i64).collect::<Vec<_>>(), [r]), &device);
    let mut cache = cache.select_rows(index.clone());
    let pad_rows: Vec<usize> = rows.iter().map(|&i| pad[i]).collect();
    let cont_ids: Vec<i64> =
        conts.iter().flat_map(|c| (0..c_len).map(|k| c.get(k).map_or(pad_id as i64, |&t| t as i64))).collect();
    let cont_ids = Tensor::<2, Int>::from_data(TensorData::new(cont_ids, [r, c_len]), &device);
    let pos = positions(&pad_rows, p_len, c_len, &device);
    let bias = AttentionBias::causal(&pad_rows, p_len, c_len, model.lm.config().sliding_window, &device);
    let h_cont = model.lm.forward_embeds(model.lm.embed(cont_ids), &pos, &bias, Some(&mut cache));
    let h_base = Tensor::cat(vec![h_prompt.select(0, index), h_cont], 1);
    let seqs: Vec<Vec<u32>> = rows.iter().zip(&conts).map(|(&i, c)| [prompts[i].as_slice(), c].concat()).collect();
    let from: Vec<usize> = rows.iter().map(|&i| prompts[i].len()).collect();
    let mut flat = deltas_after_base(model, &seqs, &pad_rows, &from, h_base, &cache, temperature, kernel).into_iter();
    continuations.iter().map(|c| flat.by_ref().take(c.len()).collect()).collect()
}

/// The thought computation after a base pass: `h_base` `[B, L, d]` and `cache` hold every real
/// position of the rows `seqs` (left-padded by `pad`; a shorter row may trail padding on the
/// right, which is never scored). Values for the tokens `from[r]..` of each row.
#[allow(clippy::too_many_arguments)]
fn deltas_after_base(
    model: &QuietModel,
    seqs: &[Vec<u32>],
    pad: &[usize],
    from: &[usize],
    h_base: Tensor<3>,
    cache: &KvCache,
    temperature: f64,
    kernel: Kernel,
) -> Vec<Vec<TokenDelta>> {
    let device = model.device();
    let [b, l, d] = h_base.dims();
    let nt = model.config.n_thought;
    // The first padded position that predicts a wanted token, over the batch.
    let first = seqs
        .iter()
        .zip(pad)
        .zip(from)
        .filter(|((s, _), f)| **f < s.len())
        .map(|((_, &p), &f)| p + f.max(1) - 1)
        .min()
        .unwrap_or(l - 1);
    // …and one past the last position that predicts a token of its row.
    let end = seqs.iter().zip(pad).map(|(s, &p)| p + s.len().max(1) - 1).max().unwrap_or(l).max(first + 1);
    let lq = end - first;
    let mut state = ThoughtState::new(cache, model.lm.config().num_layers, pad, 1, kernel).thinking_at(first, lq);
    let (thoughts, h_post) = think_and_end(model, &mut state, temperature); // [B, nt, Lq], [B, 1, Lq, d]
    let h_base = h_base.narrow(1, first, lq).reshape([b, 1, lq, d]);
    let (mixed, w) = model.mix(h_base.clone(), h_post.clone());
    // Thinking position q (padded position first + q) of row r predicts the padded row's next token.
    let targets: Vec<i64> = seqs
        .iter()
        .zip(pad)
        .flat_map(|(s, &p)| {
            (first..end).map(move |j| if j >= p { s.get(j + 1 - p).map_or(0, |&t| t as i64) } else { 0 })
        })
        .collect();
    let targets = Tensor::<4, Int>::from_data(TensorData::new(targets, [b, 1, lq, 1]), &device);
    let pick = |h: Tensor<4>| log_softmax(model.logits4(h), 3).gather(3, targets.clone()).reshape([b * lq]);
    // One read-back for everything the host needs.
    let data: [TensorData; 5] = Transaction::default()
        .register(pick(mixed))
        .register(pick(h_post))
        .register(pick(h_base))
        .register(w.reshape([b * lq]))
        .register(thoughts)
        .execute()
        .try_into()
        .expect("five results");
    let [lp_mix, lp_post, lp_base, w, th] = data;
    let host = |t: TensorData| -> Vec<f32> { t.try_into_vec_as().expect("f32") };
    let (lp_mix, lp_post, lp_base, w) = (host(lp_mix), host(lp_post), host(lp_base), host(w));
    let th: Vec<i64> = th.try_into_vec_as().expect("ids");
    seqs.iter()
        .zip(pad)
        .zip(from)
        .enumerate()
        .map(|(r, ((s, &p), &f))| {
            (f.max(1)..s.len())
                .map(|index| {
                    let q = p + index - 1 - first; // the thinking position that predicts `index`
                    let at = r * lq + q;
                    TokenDelta {
                        index,
                        id: s[index],
                        logp_base: lp_base[at],
                        logp_thought: lp_mix[at],
                        logp_post: lp_post[at],
                        mix_weight: w[at],
                        thought_ids: (0..nt).map(|t| th[(r * nt + t) * lq + q] as u32).collect(),
                    }
                })
                .collect()
        })
        .collect()
}

/// Thoughts' effect on the tokens of one difficulty band (base-model NLL).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DifficultyBand {
    pub tokens: usize,
    /// Range of the base model's NLL of the tokens in the band (nats).
    pub base_nll_min: f64,
    pub base_nll_max: f64,
    pub mean_base_nll: f64,
    /// Mean log p with the thought minus without (positive: the thought helped).
    pub mean_delta: f64,
    /// Fraction of the band's tokens the thought helped.
    pub helped: f64,
    pub mean_weight: f64,
}

/// The tokens split into `bands` groups of (nearly) equal size by how hard the base model finds
/// them, easiest first — the paper's analysis: do thoughts help most on hard tokens?
pub fn by_difficulty(deltas: &[TokenDelta], bands: usize) -> Vec<DifficultyBand> {
    let mut sorted: Vec<&TokenDelta> = deltas.iter().collect();
    sorted.sort_by(|a, b| b.logp_base.total_cmp(&a.logp_base)); // easiest (highest log p) first
    let bands = bands.clamp(1, sorted.len().max(1));
    (0..bands)
        .filter_map(|k| {
            let band = &sorted[k * sorted.len() / bands..(k + 1) * sorted.len() / bands];
            if band.is_empty() {
                return None;
            }
            let n = band.len() as f64;
            let mean = |f: &dyn Fn(&TokenDelta) -> f64| band.iter().map(|d| f(d)).sum::<f64>() / n;
            Some(DifficultyBand {
                tokens: band.len(),
                base_nll_min: -band[0].logp_base as f64,
                base_nll_max: -band[band.len() - 1].logp_base as f64,
                mean_base_nll: mean(&|d| -d.logp_base as f64),
                mean_delta: mean(&|d| d.delta() as f64),
                helped: mean(&|d| (d.delta() > 0.0) as u8 as f64),
                mean_weight: mean(&|d| d.mix_weight as f64),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(logp_base: f32, logp_thought: f32) -> TokenDelta {
        TokenDelta { index: 1, id: 0, logp_base, logp_thought, logp_post: 0.0, mix_weight: 0.5, thought_ids: vec![] }
    }

    #[test]
    fn bands_split_tokens_by_base_difficulty() {
        // Easy tokens untouched, hard ones helped.
        let deltas: Vec<TokenDelta> =
            (0..10).map(|i| delta(-(i as f32), -(i as f32) + if i >= 5 { 0.5 } else { 0.0 })).collect();
        let b = by_difficulty(&deltas, 2);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].tokens, b[1].tokens), (5, 5));
        assert_eq!((b[0].base_nll_min, b[0].base_nll_max), (0.0, 4.0));
        assert_eq!((b[1].base_nll_min, b[1].base_nll_max), (5.0, 9.0));
        assert!((b[0].mean_delta - 0.0).abs() < 1e-9 && (b[1].mean_delta - 0.5).abs() < 1e-6);
        assert_eq!((b[0].helped, b[1].helped), (0.0, 1.0));
        assert!((b[1].mean_base_nll - 7.0).abs() < 1e-9);
        // More bands than tokens: one per token; none: nothing.
        assert_eq!(by_difficulty(&deltas[..3], 5).len(), 3);
        assert!(by_difficulty(&[], 5).is_empty());
    }
}
