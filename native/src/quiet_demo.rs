//! `starling quiet demo-sums`: the earlier demonstration of `starling_quiet::demo` (does thinking
//! help on two-digit sums?), with progress bars; the report and the trained model go to `--out`.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::ProgressBar;

use starling_model::checkpoint::files::{write_atomic, write_folder_atomic};
use starling_model::device::DeviceChoice;
use starling_quiet::QuietConfig;
use starling_quiet::checkpoint::checkpoint_files;
use starling_quiet::config::{MixingWeight, PolicyReduction};
use starling_quiet::demo::{DemoObserver, DemoSettings, run_demo};
use starling_quiet::trainer::QuietStepMetrics;
use starling_thought::Kernel;
use starling_train::trainer::StepMetrics;

use crate::common::{bar, pick_device};

#[derive(clap::Args)]
pub struct Args {
    /// Where the report and the trained Quiet-STaR checkpoint go.
    #[arg(long, default_value = "runs/quiet-demo-sums")]
    out: PathBuf,
    /// Plain pretraining steps of the shared base model.
    #[arg(long, default_value_t = 300)]
    base_steps: usize,
    /// Steps of each continuation (plain and Quiet-STaR).
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 48)]
    seq_len: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Transformer layers of the tiny model. One layer leaves the model short of depth for
    /// carrying digits — the kind of work a thought's extra steps can take on.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Hidden size of the tiny model (4 heads, 2 key/value heads).
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Held-out sequences scored at the end.
    #[arg(long, default_value_t = 48)]
    eval_sequences: usize,
    #[arg(long, default_value = "auto")]
    kernel: Kernel,
    #[command(flatten)]
    quiet: DemoQuiet,
}

/// The demo's Quiet-STaR settings: short thoughts for a tiny model, and a policy weight suited
/// to its learning rate (the official 1e6 is tuned for lr 1e-6).
#[derive(clap::Args)]
struct DemoQuiet {
    #[arg(long, default_value_t = 8)]
    n_thought: usize,
    #[arg(long, default_value_t = 2)]
    n_talk: usize,
    #[arg(long, default_value_t = 2)]
    n_passes: usize,
    #[arg(long, default_value_t = 1.0)]
    policy_weight: f64,
    #[arg(long, default_value_t = 0.1)]
    post_thought_weight: f64,
    /// Mixing weight from the head's output: tanh-abs (Starling's) or linear (official).
    #[arg(long, default_value = "tanh-abs")]
    mixing: MixingWeight,
    /// Policy loss over a thought's tokens: sum (Starling's) or mean (official).
    #[arg(long, default_value = "sum")]
    policy_reduction: PolicyReduction,
}

impl Args {
    fn settings(&self) -> DemoSettings {
        DemoSettings {
            base_steps: self.base_steps,
            steps: self.steps,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            lr: self.lr,
            layers: self.layers,
            hidden: self.hidden,
            seed: self.seed,
            eval_sequences: self.eval_sequences,
            kernel: self.kernel,
            quiet: QuietConfig {
                n_thought: self.quiet.n_thought,
                n_talk: self.quiet.n_talk,
                n_passes: self.quiet.n_passes,
                policy_loss_weight: self.quiet.policy_weight,
                post_thought_loss_weight: self.quiet.post_thought_weight,
                mixing: self.quiet.mixing,
                policy_reduction: self.quiet.policy_reduction,
                thought_temperature: 1.0,
                ..QuietConfig::default()
            },
        }
    }
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let dev = pick_device(device)?;
    let s = a.settings();
    eprintln!(
        "{} steps × batch {} of {} tokens; thought {} tokens, talk {}, {} passes",
        s.steps, s.batch_size, s.seq_len, s.quiet.n_thought, s.quiet.n_talk, s.quiet.n_passes
    );
    let mut bars = Bars(None);
    let result = run_demo(&s, &dev.device, &mut bars)?;
    if let Some(pb) = bars.0.take() {
        pb.finish();
    }
    let report = result.report(&dev.name);
    print!("{report}");
    std::fs::create_dir_all(&a.out)?;
    write_atomic(&a.out.join("report.md"), report.as_bytes())?;
    write_folder_atomic(&a.out.join("model"), &checkpoint_files(&result.model, &result.tokenizer)?)?;
    eprintln!(
        "report: {}; Quiet-STaR checkpoint: {}",
        a.out.join("report.md").display(),
        a.out.join("model").display()
    );
    Ok(())
}

/// One progress bar per training phase.
struct Bars(Option<ProgressBar>);

impl DemoObserver for Bars {
    fn phase(&mut self, name: &str, steps: usize) {
        if let Some(pb) = self.0.take() {
            pb.finish();
        }
        self.0 = Some(bar(steps as u64, name));
    }

    fn plain_step(&mut self, m: &StepMetrics) {
        if let Some(pb) = &self.0 {
            pb.set_position(m.step as u64);
            pb.set_prefix(format!("loss {:.4}", m.loss));
        }
    }

    fn quiet_step(&mut self, m: &QuietStepMetrics) {
        if let Some(pb) = &self.0 {
            pb.set_position(m.step as u64);
            pb.set_prefix(format!(
                "talk {:.3} (base {:.3}) w {:.3}",
                m.stats.talk_nll, m.stats.talk_nll_base, m.stats.mix_weight
            ));
        }
    }
}
