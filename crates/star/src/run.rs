//! The STaR loop on disk (native builds): [`StarRun`] drives the [`StarLoop`] synchronously and
//! keeps what every step produced, written atomically, so a run killed at any moment continues
//! with `resume` from its artefacts:
//!
//! ```text
//! run/
//!   star_config.json           the StarConfig
//!   base.json                  base model path, weight fingerprint, data hashes
//!   iter-00/eval.json          the base model on the dev set
//!   iter-00/row.json           its numbers (with the hint, for the gate)
//!   iter-01/rationales.jsonl   every training question: kept / rationalized / rejected
//!   iter-01/train/             fine-tuning run (checkpoints, metrics.jsonl) — resumable mid-way
//!   iter-01/train_start.json   fingerprint of the weights fine-tuning started from (= base)
//!   iter-01/model/             M_1 (Hugging Face folder)
//!   iter-01/eval.json          M_1 on the dev set
//!   iter-01/row.json           the iteration's numbers
//!   summary.json, report.md, chart.svg
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use starling_model::checkpoint::Checkpoint;
use starling_model::checkpoint::files::{open_checkpoint, save_hf_folder, write_atomic};
use starling_model::hash::Fnv1a;
use starling_model::host::{Blocking, block_on};
use starling_model::weights::load_transformer;
use starling_model::{ModelError, Tokenizer, Transformer};
use starling_tasks::Item;
use starling_train::run_dir::RunDir;
use starling_train::trainer::StepMetrics;

use crate::StarError;
use crate::attempt::{Outcome, RationaleRecord};
use crate::config::StarConfig;
use crate::fingerprint::fingerprint;
use crate::machine::{Checkpointed, Finish, Resume, StarData, StarEvent, StarLoop, StarSetup, next_after};
use crate::report::{IterationRow, markdown_table, svg_chart};

/// A file operation of the run that failed (the io::Error kept: a full disk is told apart).
pub(crate) fn io(path: &Path, e: std::io::Error) -> StarError {
    StarError::Model(ModelError::write(path, e))
}

/// A file of the run that is there but cannot be used.
pub(crate) fn unreadable(path: &Path, e: impl std::fmt::Display) -> StarError {
    StarError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// What a run is doing, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Generate,
    Train,
    Evaluate,
}

/// Progress callbacks (the CLI draws bars; tests ignore them).
pub trait StarObserver {
    /// A phase of `iteration` starts with `total` units of work (questions or steps).
    fn phase(&mut self, _iteration: usize, _phase: Phase, _total: usize) {}
    fn progress(&mut self, _done: usize) {}
    fn train_step(&mut self, _m: &StepMetrics) {}
    fn iteration_done(&mut self, _row: &IterationRow) {}
    fn note(&mut self, _message: &str) {}
}

/// Where [`StarRun::run_until_generation`] stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// The run is over.
    Finished(Finish),
    /// Iteration `iteration`'s rationales are due: its shards run next.
    GenerationDue { iteration: usize },
}

pub struct Quiet;
impl StarObserver for Quiet {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaseInfo {
    pub path: PathBuf,
    pub fingerprint: String,
    /// Hashes of the training and dev questions (ids, questions, gold answers), so a resumed run
    /// is known to work on the same data.
    pub train_data: String,
    pub dev_data: String,
}

/// FNV-1a over every item's id, question and gold answer.
pub(crate) fn data_hash(items: &[Item]) -> String {
    let mut h = Fnv1a::new();
    for it in items {
        for part in [&it.id, &it.question, &it.gold] {
            h.write(part.as_bytes());
            h.write(&[0xff]);
        }
    }
    h.hex()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainStart {
    /// Fingerprint of the weights fine-tuning started from.
    pub start_fingerprint: String,
    pub base_fingerprint: String,
    pub examples: usize,
    pub steps: usize,
}

pub struct StarRun<'a> {
    pub root: PathBuf,
    pub cfg: StarConfig,
    pub data: &'a StarData,
    /// The original model M (HF folder or GGUF); every iteration fine-tunes it afresh.
    pub base: PathBuf,
    pub tokenizer: Tokenizer,
    /// Where generation runs (training uses its autodiff twin).
    pub device: Device,
    /// Further devices sharing fine-tuning's batches (data parallel; empty: one device).
    pub more_devices: Vec<Device>,
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StarError> {
    let bytes = serde_json::to_vec_pretty(value).expect("serializable");
    Ok(write_atomic(path, &bytes)?)
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StarError> {
    let text = std::fs::read_to_string(path).map_err(|e| StarError::Model(ModelError::io(path, e)))?;
    serde_json::from_str(&text).map_err(|e| unreadable(path, format!("unreadable ({e}); delete it to redo this phase")))
}

/// Whether `dir` holds a complete saved model (folders are renamed into place when complete).
fn model_exists(dir: &Path) -> bool {
    dir.join("config.json").exists() && dir.join("model.safetensors").exists()
}

fn read_records(path: &Path) -> Result<Vec<RationaleRecord>, StarError> {
    let text = std::fs::read_to_string(path).map_err(|e| StarError::Model(ModelError::io(path, e)))?;
    parse_records(&text).map_err(|e| unreadable(path, e))
}

/// The records of a `rationales.jsonl`. A last line cut short (by a kill mid-write) ends the
/// list — what it held is redone; a bad line before it is an error naming the line.
pub fn parse_records(text: &str) -> Result<Vec<RationaleRecord>, String> {
    let mut out = Vec::new();
    let lines = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines => break,
            Err(e) => return Err(format!("line {}: {e}", i + 1)),
        }
    }
    Ok(out)
}

pub(crate) fn write_records(path: &Path, records: &[RationaleRecord]) -> Result<(), StarError> {
    let text: String = records.iter().map(|r| serde_json::to_string(r).expect("record JSON") + "\n").collect();
    Ok(write_atomic(path, text.as_bytes())?)
}

/// The rationales of an iteration in progress, appended batch by batch to
/// `rationales.partial.jsonl` and renamed to `rationales.jsonl` when complete.
struct PartialRecords {
    path: PathBuf,
    file: std::fs::File,
}

impl PartialRecords {
    /// Opens the partial file holding `records` (rewritten, so a torn last line is gone).
    fn open(dir: &Path, records: &[RationaleRecord]) -> Result<Self, StarError> {
        let path = dir.join("rationales.partial.jsonl");
        write_records(&path, records)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| io(&path, e))?;
        Ok(Self { path, file })
    }

    fn append(&mut self, records: &[RationaleRecord]) -> Result<(), StarError> {
        // The batch in one write: a kill tears at most the last line, which resuming drops.
        let text: String = records.iter().map(|r| serde_json::to_string(r).expect("record JSON") + "\n").collect();
        self.file.write_all(text.as_bytes()).map_err(|e| io(&self.path, e))
    }

    fn complete(self) -> Result<(), StarError> {
        self.file.sync_all().map_err(|e| io(&self.path, e))?;
        let done = self.path.with_file_name("rationales.jsonl");
        std::fs::rename(&self.path, &done).map_err(|e| io(&done, e))
    }
}

impl StarRun<'_> {
    pub fn iter_dir(&self, n: usize) -> PathBuf {
        self.root.join(format!("iter-{n:02}"))
    }

    pub(crate) fn load(&self, path: &Path, device: &Device) -> Result<Transformer, StarError> {
        let ck = open_checkpoint(path, None)?;
        Ok(load_transformer(&ck.config, ck.weights.as_ref(), device)?.0)
    }

    /// Checks or records the config, and the base model's fingerprint.
    fn prepare(&self, resume: bool, base: &Checkpoint) -> Result<BaseInfo, StarError> {
        self.cfg.validate().map_err(StarError::Config)?;
        std::fs::create_dir_all(&self.root).map_err(|e| io(&self.root, e))?;
        let cfg_path = self.root.join("star_config.json");
        if cfg_path.exists() {
            if !resume {
                return Err(StarError::RunExists { path: self.root.clone() });
            }
            let old: StarConfig = read_json(&cfg_path)?;
            if old.fixed_part() != self.cfg.fixed_part() {
                return Err(StarError::OtherSettings { path: self.root.clone() });
            }
        }
        write_json(&cfg_path, &self.cfg)?;
        let base_path = self.root.join("base.json");
        if base_path.exists() {
            return self.check_base_info(read_json(&base_path)?);
        }
        let (train_data, dev_data) = (data_hash(&self.data.train), data_hash(&self.data.dev));
        let weights = load_transformer(&base.config, base.weights.as_ref(), &self.device)?.0;
        let info = BaseInfo { path: self.base.clone(), fingerprint: fingerprint(&weights), train_data, dev_data };
        write_json(&base_path, &info)?;
        Ok(info)
    }

    /// The recorded base model of this run, if it is this run's (same path, same questions).
    pub(crate) fn check_base_info(&self, info: BaseInfo) -> Result<BaseInfo, StarError> {
        if info.path != self.base {
            return Err(StarError::OtherBase { run: info.path, given: self.base.clone() });
        }
        if info.train_data != data_hash(&self.data.train) || info.dev_data != data_hash(&self.data.dev) {
            return Err(StarError::OtherData);
        }
        Ok(info)
    }

    /// The rows of the finished iterations, base first.
    pub(crate) fn finished_rows(&self) -> Result<Vec<IterationRow>, StarError> {
        let mut rows: Vec<IterationRow> = Vec::new();
        while self.iter_dir(rows.len()).join("row.json").exists() {
            rows.push(read_json(&self.iter_dir(rows.len()).join("row.json"))?);
        }
        Ok(rows)
    }

    /// M_{n-1}, the model that writes iteration `n`'s rationales.
    pub(crate) fn previous_model_path(&self, n: usize) -> PathBuf {
        if n == 1 { self.base.clone() } else { self.iter_dir(n - 1).join("model") }
    }

    /// The finished iterations' rows, and where the loop continues.
    fn resume_point(&self, base_info: &BaseInfo) -> Result<(Vec<IterationRow>, Resume), StarError> {
        let rows = self.finished_rows()?;
        let n = rows.len();
        if n == 0 {
            return Ok((rows, Resume::Start));
        }
        let dir = self.iter_dir(n);
        let previous_path = self.previous_model_path(n);
        let done = dir.join("rationales.jsonl");
        let partial = dir.join("rationales.partial.jsonl");
        if !done.exists() && partial.exists() && read_records(&partial)?.len() >= self.data.train.len() {
            // Killed between the last batch and the rename: the partial file is complete.
            std::fs::rename(&partial, &done).map_err(|e| io(&done, e))?;
        }
        if !done.exists() && !model_exists(&dir.join("model")) {
            // Generated elsewhere, shard by shard: the complete set becomes `rationales.jsonl`.
            self.merge_shards(n, base_info)?;
        }
        let resume = if model_exists(&dir.join("model")) {
            Resume::Evaluate {
                iteration: n,
                model: self.load(&dir.join("model"), &self.device)?,
                records: read_records(&done)?,
            }
        } else if done.exists() {
            let previous = self.load(&previous_path, &self.device)?;
            let records = read_records(&done)?;
            let examples = self.cfg.training_set().count(&records);
            let run = RunDir::create(&dir.join("train"), &self.cfg.train_config_for(n, examples), &self.tokenizer)?;
            let from = run
                .resume(&self.device.clone().autodiff())?
                .map(|r| Box::new(Checkpointed { model: r.model, start: r.start }));
            Resume::Train { iteration: n, previous, records, from }
        } else {
            let records = if partial.exists() { read_records(&partial)? } else { Vec::new() };
            Resume::Generate { iteration: n, previous: self.load(&previous_path, &self.device)?, records }
        };
        Ok((rows, resume))
    }

    /// Runs (or continues) the loop; returns one row per iteration, base first.
    pub fn run(&self, resume: bool, obs: &mut dyn StarObserver) -> Result<(Vec<IterationRow>, Finish), StarError> {
        match self.drive(resume, false, obs)? {
            (rows, Stop::Finished(finish)) => Ok((rows, finish)),
            (_, Stop::GenerationDue { .. }) => unreachable!("a whole run generates its own rationales"),
        }
    }

    /// The part of a run whose generation is sharded over a cluster
    /// ([`StarRun::generate_shard`]): starts the run or continues it — merging the current
    /// iteration's shards, fine-tuning, evaluating — and stops where the next iteration's
    /// rationales are due, or at the end.
    pub fn run_until_generation(&self, obs: &mut dyn StarObserver) -> Result<(Vec<IterationRow>, Stop), StarError> {
        self.drive(true, true, obs)
    }

    fn drive(
        &self,
        resume: bool,
        until_generation: bool,
        obs: &mut dyn StarObserver,
    ) -> Result<(Vec<IterationRow>, Stop), StarError> {
        let base = Rc::new(open_checkpoint(&self.base, None)?);
        let base_info = self.prepare(resume, &base)?;
        let (rows, at) = self.resume_point(&base_info)?;
        for row in &rows {
            obs.iteration_done(row);
        }
        self.write_report(&rows)?;
        let setup = StarSetup {
            cfg: self.cfg.clone(),
            data: self.data.clone(),
            base,
            tokenizer: self.tokenizer.clone(),
            device: self.device.clone(),
            more_devices: self.more_devices.clone(),
        };
        // A run resumed after it ended has nothing left to generate.
        let ended = next_after(&rows, &self.cfg).is_some();
        let mut partial = match &at {
            Resume::Generate { iteration, records, .. } if !ended && !until_generation => {
                let whole = records.len() / self.cfg.gen_batch * self.cfg.gen_batch;
                std::fs::create_dir_all(self.iter_dir(*iteration)).map_err(|e| io(&self.iter_dir(*iteration), e))?;
                Some(PartialRecords::open(&self.iter_dir(*iteration), &records[..whole])?)
            }
            _ => None,
        };
        let mut machine = StarLoop::new(setup, rows, at)?;
        let mut train_run: Option<RunDir> = None;
        let mut shown: Option<(usize, Phase)> = None;
        let mut show = |obs: &mut dyn StarObserver, iteration: usize, phase: Phase, total: usize| {
            if shown != Some((iteration, phase)) {
                shown = Some((iteration, phase));
                obs.phase(iteration, phase, total);
            }
        };
        loop {
            if until_generation && let Some(iteration) = machine.generation_due() {
                return Ok((machine.rows().to_vec(), Stop::GenerationDue { iteration }));
            }
            let event = block_on(machine.step(&mut Blocking)).map_err(|e| match e {
                StarError::NothingKept { iteration, unparsable, total, .. } => StarError::NothingKept {
                    iteration,
                    unparsable,
                    total,
                    rationales: Some(self.iter_dir(iteration).join("rationales.jsonl")),
                },
                e => e,
            })?;
            match event {
                StarEvent::Evaluated { iteration, done, total, .. } => {
                    show(obs, iteration, Phase::Evaluate, total);
                    obs.progress(done);
                }
                StarEvent::Generated { iteration, records, done, total } => {
                    show(obs, iteration, Phase::Generate, total);
                    let dir = self.iter_dir(iteration);
                    if partial.is_none() {
                        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
                        partial = Some(PartialRecords::open(&dir, &[])?);
                    }
                    let file = partial.as_mut().expect("opened above");
                    file.append(&records)?;
                    if done == total {
                        partial.take().expect("opened above").complete()?;
                    }
                    obs.progress(done);
                }
                StarEvent::TrainingStarts { iteration, examples, steps, base } => {
                    let dir = self.iter_dir(iteration);
                    if let Some(base) = base {
                        let start_fingerprint = fingerprint(&base);
                        if start_fingerprint != base_info.fingerprint {
                            return Err(StarError::BaseChanged {
                                path: self.base.clone(),
                                found: start_fingerprint,
                                expected: base_info.fingerprint.clone(),
                            });
                        }
                        let start = TrainStart {
                            start_fingerprint,
                            base_fingerprint: base_info.fingerprint.clone(),
                            examples,
                            steps,
                        };
                        write_json(&dir.join("train_start.json"), &start)?;
                    } else {
                        obs.note(&format!("iteration {iteration}: resuming fine-tuning"));
                    }
                    let train_config = self.cfg.train_config_for(iteration, examples);
                    let run = RunDir::create(&dir.join("train"), &train_config, &self.tokenizer)?;
                    show(obs, iteration, Phase::Train, steps);
                    train_run = Some(run);
                }
                StarEvent::TrainStep { metrics, checkpoint_due, .. } => {
                    let run = train_run.as_ref().expect("training started");
                    run.append_metrics(&metrics)?;
                    if checkpoint_due && let Some((model, optimizer, step)) = machine.training_state() {
                        run.save_checkpoint(step, model, optimizer)?;
                    }
                    obs.train_step(&metrics);
                }
                StarEvent::Trained { iteration, model } => {
                    let dir = self.iter_dir(iteration);
                    save_hf_folder(&dir.join("model"), &model, &self.tokenizer)?;
                    // The finished model is saved; its resume checkpoints (weights + optimizer
                    // state) are not needed any more. metrics.jsonl stays.
                    let _ = std::fs::remove_dir_all(dir.join("train").join("checkpoints"));
                    train_run = None;
                }
                StarEvent::IterationDone(row) => {
                    let dir = self.iter_dir(row.iteration);
                    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
                    write_json(&dir.join("eval.json"), &row.dev)?;
                    write_json(&dir.join("row.json"), &row)?;
                    self.write_report(machine.rows())?;
                    obs.iteration_done(&row);
                }
                StarEvent::Finished(finish) => {
                    if let Finish::Plateau { best_iteration } = &finish {
                        obs.note(&format!(
                            "dev accuracy has not improved for {} iterations (best: iteration {best_iteration}); stopping",
                            self.cfg.patience
                        ));
                    }
                    return Ok((machine.rows().to_vec(), Stop::Finished(finish)));
                }
            }
        }
    }

    fn write_report(&self, rows: &[IterationRow]) -> Result<(), StarError> {
        write_json(&self.root.join("summary.json"), &rows)?;
        let title = format!("STaR on {}: dev accuracy by iteration", self.cfg.task.name());
        let svg = svg_chart(rows, &title);
        write_atomic(&self.root.join("chart.svg"), svg.as_bytes())?;
        let md = report_markdown(rows, &self.cfg, &self.root);
        Ok(write_atomic(&self.root.join("report.md"), md.as_bytes())?)
    }
}

/// The run's report: table, chart, the base gate, and a few rationales from the latest iteration
/// (a sound and, where there is one, an unsound rationale: right answer, wrong step).
pub fn report_markdown(rows: &[IterationRow], cfg: &StarConfig, root: &Path) -> String {
    let mut s = format!("# STaR on {}\n\n", cfg.task.name());
    let schedule = match cfg.epochs {
        Some(e) => format!("{e} passes over the iteration's examples"),
        None => format!("{} steps growing ×{} per iteration", cfg.first_steps, cfg.step_growth),
    };
    s.push_str(&format!(
        "{} iterations planned; rationalization {}; fine-tuning from the base model each iteration, {schedule}.\n\n",
        cfg.iterations,
        if cfg.rationalize { "on" } else { "off" },
    ));
    if let Some(base) = rows.first().filter(|r| r.dev_hinted.is_some()) {
        s.push_str(&format!(
            "Base model on the dev set (without / with the hint): {}.\n\n",
            crate::gate::measured(base)
        ));
    }
    s.push_str(&markdown_table(rows));
    s.push_str("\n![accuracy by iteration](chart.svg)\n");
    if let Some(last) = rows.iter().rev().find(|r| r.iteration > 0) {
        let path = root.join(format!("iter-{:02}", last.iteration)).join("rationales.jsonl");
        if let Ok(records) = read_records(&path) {
            s.push_str(&format!("\n## Iteration {}: samples\n", last.iteration));
            for outcome in [Outcome::Kept, Outcome::Rationalized, Outcome::Rejected] {
                if let Some(r) = records.iter().rev().find(|r| r.outcome == outcome) {
                    let text = if outcome == Outcome::Rationalized {
                        r.rationalization.as_deref().unwrap_or("")
                    } else {
                        &r.completion
                    };
                    s.push_str(&format!("\n**{outcome:?}** (`{}`):\n\n```text\n{}```\n", r.id, text));
                }
            }
            if let Some(r) = records.iter().rev().find(|r| r.sound == Some(false)) {
                let text = r.training_completion().unwrap_or("");
                s.push_str(&format!(
                    "\n**Right answer, wrong step** ({:?}, `{}`): trained on all the same when the filter is the \
                     final answer alone, as in the paper.\n\n```text\n{text}```\n",
                    r.outcome, r.id
                ));
            }
        }
    }
    s
}
