//! STaR (Zelikman et al. 2022, Algorithm 1): generate rationales with the previous model, rationalize
//! the failures with a hint, keep what reaches the gold answer (stored without the hint), and
//! fine-tune the *original* model on the union — again and again.
//!
//! The loop is written once, in [`machine`]: a state machine that does one bounded piece of work
//! per step, with its device reads left to a `Host` — the browser drives it asynchronously, the
//! CLI synchronously through [`run`] (native builds), which keeps every step's artefacts on disk
//! and resumes a killed run. The pieces are free of I/O: [`attempt`] (rationale generation and
//! rationalization), [`evaluate`] (accuracy overall and per group), [`gate`] (what a base model
//! must do first), [`flow`] (where an iteration's questions went, and the right answers reached
//! through a wrong step), [`report`] (table and SVG chart), [`shard`] (one iteration's generation split
//! over the processes of a cluster job).

pub mod attempt;
pub mod builtin;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod fingerprint;
pub mod flow;
pub mod gate;
pub mod machine;
pub mod report;
#[cfg(not(target_family = "wasm"))]
pub mod run;
pub mod shard;
#[cfg(not(target_family = "wasm"))]
mod shard_files;

pub use attempt::{Outcome, RationaleRecord};
pub use config::StarConfig;
pub use error::StarError;
pub use evaluate::EvalResult;
pub use gate::BaseGate;
pub use machine::{Finish, Resume, StarData, StarEvent, StarLoop, StarSetup};
pub use shard::Shard;
#[cfg(not(target_family = "wasm"))]
pub use shard_files::ShardOutcome;
