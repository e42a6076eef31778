//! `starling quiet demo`: does thinking help? A tiny model learns two-digit sums `a+b=c` from a
//! stream of them; the digits of c are the hard tokens, where a thought has work to do. As in
//! the paper (Quiet-STaR starts from a pretrained model), a base model is pretrained first;
//! then the same base weights are trained on for the same steps on the same batches — once as
//! a plain language model, once with Quiet-STaR — and both are scored on held-out sums: NLL of
//! the sum digits (the plain model's, the Quiet-STaR model's with its thoughts, and the
//! Quiet-STaR model's own base predictions without them) and of the other tokens.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use starling_model::checkpoint::files::write_folder_atomic;
use starling_model::device::DeviceChoice;
use starling_model::score::token_logprobs;
use starling_model::weights::init_transformer;
use starling_model::{ModelConfig, Tokenizer};
use starling_quiet::QuietModel;
use starling_quiet::analyze::token_deltas;
use starling_quiet::checkpoint::checkpoint_files;
use starling_quiet::trainer::{QuietRunConfig, train_quiet};
use starling_thought::Kernel;
use starling_train::data::Example;
use starling_train::trainer::{TrainConfig, train};

use crate::common::{bar, pick_device};
use crate::quiet::{QuietArgs, sequences};

#[derive(clap::Args)]
pub struct Args {
    /// Where the report and the trained Quiet-STaR checkpoint go.
    #[arg(long, default_value = "runs/quiet-demo")]
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
}

const ALPHABET: &str = "0123456789+=\n-";

fn sums(n: usize, rng: &mut ChaCha8Rng) -> String {
    (0..n)
        .map(|_| {
            let (a, b) = (rng.random_range(0..100u32), rng.random_range(0..100u32));
            format!("{a}+{b}={}\n", a + b)
        })
        .collect()
}

/// Positions (index of the predicted token) that are digits of a sum: after `=`, before `\n`.
fn sum_digit_mask(ids: &[u32], tok: &Tokenizer) -> Vec<bool> {
    let eq = tok.token_to_id("=");
    let nl = tok.token_to_id("\n");
    let mut inside = false;
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        out.push(inside && Some(id) != nl);
        if Some(id) == eq {
            inside = true;
        } else if Some(id) == nl {
            inside = false;
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    sum: f64,
    n: usize,
}

impl Tally {
    fn add(&mut self, nll: f64) {
        self.sum += nll;
        self.n += 1;
    }
    fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let dev = pick_device(device)?;
    let tok = Tokenizer::char_level(ALPHABET, &["<pad>"])?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let needed = (a.base_steps + a.steps) * a.batch_size * a.seq_len / 8 + 64;
    let train_ids = tok.encode(&sums(needed, &mut rng), false)?;
    let eval_ids = tok
        .encode(&sums(a.eval_sequences * a.seq_len / 8 + 16, &mut ChaCha8Rng::seed_from_u64(a.seed ^ 0xe7a1)), false)?;
    let train_seqs = sequences(&train_ids, a.seq_len);
    let eval_seqs: Vec<Vec<u32>> = sequences(&eval_ids, a.seq_len).into_iter().take(a.eval_sequences).collect();

    let mut c = ModelConfig::tiny(tok.vocab_size());
    c.hidden_size = a.hidden;
    c.intermediate_size = 3 * a.hidden;
    c.num_layers = a.layers;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = a.hidden / 4;
    c.max_position_embeddings = 128;
    c.pad_token_id = tok.token_to_id("<pad>");
    let train_cfg = TrainConfig {
        steps: a.steps,
        batch_size: a.batch_size,
        max_len: a.seq_len,
        lr: a.lr,
        warmup_steps: 20,
        seed: a.seed,
        ..TrainConfig::default()
    };
    let quiet = QuietArgs {
        n_thought: a.quiet.n_thought,
        n_talk: a.quiet.n_talk,
        n_passes: a.quiet.n_passes,
        policy_weight: a.quiet.policy_weight,
        post_thought_weight: a.quiet.post_thought_weight,
        thought_temperature: 1.0,
        keep_negative_rewards: false,
    }
    .config();
    let ad = dev.device.clone().autodiff();
    eprintln!(
        "{} training sequences of {} tokens; {} steps × batch {}; thought {} tokens, talk {}, {} passes",
        train_seqs.len(),
        a.seq_len,
        a.steps,
        a.batch_size,
        quiet.n_thought,
        quiet.n_talk,
        quiet.n_passes
    );

    // The shared base model: plain pretraining.
    let examples: Vec<Example> = train_seqs.iter().map(|s| Example::full(s.clone())).collect();
    let base_cfg = TrainConfig { steps: a.base_steps, seed: a.seed.wrapping_add(1), ..train_cfg.clone() };
    let pb = bar(a.base_steps as u64, "base model");
    let (base, _) = train(
        init_transformer(&c, a.seed, &ad)?,
        &examples,
        None,
        &base_cfg,
        0,
        None,
        &mut crate::common::StepBar(pb.clone()),
    )?;
    pb.finish();
    let base_nll = plain_nll(&base.valid(), &eval_seqs, &tok)?.0.mean();

    // Plain continuation.
    let t0 = Instant::now();
    let pb = bar(a.steps as u64, "plain LM");
    let (plain, _) =
        train(base.clone(), &examples, None, &train_cfg, 0, None, &mut crate::common::StepBar(pb.clone()))?;
    pb.finish();
    let plain_secs = t0.elapsed().as_secs_f64();

    // Quiet-STaR continuation from the same weights, same batches.
    let t0 = Instant::now();
    let qmodel = QuietModel::new(base, &tok, quiet.clone(), a.seed)?;
    let run_cfg = QuietRunConfig { train: train_cfg.clone(), quiet: quiet.clone() };
    let pb = bar(a.steps as u64, "quiet-star");
    let (qmodel, history) =
        train_quiet(qmodel, &tok, &train_seqs, &run_cfg, a.kernel, None, None, &mut QuietBar(pb.clone()))?;
    pb.finish();
    let quiet_secs = t0.elapsed().as_secs_f64();

    // Score the held-out sums.
    let plain = plain.valid();
    let qmodel = qmodel.valid();
    let (p_hard, p_easy) = plain_nll(&plain, &eval_seqs, &tok)?;
    let (mut q_hard, mut q_easy, mut qb_hard, mut qb_easy) =
        (Tally::default(), Tally::default(), Tally::default(), Tally::default());
    let mut w_hard = Tally::default();
    let mut post_hard = Tally::default();
    let mut helped_example = String::new();
    for seq in &eval_seqs {
        let mask = sum_digit_mask(seq, &tok);
        let deltas = token_deltas(&qmodel, seq, 0.0, a.kernel);
        for d in &deltas {
            let hard = mask[d.index];
            let (q, qb) = if hard { (&mut q_hard, &mut qb_hard) } else { (&mut q_easy, &mut qb_easy) };
            q.add(-d.logp_thought as f64);
            qb.add(-d.logp_base as f64);
            if hard {
                w_hard.add(d.mix_weight as f64);
                post_hard.add(-d.logp_post as f64);
                if helped_example.is_empty() && d.delta() > 0.5 {
                    helped_example = format!(
                        "after {:?} the thought {:?} raised log p({:?}) from {:.2} to {:.2} (w = {:.2})",
                        tok.decode(&seq[..d.index], false)?.rsplit('\n').next().unwrap_or(""),
                        tok.decode(&d.thought_ids, false)?,
                        tok.decode(&[d.id], false)?,
                        d.logp_base,
                        d.logp_thought,
                        d.mix_weight
                    );
                }
            }
        }
    }
    let last = history.last().map(|m| m.stats.clone()).unwrap_or_default();
    let mut report = String::new();
    writeln!(report, "# Quiet-STaR demo: two-digit sums\n")?;
    writeln!(
        report,
        "Base model: {} plain steps (sum-digit NLL {:.4}). Then {} more steps each × batch {} × {} tokens, lr {}, seed {}; model d={} × {} layers; thought {} tokens, talk {}, {} passes; device: {}\n",
        a.base_steps,
        base_nll,
        a.steps,
        a.batch_size,
        a.seq_len,
        a.lr,
        a.seed,
        c.hidden_size,
        c.num_layers,
        quiet.n_thought,
        quiet.n_talk,
        quiet.n_passes,
        dev.name
    )?;
    writeln!(
        report,
        "Held-out: {} sequences ({} sum-digit tokens, {} other tokens). NLL in nats per token:\n",
        eval_seqs.len(),
        p_hard.n,
        p_easy.n
    )?;
    writeln!(report, "| model | sum digits | other tokens | training time |")?;
    writeln!(report, "|---|---:|---:|---:|")?;
    writeln!(
        report,
        "| plain LM (same base, steps, batches) | {:.4} | {:.4} | {:.0} s |",
        p_hard.mean(),
        p_easy.mean(),
        plain_secs
    )?;
    writeln!(
        report,
        "| Quiet-STaR, with thoughts | {:.4} | {:.4} | {:.0} s |",
        q_hard.mean(),
        q_easy.mean(),
        quiet_secs
    )?;
    writeln!(
        report,
        "| Quiet-STaR, its base predictions (no thought) | {:.4} | {:.4} | |",
        qb_hard.mean(),
        qb_easy.mean()
    )?;
    writeln!(report, "| Quiet-STaR, post-thought state alone (w = 1) | {:.4} | | |", post_hard.mean())?;
    writeln!(
        report,
        "\nMean mixing weight on sum digits: {:.3}. Last training step: talk NLL {:.4} with thoughts vs {:.4} without, mean reward {:.4}.",
        w_hard.mean(),
        last.talk_nll,
        last.talk_nll_base,
        last.mean_reward
    )?;
    if !helped_example.is_empty() {
        writeln!(report, "\nExample: {helped_example}.")?;
    }
    let verdict = if q_hard.mean() < p_hard.mean() { "lower" } else { "not lower" };
    writeln!(
        report,
        "\nWith thoughts, the NLL of the sum digits is **{verdict}** than the plain model's ({:+.4} nats/token).",
        q_hard.mean() - p_hard.mean()
    )?;
    print!("{report}");

    std::fs::create_dir_all(&a.out)?;
    starling_model::checkpoint::files::write_atomic(&a.out.join("report.md"), report.as_bytes())?;
    write_folder_atomic(&a.out.join("model"), &checkpoint_files(&qmodel, &tok)?)?;
    eprintln!(
        "report: {}; Quiet-STaR checkpoint: {}",
        a.out.join("report.md").display(),
        a.out.join("model").display()
    );
    Ok(())
}

/// NLL of a plain model on the sum digits and on the other tokens of `seqs`.
fn plain_nll(model: &starling_model::Transformer, seqs: &[Vec<u32>], tok: &Tokenizer) -> Result<(Tally, Tally)> {
    let (mut hard, mut easy) = (Tally::default(), Tally::default());
    for (seq, lp) in seqs.iter().zip(token_logprobs(model, seqs)?) {
        let mask = sum_digit_mask(seq, tok);
        for (i, v) in lp.iter().enumerate() {
            if mask[i + 1] { &mut hard } else { &mut easy }.add(-*v as f64);
        }
    }
    Ok((hard, easy))
}

struct QuietBar(indicatif::ProgressBar);

impl starling_quiet::trainer::QuietObserver for QuietBar {
    fn on_step(&mut self, m: &starling_quiet::trainer::QuietStepMetrics) {
        self.0.set_position(m.step as u64);
        self.0.set_prefix(format!(
            "talk {:.3} (base {:.3}) w {:.3}",
            m.stats.talk_nll, m.stats.talk_nll_base, m.stats.mix_weight
        ));
    }
}
