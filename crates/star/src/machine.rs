//! STaR's loop (Zelikman et al. 2022, Algorithm 1) written once, as a state machine that does one
//! bounded piece of work per [`StarLoop::step`]: a dev batch scored, a batch of rationales
//! generated and rationalized, or one optimizer step. Each step returns a [`StarEvent`] saying
//! what it did. The CLI drives it synchronously and keeps every event's artefacts on disk (so a
//! killed run resumes, see [`Resume`]); the browser drives it asynchronously between frames and
//! draws the events. Device reads go through a [`Host`], so the same code serves both.
//!
//! Iteration 0 scores the base model on the dev set (and, with a [`BaseGate`](crate::gate::BaseGate), also with the
//! hint). Iteration n ≥ 1: rationales of M_{n-1} for every training question, rationalization of
//! the wrong ones with the hint, the original model M fine-tuned afresh on the union, M_n scored.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use starling_model::checkpoint::Checkpoint;
use starling_model::generate::GenerateConfig;
use starling_model::host::Host;
use starling_model::prefix::PrefixStore;
use starling_model::sampling::SamplingConfig;
use starling_model::weights::load_transformer;
use starling_model::{Tokenizer, Transformer};
use starling_tasks::{Exemplar, Item, PromptStyle};
use starling_train::optim::AdamW;
use starling_train::trainer::{StartPoint, StepMetrics, Trainer};

use crate::StarError;
use crate::attempt::{Generator, Outcome, RationaleRecord, TrainingSet};
use crate::config::StarConfig;
use crate::evaluate::{EvalResult, length_order};
use crate::report::IterationRow;

/// The questions and exemplars of a run.
#[derive(Debug, Clone)]
pub struct StarData {
    pub train: Vec<Item>,
    pub dev: Vec<Item>,
    pub exemplars: Vec<Exemplar>,
}

/// What a run is made of: settings, questions, the original model M and where to compute.
pub struct StarSetup {
    pub cfg: StarConfig,
    pub data: StarData,
    /// The original model M: every iteration fine-tunes these weights afresh.
    pub base: Rc<Checkpoint>,
    pub tokenizer: Tokenizer,
    /// Where generation and evaluation run (fine-tuning uses its autodiff twin).
    pub device: Device,
    /// Further devices sharing fine-tuning's batches, data parallel (their autodiff twins are
    /// used; empty: fine-tuning on `device` alone). See [`starling_train::parallel`].
    pub more_devices: Vec<Device>,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Finish {
    Iterations,
    Plateau { best_iteration: usize },
}

/// What one [`StarLoop::step`] did.
pub enum StarEvent {
    /// Dev questions scored so far in iteration `iteration` (`hinted`: with the hint, for the gate).
    Evaluated { iteration: usize, hinted: bool, done: usize, total: usize },
    /// A batch of rationales (with rationalizations) of iteration `iteration`'s generation phase.
    Generated { iteration: usize, records: Vec<RationaleRecord>, done: usize, total: usize },
    /// Fine-tuning starts: `examples` examples, `steps` steps, from the original model `base`
    /// (`None` when continuing from a checkpoint).
    TrainingStarts { iteration: usize, examples: usize, steps: usize, base: Option<Transformer> },
    /// One optimizer step; `checkpoint_due` when the fine-tuning settings ask for a checkpoint
    /// after it (see [`StarLoop::training_state`]).
    TrainStep { iteration: usize, metrics: StepMetrics, checkpoint_due: bool },
    /// M_n is trained (on the generation device).
    Trained { iteration: usize, model: Transformer },
    /// Iteration `n` is scored (iteration 0: the base model).
    IterationDone(IterationRow),
    /// The loop is over; further steps return this again.
    Finished(Finish),
}

/// A fine-tuning run continued from a checkpoint: its weights (on the autodiff device) and its
/// optimizer and step.
pub struct Checkpointed {
    pub model: Transformer,
    pub start: StartPoint,
}

/// Where a (native) run continues, reconstructed from its artefacts.
pub enum Resume {
    /// From the beginning: the base model on the dev set.
    Start,
    /// Generating iteration `iteration`'s rationales with M_{n-1} = `previous`; `records` are
    /// those of the finished batches (whole batches, in generation order).
    Generate { iteration: usize, previous: Transformer, records: Vec<RationaleRecord> },
    /// Fine-tuning iteration `iteration` on `records`; `from` continues a fine-tuning run from a
    /// checkpoint (its weights on the autodiff device, and its optimizer and step).
    Train { iteration: usize, previous: Transformer, records: Vec<RationaleRecord>, from: Option<Box<Checkpointed>> },
    /// Scoring M_n = `model`, fine-tuned on `records`.
    Evaluate { iteration: usize, model: Transformer, records: Vec<RationaleRecord> },
}

impl Phase {
    /// Scoring `model` on the dev set from its first batch.
    fn evaluate(iteration: usize, model: Transformer) -> Phase {
        Phase::Evaluate { iteration, model, next: 0, plain: EvalResult::default(), hinted: None }
    }
}

// One Phase value exists per run, moved once per step: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// `model` (M_iteration) on the dev set, batch by batch; then, for the gate, with the hint.
    Evaluate {
        iteration: usize,
        model: Transformer,
        next: usize,
        plain: EvalResult,
        hinted: Option<EvalResult>,
    },
    /// Rationales of M_{iteration-1} (`current`) for the training set, batch by batch (the
    /// records so far are the loop's `records`).
    Generate {
        iteration: usize,
        next_batch: usize,
    },
    /// The generation phase is over; the next step sets up fine-tuning.
    StartTraining {
        iteration: usize,
        from: Option<Box<Checkpointed>>,
    },
    /// The original model fine-tuned on the kept and rationalized examples, step by step.
    Train {
        iteration: usize,
        model: Transformer,
        trainer: Box<Trainer<'static>>,
    },
    /// Fine-tuning is over; the next step hands M_n out and starts scoring it.
    Trained {
        iteration: usize,
        model: Transformer,
    },
    /// The next step fails with this (the base model failed the gate).
    Stopping(StarError),
    Done(Finish),
    /// A step failed; the run cannot go on.
    Failed,
}

/// STaR's loop; see the module docs.
pub struct StarLoop {
    setup: StarSetup,
    rows: Vec<IterationRow>,
    phase: Phase,
    /// M_{n-1}: writes the rationales of iteration n.
    current: Transformer,
    /// The current iteration's rationale records (in generation order).
    records: Vec<RationaleRecord>,
    generation_order: Vec<usize>,
    dev_order: Vec<usize>,
    /// Time spent in the current iteration's steps (pauses between steps excluded).
    seconds: f64,
    /// The exemplars' keys and values for the model in use.
    prefixes: PrefixStore,
}

impl StarLoop {
    /// A run that starts from the beginning, or continues at `resume` after the finished
    /// iterations' `rows` (base first).
    pub fn new(setup: StarSetup, rows: Vec<IterationRow>, resume: Resume) -> Result<Self, StarError> {
        check_setup(&setup)?;
        let load_base = || load(&setup.base, &setup.device);
        let (phase, current, records) = match resume {
            Resume::Start => {
                let base = load_base()?;
                (Phase::evaluate(0, base.clone()), base, Vec::new())
            }
            Resume::Generate { iteration, previous, mut records } => {
                let batch = setup.cfg.gen_batch;
                let finished = records.len() / batch;
                if finished * batch >= setup.data.train.len() {
                    records.truncate(setup.data.train.len());
                    (Phase::StartTraining { iteration, from: None }, previous, records)
                } else {
                    records.truncate(finished * batch);
                    (Phase::Generate { iteration, next_batch: finished }, previous, records)
                }
            }
            Resume::Train { iteration, previous, records, from } => {
                (Phase::StartTraining { iteration, from }, previous, records)
            }
            Resume::Evaluate { iteration, model, records } => {
                (Phase::evaluate(iteration, model.clone()), model, records)
            }
        };
        // A run that already ended (resumed after its last iteration) stays ended.
        let phase = match next_after(&rows, &setup.cfg) {
            Some(finish) => Phase::Done(finish),
            None => phase,
        };
        let generation_order = length_order(&setup.data.train);
        let dev_order = length_order(&setup.data.dev);
        let run = Self {
            setup,
            rows,
            phase,
            current,
            records,
            generation_order,
            dev_order,
            seconds: 0.0,
            prefixes: PrefixStore::default(),
        };
        run.check_records(&run.records)?;
        Ok(run)
    }

    pub fn config(&self) -> &StarConfig {
        &self.setup.cfg
    }

    pub fn data(&self) -> &StarData {
        &self.setup.data
    }

    /// The rows of the finished iterations, base first.
    pub fn rows(&self) -> &[IterationRow] {
        &self.rows
    }

    /// Optimizer steps of iteration `iteration`'s fine-tuning (on the current records).
    pub fn training_steps(&self, iteration: usize) -> usize {
        self.setup.cfg.steps_for_records(iteration, &self.records)
    }

    /// The current iteration's rationale records so far.
    pub fn records(&self) -> &[RationaleRecord] {
        &self.records
    }

    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// While fine-tuning: the model being trained, its optimizer and the steps done — what a
    /// checkpoint holds.
    pub fn training_state(&self) -> Option<(&Transformer, &AdamW, usize)> {
        match &self.phase {
            Phase::Train { model, trainer, .. } => Some((model, &trainer.optimizer, trainer.step)),
            _ => None,
        }
    }

    /// Runs one bounded piece of work; see [`StarEvent`].
    pub async fn step(&mut self, host: &mut impl Host) -> Result<StarEvent, StarError> {
        let started = Instant::now();
        // A failing step leaves `Failed` behind: its phase's state was consumed.
        let event = match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Evaluate { iteration, model, next, plain, hinted } => {
                self.evaluate(iteration, model, next, plain, hinted, host).await
            }
            Phase::Generate { iteration, next_batch } => self.generate(iteration, next_batch, host).await,
            Phase::StartTraining { iteration, from } => self.start_training(iteration, from),
            Phase::Train { iteration, model, trainer } => self.train_step(iteration, model, trainer, host).await,
            Phase::Trained { iteration, model } => {
                self.phase = Phase::evaluate(iteration, model.clone());
                Ok(StarEvent::Trained { iteration, model })
            }
            Phase::Stopping(e) => Err(e),
            Phase::Done(finish) => {
                self.phase = Phase::Done(finish.clone());
                Ok(StarEvent::Finished(finish))
            }
            Phase::Failed => Err(StarError::Stopped),
        };
        self.seconds += started.elapsed().as_secs_f64();
        event
    }

    /// Decoding with `model` = M_`model_index`: greedy for evaluation, the run's sampling for
    /// rationales. A fine-tuned model is prompted without exemplars under `no_prompt` (the
    /// official code's `--no_prompt`: generation from the second iteration on, evaluation of
    /// every M_n). The exemplars' keys and values are computed once per model.
    fn generator<'m>(&'m self, model: &'m Transformer, model_index: usize, greedy: bool) -> Generator<'m> {
        let cfg = &self.setup.cfg;
        let fine_tuned = model_index >= 1;
        let shots = if cfg.no_prompt && fine_tuned { 0 } else { cfg.shots };
        let exemplars = &self.setup.data.exemplars[..shots.min(self.setup.data.exemplars.len())];
        let mut sampling = cfg.sampling.clone();
        if greedy {
            // Evaluation is greedy whatever the generation sampling is.
            sampling = SamplingConfig { suppress: sampling.suppress.clone(), ..SamplingConfig::default() };
        }
        Generator {
            model,
            tokenizer: &self.setup.tokenizer,
            task: cfg.task,
            exemplars,
            decode: GenerateConfig {
                max_new_tokens: cfg.max_new_tokens,
                sampling,
                stop_strings: Vec::new(),
                eos_ids: model.config().eos_token_id.into_iter().collect(),
                seed: cfg.seed,
            },
            prefixes: Some((&self.prefixes, model_index as u64)),
            max_rows: cfg.gen_rows,
        }
    }

    async fn evaluate(
        &mut self,
        iteration: usize,
        model: Transformer,
        next: usize,
        mut plain: EvalResult,
        mut hinted: Option<EvalResult>,
        host: &mut impl Host,
    ) -> Result<StarEvent, StarError> {
        let batch = self.setup.cfg.gen_batch;
        let total = self.setup.data.dev.len();
        let end = (next + batch).min(total);
        let items: Vec<&Item> = self.dev_order[next..end].iter().map(|&i| &self.setup.data.dev[i]).collect();
        let g = self.generator(&model, iteration, true);
        let seed = (next / batch) as u64;
        let with_hint = hinted.is_some();
        let completions = g.complete_with(&items, PromptStyle::Rationale, with_hint, seed, host, &mut |_| {}).await?;
        let result = hinted.as_mut().unwrap_or(&mut plain);
        for (it, c) in items.iter().zip(completions) {
            result.record(self.setup.cfg.task, it, c);
        }
        let event = StarEvent::Evaluated { iteration, hinted: with_hint, done: end, total };
        if end < total {
            self.phase = Phase::Evaluate { iteration, model, next: end, plain, hinted };
            return Ok(event);
        }
        if iteration == 0 && hinted.is_none() && self.setup.cfg.gate.is_some() {
            self.phase = Phase::Evaluate { iteration, model, next: 0, plain, hinted: Some(EvalResult::default()) };
            return Ok(event);
        }
        Ok(self.finish_iteration(iteration, model, plain, hinted))
    }

    /// Records iteration `iteration`'s row and decides what comes next.
    fn finish_iteration(
        &mut self,
        iteration: usize,
        model: Transformer,
        dev: EvalResult,
        dev_hinted: Option<EvalResult>,
    ) -> StarEvent {
        let cfg = &self.setup.cfg;
        let count = |o: Outcome| self.records.iter().filter(|r| r.outcome == o).count();
        let sound = |o: Outcome| self.records.iter().filter(|r| r.outcome == o && r.sound == Some(true)).count();
        let checkable = iteration > 0 && self.records.iter().any(|r| r.sound.is_some());
        let row = IterationRow {
            iteration,
            train_total: if iteration == 0 { self.setup.data.train.len() } else { self.records.len() },
            kept: count(Outcome::Kept),
            rationalized: count(Outcome::Rationalized),
            rejected: count(Outcome::Rejected),
            kept_sound: checkable.then(|| sound(Outcome::Kept)),
            rationalized_sound: checkable.then(|| sound(Outcome::Rationalized)),
            steps: if iteration == 0 { 0 } else { cfg.steps_for_records(iteration, &self.records) },
            trained_answers: trained_answers(&self.records, &cfg.training_set(), &self.setup.data.train),
            dev,
            dev_hinted,
            seconds: self.seconds,
        };
        self.seconds = 0.0;
        self.rows.push(row.clone());
        self.current = model;
        self.phase = match next_after(&self.rows, cfg) {
            Some(finish) => Phase::Done(finish),
            None => Phase::Generate { iteration: iteration + 1, next_batch: 0 },
        };
        if iteration == 0
            && let Some(gate) = &cfg.gate
            && let Err(failure) = gate.check(&row)
        {
            self.phase = Phase::Stopping(StarError::GateFailed(failure));
        }
        self.records.clear();
        StarEvent::IterationDone(row)
    }

    /// The iteration whose rationales the next step starts or continues generating, if that is
    /// what the loop does next (a run whose generation is sharded stops there, see
    /// [`crate::run::StarRun::run_until_generation`]).
    pub fn generation_due(&self) -> Option<usize> {
        match self.phase {
            Phase::Generate { iteration, .. } => Some(iteration),
            _ => None,
        }
    }

    /// Generation batches per iteration (the last one may be short).
    pub fn generation_batches(&self) -> usize {
        self.setup.data.train.len().div_ceil(self.setup.cfg.gen_batch)
    }

    /// The training questions of generation batch `batch`, in generation order.
    pub fn batch_questions(&self, batch: usize) -> Vec<&Item> {
        let size = self.setup.cfg.gen_batch;
        let end = ((batch + 1) * size).min(self.setup.data.train.len());
        let start = (batch * size).min(end);
        self.generation_order[start..end].iter().map(|&i| &self.setup.data.train[i]).collect()
    }

    /// The rationales (and rationalizations) of generation batch `batch` of iteration
    /// `iteration`, by the model the loop holds, M_{iteration-1}. A batch depends on nothing but
    /// its questions and its own seed, so batches give the same records whichever process runs
    /// them and in whichever order — what lets a cluster share one iteration's generation.
    pub async fn rationales_for_batch(
        &self,
        iteration: usize,
        batch: usize,
        host: &mut impl Host,
    ) -> Result<Vec<RationaleRecord>, StarError> {
        let cfg = &self.setup.cfg;
        let items = self.batch_questions(batch);
        let seed = batch_seed(cfg.seed, iteration, batch);
        let g = self.generator(&self.current, iteration - 1, false);
        Ok(g.attempt_with(&items, cfg.rationalize, seed, host, &mut |_, _| {}).await?)
    }

    async fn generate(
        &mut self,
        iteration: usize,
        batch_index: usize,
        host: &mut impl Host,
    ) -> Result<StarEvent, StarError> {
        let total = self.setup.data.train.len();
        let end = ((batch_index + 1) * self.setup.cfg.gen_batch).min(total);
        let new = self.rationales_for_batch(iteration, batch_index, host).await?;
        self.records.extend(new.iter().cloned());
        if end < total {
            self.phase = Phase::Generate { iteration, next_batch: batch_index + 1 };
        } else {
            self.phase = Phase::StartTraining { iteration, from: None };
        }
        Ok(StarEvent::Generated { iteration, records: new, done: end, total })
    }

    fn start_training(&mut self, iteration: usize, from: Option<Box<Checkpointed>>) -> Result<StarEvent, StarError> {
        let cfg = &self.setup.cfg;
        let by_id: HashMap<&str, &Item> = self.setup.data.train.iter().map(|it| (it.id.as_str(), it)).collect();
        let eos = self.current.config().eos_token_id;
        let examples = cfg.training_set().examples(&self.records, &by_id, &self.setup.tokenizer, eos, iteration)?;
        if examples.is_empty() {
            return Err(StarError::NothingKept {
                iteration,
                unparsable: self.records.iter().filter(|r| r.answer.is_none()).count(),
                total: self.records.len(),
                rationales: None,
            });
        }
        let tc = cfg.train_config_for(iteration, examples.len());
        let steps = tc.steps;
        let n_examples = examples.len();
        let (model, start, base) = match from {
            Some(c) => (c.model, Some(c.start), None),
            None => {
                let base = load(&self.setup.base, &self.setup.device.clone().autodiff())?;
                (base.clone(), None, Some(base))
            }
        };
        let trainer = Trainer::new(&model, Cow::Owned(examples), Cow::Owned(tc), start)?;
        self.phase = Phase::Train { iteration, model, trainer: Box::new(trainer) };
        Ok(StarEvent::TrainingStarts { iteration, examples: n_examples, steps, base })
    }

    async fn train_step(
        &mut self,
        iteration: usize,
        model: Transformer,
        mut trainer: Box<Trainer<'static>>,
        host: &mut impl Host,
    ) -> Result<StarEvent, StarError> {
        let more: Vec<Device> = self.setup.more_devices.iter().map(|d| d.clone().autodiff()).collect();
        let copies = starling_train::parallel::copies(&model, &more);
        let pending = trainer.backward_with(&model, &copies);
        let read = host.read(pending.readback()).await?;
        let (model, metrics) = trainer.apply(model, pending, read)?;
        let step = metrics.step;
        let checkpoint_due =
            !trainer.finished() && self.setup.cfg.train.save_every.is_some_and(|every| step.is_multiple_of(every));
        if trainer.finished() {
            self.phase = Phase::Trained { iteration, model: model.valid() };
        } else {
            self.phase = Phase::Train { iteration, model, trainer };
        }
        Ok(StarEvent::TrainStep { iteration, metrics, checkpoint_due })
    }

    /// Resumed records must be this run's questions, in generation order.
    fn check_records(&self, records: &[RationaleRecord]) -> Result<(), StarError> {
        let train = &self.setup.data.train;
        if records.iter().zip(&self.generation_order).all(|(r, &i)| r.id == train[i].id) {
            Ok(())
        } else {
            Err(StarError::StaleRecords)
        }
    }
}

/// The seed of one generation batch: a function of the run's seed, the iteration and the batch
/// alone, so a batch's rationales do not depend on which batches ran before (or on a resume).
pub fn batch_seed(seed: u64, iteration: usize, batch: usize) -> u64 {
    seed ^ ((iteration as u64) << 32) ^ batch as u64
}

/// What ends the run after the last row: the planned iterations, or a plateau of `patience`
/// iterations without a better dev accuracy.
pub(crate) fn next_after(rows: &[IterationRow], cfg: &StarConfig) -> Option<Finish> {
    let last = rows.last()?.iteration;
    let (mut best, mut best_acc) = (0, f64::NEG_INFINITY);
    for r in rows {
        if r.dev.accuracy() > best_acc + 1e-12 {
            (best, best_acc) = (r.iteration, r.dev.accuracy());
        }
    }
    if last >= cfg.iterations {
        Some(Finish::Iterations)
    } else if cfg.patience > 0 && last - best >= cfg.patience {
        Some(Finish::Plateau { best_iteration: best })
    } else {
        None
    }
}

fn load(base: &Checkpoint, device: &Device) -> Result<Transformer, StarError> {
    Ok(load_transformer(&base.config, base.weights.as_ref(), device)?.0)
}

fn check_setup(setup: &StarSetup) -> Result<(), StarError> {
    setup.cfg.validate().map_err(StarError::Config)?;
    let data = &setup.data;
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(StarError::Config("STaR needs a non-empty training set and dev set".into()));
    }
    // Records are matched to questions by id, so ids must be unique.
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = data.train.iter().find(|it| !seen.insert(it.id.as_str())) {
        return Err(StarError::Config(format!(
            "the training set has two questions with id {:?}; give every question its own id",
            dup.id
        )));
    }
    Ok(())
}

/// The answers of the completions an iteration fine-tunes on, counted by answer, for
/// multiple-choice questions (empty otherwise).
fn trained_answers(records: &[RationaleRecord], set: &TrainingSet, train: &[Item]) -> BTreeMap<String, usize> {
    if train.iter().all(|it| it.choices.is_empty()) {
        return BTreeMap::new();
    }
    let mut counts = BTreeMap::new();
    for r in records.iter().filter(|r| set.trains_on(r)) {
        let answer = match r.outcome {
            Outcome::Kept => r.answer.as_ref(),
            _ => r.rationalization_answer.as_ref(),
        };
        if let Some(a) = answer {
            *counts.entry(a.clone()).or_default() += 1;
        }
    }
    counts
}
