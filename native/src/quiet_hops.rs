//! `starling quiet demo`: the built-in demonstration of `starling_quiet::hops_demo` (hidden
//! multi-hop lookups, where thinking must help), with progress bars. The report, the chart, the
//! measurements as JSON and the last seed's Quiet-STaR model go to `--out`.

use std::path::PathBuf;

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use starling_model::checkpoint::files::{hf_folder_files, write_atomic, write_folder_atomic};
use starling_model::device::{DeviceChoice, SelectedDevice};
use starling_quiet::QuietConfig;
use starling_quiet::checkpoint::checkpoint_files;
use starling_quiet::config::{MixingWeight, PolicyReduction};
use starling_quiet::demo::DemoObserver;
use starling_quiet::hops_demo::{
    HARD_FROM, HopsModel, HopsSettings, LESSON_FILE, PerHop, SeedResult, chart_svg, report, run_hops_demo,
    thought_length_svg, train_hops_model,
};
use starling_quiet::trainer::QuietStepMetrics;
use starling_tasks::hops::{HOPS_CARD_FILE, HopTask};
use starling_thought::Kernel;
use starling_train::trainer::StepMetrics;

use crate::common::{bar, pick_device};

#[derive(clap::Args)]
pub struct Args {
    /// Where the report, chart, measurements and the trained Quiet-STaR checkpoint go.
    #[arg(long, default_value = "runs/quiet-demo")]
    out: PathBuf,
    /// Train nothing: rewrite the report and the charts from `--out`'s results.json (made by an
    /// earlier run).
    #[arg(long)]
    report_only: bool,
    /// Train only the model the browser page shows: the warm start and the Quiet-STaR
    /// continuation of the first seed (no controls, no report; about a quarter of a seed's
    /// time), then print its held-out accuracy with greedy thoughts.
    #[arg(long, conflicts_with = "report_only")]
    model_only: bool,
    /// Seeds, each a full run (warm start, every condition, evaluation): `--seeds 0,1,2`.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    seeds: Vec<u64>,
    /// Letters in a table.
    #[arg(long, default_value_t = 8)]
    symbols: usize,
    /// Hop counts are 1..=max-hops; the thought has this many tokens.
    #[arg(long, default_value_t = 6)]
    max_hops: usize,
    /// Queries per document.
    #[arg(long, default_value_t = 8)]
    queries: usize,
    /// Probability that a warm-start query writes its chain out.
    #[arg(long, default_value_t = 0.7)]
    explicit_share: f64,
    /// Warm-start steps (plain LM from scratch).
    #[arg(long, default_value_t = 3000)]
    pretrain_steps: usize,
    /// Steps of each continuation (Quiet-STaR and the controls).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 3e-3)]
    pretrain_lr: f64,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Model width (4 query heads, 2 key/value heads).
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Standard deviation of the initial weights (the usual 0.02 stalls a model this narrow).
    #[arg(long, default_value_t = 0.1)]
    init_std: f64,
    /// Held-out documents (one scored answer each).
    #[arg(long, default_value_t = 6000)]
    eval_docs: usize,
    #[arg(long, default_value = "auto")]
    kernel: Kernel,
    /// Thoughts sampled per position (the REINFORCE baseline is their mean reward).
    #[arg(long, default_value_t = 2)]
    n_passes: usize,
    /// Talk tokens scored after a thought (the answer and the `;` after it).
    #[arg(long, default_value_t = 2)]
    n_talk: usize,
    #[arg(long, default_value_t = 1.0)]
    policy_weight: f64,
    #[arg(long, default_value_t = 0.5)]
    post_thought_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    thought_temperature: f64,
    /// The mixing weight a fresh head starts at (at 0 a thought changes no prediction, so it
    /// earns no reward).
    #[arg(long, default_value_t = 0.5)]
    initial_mixing_weight: f64,
    /// Start/end embeddings' learning-rate multiplier (official 100, tuned for lr 1e-6; at this
    /// demo's lr it would move the markers away from `[` and `]` within a few steps).
    #[arg(long, default_value_t = 1.0)]
    embedding_multiplier: f64,
    /// Mixing weight from the head's output: tanh-abs (Starling's) or linear (official).
    #[arg(long, default_value = "tanh-abs")]
    mixing: MixingWeight,
    /// Policy loss over a thought's tokens: sum (Starling's) or mean (official).
    #[arg(long, default_value = "sum")]
    policy_reduction: PolicyReduction,
}

impl Args {
    fn settings(&self) -> HopsSettings {
        HopsSettings {
            task: HopTask { symbols: self.symbols, max_hops: self.max_hops },
            queries: self.queries,
            explicit_share: self.explicit_share,
            pretrain_steps: self.pretrain_steps,
            steps: self.steps,
            batch_size: self.batch_size,
            pretrain_lr: self.pretrain_lr,
            lr: self.lr,
            layers: self.layers,
            hidden: self.hidden,
            init_std: self.init_std,
            seeds: self.seeds.clone(),
            eval_docs: self.eval_docs,
            same_compute_steps: None,
            kernel: self.kernel,
            quiet: QuietConfig {
                n_thought: self.max_hops,
                n_talk: self.n_talk,
                n_passes: self.n_passes,
                policy_loss_weight: self.policy_weight,
                post_thought_loss_weight: self.post_thought_weight,
                thought_temperature: self.thought_temperature,
                initial_mixing_weight: self.initial_mixing_weight,
                embedding_multiplier: self.embedding_multiplier,
                mixing: self.mixing,
                policy_reduction: self.policy_reduction,
                ..QuietConfig::default()
            },
        }
    }
}

/// What `results.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    settings: HopsSettings,
    #[serde(default)]
    device: String,
    results: Vec<SeedResult>,
}

fn write_report(out: &Path, saved: &Saved) -> Result<()> {
    let text = report(&saved.settings, &saved.results, &saved.device);
    print!("{text}");
    std::fs::create_dir_all(out)?;
    write_atomic(&out.join("report.md"), text.as_bytes())?;
    write_atomic(&out.join("accuracy.svg"), chart_svg(&saved.settings, &saved.results).as_bytes())?;
    write_atomic(&out.join("thought-length.svg"), thought_length_svg(&saved.settings, &saved.results).as_bytes())?;
    Ok(())
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    if a.report_only {
        let path = a.out.join("results.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (run the demo without --report-only first)", path.display()))?;
        let saved: Saved = serde_json::from_str(&text)
            .with_context(|| format!("{} is not the results of `starling quiet demo`", path.display()))?;
        return write_report(&a.out, &saved);
    }
    let dev = pick_device(device)?;
    let s = a.settings();
    let mut bars = Bars(None, String::new());
    if a.model_only {
        return run_model_only(&a.out, &s, &dev, bars);
    }
    eprintln!(
        "hidden multi-hop lookups: {} seed(s) × (warm start {} steps, 5 continuations of {} steps and one of the \
         same training time), batch {} of {} tokens",
        s.seeds.len(),
        s.pretrain_steps,
        s.steps,
        s.batch_size,
        s.doc_len()
    );
    let (results, model) = run_hops_demo(&s, &dev.device, &mut bars)?;
    if let Some(pb) = bars.0.take() {
        pb.finish();
    }
    let saved = Saved { settings: s, device: dev.name.clone(), results };
    write_report(&a.out, &saved)?;
    write_atomic(&a.out.join("results.json"), serde_json::to_string_pretty(&saved)?.as_bytes())?;
    save_model(&a.out, &model, &saved.settings)?;
    eprintln!(
        "report: {}; charts: {} and {}; Quiet-STaR checkpoint (last seed): {}",
        a.out.join("report.md").display(),
        a.out.join("accuracy.svg").display(),
        a.out.join("thought-length.svg").display(),
        a.out.join("model").display()
    );
    Ok(())
}

/// `--model-only`: the page's model, saved to `out/model`, and its held-out accuracy printed.
fn run_model_only(out: &Path, s: &HopsSettings, dev: &SelectedDevice, mut bars: Bars) -> Result<()> {
    eprintln!(
        "hidden multi-hop lookups, the page's model: seed {}, warm start {} steps, Quiet-STaR {} steps, batch {} of {} tokens",
        s.seeds[0],
        s.pretrain_steps,
        s.steps,
        s.batch_size,
        s.doc_len()
    );
    let t0 = std::time::Instant::now();
    let (model, greedy) = train_hops_model(s, &dev.device, &mut bars)?;
    if let Some(pb) = bars.0.take() {
        pb.finish();
    }
    save_model(out, &model, s)?;
    println!(
        "Quiet-STaR model of seed {} on held-out tables, greedy thoughts ({} documents, {:.0} s on {}):\n{}",
        s.seeds[0],
        s.eval_docs,
        t0.elapsed().as_secs_f64(),
        dev.name,
        accuracy_line(&greedy, s.task.max_hops)
    );
    eprintln!("Quiet-STaR checkpoint: {}", out.join("model").display());
    Ok(())
}

/// The checkpoint and the card that lets the page pose the model questions, in `out/model`;
/// the warm start it continued from and the settings of that continuation, in `out/warm` (where
/// the page's Learn view runs Quiet-STaR again).
fn save_model(out: &Path, model: &HopsModel, s: &HopsSettings) -> Result<()> {
    let mut files = checkpoint_files(&model.model, &model.tokenizer)?;
    files.push((HOPS_CARD_FILE.to_string(), serde_json::to_vec_pretty(&s.card())?));
    write_folder_atomic(&out.join("model"), &files)?;
    let mut warm = hf_folder_files(&model.warm, &model.tokenizer)?;
    warm.push((LESSON_FILE.to_string(), serde_json::to_vec_pretty(s)?));
    write_folder_atomic(&out.join("warm"), &warm)?;
    Ok(())
}

/// `k=1 100.0%  k=2 99.8%  …  k≥4 99.9%`.
fn accuracy_line(r: &PerHop, max_hops: usize) -> String {
    let mut line: Vec<String> = (1..=max_hops).map(|k| format!("k={k} {:.1}%", 100.0 * r.accuracy(k))).collect();
    if max_hops >= HARD_FROM {
        line.push(format!("k≥{HARD_FROM} {:.1}%", 100.0 * r.accuracy_over(HARD_FROM..=max_hops)));
    }
    line.join("  ")
}

/// One progress bar per training phase; without a terminal (a log file), a line per phase and
/// every `LOG_EVERY` steps instead.
struct Bars(Option<ProgressBar>, String);

const LOG_EVERY: usize = 250;

impl Bars {
    fn show(&self, step: usize, line: String) {
        if let Some(pb) = &self.0 {
            pb.set_position(step as u64);
            if pb.is_hidden() && step.is_multiple_of(LOG_EVERY) {
                eprintln!("{} step {step}: {line}", self.1);
            }
            pb.set_prefix(line);
        }
    }
}

impl DemoObserver for Bars {
    fn phase(&mut self, name: &str, steps: usize) {
        if let Some(pb) = self.0.take() {
            pb.finish();
        }
        let pb = bar(steps as u64, name);
        if pb.is_hidden() {
            eprintln!("{name}: {steps} steps");
        }
        self.0 = Some(pb);
        self.1 = name.to_string();
    }

    fn plain_step(&mut self, m: &StepMetrics) {
        self.show(m.step, format!("loss {:.4}", m.loss));
    }

    fn quiet_step(&mut self, m: &QuietStepMetrics) {
        self.show(
            m.step,
            format!(
                "talk {:.3} (base {:.3}) post {:.3} w {:.3} reward {:.4}",
                m.stats.talk_nll, m.stats.talk_nll_base, m.stats.post_nll, m.stats.mix_weight, m.stats.mean_reward
            ),
        );
    }
}
