//! `starling eval csqa | gsm8k`: zero-shot scoring of a base model or a Quiet-STaR checkpoint,
//! without and with thoughts: the Quiet-STaR paper's metric (the gold answer's probability
//! renormalised over the answer alphabet, thoughts sampled), and Starling's likelihood scores
//! (choice texts ranked by log-likelihood, the gold answer's NLL).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use starling_model::Tokenizer;
use starling_model::device::DeviceChoice;
use starling_quiet::QuietConfig;
use starling_quiet::QuietModel;
use starling_quiet::checkpoint::{is_quiet_checkpoint, load_quiet};
use starling_quiet::eval::{
    EvalOptions, OfficialOptions, OfficialSummary, official_scores, score_items, summarize, summarize_official,
};
use starling_tasks::{Item, OnBadLine, csqa, gsm8k};
use starling_thought::Kernel;

use crate::common::{bar, pick_device};
use crate::quiet::load_quiet_or_base;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    task: EvalTask,
}

#[derive(clap::Subcommand)]
enum EvalTask {
    /// CommonsenseQA (dev split JSONL): accuracy by choice likelihood, and NLL of the gold choice.
    Csqa(EvalArgs),
    /// GSM8K (test split JSONL): NLL of the gold answer.
    Gsm8k(EvalArgs),
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A Quiet-STaR checkpoint, or a base model (HF folder or GGUF; its mixing head is then
    /// untrained, w = 0, and both columns agree).
    #[arg(short, long)]
    model: PathBuf,
    /// The data set's JSONL file, in its distributed format.
    #[arg(long)]
    data: PathBuf,
    /// Score only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Which scores: the paper's metric, Starling's likelihood scores, or both.
    #[arg(long, value_enum, default_value_t = Metric::Both)]
    metric: Metric,
    /// Sequences per forward pass (the paper's metric: items, each repeated --samples times).
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    /// The paper's metric: thoughts sampled per item (the item's score is their mean).
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// The paper's metric: thought sampling temperature (1, as the official evaluation).
    #[arg(long, default_value_t = 1.0)]
    official_temperature: f64,
    /// Seed of the thought sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Likelihood scores: thought sampling temperature (0 = greedy: deterministic).
    #[arg(long, default_value_t = 0.0)]
    thought_temperature: f64,
    /// Think at every position (the same scores at the cost of thinking everywhere, as before
    /// thoughts were limited to the scored positions and shared prompts; for comparison).
    #[arg(long)]
    think_everywhere: bool,
    /// Thought length for a base model (a checkpoint keeps its own unless this is given).
    #[arg(long)]
    n_thought: Option<usize>,
    #[arg(long, default_value = "auto")]
    kernel: Kernel,
    /// Skip malformed JSONL lines instead of stopping at the first.
    #[arg(long)]
    skip_bad_lines: bool,
    /// Write one JSON line per item and metric here (`{"metric": …, …scores}`).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Metric {
    Official,
    Likelihood,
    Both,
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    match a.task {
        EvalTask::Csqa(e) => eval("csqa", e, device),
        EvalTask::Gsm8k(e) => eval("gsm8k", e, device),
    }
}

fn load_items(task: &str, a: &EvalArgs) -> Result<Vec<Item>> {
    let text = crate::common::read_data_file(&a.data)?;
    let origin = a.data.display().to_string();
    let on_bad = if a.skip_bad_lines { OnBadLine::Skip } else { OnBadLine::Error };
    let (items, skipped) = match task {
        "csqa" => {
            let p = csqa::parse_jsonl(&text, &origin, on_bad)?;
            (p.records, p.skipped)
        }
        _ => {
            let p = gsm8k::parse_jsonl(&text, &origin, on_bad)?;
            (p.records.into_iter().map(|(item, _)| item).collect(), p.skipped)
        }
    };
    if skipped > 0 {
        eprintln!("note: {origin}: skipped {skipped} malformed lines");
    }
    if items.is_empty() {
        bail!("{origin} holds no {task} items");
    }
    Ok(items.into_iter().take(a.limit.unwrap_or(usize::MAX)).collect())
}

/// A Quiet-STaR checkpoint as saved, or a base model wrapped with fresh thought parameters.
fn load(path: &Path, n_thought: Option<usize>, device: &burn::tensor::Device) -> Result<(QuietModel, Tokenizer, bool)> {
    if is_quiet_checkpoint(path) {
        let (mut m, tok) = load_quiet(path, device)?;
        if let Some(n) = n_thought {
            m.config.n_thought = n;
        }
        return Ok((m, tok, true));
    }
    let config =
        QuietConfig { n_thought: n_thought.unwrap_or(QuietConfig::default().n_thought), ..QuietConfig::default() };
    let (model, tokenizer) = load_quiet_or_base(path, config, device, 0)?;
    Ok((model, tokenizer, false))
}

fn eval(task: &str, a: EvalArgs, device: DeviceChoice) -> Result<()> {
    let items = load_items(task, &a)?;
    let dev = pick_device(device)?;
    let (model, tok, trained) = load(&a.model, a.n_thought, &dev.device)?;
    model.check_kernel(a.kernel)?;
    model.config.validate()?;
    if !trained {
        eprintln!(
            "note: {} is not a Quiet-STaR checkpoint: its mixing head is untrained (w = 0), so scores with thoughts equal those without",
            a.model.display()
        );
    }
    eprintln!("{} {task} items; thought {} tokens; device: {}", items.len(), model.config.n_thought, dev.name);
    let mut out = match &a.out {
        Some(p) => Some(std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?),
        None => None,
    };
    let mut write_err = None;
    let mut write = |metric: &str, row: serde_json::Value| {
        if let Some(f) = out.as_mut() {
            let mut row = row;
            row["metric"] = metric.into();
            if let Err(e) = writeln!(f, "{row}") {
                write_err.get_or_insert(e);
            }
        }
    };
    let t0 = Instant::now();
    let official = if a.metric != Metric::Likelihood {
        let opts = OfficialOptions {
            samples: a.samples.max(1),
            temperature: a.official_temperature,
            seed: a.seed,
            batch_size: a.batch_size,
            kernel: a.kernel,
            think_everywhere: a.think_everywhere,
        };
        let pb = bar(items.len() as u64, "paper's metric");
        let scores = official_scores(&model, &tok, &items, &opts, &mut |s| {
            pb.inc(1);
            write("official", serde_json::to_value(s).expect("JSON"));
        })?;
        pb.finish();
        Some((summarize_official(&scores, opts.samples), t0.elapsed().as_secs_f64()))
    } else {
        None
    };
    let t1 = Instant::now();
    let likelihood = if a.metric != Metric::Official {
        let opts = EvalOptions {
            thought_temperature: a.thought_temperature,
            batch_size: a.batch_size,
            kernel: a.kernel,
            think_everywhere: a.think_everywhere,
        };
        let pb = bar(items.len() as u64, "likelihood");
        let (mut done, mut right_base, mut right_thought) = (0usize, 0usize, 0usize);
        let scores = score_items(&model, &tok, &items, &opts, &mut |s| {
            done += 1;
            right_base += s.correct(false) as usize;
            right_thought += s.correct(true) as usize;
            if task == "csqa" {
                pb.set_prefix(format!(
                    "acc {:.3} → {:.3} with thoughts",
                    right_base as f64 / done as f64,
                    right_thought as f64 / done as f64
                ));
            }
            pb.inc(1);
            write("likelihood", serde_json::to_value(s).expect("JSON"));
        })?;
        pb.finish();
        Some((summarize(&scores), t1.elapsed().as_secs_f64()))
    } else {
        None
    };
    if let Some(e) = write_err {
        bail!("cannot write {}: {e}", a.out.as_deref().unwrap_or(Path::new("")).display());
    }
    println!("{task} zero-shot, {} items, {}", items.len(), a.model.display());
    println!("| | without thoughts | with thoughts |");
    println!("|---|---:|---:|");
    if let Some((s, secs)) = official {
        print_official(&s, a.official_temperature, secs);
    }
    if let Some((s, secs)) = likelihood {
        if let (Some(b), Some(t)) = (s.accuracy_base, s.accuracy_thought) {
            println!("| accuracy by choice likelihood ({secs:.0} s) | {:.2}% | {:.2}% |", 100.0 * b, 100.0 * t);
        }
        println!(
            "| gold answer NLL per token ({} tokens) | {:.4} | {:.4} |",
            s.gold_tokens, s.gold_nll_base, s.gold_nll_thought
        );
    }
    Ok(())
}

fn print_official(s: &OfficialSummary, temperature: f64, secs: f64) {
    println!(
        "| paper's metric: mean gold-answer probability over the alphabet ({} thought samples at temperature {temperature}, {secs:.0} s) | {:.2}% | {:.2}% ± {:.2} |",
        s.samples,
        100.0 * s.accuracy_base,
        100.0 * s.accuracy_thought,
        100.0 * s.stderr_thought
    );
}
