//! Training for Starling models: AdamW, schedules, loss-masked batches, the training loop and
//! (natively) run folders with atomic checkpoints and exact resume.

pub mod corpus;
pub mod data;
pub mod optim;
pub mod parallel;
#[cfg(not(target_family = "wasm"))]
pub mod run_dir;
pub mod schedule;
pub mod trainer;

pub use data::Example;
pub use trainer::{StepMetrics, TrainConfig, TrainError, TrainObserver, train, train_data_parallel};
