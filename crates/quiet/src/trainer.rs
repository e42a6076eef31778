//! The Quiet-STaR optimization loop on disk:
//!
//! ```text
//! run/
//!   quiet_run.json                 training config + Quiet-STaR config (checked on resume)
//!   train_config.json              the training config (as every `RunDir`)
//!   metrics.jsonl                  one QuietStepMetrics per line
//!   checkpoints/step-00000100/     checkpoint folder (see `checkpoint`) + optimizer + state
//! ```
//!
//! A non-finite loss or gradient stops the run before the step is applied; checkpoints already
//! written stay.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsAccumulator;
use serde::{Deserialize, Serialize};
use starling_model::Tokenizer;
use starling_model::checkpoint::files::write_atomic;
use starling_thought::Kernel;
use starling_train::data::BatchOrder;
use starling_train::optim::{AdamW, clip_scale, global_grad_norm, non_finite_gradients};
use starling_train::parallel::split_evenly;
use starling_train::run_dir::RunDir;
use starling_train::trainer::{StartPoint, TrainConfig};

use crate::checkpoint::{checkpoint_files, load_quiet};
use crate::config::{QuietConfig, Thinking};
use crate::loss::{LossStats, chunk_positions, quiet_gradients};
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

/// Where a resumed run picks up.
pub struct Resumed {
    pub model: QuietModel,
    pub tokenizer: Tokenizer,
    pub optimizer: AdamW,
    pub step: usize,
}

pub trait QuietObserver {
    fn on_step(&mut self, _m: &QuietStepMetrics) {}
}

pub struct NoObserver;
impl QuietObserver for NoObserver {}

/// A Quiet-STaR run on disk: a [`RunDir`] (checkpoints, optimizer state, metrics — the layout
/// language-model runs use) plus `quiet_run.json`, the Quiet-STaR settings it was made with.
/// Checkpoint folders are Quiet-STaR checkpoints (see `checkpoint`) with the optimizer beside.
pub struct QuietRun {
    pub root: PathBuf,
    pub config: QuietRunConfig,
    dir: RunDir,
}

const RUN_FILE: &str = "quiet_run.json";

impl QuietRun {
    /// Opens `root` for `config`: creates it, or checks a run already there was made with the
    /// same settings — all but the number of steps, so a finished run can be extended.
    pub fn open(root: &Path, config: QuietRunConfig) -> Result<Self> {
        config.quiet.validate()?;
        config.train.validate()?;
        let path = root.join(RUN_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| ck(format!("{}: {e}", path.display())))?;
            let old: QuietRunConfig =
                serde_json::from_str(&text).map_err(|e| ck(format!("{}: {e}", path.display())))?;
            let same = QuietRunConfig {
                train: TrainConfig { steps: config.train.steps, ..old.train.clone() },
                loss_chunk: config.loss_chunk,
                ..old
            };
            if same != config {
                return Err(QuietError::OtherRun { path: root.to_path_buf() });
            }
        }
        let dir = RunDir::create_for_files(root, &config.train)?;
        write_atomic(&path, &serde_json::to_vec_pretty(&config).expect("JSON"))?;
        Ok(Self { root: root.to_path_buf(), config, dir })
    }

    /// Complete checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<(usize, PathBuf)> {
        self.dir.checkpoints()
    }

    fn save(&self, step: usize, model: &QuietModel, tokenizer: &Tokenizer, optimizer: &AdamW) -> Result<()> {
        self.dir.save_files(step, checkpoint_files(model, tokenizer)?, optimizer)?;
        Ok(())
    }

    /// The newest checkpoint's model (on `device`), its tokenizer, optimizer and step, if any;
    /// metrics lines past that step are dropped (they will be run again).
    pub fn resume(&self, device: &burn::tensor::Device) -> Result<Option<Resumed>> {
        let Some((_, dir)) = self.dir.latest_checkpoint() else {
            self.dir.truncate_metrics(0)?;
            return Ok(None);
        };
        let (model, tokenizer) = load_quiet(&dir, device)?;
        let StartPoint { step, optimizer } = self.dir.load_start(&dir, device)?;
        self.dir.truncate_metrics(step)?;
        Ok(Some(Resumed { model, tokenizer, optimizer, step }))
    }

    fn append_metrics(&self, m: &QuietStepMetrics) -> Result<()> {
        Ok(self.dir.append_metrics(m)?)
    }

    pub fn read_metrics(&self) -> Vec<QuietStepMetrics> {
        self.dir.read_metrics()
    }
}

fn ck(m: String) -> QuietError {
    QuietError::Checkpoint(m)
}

/// Trains `model` (on an autodiff device) on equal-length token sequences. Starts from
/// `start` (optimizer and step) when resuming. With `run`, metrics and checkpoints (which hold the
/// tokenizer) go to disk.
pub fn train_quiet(
    model: QuietModel,
    seqs: &[Vec<u32>],
    cfg: &QuietRunConfig,
    kernel: Kernel,
    start: Option<(AdamW, usize)>,
    run: Option<(&QuietRun, &Tokenizer)>,
    observer: &mut dyn QuietObserver,
) -> Result<(QuietModel, Vec<QuietStepMetrics>)> {
    train_quiet_data_parallel(model, &[], seqs, cfg, kernel, start, run, observer)
}

/// [`train_quiet`], data parallel over `model`'s device and `more_devices` (autodiff devices),
/// as [`starling_train::parallel`] describes for language-model training: each micro-batch is cut
/// into one slice of sequences per device, each slice's loss weighted by its share of the
/// micro-batch, the gradients summed on `model`'s device, one optimizer step there. Each device
/// draws its thoughts from a seed of its own (slices never share noise), so with sampled thoughts
/// the steps are one device's in distribution, and with (near-)greedy thoughts the same steps,
/// up to the order of floating-point sums.
#[allow(clippy::too_many_arguments)]
pub fn train_quiet_data_parallel(
    mut model: QuietModel,
    more_devices: &[burn::tensor::Device],
    seqs: &[Vec<u32>],
    cfg: &QuietRunConfig,
    kernel: Kernel,
    start: Option<(AdamW, usize)>,
    run: Option<(&QuietRun, &Tokenizer)>,
    observer: &mut dyn QuietObserver,
) -> Result<(QuietModel, Vec<QuietStepMetrics>)> {
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
    let order = BatchOrder::new(seqs.len(), t.batch_size, t.seed);
    let schedule = t.schedule();
    let (mut optimizer, first) = start.unwrap_or_else(|| (AdamW::new(t.adamw), 0));
    let mut history = Vec::new();
    for step in first..t.steps {
        let t0 = Instant::now();
        // Thought sampling draws from the device RNG: seed it per step so a resumed run repeats.
        let step_seed = t.seed.wrapping_mul(1_000_003).wrapping_add(step as u64);
        device.seed(step_seed);
        // `grad_accum` micro-batches of `batch_size` sequences, each loss a mean over its
        // positions, so their mean (gradients accumulated) is the large batch's loss.
        let copies: Vec<QuietModel> = more_devices.iter().map(|d| model.clone().fork(d)).collect();
        let replicas: Vec<(&QuietModel, QuietModel)> =
            std::iter::once(&model).chain(&copies).map(|m| (m, m.valid())).collect();
        let mut accumulator = GradientsAccumulator::<QuietModel>::new();
        let mut parts = Vec::with_capacity(t.grad_accum);
        let mut tokens = 0;
        for micro in 0..t.grad_accum {
            let batch: Vec<Vec<u32>> =
                order.batch(step * t.grad_accum + micro).into_iter().map(|i| seqs[i].clone()).collect();
            let mut slices = Vec::with_capacity(replicas.len());
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
                let (mut grads, stats) = quiet_gradients(replica, sampler, &slice, &cfg.thinking, kernel, scale, chunk);
                if !stats.loss.is_finite() {
                    return Err(QuietError::NonFinite { what: "loss", step: step + 1, value: stats.loss });
                }
                if d > 0 {
                    // The host all-reduce: the copy's gradient joins the sum on the model's device.
                    grads = grads.to_device(&device, &model);
                }
                accumulator.accumulate(&model, grads);
                slices.push((share, stats));
            }
            tokens += batch.iter().map(Vec::len).sum::<usize>();
            parts.push(LossStats::weighted(&slices));
        }
        let stats = LossStats::mean(&parts);
        let mut grads = accumulator.grads();
        let grad_norm = global_grad_norm(&model, &grads);
        if !grad_norm.is_finite() {
            let fault = non_finite_gradients(&model, &grads);
            return Err(QuietError::Train(starling_train::trainer::TrainError::NonFiniteGradient {
                step: step + 1,
                value: grad_norm,
                fault,
            }));
        }
        let lr = schedule.lr(step);
        model = optimizer.step(model, &mut grads, lr, clip_scale(grad_norm, t.grad_clip));
        let secs = t0.elapsed().as_secs_f64();
        let m = QuietStepMetrics {
            step: step + 1,
            lr,
            grad_norm,
            step_seconds: secs,
            tokens_per_second: tokens as f64 / secs.max(1e-9),
            stats,
        };
        if let Some((r, tokenizer)) = run {
            r.append_metrics(&m)?;
            let done = step + 1;
            if t.save_every.is_some_and(|e| done.is_multiple_of(e)) || done == t.steps {
                r.save(done, &model, tokenizer, &optimizer)?;
            }
        }
        observer.on_step(&m);
        history.push(m);
    }
    Ok((model, history))
}
