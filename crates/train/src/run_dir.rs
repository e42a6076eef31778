//! A training run on disk (native builds):
//!
//! ```text
//! run/
//!   train_config.json          the TrainConfig of the run
//!   metrics.jsonl              one StepMetrics per line
//!   checkpoints/step-00000100/ a Hugging Face model folder + optimizer.safetensors + trainer_state.json
//! ```
//!
//! Checkpoints are written to a temporary folder and renamed into place, so a `step-*` folder is
//! always complete; a run killed at any moment resumes from the newest one. What is not about the
//! model's files — the folder layout, the optimizer and step, metrics lines — serves any trainer
//! (`starling-quiet` keeps its runs here too): [`RunDir::save_files`], [`RunDir::load_start`],
//! and metrics of any serializable type with a `step` field.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use starling_model::checkpoint::files::{
    hf_folder_files, map_file, open_checkpoint, remove_interrupted_writes, write_atomic, write_folder_atomic,
};
use starling_model::checkpoint::safetensors::{SafetensorsSource, serialize_f32};
use starling_model::checkpoint::{HostTensor, WeightSource};
use starling_model::weights::load_transformer;
use starling_model::{ModelError, Tokenizer, Transformer};

use crate::optim::AdamW;
use crate::trainer::{StartPoint, StepMetrics, TrainConfig, TrainError, TrainObserver};

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "trainer_state.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: usize,
    pub optimizer_steps: u64,
    /// The run's settings (absent in Quiet-STaR checkpoints written before runs shared this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TrainConfig>,
}

/// The one field every metrics line has.
#[derive(Deserialize)]
struct StepOf {
    step: usize,
}

/// A run continued from its newest checkpoint (see [`RunDir::resume`]).
pub struct Resumed {
    /// Optimizer steps already done.
    pub step: usize,
    pub checkpoint: PathBuf,
    /// The checkpoint's weights, on the device given to [`RunDir::resume`].
    pub model: Transformer,
    pub start: StartPoint,
}

pub struct RunDir {
    pub root: PathBuf,
    pub config: TrainConfig,
    /// Saved with each language-model checkpoint; `None` for runs that write their own model
    /// files ([`RunDir::create_for_files`]).
    tokenizer: Option<Tokenizer>,
}

fn ck(e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint(e.to_string())
}

impl RunDir {
    /// Opens (creating if needed) a run folder and records the config.
    pub fn create(root: &Path, config: &TrainConfig, tokenizer: &Tokenizer) -> Result<Self, TrainError> {
        Ok(Self { tokenizer: Some(tokenizer.clone()), ..Self::create_for_files(root, config)? })
    }

    /// A run whose trainer writes its own model files through [`RunDir::save_files`] (Quiet-STaR
    /// checkpoints); [`RunDir::save_checkpoint`] is not for it.
    pub fn create_for_files(root: &Path, config: &TrainConfig) -> Result<Self, TrainError> {
        let checkpoints = root.join("checkpoints");
        std::fs::create_dir_all(&checkpoints).map_err(|e| ModelError::write(checkpoints, e))?;
        let json = serde_json::to_vec_pretty(config).expect("config JSON");
        write_atomic(&root.join("train_config.json"), &json)?;
        Ok(Self { root: root.to_path_buf(), config: config.clone(), tokenizer: None })
    }

    pub fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.root.join("checkpoints").join(format!("step-{step:08}"))
    }

    /// Complete checkpoints, oldest first.
    pub fn checkpoints(&self) -> Vec<(usize, PathBuf)> {
        let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(self.root.join("checkpoints"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix("step-")?.parse().ok()?;
                e.path().join(STATE_FILE).exists().then(|| (step, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    pub fn latest_checkpoint(&self) -> Option<(usize, PathBuf)> {
        self.checkpoints().pop()
    }

    /// Where training starts: after the newest checkpoint (its weights, optimizer state and step;
    /// metric lines past that step, left by a run killed after its last checkpoint, are dropped),
    /// or from the beginning (`None`; old metric lines are dropped too). `device` is the autodiff
    /// device the model trains on.
    pub fn resume(&self, device: &Device) -> Result<Option<Resumed>, TrainError> {
        // Only what a run writes: the folder may be one the user keeps other files in.
        remove_interrupted_writes(&self.root, &|n| matches!(n, "metrics.jsonl" | "train_config.json" | "model"));
        remove_interrupted_writes(&self.root.join("checkpoints"), &|n| n.starts_with("step-"));
        let Some((step, checkpoint)) = self.latest_checkpoint() else {
            self.truncate_metrics(0)?;
            return Ok(None);
        };
        let ck = open_checkpoint(&checkpoint, None)?;
        let (model, _) = load_transformer(&ck.config, ck.weights.as_ref(), device)?;
        let start = self.load_start(&checkpoint, device)?;
        self.truncate_metrics(step)?;
        Ok(Some(Resumed { step, checkpoint, model, start }))
    }

    pub fn save_checkpoint(&self, step: usize, model: &Transformer, optimizer: &AdamW) -> Result<PathBuf, TrainError> {
        let tokenizer = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| ck("this run writes its own model files (RunDir::create_for_files); use save_files"))?;
        self.save_files(step, hf_folder_files(model, tokenizer)?, optimizer)
    }

    /// Writes checkpoint `step`: the model's `files` (name, bytes), the optimizer state and the
    /// trainer state, atomically; then prunes the oldest beyond `keep_checkpoints`.
    pub fn save_files(
        &self,
        step: usize,
        mut files: Vec<(String, Vec<u8>)>,
        optimizer: &AdamW,
    ) -> Result<PathBuf, TrainError> {
        let opt = serialize_f32(&optimizer.state_tensors(), HashMap::new())?;
        files.push((OPTIMIZER_FILE.into(), opt));
        let state = TrainerState { step, optimizer_steps: optimizer.steps, config: Some(self.config.clone()) };
        files.push((STATE_FILE.into(), serde_json::to_vec_pretty(&state).expect("state JSON")));
        let dir = self.checkpoint_dir(step);
        write_folder_atomic(&dir, &files)?;
        // Prune only after the new checkpoint is complete.
        let all = self.checkpoints();
        let excess = all.len().saturating_sub(self.config.keep_checkpoints.max(1));
        for (_, old) in all.into_iter().take(excess) {
            let _ = std::fs::remove_dir_all(old);
        }
        Ok(dir)
    }

    /// The optimizer state and step stored in a checkpoint folder, checked against this run's
    /// config (a different seed or batch shape would silently change the data order).
    pub fn load_start(&self, checkpoint: &Path, device: &Device) -> Result<StartPoint, TrainError> {
        let state_path = checkpoint.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| ck(format!("{}: {e}", state_path.display())))?;
        let state: TrainerState =
            serde_json::from_str(&text).map_err(|e| ck(format!("{}: {e}", state_path.display())))?;
        let (a, b) = (state.config.as_ref().unwrap_or(&self.config), &self.config);
        if a.seed != b.seed || a.batch_size != b.batch_size || a.grad_accum != b.grad_accum || a.max_len != b.max_len {
            return Err(TrainError::Config(format!(
                "{} was made with seed {}, batch {}×{}, max_len {}; resuming needs the same values \
                 (got seed {}, batch {}×{}, max_len {}) or a fresh run folder",
                checkpoint.display(),
                a.seed,
                a.batch_size,
                a.grad_accum,
                a.max_len,
                b.seed,
                b.batch_size,
                b.grad_accum,
                b.max_len
            )));
        }
        let opt_path = checkpoint.join(OPTIMIZER_FILE);
        let source = SafetensorsSource::new(opt_path.clone(), vec![(opt_path.clone(), map_file(&opt_path)?)])?;
        let tensors: BTreeMap<String, HostTensor> =
            source.names().into_iter().map(|n| source.load(&n).map(|t| (n, t))).collect::<Result<_, _>>()?;
        // A moment holding NaN would turn every later update into NaN: refuse it by name.
        for (name, t) in &tensors {
            t.check_finite(&opt_path, name)?;
        }
        let mut optimizer = AdamW::new(self.config.adamw);
        optimizer
            .load_state(state.optimizer_steps, &tensors, device)
            .map_err(|e| ck(format!("{}: {e}", opt_path.display())))?;
        Ok(StartPoint { step: state.step, optimizer })
    }

    fn metrics_path(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }

    /// Appends one metrics line (any serializable record with a `step` field).
    pub fn append_metrics<M: Serialize>(&self, m: &M) -> Result<(), TrainError> {
        let path = self.metrics_path();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ModelError::write(&path, e))?;
        // One write call per line: a kill lands before or after it, never inside a line.
        let line = serde_json::to_string(m).expect("metrics JSON") + "\n";
        Ok(f.write_all(line.as_bytes()).map_err(|e| ModelError::write(&path, e))?)
    }

    /// Drops metric lines past `step` (left by a run that was killed after its last checkpoint).
    pub fn truncate_metrics(&self, step: usize) -> Result<(), TrainError> {
        let path = self.metrics_path();
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<StepOf>(l).is_ok_and(|m| m.step <= step))
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, kept.as_bytes())?;
        Ok(())
    }

    /// Every metrics line that parses as `M` (`StepMetrics` for language-model runs).
    pub fn read_metrics<M: DeserializeOwned>(&self) -> Vec<M> {
        std::fs::read_to_string(self.metrics_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Observer that logs every step to `metrics.jsonl` and writes checkpoints, then forwards to
/// `inner` (progress bars and the like).
pub struct RunObserver<'a> {
    pub run: &'a RunDir,
    pub inner: &'a mut dyn TrainObserver,
}

impl TrainObserver for RunObserver<'_> {
    fn on_step(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        self.run.append_metrics(m)?;
        self.inner.on_step(m)
    }

    fn on_checkpoint(&mut self, step: usize, model: &Transformer, optimizer: &AdamW) -> Result<(), TrainError> {
        self.run.save_checkpoint(step, model, optimizer)?;
        self.inner.on_checkpoint(step, model, optimizer)
    }
}
