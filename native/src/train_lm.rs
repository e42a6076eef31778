//! `starling train-lm`: language-model training from scratch or fine-tuning, with checkpoints,
//! exact resume and metrics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;

use burn::module::Module;
use starling_model::checkpoint::files::save_hf_folder;
use starling_model::device::DeviceChoice;
use starling_model::generate::{GenerateConfig, generate};
use starling_model::weights::init_transformer;
use starling_model::{ModelConfig, Tokenizer, Transformer};
use starling_tasks::arithmetic::{self, Pool};
use starling_train::Example;
use starling_train::corpus::{BadLines, jsonl_examples, text_examples};
use starling_train::optim::{AdamW, AdamWConfig};
use starling_train::run_dir::{RunDir, RunObserver};
use starling_train::schedule::ScheduleKind;
use starling_train::trainer::{StartPoint, StepMetrics, TrainConfig, TrainError, TrainObserver, train_data_parallel};

use crate::common::{bar, load_model, more_devices, pick_device};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Builtin {
    /// n-digit addition with a column-by-column scratchpad (the STaR paper's arithmetic format).
    Arithmetic,
}

#[derive(clap::Args)]
pub struct Args {
    /// Run folder: checkpoints, metrics.jsonl and the final model (in OUT/model).
    /// Default: runs/ plus the task or the data file name.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Delete the run folder first if it holds an earlier run (instead of refusing to touch it).
    #[arg(long, conflicts_with = "resume")]
    fresh: bool,
    /// Fine-tune this model (HF folder or GGUF); without it a small model is trained from scratch.
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Training data: .txt (one text stream) or .jsonl ({"text"} or {"prompt","completion"} per line).
    #[arg(long, conflicts_with = "builtin")]
    data: Option<PathBuf>,
    /// Held-out data in the same format (default: none, or the built-in task's held-out set).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Train on a built-in task instead of a file.
    #[arg(long)]
    builtin: Option<Builtin>,
    /// Built-in arithmetic: digit counts of the training problems, as MIN-MAX.
    #[arg(long, default_value = "1-5", value_parser = parse_digit_range)]
    digits: (usize, usize),
    /// Built-in arithmetic: number of training problems.
    #[arg(long, default_value_t = 4000)]
    problems: usize,
    /// Skip malformed JSONL lines instead of stopping at the first one.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Continue the run in --out from its newest checkpoint.
    #[arg(long)]
    resume: bool,

    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Share every batch between this many devices of the --device kind, each holding a copy of
    /// the model (data parallel; gradients summed on the first): GPUs 0 … N−1 on wgpu or CUDA;
    /// on the CPU the copies take turns on the one CPU (a check, no speed-up). The steps are the
    /// one-device steps on the same --batch-size.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    data_parallel: u64,
    /// Longest training example in tokens.
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Peak learning rate (default: 3e-3 from scratch, 5e-5 when fine-tuning).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value = "cosine")]
    schedule: ScheduleKind,
    #[arg(long, default_value_t = 0.1)]
    min_lr_ratio: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Clip the global gradient norm (0 disables).
    #[arg(long, default_value_t = 1.0)]
    grad_clip: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 50)]
    eval_every: usize,
    #[arg(long, default_value_t = 100)]
    save_every: usize,
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,

    /// From-scratch model size: layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// From-scratch model size: hidden width.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// From-scratch model size: attention heads (head size = hidden / heads).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// From-scratch model size: key/value heads (grouped-query attention).
    #[arg(long, default_value_t = 2)]
    kv_heads: usize,
}

struct Data {
    tokenizer: Tokenizer,
    train: Vec<Example>,
    eval: Vec<Example>,
    /// Built-in arithmetic: held-out problems to test by generation.
    probe: Vec<arithmetic::Addition>,
}

const SPECIALS: [&str; 2] = ["<pad>", "<eos>"];

/// The token that ends an example: the loaded model's EOS, or the from-scratch tokenizer's `<eos>`.
fn end_of_text(loaded: &Option<crate::common::Loaded>, tokenizer: &Tokenizer) -> Option<u32> {
    loaded.as_ref().and_then(|l| l.model.config().eos_token_id).or_else(|| tokenizer.token_to_id("<eos>"))
}

/// `2-5` → (2, 5); `3` → (3, 3).
pub fn parse_digit_range(s: &str) -> Result<(usize, usize), String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let p = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("`{s}` is not a digit range like 1-5"));
    let (lo, hi) = (p(lo)?, p(hi)?);
    if !(1 <= lo && lo <= hi && hi <= 18) {
        return Err(format!("digit range `{s}` must satisfy 1 <= min <= max <= 18"));
    }
    Ok((lo, hi))
}

fn builtin_data(tokenizer: Tokenizer, eos: Option<u32>, seed: u64, digits: (usize, usize), n: usize) -> Result<Data> {
    // The question is context; the loss is on the scratchpad and the answer (loss masking, as
    // STaR trains on rationales), so the model spends its capacity on the working.
    let to_example = |p: &arithmetic::Addition| -> Result<Example> {
        let question = tokenizer.encode(&p.question(), true)?;
        let mut working = tokenizer.encode(&p.worked_answer(), false)?;
        working.extend(eos);
        Ok(Example::prompt_completion(&question, &working))
    };
    // Training sums from the pretraining pool, held-out ones from the dev pool: never the same.
    let train_problems = arithmetic::problems(Pool::Pretrain, seed, n, digits.0, digits.1);
    let held_out = arithmetic::problems(Pool::Dev, seed.wrapping_add(1_000_003), 200, 1, digits.1.max(5));
    Ok(Data {
        train: train_problems.iter().map(to_example).collect::<Result<_>>()?,
        eval: held_out.iter().map(to_example).collect::<Result<_>>()?,
        probe: held_out.into_iter().take(100).collect(),
        tokenizer,
    })
}

/// Examples from the contents `text` of the data file `path` (.jsonl or plain text).
fn file_examples(
    path: &Path,
    text: &str,
    tokenizer: &Tokenizer,
    eos: Option<u32>,
    max_len: usize,
    bad: BadLines,
) -> Result<Vec<Example>> {
    let origin = path.display().to_string();
    if path.extension().is_some_and(|e| e == "jsonl") {
        let (ex, report) = jsonl_examples(text, tokenizer, eos, max_len, &origin, bad)?;
        if report.skipped_lines > 0 {
            eprintln!("note: {origin}: skipped {} malformed lines", report.skipped_lines);
        }
        if report.truncated > 0 {
            eprintln!(
                "note: {origin}: {} examples are longer than --max-len {max_len} and will be cut",
                report.truncated
            );
        }
        Ok(ex)
    } else {
        Ok(text_examples(text, tokenizer, max_len, &origin)?)
    }
}

/// The characters of a text, for a from-scratch character-level tokenizer.
fn alphabet_of(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    chars.into_iter().collect()
}

struct Progress {
    pb: ProgressBar,
    last_eval: Option<f64>,
}

impl TrainObserver for Progress {
    fn on_step(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        if m.eval_loss.is_some() {
            self.last_eval = m.eval_loss;
        }
        self.pb.set_position(m.step as u64);
        let eval = self.last_eval.map(|e| format!(" eval {e:.4}")).unwrap_or_default();
        self.pb.set_prefix(format!(
            "loss {:.4}{eval} lr {:.2e} |g| {:.2} {:.0} tok/s",
            m.loss, m.lr, m.grad_norm, m.tokens_per_second
        ));
        Ok(())
    }

    fn on_checkpoint(&mut self, step: usize, _m: &Transformer, _o: &AdamW) -> Result<(), TrainError> {
        self.pb.println(format!("checkpoint written at step {step}"));
        Ok(())
    }
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    if a.data.is_none() && a.builtin.is_none() {
        bail!("nothing to train on: pass --data FILE (.txt or .jsonl) or --builtin arithmetic");
    }
    let out = run_folder(&a)?;
    let dev = pick_device(device)?;
    let train_device = dev.device.clone().autodiff();
    let more_devices: Vec<burn::tensor::Device> =
        more_devices(&dev, a.data_parallel)?.into_iter().map(burn::tensor::Device::autodiff).collect();
    let cfg = train_config(&a);
    let loaded = match &a.model {
        Some(path) => Some(load_model(path, None, &train_device)?),
        None => None,
    };
    if let Some(l) = &loaded
        && a.max_len > l.model.config().max_position_embeddings
    {
        bail!(
            "--max-len {} exceeds the model's context of {} tokens; lower --max-len",
            a.max_len,
            l.model.config().max_position_embeddings
        );
    }
    let data = load_data(&a, &loaded)?;
    let eos = end_of_text(&loaded, &data.tokenizer);

    let run = RunDir::create(&out, &cfg, &data.tokenizer)?;
    let (model, start) = starting_point(&a, &run, loaded, &data.tokenizer, &train_device)?;
    eprintln!(
        "data: {} training examples, {} held out; {} steps × {} examples",
        data.train.len(),
        data.eval.len(),
        cfg.steps,
        cfg.batch_size * cfg.grad_accum
    );

    let t0 = Instant::now();
    let pb = bar(cfg.steps as u64, "training");
    let mut progress = Progress { pb, last_eval: None };
    let mut observer = RunObserver { run: &run, inner: &mut progress };
    let eval = (!data.eval.is_empty()).then_some(data.eval.as_slice());
    let (model, history) = train_data_parallel(model, &more_devices, &data.train, eval, &cfg, start, &mut observer)?;
    progress.pb.finish_and_clear();
    let model = model.valid();
    let final_dir = out.join("model");
    save_hf_folder(&final_dir, &model, &data.tokenizer)?;
    report(&run, &history, cfg.steps, t0.elapsed().as_secs_f64());
    println!("model saved to {} (metrics: {})", final_dir.display(), out.join("metrics.jsonl").display());

    if !data.probe.is_empty() {
        probe_arithmetic(&model, &data.tokenizer, &data.probe, eos)?;
    }
    Ok(())
}

/// The run folder (`--out`, or named after the data), emptied first with `--fresh`.
fn run_folder(a: &Args) -> Result<PathBuf> {
    let out = match (&a.out, a.builtin, &a.data) {
        (Some(o), _, _) => o.clone(),
        (None, Some(Builtin::Arithmetic), _) => PathBuf::from("runs/arithmetic"),
        (None, None, Some(d)) => PathBuf::from("runs").join(d.file_stem().unwrap_or_default()),
        (None, None, None) => bail!("nothing to train on: pass --data FILE (.txt or .jsonl) or --builtin arithmetic"),
    };
    if a.fresh && out.join("train_config.json").exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot delete {}", out.display()))?;
        eprintln!("--fresh: deleted the earlier run in {}", out.display());
    }
    Ok(out)
}

fn train_config(a: &Args) -> TrainConfig {
    let from_scratch = a.model.is_none();
    TrainConfig {
        steps: a.steps,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        max_len: a.max_len,
        lr: a.lr.unwrap_or(if from_scratch { 3e-3 } else { 5e-5 }),
        warmup_steps: a.warmup,
        schedule: a.schedule,
        min_lr_ratio: a.min_lr_ratio,
        adamw: AdamWConfig { weight_decay: a.weight_decay, ..AdamWConfig::default() },
        grad_clip: (a.grad_clip > 0.0).then_some(a.grad_clip),
        seed: a.seed,
        eval_every: Some(a.eval_every.max(1)),
        save_every: Some(a.save_every.max(1)),
        keep_checkpoints: a.keep_checkpoints,
    }
}

/// The tokenizer and the examples: a loaded model brings its tokenizer; from scratch, one
/// character (or built-in piece) per token.
fn load_data(a: &Args, loaded: &Option<crate::common::Loaded>) -> Result<Data> {
    let bad = if a.skip_bad_lines { BadLines::Skip } else { BadLines::Error };
    let train_text = a.data.as_ref().map(|p| crate::common::read_data_file(p)).transpose()?;
    let tokenizer = match (loaded, &train_text) {
        (Some(l), _) => l.tokenizer.clone(),
        (None, Some(text)) => Tokenizer::char_level(&alphabet_of(text), &SPECIALS)?,
        (None, None) => starling_star::builtin::tokenizer()?,
    };
    let eos = end_of_text(loaded, &tokenizer);
    match (a.builtin, &a.data, &train_text) {
        (Some(Builtin::Arithmetic), _, _) => builtin_data(tokenizer, eos, a.seed, a.digits, a.problems),
        (None, Some(path), Some(text)) => {
            let train = file_examples(path, text, &tokenizer, eos, a.max_len, bad)?;
            let eval = match &a.eval_data {
                Some(p) => file_examples(p, &crate::common::read_data_file(p)?, &tokenizer, eos, a.max_len, bad)?,
                None => Vec::new(),
            };
            Ok(Data { tokenizer, train, eval, probe: Vec::new() })
        }
        _ => bail!("nothing to train on: pass --data FILE (.txt or .jsonl) or --builtin arithmetic"),
    }
}

/// Where training starts: the run's newest checkpoint with `--resume`, else the loaded model or
/// a new one. A folder that already holds a run is never trained over without `--resume`.
fn starting_point(
    a: &Args,
    run: &RunDir,
    loaded: Option<crate::common::Loaded>,
    tokenizer: &Tokenizer,
    device: &burn::tensor::Device,
) -> Result<(Transformer, Option<StartPoint>)> {
    if !a.resume
        && let Some((step, _)) = run.latest_checkpoint()
    {
        bail!(
            "{} already holds a run (checkpoint at step {step}); pass --resume to continue it, --fresh to \
                 start over, or choose another --out",
            run.root.display()
        );
    }
    match run.resume(device)? {
        Some(r) => {
            eprintln!("resuming from {} (step {} of {})", r.checkpoint.display(), r.step, a.steps);
            Ok((r.model, Some(r.start)))
        }
        None => {
            if a.resume {
                // Killed before its first checkpoint (or never started): the run starts from the
                // beginning, as `star --resume` does; the same seed gives the same run.
                eprintln!("resuming: {} holds no checkpoint yet; starting from step 0", run.root.display());
            }
            Ok((
                match loaded {
                    Some(l) => l.model,
                    None => new_model(a, tokenizer, device)?,
                },
                None,
            ))
        }
    }
}

/// A from-scratch model of the size the arguments ask for.
fn new_model(a: &Args, tokenizer: &Tokenizer, device: &burn::tensor::Device) -> Result<Transformer> {
    let mc = ModelConfig::builder(tokenizer.vocab_size())
        .layers(a.layers)
        .hidden(a.hidden)
        .heads(a.heads, a.kv_heads)
        .context(a.max_len.max(512))
        .special_tokens(tokenizer)
        .build()?;
    eprintln!(
        "model: new {:.2}M-parameter model ({} layers, d={}, vocab {})",
        mc.num_parameters() as f64 / 1e6,
        mc.num_layers,
        mc.hidden_size,
        mc.vocab_size
    );
    Ok(init_transformer(&mc, a.seed, device)?)
}

/// The run's loss from its first logged step to its last, and the latest held-out loss.
fn report(run: &RunDir, history: &[StepMetrics], steps: usize, seconds: f64) {
    let all: Vec<StepMetrics> = run.read_metrics();
    let first = all.first().map(|m| m.loss).unwrap_or(f64::NAN);
    let last = history.last().or(all.last()).map(|m| m.loss).unwrap_or(f64::NAN);
    println!("trained {steps} steps in {seconds:.1}s: loss {first:.4} → {last:.4}");
    if let Some(e) = all.iter().rev().find_map(|m| m.eval_loss) {
        println!("held-out loss {e:.4} (perplexity {:.3})", e.exp());
    }
}

/// Greedy answers to held-out addition problems: exact-match accuracy by digit count.
fn probe_arithmetic(
    model: &Transformer,
    tokenizer: &Tokenizer,
    probe: &[arithmetic::Addition],
    eos: Option<u32>,
) -> Result<()> {
    let prompts: Vec<String> = probe.iter().map(|p| p.question()).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let cfg = GenerateConfig {
        max_new_tokens: 220,
        eos_ids: eos.into_iter().collect(),
        stop_strings: vec!["\nInput:".into()],
        ..GenerateConfig::default()
    };
    let out = generate(model, tokenizer, &refs, true, &cfg, &mut |_| {})?;
    let mut by_digits: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
    for (p, g) in probe.iter().zip(&out) {
        let e = by_digits.entry(p.digits()).or_default();
        e.1 += 1;
        if arithmetic::parse_answer(&g.text) == Some(p.sum()) {
            e.0 += 1;
        }
    }
    println!("held-out addition, greedy answers (exact match):");
    for (d, (ok, n)) in &by_digits {
        println!("  {d} digits: {ok}/{n}");
    }
    println!("example:\n{}{}", prompts[0], out[0].text);
    Ok(())
}
