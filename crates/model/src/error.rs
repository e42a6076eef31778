//! Errors of the model crate. Each one says what is wrong and, where there is one, the fix.

use std::path::PathBuf;

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid model config: {0}")]
    Config(String),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing a file or creating a folder failed. Files written whole (checkpoints, models,
    /// reports) are replaced atomically, so their previous version is unchanged.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint or tokenizer file whose contents are not what its format promises.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    /// A tensor whose shape disagrees with the model config.
    #[error(
        "{path}: tensor `{name}` has shape {found:?} but the config asks for {expected:?}; \
         the weights do not belong to this config.json (check that both come from the same model)"
    )]
    Shape { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("{path}: tensor `{name}` is missing; {hint}")]
    MissingTensor { path: PathBuf, name: String, hint: String },

    /// A weight that is NaN or infinite: the file is damaged, or was saved from a run that
    /// diverged.
    #[error(
        "{path}: tensor `{name}` holds {count} NaN or infinite value(s) (the first at index {first}: {value}); \
         the file is damaged or was saved after training diverged — use an earlier checkpoint"
    )]
    NonFinite { path: PathBuf, name: String, count: usize, first: usize, value: f32 },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Bad arguments to generation or scoring (empty prompt, prompt longer than the context, ...).
    #[error("{0}")]
    Input(String),

    /// A prompt and the tokens to generate after it do not fit the model's context.
    #[error(
        "a prompt of {prompt_tokens} tokens plus {new_tokens} new tokens exceeds the model's context of {context} tokens"
    )]
    TooLong { prompt_tokens: usize, new_tokens: usize, context: usize },

    /// A Hugging Face folder without the `tokenizer.json` the model needs.
    #[error("{dir}: no tokenizer.json in this folder (copy it from the original model)")]
    MissingTokenizer { dir: PathBuf },

    /// A GGUF file whose tokenizer type Starling cannot build from the metadata.
    #[error("{path}: tokenizer model `{model}` is not supported (gpt2 and llama are)")]
    UnsupportedTokenizer { path: PathBuf, model: String },

    /// The device failed under the model (a read that did not complete, a lost WebGPU device).
    #[error("device: {0}")]
    Device(String),

    /// No wgpu adapter could be started when a GPU was asked for.
    #[error(
        "no wgpu adapter could be started ({0}); install a Vulkan/Metal/DX12 driver (on Debian without a GPU: \
         apt install mesa-vulkan-drivers)"
    )]
    NoGpu(String),

    /// `--device cuda` in a build without CUDA, or on a machine without an NVIDIA driver.
    #[error(
        "CUDA is not available: {0}; CUDA needs an NVIDIA driver and a build with the `cuda` feature \
         (cargo build --release -p starling-cli --features cuda)"
    )]
    NoCuda(String),
}

impl ModelError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }

    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Write { path: path.into(), source }
    }

    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::Format { path: path.into(), message: message.into() }
    }
}
