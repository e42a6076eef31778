//! `starling quiet train | generate | analyze | demo`: Quiet-STaR from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;

use starling_model::Tokenizer;
use starling_model::device::DeviceChoice;
use starling_model::generate::GenerateConfig;
use starling_model::sampling::SamplingConfig;
use starling_quiet::analyze::{TokenDelta, by_difficulty, token_deltas, token_deltas_batch};
use starling_quiet::checkpoint::{is_quiet_checkpoint, load_quiet};
use starling_quiet::config::{MixingWeight, PolicyReduction, QuietPreset};
use starling_quiet::generate::generate_thoughtful;
use starling_quiet::trainer::{QuietObserver, QuietRun, QuietRunConfig, QuietStepMetrics, train_quiet_data_parallel};
use starling_quiet::{QuietConfig, QuietModel};
use starling_thought::Kernel;
use starling_train::corpus::document_windows;
use starling_train::schedule::ScheduleKind;
use starling_train::trainer::TrainConfig;

use crate::common::{bar, load_model, more_devices, pick_device};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: QuietCommand,
}

#[derive(clap::Subcommand)]
enum QuietCommand {
    /// Train a model to think before every token, on plain text.
    Train(TrainArgs),
    /// Generate text with a thought before every token (KV-cached); shows each thought.
    Generate(GenerateArgs),
    /// Per-token log-probability with and without thoughts: which tokens do thoughts help?
    Analyze(AnalyzeArgs),
    /// The built-in demonstration: hidden multi-hop lookups, where thinking must help — a
    /// 2-layer model with Quiet-STaR against plain, pause and random-thought controls.
    Demo(crate::quiet_hops::Args),
    /// The earlier demonstration: a tiny model on two-digit sums, with and without thoughts.
    DemoSums(crate::quiet_demo::Args),
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    match a.command {
        QuietCommand::Train(t) => train(t, device),
        QuietCommand::Generate(g) => generate(g, device),
        QuietCommand::Analyze(z) => analyze(z, device),
        QuietCommand::Demo(d) => crate::quiet_hops::run(d, device),
        QuietCommand::DemoSums(d) => crate::quiet_demo::run(d, device),
    }
}

/// Quiet-STaR hyperparameters on the command line: a preset, and flags that change it.
#[derive(clap::Args, Clone)]
pub struct QuietArgs {
    /// `official`: the official code's objective exactly (9 sampled thought tokens, linear
    /// mixing weight, policy loss averaged over thought tokens, no post-thought loss, constant
    /// learning rate); `starling`: Starling's measured choices (README's table).
    #[arg(long, default_value = "starling")]
    pub preset: QuietPreset,
    /// Thought tokens between the start and end markers (default starling: 10, official: 9).
    #[arg(long)]
    pub n_thought: Option<usize>,
    /// True tokens after the thought that train and reward it (non-myopic loss) (default 4).
    #[arg(long)]
    pub n_talk: Option<usize>,
    /// Thoughts per position: the REINFORCE baseline is their mean; with 1, the base model's
    /// prediction (default 2).
    #[arg(long)]
    pub n_passes: Option<usize>,
    /// Weight of the REINFORCE loss (official 1e6, tuned for lr 1e-6 on Mistral-7B) (default 1e6).
    #[arg(long)]
    pub policy_weight: Option<f64>,
    /// Weight of the post-thought-only talk loss (Starling's addition; see README) (default starling:
    /// 0.5, official: 0).
    #[arg(long)]
    pub post_thought_weight: Option<f64>,
    /// Mixing weight from the head's output z: linear (w = z) or tanh-abs (w = tanh|z|)
    /// (default starling: tanh-abs, official: linear).
    #[arg(long)]
    pub mixing: Option<MixingWeight>,
    /// Policy loss over a thought's tokens: mean or sum (default starling: sum, official: mean).
    #[arg(long)]
    pub policy_reduction: Option<PolicyReduction>,
    /// Temperature of thought sampling during training (default 1).
    #[arg(long)]
    pub thought_temperature: Option<f64>,
    /// Keep negative rewards (the official code drops them).
    #[arg(long)]
    pub keep_negative_rewards: bool,
    /// The mixing weight a fresh mixing head starts at (default 0, as the official code: the
    /// model starts exactly at the base model, but a thought earns no reward while w = 0).
    #[arg(long)]
    pub initial_mixing_weight: Option<f64>,
    /// Learning-rate multiplier of the start/end embeddings (default 100, the official value
    /// for lr 1e-6; at larger learning rates it moves the markers fast).
    #[arg(long)]
    pub embedding_multiplier: Option<f64>,
}

impl QuietArgs {
    /// The preset's settings with the flags applied. The official preset is exact: a flag that
    /// changes it is refused, naming both.
    pub fn config(&self) -> Result<QuietConfig> {
        let p = self.preset;
        let mut c = p.config();
        apply(p, "n-thought", self.n_thought, &mut c.n_thought)?;
        apply(p, "n-talk", self.n_talk, &mut c.n_talk)?;
        apply(p, "n-passes", self.n_passes, &mut c.n_passes)?;
        apply(p, "policy-weight", self.policy_weight, &mut c.policy_loss_weight)?;
        apply(p, "post-thought-weight", self.post_thought_weight, &mut c.post_thought_loss_weight)?;
        apply(p, "mixing", self.mixing, &mut c.mixing)?;
        apply(p, "policy-reduction", self.policy_reduction, &mut c.policy_reduction)?;
        apply(p, "thought-temperature", self.thought_temperature, &mut c.thought_temperature)?;
        apply(p, "initial-mixing-weight", self.initial_mixing_weight, &mut c.initial_mixing_weight)?;
        apply(p, "embedding-multiplier", self.embedding_multiplier, &mut c.embedding_multiplier)?;
        if self.keep_negative_rewards {
            if p == QuietPreset::Official {
                bail!("--keep-negative-rewards contradicts --preset official (which drops them); drop one of them");
            }
            c.drop_negative_rewards = false;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Sets `field` to the flag's value when given; under the official preset a value that differs
/// from the preset's is refused.
fn apply<T: Copy + PartialEq + std::fmt::Display>(
    preset: QuietPreset,
    name: &str,
    given: Option<T>,
    field: &mut T,
) -> Result<()> {
    let Some(value) = given else { return Ok(()) };
    if preset == QuietPreset::Official && value != *field {
        bail!("--{name} {value} contradicts --preset official ({name} {field} there); drop one of them");
    }
    *field = value;
    Ok(())
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Base model (HF folder or GGUF) or a Quiet-STaR checkpoint to continue from.
    #[arg(short, long)]
    model: PathBuf,
    /// Training corpus: plain text (one document), or JSONL with one `{"text": …}` document per
    /// line (training windows never span two documents).
    #[arg(long)]
    text: PathBuf,
    /// Run folder (metrics.jsonl, checkpoints/); an existing run is resumed.
    #[arg(long, default_value = "runs/quiet")]
    out: PathBuf,
    /// Delete the run folder first.
    #[arg(long)]
    fresh: bool,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Micro-batches of --batch-size per optimizer step, gradients accumulated (a larger batch
    /// in the same memory).
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Share every micro-batch between this many devices of the --device kind, each holding a
    /// copy of the model and drawing its own thoughts (data parallel; see train-lm
    /// --data-parallel).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    data_parallel: u64,
    /// Positions per chunk of the vocabulary-sized loss terms (default: as many as fit 256 MiB).
    /// Smaller: less memory; the results do not change.
    #[arg(long)]
    loss_chunk: Option<usize>,
    /// Recompute cheap (memory-bound) activations in the backward pass instead of keeping them:
    /// less memory, more time (burn's gradient checkpointing).
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Tokens per training sequence.
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    #[arg(long, default_value_t = 1e-6)]
    lr: f64,
    #[arg(long, default_value_t = 20)]
    warmup_steps: usize,
    #[arg(long, default_value_t = 25)]
    save_every: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Thought-attention implementation: auto (fused WGSL on wgpu, split elsewhere), fused, split, dense.
    #[arg(long, default_value = "auto")]
    kernel: Kernel,
    #[command(flatten)]
    quiet: QuietArgs,
}

/// A base model or Quiet-STaR checkpoint, as a Quiet-STaR model with `config`.
pub fn load_quiet_or_base(
    path: &Path,
    config: QuietConfig,
    device: &Device,
    seed: u64,
) -> Result<(QuietModel, Tokenizer)> {
    if is_quiet_checkpoint(path) {
        let (mut m, tok) = load_quiet(path, device)?;
        m.config = config;
        return Ok((m, tok));
    }
    let loaded = load_model(path, None, device)?;
    Ok((QuietModel::new(loaded.model, &loaded.tokenizer, config, seed)?, loaded.tokenizer))
}

struct Bar(indicatif::ProgressBar);

impl QuietObserver for Bar {
    fn on_step(&mut self, m: &QuietStepMetrics) {
        self.0.set_position(m.step as u64);
        self.0.set_prefix(format!(
            "loss {:.3} talk {:.3} (base {:.3}) w {:.3} {:.0} tok/s",
            m.stats.loss, m.stats.talk_nll, m.stats.talk_nll_base, m.stats.mix_weight, m.tokens_per_second
        ));
    }
}

fn train(a: TrainArgs, device: DeviceChoice) -> Result<()> {
    let dev = pick_device(device)?;
    let more_devices: Vec<Device> = more_devices(&dev, a.data_parallel)?.into_iter().map(Device::autodiff).collect();
    let quiet = a.quiet.config()?;
    let cfg = QuietRunConfig {
        train: TrainConfig {
            steps: a.steps,
            batch_size: a.batch_size,
            grad_accum: a.grad_accum,
            max_len: a.seq_len,
            lr: a.lr,
            warmup_steps: a.warmup_steps,
            save_every: Some(a.save_every.max(1)),
            seed: a.seed,
            adamw: starling_train::optim::AdamWConfig { weight_decay: 0.001, ..Default::default() },
            // The official code's learning rate is constant after warm-up.
            schedule: if a.quiet.preset.constant_lr() { ScheduleKind::Constant } else { ScheduleKind::Cosine },
            ..TrainConfig::default()
        },
        quiet,
        loss_chunk: a.loss_chunk,
        thinking: Default::default(),
    };
    let text = crate::common::read_data_file(&a.text)?;
    if a.fresh && a.out.exists() {
        std::fs::remove_dir_all(&a.out).with_context(|| format!("cannot delete {}", a.out.display()))?;
    }
    let run = QuietRun::open(&a.out, cfg.clone())?;
    let ad = if a.gradient_checkpointing {
        dev.device.clone().autodiff().gradient_checkpointing()
    } else {
        dev.device.clone().autodiff()
    };
    let (model, tokenizer, start) = match run.resume(&ad)? {
        Some(r) => {
            eprintln!("resuming {} at step {}", a.out.display(), r.step);
            (r.model, r.tokenizer, Some((r.optimizer, r.step)))
        }
        None => {
            let (m, tok) = load_quiet_or_base(&a.model, cfg.quiet.clone(), &ad, a.seed)?;
            (m, tok, None)
        }
    };
    // A JSONL corpus is one document per line; windows never cross from one into the next.
    let jsonl = a.text.extension().is_some_and(|e| e == "jsonl");
    let eos = model.lm.config().eos_token_id;
    let corpus = document_windows(&text, &tokenizer, eos, a.seq_len, jsonl, &a.text.display().to_string())?;
    let seqs = corpus.windows;
    if jsonl {
        eprintln!(
            "{} documents ({} shorter than one --seq-len {} window, unused)",
            corpus.documents, corpus.too_short, a.seq_len
        );
    }
    eprintln!(
        "{} sequences of {} tokens; thought {} tokens, talk {}, {} passes",
        seqs.len(),
        a.seq_len,
        cfg.quiet.n_thought,
        cfg.quiet.n_talk,
        cfg.quiet.n_passes
    );
    let pb = bar(a.steps as u64, "quiet-star");
    let run_files = Some((&run, &tokenizer));
    let (_, history) =
        train_quiet_data_parallel(model, &more_devices, &seqs, &cfg, a.kernel, start, run_files, &mut Bar(pb.clone()))?;
    pb.finish();
    if let Some(last) = history.last() {
        println!("{}", serde_json::to_string(last)?);
    }
    if let Some((_, dir)) = run.checkpoints().pop() {
        println!("checkpoint: {}", dir.display());
    }
    Ok(())
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// A Quiet-STaR checkpoint (from `starling quiet train` or `quiet demo`).
    #[arg(short, long)]
    model: PathBuf,
    #[arg(short, long = "prompt", required = true)]
    prompts: Vec<String>,
    #[arg(short = 'n', long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Temperature of the real tokens (0 = greedy).
    #[arg(short, long, default_value_t = 0.0)]
    temperature: f32,
    /// Temperature of the thoughts (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    thought_temperature: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write every token with its thought and mixing weight as JSON lines here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn generate(a: GenerateArgs, device: DeviceChoice) -> Result<()> {
    let dev = pick_device(device)?;
    let (model, tok) = load_quiet(&a.model, &dev.device)?;
    let prompts = a.prompts.iter().map(|p| tok.encode(p, true)).collect::<std::result::Result<Vec<_>, _>>()?;
    let cfg = GenerateConfig {
        max_new_tokens: a.max_new_tokens,
        sampling: SamplingConfig { temperature: a.temperature, ..SamplingConfig::greedy() },
        eos_ids: model.lm.config().eos_token_id.into_iter().collect(),
        seed: a.seed,
        ..GenerateConfig::default()
    };
    let t0 = std::time::Instant::now();
    let out = generate_thoughtful(&model, &tok, &prompts, &cfg, a.thought_temperature, &mut |_, _| {})?;
    let secs = t0.elapsed().as_secs_f64();
    let mut json = match &a.json {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?),
        None => None,
    };
    let mut total = 0;
    for (prompt, g) in a.prompts.iter().zip(&out) {
        println!("{prompt}{}", g.text);
        for t in &g.tokens {
            println!(
                "  {:>12}  w={:.2}  Δlogp={:+.3}  thought: {:?}",
                format!("{:?}", t.text),
                t.mix_weight,
                t.logp_gain,
                t.thought
            );
            if let Some(f) = json.as_mut() {
                writeln!(f, "{}", serde_json::to_string(t)?)?;
            }
        }
        total += g.tokens.len();
    }
    eprintln!(
        "{total} tokens in {secs:.2}s ({:.1} tokens/s, thought {} tokens per token)",
        total as f64 / secs,
        model.config.n_thought
    );
    Ok(())
}

#[derive(clap::Args)]
struct AnalyzeArgs {
    #[arg(short, long)]
    model: PathBuf,
    /// Text to analyze (or --file).
    #[arg(long)]
    text: Option<String>,
    #[arg(long)]
    file: Option<PathBuf>,
    /// Thought temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    thought_temperature: f64,
    #[arg(long, default_value = "auto")]
    kernel: Kernel,
    /// Show this many tokens most helped and most hurt.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Held-out corpus (JSONL documents `{"text": …}` or plain text) to summarise instead: every
    /// token of --seq-len windows, thoughts' effect by how hard the base model finds the token.
    #[arg(long, conflicts_with_all = ["text", "file"])]
    corpus: Option<PathBuf>,
    /// Corpus mode: tokens per window.
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Corpus mode: windows per pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Corpus mode: use at most this many windows.
    #[arg(long)]
    max_windows: Option<usize>,
    /// Corpus mode: difficulty bands (equal numbers of tokens).
    #[arg(long, default_value_t = 5)]
    bands: usize,
}

fn analyze(a: AnalyzeArgs, device: DeviceChoice) -> Result<()> {
    if let Some(corpus) = &a.corpus {
        return analyze_corpus(&a, corpus, device);
    }
    let text = match (&a.text, &a.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => crate::common::read_data_file(f)?,
        _ => bail!("give --text TEXT or --file FILE"),
    };
    let dev = pick_device(device)?;
    let (model, tok) = load_quiet(&a.model, &dev.device)?;
    let ids = tok.encode(&text, false)?;
    model.check_length(ids.len())?;
    model.check_kernel(a.kernel)?;
    let deltas = token_deltas(&model, &ids, a.thought_temperature, a.kernel);
    println!("{:>5} {:>14} {:>9} {:>9} {:>7} {:>5}  thought", "index", "token", "logp", "+thought", "Δ", "w");
    for d in &deltas {
        let piece = tok.decode(&[d.id], false)?;
        println!(
            "{:>5} {:>14} {:>9.3} {:>9.3} {:>+7.3} {:>5.2}  {:?}",
            d.index,
            format!("{piece:?}"),
            d.logp_base,
            d.logp_thought,
            d.delta(),
            d.mix_weight,
            tok.decode(&d.thought_ids, false)?
        );
    }
    let mean = deltas.iter().map(|d| d.delta() as f64).sum::<f64>() / deltas.len().max(1) as f64;
    let mut sorted = deltas.clone();
    sorted.sort_by(|x, y| y.delta().total_cmp(&x.delta()));
    println!("mean Δ log-prob per token: {mean:+.4}");
    let show = |d: &starling_quiet::analyze::TokenDelta| {
        format!("{:?} {:+.3}", tok.decode(&[d.id], false).unwrap_or_default(), d.delta())
    };
    println!("most helped: {}", sorted.iter().take(a.top).map(show).collect::<Vec<_>>().join(", "));
    println!("most hurt:   {}", sorted.iter().rev().take(a.top).map(show).collect::<Vec<_>>().join(", "));
    Ok(())
}

/// `quiet analyze --corpus`: where do thoughts help, over a held-out corpus?
fn analyze_corpus(a: &AnalyzeArgs, corpus: &Path, device: DeviceChoice) -> Result<()> {
    let text = crate::common::read_data_file(corpus)?;
    let dev = pick_device(device)?;
    let (model, tok) = load_quiet(&a.model, &dev.device)?;
    model.check_kernel(a.kernel)?;
    model.check_length(a.seq_len)?;
    let jsonl = corpus.extension().is_some_and(|e| e == "jsonl");
    let eos = model.lm.config().eos_token_id;
    let w = document_windows(&text, &tok, eos, a.seq_len, jsonl, &corpus.display().to_string())?;
    let windows: Vec<Vec<u32>> = w.windows.into_iter().take(a.max_windows.unwrap_or(usize::MAX)).collect();
    if windows.is_empty() {
        bail!(
            "{} gives no window of {} tokens ({} documents, all shorter); use a smaller --seq-len",
            corpus.display(),
            a.seq_len,
            w.documents
        );
    }
    let pb = bar(windows.len() as u64, "windows");
    let mut deltas = Vec::new();
    for chunk in windows.chunks(a.batch_size.max(1)) {
        deltas.extend(token_deltas_batch(&model, chunk, a.thought_temperature, a.kernel).into_iter().flatten());
        pb.inc(chunk.len() as u64);
    }
    pb.finish();
    let n = deltas.len().max(1) as f64;
    let mean = |f: &dyn Fn(&TokenDelta) -> f64| deltas.iter().map(f).sum::<f64>() / n;
    println!(
        "{}: {} windows of {} tokens, {} tokens scored; mean NLL {:.4} without thoughts, {:.4} with (Δ log p {:+.4})",
        corpus.display(),
        windows.len(),
        a.seq_len,
        deltas.len(),
        mean(&|d| -d.logp_base as f64),
        mean(&|d| -d.logp_thought as f64),
        mean(&|d| d.delta() as f64)
    );
    println!("| base NLL band (nats) | tokens | mean base NLL | mean Δ log p | helped | mean w |");
    println!("|---|---:|---:|---:|---:|---:|");
    for b in by_difficulty(&deltas, a.bands) {
        println!(
            "| {:.2}–{:.2} | {} | {:.3} | {:+.4} | {:.1}% | {:.3} |",
            b.base_nll_min,
            b.base_nll_max,
            b.tokens,
            b.mean_base_nll,
            b.mean_delta,
            100.0 * b.helped,
            b.mean_weight
        );
    }
    Ok(())
}
