//! One iteration's rationale generation split over N processes — the array tasks of a Slurm job
//! or the pods of a Kubernetes Indexed Job. Generation is embarrassingly parallel over questions:
//! shard K of N takes the generation batches b with b mod N = K (round robin, so the questions of
//! every length — batches go shortest first — are spread evenly), and each batch keeps the seed
//! it has in a single-process run. Assembled in batch order, the shards' records are the
//! single-process run's `rationales.jsonl`, record for record.
//!
//! This module is the arithmetic of that split and the header that ties a shard's records to
//! one run, iteration and model; the files live in [`crate::run`] (native builds).

use serde::{Deserialize, Serialize};

use starling_model::hash::Fnv1a;

use crate::StarConfig;
use crate::attempt::RationaleRecord;

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `K/N`, counting from 0: `0/4` … `3/4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard {s:?}: write K/N with 0 ≤ K < N, e.g. 0/4 for the first of four");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::new(index, count).ok_or_else(bad)
    }
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// The shard a cluster scheduler gave this process, read through `var` (the environment).
    /// The index is Slurm's `SLURM_ARRAY_TASK_ID` or Kubernetes' `JOB_COMPLETION_INDEX` (arrays
    /// count from 0); the count is `STARLING_SHARDS` when set, else Slurm's
    /// `SLURM_ARRAY_TASK_COUNT`. `STARLING_SHARDS` comes first because a failed task resubmitted
    /// alone (`sbatch --array=K`) is an array of one, and because Kubernetes does not tell a pod
    /// the Job's completions.
    pub fn from_scheduler(var: &dyn Fn(&str) -> Option<String>) -> Result<Shard, String> {
        let number = |name: &str| -> Result<Option<usize>, String> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| format!("{name}={v:?} is not a whole number")),
            }
        };
        let shards = number("STARLING_SHARDS")?;
        let (index, count, source) = if let Some(index) = number("SLURM_ARRAY_TASK_ID")? {
            let count = match shards {
                Some(n) => n,
                None => number("SLURM_ARRAY_TASK_COUNT")?
                    .ok_or("SLURM_ARRAY_TASK_ID is set but neither STARLING_SHARDS nor SLURM_ARRAY_TASK_COUNT is")?,
            };
            (index, count, "the Slurm job array")
        } else if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = shards.ok_or(
                "JOB_COMPLETION_INDEX is set but STARLING_SHARDS is not: set it to the Indexed Job's completions, \
                 or pass --shard K/N",
            )?;
            (index, count, "the Kubernetes Indexed Job")
        } else {
            return Err("no shard given: pass --shard K/N, or run as a Slurm job array (SLURM_ARRAY_TASK_ID) \
                        or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX with STARLING_SHARDS)"
                .into());
        };
        Shard::new(index, count).ok_or_else(|| {
            format!(
                "{source} gives shard {index} of {count}: indices run 0…{} (Slurm: --array=0-{}); a task \
                 resubmitted alone needs STARLING_SHARDS={{the shard count}}, or pass --shard K/N",
                count.saturating_sub(1),
                count.saturating_sub(1)
            )
        })
    }

    /// This shard's generation batches, of `batches` in all.
    pub fn batches(&self, batches: usize) -> impl Iterator<Item = usize> + use<> {
        (self.index..batches).step_by(self.count)
    }

    /// The file name of this shard's records (`K-of-N.jsonl`).
    pub fn file_name(&self) -> String {
        format!("{}-of-{}.jsonl", self.index, self.count)
    }

    /// The shard a file name (`K-of-N.jsonl`, or `K-of-N.partial.jsonl` while it is written)
    /// belongs to, and whether it is finished.
    pub fn parse_file_name(name: &str) -> Option<(Shard, bool)> {
        let (stem, finished) = match name.strip_suffix(".partial.jsonl") {
            Some(stem) => (stem, false),
            None => (name.strip_suffix(".jsonl")?, true),
        };
        let (k, n) = stem.split_once("-of-")?;
        Some((Shard::new(k.parse().ok()?, n.parse().ok()?)?, finished))
    }
}

/// The first line of a shard's file: what its records were generated for. A merge takes a
/// shard only if every field matches the run's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHeader {
    pub iteration: usize,
    pub shard: usize,
    pub shards: usize,
    /// Hash of the run's fixed settings ([`settings_fingerprint`]).
    pub settings: String,
    /// Fingerprint of the original model M's weights.
    pub base: String,
    /// Fingerprint of the model that wrote the rationales, M_{iteration-1}.
    pub model: String,
    /// Hash of the training questions.
    pub train_data: String,
}

impl ShardHeader {
    /// The first field in which `self` (a shard's file) differs from `expected` (the run), as
    /// the words a refusal gives.
    pub fn mismatch(&self, expected: &ShardHeader) -> Option<&'static str> {
        if self.iteration != expected.iteration {
            Some("it was generated for another iteration")
        } else if (self.shard, self.shards) != (expected.shard, expected.shards) {
            Some("its header names another shard than its file name")
        } else if self.settings != expected.settings {
            Some("it was generated with other settings")
        } else if self.base != expected.base {
            Some("it belongs to a run from another base model")
        } else if self.model != expected.model {
            Some("it was generated by another model than this iteration's")
        } else if self.train_data != expected.train_data {
            Some("it was generated for other training questions")
        } else {
            None
        }
    }
}

/// Hash of a run's fixed settings (all but iterations and patience).
pub fn settings_fingerprint(cfg: &StarConfig) -> String {
    let mut h = Fnv1a::new();
    h.write(&serde_json::to_vec(&cfg.fixed_part()).expect("StarConfig serializes"));
    h.hex()
}

/// The records of one iteration in generation order, from each shard's records (index = shard,
/// each in its own batch order) and the batch sizes: batch b comes from shard b mod N.
pub fn assemble(shards: Vec<Vec<RationaleRecord>>, batch_sizes: &[usize]) -> Vec<RationaleRecord> {
    let count = shards.len();
    let mut sources: Vec<_> = shards.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(batch_sizes.iter().sum());
    for (b, &size) in batch_sizes.iter().enumerate() {
        out.extend(sources[b % count].by_ref().take(size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> RationaleRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "completion": "", "answer": null, "outcome": "rejected"
        }))
        .unwrap()
    }

    #[test]
    fn shard_specs_parse_and_refuse_nonsense() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn scheduler_variables_give_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let slurm =
            env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::from_scheduler(&slurm).unwrap(), Shard { index: 2, count: 3 });
        // Task 2 of a 3-shard run resubmitted alone: an array of one, whose count is the run's.
        let rerun = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
            ("STARLING_SHARDS", "3"),
        ]);
        assert_eq!(Shard::from_scheduler(&rerun).unwrap(), Shard { index: 2, count: 3 });
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1"), ("STARLING_SHARDS", "2")]);
        assert_eq!(Shard::from_scheduler(&k8s).unwrap(), Shard { index: 1, count: 2 });
        // Slurm wins when both are set (a Slurm job on a node that also exports the other).
        let both = env(&[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(Shard::from_scheduler(&both).unwrap(), Shard { index: 0, count: 2 });
        let errors = [
            Shard::from_scheduler(&env(&[])).unwrap_err(),
            Shard::from_scheduler(&env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap_err(),
            Shard::from_scheduler(&env(&[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_COUNT", "3")])).unwrap_err(),
            Shard::from_scheduler(&env(&[("SLURM_ARRAY_TASK_ID", "x")])).unwrap_err(),
        ];
        assert!(errors[0].contains("--shard K/N"), "{}", errors[0]);
        assert!(errors[1].contains("STARLING_SHARDS"), "{}", errors[1]);
        assert!(errors[2].contains("--array=0-2") && errors[2].contains("STARLING_SHARDS"), "{}", errors[2]);
        assert!(errors[3].contains("not a whole number"), "{}", errors[3]);
    }

    #[test]
    fn file_names_round_trip() {
        let s = Shard { index: 3, count: 8 };
        assert_eq!(Shard::parse_file_name(&s.file_name()), Some((s, true)));
        assert_eq!(Shard::parse_file_name("3-of-8.partial.jsonl"), Some((s, false)));
        for other in ["8-of-8.jsonl", "notes.txt", "3-of-8.json", ".3-of-8.jsonl.tmp-12"] {
            assert_eq!(Shard::parse_file_name(other), None, "{other}");
        }
    }

    /// Round robin over batches, reassembled in batch order, is the original order — with a
    /// short last batch and more shards than some shards have batches.
    #[test]
    fn assembled_shards_are_the_single_process_order() {
        let sizes = [4, 4, 4, 4, 4, 2];
        let all: Vec<RationaleRecord> = (0..22).map(|i| record(&format!("q{i}"))).collect();
        for count in 1..=7 {
            let mut shards = Vec::new();
            for index in 0..count {
                let shard = Shard { index, count };
                let mut mine = Vec::new();
                for b in shard.batches(sizes.len()) {
                    let start: usize = sizes[..b].iter().sum();
                    mine.extend(all[start..start + sizes[b]].iter().cloned());
                }
                shards.push(mine);
            }
            let ids = |rs: &[RationaleRecord]| rs.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&assemble(shards, &sizes)), ids(&all), "{count} shards");
        }
    }
}
