//! The Learn view: the built-in multi-hop model's warm start learns to think again, in the page.
//! The same continuation as `starling quiet demo` (its settings ship beside the warm start as
//! `lesson.json`), one optimizer step per call (`starling_quiet::trainer::QuietTrainer`, reads
//! awaited), and a probe on held-out tables between steps: questions at every hop count,
//! answered after a thought sampled as in training, with how much that thought counted and
//! helped.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::TensorData;
use serde::{Deserialize, Serialize};
use starling_model::Tokenizer;
use starling_model::checkpoint::memory::{base_name, open_from_memory};
use starling_model::generate::GenerateConfig;
use starling_model::sampling::SamplingConfig;
use starling_model::weights::load_transformer;
use starling_quiet::QuietModel;
use starling_quiet::config::ThoughtSource;
use starling_quiet::generate::ThoughtfulDecoder;
use starling_quiet::hops_settings::{HopsSettings, LESSON_FILE};
use starling_quiet::stepper::QuietTrainer;
use starling_thought::Kernel;
use wasm_bindgen::prelude::*;

use crate::backend::{Backend, pick_backend};
use crate::{js_err, named_files, read_all, to_js};

/// Held-out tables asked per hop count in each probe.
const PROBE_TABLES: u64 = 4;
/// The probe's thoughts are sampled as in training (temperature 1), from the same seed at every
/// probe: what changes between probes is the model.
const PROBE_SEED: u64 = 7;

/// The page's choices (each optional: the demo's own settings otherwise).
#[derive(Deserialize, Default)]
struct LessonOptions {
    steps: Option<usize>,
    batch_size: Option<usize>,
    /// The REINFORCE term (default on); off is the demo's "without the policy term" ablation.
    policy: Option<bool>,
}

/// Quiet-STaR running in the page from the warm start.
#[wasm_bindgen]
pub struct Lesson {
    run: Rc<RefCell<Run>>,
    backend: Backend,
    steps: usize,
}

struct Run {
    /// `None` only while a step holds it.
    model: Option<QuietModel>,
    trainer: QuietTrainer<'static>,
    settings: HopsSettings,
    tokenizer: Tokenizer,
    /// The probe's questions: hop count, prompt ids, the answer's text.
    probe: Vec<(usize, Vec<u32>, String)>,
}

/// One step's numbers for the page.
#[derive(Serialize)]
struct StepNumbers {
    step: usize,
    steps: usize,
    loss: f64,
    /// The answer's NLL with the thought (mixed prediction) and without.
    talk_nll: f64,
    talk_nll_base: f64,
    mix_weight: f64,
    mean_reward: f64,
    seconds: f64,
}

/// A probe: per hop count, answers right and the mean weight and gain of the thought.
#[derive(Serialize)]
struct Probe {
    step: usize,
    by_hops: Vec<ProbeRow>,
    /// One question's thought at each hop count (the first table), to show.
    thoughts: Vec<ProbeThought>,
}

#[derive(Serialize)]
struct ProbeRow {
    hops: usize,
    right: usize,
    total: usize,
    weight: f32,
    gain: f32,
}

#[derive(Serialize)]
struct ProbeThought {
    hops: usize,
    thought: String,
    answer: String,
    gold: String,
}

#[wasm_bindgen]
impl Lesson {
    /// Loads the warm start (config.json, model.safetensors, tokenizer.json and lesson.json) and
    /// prepares the continuation; `options` is JSON `{steps?, batch_size?, policy?}`.
    pub async fn load(
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        prefer_gpu: bool,
        options: String,
    ) -> Result<Lesson, JsError> {
        let options: LessonOptions =
            serde_json::from_str(&options).map_err(|e| js_err(format!("lesson options: {e}")))?;
        let (lessons, files): (Vec<_>, Vec<_>) =
            named_files(names, files)?.into_iter().partition(|(name, _)| base_name(name) == LESSON_FILE);
        let Some((_, lesson)) = lessons.first() else {
            return Err(js_err(format!(
                "no {LESSON_FILE}: the Learn view starts from the warm start of `starling quiet demo --model-only` \
                 (its warm/ folder)"
            )));
        };
        let mut settings: HopsSettings =
            serde_json::from_slice(lesson).map_err(|e| js_err(format!("{LESSON_FILE}: {e}")))?;
        settings.steps = options.steps.unwrap_or(settings.steps).clamp(1, 10_000);
        settings.batch_size = options.batch_size.unwrap_or(settings.batch_size).clamp(1, 256);
        settings.kernel = Kernel::Auto;
        settings.validate().map_err(js_err)?;
        let checkpoint = open_from_memory(files).map_err(js_err)?;
        let backend = pick_backend(prefer_gpu).await;
        backend.check_weights_fit(checkpoint.weights.as_ref()).map_err(js_err)?;
        let device = backend.device.clone().autodiff();
        let warm = load_transformer(&checkpoint.config, checkpoint.weights.as_ref(), &device).map_err(js_err)?.0;
        backend.check_trainable(warm.num_params()).map_err(js_err)?;
        let tokenizer = checkpoint.tokenizer.clone();
        let seed = *settings.seeds.first().ok_or_else(|| js_err(format!("{LESSON_FILE} names no seed")))?;
        let cfg = settings.continuation(seed, ThoughtSource::Sampled, options.policy.unwrap_or(true));
        let mut model = settings.thinking_model(warm, &tokenizer, seed, &cfg).map_err(js_err)?;
        let seqs = settings.continuation_sequences(&tokenizer, seed).map_err(js_err)?;
        let trainer =
            QuietTrainer::new(&mut model, Cow::Owned(seqs), Cow::Owned(cfg), settings.kernel, None).map_err(js_err)?;
        let probe = probe_questions(&settings, &tokenizer)?;
        let steps = settings.steps;
        let run = Run { model: Some(model), trainer, settings, tokenizer, probe };
        Ok(Lesson { run: Rc::new(RefCell::new(run)), backend, steps })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.name.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn webgpu(&self) -> bool {
        self.backend.webgpu
    }

    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Destroys the WebGPU device under the lesson, as a lost GPU would mid-training (tests use
    /// it to check that the page explains the loss and keeps working). False on the CPU.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> bool {
        self.backend.destroy_device()
    }

    /// The continuation's settings in a line.
    #[wasm_bindgen(getter)]
    pub fn description(&self) -> String {
        let run = self.run.borrow();
        let (s, q) = (&run.settings, &run.trainer.config().quiet);
        let reward = if q.policy_loss_weight > 0.0 { "rewarded" } else { "not rewarded (no policy term)" };
        format!(
            "{} steps of {} documents, lr {}, thoughts of {} tokens at the asked `=`, {} sampled per document, {reward}",
            s.steps, s.batch_size, s.lr, q.n_thought, q.n_passes
        )
    }

    /// Runs one optimizer step; resolves to `{step, steps, loss, talk_nll, talk_nll_base,
    /// mix_weight, mean_reward, seconds}`, or `null` once every step has run.
    #[expect(
        clippy::await_holding_refcell_ref,
        reason = "the borrow held across the step is what refuses a second step started before it ends"
    )]
    pub fn step(&self) -> js_sys::Promise {
        let run = self.run.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut run =
                run.try_borrow_mut().map_err(|_| JsValue::from(js_err("a step is already running; await it first")))?;
            if run.trainer.finished() {
                return Ok(JsValue::NULL);
            }
            let model = run.model.take().ok_or_else(|| JsValue::from(js_err("the model was lost in a failed step")))?;
            let pending = run.trainer.backward_with(&model, &[]);
            let read: [TensorData; 2] = read_all(pending.readback()).await?;
            let (model, m) = run.trainer.apply(model, pending, read.into()).map_err(|e| JsValue::from(js_err(e)))?;
            run.model = Some(model);
            let s = &m.stats;
            let numbers = StepNumbers {
                step: m.step,
                steps: run.settings.steps,
                loss: s.loss,
                talk_nll: s.talk_nll,
                talk_nll_base: s.talk_nll_base,
                mix_weight: s.mix_weight,
                mean_reward: s.mean_reward,
                seconds: m.step_seconds,
            };
            to_js(&numbers).map_err(JsValue::from)
        })
    }

    /// Asks the probe's held-out questions (thoughts sampled at temperature 1); resolves to
    /// `{step, by_hops: [{hops, right, total, weight, gain}], thoughts: [{hops, thought, answer, gold}]}`.
    #[expect(clippy::await_holding_refcell_ref, reason = "as in step: one call at a time")]
    pub fn probe(&self) -> js_sys::Promise {
        let run = self.run.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let run =
                run.try_borrow_mut().map_err(|_| JsValue::from(js_err("a step is already running; await it first")))?;
            let probe = probe(&run).await?;
            to_js(&probe).map_err(JsValue::from)
        })
    }
}

/// `PROBE_TABLES` held-out tables per hop count, asked from their first letter.
fn probe_questions(s: &HopsSettings, tok: &Tokenizer) -> Result<Vec<(usize, Vec<u32>, String)>, JsError> {
    let card = s.card();
    let mut out = Vec::new();
    for hops in 1..=s.task.max_hops {
        for table in 0..PROBE_TABLES {
            let seed = 10_000 + table * 97 + hops as u64;
            let (_, puzzle) = crate::hops::pose(&card, seed, hops, 'a').map_err(js_err)?;
            let ids = tok.encode(&puzzle.prompt, true).map_err(js_err)?;
            out.push((hops, ids, puzzle.answer.to_string()));
        }
    }
    Ok(out)
}

async fn probe(run: &Run) -> Result<Probe, JsError> {
    let model = run.model.as_ref().ok_or_else(|| js_err("the model was lost in a failed step"))?.valid();
    let prompts: Vec<Vec<u32>> = run.probe.iter().map(|(_, ids, _)| ids.clone()).collect();
    let cfg = GenerateConfig {
        max_new_tokens: 1,
        sampling: SamplingConfig::greedy(),
        seed: PROBE_SEED,
        ..GenerateConfig::default()
    };
    let thought_cfg = ThoughtfulDecoder::thought_sampling(1.0);
    let mut answers = vec![None; prompts.len()];
    if let Some(mut decoder) =
        ThoughtfulDecoder::new(&model, &run.tokenizer, &prompts, &cfg, &thought_cfg).map_err(js_err)?
    {
        while !decoder.finished() {
            let (ids, scores) = decoder.propose();
            let [ids, scores]: [TensorData; 2] =
                read_all(burn::tensor::Transaction::default().register(ids).register(scores)).await?;
            let ids: Vec<i64> = ids.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))?;
            let scores: Vec<f32> = scores.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))?;
            for (row, token) in decoder.accept(&ids, &scores).map_err(js_err)? {
                answers[row] = Some(token);
            }
        }
    }
    let mut by_hops = Vec::new();
    let mut thoughts = Vec::new();
    for hops in 1..=run.settings.task.max_hops {
        let mut row = ProbeRow { hops, right: 0, total: 0, weight: 0.0, gain: 0.0 };
        for ((k, _, gold), answer) in run.probe.iter().zip(&answers) {
            let (true, Some(a)) = (*k == hops, answer) else { continue };
            row.total += 1;
            row.right += usize::from(a.text == *gold);
            row.weight += a.mix_weight;
            row.gain += a.logp_gain;
            if row.total == 1 {
                thoughts.push(ProbeThought {
                    hops,
                    thought: a.thought.clone(),
                    answer: a.text.clone(),
                    gold: gold.clone(),
                });
            }
        }
        let n = row.total.max(1) as f32;
        row.weight /= n;
        row.gain /= n;
        by_hops.push(row);
    }
    Ok(Probe { step: run.trainer.step, by_hops, thoughts })
}
