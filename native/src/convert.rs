//! `starling convert`: any model Starling loads (a GGUF file, dequantized; a Hugging Face
//! folder) written as a Hugging Face folder with float32 weights — so PyTorch and transformers
//! can run exactly the weights Starling runs (the peer benchmarks compare the two side by side).

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Device;

use starling_model::checkpoint::files::save_hf_folder;

use crate::common::load_model;

#[derive(clap::Args)]
pub struct Args {
    /// The model to convert: a GGUF file or a Hugging Face folder.
    #[arg(short, long)]
    model: PathBuf,
    /// A tokenizer.json to use instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The folder to write (replaced atomically if it exists).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    // Loaded on the CPU: only written out again.
    let loaded = load_model(&a.model, a.tokenizer.as_deref(), &Device::flex())?;
    save_hf_folder(&a.out, &loaded.model, &loaded.tokenizer)?;
    println!("wrote {} (float32 weights, config.json, tokenizer.json)", a.out.display());
    Ok(())
}
