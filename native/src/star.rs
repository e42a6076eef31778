//! `starling star`: the STaR loop (rationale generation, rationalization, filtering, fine-tuning
//! from the base model) with every iteration's artefacts on disk; and `starling baseline`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;

use starling_model::device::DeviceChoice;
use starling_model::generate::GenerateConfig;
use starling_model::prefix::PrefixStore;
use starling_model::sampling::SamplingConfig;
use starling_model::{Tokenizer, Transformer};
use starling_star::attempt::Generator;
use starling_star::builtin;
use starling_star::config::fine_tuning;
use starling_star::evaluate::evaluate;
use starling_star::report::{IterationRow, markdown_table};
use starling_star::run::{Phase, StarObserver, StarRun, Stop};
use starling_star::{BaseGate, StarConfig};
use starling_star::{Finish, Shard, ShardOutcome};
use starling_tasks::{PromptStyle, TaskKind};
use starling_train::trainer::{StepMetrics, TrainConfig};

use crate::builtin_base::BaseArgs;
use crate::common::{bar, more_devices, pick_device};
use crate::tasks_args::{Task, TaskArgs, TaskChoice};

/// Fine-tuning and decoding settings shared by `star` and the direct fine-tune baseline.
#[derive(clap::Args)]
pub struct TuneArgs {
    /// A pretrained model (HF folder or GGUF) to start from. Without it (arithmetic only), the
    /// built-in base model: the one shipped in the repository, or one pretrained on a built-in
    /// corpus (see the --base-* options).
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub base: BaseArgs,
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Longest training example in tokens (question + rationale + answer).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Learning rate (default: 1e-3 for the built-in base model, 1e-5 for a pretrained model).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Sampling temperature for rationales (0 = greedy; the official STaR code uses 0.01, which
    /// is greedy in practice).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Longest completion in tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Questions per generation step (progress and resume go by steps).
    #[arg(long, default_value_t = 64)]
    pub gen_batch: usize,
    /// Rows decoding at once: a finished row takes the next question of the step (continuous
    /// batching). Default: all of the step's questions at once.
    #[arg(long)]
    pub gen_rows: Option<usize>,
    /// Few-shot exemplars in prompts (default: 0 for the built-in model, which learned the
    /// format in pretraining; else all of them).
    #[arg(long)]
    pub shots: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub tune: TuneArgs,
    /// Run folder (default: runs/star-TASK).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Delete an earlier run in the folder first.
    #[arg(long, conflicts_with = "resume")]
    pub fresh: bool,
    /// Continue the run in the folder where it stopped (finished phases are not redone).
    #[arg(long)]
    pub resume: bool,
    /// Outer iterations (default: 2 for the built-in model, whose first iteration already learns
    /// what its base can rationalize, within the 10-minute budget; 5 for a pretrained one).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Only prepare the built-in base model in --base-dir (regenerating it when it was made by
    /// another recipe) — or take the -m model — score it on the dev set without and with the
    /// hint, say whether it passes the gate, and stop.
    #[arg(long, conflicts_with_all = ["resume", "fresh"])]
    pub base_only: bool,
    /// Skip the base-model gate (by default, for the built-in arithmetic task, the base model must
    /// solve short sums reliably, the longest rarely, and every length with the hint, or STaR
    /// does not start).
    #[arg(long)]
    pub no_gate: bool,
    /// Train only on rationales whose every step is right (arithmetic: every scratchpad line);
    /// the paper filters on the final answer alone.
    #[arg(long)]
    pub require_sound: bool,
    /// Share of rationalizations trained on with the hint left in the question (the official
    /// code's p_show_hint_save; default 0).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub p_show_hint_save: f64,
    /// Prompt fine-tuned models without few-shot exemplars (the official code's --no_prompt).
    #[arg(long)]
    pub no_prompt: bool,
    /// The ablation "STaR without rationalization": wrong answers are only dropped.
    #[arg(long)]
    pub no_rationalization: bool,
    /// Fine-tuning steps of iteration 1 (default: 400 for the built-in model — measured: fewer
    /// leave long sums half learned, and the next iteration's model no longer rationalizes; 40 as
    /// in the official code for a pretrained one).
    #[arg(long)]
    pub first_steps: Option<usize>,
    /// Growth of the step count per iteration.
    #[arg(long, default_value_t = 1.2)]
    pub step_growth: f64,
    /// Fine-tune each iteration for this many passes over its kept and rationalized examples,
    /// instead of --first-steps/--step-growth (a small kept set is then not repeated for 40+
    /// steps regardless of its size). Warm-up is then at most a quarter of the steps.
    #[arg(long, conflicts_with_all = ["first_steps"])]
    pub epochs: Option<f64>,
    /// Stop after this many iterations without a better dev accuracy (0: never).
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// Generate only shard K of N (counting from 0) of the current iteration's rationales, into
    /// the run folder's iter-NN/shards/, and stop: one task of a cluster job array. Without K/N:
    /// from the scheduler (SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT, or
    /// JOB_COMPLETION_INDEX and STARLING_SHARDS). The run must have been started with --merge.
    #[arg(long, value_name = "K/N", num_args = 0..=1, default_missing_value = "scheduler",
          conflicts_with_all = ["fresh", "resume", "base_only", "merge"])]
    pub shard: Option<String>,
    /// Share fine-tuning's batches between this many devices of the --device kind, each holding
    /// a copy of the model (data parallel, gradients summed on the first; see train-lm
    /// --data-parallel). Generation and evaluation stay on the first device.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub data_parallel: u64,
    /// The rest of a run whose generation is sharded: start the run (the base model's
    /// evaluation) or continue it — merge the current iteration's shards, fine-tune, evaluate —
    /// and stop where the next iteration's rationales are due.
    #[arg(long, conflicts_with_all = ["resume", "base_only"])]
    pub merge: bool,
}

impl TuneArgs {
    pub fn builtin(&self) -> bool {
        self.model.is_none()
    }

    pub fn train_config(&self, steps: usize) -> TrainConfig {
        let lr = self.lr.unwrap_or(if self.builtin() { 1e-3 } else { 1e-5 });
        TrainConfig {
            steps,
            grad_accum: self.grad_accum,
            seed: self.seed,
            save_every: Some(100),
            ..fine_tuning(self.batch_size, lr, self.warmup, self.max_len)
        }
    }

    pub fn sampling(&self) -> SamplingConfig {
        SamplingConfig { temperature: self.temperature, top_p: self.top_p, ..SamplingConfig::greedy() }
    }

    /// Refuses early when a task needs a pretrained model and none was given.
    pub fn check(&self, task: &TaskArgs) -> Result<()> {
        if self.model.is_none() && task.task != TaskChoice::Arithmetic {
            bail!("--task csqa/gsm8k/qa needs a pretrained model: pass -m MODEL (an HF folder or a GGUF file)");
        }
        Ok(())
    }

    /// The base model's path and tokenizer: the given model, or the built-in one (checked
    /// against its recipe; prepared when missing, or when `prepare`).
    pub fn base(
        &self,
        task: &TaskArgs,
        device: &burn::tensor::Device,
        prepare: bool,
    ) -> Result<(PathBuf, starling_model::Tokenizer)> {
        match &self.model {
            Some(p) => {
                let ck = starling_model::checkpoint::files::open_checkpoint(p, None)?;
                Ok((p.clone(), ck.tokenizer))
            }
            None => {
                self.check(task)?;
                Ok((self.base.model(device, prepare)?, builtin::tokenizer()?))
            }
        }
    }

    /// Greedy generation for `task` with `model`, prompted with `shots` exemplars (default: none
    /// for the built-in model, all of them for a pretrained one), the exemplars' keys and values
    /// kept in `prefixes` (computed once for `model`).
    pub fn generator<'a>(
        &self,
        task: &'a Task,
        choice: TaskChoice,
        model: &'a Transformer,
        tokenizer: &'a Tokenizer,
        shots: Option<usize>,
        prefixes: Option<&'a PrefixStore>,
    ) -> Generator<'a> {
        let exemplars = &task.data.exemplars;
        let shots = shots.unwrap_or(if self.builtin() { 0 } else { exemplars.len() });
        Generator {
            model,
            tokenizer,
            task: task.kind,
            exemplars: &exemplars[..shots.min(exemplars.len())],
            decode: GenerateConfig {
                max_new_tokens: self.default_max_new_tokens(choice),
                eos_ids: model.config().eos_token_id.into_iter().collect(),
                ..GenerateConfig::default()
            },
            prefixes: prefixes.map(|p| (p, 0)),
            max_rows: self.gen_rows,
        }
    }

    pub fn default_max_new_tokens(&self, task: TaskChoice) -> usize {
        self.max_new_tokens.unwrap_or(match task {
            TaskChoice::Arithmetic => 160,
            TaskChoice::Csqa | TaskChoice::Qa => 96,
            TaskChoice::Gsm8k => 256,
        })
    }
}

/// Progress bars per phase, and the table as iterations finish.
struct Progress {
    /// The gate the run checks after iteration 0, to print its verdict.
    gate: Option<BaseGate>,
    pb: Option<ProgressBar>,
}

impl Progress {
    fn finish(&mut self) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
        }
    }
}

impl StarObserver for Progress {
    fn phase(&mut self, iteration: usize, phase: Phase, total: usize) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
        }
        let what = match phase {
            Phase::Generate => format!("it {iteration} rationales"),
            Phase::Train => format!("it {iteration} fine-tune"),
            Phase::Evaluate => format!("it {iteration} dev eval"),
        };
        self.pb = Some(bar(total as u64, &what));
    }
    fn progress(&mut self, done: usize) {
        if let Some(pb) = &self.pb {
            pb.set_position(done as u64);
        }
    }
    fn train_step(&mut self, m: &StepMetrics) {
        if let Some(pb) = &self.pb {
            pb.set_position(m.step as u64);
            pb.set_prefix(format!("loss {:.4}", m.loss));
        }
    }
    fn iteration_done(&mut self, row: &IterationRow) {
        if let Some(pb) = self.pb.take() {
            pb.finish_and_clear();
        }
        let groups: Vec<String> =
            row.dev.by_group.iter().map(|(g, t)| format!("{g} {:.0}%", 100.0 * t.accuracy())).collect();
        let mut detail = if groups.is_empty() { String::new() } else { format!(" ({})", groups.join(", ")) };
        if row.dev.unparsable > 0 {
            detail.push_str(&format!("; {} of {} dev answers unreadable", row.dev.unparsable, row.dev.overall.total));
        }
        if row.iteration == 0 {
            println!("iteration 0 (base model): dev accuracy {:.1}%{detail}", 100.0 * row.dev.accuracy());
            if let Some(gate) = &self.gate {
                print_gate(gate, row);
            } else if row.dev_hinted.is_some() {
                println!("base model, without / with the hint: {}", starling_star::gate::measured(row));
            }
        } else {
            println!(
                "iteration {}: kept {} + rationalized {} of {} ({:.0}% of the train set{}), {} steps; dev accuracy {:.1}%{detail} [{:.0}s]",
                row.iteration,
                row.kept,
                row.rationalized,
                row.train_total,
                100.0 * row.used_share(),
                row.sound_share().map(|s| format!("; every step right in {:.0}%", 100.0 * s)).unwrap_or_default(),
                row.steps,
                100.0 * row.dev.accuracy(),
                row.seconds
            );
        }
    }
    fn note(&mut self, message: &str) {
        match &self.pb {
            Some(pb) => pb.println(format!("note: {message}")),
            None => eprintln!("note: {message}"),
        }
    }
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let t0 = std::time::Instant::now();
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from(format!("runs/star-{}", a.task.task.kind().name())));
    a.tune.check(&a.task)?;
    let task = a.task.load(a.tune.seed)?;
    // Only once the arguments and data are known to be good is an earlier run deleted.
    if a.fresh && out.join("star_config.json").exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot delete {}", out.display()))?;
        eprintln!("--fresh: deleted the earlier run in {}", out.display());
    }
    let dev = pick_device(device)?;
    if a.base_only {
        // The built-in base is prepared (or regenerated) first; a given model is only scored.
        let (path, tokenizer) = a.tune.base(&a.task, &dev.device, true)?;
        println!("base model: {}", path.display());
        return score_base(&a, &task, &path, &tokenizer, &dev.device);
    }
    let (base, tokenizer) = a.tune.base(&a.task, &dev.device, false)?;
    let builtin = a.tune.builtin();
    let first_steps = a.first_steps.unwrap_or(if builtin { 400 } else { 40 });
    let cfg = StarConfig {
        task: task.kind,
        iterations: a.iterations.unwrap_or(if builtin { 2 } else { 5 }),
        rationalize: !a.no_rationalization,
        shots: a.tune.shots.unwrap_or(if builtin { 0 } else { task.data.exemplars.len() }),
        first_steps,
        step_growth: a.step_growth,
        train: a.tune.train_config(first_steps),
        sampling: a.tune.sampling(),
        max_new_tokens: a.tune.default_max_new_tokens(a.task.task),
        gen_batch: a.tune.gen_batch,
        gen_rows: a.tune.gen_rows,
        epochs: a.epochs,
        patience: a.patience,
        seed: a.tune.seed,
        // The gate is written for sums: short ones solved, long ones not yet, the hint understood.
        gate: (task.kind == TaskKind::Arithmetic && !a.no_gate).then(BaseGate::default),
        require_sound: a.require_sound,
        p_show_hint_save: a.p_show_hint_save,
        no_prompt: a.no_prompt,
    };
    eprintln!(
        "task: {} — {} training questions, {} dev questions, {} exemplars in prompts",
        task.kind.name(),
        task.data.train.len(),
        task.data.dev.len(),
        cfg.shots.min(task.data.exemplars.len())
    );
    if a.tune.shots.is_some_and(|s| s > 0) && task.data.exemplars.is_empty() {
        bail!(
            "--shots {} but the task has no exemplars: pass --exemplars FILE (JSONL with \"rationale\") or --shots 0",
            cfg.shots
        );
    }
    if !builtin && task.data.exemplars.is_empty() {
        eprintln!("note: no few-shot exemplars (pass --exemplars FILE with worked rationales); prompting zero-shot");
    }
    let mut progress = Progress { gate: cfg.gate.clone(), pb: None };
    let more_devices = more_devices(&dev, a.data_parallel)?;
    let star =
        StarRun { root: out.clone(), cfg, data: &task.data, base, tokenizer, device: dev.device.clone(), more_devices };
    if let Some(spec) = &a.shard {
        return run_shard(&star, spec, &mut progress, t0);
    }
    let (rows, finish) = if a.merge {
        match star.run_until_generation(&mut progress)? {
            (rows, Stop::Finished(finish)) => (rows, finish),
            (_, Stop::GenerationDue { iteration }) => {
                progress.finish();
                println!(
                    "iteration {iteration}: its rationales are due — run the shards (`starling star --shard K/N` with \
                     these settings and --out {}), then --merge again  (finished in {:.0}s)",
                    out.display(),
                    t0.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        }
    } else {
        star.run(a.resume, &mut progress)?
    };
    progress.finish();
    println!("\n{}", markdown_table(&rows));
    if let Finish::Plateau { best_iteration } = finish {
        println!("stopped early: no improvement since iteration {best_iteration}");
    }
    println!(
        "report: {}  chart: {}  (finished in {:.0}s)",
        out.join("report.md").display(),
        out.join("chart.svg").display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One shard of the current iteration's generation (`--shard`).
fn run_shard(star: &StarRun<'_>, spec: &str, progress: &mut Progress, t0: std::time::Instant) -> Result<()> {
    let shard: Shard = if spec == "scheduler" {
        Shard::from_scheduler(&|name| std::env::var(name).ok()).map_err(anyhow::Error::msg)?
    } else {
        spec.parse().map_err(anyhow::Error::msg)?
    };
    let outcome = star.generate_shard(shard, progress)?;
    progress.finish();
    let seconds = t0.elapsed().as_secs_f64();
    match outcome {
        ShardOutcome::Generated { iteration, records, resumed_from } => {
            let resumed =
                if resumed_from > 0 { format!(" ({resumed_from} from an interrupted attempt)") } else { String::new() };
            println!(
                "iteration {iteration}, shard {shard}: {records} rationales{resumed} in {}  (finished in {seconds:.0}s)",
                star.shards_dir(iteration).join(shard.file_name()).display()
            );
        }
        ShardOutcome::AlreadyGenerated { iteration } => {
            println!("iteration {iteration}, shard {shard}: already generated; nothing to do")
        }
        ShardOutcome::AlreadyMerged { iteration } => {
            println!("iteration {iteration}: its rationales are already merged; nothing to do for shard {shard}")
        }
        ShardOutcome::RunFinished => println!("the run has finished its iterations; nothing to do for shard {shard}"),
    }
    Ok(())
}

/// The base model on the dev set, without and with the hint, and the gate's verdict
/// (`--base-only`).
fn score_base(
    a: &Args,
    task: &crate::tasks_args::Task,
    path: &std::path::Path,
    tokenizer: &starling_model::Tokenizer,
    device: &burn::tensor::Device,
) -> Result<()> {
    let loaded = crate::common::load_model(path, None, device)?;
    let prefixes = PrefixStore::default();
    let g = a.tune.generator(task, a.task.task, &loaded.model, tokenizer, a.tune.shots, Some(&prefixes));
    let mut scored = Vec::new();
    for (hinted, what) in [(false, "base dev eval"), (true, "with the hint")] {
        let pb = bar(task.data.dev.len() as u64, what);
        let style = PromptStyle::Rationale;
        let r = evaluate(&g, &task.data.dev, style, hinted, a.tune.gen_batch, &mut |d| pb.set_position(d as u64))?;
        pb.finish_and_clear();
        scored.push(r);
    }
    let hinted = scored.pop();
    let dev = scored.pop().expect("scored without the hint");
    let row = IterationRow::base(task.data.train.len(), dev, hinted);
    print_gate(&BaseGate::default(), &row);
    Ok(())
}

/// The base model's numbers without and with the hint, and the gate's verdict on them.
fn print_gate(gate: &BaseGate, row: &IterationRow) {
    println!("base model, without / with the hint: {}", starling_star::gate::measured(row));
    match gate.check(row) {
        Ok(()) => println!("gate: passed"),
        Err(e) => println!("gate: FAILED — {}", e.problems.join("; ")),
    }
}
