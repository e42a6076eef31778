//! The STaR-live view: STaR on the arithmetic task, run in the page by the same state machine as
//! `starling star` (`starling_star::StarLoop`), one bounded step per call — a dev batch scored, a
//! batch of rationales generated and rationalized, or one optimizer step — so the page can draw
//! between steps, pause, and never freeze. This module only sizes the run and turns the loop's
//! events into what the page draws.

use std::cell::RefCell;
use std::rc::Rc;

use burn::module::Module;

use serde::{Deserialize, Serialize};
use starling_model::sampling::SamplingConfig;
use starling_star::attempt::{Outcome, RationaleRecord};
use starling_star::config::fine_tuning;
use starling_star::flow::{IterationFlow, iteration_flow};
use starling_star::report::IterationRow;
use starling_star::{Resume, StarConfig, StarData, StarEvent, StarLoop, StarSetup};
use starling_tasks::{Item, TaskKind};
use wasm_bindgen::prelude::*;

use crate::plain::PlainModel;
use crate::{Page, js_err, to_js};

/// The page's STaR settings (JSON; every field optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LiveOptions {
    pub train_size: usize,
    pub dev_per_digit: usize,
    pub min_digits: usize,
    pub max_digits: usize,
    pub iterations: usize,
    pub first_steps: usize,
    pub step_growth: f64,
    pub batch_size: usize,
    pub lr: f64,
    pub gen_batch: usize,
    pub max_new_tokens: usize,
    pub rationalize: bool,
    pub seed: u64,
}

impl Default for LiveOptions {
    /// Sized for about three minutes on a laptop's CPU (the page's form starts from these): a
    /// few hundred distinct training sums, since fine-tuning many epochs on a few dozen overfits
    /// (measured with `starling star`: 154 sums × 300 steps left 3-digit sums at 0% and broke
    /// 2-digit ones; 451 sums × 200 steps lifted 3-digit sums 0 → 38%). The learning rate and
    /// schedule are `starling star`'s for the built-in model.
    fn default() -> Self {
        Self {
            train_size: 600,
            dev_per_digit: 8,
            min_digits: 1,
            max_digits: 3,
            iterations: 2,
            first_steps: 200,
            step_growth: 1.2,
            batch_size: 16,
            lr: 1e-3,
            gen_batch: 48,
            max_new_tokens: 120,
            rationalize: true,
            seed: 0,
        }
    }
}

impl LiveOptions {
    fn star_config(&self, shots: usize) -> Result<StarConfig, String> {
        if !(1 <= self.min_digits && self.min_digits <= self.max_digits && self.max_digits <= 18) {
            return Err("digits: 1 ≤ min ≤ max ≤ 18".into());
        }
        let cfg = StarConfig {
            task: TaskKind::Arithmetic,
            iterations: self.iterations,
            rationalize: self.rationalize,
            shots,
            first_steps: self.first_steps,
            step_growth: self.step_growth,
            train: fine_tuning(self.batch_size, self.lr, 10.min(self.first_steps), 512),
            sampling: SamplingConfig::greedy(),
            max_new_tokens: self.max_new_tokens,
            gen_batch: self.gen_batch,
            gen_rows: None,
            epochs: None,
            patience: 0,
            seed: self.seed,
            // The page shows the base model's numbers; it does not stop on them.
            gate: None,
            require_sound: false,
            p_show_hint_save: 0.0,
            no_prompt: false,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn data(&self, exemplars: Vec<starling_tasks::Exemplar>) -> Result<StarData, String> {
        let (train, dev) = starling_tasks::arithmetic::train_dev_split(
            self.seed,
            self.train_size,
            self.dev_per_digit,
            self.min_digits,
            self.max_digits,
        )
        .map_err(|e| e.to_string())?;
        Ok(StarData { train, dev, exemplars })
    }
}

/// Rationales with a right answer and a wrong step shown per iteration.
const LUCKY_SHOWN: usize = 2;

/// What one step did, for the page.
#[derive(Serialize, Default)]
struct StepEvent {
    phase: &'static str,
    iteration: usize,
    done: usize,
    total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss: Option<f64>,
    /// The iteration that just finished (its dev accuracy, overall and per digit count).
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<IterationRow>,
    /// After a generation phase: one record of each outcome, with its question.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    samples: Vec<Sample>,
    /// After a generation phase: where the training questions went, per digit count, and a
    /// few rationales with the right answer and a wrong scratchpad line.
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<IterationFlow>,
    finished: bool,
}

#[derive(Serialize)]
struct Sample {
    outcome: Outcome,
    question: String,
    hinted_question: String,
    record: RationaleRecord,
}

/// A STaR run in the page. Call `step()` until it reports `finished`; stop calling to pause.
#[wasm_bindgen]
pub struct StarLive {
    run: Rc<RefCell<StarLoop>>,
    train_size: usize,
    dev_size: usize,
}

impl StarLive {
    pub(crate) fn new(base: Rc<PlainModel>, options: LiveOptions) -> Result<StarLive, JsError> {
        base.backend.check_trainable(base.model.num_params()).map_err(js_err)?;
        // The built-in model learned the format in pretraining; others are shown exemplars.
        let exemplars = if base.knows_the_format() { Vec::new() } else { starling_tasks::arithmetic::exemplars() };
        let cfg = options.star_config(exemplars.len()).map_err(js_err)?;
        let data = options.data(exemplars).map_err(js_err)?;
        let (train_size, dev_size) = (data.train.len(), data.dev.len());
        let setup = StarSetup {
            cfg,
            data,
            base: base.checkpoint.clone(),
            tokenizer: base.tokenizer().clone(),
            device: base.backend.device.clone(),
            more_devices: Vec::new(),
        };
        let run = StarLoop::new(setup, Vec::new(), Resume::Start).map_err(js_err)?;
        Ok(StarLive { run: Rc::new(RefCell::new(run)), train_size, dev_size })
    }
}

#[wasm_bindgen]
impl StarLive {
    /// Training questions, and dev questions.
    #[wasm_bindgen(getter, js_name = trainSize)]
    pub fn train_size(&self) -> usize {
        self.train_size
    }

    #[wasm_bindgen(getter, js_name = devSize)]
    pub fn dev_size(&self) -> usize {
        self.dev_size
    }

    /// Runs one bounded step; resolves to `{phase, iteration, done, total, loss?, row?, samples?, finished}`.
    #[expect(
        clippy::await_holding_refcell_ref,
        reason = "the borrow held across the step is what refuses a second step started before it ends"
    )]
    pub fn step(&self) -> js_sys::Promise {
        let run = self.run.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut run = run
                .try_borrow_mut()
                .map_err(|_| JsValue::from(js_err("a STaR step is already running; await it first")))?;
            let event = run.step(&mut Page).await.map_err(|e| JsValue::from(js_err(e)))?;
            to_js(&page_event(&run, event)).map_err(JsValue::from)
        })
    }
}

/// What the page draws for one event of the loop.
fn page_event(run: &StarLoop, event: StarEvent) -> StepEvent {
    match event {
        StarEvent::Evaluated { iteration, done, total, .. } => {
            StepEvent { phase: "evaluate", iteration, done, total, ..StepEvent::default() }
        }
        StarEvent::Generated { iteration, done, total, .. } => {
            let complete = done == total;
            StepEvent {
                phase: "generate",
                iteration,
                done,
                total,
                samples: if complete { samples(run.records(), &run.data().train) } else { Vec::new() },
                flow: complete.then(|| iteration_flow(run.config(), run.records(), &run.data().train, LUCKY_SHOWN)),
                ..StepEvent::default()
            }
        }
        StarEvent::TrainingStarts { iteration, steps, .. } => {
            StepEvent { phase: "train", iteration, done: 0, total: steps, ..StepEvent::default() }
        }
        StarEvent::TrainStep { iteration, metrics, .. } => StepEvent {
            phase: "train",
            iteration,
            done: metrics.step,
            total: run.training_steps(iteration),
            loss: Some(metrics.loss),
            ..StepEvent::default()
        },
        StarEvent::Trained { iteration, .. } => {
            let total = run.data().dev.len();
            StepEvent { phase: "evaluate", iteration, done: 0, total, ..StepEvent::default() }
        }
        StarEvent::IterationDone(row) => {
            let total = run.data().dev.len();
            StepEvent {
                phase: "evaluate",
                iteration: row.iteration,
                done: total,
                total,
                row: Some(row),
                ..StepEvent::default()
            }
        }
        StarEvent::Finished(_) => StepEvent { phase: "done", finished: true, ..StepEvent::default() },
    }
}

/// The last record of each outcome, with its question.
fn samples(records: &[RationaleRecord], train: &[Item]) -> Vec<Sample> {
    [Outcome::Kept, Outcome::Rationalized, Outcome::Rejected]
        .into_iter()
        .filter_map(|o| records.iter().rev().find(|r| r.outcome == o))
        .filter_map(|r| {
            let it = train.iter().find(|it| it.id == r.id)?;
            Some(Sample {
                outcome: r.outcome,
                question: it.question.clone(),
                hinted_question: it.hinted_question.clone(),
                record: r.clone(),
            })
        })
        .collect()
}
