//! Reading and writing model weights.
//!
//! Every format is turned into one neutral view, [`WeightSource`]: tensors named as in Hugging
//! Face Llama checkpoints (`model.layers.0.self_attn.q_proj.weight`), in PyTorch layout
//! (`[out, in]` for linear weights), as f32. The model builder pulls from that view, so the
//! safetensors and GGUF paths share every shape check and error message.

#[cfg(not(target_family = "wasm"))]
pub mod files;
pub mod gguf;
pub mod gguf_tokenizer;
pub mod memory;
pub mod quant;
pub mod safetensors;

use std::path::{Path, PathBuf};

use crate::error::Result;

/// A checkpoint opened (from disk or from bytes in memory), weights not yet loaded onto a device.
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: crate::config::ModelConfig,
    pub weights: Box<dyn WeightSource>,
    pub tokenizer: crate::tokenizer::Tokenizer,
    pub format: CheckpointFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointFormat {
    HfFolder,
    Gguf { version: u32 },
}

/// A dense f32 tensor in host memory, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Refuses a tensor holding NaN or infinite values, naming it (`path` and `name` say where
    /// it was read from).
    pub fn check_finite(&self, path: &std::path::Path, name: &str) -> crate::Result<()> {
        let Some(first) = self.data.iter().position(|v| !v.is_finite()) else { return Ok(()) };
        Err(crate::ModelError::NonFinite {
            path: path.to_path_buf(),
            name: name.to_string(),
            count: self.data.iter().filter(|v| !v.is_finite()).count(),
            first,
            value: self.data[first],
        })
    }

    /// Transpose of a 2-D tensor (`[r, c]` → `[c, r]`).
    pub fn transposed(&self) -> HostTensor {
        let [r, c] = [self.shape[0], self.shape[1]];
        let mut out = vec![0f32; r * c];
        // Blocked copy: a naive column walk thrashes the cache on 49152×576 embeddings.
        const B: usize = 32;
        for i0 in (0..r).step_by(B) {
            for j0 in (0..c).step_by(B) {
                for i in i0..(i0 + B).min(r) {
                    for j in j0..(j0 + B).min(c) {
                        out[j * r + i] = self.data[i * c + j];
                    }
                }
            }
        }
        HostTensor::new(vec![c, r], out)
    }
}

/// A checkpoint seen as named f32 tensors in Hugging Face naming and layout.
pub trait WeightSource {
    /// The file (or folder) the weights come from, for error messages.
    fn origin(&self) -> &Path;
    /// Names of every tensor the source holds.
    fn names(&self) -> Vec<String>;
    /// Shape of a tensor without loading it.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// Loads (and dequantizes, converts, un-permutes) one tensor.
    fn load(&self, name: &str) -> Result<HostTensor>;
}

/// Bytes of a checkpoint file: memory-mapped natively, owned in the browser.
pub enum FileBytes {
    Owned(Vec<u8>),
    #[cfg(not(target_family = "wasm"))]
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Owned(v) => v,
            #[cfg(not(target_family = "wasm"))]
            FileBytes::Mapped(m) => m,
        }
    }
}
