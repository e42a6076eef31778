//! A plain model loaded in the page (Hugging Face folder files or one GGUF file), shared by the
//! Rationalize view ([`crate::reason`]) and the STaR-live view ([`crate::star_live`]).

use starling_model::checkpoint::Checkpoint;
use starling_model::generate::GenerateConfig;
use starling_model::weights::load_transformer;
use starling_model::{Tokenizer, Transformer};
use starling_star::attempt::Generator;
use starling_tasks::{Exemplar, TaskKind};
use wasm_bindgen::prelude::*;

use crate::backend::Backend;
use crate::js_err;

/// A plain model loaded in the page, with its checkpoint kept: STaR fine-tunes the original
/// weights afresh every iteration.
pub(crate) struct PlainModel {
    pub model: Transformer,
    pub checkpoint: Checkpoint,
    pub backend: Backend,
}

impl PlainModel {
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.checkpoint.tokenizer
    }

    /// The original weights on `device` (e.g. the autodiff twin, to fine-tune).
    pub fn load_on(&self, device: &burn::tensor::Device) -> Result<Transformer, JsError> {
        Ok(load_transformer(&self.checkpoint.config, self.checkpoint.weights.as_ref(), device).map_err(js_err)?.0)
    }

    /// Whether the tokenizer is the built-in arithmetic one, which learned the scratchpad format
    /// in pretraining and needs no few-shot exemplars.
    pub fn knows_the_format(&self) -> bool {
        self.tokenizer().token_to_id("<scratch>").is_some() && self.tokenizer().vocab_size() < 100
    }

    /// Settings for rationale generation: greedy, as the official STaR code, ending at the task's
    /// stop strings or the model's end-of-text.
    pub fn decode(&self, max_new_tokens: usize) -> GenerateConfig {
        let eos = self.model.config().eos_token_id.or_else(|| self.tokenizer().token_to_id("<eos>"));
        GenerateConfig { max_new_tokens, eos_ids: eos.into_iter().collect(), ..GenerateConfig::default() }
    }

    pub fn generator<'a>(
        &'a self,
        model: &'a Transformer,
        task: TaskKind,
        exemplars: &'a [Exemplar],
        max_new_tokens: usize,
    ) -> Generator<'a> {
        Generator { model, tokenizer: self.tokenizer(), task, exemplars, decode: self.decode(max_new_tokens) }
    }
}
