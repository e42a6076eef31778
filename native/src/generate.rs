//! `starling generate`: batched, streamed generation.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};

use starling_model::device::DeviceChoice;
use starling_model::generate::{FinishReason, GenerateConfig, generate};
use starling_model::sampling::SamplingConfig;

use crate::common::{ModelArgs, pick_device};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// A prompt; repeat for a batch (prompts may differ in length).
    #[arg(short, long = "prompt")]
    prompts: Vec<String>,
    /// A file with one prompt per line (`\n` inside a line is read as a newline).
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    /// Most tokens generated per prompt.
    #[arg(short = 'n', long, default_value_t = 64)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(short, long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only among the most likely tokens that together hold this probability (nucleus).
    #[arg(long)]
    top_p: Option<f32>,
    /// Seed of the sampling noise (same seed, same device: same text).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop a row when its text contains this string (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    /// Do not add the tokenizer's special tokens (e.g. a BOS) to the prompt; by default they are
    /// added, as transformers does.
    #[arg(long)]
    no_special_tokens: bool,
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let mut prompts = a.prompts.clone();
    if let Some(f) = &a.prompts_file {
        let text = crate::common::read_data_file(f)?;
        prompts.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.replace("\\n", "\n")));
    }
    if prompts.is_empty() {
        bail!("no prompt given; pass --prompt TEXT (repeatable) or --prompts-file FILE");
    }
    let dev = pick_device(device)?;
    let loaded = a.model.load(&dev.device)?;
    let eos_ids = match (a.ignore_eos, loaded.model.config().eos_token_id) {
        (false, Some(e)) => vec![e],
        _ => vec![],
    };
    let cfg = GenerateConfig {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, suppress: vec![] },
        stop_strings: a.stop.clone(),
        eos_ids,
        seed: a.seed,
    };
    let single = prompts.len() == 1;
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    if single {
        print!("{}", prompts[0]);
        std::io::stdout().flush().ok();
    }
    let t0 = Instant::now();
    let mut stdout = std::io::stdout();
    let out = generate(&loaded.model, &loaded.tokenizer, &refs, !a.no_special_tokens, &cfg, &mut |ev| {
        if single {
            let _ = write!(stdout, "{}", ev.text);
            let _ = stdout.flush();
        }
    })?;
    let secs = t0.elapsed().as_secs_f64();
    if single {
        println!();
    } else {
        for (i, (p, g)) in prompts.iter().zip(&out).enumerate() {
            println!("=== {i} ===\n{p}{}", g.text);
        }
    }
    let new_tokens: usize = out.iter().map(|g| g.ids.len()).sum();
    let reasons: Vec<&str> = out
        .iter()
        .map(|g| match g.finish {
            FinishReason::Eos => "eos",
            FinishReason::StopString => "stop",
            FinishReason::Length => "length",
        })
        .collect();
    eprintln!(
        "{new_tokens} tokens in {secs:.2}s ({:.1} tokens/s, batch {}), finished by: {}",
        new_tokens as f64 / secs,
        prompts.len(),
        reasons.join(" ")
    );
    Ok(())
}
