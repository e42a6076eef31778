//! Data for Starling's experiments: the built-in arithmetic task (more tasks arrive with STaR).

pub mod arithmetic;
