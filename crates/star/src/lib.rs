//! STaR (Zelikman et al. 2022, Algorithm 1): generate rationales with the previous model, rationalize
//! the failures with a hint, keep what reaches the gold answer (stored without the hint), and
//! fine-tune the *original* model on the union — again and again.
//!
//! The pieces here are free of I/O: [`attempt`] (rationale generation and rationalization),
//! [`evaluate`] (accuracy overall and per group), [`report`] (table and SVG chart). The loop with
//! its on-disk artefacts and resume lives in [`run`] (native builds).

pub mod attempt;
pub mod config;
pub mod evaluate;
pub mod fingerprint;
pub mod report;
#[cfg(not(target_family = "wasm"))]
pub mod run;

pub use attempt::{Outcome, RationaleRecord};
pub use config::StarConfig;
pub use evaluate::EvalResult;
