//! Errors of a STaR run. They say what is wrong and carry the numbers and paths; the front ends
//! add which option or control changes it.

use std::path::PathBuf;

use crate::gate::GateFailure;

#[derive(Debug, thiserror::Error)]
pub enum StarError {
    #[error("STaR config: {0}")]
    Config(String),
    /// No training question of an iteration reached its gold answer, even with the hint.
    #[error(
        "iteration {iteration}: no training question was answered correctly ({unparsable} of {total} \
         completions had no readable answer), so there is nothing to fine-tune on; the model must be \
         above chance before STaR can bootstrap{}",
        rationales.as_ref().map(|p| format!(". The rationales are in {}", p.display())).unwrap_or_default()
    )]
    NothingKept { iteration: usize, unparsable: usize, total: usize, rationales: Option<PathBuf> },
    /// The base model cannot start the bootstrap (see [`crate::gate`]).
    #[error(transparent)]
    GateFailed(GateFailure),
    /// A step was asked of a run that stopped at an error.
    #[error("this STaR run stopped at an error; start a new one")]
    Stopped,
    /// Rationale records given to resume a run that are not its training questions.
    #[error("the saved rationales are not this run's training questions")]
    StaleRecords,
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
    /// A shard or merge of a sharded run was started on a folder that holds no run yet: the
    /// base model's evaluation (iteration 0) comes first.
    #[error("{} holds no started STaR run (no star_config.json, or no evaluated base model)", path.display())]
    NotStarted { path: PathBuf },
    /// Merging an iteration's shards while some are missing or unfinished.
    #[error(
        "iteration {iteration}: {} of {count} shards missing or unfinished in {} (shards {})",
        missing.len(), dir.display(),
        missing.iter().map(|k| format!("{k}/{count}")).collect::<Vec<_>>().join(", ")
    )]
    MissingShards { iteration: usize, count: usize, missing: Vec<usize>, dir: PathBuf },
    /// A shard file that does not belong to this run, iteration or model.
    #[error("{} is not a shard of this iteration: {reason}", path.display())]
    ForeignShard { path: PathBuf, reason: String },
    /// A file of the run that cannot be read back.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] starling_model::ModelError),
    #[error(transparent)]
    Train(#[from] starling_train::TrainError),
}
