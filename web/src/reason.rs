//! The Rationalize view: a plain language model (Hugging Face folder files or one GGUF file)
//! answers a question with a rationale; when the answer is wrong it tries again with the correct
//! answer as a hint — STaR's rationalization — and both are shown side by side. The same model
//! drives the STaR-live view ([`crate::star_live`]).

use std::rc::Rc;

use burn::module::Module;
use serde::{Deserialize, Serialize};
use starling_model::checkpoint::memory::open_from_memory;
use starling_model::generate::TokenEvent;
use starling_model::weights::load_transformer;
use starling_star::attempt::RationaleRecord;
use starling_tasks::arithmetic::Addition;
use starling_tasks::{Item, TaskKind};
use wasm_bindgen::prelude::*;

use crate::backend::pick_backend;
use crate::plain::PlainModel;
use crate::star_live::{LiveOptions, StarLive};
use crate::{Page, js_err, named_files, to_js};

/// A plain model for the Rationalize and STaR views.
#[wasm_bindgen]
pub struct Reasoner {
    inner: Rc<PlainModel>,
}

/// A question from the page.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Question {
    /// `a + b`, answered with a scratchpad.
    Arithmetic { a: u64, b: u64 },
    /// Multiple choice (CommonsenseQA's format): `correct` indexes `choices`.
    Choice { stem: String, choices: Vec<String>, correct: usize },
}

impl Question {
    fn item(self) -> Result<(TaskKind, Item), String> {
        match self {
            Question::Arithmetic { a, b } => {
                if a.max(b) >= 10u64.pow(18) {
                    return Err("the numbers must have at most 18 digits".into());
                }
                Ok((TaskKind::Arithmetic, Addition { a, b }.item()))
            }
            Question::Choice { stem, choices, correct } => {
                let choices: Vec<String> =
                    choices.into_iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect();
                if stem.trim().is_empty() || !(2..=26).contains(&choices.len()) {
                    return Err("a multiple-choice question needs its text and 2 to 26 non-empty choices".into());
                }
                if correct >= choices.len() {
                    return Err(format!("the correct choice must be one of the {} choices", choices.len()));
                }
                Ok((TaskKind::Csqa, starling_tasks::csqa::item("page", &stem, &choices, correct)))
            }
        }
    }
}

/// What the Rationalize view shows.
#[derive(Serialize)]
struct Rationalized {
    question: String,
    hinted_question: String,
    hint: String,
    gold: String,
    /// Kept / rationalized / rejected, the completions and the answers read from them.
    record: RationaleRecord,
    shots: usize,
}

#[derive(Serialize)]
struct StreamPiece<'a> {
    /// `rationale` (the plain question) or `rationalization` (with the hint).
    phase: &'a str,
    text: &'a str,
}

#[wasm_bindgen]
impl Reasoner {
    /// Loads a model from its files: a Hugging Face folder's config.json, *.safetensors and
    /// tokenizer.json, or one .gguf file.
    pub async fn load(
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        prefer_gpu: bool,
    ) -> Result<Reasoner, JsError> {
        let checkpoint = open_from_memory(named_files(names, files)?).map_err(js_err)?;
        let backend = pick_backend(prefer_gpu).await;
        backend.check_weights_fit(checkpoint.weights.as_ref()).map_err(js_err)?;
        let model =
            load_transformer(&checkpoint.config, checkpoint.weights.as_ref(), &backend.device).map_err(js_err)?.0;
        Ok(Reasoner { inner: Rc::new(PlainModel { model, checkpoint: Rc::new(checkpoint), backend }) })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.name.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn webgpu(&self) -> bool {
        self.inner.backend.webgpu
    }

    /// The model in a line: architecture, size, vocabulary.
    #[wasm_bindgen(getter)]
    pub fn description(&self) -> String {
        let c = self.inner.model.config();
        let params = self.inner.model.num_params();
        format!(
            "{} layers, width {}, {} heads, vocabulary {}, {:.2}M parameters",
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.vocab_size,
            params as f64 / 1e6
        )
    }

    /// Whether the model learned the arithmetic scratchpad in pretraining (the built-in one):
    /// it is then prompted without exemplars.
    #[wasm_bindgen(getter, js_name = knowsTheFormat)]
    pub fn knows_the_format(&self) -> bool {
        self.inner.knows_the_format()
    }

    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> bool {
        self.inner.backend.destroy_device()
    }

    /// Answers `question` (JSON: `{kind: "arithmetic", a, b}` or `{kind: "choice", stem, choices,
    /// correct}`) with a rationale; if wrong, rationalizes with the hint. `shots` few-shot
    /// exemplars go before the question. Streams `on_piece({phase, text})`; resolves to
    /// `{question, hinted_question, hint, gold, record, shots}`.
    pub fn rationalize(
        &self,
        question: String,
        shots: usize,
        max_tokens: usize,
        on_piece: js_sys::Function,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let out = rationalize(&inner, &question, shots, max_tokens, &on_piece).await.map_err(JsValue::from)?;
            to_js(&out).map_err(JsValue::from)
        })
    }

    /// Starts STaR on arithmetic from this model (options as JSON, see `LiveOptions`).
    #[wasm_bindgen(js_name = startStar)]
    pub fn start_star(&self, options: String) -> Result<StarLive, JsError> {
        let options: LiveOptions = serde_json::from_str(&options).map_err(|e| js_err(format!("STaR options: {e}")))?;
        StarLive::new(self.inner.clone(), options)
    }
}

async fn rationalize(
    m: &PlainModel,
    question: &str,
    shots: usize,
    max_tokens: usize,
    on_piece: &js_sys::Function,
) -> Result<Rationalized, JsError> {
    let q: Question = serde_json::from_str(question).map_err(|e| js_err(format!("question: {e}")))?;
    let (task, item) = q.item().map_err(js_err)?;
    let exemplars = match task {
        TaskKind::Arithmetic => starling_tasks::arithmetic::exemplars(),
        _ => starling_tasks::csqa::exemplars(),
    };
    let shots = shots.min(exemplars.len());
    let g = m.generator(&m.model, task, &exemplars[..shots], max_tokens);
    let mut stream = |hinted: bool, t: TokenEvent<'_>| {
        let phase = if hinted { "rationalization" } else { "rationale" };
        if let Ok(v) = to_js(&StreamPiece { phase, text: t.text }) {
            let _ = on_piece.call1(&JsValue::NULL, &v);
        }
    };
    let mut records = g.attempt_with(&[&item], true, 0, &mut Page, &mut stream).await.map_err(js_err)?;
    Ok(Rationalized {
        question: item.question.clone(),
        hinted_question: item.hinted_question.clone(),
        hint: item.hint.clone(),
        gold: item.gold.clone(),
        record: records.remove(0),
        shots,
    })
}
