//! The language-model training loop: masked cross-entropy, gradient accumulation, AdamW with a
//! warm-up + cosine/constant schedule, global-norm clipping, periodic evaluation, and (natively)
//! atomic checkpoints with optimizer state for exact resume.

use std::borrow::Cow;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use starling_model::Transformer;

use crate::data::{Batch, BatchOrder, Example, make_batch};
use crate::optim::{AdamW, AdamWConfig, clip_scale, grad_squared_norm};
use crate::parallel::split_evenly;
use crate::schedule::{Schedule, ScheduleKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps to run in total.
    pub steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Longest example in tokens (longer ones are cut).
    pub max_len: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub schedule: ScheduleKind,
    pub min_lr_ratio: f64,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this value.
    pub grad_clip: Option<f64>,
    pub seed: u64,
    /// Evaluate on the held-out set every this many steps (and at the end).
    pub eval_every: Option<usize>,
    /// Write a checkpoint every this many steps (and at the end).
    pub save_every: Option<usize>,
    /// Checkpoints kept on disk (oldest deleted first).
    pub keep_checkpoints: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 200,
            batch_size: 16,
            grad_accum: 1,
            max_len: 256,
            lr: 1e-3,
            warmup_steps: 20,
            schedule: ScheduleKind::Cosine,
            min_lr_ratio: 0.1,
            adamw: AdamWConfig::default(),
            grad_clip: Some(1.0),
            seed: 0,
            eval_every: None,
            save_every: None,
            keep_checkpoints: 2,
        }
    }
}

impl TrainConfig {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            kind: self.schedule,
            peak_lr: self.lr,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
            min_lr_ratio: self.min_lr_ratio,
        }
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.batch_size == 0 || self.grad_accum == 0 {
            return bad("batch size and gradient accumulation must be at least 1");
        }
        if self.max_len < 2 {
            return bad("max_len must be at least 2 tokens");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("the learning rate must be positive");
        }
        if self.grad_clip.is_some_and(|c| !(c > 0.0)) {
            return bad("grad_clip must be positive");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training config: {0}")]
    Config(String),
    #[error("training data: {0}")]
    Data(String),
    /// A malformed line of a data file.
    #[error("{origin}:{line}: {message}")]
    BadLine { origin: String, line: usize, message: String },
    #[error(
        "the loss became {value} at step {step}; training stopped and no checkpoint was written \
         for this step (the last good one is kept). Lower the learning rate or enable gradient clipping"
    )]
    NonFinite { step: usize, value: f64 },
    #[error(
        "the gradient norm became {value} at step {step} ({fault}); training stopped and no checkpoint was \
         written for this step (the last good one is kept). Lower the learning rate"
    )]
    NonFiniteGradient { step: usize, value: f64, fault: crate::optim::GradientFault },
    #[error(transparent)]
    Model(#[from] starling_model::ModelError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// One optimizer step's numbers; also one line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepMetrics {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub epoch: f64,
    pub tokens: usize,
    pub target_tokens: usize,
    /// Forward, backward and update of this step (periodic evaluation not included).
    pub step_seconds: f64,
    pub tokens_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub eval_loss: Option<f64>,
}

/// Callbacks for progress display, logging and checkpointing; all optional.
pub trait TrainObserver {
    /// Called after every optimizer step; an error stops training (e.g. the disk is full).
    fn on_step(&mut self, _m: &StepMetrics) -> Result<(), TrainError> {
        Ok(())
    }
    /// Called after `step` when a checkpoint is due; `model` is the current model.
    fn on_checkpoint(&mut self, _step: usize, _model: &Transformer, _optimizer: &AdamW) -> Result<(), TrainError> {
        Ok(())
    }
}

pub struct NoObserver;
impl TrainObserver for NoObserver {}

/// Where a run starts: from scratch, or after `step` steps with restored optimizer state.
pub struct StartPoint {
    pub step: usize,
    pub optimizer: AdamW,
}

/// Mean negative log-likelihood of the target tokens of `batch`, divided by `denominator`
/// target tokens (the whole accumulation group, so micro-batch losses add up to the mean).
pub fn masked_nll(model: &Transformer, batch: &Batch, denominator: usize) -> Tensor<1> {
    let logits = model.forward(batch.inputs.clone());
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, batch.targets.clone().unsqueeze_dim(2)).squeeze_dim::<2>(2);
    (picked * batch.weights.clone()).sum().neg().div_scalar(denominator.max(1) as f64)
}

/// Mean loss over `examples` without gradients.
pub fn evaluate(model: &Transformer, examples: &[Example], batch_size: usize, max_len: usize) -> f64 {
    let device = model.device();
    let pad_id = model.config().pad_id();
    let mut total = 0.0;
    let mut count = 0usize;
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(&refs, max_len, pad_id, &device);
        if batch.target_count == 0 {
            continue;
        }
        let loss = masked_nll(model, &batch, 1).into_scalar::<f64>();
        total += loss;
        count += batch.target_count;
    }
    total / count.max(1) as f64
}

/// Trains `model` (whose parameters live on an autodiff device) on `train` examples.
/// Returns the trained model and the metrics of every step run.
pub fn train(
    model: Transformer,
    train: &[Example],
    eval: Option<&[Example]>,
    cfg: &TrainConfig,
    start: Option<StartPoint>,
    observer: &mut dyn TrainObserver,
) -> Result<(Transformer, Vec<StepMetrics>), TrainError> {
    train_data_parallel(model, &[], train, eval, cfg, start, observer)
}

/// [`train`], data parallel: every batch is shared between `model`'s device and `more_devices`
/// (autodiff devices), each holding a copy of the model (see [`crate::parallel`]). With no
/// further device it is [`train`].
pub fn train_data_parallel(
    mut model: Transformer,
    more_devices: &[Device],
    train: &[Example],
    eval: Option<&[Example]>,
    cfg: &TrainConfig,
    start: Option<StartPoint>,
    observer: &mut dyn TrainObserver,
) -> Result<(Transformer, Vec<StepMetrics>), TrainError> {
    let mut trainer = Trainer::new(&model, Cow::Borrowed(train), Cow::Borrowed(cfg), start)?;
    let mut history = Vec::new();
    while !trainer.finished() {
        let copies = crate::parallel::copies(&model, more_devices);
        let pending = trainer.backward_with(&model, &copies);
        let read = pending.readback().execute();
        let (next, mut m) = trainer.apply(model, pending, read)?;
        model = next;
        let done = m.step;
        if let (Some(ev), Some(every)) = (eval, cfg.eval_every)
            && !ev.is_empty()
            && (done % every == 0 || done == cfg.steps)
        {
            m.eval_loss = Some(evaluate(&model.valid(), ev, cfg.batch_size, cfg.max_len));
        }
        observer.on_step(&m)?;
        history.push(m);
        if cfg.save_every.is_some_and(|every| done % every == 0) || done == cfg.steps {
            observer.on_checkpoint(done, &model, &trainer.optimizer)?;
        }
    }
    Ok((model, history))
}

/// The training loop one optimizer step at a time, with the read-back of the loss and gradient
/// norm left to the caller: [`Trainer::backward`] computes the gradients, the caller reads
/// [`PendingStep::readback`] (awaited in the browser, where WebGPU cannot read synchronously),
/// and [`Trainer::apply`] clips and updates. [`train`] drives it synchronously.
pub struct Trainer<'a> {
    /// Borrowed by [`train`]; owned where the trainer outlives the caller's frame (the browser
    /// keeps it between awaited steps).
    examples: Cow<'a, [Example]>,
    cfg: Cow<'a, TrainConfig>,
    pad_id: u32,
    device: Device,
    order: BatchOrder,
    schedule: Schedule,
    pub optimizer: AdamW,
    /// Optimizer steps done so far.
    pub step: usize,
}

/// One step's gradients, waiting for its loss and squared gradient norm to be read back.
pub struct PendingStep {
    loss: Tensor<1>,
    grad_sq: Tensor<1>,
    grads: GradientsParams,
    tokens: usize,
    targets: usize,
    started: Instant,
}

impl PendingStep {
    /// What the host must read, in one transaction: the loss and the squared global gradient
    /// norm (both taken off the autodiff graph, so one transaction can hold them).
    pub fn readback(&self) -> Transaction {
        Transaction::default().register(self.loss.clone().inner()).register(self.grad_sq.clone())
    }
}

impl<'a> Trainer<'a> {
    /// Checks the settings and data; `start` continues a run after its saved step.
    pub fn new(
        model: &Transformer,
        examples: Cow<'a, [Example]>,
        cfg: Cow<'a, TrainConfig>,
        start: Option<StartPoint>,
    ) -> Result<Self, TrainError> {
        cfg.validate()?;
        if examples.is_empty() {
            return Err(TrainError::Data("no training examples (is the data file empty?)".into()));
        }
        if examples.iter().all(|e| e.targets() == 0) {
            return Err(TrainError::Data("no example has a token to learn (every token is masked out)".into()));
        }
        let device: Device = model.device();
        if !device.is_autodiff() {
            return Err(TrainError::Config("the model must be on an autodiff device to train".into()));
        }
        let (step, optimizer) = match start {
            Some(s) => (s.step, s.optimizer),
            None => (0, AdamW::new(cfg.adamw)),
        };
        Ok(Self {
            pad_id: model.config().pad_id(),
            device,
            order: BatchOrder::new(examples.len(), cfg.batch_size, cfg.seed),
            schedule: cfg.schedule(),
            optimizer,
            step,
            examples,
            cfg,
        })
    }

    pub fn finished(&self) -> bool {
        self.step >= self.cfg.steps
    }

    /// Forward and backward passes of the next step's micro-batches, gradients accumulated.
    pub fn backward(&self, model: &Transformer) -> PendingStep {
        self.backward_with(model, &[])
    }

    /// [`Trainer::backward`], data parallel over `model` and its `copies` on other devices
    /// ([`crate::parallel::copies`]): each micro-batch is cut into one contiguous slice per
    /// device, and every slice's gradient — its loss divided by the whole step's target count —
    /// is moved to `model`'s device and summed there. The sum is the gradient of the whole
    /// step, as [`Trainer::backward`] computes it on one device, up to the order of
    /// floating-point sums; [`Trainer::apply`] then updates `model` alone.
    pub fn backward_with(&self, model: &Transformer, copies: &[Transformer]) -> PendingStep {
        let started = Instant::now();
        let cfg = &*self.cfg;
        let replicas: Vec<&Transformer> = std::iter::once(model).chain(copies).collect();
        let mut slices: Vec<(&Transformer, Batch)> = Vec::new();
        for i in 0..cfg.grad_accum {
            let idx = self.order.batch(self.step * cfg.grad_accum + i);
            for (replica, part) in replicas.iter().zip(split_evenly(&idx, replicas.len())) {
                if part.is_empty() {
                    continue;
                }
                let refs: Vec<&Example> = part.iter().map(|&j| &self.examples[j]).collect();
                let device = if std::ptr::eq(*replica, model) { self.device.clone() } else { replica.device() };
                slices.push((replica, make_batch(&refs, cfg.max_len, self.pad_id, &device)));
            }
        }
        let targets: usize = slices.iter().map(|(_, b)| b.target_count).sum();
        let tokens: usize = slices.iter().map(|(_, b)| b.tokens).sum();
        let mut accumulator = GradientsAccumulator::<Transformer>::new();
        let mut loss_sum: Option<Tensor<1>> = None;
        for (replica, batch) in &slices {
            let loss = masked_nll(replica, batch, targets);
            let mut grads = GradientsParams::from_grads(loss.backward(), *replica);
            let mut detached = loss.detach();
            if !std::ptr::eq(*replica, model) {
                // The host all-reduce: the copy's gradient joins the sum on the model's device.
                grads = grads.to_device(&self.device, model);
                detached = detached.to_device(&self.device);
            }
            accumulator.accumulate(model, grads);
            loss_sum = Some(match loss_sum {
                Some(s) => s + detached,
                None => detached,
            });
        }
        let loss = loss_sum.expect("at least one micro-batch");
        let grads = accumulator.grads();
        let grad_sq = grad_squared_norm(model, &grads).unwrap_or_else(|| loss.zeros_like());
        PendingStep { loss, grad_sq, grads, tokens, targets, started }
    }

    /// Finishes the step with the results of [`PendingStep::readback`]: stops on a non-finite
    /// loss or gradient, else clips and applies the AdamW update.
    pub fn apply(
        &mut self,
        model: Transformer,
        pending: PendingStep,
        read: Vec<TensorData>,
    ) -> Result<(Transformer, StepMetrics), TrainError> {
        let scalar = |d: &TensorData| d.iter::<f64>().next();
        let (Some(loss), Some(grad_squared_norm)) = (read.first().and_then(scalar), read.get(1).and_then(scalar))
        else {
            return Err(TrainError::Data("the loss and gradient norm read back from the device are missing".into()));
        };
        let step = self.step;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { step: step + 1, value: loss });
        }
        let grad_norm = grad_squared_norm.sqrt();
        if !grad_norm.is_finite() {
            let fault = crate::optim::non_finite_gradients(&model, &pending.grads);
            return Err(TrainError::NonFiniteGradient { step: step + 1, value: grad_norm, fault });
        }
        let PendingStep { mut grads, tokens, targets, started, .. } = pending;
        let lr = self.schedule.lr(step);
        let model = self.optimizer.step(model, &mut grads, lr, clip_scale(grad_norm, self.cfg.grad_clip));
        self.step += 1;
        let secs = started.elapsed().as_secs_f64();
        let m = StepMetrics {
            step: self.step,
            loss,
            lr,
            grad_norm,
            epoch: self.order.epoch_at(self.step * self.cfg.grad_accum),
            tokens,
            target_tokens: targets,
            step_seconds: secs,
            tokens_per_second: tokens as f64 / secs.max(1e-9),
            eval_loss: None,
        };
        Ok((model, m))
    }
}
