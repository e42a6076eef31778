//! `starling perplexity`: how well a model predicts a text file.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};

use starling_model::device::DeviceChoice;
use starling_model::score::stream_nll;

use crate::common::{ModelArgs, bar, pick_device};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The text to score (UTF-8).
    #[arg(short, long)]
    file: PathBuf,
    /// Tokens per window (default: the model's context, at most 1024).
    #[arg(long)]
    window: Option<usize>,
    /// Tokens the window advances by; the rest of a window is context (default: window / 2).
    #[arg(long)]
    stride: Option<usize>,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 4)]
    batch: usize,
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let text = crate::common::read_data_file(&a.file)?;
    if text.trim().is_empty() {
        bail!("{} is empty; perplexity needs some text", a.file.display());
    }
    let dev = pick_device(device)?;
    let loaded = a.model.load(&dev.device)?;
    // With the tokenizer's special tokens (a BOS for models that expect one), as transformers does.
    let ids = loaded.tokenizer.encode(&text, true)?;
    if ids.len() < 2 {
        bail!("{} has fewer than two tokens", a.file.display());
    }
    let window = a.window.unwrap_or(loaded.model.config().max_position_embeddings.min(1024));
    let stride = a.stride.unwrap_or((window / 2).max(1));
    let t0 = Instant::now();
    let pb = bar(0, "scoring");
    let s = stream_nll(&loaded.model, &ids, window, stride, a.batch, &mut |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish_and_clear();
    println!(
        "{}: {} tokens scored, mean NLL {:.4} nats/token, perplexity {:.3} (window {window}, stride {stride}, {:.1}s)",
        a.file.display(),
        s.tokens,
        s.mean(),
        s.perplexity(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
