//! `starling init-model`: a randomly initialised model of any shape, written as a Hugging Face
//! folder — for benchmarks at a real model's size without its weights (a GPU machine without
//! network gets SmolLM2-135M's shape from its `config.json`; PyTorch loads the same folder).

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;

use starling_model::Tokenizer;
use starling_model::checkpoint::files::save_hf_folder;
use starling_model::config::ModelConfig;
use starling_model::weights::init_transformer;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face `config.json` (Llama, Mistral, Qwen2, SmolLM2) giving the shape.
    #[arg(long)]
    config: PathBuf,
    /// The tokenizer.json to put beside the weights (its vocabulary must fit the config's).
    #[arg(long)]
    tokenizer: PathBuf,
    /// The folder to write (replaced atomically if it exists).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args) -> Result<()> {
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
    let config = ModelConfig::from_hf_json(&read(&a.config)?)
        .with_context(|| format!("{} is not a model config", a.config.display()))?;
    let tokenizer = Tokenizer::from_json(&read(&a.tokenizer)?)
        .with_context(|| format!("{} is not a tokenizer.json", a.tokenizer.display()))?;
    anyhow::ensure!(
        tokenizer.vocab_size() <= config.vocab_size,
        "the tokenizer has {} tokens but the config's vocabulary is {}: pass the model's own tokenizer.json",
        tokenizer.vocab_size(),
        config.vocab_size
    );
    // Initialised on the CPU: written once, read by whichever device benchmarks it.
    let model = init_transformer(&config, a.seed, &Device::flex())?;
    save_hf_folder(&a.out, &model, &tokenizer)?;
    println!(
        "wrote {} ({} layers, hidden {}, {:.1} M parameters, random weights, seed {})",
        a.out.display(),
        config.num_layers,
        config.hidden_size,
        config.num_parameters() as f64 / 1e6,
        a.seed
    );
    Ok(())
}
