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

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use starling_model::Tokenizer;
use starling_model::checkpoint::files::write_atomic;
use starling_thought::Kernel;
use starling_train::optim::AdamW;
use starling_train::run_dir::RunDir;
use starling_train::trainer::{StartPoint, TrainConfig};

use crate::checkpoint::{checkpoint_files, load_quiet};
use crate::model::QuietModel;
pub use crate::stepper::{PendingQuietStep, QuietRunConfig, QuietStepMetrics, QuietTrainer};
use crate::{QuietError, Result};

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
    let mut trainer = QuietTrainer::new(&mut model, Cow::Borrowed(seqs), Cow::Borrowed(cfg), kernel, start)?;
    let mut history = Vec::new();
    while !trainer.finished() {
        let pending = trainer.backward_with(&model, more_devices);
        let read = pending.readback().execute();
        let m;
        (model, m) = trainer.apply(model, pending, read)?;
        if let Some((r, tokenizer)) = run {
            r.append_metrics(&m)?;
            let done = m.step;
            if cfg.train.save_every.is_some_and(|e| done.is_multiple_of(e)) || done == cfg.train.steps {
                r.save(done, &model, tokenizer, &trainer.optimizer)?;
            }
        }
        observer.on_step(&m);
        history.push(m);
    }
    Ok((model, history))
}
