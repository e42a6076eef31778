//! The Think view: a Quiet-STaR model streams tokens, each after its thought. A model of the
//! multi-hop demo (its checkpoint has a `hops.json` card) can also be asked questions on held-out
//! tables, and its thought before the answer read against the table (`crate::hops`).

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::{TensorData, Transaction};
use serde::Serialize;
use starling_model::Tokenizer;
use starling_model::checkpoint::memory::base_name;
use starling_model::generate::GenerateConfig;
use starling_model::sampling::SamplingConfig;
use starling_quiet::QuietModel;
use starling_quiet::generate::ThoughtfulDecoder;
use starling_tasks::hops::{HOPS_CARD_FILE, HopDocument, HopsCard};
use wasm_bindgen::prelude::*;

use crate::backend::{Backend, pick_backend};
use crate::{Page, js_err, named_files, read_all, to_js, yield_to_browser};

/// The longest text the Inside view draws: one thought per token, each a column of the picture.
const MAX_INSIDE_TOKENS: usize = 64;
/// Next tokens listed per prediction (base, post-thought, mixed) in the Inside view.
const INSIDE_TOP_K: usize = 4;

struct Loaded {
    model: QuietModel,
    tokenizer: Tokenizer,
    backend: Backend,
    /// The multi-hop task the model was trained on, when its checkpoint says.
    card: Option<HopsCard>,
}

/// A Quiet-STaR model loaded in the page.
#[wasm_bindgen]
pub struct Starling {
    inner: Rc<Loaded>,
    /// The last question posed with [`Starling::pose`].
    posed: RefCell<Option<HopDocument>>,
}

/// One generated token as the page shows it.
#[derive(Serialize)]
struct PageToken {
    text: String,
    thought: String,
    weight: f32,
    /// log p(token) with the thought minus without.
    gain: f32,
}

/// The Inside view's picture of one text (see `starling_quiet::inside`), with token texts.
#[derive(Serialize)]
struct PageInside {
    tokens: Vec<String>,
    /// Query steps per thought: the start marker, the thought's tokens, the end marker.
    steps: usize,
    markers: [&'static str; 2],
    /// `sight[s][p]`: `{text: [lo, hi), thought: [lo, hi)}`, the keys the step-s query of
    /// position p attends to.
    sight: Vec<Vec<starling_quiet::inside::Sight>>,
    positions: Vec<PagePosition>,
}

#[derive(Serialize)]
struct PagePosition {
    thought: Vec<String>,
    weight: f32,
    candidates: Vec<PageCandidate>,
    next: Option<PageCandidate>,
}

#[derive(Serialize)]
struct PageCandidate {
    text: String,
    base: f32,
    post: f32,
    mixed: f32,
}

#[wasm_bindgen]
impl Starling {
    /// Loads a Quiet-STaR checkpoint from its files (`names[i]` ↔ `files[i]`: config.json,
    /// model.safetensors, tokenizer.json, quiet.safetensors, quiet_config.json, and hops.json
    /// for a model of the multi-hop demo).
    pub async fn load(
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        prefer_gpu: bool,
    ) -> Result<Starling, JsError> {
        let (cards, files): (Vec<_>, Vec<_>) =
            named_files(names, files)?.into_iter().partition(|(name, _)| base_name(name) == HOPS_CARD_FILE);
        let card = cards
            .first()
            .map(|(_, bytes)| HopsCard::parse(&String::from_utf8_lossy(bytes)))
            .transpose()
            .map_err(js_err)?;
        let files = starling_quiet::checkpoint::open_files(files).map_err(js_err)?;
        let backend = pick_backend(prefer_gpu).await;
        backend.check_weights_fit(files.base.weights.as_ref()).map_err(js_err)?;
        let (model, tokenizer) = files.load(&backend.device).map_err(js_err)?;
        if let Some(card) = &card {
            let pieces = card.task.pair_pieces();
            if pieces.iter().any(|p| tokenizer.token_to_id(p).is_none()) {
                return Err(js_err(format!(
                    "{HOPS_CARD_FILE} describes tables of {} letters, but this model's tokenizer has no token for \
                     each pair: the card belongs to another model",
                    card.task.symbols
                )));
            }
        }
        Ok(Starling { inner: Rc::new(Loaded { model, tokenizer, backend, card }), posed: RefCell::new(None) })
    }

    /// The multi-hop task the model answers (`{symbols, max_hops, queries}`), or `undefined` for
    /// a model without a `hops.json` card.
    #[wasm_bindgen(getter, js_name = hopTask)]
    pub fn hop_task(&self) -> Result<JsValue, JsError> {
        match &self.inner.card {
            Some(c) => to_js(
                &serde_json::json!({"symbols": c.task.symbols, "max_hops": c.task.max_hops, "queries": c.queries}),
            ),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Poses a question on held-out table `seed`: `hops` hops from letter `start` (0 hops: the
    /// drawn query). Returns `{prompt, pairs, hops, start, answer, chain}`; the prompt is what to
    /// think on, and [`read_thought`](Self::read_thought) reads a thought against this table.
    pub fn pose(&self, seed: u64, hops: usize, start: char) -> Result<JsValue, JsError> {
        let card = self.card()?;
        let (doc, puzzle) = crate::hops::pose(card, seed, hops, start).map_err(js_err)?;
        *self.posed.borrow_mut() = Some(doc);
        to_js(&puzzle)
    }

    /// The thought before an answer, read hop by hop against the posed table: a list of
    /// `{from, expected, written, followed, on_chain}`.
    #[wasm_bindgen(js_name = readThought)]
    pub fn read_thought(&self, thought: &str) -> Result<JsValue, JsError> {
        let card = self.card()?;
        let posed = self.posed.borrow();
        let doc = posed.as_ref().ok_or_else(|| js_err("no question posed yet"))?;
        to_js(&crate::hops::read_thought(card, doc, thought))
    }

    /// The device in words, e.g. `WebGPU (SwiftShader Device)` or `CPU (burn flex backend, …)`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.backend.name.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn webgpu(&self) -> bool {
        self.inner.backend.webgpu
    }

    /// Thought length of the loaded model.
    #[wasm_bindgen(getter, js_name = nThought)]
    pub fn n_thought(&self) -> usize {
        self.inner.model.config.n_thought
    }

    /// Destroys the WebGPU device under this model, as a lost GPU would (tests use it to check
    /// that the page explains the loss and keeps working). False on the CPU.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> bool {
        self.inner.backend.destroy_device()
    }

    /// Thinks after every token of `prompt` (greedy thoughts, all positions at once) and
    /// resolves to what the Inside view draws: `{tokens, steps, markers, sight, positions:
    /// [{thought, weight, candidates: [{text, base, post, mixed}], next}]}`.
    pub fn inside(&self, prompt: String) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let page = inside(&inner, &prompt).await.map_err(JsValue::from)?;
            to_js(&page).map_err(JsValue::from)
        })
    }

    /// Continues `prompt` by up to `max_tokens` tokens, thinking before each one; calls
    /// `on_token({text, thought, weight, gain})` as each arrives; generation stops early when it
    /// returns `false`. Resolves to the number of tokens.
    pub fn think(
        &self,
        prompt: String,
        max_tokens: usize,
        temperature: f32,
        thought_temperature: f64,
        seed: u64,
        on_token: js_sys::Function,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let n = think(&inner, &prompt, max_tokens, temperature, thought_temperature, seed, &on_token)
                .await
                .map_err(JsValue::from)?;
            Ok(JsValue::from(n as u32))
        })
    }
}

impl Starling {
    fn card(&self) -> Result<&HopsCard, JsError> {
        self.inner
            .card
            .as_ref()
            .ok_or_else(|| js_err(format!("this model has no multi-hop task card ({HOPS_CARD_FILE})")))
    }
}

async fn inside(l: &Loaded, prompt: &str) -> Result<PageInside, JsError> {
    let ids = l.tokenizer.encode(prompt, true).map_err(js_err)?;
    if ids.len() > MAX_INSIDE_TOKENS {
        return Err(js_err(format!(
            "the text has {} tokens; the picture draws at most {MAX_INSIDE_TOKENS} (one column per token): shorten it",
            ids.len()
        )));
    }
    let kernel = starling_thought::Kernel::Auto;
    let seen = starling_quiet::inside::look_inside(&l.model, &ids, INSIDE_TOP_K, 0.0, kernel, &mut Page)
        .await
        .map_err(js_err)?;
    let text = |id: u32| l.tokenizer.decode(&[id], false).unwrap_or_else(|_| format!("<{id}>"));
    let candidate = |c: &starling_quiet::inside::Candidate| PageCandidate {
        text: text(c.id),
        base: c.base,
        post: c.post,
        mixed: c.mixed,
    };
    Ok(PageInside {
        tokens: seen.tokens.iter().map(|&id| text(id)).collect(),
        steps: seen.steps,
        markers: ["<start>", "<end>"],
        sight: seen.sight,
        positions: seen
            .positions
            .iter()
            .map(|p| PagePosition {
                thought: p.thought_ids.iter().map(|&id| text(id)).collect(),
                weight: p.mix_weight,
                candidates: p.candidates.iter().map(candidate).collect(),
                next: p.next.as_ref().map(candidate),
            })
            .collect(),
    })
}

async fn think(
    l: &Loaded,
    prompt: &str,
    max_tokens: usize,
    temperature: f32,
    thought_temperature: f64,
    seed: u64,
    on_token: &js_sys::Function,
) -> Result<usize, JsError> {
    let ids = l.tokenizer.encode(prompt, true).map_err(js_err)?;
    let cfg = GenerateConfig {
        max_new_tokens: max_tokens,
        sampling: SamplingConfig { temperature, ..SamplingConfig::greedy() },
        eos_ids: l.model.lm.config().eos_token_id.into_iter().collect(),
        seed,
        ..GenerateConfig::default()
    };
    let thought_cfg = ThoughtfulDecoder::thought_sampling(thought_temperature);
    let Some(mut decoder) =
        ThoughtfulDecoder::new(&l.model, &l.tokenizer, &[ids], &cfg, &thought_cfg).map_err(js_err)?
    else {
        return Ok(0);
    };
    let mut count = 0;
    while !decoder.finished() {
        let (ids, scores) = decoder.propose();
        // One awaited read-back per token for both results.
        let [ids, scores]: [TensorData; 2] = read_all(Transaction::default().register(ids).register(scores)).await?;
        let ids: Vec<i64> = ids.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))?;
        let scores: Vec<f32> = scores.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))?;
        for (_, t) in decoder.accept(&ids, &scores).map_err(js_err)? {
            let token = PageToken { text: t.text, thought: t.thought, weight: t.mix_weight, gain: t.logp_gain };
            let go_on = on_token
                .call1(&JsValue::NULL, &to_js(&token)?)
                .map_err(|e| js_err(format!("on_token failed: {e:?}")))?;
            count += 1;
            // The page's Stop: the callback answers `false`.
            if go_on == JsValue::FALSE {
                return Ok(count);
            }
        }
        yield_to_browser().await;
    }
    Ok(count)
}
