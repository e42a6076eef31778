//! Pieces shared by the commands: device pick, model loading, progress bars.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
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

/// The further devices of `--data-parallel count` beside `first`, each named on stderr.
pub fn more_devices(first: &SelectedDevice, count: u64) -> Result<Vec<burn::tensor::Device>> {
    let devices = starling_model::device::data_parallel_devices(first, count as usize)?;
    Ok(devices
        .into_iter()
        .enumerate()
        .map(|(i, (device, name))| {
            eprintln!("data parallel: device {}: {name}", i + 1);
            device
        })
        .collect())
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

/// The longest line a data file may have: far beyond any model's context (~16 M tokens), and
/// small enough that a file without line breaks is refused before it is held in memory.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A text data file (JSONL, a corpus, prompts), read line by line: a line longer than
/// [`MAX_LINE_BYTES`] is refused once that much of it is read, whatever the file's size.
pub fn read_data_file(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    read_bounded(std::io::BufReader::new(file), &path.display().to_string(), MAX_LINE_BYTES)
}

fn read_bounded(mut reader: impl std::io::BufRead, origin: &str, max_line: usize) -> Result<String> {
    use std::io::{BufRead, Read};
    let mut text = String::new();
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        // The limit is on the line's text: its `\n` or `\r\n` comes on top.
        let read = (&mut reader)
            .take(max_line as u64 + 2)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {origin}"))?;
        if read == 0 {
            break;
        }
        let text_len = line.len() - line.ends_with(b"\n") as usize - line.ends_with(b"\r\n") as usize;
        if text_len > max_line {
            bail!(
                "{origin}: line {number} is longer than {} MiB; a data line holds one example (split the \
                 text into lines, or check that this is the file you meant)",
                max_line >> 20
            );
        }
        let line = std::str::from_utf8(&line).with_context(|| format!("{origin}: line {number} is not UTF-8 text"))?;
        text.push_str(line);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_beyond_the_limit_is_refused_after_reading_only_the_limit() {
        // An endless line: the reader must stop by itself.
        let endless = std::io::BufReader::new(std::io::repeat(b'x'));
        let e = read_bounded(endless, "stream", 1 << 20).unwrap_err().to_string();
        assert!(e.contains("stream: line 1 is longer than 1 MiB"), "{e}");
        let e = read_bounded(&b"ok\nxxxxxxxxx\n"[..], "f", 8).unwrap_err().to_string();
        assert!(e.contains("line 2 is longer"), "{e}");
        // A line of exactly the limit passes, with either line ending; text comes back unchanged.
        assert_eq!(read_bounded(&b"12345678\nab"[..], "f", 8).unwrap(), "12345678\nab");
        assert_eq!(read_bounded(&b"12345678\r\n12345678"[..], "f", 8).unwrap(), "12345678\r\n12345678");
        assert!(read_bounded(&b"123456789"[..], "f", 8).is_err());
        let e = read_bounded(&b"ok\n\xff\n"[..], "f", 8).unwrap_err();
        assert!(format!("{e:#}").contains("f: line 2 is not UTF-8"), "{e:#}");
    }
}
