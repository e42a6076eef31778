//! Loading a task's questions for `star` and `baseline`: the built-in arithmetic generator, or
//! CommonsenseQA / GSM8K / question-answer JSONL files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use starling_star::StarData;
use starling_tasks::jsonl::{OnBadLine, Parsed};
use starling_tasks::{Exemplar, Item, TaskKind, arithmetic, csqa, gsm8k, qa};

use crate::common::read_data_file;
use crate::train_lm::parse_digit_range;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskChoice {
    /// Built-in n-digit addition with a scratchpad (no files needed).
    Arithmetic,
    /// CommonsenseQA JSONL (train/dev as distributed).
    Csqa,
    /// GSM8K JSONL (train/test as distributed).
    Gsm8k,
    /// Your own question/answer JSONL (see README: "Your own data").
    Qa,
}

#[derive(clap::Args)]
pub struct TaskArgs {
    /// The task.
    #[arg(long, default_value = "arithmetic")]
    pub task: TaskChoice,
    /// Training questions (JSONL; not for arithmetic).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Dev/test questions with answers (JSONL; not for arithmetic).
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// Few-shot exemplars with rationales (JSONL with "rationale"); default: the built-in ones
    /// written for csqa, gsm8k and arithmetic.
    #[arg(long)]
    pub exemplars: Option<PathBuf>,
    /// Use only the first N training questions (after a seeded shuffle).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Use only the first N dev questions (after a seeded shuffle).
    #[arg(long)]
    pub limit_dev: Option<usize>,
    /// Skip malformed JSONL lines (counted and reported) instead of stopping at the first one.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Arithmetic: digit counts of the questions, as MIN-MAX (the STaR paper's 1-5).
    #[arg(long, default_value = "1-5", value_parser = parse_digit_range)]
    pub digits: (usize, usize),
    /// Arithmetic: training questions, from the training pool of sums (never a dev question or
    /// a pretraining document of the built-in base; one-digit sums are few, so there are fewer
    /// than asked when the range starts at 1).
    #[arg(long, default_value_t = 1000)]
    pub train_size: usize,
    /// Arithmetic: dev questions per digit count, from the dev pool (one digit: all 14 it holds).
    #[arg(long, default_value_t = 40)]
    pub dev_per_digit: usize,
}

pub struct Task {
    pub kind: TaskKind,
    pub data: StarData,
}

fn report<T>(p: Parsed<T>, origin: &Path) -> Vec<T> {
    if p.skipped > 0 {
        eprintln!(
            "note: {}: skipped {} malformed lines (first: {})",
            origin.display(),
            p.skipped,
            p.first_error.unwrap_or_default()
        );
    }
    p.records
}

/// A seeded shuffle, then the first `limit`.
fn subset<T>(mut v: Vec<T>, limit: Option<usize>, seed: u64) -> Vec<T> {
    if let Some(n) = limit.filter(|&n| n < v.len()) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        v.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        v.truncate(n);
    }
    v
}

impl TaskArgs {
    pub fn load(&self, seed: u64) -> Result<Task> {
        let on_bad = if self.skip_bad_lines { OnBadLine::Skip } else { OnBadLine::Error };
        let files = || -> Result<(&PathBuf, &PathBuf)> {
            match (&self.train, &self.dev) {
                (Some(t), Some(d)) => Ok((t, d)),
                _ => bail!("--task {} needs --train FILE and --dev FILE (JSONL)", self.task.kind().name()),
            }
        };
        let user_exemplars = match &self.exemplars {
            Some(p) => Some(qa::parse_exemplars(&read_data_file(p)?, &p.display().to_string())?),
            None => None,
        };
        let (kind, train, dev, builtin_exemplars): (TaskKind, Vec<Item>, Vec<Item>, Vec<Exemplar>) = match self.task {
            TaskChoice::Arithmetic => {
                if self.train.is_some() || self.dev.is_some() {
                    bail!("--task arithmetic generates its own questions; --train/--dev are for csqa, gsm8k and qa");
                }
                let (lo, hi) = self.digits;
                let (train, dev) = arithmetic::train_dev_split(seed, self.train_size, self.dev_per_digit, lo, hi)
                    .with_context(|| {
                        format!(
                            "--digits {lo}-{hi} with --train-size {} and --dev-per-digit {}",
                            self.train_size, self.dev_per_digit
                        )
                    })?;
                (TaskKind::Arithmetic, train, dev, arithmetic::exemplars())
            }
            TaskChoice::Csqa => {
                let (t, d) = files()?;
                let train = report(csqa::parse_jsonl(&read_data_file(t)?, &t.display().to_string(), on_bad)?, t);
                let dev = report(csqa::parse_jsonl(&read_data_file(d)?, &d.display().to_string(), on_bad)?, d);
                (TaskKind::Csqa, train, dev, csqa::exemplars())
            }
            TaskChoice::Gsm8k => {
                let (t, d) = files()?;
                let train = report(gsm8k::parse_jsonl(&read_data_file(t)?, &t.display().to_string(), on_bad)?, t);
                let dev = report(gsm8k::parse_jsonl(&read_data_file(d)?, &d.display().to_string(), on_bad)?, d);
                // Reference solutions are not used: STaR learns from its own rationales.
                let train = train.into_iter().map(|(i, _)| i).collect();
                (TaskKind::Gsm8k, train, dev.into_iter().map(|(i, _)| i).collect(), gsm8k::exemplars())
            }
            TaskChoice::Qa => {
                let (t, d) = files()?;
                let train = report(qa::parse_jsonl(&read_data_file(t)?, &t.display().to_string(), on_bad)?, t);
                let dev = report(qa::parse_jsonl(&read_data_file(d)?, &d.display().to_string(), on_bad)?, d);
                let train = train.into_iter().map(|(i, _)| i).collect();
                (TaskKind::Qa, train, dev.into_iter().map(|(i, _)| i).collect(), Vec::new())
            }
        };
        let train = subset(train, self.limit_train, seed);
        let dev = subset(dev, self.limit_dev, seed.wrapping_add(1));
        Ok(Task { kind, data: StarData { train, dev, exemplars: user_exemplars.unwrap_or(builtin_exemplars) } })
    }
}

impl TaskChoice {
    pub fn kind(self) -> TaskKind {
        match self {
            TaskChoice::Arithmetic => TaskKind::Arithmetic,
            TaskChoice::Csqa => TaskKind::Csqa,
            TaskChoice::Gsm8k => TaskKind::Gsm8k,
            TaskChoice::Qa => TaskKind::Qa,
        }
    }
}
