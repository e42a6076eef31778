//! Data for Starling's experiments: question/answer tasks in one shape ([`Item`]), their prompt
//! formats, hints for rationalization, and answer extraction.
//!
//! Tasks: the built-in n-digit addition ([`arithmetic`]), hidden multi-hop lookups ([`hops`]),
//! CommonsenseQA ([`csqa`]), GSM8K ([`gsm8k`]) and users' own question/answer JSONL ([`qa`]).
//! Parsers take text, not paths: the crate does no I/O.

pub mod answer;
pub mod arithmetic;
pub mod csqa;
pub mod gsm8k;
pub mod hops;
pub mod item;
pub mod jsonl;
pub mod official;
pub mod qa;
pub mod zero_shot;

pub use item::{Exemplar, Item, PromptStyle, TaskKind};
pub use jsonl::{OnBadLine, Parsed, TaskError};
