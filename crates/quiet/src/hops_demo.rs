//! The built-in demonstration where thinking must help (`starling quiet demo`): hidden multi-hop
//! lookups ([`starling_tasks::hops`]). A 2-layer model cannot answer `?kx=` for k ≥ 4 in one
//! pass; a thought that writes the chain can.
//!
//! Per seed:
//! 1. **Warm start** (disclosed): a model trained from scratch on a mix of explicit documents
//!    (chains written out) and compressed ones, on pretraining tables.
//! 2. **Continuations** from those weights on compressed documents of training tables, the same
//!    documents for every condition: a plain LM for the same steps, and again for the same
//!    training time; Quiet-STaR with sampled thoughts; the same loss with pause thoughts (the
//!    filler repeated) and with random letters as thoughts (no policy term: nothing was sampled).
//!    Thoughts are taken only at the `=` of each document's last query, the position whose next
//!    token is scored.
//! 3. **Evaluation** on held-out tables: answer accuracy (argmax) and NLL per hop count, for
//!    every condition, and for the Quiet-STaR model under interventions — its thoughts shuffled
//!    between documents, replaced by random letters, w forced to 0, cut to their first j tokens,
//!    or replaced by the true chain (a ceiling).

use std::fmt::Write as _;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use starling_model::weights::init_transformer_with_std;
use starling_model::{ModelConfig, Tokenizer, Transformer};
use starling_tasks::hops::{CHAIN_CLOSE, CHAIN_OPEN, FILLER, HopDocument, HopForm, HopSplit, HopTask};
use starling_thought::Kernel;
use starling_train::data::Example;
use starling_train::trainer::{TrainConfig, train};

use crate::config::ThoughtSource;
use crate::demo::{DemoObserver, Plain, Quiet};
use crate::probe::{NextToken, argmax, next_token_with, sample_at};
use crate::trainer::train_quiet;
use crate::{QuietModel, Result};

pub use crate::hops_settings::{HopsSettings, LESSON_FILE};
use crate::hops_settings::{encode_docs, train_config};

/// Correct answers and NLL per hop count (index k − 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerHop {
    pub correct: Vec<usize>,
    pub count: Vec<usize>,
    pub nll: Vec<f64>,
}

impl PerHop {
    fn new(max_hops: usize) -> Self {
        Self { correct: vec![0; max_hops], count: vec![0; max_hops], nll: vec![0.0; max_hops] }
    }

    /// One answer: the prediction `logp` over the vocabulary, renormalised over the letters
    /// `alphabet` (the possible answers, as the paper's metric renormalises over the answer
    /// alphabet: a model that would write `[` next is scored on the letter it prefers).
    fn add(&mut self, hops: usize, logp: &[f32], alphabet: &[u32], answer: u32) {
        let k = hops - 1;
        let scores: Vec<f32> = alphabet.iter().map(|&t| logp[t as usize]).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_z = max as f64 + scores.iter().map(|&v| ((v - max) as f64).exp()).sum::<f64>().ln();
        let at = alphabet.iter().position(|&t| t == answer).expect("answers are letters");
        self.count[k] += 1;
        self.correct[k] += usize::from(argmax(&scores) == at);
        self.nll[k] += log_z - scores[at] as f64;
    }

    /// Accuracy at hop count k (1-based).
    pub fn accuracy(&self, k: usize) -> f64 {
        self.correct[k - 1] as f64 / self.count[k - 1].max(1) as f64
    }

    /// Accuracy over hop counts `ks`.
    pub fn accuracy_over(&self, ks: std::ops::RangeInclusive<usize>) -> f64 {
        let (c, n) = ks.fold((0, 0), |(c, n), k| (c + self.correct[k - 1], n + self.count[k - 1]));
        c as f64 / n.max(1) as f64
    }

    pub fn mean_nll(&self, k: usize) -> f64 {
        self.nll[k - 1] / self.count[k - 1].max(1) as f64
    }
}

/// What was measured for one seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    /// (condition, per-hop results), in the report's order.
    pub rows: Vec<(String, PerHop)>,
    /// The Quiet-STaR model with its sampled thoughts cut to j tokens, j = 0..=n_thought.
    pub truncated: Vec<PerHop>,
    /// Steps of the plain continuation given the Quiet-STaR continuation's training time.
    pub same_compute_steps: usize,
    pub seconds: Vec<(String, f64)>,
    /// Held-out examples: the query, the thought, the answer predicted, the true answer.
    pub examples: Vec<String>,
    pub final_mix_weight: f64,
}

impl SeedResult {
    pub fn row(&self, name: &str) -> Option<&PerHop> {
        self.rows.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }
}

/// Condition names (rows of the report).
pub mod rows {
    pub const WARM_START: &str = "warm-start model (before continuing)";
    pub const PLAIN_STEPS: &str = "plain LM, same steps";
    pub const PLAIN_COMPUTE: &str = "plain LM, same training time";
    pub const PAUSE: &str = "pause thoughts (trained with `.` × n)";
    pub const RANDOM: &str = "random-letter thoughts (trained)";
    pub const QUIET: &str = "**Quiet-STaR**, sampled thoughts (T = 1)";
    pub const QUIET_GREEDY: &str = "Quiet-STaR, greedy thoughts";
    pub const QUIET_NO_POLICY: &str = "Quiet-STaR without the policy term (REINFORCE off), sampled";
    pub const QUIET_W0: &str = "Quiet-STaR, w forced to 0";
    pub const QUIET_SHUFFLED: &str = "Quiet-STaR, thoughts shuffled between documents";
    pub const QUIET_RANDOM: &str = "Quiet-STaR, random-letter thoughts";
    pub const QUIET_TRUE: &str = "Quiet-STaR, the true chain as thought (ceiling)";
    pub const WARM_POST: &str = "warm start + markers, post-thought state alone (before Quiet-STaR)";
    /// The controls Quiet-STaR must beat.
    pub const CONTROLS: [&str; 4] = [PLAIN_STEPS, PLAIN_COMPUTE, PAUSE, RANDOM];
}

/// The trained Quiet-STaR model of the last seed, for the page and `--out`.
pub struct HopsModel {
    pub model: QuietModel,
    pub tokenizer: Tokenizer,
    /// The warm start it continued from (without autodiff): where the page's "watch it learn"
    /// view starts Quiet-STaR again.
    pub warm: Transformer,
}

/// Runs the demo for every seed on `device` (training on its autodiff twin).
pub fn run_hops_demo(
    s: &HopsSettings,
    device: &Device,
    obs: &mut dyn DemoObserver,
) -> Result<(Vec<SeedResult>, HopsModel)> {
    s.validate()?;
    let tok = hops_tokenizer(&s.task)?;
    let mut results = Vec::new();
    let mut last = None;
    for &seed in &s.seeds {
        let (r, model, warm) = run_seed(s, seed, &tok, device, obs)?;
        results.push(r);
        last = Some((model, warm));
    }
    let (model, warm) = last.expect("at least one seed");
    Ok((results, HopsModel { model: model.valid(), tokenizer: tok, warm: warm.valid() }))
}

/// Characters, and each table pair as one token.
pub fn hops_tokenizer(task: &HopTask) -> Result<Tokenizer> {
    let pieces = task.pair_pieces();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    Ok(Tokenizer::char_level_with_pieces(&task.alphabet(), &pieces, &["<pad>"])?)
}

/// The letters' token ids.
fn letter_ids(s: &HopsSettings, tok: &Tokenizer) -> Vec<u32> {
    s.task.letters().iter().map(|c| tok.token_to_id(&c.to_string()).expect("letters are in the alphabet")).collect()
}

/// One seed's warm-started model, and what every continuation from it trains on.
struct Start<'a> {
    s: &'a HopsSettings,
    seed: u64,
    tok: &'a Tokenizer,
    /// The warm-start model, on the autodiff device.
    warm: Transformer,
    /// Compressed documents of training tables, the same for every condition.
    train_ids: Vec<Vec<u32>>,
    cont: TrainConfig,
    seconds: f64,
}

impl<'a> Start<'a> {
    /// The warm start: documents of pretraining tables whose queries are written out or not,
    /// each at random (per query, not per document: a document's earlier queries then do not
    /// tell whether `[` after `=` opens a chain, which is what the thought's start marker reuses).
    fn new(
        s: &'a HopsSettings,
        seed: u64,
        tok: &'a Tokenizer,
        device: &Device,
        obs: &mut dyn DemoObserver,
    ) -> Result<Self> {
        let len = s.doc_len();
        let ad = device.clone().autodiff();
        let model_config = ModelConfig::builder(tok.vocab_size())
            .layers(s.layers)
            .hidden(s.hidden)
            .heads(4, 2)
            .context((len + s.quiet.thought_slots() + s.quiet.n_talk).next_power_of_two())
            .special_tokens(tok)
            .build()?;
        let pre_docs = s.task.documents(HopSplit::Pretrain, s.pretrain_steps * s.batch_size, s.queries, seed);
        let mut form_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x666f_726d);
        let mut form = || if form_rng.random_bool(s.explicit_share) { HopForm::Explicit } else { HopForm::Compressed };
        let forms: Vec<Vec<HopForm>> = (0..pre_docs.len()).map(|_| (0..s.queries).map(|_| form()).collect()).collect();
        // The table's own tokens are random draws, noise for the gradient: the warm start learns
        // from the queries (lookups, chains, answers) only.
        let table_len = s.task.table_len();
        let pre: Vec<Example> = encode_docs(s, tok, &pre_docs, |i, q| forms[i][q])?
            .into_iter()
            .map(|ids| Example { train: (0..ids.len()).map(|i| i >= table_len).collect(), ids })
            .collect();
        obs.phase("warm start", s.pretrain_steps);
        let t0 = Instant::now();
        let fresh = init_transformer_with_std(&model_config, seed, s.init_std, &ad)?;
        let (warm, _) =
            train(fresh, &pre, None, &train_config(s, s.pretrain_steps, s.pretrain_lr, seed), None, &mut Plain(obs))?;
        let seconds = t0.elapsed().as_secs_f64();
        let train_ids = s.continuation_sequences(tok, seed)?;
        let cont = train_config(s, s.steps, s.lr, seed.wrapping_add(1));
        Ok(Self { s, seed, tok, warm, train_ids, cont, seconds })
    }

    /// A Quiet-STaR continuation with thoughts from `source` at the last query's `=`; `policy`
    /// false drops the policy term (the ablation; always dropped when nothing is sampled).
    fn quiet(&self, source: ThoughtSource, policy: bool, obs: &mut dyn DemoObserver) -> Result<QuietModel> {
        let s = self.s;
        let cfg = s.continuation(self.seed, source, policy);
        let qm = s.thinking_model(self.warm.clone(), self.tok, self.seed, &cfg)?;
        Ok(train_quiet(qm, &self.train_ids, &cfg, s.kernel, None, None, &mut Quiet(obs))?.0)
    }
}

/// The model the page shows: the warm start and the Quiet-STaR continuation of the first seed,
/// the controls skipped, exactly as [`run_hops_demo`] trains them. Also returns its accuracy on
/// the held-out documents with greedy thoughts (as the page thinks).
pub fn train_hops_model(s: &HopsSettings, device: &Device, obs: &mut dyn DemoObserver) -> Result<(HopsModel, PerHop)> {
    s.validate()?;
    let tok = hops_tokenizer(&s.task)?;
    let seed = s.seeds[0];
    let start = Start::new(s, seed, &tok, device, obs)?;
    obs.phase("quiet-star", s.steps);
    let quiet = start.quiet(ThoughtSource::Sampled, true, obs)?.valid();
    obs.phase("evaluation", 1);
    let eval_docs = s.task.documents(HopSplit::HeldOut, s.eval_docs, s.queries, seed);
    let eval = Eval::new(s, &tok, &eval_docs)?;
    let greedy = eval.with(&quiet, &eval.sample(&quiet, 0.0), Pick::Mixed);
    let warm = start.warm.valid();
    drop(start);
    Ok((HopsModel { model: quiet, tokenizer: tok, warm }, greedy))
}

fn run_seed(
    s: &HopsSettings,
    seed: u64,
    tok: &Tokenizer,
    device: &Device,
    obs: &mut dyn DemoObserver,
) -> Result<(SeedResult, QuietModel, Transformer)> {
    // 1. Warm start; 2. continuations on compressed documents of training tables.
    let start = Start::new(s, seed, tok, device, obs)?;
    let mut seconds = vec![("warm start".to_string(), start.seconds)];
    let (warm, train_ids, cont) = (&start.warm, &start.train_ids, &start.cont);

    obs.phase("plain LM", s.steps);
    let t0 = Instant::now();
    let examples: Vec<Example> = train_ids.iter().cloned().map(Example::full).collect();
    let (plain, _) = train(warm.clone(), &examples, None, cont, None, &mut Plain(obs))?;
    let plain_secs = t0.elapsed().as_secs_f64();
    seconds.push(("plain LM".into(), plain_secs));

    obs.phase("quiet-star", s.steps);
    let t0 = Instant::now();
    let quiet = start.quiet(ThoughtSource::Sampled, true, obs)?;
    let quiet_secs = t0.elapsed().as_secs_f64();
    seconds.push(("Quiet-STaR".into(), quiet_secs));

    obs.phase("quiet-star without policy term", s.steps);
    let t0 = Instant::now();
    let no_policy = start.quiet(ThoughtSource::Sampled, false, obs)?;
    seconds.push(("Quiet-STaR without policy term".into(), t0.elapsed().as_secs_f64()));

    let pause_id = tok.token_to_id(&FILLER.to_string()).expect("the filler is in the alphabet");
    obs.phase("pause thoughts", s.steps);
    let t0 = Instant::now();
    let pause = start.quiet(ThoughtSource::Pause { token: pause_id }, false, obs)?;
    seconds.push(("pause thoughts".into(), t0.elapsed().as_secs_f64()));

    let letters = letter_ids(s, tok);
    obs.phase("random thoughts", s.steps);
    let t0 = Instant::now();
    let random = start.quiet(ThoughtSource::Random { tokens: letters.clone() }, false, obs)?;
    seconds.push(("random thoughts".into(), t0.elapsed().as_secs_f64()));

    // The plain LM again, for as long as Quiet-STaR trained (more documents, same stream).
    let same_compute_steps = s
        .same_compute_steps
        .unwrap_or_else(|| ((s.steps as f64 * quiet_secs / plain_secs.max(1e-9)).round() as usize).max(s.steps));
    let more_docs = s.task.documents(HopSplit::Train, same_compute_steps * s.batch_size, s.queries, seed);
    let more: Vec<Example> =
        encode_docs(s, tok, &more_docs, |_, _| HopForm::Compressed)?.into_iter().map(Example::full).collect();
    obs.phase("plain LM, same time", same_compute_steps);
    let t0 = Instant::now();
    let compute_cfg = TrainConfig { steps: same_compute_steps, ..cont.clone() };
    let (plain_compute, _) = train(warm.clone(), &more, None, &compute_cfg, None, &mut Plain(obs))?;
    seconds.push(("plain LM, same time".into(), t0.elapsed().as_secs_f64()));

    // 3. Evaluation on held-out tables.
    obs.phase("evaluation", 1);
    let eval_docs = s.task.documents(HopSplit::HeldOut, s.eval_docs, s.queries, seed);
    let eval = Eval::new(s, tok, &eval_docs)?;
    let quiet = quiet.valid();
    let warm_quiet = QuietModel::with_markers(
        warm.valid(),
        tok,
        s.quiet.clone(),
        seed,
        &CHAIN_OPEN.to_string(),
        &CHAIN_CLOSE.to_string(),
    )?;
    let mut rows = vec![
        (rows::WARM_START.to_string(), eval.plain(&warm.valid())),
        (rows::PLAIN_STEPS.to_string(), eval.plain(&plain.valid())),
        (rows::PLAIN_COMPUTE.to_string(), eval.plain(&plain_compute.valid())),
    ];
    let pause_thoughts = vec![vec![pause_id; s.quiet.n_thought]; eval.len()];
    rows.push((rows::PAUSE.into(), eval.with(&pause.valid(), &pause_thoughts, Pick::Mixed)));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7261_6e64);
    let random_thoughts: Vec<Vec<u32>> = (0..eval.len())
        .map(|_| (0..s.quiet.n_thought).map(|_| letters[rng.random_range(0..letters.len())]).collect())
        .collect();
    rows.push((rows::RANDOM.into(), eval.with(&random.valid(), &random_thoughts, Pick::Mixed)));

    let sampled = eval.sample(&quiet, 1.0);
    // One pass with the sampled thoughts serves the mixed row, the w = 0 row and the mean weight.
    let quiet_preds = eval.predictions(&quiet, &sampled);
    rows.push((rows::QUIET.into(), eval.score(&quiet_preds, Pick::Mixed)));
    rows.push((rows::QUIET_GREEDY.into(), eval.with(&quiet, &eval.sample(&quiet, 0.0), Pick::Mixed)));
    let no_policy = no_policy.valid();
    rows.push((rows::QUIET_NO_POLICY.into(), eval.with(&no_policy, &eval.sample(&no_policy, 1.0), Pick::Mixed)));
    rows.push((rows::QUIET_W0.into(), eval.score(&quiet_preds, Pick::Base)));
    let shuffled: Vec<Vec<u32>> = (0..eval.len()).map(|i| sampled[(i + 1) % eval.len()].clone()).collect();
    rows.push((rows::QUIET_SHUFFLED.into(), eval.with(&quiet, &shuffled, Pick::Mixed)));
    rows.push((rows::QUIET_RANDOM.into(), eval.with(&quiet, &random_thoughts, Pick::Mixed)));
    rows.push((rows::QUIET_TRUE.into(), eval.with(&quiet, &eval.true_chains(tok)?, Pick::Mixed)));
    let warm_sampled = eval.sample(&warm_quiet, 1.0);
    rows.push((rows::WARM_POST.into(), eval.with(&warm_quiet, &warm_sampled, Pick::Post)));
    let truncated = (0..=s.quiet.n_thought)
        .map(|j| {
            let cut: Vec<Vec<u32>> = sampled.iter().map(|t| t[..j].to_vec()).collect();
            eval.with(&quiet, &cut, Pick::Mixed)
        })
        .collect();
    let examples = eval.examples(&quiet, &sampled, tok, 6)?;
    let final_mix_weight = quiet_preds.iter().map(|p| p.weight as f64).sum::<f64>() / quiet_preds.len().max(1) as f64;
    let result = SeedResult { seed, rows, truncated, same_compute_steps, seconds, examples, final_mix_weight };
    Ok((result, quiet, start.warm))
}

/// Which prediction of a thoughtful model is scored.
#[derive(Clone, Copy)]
enum Pick {
    Mixed,
    Base,
    Post,
}

/// The held-out documents and what scoring them needs.
struct Eval<'a> {
    s: &'a HopsSettings,
    docs: &'a [HopDocument],
    ids: Vec<Vec<u32>>,
    answers: Vec<u32>,
    /// The letters' token ids: the possible answers.
    letters: Vec<u32>,
    kernel: Kernel,
}

/// Documents scored per forward pass.
const EVAL_BATCH: usize = 256;

impl<'a> Eval<'a> {
    fn new(s: &'a HopsSettings, tok: &Tokenizer, docs: &'a [HopDocument]) -> Result<Self> {
        let ids = encode_docs(s, tok, docs, |_, _| HopForm::Compressed)?;
        let answers = ids.iter().map(|d| d[s.answer_position() + 1]).collect();
        let letters = letter_ids(s, tok);
        Ok(Self { s, docs, ids, answers, letters, kernel: s.kernel })
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn hops(&self, i: usize) -> usize {
        self.docs[i].queries.last().expect("documents have queries").hops
    }

    /// A plain model's answer predictions.
    fn plain(&self, lm: &Transformer) -> PerHop {
        let pos = self.s.answer_position();
        let mut out = PerHop::new(self.s.task.max_hops);
        for (c, chunk) in self.ids.chunks(EVAL_BATCH).enumerate() {
            let (b, l) = (chunk.len(), chunk[0].len());
            let flat: Vec<i64> = chunk.iter().flatten().map(|&t| t as i64).collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, l]), &lm.device());
            let v = lm.config().vocab_size;
            let logp: Vec<f32> = log_softmax(lm.forward(tokens).narrow(1, pos, 1).reshape([b, v]), 1)
                .into_data()
                .try_into_vec_as()
                .expect("f32");
            for r in 0..b {
                let i = c * EVAL_BATCH + r;
                out.add(self.hops(i), &logp[r * v..(r + 1) * v], &self.letters, self.answers[i]);
            }
        }
        out
    }

    /// Sampled thoughts at every document's answer position.
    fn sample(&self, model: &QuietModel, temperature: f64) -> Vec<Vec<u32>> {
        let pos = self.s.answer_position();
        self.ids.chunks(EVAL_BATCH).flat_map(|chunk| sample_at(model, chunk, pos, temperature, self.kernel)).collect()
    }

    fn predictions(&self, model: &QuietModel, thoughts: &[Vec<u32>]) -> Vec<NextToken> {
        let pos = self.s.answer_position();
        self.ids
            .chunks(EVAL_BATCH)
            .zip(thoughts.chunks(EVAL_BATCH))
            .flat_map(|(ids, th)| next_token_with(model, ids, pos, th, self.kernel))
            .collect()
    }

    /// A thoughtful model's answer predictions with the given thoughts.
    fn with(&self, model: &QuietModel, thoughts: &[Vec<u32>], pick: Pick) -> PerHop {
        self.score(&self.predictions(model, thoughts), pick)
    }

    /// Scores one prediction of each held-out answer.
    fn score(&self, predictions: &[NextToken], pick: Pick) -> PerHop {
        let mut out = PerHop::new(self.s.task.max_hops);
        for (i, p) in predictions.iter().enumerate() {
            let logp = match pick {
                Pick::Mixed => &p.mixed,
                Pick::Base => &p.base,
                Pick::Post => &p.post,
            };
            out.add(self.hops(i), logp, &self.letters, self.answers[i]);
        }
        out
    }

    /// The true chain of every document's last query, as its bracket contents.
    fn true_chains(&self, tok: &Tokenizer) -> Result<Vec<Vec<u32>>> {
        self.docs
            .iter()
            .map(|d| {
                let q = d.queries.last().expect("documents have queries");
                let text = self.s.task.chain_text(&d.table, q);
                let inner = &text[1..text.len() - 1];
                let mut ids = tok.encode(inner, false)?;
                ids.resize(self.s.quiet.n_thought, tok.token_to_id(&FILLER.to_string()).expect("filler"));
                Ok(ids)
            })
            .collect()
    }

    /// A few held-out answers of hop count ≥ 4 in words: query, thought, prediction, truth.
    fn examples(&self, model: &QuietModel, thoughts: &[Vec<u32>], tok: &Tokenizer, n: usize) -> Result<Vec<String>> {
        let picked: Vec<usize> = (0..self.len()).filter(|&i| self.hops(i) >= 4).take(n).collect();
        let ids: Vec<Vec<u32>> = picked.iter().map(|&i| self.ids[i].clone()).collect();
        let th: Vec<Vec<u32>> = picked.iter().map(|&i| thoughts[i].clone()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let preds = next_token_with(model, &ids, self.s.answer_position(), &th, self.kernel);
        picked
            .iter()
            .zip(preds)
            .map(|(&i, p)| {
                let d = &self.docs[i];
                let q = d.queries.last().expect("queries");
                let query = s_query(self.s, d);
                let chain = self.s.task.chain_text(&d.table, q);
                Ok(format!(
                    "`{query}` thought `[{}]` → predicts `{}` (true chain `{chain}`, answer `{}`; w = {:.2})",
                    tok.decode(&p.thought, false)?,
                    tok.decode(&[argmax(&p.mixed) as u32], false)?,
                    tok.decode(&[self.answers[i]], false)?,
                    p.weight
                ))
            })
            .collect()
    }
}

/// The last query's head as written, e.g. `?4a=`.
fn s_query(s: &HopsSettings, d: &HopDocument) -> String {
    let q = d.queries.last().expect("queries");
    let text = s.task.query_text(q, &d.table, HopForm::Compressed);
    text[..4].to_string()
}

/// Mean and range of a value over seeds.
fn spread(values: &[f64]) -> String {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if values.len() > 1 {
        format!("{:.1} ({:.1}–{:.1})", 100.0 * mean, 100.0 * lo, 100.0 * hi)
    } else {
        format!("{:.1}", 100.0 * mean)
    }
}

/// Hop counts the target is about.
pub const HARD_FROM: usize = 4;

/// Per seed: Quiet-STaR's accuracy at k ≥ 4 minus the best control's.
pub fn margins(results: &[SeedResult]) -> Vec<f64> {
    results
        .iter()
        .map(|r| {
            let hard = |name: &str| r.row(name).map_or(0.0, |p| p.accuracy_over(HARD_FROM..=p.count.len()));
            let best = rows::CONTROLS.iter().map(|c| hard(c)).fold(f64::NEG_INFINITY, f64::max);
            hard(rows::QUIET) - best
        })
        .collect()
}

/// The report: settings, the per-hop accuracy table over seeds, interventions, thought length,
/// the verdict and examples, in Markdown.
pub fn report(s: &HopsSettings, results: &[SeedResult], device_name: &str) -> String {
    let mut r = String::new();
    let k_max = s.task.max_hops;
    let q = &s.quiet;
    let _ = writeln!(r, "# Quiet-STaR demo: hidden multi-hop lookups\n");
    let _ = writeln!(
        r,
        "Tables of {} letters, hop counts 1–{k_max}, documents of {} tokens ({} queries). Model: {} layers × d = {} (initial weights \
         N(0, {}²)). Warm start: {} steps on documents whose queries are each written out (chain between brackets) with probability {:.0}%, the others compressed, lr {}. Then {} \
         steps × batch {} on compressed documents, lr {}; thought {} tokens at the last query's `=`, talk {}, {} passes, \
         policy weight {}. Held-out: {} documents of unseen tables, one answer each. Seeds: {:?}. Device: {device_name}.\n",
        s.task.symbols,
        s.doc_len(),
        s.queries,
        s.layers,
        s.hidden,
        s.init_std,
        s.pretrain_steps,
        100.0 * s.explicit_share,
        s.pretrain_lr,
        s.steps,
        s.batch_size,
        s.lr,
        q.n_thought,
        q.n_talk,
        q.n_passes,
        q.policy_loss_weight,
        s.eval_docs,
        s.seeds,
    );
    let _ = writeln!(
        r,
        "Answer accuracy (%) by hop count k — the most likely letter at the last query's `=` — mean over seeds \
         (min–max); chance is {:.1}%.\n",
        100.0 / s.task.symbols as f64
    );
    let mut head = String::from("| condition |");
    let mut rule = String::from("|---|");
    for k in 1..=k_max {
        let _ = write!(head, " k={k} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(r, "{head} k≥{HARD_FROM} |\n{rule}---:|");
    let names: Vec<String> = results[0].rows.iter().map(|(n, _)| n.clone()).collect();
    for name in &names {
        let per: Vec<&PerHop> = results.iter().filter_map(|x| x.row(name)).collect();
        let mut line = format!("| {name} |");
        for k in 1..=k_max {
            let _ = write!(line, " {} |", spread(&per.iter().map(|p| p.accuracy(k)).collect::<Vec<_>>()));
        }
        let hard: Vec<f64> = per.iter().map(|p| p.accuracy_over(HARD_FROM..=k_max)).collect();
        let _ = writeln!(r, "{line} {} |", spread(&hard));
    }
    let _ = writeln!(r, "\nNLL of the answer (nats, renormalised over the letters) by hop count, mean over seeds:\n");
    let _ = writeln!(r, "{head}\n{rule}");
    for name in &names {
        let per: Vec<&PerHop> = results.iter().filter_map(|x| x.row(name)).collect();
        let mut line = format!("| {name} |");
        for k in 1..=k_max {
            let mean = per.iter().map(|p| p.mean_nll(k)).sum::<f64>() / per.len().max(1) as f64;
            let _ = write!(line, " {mean:.3} |");
        }
        let _ = writeln!(r, "{line}");
    }
    let _ = writeln!(r, "\nQuiet-STaR with its sampled thoughts cut to their first j tokens: accuracy (%) by k.\n");
    let _ = writeln!(r, "| j |{} k≥{HARD_FROM} |", (1..=k_max).map(|k| format!(" k={k} |")).collect::<String>());
    let _ = writeln!(r, "|---:|{}---:|", "---:|".repeat(k_max));
    for j in 0..=q.n_thought {
        let per: Vec<&PerHop> = results.iter().map(|x| &x.truncated[j]).collect();
        let mut line = format!("| {j} |");
        for k in 1..=k_max {
            let _ = write!(line, " {} |", spread(&per.iter().map(|p| p.accuracy(k)).collect::<Vec<_>>()));
        }
        let hard: Vec<f64> = per.iter().map(|p| p.accuracy_over(HARD_FROM..=k_max)).collect();
        let _ = writeln!(r, "{line} {} |", spread(&hard));
    }
    let m = margins(results);
    let met = m.iter().all(|&x| x >= 0.30);
    let _ = writeln!(
        r,
        "\nAt k ≥ {HARD_FROM}, Quiet-STaR minus the best control, per seed: {}. Target (≥ 30 points at every seed): **{}**.",
        m.iter().map(|x| format!("{:+.1}", 100.0 * x)).collect::<Vec<_>>().join(", "),
        if met { "met" } else { "not met" }
    );
    for x in results {
        let secs: Vec<String> = x.seconds.iter().map(|(n, t)| format!("{n} {t:.0} s")).collect();
        let _ = writeln!(
            r,
            "\nSeed {}: mean mixing weight {:.2}; plain same-time steps {}; time: {}.",
            x.seed,
            x.final_mix_weight,
            x.same_compute_steps,
            secs.join(", ")
        );
        for e in &x.examples {
            let _ = writeln!(r, "- {e}");
        }
    }
    r
}

/// An SVG chart: accuracy against hop count, one line per condition (mean over seeds).
pub fn chart_svg(s: &HopsSettings, results: &[SeedResult]) -> String {
    let k_max = s.task.max_hops;
    let series = results[0]
        .rows
        .iter()
        .map(|(name, _)| {
            let mean = (1..=k_max)
                .map(|k| {
                    results.iter().filter_map(|r| r.row(name)).map(|p| p.accuracy(k)).sum::<f64>()
                        / results.len() as f64
                })
                .collect();
            Series { name: name.replace("**", "").replace('`', ""), values: mean, bold: name.starts_with("**") }
        })
        .collect();
    let x: Vec<String> = (1..=k_max).map(|k| format!("k={k}")).collect();
    line_chart("answer accuracy by hop count (mean over seeds)", &x, series)
}

/// An SVG chart: the Quiet-STaR model's accuracy against the length its thoughts are cut to,
/// one line per hop count (mean over seeds): a chain of k hops needs k thought tokens.
pub fn thought_length_svg(s: &HopsSettings, results: &[SeedResult]) -> String {
    let n = s.quiet.n_thought;
    let series = (1..=s.task.max_hops)
        .map(|k| Series {
            name: format!("k = {k}"),
            values: (0..=n)
                .map(|j| results.iter().map(|r| r.truncated[j].accuracy(k)).sum::<f64>() / results.len() as f64)
                .collect(),
            bold: k >= HARD_FROM,
        })
        .collect();
    let x: Vec<String> = (0..=n).map(|j| format!("j={j}")).collect();
    line_chart("Quiet-STaR accuracy with thoughts cut to j tokens", &x, series)
}

struct Series {
    name: String,
    values: Vec<f64>,
    bold: bool,
}

/// Lines of accuracies (0..=1) over labelled points, with a legend on the right.
fn line_chart(title: &str, x_labels: &[String], series: Vec<Series>) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 420.0, 50.0, 40.0, 34.0, 360.0);
    let step = (w - left - right) / (x_labels.len().max(2) - 1) as f64;
    let x = |i: usize| left + i as f64 * step;
    let y = |acc: f64| top + (1.0 - acc) * (h - top - bottom);
    let colors = [
        "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4", "#b2df8a",
        "#fb9a99", "#cab2d6", "#fdbf6f",
    ];
    let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;");
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" \
         font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"18\" font-size=\"13\">{}</text>\n",
        esc(title)
    );
    for tick in 0..=4 {
        let acc = tick as f64 / 4.0;
        let (x2, yy, tx, ty, pct) = (w - right, y(acc), left - 4.0, y(acc) + 4.0, 100.0 * acc);
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{pct:.0}%</text>"
        );
    }
    for (i, label) in x_labels.iter().enumerate() {
        let (lx, ly) = (x(i), h - bottom + 16.0);
        let _ = writeln!(svg, "<text x=\"{lx:.1}\" y=\"{ly}\" text-anchor=\"middle\">{}</text>", esc(label));
    }
    for (c, line) in series.iter().enumerate() {
        let color = colors[c % colors.len()];
        let points: Vec<String> =
            line.values.iter().enumerate().map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v))).collect();
        let width = if line.bold { 3.0 } else { 1.5 };
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" points=\"{}\"/>",
            points.join(" ")
        );
        let (lx, ly) = (w - right + 10.0, top + 14.0 * c as f64 + 10.0);
        let _ = writeln!(svg, "<text x=\"{lx}\" y=\"{ly}\" fill=\"{color}\">{}</text>", esc(&line.name));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuietConfig;

    #[test]
    fn per_hop_counts_accuracy_and_nll() {
        let mut p = PerHop::new(3);
        let (ln8, ln2, ln1, ln9) = (0.8f32.ln(), 0.2f32.ln(), 0.1f32.ln(), 0.9f32.ln());
        p.add(1, &[ln8, ln2], &[0, 1], 0);
        p.add(1, &[ln8, ln2], &[0, 1], 1);
        p.add(3, &[ln1, ln9], &[0, 1], 1);
        // Renormalised over the answer alphabet: token 2 (not a letter) is left out.
        let mut q = PerHop::new(1);
        q.add(1, &[(0.25f32).ln(), (0.25f32).ln(), (0.5f32).ln()], &[0, 1], 1);
        assert_eq!(q.accuracy(1), 0.0, "a tie goes to the first letter");
        assert!((q.mean_nll(1) - 2f64.ln()).abs() < 1e-6);
        assert_eq!(p.accuracy(1), 0.5);
        assert_eq!(p.accuracy(2), 0.0);
        assert_eq!(p.accuracy(3), 1.0);
        assert!((p.mean_nll(1) - (-(0.8f64.ln()) - 0.2f64.ln()) / 2.0).abs() < 1e-5);
        assert!((p.accuracy_over(2..=3) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_answer_position_is_the_last_equals_sign() {
        let s = HopsSettings {
            task: HopTask::default(),
            queries: 3,
            explicit_share: 0.5,
            pretrain_steps: 1,
            steps: 1,
            batch_size: 1,
            pretrain_lr: 1e-3,
            lr: 1e-3,
            layers: 1,
            hidden: 16,
            init_std: 0.1,
            seeds: vec![0],
            eval_docs: 1,
            same_compute_steps: Some(1),
            kernel: Kernel::Split,
            quiet: QuietConfig { n_thought: 6, ..QuietConfig::default() },
        };
        let tok = hops_tokenizer(&s.task).unwrap();
        let doc = s.task.documents(HopSplit::HeldOut, 1, s.queries, 0).remove(0);
        let ids = tok.encode(&s.task.text(&doc, HopForm::Compressed), false).unwrap();
        assert_eq!(ids.len(), s.doc_len(), "a table pair is one token");
        assert_eq!(tok.decode(&ids[..s.task.table_len()], false).unwrap().len(), 2 * 16 + 1);
        assert_eq!(tok.decode(&ids[s.answer_position()..=s.answer_position()], false).unwrap(), "=");
        let answer = starling_tasks::hops::letter(doc.queries[2].answer).to_string();
        assert_eq!(tok.decode(&ids[s.answer_position() + 1..s.answer_position() + 2], false).unwrap(), answer);
    }
}
