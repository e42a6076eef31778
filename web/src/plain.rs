//! A plain model loaded in the page (Hugging Face folder files or one GGUF file), shared by the
//! Rationalize view ([`crate::reason`]) and the STaR-live view ([`crate::star_live`]).

use std::rc::Rc;

use starling_model::checkpoint::Checkpoint;
use starling_model::generate::GenerateConfig;
use starling_model::{Tokenizer, Transformer};
use starling_star::attempt::Generator;
use starling_tasks::{Exemplar, TaskKind};

use crate::backend::Backend;

/// A plain model loaded in the page, with its checkpoint kept: STaR fine-tunes the original
/// weights afresh every iteration.
pub(crate) struct PlainModel {
    pub model: Transformer,
    /// Shared with a STaR run, which loads the original weights for every iteration.
    pub checkpoint: Rc<Checkpoint>,
    pub backend: Backend,
}

impl PlainModel {
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.checkpoint.tokenizer
    }

    /// Whether the tokenizer is the built-in arithmetic one, whose model learned the scratchpad
    /// format in pretraining and needs no few-shot exemplars.
    pub fn knows_the_format(&self) -> bool {
        starling_star::builtin::is_builtin_tokenizer(self.tokenizer())
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
        Generator {
            model,
            tokenizer: self.tokenizer(),
            task,
            exemplars,
            decode: self.decode(max_new_tokens),
            prefixes: None,
            max_rows: None,
        }
    }
}
