//! The STaR loop on disk (native builds). Every phase leaves its artefact, written atomically,
//! and a phase whose artefact exists is never redone, so a run killed at any moment continues
//! with `resume`:
//!
//! ```text
//! run/
//!   star_config.json           the StarConfig
//!   base.json                  base model path and weight fingerprint
//!   iter-00/eval.json          the base model on the dev set
//!   iter-01/rationales.jsonl   every training question: kept / rationalized / rejected
//!   iter-01/train/             fine-tuning run (checkpoints, metrics.jsonl) — resumable mid-way
//!   iter-01/train_start.json   fingerprint of the weights fine-tuning started from (= base)
//!   iter-01/model/             M_1 (Hugging Face folder)
//!   iter-01/eval.json          M_1 on the dev set
//!   iter-01/row.json           the iteration's numbers
//!   summary.json, report.md, chart.svg
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use starling_model::checkpoint::files::{open_checkpoint, save_hf_folder, write_atomic};
use starling_model::generate::GenerateConfig;
use starling_model::hash::Fnv1a;
use starling_model::weights::load_transformer;
use starling_model::{Tokenizer, Transformer};
use starling_tasks::{Exemplar, Item, PromptStyle};
use starling_train::run_dir::{RunDir, RunObserver};
use starling_train::trainer::{StepMetrics, TrainError, TrainObserver, train};

use crate::attempt::{Generator, Outcome, RationaleRecord, training_examples};
use crate::config::StarConfig;
use crate::evaluate::{EvalResult, evaluate};
use crate::fingerprint::fingerprint;
use crate::report::{IterationRow, markdown_table, svg_chart};

#[derive(Debug, thiserror::Error)]
pub enum StarError {
    #[error("STaR config: {0}")]
    Config(String),
    #[error(
        "iteration {iteration}: no training question was answered correctly ({unparsable} of {total} \
         completions had no readable answer), so there is nothing to fine-tune on. The model must be \
         above chance before STaR can bootstrap. The rationales are in {path}"
    )]
    NothingKept { iteration: usize, unparsable: usize, total: usize, path: String },
    /// The run folder already holds a run, and continuing it was not asked for.
    #[error("{} already holds a STaR run", path.display())]
    RunExists { path: PathBuf },
    /// Continuing a run with settings other than its own.
    #[error(
        "the settings differ from the run in {} (only the number of iterations and the patience may change)",
        path.display()
    )]
    OtherSettings { path: PathBuf },
    /// Continuing a run from another base model than the one it started from.
    #[error("this run started from the base model {}, not {}", run.display(), given.display())]
    OtherBase { run: PathBuf, given: PathBuf },
    /// Continuing a run with other training or dev questions.
    #[error("the training or dev questions differ from the run's (other files, limits, digits or sizes)")]
    OtherData,
    /// The base model's weights changed on disk since the run started.
    #[error(
        "the base model at {} has changed since this run started (weights fingerprint {found} ≠ {expected}); \
         STaR must fine-tune the same original model every iteration",
        path.display()
    )]
    BaseChanged { path: PathBuf, found: String, expected: String },
    /// A file of the run that does not match the run (delete it and the phase is redone).
    #[error("{}: {message}; delete it to redo this phase", path.display())]
    Stale { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Model(#[from] starling_model::ModelError),
    #[error(transparent)]
    Train(#[from] TrainError),
}

fn io(path: &Path, e: impl std::fmt::Display) -> StarError {
    StarError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The questions and exemplars of a run.
pub struct StarData {
    pub train: Vec<Item>,
    pub dev: Vec<Item>,
    pub exemplars: Vec<Exemplar>,
}

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
fn data_hash(items: &[Item]) -> String {
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

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Iterations,
    Plateau { best_iteration: usize },
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
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StarError> {
    let bytes = serde_json::to_vec_pretty(value).expect("serializable");
    write_atomic(path, &bytes).map_err(|e| io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, StarError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    serde_json::from_str(&text).map_err(|e| io(path, format!("unreadable ({e}); delete it to redo this phase")))
}

/// Whether `dir` holds a complete saved model (folders are renamed into place when complete).
fn model_exists(dir: &Path) -> bool {
    dir.join("config.json").exists() && dir.join("model.safetensors").exists()
}

fn read_records(path: &Path) -> Result<Vec<RationaleRecord>, StarError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            // A line cut short by a kill mid-write: everything after it is redone.
            Err(_) if i + 1 == text.lines().count() => break,
            Err(e) => return Err(io(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(out)
}

impl StarRun<'_> {
    pub fn iter_dir(&self, n: usize) -> PathBuf {
        self.root.join(format!("iter-{n:02}"))
    }

    fn load(&self, path: &Path, device: &Device) -> Result<Transformer, StarError> {
        let ck = open_checkpoint(path, None)?;
        Ok(load_transformer(&ck.config, ck.weights.as_ref(), device)?.0)
    }

    fn decode_config(&self, model: &Transformer) -> GenerateConfig {
        GenerateConfig {
            max_new_tokens: self.cfg.max_new_tokens,
            sampling: self.cfg.sampling.clone(),
            stop_strings: Vec::new(),
            eos_ids: model.config().eos_token_id.into_iter().collect(),
            seed: self.cfg.seed,
        }
    }

    fn generator<'m>(&'m self, model: &'m Transformer) -> Generator<'m> {
        Generator {
            model,
            tokenizer: &self.tokenizer,
            task: self.cfg.task,
            exemplars: &self.data.exemplars[..self.cfg.shots.min(self.data.exemplars.len())],
            decode: self.decode_config(model),
        }
    }

    /// Checks or records the config, and the base model's fingerprint.
    fn prepare(&self, resume: bool) -> Result<BaseInfo, StarError> {
        self.cfg.validate().map_err(StarError::Config)?;
        if self.data.train.is_empty() || self.data.dev.is_empty() {
            return Err(StarError::Config("STaR needs a non-empty training set and dev set".into()));
        }
        // Records are matched to questions by id, so ids must be unique.
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.data.train.iter().find(|it| !seen.insert(it.id.as_str())) {
            return Err(StarError::Config(format!(
                "the training set has two questions with id {:?}; give every question its own id",
                dup.id
            )));
        }
        std::fs::create_dir_all(&self.root).map_err(|e| io(&self.root, e))?;
        let cfg_path = self.root.join("star_config.json");
        if cfg_path.exists() {
            if !resume {
                return Err(StarError::RunExists { path: self.root.clone() });
            }
            let old: StarConfig = read_json(&cfg_path)?;
            let comparable = |c: &StarConfig| StarConfig { iterations: 0, patience: 0, ..c.clone() };
            if comparable(&old) != comparable(&self.cfg) {
                return Err(StarError::OtherSettings { path: self.root.clone() });
            }
        }
        write_json(&cfg_path, &self.cfg)?;
        let base_path = self.root.join("base.json");
        let (train_data, dev_data) = (data_hash(&self.data.train), data_hash(&self.data.dev));
        if base_path.exists() {
            let info: BaseInfo = read_json(&base_path)?;
            if info.path != self.base {
                return Err(StarError::OtherBase { run: info.path, given: self.base.clone() });
            }
            if info.train_data != train_data || info.dev_data != dev_data {
                return Err(StarError::OtherData);
            }
            return Ok(info);
        }
        let base = self.load(&self.base, &self.device)?;
        let info = BaseInfo { path: self.base.clone(), fingerprint: fingerprint(&base), train_data, dev_data };
        write_json(&base_path, &info)?;
        Ok(info)
    }

    /// Runs (or continues) the loop; returns one row per iteration, base first.
    pub fn run(&self, resume: bool, obs: &mut dyn StarObserver) -> Result<(Vec<IterationRow>, Finish), StarError> {
        let base_info = self.prepare(resume)?;
        let mut rows = Vec::new();
        // Iteration 0: the base model with the same prompt.
        let dir0 = self.iter_dir(0);
        let row0_path = dir0.join("row.json");
        let row0 = if row0_path.exists() {
            read_json(&row0_path)?
        } else {
            let t0 = Instant::now();
            let base = self.load(&self.base, &self.device)?;
            let dev = self.evaluate_phase(0, &base, &dir0, obs)?;
            let row = IterationRow {
                iteration: 0,
                train_total: self.data.train.len(),
                kept: 0,
                rationalized: 0,
                rejected: 0,
                steps: 0,
                dev,
                seconds: t0.elapsed().as_secs_f64(),
            };
            write_json(&row0_path, &row)?;
            row
        };
        obs.iteration_done(&row0);
        rows.push(row0);
        self.write_report(&rows)?;

        let mut best = (0usize, rows[0].dev.accuracy());
        for n in 1..=self.cfg.iterations {
            let dir = self.iter_dir(n);
            let row_path = dir.join("row.json");
            let row = if row_path.exists() { read_json(&row_path)? } else { self.iteration(n, &base_info, obs)? };
            obs.iteration_done(&row);
            let acc = row.dev.accuracy();
            rows.push(row);
            self.write_report(&rows)?;
            if acc > best.1 + 1e-12 {
                best = (n, acc);
            } else if self.cfg.patience > 0 && n - best.0 >= self.cfg.patience {
                obs.note(&format!(
                    "dev accuracy has not improved for {} iterations (best: iteration {}, {:.1}%); stopping",
                    self.cfg.patience,
                    best.0,
                    100.0 * best.1
                ));
                return Ok((rows, Finish::Plateau { best_iteration: best.0 }));
            }
        }
        Ok((rows, Finish::Iterations))
    }

    fn iteration(&self, n: usize, base_info: &BaseInfo, obs: &mut dyn StarObserver) -> Result<IterationRow, StarError> {
        let t0 = Instant::now();
        let dir = self.iter_dir(n);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let previous = if n == 1 { self.base.clone() } else { self.iter_dir(n - 1).join("model") };

        // 1–2. Rationale generation and rationalization with M_{n-1}.
        let records = self.generate_phase(n, &previous, &dir, obs)?;
        let count = |o: Outcome| records.iter().filter(|r| r.outcome == o).count();
        let (kept, rationalized, rejected) =
            (count(Outcome::Kept), count(Outcome::Rationalized), count(Outcome::Rejected));

        // 3. Fine-tune the original model on the kept and rationalized examples.
        let steps = self.cfg.steps_for(n);
        let model_dir = dir.join("model");
        if !model_exists(&model_dir) {
            if kept + rationalized == 0 {
                let unparsable = records.iter().filter(|r| r.answer.is_none()).count();
                return Err(StarError::NothingKept {
                    iteration: n,
                    unparsable,
                    total: records.len(),
                    path: dir.join("rationales.jsonl").display().to_string(),
                });
            }
            self.train_phase(n, &records, steps, &dir, base_info, obs)?;
        }

        // 4. Evaluate M_n on the dev set.
        let model = self.load(&model_dir, &self.device)?;
        let dev = self.evaluate_phase(n, &model, &dir, obs)?;
        let row = IterationRow {
            iteration: n,
            train_total: records.len(),
            kept,
            rationalized,
            rejected,
            steps,
            dev,
            seconds: t0.elapsed().as_secs_f64(),
        };
        write_json(&dir.join("row.json"), &row)?;
        Ok(row)
    }

    /// Questions in generation order: similar lengths together, so batches finish together.
    fn generation_order(&self) -> Vec<usize> {
        crate::evaluate::length_order(&self.data.train)
    }

    fn generate_phase(
        &self,
        n: usize,
        previous: &Path,
        dir: &Path,
        obs: &mut dyn StarObserver,
    ) -> Result<Vec<RationaleRecord>, StarError> {
        let done_path = dir.join("rationales.jsonl");
        if done_path.exists() {
            return read_records(&done_path);
        }
        // Finished batches are appended as they complete; a resumed run skips them.
        let partial_path = dir.join("rationales.partial.jsonl");
        let mut records = if partial_path.exists() { read_records(&partial_path)? } else { Vec::new() };
        let order = self.generation_order();
        let batches: Vec<&[usize]> = order.chunks(self.cfg.gen_batch).collect();
        // Only whole batches count: a trailing partial one is regenerated (identically: seeded per batch).
        let finished_batches = records.len() / self.cfg.gen_batch;
        records.truncate(finished_batches * self.cfg.gen_batch);
        if !records.iter().zip(&order).all(|(r, &i)| r.id == self.data.train[i].id) {
            return Err(StarError::Stale {
                path: partial_path,
                message: "its questions are not this run's training set".into(),
            });
        }
        let mut file = std::fs::File::create(&partial_path).map_err(|e| io(&partial_path, e))?;
        for r in &records {
            writeln!(file, "{}", serde_json::to_string(r).expect("record JSON")).map_err(|e| io(&partial_path, e))?;
        }
        obs.phase(n, Phase::Generate, order.len());
        obs.progress(records.len());
        if finished_batches < batches.len() {
            let model = self.load(previous, &self.device)?;
            let g = self.generator(&model);
            for (b, batch) in batches.iter().enumerate().skip(finished_batches) {
                let items: Vec<&Item> = batch.iter().map(|&i| &self.data.train[i]).collect();
                let seed = self.cfg.seed ^ ((n as u64) << 32) ^ b as u64;
                let out = g.attempt(&items, self.cfg.rationalize, seed)?;
                for r in &out {
                    writeln!(file, "{}", serde_json::to_string(r).expect("record JSON"))
                        .map_err(|e| io(&partial_path, e))?;
                }
                file.flush().map_err(|e| io(&partial_path, e))?;
                records.extend(out);
                obs.progress(records.len());
            }
        }
        file.sync_all().map_err(|e| io(&partial_path, e))?;
        drop(file);
        std::fs::rename(&partial_path, &done_path).map_err(|e| io(&done_path, e))?;
        Ok(records)
    }

    fn train_phase(
        &self,
        n: usize,
        records: &[RationaleRecord],
        steps: usize,
        dir: &Path,
        base_info: &BaseInfo,
        obs: &mut dyn StarObserver,
    ) -> Result<(), StarError> {
        let by_id: HashMap<&str, &Item> = self.data.train.iter().map(|it| (it.id.as_str(), it)).collect();
        let train_device = self.device.clone().autodiff();
        let base = self.load(&self.base, &train_device)?;
        let eos = base.config().eos_token_id;
        let examples = training_examples(records, &by_id, &self.tokenizer, eos)?;
        let start_fingerprint = fingerprint(&base);
        if start_fingerprint != base_info.fingerprint {
            return Err(StarError::BaseChanged {
                path: self.base.clone(),
                found: start_fingerprint,
                expected: base_info.fingerprint.clone(),
            });
        }
        write_json(
            &dir.join("train_start.json"),
            &TrainStart {
                start_fingerprint,
                base_fingerprint: base_info.fingerprint.clone(),
                examples: examples.len(),
                steps,
            },
        )?;

        let mut tc = self.cfg.train.clone();
        tc.steps = steps;
        tc.seed = self.cfg.seed.wrapping_add(n as u64);
        tc.eval_every = None;
        let run = RunDir::create(&dir.join("train"), &tc, &self.tokenizer)?;
        let (model, start) = match run.resume(&train_device)? {
            Some(r) => {
                obs.note(&format!("iteration {n}: resuming fine-tuning at step {} of {steps}", r.step));
                (r.model, Some(r.start))
            }
            None => (base, None),
        };
        obs.phase(n, Phase::Train, steps);
        let mut forward = Forward { obs };
        let mut observer = RunObserver { run: &run, inner: &mut forward };
        let (model, _) = train(model, &examples, None, &tc, start, &mut observer)?;
        save_hf_folder(&dir.join("model"), &model.valid(), &self.tokenizer)?;
        // The finished model is saved; its resume checkpoints (weights + optimizer state) are not
        // needed any more. metrics.jsonl stays.
        let _ = std::fs::remove_dir_all(dir.join("train").join("checkpoints"));
        Ok(())
    }

    fn evaluate_phase(
        &self,
        n: usize,
        model: &Transformer,
        dir: &Path,
        obs: &mut dyn StarObserver,
    ) -> Result<EvalResult, StarError> {
        let path = dir.join("eval.json");
        if path.exists() {
            return read_json(&path);
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        obs.phase(n, Phase::Evaluate, self.data.dev.len());
        let mut g = self.generator(model);
        // Evaluation is greedy whatever the generation sampling is.
        g.decode.sampling = starling_model::sampling::SamplingConfig {
            suppress: g.decode.sampling.suppress.clone(),
            ..Default::default()
        };
        let result =
            evaluate(&g, &self.data.dev, PromptStyle::Rationale, self.cfg.gen_batch, &mut |d| obs.progress(d))?;
        write_json(&path, &result)?;
        Ok(result)
    }

    fn write_report(&self, rows: &[IterationRow]) -> Result<(), StarError> {
        write_json(&self.root.join("summary.json"), &rows)?;
        let title = format!("STaR on {}: dev accuracy by iteration", self.cfg.task.name());
        let svg = svg_chart(rows, &title);
        write_atomic(&self.root.join("chart.svg"), svg.as_bytes()).map_err(|e| io(&self.root, e))?;
        let md = report_markdown(rows, &self.cfg, &self.root);
        write_atomic(&self.root.join("report.md"), md.as_bytes()).map_err(|e| io(&self.root, e))
    }
}

/// The run's report: table, chart, and a few rationales from the latest iteration.
pub fn report_markdown(rows: &[IterationRow], cfg: &StarConfig, root: &Path) -> String {
    let mut s = format!("# STaR on {}\n\n", cfg.task.name());
    s.push_str(&format!(
        "{} iterations planned; rationalization {}; fine-tuning from the base model each iteration, {} steps growing ×{} per iteration.\n\n",
        cfg.iterations,
        if cfg.rationalize { "on" } else { "off" },
        cfg.first_steps,
        cfg.step_growth
    ));
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
        }
    }
    s
}

/// Passes training steps through to the STaR observer.
struct Forward<'o> {
    obs: &'o mut dyn StarObserver,
}

impl TrainObserver for Forward<'_> {
    fn on_step(&mut self, m: &StepMetrics) -> Result<(), TrainError> {
        self.obs.train_step(m);
        Ok(())
    }
}
