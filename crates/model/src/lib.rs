//! Starling's model core: a Llama-family transformer on burn, checkpoint loading (Hugging Face
//! folders and GGUF), tokenization, KV-cached generation with on-device sampling.
//!
//! No printing here; file access is confined to `checkpoint::files` (absent on wasm).

pub mod batching;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod generate;
pub mod hash;
pub mod host;
pub mod mask;
pub mod model;
pub mod prefix;
pub mod sampling;
pub mod score;
pub mod tokenizer;
pub mod weights;

pub use config::ModelConfig;
pub use error::{ModelError, Result};
pub use model::Transformer;
pub use tokenizer::Tokenizer;
