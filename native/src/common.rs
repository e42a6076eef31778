//! Pieces shared by the commands: device pick, model loading, progress bars.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use starling_model::checkpoint::files::{Checkpoint, open_checkpoint};
use starling_model::device::{
    BackendKind, DeviceChoice, DeviceReason, SelectedDevice, describe_compiler, select_device,
};
use starling_model::weights::load_transformer;
use starling_model::{Tokenizer, Transformer};

/// Picks the device and says which one and why (on stderr, so stdout stays clean for output).
pub fn pick_device(choice: DeviceChoice) -> Result<SelectedDevice> {
    let d = select_device(choice)?;
    let how_else = match &d.reason {
        DeviceReason::CpuAsked => " (--device cpu)",
        DeviceReason::GpuAsked { .. } => " (--device gpu)",
        DeviceReason::CudaAsked => " (--device cuda)",
        DeviceReason::AutoSoftwareOnly { .. } => "; --device gpu forces it",
        DeviceReason::AutoHardware | DeviceReason::AutoNoAdapter { .. } => "",
    };
    eprintln!("device: {} — {}{how_else}", d.name, d.reason);
    if d.backend != BackendKind::Flex {
        eprintln!("device: {}", describe_compiler(&d.device));
    }
    Ok(d)
}

/// The model a command works on.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// A Hugging Face model folder or a .gguf file.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Use this tokenizer.json instead of the model's own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load(&self, device: &burn::tensor::Device) -> Result<Loaded> {
        load_model(&self.model, self.tokenizer.as_deref(), device)
    }
}

pub struct Loaded {
    pub model: Transformer,
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
}

/// Opens a checkpoint and loads its weights onto `device`.
pub fn load_model(path: &Path, tokenizer: Option<&Path>, device: &burn::tensor::Device) -> Result<Loaded> {
    let t0 = Instant::now();
    let Checkpoint { path, config, weights, tokenizer, .. } = open_checkpoint(path, tokenizer)?;
    let (model, report) = load_transformer(&config, weights.as_ref(), device)?;
    let unused: Vec<&String> = report.unused.iter().filter(|n| !n.ends_with("rotary_emb.inv_freq")).collect();
    if !unused.is_empty() {
        eprintln!("note: {} tensors in the checkpoint are not used by the model (first: {})", unused.len(), unused[0]);
    }
    eprintln!(
        "model: {} — {} layers, d={}, {:.1}M parameters, loaded in {:.1}s",
        path.display(),
        config.num_layers,
        config.hidden_size,
        config.num_parameters() as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    Ok(Loaded { model, tokenizer, path })
}

/// A training run's progress on a bar: step and loss.
pub struct StepBar(pub ProgressBar);

impl starling_train::TrainObserver for StepBar {
    fn on_step(&mut self, m: &starling_train::StepMetrics) -> Result<(), starling_train::TrainError> {
        self.0.set_position(m.step as u64);
        self.0.set_prefix(format!("loss {:.4}", m.loss));
        Ok(())
    }
}

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({elapsed} elapsed, ~{eta} left) {prefix}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
