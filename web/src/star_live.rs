//! The STaR-live view: STaR (Algorithm 1 of Zelikman et al. 2022) on the arithmetic task, run in
//! the page one bounded step at a time — a dev batch evaluated, a batch of rationales generated
//! and rationalized, or one optimizer step — so the page can draw between steps, pause, and never
//! freeze. The pieces are the star crate's (prompts, classification, training examples, step
//! schedule, tallies); the native run adds files and resume around the same pieces.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::TensorData;
use serde::{Deserialize, Serialize};
use starling_model::Transformer;
use starling_model::sampling::SamplingConfig;
use starling_star::attempt::{Outcome, RationaleRecord, training_examples};
use starling_star::config::StarConfig;
use starling_star::evaluate::{EvalResult, length_order};
use starling_star::report::IterationRow;
use starling_tasks::{Item, TaskKind};
use starling_train::optim::AdamWConfig;
use starling_train::schedule::ScheduleKind;
use starling_train::trainer::{TrainConfig, Trainer};
use wasm_bindgen::prelude::*;
use web_time::Instant;

use crate::plain::PlainModel;
use crate::{attempt, complete, js_err, read_all, to_js};

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
    /// Sized for a few minutes per iteration on a laptop's CPU; the learning rate and schedule
    /// are the native built-in model's (`starling star`).
    fn default() -> Self {
        Self {
            train_size: 160,
            dev_per_digit: 16,
            min_digits: 1,
            max_digits: 3,
            iterations: 4,
            first_steps: 40,
            step_growth: 1.2,
            batch_size: 16,
            lr: 3e-4,
            gen_batch: 32,
            max_new_tokens: 200,
            rationalize: true,
            seed: 0,
        }
    }
}

impl LiveOptions {
    fn star_config(&self) -> Result<StarConfig, String> {
        if !(1 <= self.min_digits && self.min_digits <= self.max_digits && self.max_digits <= 18) {
            return Err("digits: 1 ≤ min ≤ max ≤ 18".into());
        }
        if self.train_size == 0 || self.dev_per_digit == 0 {
            return Err("the training set and the dev set need at least one question".into());
        }
        let cfg = StarConfig {
            task: TaskKind::Arithmetic,
            iterations: self.iterations,
            rationalize: self.rationalize,
            shots: 0,
            first_steps: self.first_steps,
            step_growth: self.step_growth,
            train: TrainConfig {
                batch_size: self.batch_size,
                lr: self.lr,
                max_len: 512,
                warmup_steps: 10.min(self.first_steps),
                // Constant after warm-up, no weight decay, as the official STaR code.
                schedule: ScheduleKind::Constant,
                min_lr_ratio: 1.0,
                adamw: AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() },
                ..TrainConfig::default()
            },
            sampling: SamplingConfig::greedy(),
            max_new_tokens: self.max_new_tokens,
            gen_batch: self.gen_batch,
            patience: 0,
            seed: self.seed,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

enum Phase {
    /// Model `model` (M_iteration) on the dev set, batch by batch.
    Evaluate {
        iteration: usize,
        model: Transformer,
        next: usize,
        result: EvalResult,
    },
    /// Rationales of M_{iteration-1} for the training set, batch by batch.
    Generate {
        iteration: usize,
        next_batch: usize,
        records: Vec<RationaleRecord>,
    },
    /// The original model fine-tuned on the kept and rationalized examples, step by step.
    Train {
        iteration: usize,
        model: Transformer,
        trainer: Box<Trainer<'static>>,
    },
    Done,
    /// A step failed; the run cannot go on.
    Failed,
}

struct State {
    base: Rc<PlainModel>,
    cfg: StarConfig,
    train: Vec<Item>,
    dev: Vec<Item>,
    train_order: Vec<usize>,
    dev_order: Vec<usize>,
    /// Worked examples before every question: none for the built-in model (it learned the
    /// format in pretraining), the task's exemplars for others — as `starling star`.
    exemplars: Vec<starling_tasks::Exemplar>,
    /// M_{n-1}: generates the rationales of iteration n.
    current: Transformer,
    /// The last generation phase's records (counted in its iteration's row).
    records: Vec<RationaleRecord>,
    rows: Vec<IterationRow>,
    phase: Phase,
    /// Time spent in the current iteration's steps (pauses excluded).
    iteration_seconds: f64,
}

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
    state: Rc<RefCell<State>>,
    train_size: usize,
    dev_size: usize,
}

impl StarLive {
    pub(crate) fn new(base: Rc<PlainModel>, options: LiveOptions) -> Result<StarLive, JsError> {
        let mut cfg = options.star_config().map_err(js_err)?;
        base.backend.check_trainable(base.model.num_params()).map_err(js_err)?;
        let exemplars = if base.knows_the_format() { Vec::new() } else { starling_tasks::arithmetic::exemplars() };
        cfg.shots = exemplars.len();
        let (train, dev) = starling_tasks::arithmetic::train_dev_split(
            options.seed,
            options.train_size,
            options.dev_per_digit,
            options.min_digits,
            options.max_digits,
        );
        let (train_order, dev_order) = (length_order(&train), length_order(&dev));
        let current = base.model.clone();
        let phase = Phase::Evaluate { iteration: 0, model: current.clone(), next: 0, result: EvalResult::default() };
        let (train_size, dev_size) = (train.len(), dev.len());
        let state = State {
            base,
            cfg,
            train,
            dev,
            train_order,
            dev_order,
            exemplars,
            current,
            records: Vec::new(),
            rows: Vec::new(),
            phase,
            iteration_seconds: 0.0,
        };
        Ok(StarLive { state: Rc::new(RefCell::new(state)), train_size, dev_size })
    }
}

#[wasm_bindgen]
impl StarLive {
    /// Training questions after removing repeats, and dev questions.
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
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut s = state
                .try_borrow_mut()
                .map_err(|_| JsValue::from(js_err("a STaR step is already running; await it first")))?;
            let event = s.step().await.map_err(JsValue::from)?;
            to_js(&event).map_err(JsValue::from)
        })
    }
}

impl State {
    async fn step(&mut self) -> Result<StepEvent, JsError> {
        let started = Instant::now();
        // A failing step leaves `Failed` behind: its phase's state was consumed.
        let result = match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Evaluate { iteration, model, next, result } => self.evaluate(iteration, model, next, result).await,
            Phase::Generate { iteration, next_batch, records } => self.generate(iteration, next_batch, records).await,
            Phase::Train { iteration, model, trainer } => self.train_step(iteration, model, trainer).await,
            Phase::Done => {
                self.phase = Phase::Done;
                Ok(StepEvent { phase: "done", finished: true, ..StepEvent::default() })
            }
            Phase::Failed => Err(js_err("this STaR run stopped at an error; start a new one")),
        };
        self.iteration_seconds += started.elapsed().as_secs_f64();
        let mut result = result;
        if let Ok(StepEvent { row: Some(row), .. }) = &mut result {
            // The iteration's time is its steps' (pauses excluded), this last step included.
            row.seconds = self.iteration_seconds;
            if let Some(last) = self.rows.last_mut() {
                last.seconds = row.seconds;
            }
            self.iteration_seconds = 0.0;
        }
        result
    }

    async fn evaluate(
        &mut self,
        iteration: usize,
        model: Transformer,
        next: usize,
        mut result: EvalResult,
    ) -> Result<StepEvent, JsError> {
        let end = (next + self.cfg.gen_batch).min(self.dev.len());
        let items: Vec<&Item> = self.dev_order[next..end].iter().map(|&i| &self.dev[i]).collect();
        let g = self.base.generator(&model, TaskKind::Arithmetic, &self.exemplars, self.cfg.max_new_tokens);
        let out = complete(&g, &items, false, (next / self.cfg.gen_batch) as u64, &mut |_| {}).await?;
        for (it, completion) in items.iter().zip(out) {
            result.record(TaskKind::Arithmetic, it, completion);
        }
        let mut event =
            StepEvent { phase: "evaluate", iteration, done: end, total: self.dev.len(), ..StepEvent::default() };
        if end < self.dev.len() {
            self.phase = Phase::Evaluate { iteration, model, next: end, result };
            return Ok(event);
        }
        let count = |o: Outcome| self.records.iter().filter(|r| r.outcome == o).count();
        let row = IterationRow {
            iteration,
            train_total: if iteration == 0 { self.train.len() } else { self.records.len() },
            kept: count(Outcome::Kept),
            rationalized: count(Outcome::Rationalized),
            rejected: count(Outcome::Rejected),
            steps: if iteration == 0 { 0 } else { self.cfg.steps_for(iteration) },
            dev: result,
            seconds: 0.0, // set by `step`
        };
        self.rows.push(row.clone());
        event.row = Some(row);
        self.current = model;
        if iteration >= self.cfg.iterations {
            event.finished = true;
            self.phase = Phase::Done;
        } else {
            self.phase = Phase::Generate { iteration: iteration + 1, next_batch: 0, records: Vec::new() };
        }
        Ok(event)
    }

    async fn generate(
        &mut self,
        iteration: usize,
        batch: usize,
        mut records: Vec<RationaleRecord>,
    ) -> Result<StepEvent, JsError> {
        let b = self.cfg.gen_batch;
        let end = ((batch + 1) * b).min(self.train.len());
        let items: Vec<&Item> = self.train_order[batch * b..end].iter().map(|&i| &self.train[i]).collect();
        let g = self.base.generator(&self.current, TaskKind::Arithmetic, &self.exemplars, self.cfg.max_new_tokens);
        // Seeded per iteration and batch, as the native run.
        let seed = self.cfg.seed ^ ((iteration as u64) << 32) ^ batch as u64;
        records.extend(attempt(&g, &items, self.cfg.rationalize, seed, &mut |_, _| {}).await?);
        let mut event =
            StepEvent { phase: "generate", iteration, done: end, total: self.train.len(), ..StepEvent::default() };
        if end < self.train.len() {
            self.phase = Phase::Generate { iteration, next_batch: batch + 1, records };
            return Ok(event);
        }
        let by_id: HashMap<&str, &Item> = self.train.iter().map(|it| (it.id.as_str(), it)).collect();
        event.samples = samples(&records, &by_id);
        let tokenizer = self.base.tokenizer();
        let eos = self.base.model.config().eos_token_id.or_else(|| tokenizer.token_to_id("<eos>"));
        let examples = training_examples(&records, &by_id, tokenizer, eos).map_err(js_err)?;
        self.records = records;
        if examples.is_empty() {
            return Err(js_err(format!(
                "iteration {iteration}: no training question was answered correctly, even with the hint, so there is nothing to fine-tune on; \
                 STaR needs a model above chance — use the built-in model or fewer digits"
            )));
        }
        // Every iteration fine-tunes the original model, on the autodiff twin of the device.
        let model = self.base.load_on(&self.base.backend.device.clone().autodiff())?;
        let mut tc = self.cfg.train.clone();
        tc.steps = self.cfg.steps_for(iteration);
        tc.seed = self.cfg.seed.wrapping_add(iteration as u64);
        let trainer = Trainer::new(&model, Cow::Owned(examples), Cow::Owned(tc), None).map_err(js_err)?;
        self.phase = Phase::Train { iteration, model, trainer: Box::new(trainer) };
        Ok(event)
    }

    async fn train_step(
        &mut self,
        iteration: usize,
        model: Transformer,
        mut trainer: Box<Trainer<'static>>,
    ) -> Result<StepEvent, JsError> {
        let pending = trainer.backward(&model);
        let read: [TensorData; 2] = read_all(pending.readback()).await?;
        let (model, m) = trainer.apply(model, pending, read.into()).map_err(js_err)?;
        let total = self.cfg.steps_for(iteration);
        let event =
            StepEvent { phase: "train", iteration, done: m.step, total, loss: Some(m.loss), ..StepEvent::default() };
        if trainer.finished() {
            let model = model.valid();
            self.phase = Phase::Evaluate { iteration, model, next: 0, result: EvalResult::default() };
        } else {
            self.phase = Phase::Train { iteration, model, trainer };
        }
        Ok(event)
    }
}

/// The last record of each outcome, with its question.
fn samples(records: &[RationaleRecord], by_id: &HashMap<&str, &Item>) -> Vec<Sample> {
    [Outcome::Kept, Outcome::Rationalized, Outcome::Rejected]
        .into_iter()
        .filter_map(|o| records.iter().rev().find(|r| r.outcome == o))
        .filter_map(|r| {
            let it = by_id.get(r.id.as_str())?;
            Some(Sample {
                outcome: r.outcome,
                question: it.question.clone(),
                hinted_question: it.hinted_question.clone(),
                record: r.clone(),
            })
        })
        .collect()
}
