//! A sharded iteration on disk (native builds). Shard K of N writes
//! `iter-NN/shards/K-of-N.jsonl`: a [`ShardHeader`] line, then its records in its batch order —
//! appended batch by batch to `K-of-N.partial.jsonl` (a killed shard, rerun alone, keeps its
//! whole batches) and renamed when whole. A shard writes nothing else, so shards on many
//! machines share the run folder safely. When the whole set is there, the next start of the run
//! merges it into the iteration's `rationales.jsonl` — refusing a set with a shard missing or
//! written for anything else than this run, iteration and model — and removes the shards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use starling_model::Transformer;
use starling_model::checkpoint::files::{open_checkpoint, write_atomic};
use starling_model::host::{Blocking, block_on};

use crate::StarError;
use crate::attempt::RationaleRecord;
use crate::evaluate::length_order;
use crate::fingerprint::fingerprint;
use crate::machine::{Resume, StarLoop, StarSetup, next_after};
use crate::run::{
    BaseInfo, Phase, StarObserver, StarRun, data_hash, io, parse_records, read_json, unreadable, write_records,
};
use crate::shard::{Shard, ShardHeader, assemble, settings_fingerprint};

/// Holds an exclusive lock on shard `shard`'s lock file in `dir` (released when dropped), or
/// says that another process has it.
fn lock_shard(dir: &Path, shard: Shard) -> Result<std::fs::File, StarError> {
    let path = dir.join(format!("{}-of-{}.lock", shard.index, shard.count));
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StarError::ShardInUse { shard: shard.to_string(), lock: path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path, e)),
    }
}

/// What [`StarRun::generate_shard`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardOutcome {
    /// The shard's `records` rationales of `iteration` are written (`resumed_from` of them by an
    /// earlier, interrupted process).
    Generated { iteration: usize, records: usize, resumed_from: usize },
    /// This shard of the current iteration was already written.
    AlreadyGenerated { iteration: usize },
    /// The current iteration's rationales are already merged: nothing to generate.
    AlreadyMerged { iteration: usize },
    /// The run has done all its iterations.
    RunFinished,
}

/// A shard file's header and records.
fn read_shard_file(path: &Path) -> Result<(ShardHeader, Vec<RationaleRecord>), StarError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let header = serde_json::from_str(first).map_err(|e| StarError::ForeignShard {
        path: path.to_path_buf(),
        reason: format!("its first line is not a shard header ({e})"),
    })?;
    // The header's line stays in (empty), so an error names the file's own line number.
    Ok((header, parse_records(&format!("\n{rest}")).map_err(|e| unreadable(path, e))?))
}

fn shard_file_text(header: &ShardHeader, records: &[RationaleRecord]) -> String {
    let mut text = serde_json::to_string(header).expect("header JSON") + "\n";
    for r in records {
        text += &(serde_json::to_string(r).expect("record JSON") + "\n");
    }
    text
}

impl StarRun<'_> {
    /// Where iteration `n`'s shards are written.
    pub fn shards_dir(&self, n: usize) -> PathBuf {
        self.iter_dir(n).join("shards")
    }

    /// The header a shard of iteration `iteration` by `model` (M_{iteration-1}) carries.
    fn shard_header(&self, iteration: usize, shard: Shard, base: &BaseInfo, model: &Transformer) -> ShardHeader {
        ShardHeader {
            iteration,
            shard: shard.index,
            shards: shard.count,
            settings: settings_fingerprint(&self.cfg),
            base: base.fingerprint.clone(),
            model: fingerprint(model),
            train_data: data_hash(&self.data.train),
        }
    }

    /// The run as started by [`StarRun::run_until_generation`], checked against these settings
    /// and data without writing anything (shards may run on many machines at once).
    fn started_run(&self) -> Result<BaseInfo, StarError> {
        let (cfg_path, base_path) = (self.root.join("star_config.json"), self.root.join("base.json"));
        if !cfg_path.exists() || !base_path.exists() {
            return Err(StarError::NotStarted { path: self.root.clone() });
        }
        let recorded: crate::StarConfig = read_json(&cfg_path)?;
        if recorded.fixed_part() != self.cfg.fixed_part() {
            return Err(StarError::OtherSettings { path: self.root.clone() });
        }
        self.check_base_info(read_json(&base_path)?)
    }

    /// Generates shard `shard` of the current iteration's rationales (see [`crate::shard`]),
    /// continuing an interrupted attempt from its last whole batch.
    pub fn generate_shard(&self, shard: Shard, obs: &mut dyn StarObserver) -> Result<ShardOutcome, StarError> {
        let base_info = self.started_run()?;
        let rows = self.finished_rows()?;
        if rows.is_empty() {
            return Err(StarError::NotStarted { path: self.root.clone() });
        }
        if next_after(&rows, &self.cfg).is_some() {
            return Ok(ShardOutcome::RunFinished);
        }
        let iteration = rows.len();
        if self.iter_dir(iteration).join("rationales.jsonl").exists() {
            return Ok(ShardOutcome::AlreadyMerged { iteration });
        }
        let dir = self.shards_dir(iteration);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        // One process per shard: a scheduler may start a replacement while the first still runs.
        let _lock = lock_shard(&dir, shard)?;
        let previous = self.load(&self.previous_model_path(iteration), &self.device)?;
        let header = self.shard_header(iteration, shard, &base_info, &previous);
        let done = dir.join(shard.file_name());
        if done.exists() {
            let (found, _) = read_shard_file(&done)?;
            if let Some(reason) = found.mismatch(&header) {
                return Err(StarError::ForeignShard { path: done, reason: reason.to_string() });
            }
            return Ok(ShardOutcome::AlreadyGenerated { iteration });
        }
        let setup = StarSetup {
            cfg: self.cfg.clone(),
            data: self.data.clone(),
            base: Rc::new(open_checkpoint(&self.base, None)?),
            tokenizer: self.tokenizer.clone(),
            device: self.device.clone(),
            more_devices: Vec::new(),
        };
        let machine = StarLoop::new(setup, rows, Resume::Generate { iteration, previous, records: Vec::new() })?;
        let batches: Vec<usize> = shard.batches(machine.generation_batches()).collect();
        let total: usize = batches.iter().map(|&b| machine.batch_questions(b).len()).sum();

        // An interrupted attempt of this shard: its whole batches of these questions are kept.
        let partial = dir.join(format!("{}-of-{}.partial.jsonl", shard.index, shard.count));
        let mut records = match partial.exists().then(|| read_shard_file(&partial)).transpose()? {
            Some((h, records)) if h == header => records,
            Some(_) => {
                obs.note(&format!(
                    "{} was written for other settings or another model; starting the shard afresh",
                    partial.display()
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut whole = 0;
        let mut next = 0;
        for &b in &batches {
            let ids: Vec<&str> = machine.batch_questions(b).iter().map(|it| it.id.as_str()).collect();
            let held = records.get(whole..whole + ids.len());
            if !held.is_some_and(|h| h.iter().map(|r| r.id.as_str()).eq(ids.iter().copied())) {
                break;
            }
            whole += ids.len();
            next += 1;
        }
        records.truncate(whole);
        write_atomic(&partial, shard_file_text(&header, &records).as_bytes())?;
        let mut file = std::fs::OpenOptions::new().append(true).open(&partial).map_err(|e| io(&partial, e))?;
        obs.phase(iteration, Phase::Generate, total);
        obs.progress(whole);
        let mut written = whole;
        for &b in &batches[next..] {
            let new = block_on(machine.rationales_for_batch(iteration, b, &mut Blocking))?;
            // The batch in one write: a kill tears at most the last line.
            let text: String = new.iter().map(|r| serde_json::to_string(r).expect("record JSON") + "\n").collect();
            file.write_all(text.as_bytes()).map_err(|e| io(&partial, e))?;
            written += new.len();
            obs.progress(written);
        }
        file.sync_all().map_err(|e| io(&partial, e))?;
        std::fs::rename(&partial, &done).map_err(|e| io(&done, e))?;
        Ok(ShardOutcome::Generated { iteration, records: written, resumed_from: whole })
    }

    /// Merges iteration `n`'s shards into its `rationales.jsonl`, if it has any. A set with a
    /// shard missing, unfinished, or written for another run, iteration or model is refused
    /// naming it.
    pub(crate) fn merge_shards(&self, n: usize, base: &BaseInfo) -> Result<(), StarError> {
        let dir = self.shards_dir(n);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        let mut files: Vec<(Shard, bool, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((shard, finished)) = Shard::parse_file_name(&name) {
                files.push((shard, finished, entry.path()));
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        // Every complete set holds the same records; files of another count (an earlier split,
        // a task resubmitted with the wrong count) are left out. Without a complete set, the
        // count with the most finished shards says what is missing.
        let finished_of = |count: usize| files.iter().filter(|(s, f, _)| *f && s.count == count).count();
        let mut counts: Vec<usize> = files.iter().map(|(s, _, _)| s.count).collect();
        counts.sort_unstable();
        counts.dedup();
        let count = match counts.iter().rev().find(|&&c| finished_of(c) == c) {
            Some(&complete) => complete,
            None => {
                let count = *counts.iter().max_by_key(|&&c| (finished_of(c), c)).expect("a file was found");
                let missing: Vec<usize> = (0..count)
                    .filter(|&k| !files.iter().any(|(s, finished, _)| *s == Shard { index: k, count } && *finished))
                    .collect();
                return Err(StarError::MissingShards { iteration: n, count, missing, dir });
            }
        };

        let previous = self.load(&self.previous_model_path(n), &self.device)?;
        let order = length_order(&self.data.train);
        let batches: Vec<&[usize]> = order.chunks(self.cfg.gen_batch).collect();
        let mut shards = Vec::with_capacity(count);
        for index in 0..count {
            let shard = Shard { index, count };
            let path = dir.join(shard.file_name());
            let (header, records) = read_shard_file(&path)?;
            let foreign = |reason: &str| StarError::ForeignShard { path: path.clone(), reason: reason.to_string() };
            if let Some(reason) = header.mismatch(&self.shard_header(n, shard, base, &previous)) {
                return Err(foreign(reason));
            }
            let expected =
                shard.batches(batches.len()).flat_map(|b| batches[b]).map(|&i| self.data.train[i].id.as_str());
            if !records.iter().map(|r| r.id.as_str()).eq(expected) {
                return Err(foreign("its records are not its batches' questions (cut short, or edited)"));
            }
            shards.push(records);
        }
        let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
        let merged = assemble(shards, &sizes);
        write_records(&self.iter_dir(n).join("rationales.jsonl"), &merged)?;
        // Merged and safely written: the shards are spent.
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
