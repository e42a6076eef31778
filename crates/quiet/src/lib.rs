//! Quiet-STaR (Zelikman et al. 2024): a language model that thinks before every token.
//!
//! - [`model`]: the base transformer plus learned start/end-of-thought embeddings and the mixing
//!   head; a thought step advances the thoughts of all positions at once through the
//!   thought-parallel attention op (`starling-thought`).
//! - [`sample`]: thoughts sampled in parallel at every position.
//! - [`loss`]: one training step's loss — base LM loss, non-myopic talk loss through the mixing
//!   head, REINFORCE on the thoughts.
//! - [`trainer`]: the optimization loop (checkpoints, resume, metrics, NaN stop).
//! - [`hops_demo`]: the built-in demonstration (`starling quiet demo`): hidden multi-hop lookups,
//!   where a thought must help; [`demo`]: the earlier one on two-digit sums. Native builds.
//! - [`probe`]: one position's next-token prediction with a chosen thought (interventions).
//! - [`generate`]: thoughtful generation with a KV cache; [`analyze`]: which tokens thoughts help;
//!   [`inside`]: one text's thoughts, attention sight and predictions, for pictures of them;
//!   [`eval`]: zero-shot answer likelihood and choice accuracy with and without thoughts.
//!
//! No printing and no file access outside `checkpoint`.

pub mod analyze;
pub mod checkpoint;
pub mod config;
#[cfg(not(target_family = "wasm"))]
pub mod demo;
pub mod eval;
pub mod generate;
#[cfg(not(target_family = "wasm"))]
pub mod hops_demo;
pub mod hops_settings;
pub mod inside;
pub mod loss;
pub mod model;
pub mod probe;
pub mod sample;
pub mod stepper;
#[cfg(not(target_family = "wasm"))]
pub mod trainer;

pub use config::QuietConfig;
pub use model::QuietModel;

#[derive(Debug, thiserror::Error)]
pub enum QuietError {
    #[error("Quiet-STaR config: {0}")]
    Config(String),
    #[error("input: {0}")]
    Input(String),
    #[error(
        "the {what} became {value} at step {step}; training stopped and this step was not saved \
         (the last good checkpoint is kept). Lower the learning rate or the policy loss weight"
    )]
    NonFinite { what: &'static str, step: usize, value: f64 },
    #[error(transparent)]
    Model(#[from] starling_model::ModelError),
    #[error(transparent)]
    Train(#[from] starling_train::trainer::TrainError),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error(transparent)]
    Kernel(#[from] starling_thought::KernelError),
    /// A run folder made with other settings than the ones given.
    #[error("{} holds a Quiet-STaR run with other settings", path.display())]
    OtherRun { path: std::path::PathBuf },
}

pub type Result<T> = std::result::Result<T, QuietError>;
