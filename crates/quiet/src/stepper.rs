//! The Quiet-STaR optimization loop one step at a time, with nothing read back and nothing
//! written: [`QuietTrainer`] computes a step's gradients, its caller reads the step's numbers
//! (synchronously natively, awaited in the browser) and the trainer applies the update. The
//! loop on disk ([`crate::trainer`]) and the page's Learn view both drive it.

use std::borrow::Cow;

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use serde::{Deserialize, Serialize};
use starling_thought::Kernel;
use starling_train::data::BatchOrder;
use starling_train::optim::{AdamW, clip_scale, grad_squared_norm, non_finite_gradients};
use starling_train::parallel::split_evenly;
use starling_train::schedule::Schedule;
use starling_train::trainer::TrainConfig;
use web_time::Instant;

use crate::config::{QuietConfig, Thinking};
use crate::loss::{LossStats, StatTensors, chunk_positions, quiet_gradients_pending};
use crate::model::QuietModel;
use crate::{QuietError, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuietRunConfig {
    pub train: TrainConfig,
    pub quiet: QuietConfig,
    /// Positions per chunk of the vocabulary-sized loss terms (`loss::quiet_gradients`); `None`:
    /// as many as fit `loss::CHUNK_BYTES`. Memory against speed only — the results do not depend
    /// on it, so it is not part of the run's identity.
    #[serde(skip)]
    pub loss_chunk: Option<usize>,
    /// Where thoughts are taken and what they are (default: sampled after every position).
    #[serde(default, skip_serializing_if = "Thinking::is_default")]
    pub thinking: Thinking,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuietStepMetrics {
    pub step: usize,
    pub lr: f64,
    pub grad_norm: f64,
    pub step_seconds: f64,
    pub tokens_per_second: f64,
    #[serde(flatten)]
    pub stats: LossStats,
}

/// The Quiet-STaR loop one optimizer step at a time, with the read-back of the step's numbers
/// left to the caller, as [`starling_train::trainer::Trainer`] does for language models:
/// [`QuietTrainer::backward_with`] computes the gradients, the caller reads
/// [`PendingQuietStep::readback`] (awaited in the browser, where WebGPU cannot read
/// synchronously), and [`QuietTrainer::apply`] checks, clips and updates.
/// [`crate::trainer::train_quiet_data_parallel`] drives it synchronously.
pub struct QuietTrainer<'a> {
    seqs: Cow<'a, [Vec<u32>]>,
    cfg: Cow<'a, QuietRunConfig>,
    kernel: Kernel,
    device: Device,
    order: BatchOrder,
    schedule: Schedule,
    pub optimizer: AdamW,
    /// Optimizer steps done so far.
    pub step: usize,
}

/// One step's gradients, waiting for its numbers and squared gradient norm to be read back.
pub struct PendingQuietStep {
    grads: GradientsParams,
    stats: StatTensors,
    grad_sq: Tensor<1>,
    tokens: usize,
    started: Instant,
}

impl PendingQuietStep {
    /// What the host must read, in one transaction: the step's numbers
    /// ([`LossStats::from_stacked`]) and the squared global gradient norm.
    pub fn readback(&self) -> Transaction {
        Transaction::default().register(self.stats.stacked()).register(self.grad_sq.clone())
    }
}

impl<'a> QuietTrainer<'a> {
    /// Checks the settings and data against `model` (whose Quiet-STaR settings become `cfg`'s);
    /// `start` continues a run after its saved step.
    pub fn new(
        model: &mut QuietModel,
        seqs: Cow<'a, [Vec<u32>]>,
        cfg: Cow<'a, QuietRunConfig>,
        kernel: Kernel,
        start: Option<(AdamW, usize)>,
    ) -> Result<Self> {
        let t = &cfg.train;
        cfg.quiet.validate()?;
        t.validate()?;
        if seqs.is_empty() {
            return Err(QuietError::Input(
                "no training sequences (is the corpus empty or shorter than one sequence?)".into(),
            ));
        }
        let device = model.device();
        if !device.is_autodiff() {
            return Err(QuietError::Config("the model must be on an autodiff device to train".into()));
        }
        model.check_length(seqs[0].len())?;
        cfg.thinking.validate(seqs[0].len(), model.lm.config().vocab_size)?;
        model.check_kernel(kernel)?;
        model.config = cfg.quiet.clone();
        let (optimizer, step) = start.unwrap_or_else(|| (AdamW::new(t.adamw), 0));
        Ok(Self {
            order: BatchOrder::new(seqs.len(), t.batch_size, t.seed),
            schedule: t.schedule(),
            optimizer,
            step,
            device,
            kernel,
            seqs,
            cfg,
        })
    }

    pub fn finished(&self) -> bool {
        self.step >= self.cfg.train.steps
    }

    /// The settings the trainer runs with.
    pub fn config(&self) -> &QuietRunConfig {
        &self.cfg
    }

    /// Forward and backward passes of the next step's `grad_accum` micro-batches of
    /// `batch_size` sequences, data parallel over `model`'s device and `more_devices` (autodiff
    /// devices, as [`starling_train::parallel`] describes for language-model training): each
    /// micro-batch is cut into one slice of sequences per device, each slice's loss weighted by
    /// its share of the micro-batch, the gradients summed on `model`'s device. Each device draws
    /// its thoughts from a seed of its own (slices never share noise), so with sampled thoughts
    /// the steps are one device's in distribution, and with (near-)greedy thoughts the same
    /// steps, up to the order of floating-point sums.
    pub fn backward_with(&self, model: &QuietModel, more_devices: &[Device]) -> PendingQuietStep {
        let started = Instant::now();
        let (t, cfg, step) = (&self.cfg.train, &*self.cfg, self.step);
        // Thought sampling draws from the device RNG: seed it per step so a resumed run repeats.
        let step_seed = t.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
        self.device.seed(step_seed);
        // Each micro-batch's loss is a mean over its positions, so their mean (gradients
        // accumulated) is the large batch's loss.
        let copies: Vec<QuietModel> = more_devices.iter().map(|d| model.clone().fork(d)).collect();
        let replicas: Vec<(&QuietModel, QuietModel)> =
            std::iter::once(model).chain(&copies).map(|m| (m, m.valid())).collect();
        let mut accumulator = GradientsAccumulator::<QuietModel>::new();
        let mut parts = Vec::new();
        let mut tokens = 0;
        for micro in 0..t.grad_accum {
            let batch: Vec<Vec<u32>> =
                self.order.batch(step * t.grad_accum + micro).into_iter().map(|i| self.seqs[i].clone()).collect();
            for (d, ((replica, sampler), slice)) in
                replicas.iter().zip(split_evenly(&batch, replicas.len())).enumerate()
            {
                if slice.is_empty() {
                    continue;
                }
                if !copies.is_empty() {
                    // One seed per device, micro-batch and step: slices never share noise.
                    let seed = step_seed ^ ((d as u64) << 40) ^ ((micro as u64) << 52);
                    replica.device().seed(seed);
                }
                let share = slice.len() as f64 / batch.len() as f64;
                let chunk = cfg.loss_chunk.unwrap_or_else(|| chunk_positions(replica, slice.len()));
                let scale = share / t.grad_accum as f64;
                let (mut grads, mut stats) =
                    quiet_gradients_pending(replica, sampler, &slice, &cfg.thinking, self.kernel, scale, chunk);
                if d > 0 {
                    // The host all-reduce: the copy's gradient joins the sum on the model's device.
                    grads = grads.to_device(&self.device, model);
                    stats = stats.to_device(&self.device.clone().without_autodiff());
                }
                accumulator.accumulate(model, grads);
                // The step's numbers: each slice's by its share of the micro-batch, the mean
                // over micro-batches.
                parts.push(stats.scale(scale));
            }
            tokens += batch.iter().map(Vec::len).sum::<usize>();
        }
        let stats = StatTensors::sum(parts).expect("at least one micro-batch");
        let grads = accumulator.grads();
        let grad_sq = grad_squared_norm(model, &grads).unwrap_or_else(|| stats.stacked().sum().zeros_like());
        PendingQuietStep { grads, stats, grad_sq, tokens, started }
    }

    /// Finishes the step with the values of [`PendingQuietStep::readback`]: stops on a
    /// non-finite loss or gradient (nothing applied), else clips and applies the AdamW update.
    pub fn apply(
        &mut self,
        model: QuietModel,
        pending: PendingQuietStep,
        read: Vec<TensorData>,
    ) -> Result<(QuietModel, QuietStepMetrics)> {
        let values = |i: usize| read.get(i).map(|d| d.iter::<f64>().collect::<Vec<_>>()).unwrap_or_default();
        let (Some(stats), Some(&grad_sq)) = (LossStats::from_stacked(&values(0)), values(1).first()) else {
            return Err(QuietError::Input("the step's numbers read back from the device are missing".into()));
        };
        let step = self.step;
        if !stats.loss.is_finite() {
            return Err(QuietError::NonFinite { what: "loss", step: step + 1, value: stats.loss });
        }
        let grad_norm = grad_sq.sqrt();
        if !grad_norm.is_finite() {
            let fault = non_finite_gradients(&model, &pending.grads);
            return Err(QuietError::Train(starling_train::trainer::TrainError::NonFiniteGradient {
                step: step + 1,
                value: grad_norm,
                fault,
            }));
        }
        let PendingQuietStep { mut grads, tokens, started, .. } = pending;
        let lr = self.schedule.lr(step);
        let model = self.optimizer.step(model, &mut grads, lr, clip_scale(grad_norm, self.cfg.train.grad_clip));
        self.step += 1;
        let secs = started.elapsed().as_secs_f64();
        let m = QuietStepMetrics {
            step: self.step,
            lr,
            grad_norm,
            step_seconds: secs,
            tokens_per_second: tokens as f64 / secs.max(1e-9),
            stats,
        };
        Ok((model, m))
    }
}
