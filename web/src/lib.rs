//! Starling in the browser: the same model, Quiet-STaR, STaR and task crates as the native CLI,
//! bound to JavaScript with wasm-bindgen. The page (`web/static/`) has three views:
//!
//! - **Think** (`think`): a Quiet-STaR checkpoint streams thoughtful generation token by token.
//! - **Rationalize** (`reason`): a plain model writes a rationale and answer; when wrong, it
//!   rationalizes with the hint, as in the STaR paper.
//! - **STaR live** (`star_live`): STaR iterations run in the page, one bounded step per call.
//!
//! Host reads are awaited (`into_data_async`): on WebGPU a synchronous read cannot complete inside
//! the browser's event loop. The core crates leave their reads to the caller for that reason
//! (`Decoder`, `ThoughtfulDecoder`, `Trainer`).

mod advice;
mod backend;
mod plain;
mod reason;
mod star_live;
mod think;

use burn::tensor::{Int, Tensor, TensorData, Transaction};
use serde::Serialize;
use starling_model::generate::{Decoder, GenerateConfig, Generation, TokenEvent};
use starling_model::{Tokenizer, Transformer};
use starling_star::attempt::{
    Generator, RationaleRecord, apply_rationalizations, classify_rationales, rationalization_seed, to_rationalize,
};
use starling_tasks::{Item, PromptStyle};
use wasm_bindgen::prelude::*;

pub use reason::Reasoner;
pub use star_live::StarLive;
pub use think::Starling;

/// The message of the last Rust panic, if any: after a panic the module cannot go on, and the
/// page shows this instead of the bare `unreachable` trap the browser reports.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let message = info.to_string();
        #[cfg(target_family = "wasm")]
        web_sys::console::error_1(&JsValue::from_str(&message));
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(message);
        }
    }));
}

/// The last panic's message (see [`start`]), or `undefined`.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|l| l.clone())
}

/// Why the WebGPU device was lost, or `undefined` while it works (or was never used).
#[wasm_bindgen(js_name = deviceLost)]
pub fn device_lost() -> Option<String> {
    backend::device_lost()
}

/// An error for the page: its message, and what to change when a control can fix it.
fn js_err(e: impl std::fmt::Display + 'static) -> JsError {
    match advice::for_error(&e) {
        Some(hint) => JsError::new(&format!("{e} — {hint}")),
        None => JsError::new(&e.to_string()),
    }
}

/// An error of a device read, explained when the WebGPU device was lost.
fn read_err(e: impl std::fmt::Debug) -> JsError {
    match backend::device_lost() {
        Some(why) => js_err(format!(
            "the WebGPU device was lost ({why}). Load the model again: it will run on the CPU (reload the page to try the GPU again)"
        )),
        None => js_err(format!("reading a result back from the device failed: {e:?}")),
    }
}

thread_local! {
    static LAST_YIELD: std::cell::Cell<Option<web_time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Lets the browser paint and handle input between steps, at most every 10 ms: a nested
/// `setTimeout` waits at least 4 ms, which would dominate fast CPU steps.
async fn yield_to_browser() {
    let now = web_time::Instant::now();
    if LAST_YIELD.with(|l| l.get()).is_some_and(|last| now.duration_since(last).as_millis() < 10) {
        return;
    }
    LAST_YIELD.with(|l| l.set(Some(now)));
    next_tick().await;
}

/// Waits for the browser's next timer tick.
async fn next_tick() {
    #[cfg(target_family = "wasm")]
    {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = web_sys::window().map(|w| w.set_timeout_with_callback(&resolve));
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

/// Reads device tensors back in one awaited transaction.
async fn read_all<const N: usize>(tensors: Transaction) -> Result<[TensorData; N], JsError> {
    let data = tensors.execute_async().await.map_err(read_err)?;
    data.try_into().map_err(|_| js_err("the device returned the wrong number of results"))
}

async fn read_ids(t: Tensor<1, Int>) -> Result<Vec<i64>, JsError> {
    let [d] = read_all(Transaction::default().register(t)).await?;
    d.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))
}

/// [`starling_model::generate::generate_ids`] with awaited reads, yielding to the browser after
/// every token.
async fn generate(
    model: &Transformer,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
) -> Result<Vec<Generation>, JsError> {
    let Some(mut decoder) = Decoder::new(model, tokenizer, prompts, cfg).map_err(js_err)? else {
        return Ok(Vec::new());
    };
    while !decoder.finished() {
        let ids = read_ids(decoder.propose()).await?;
        decoder.accept(&ids, on_token).map_err(js_err)?;
        yield_to_browser().await;
    }
    Ok(decoder.into_generations())
}

/// Completions of `items` with STaR's rationale prompt, with or without the hint.
async fn complete(
    g: &Generator<'_>,
    items: &[&Item],
    hinted: bool,
    seed: u64,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
) -> Result<Vec<String>, JsError> {
    let prompts = g.prompts(items, PromptStyle::Rationale, hinted).map_err(js_err)?;
    let out = generate(g.model, g.tokenizer, &prompts, &g.decode_config(seed), on_token).await?;
    Ok(out.into_iter().map(|x| x.text).collect())
}

/// [`Generator::attempt`] with awaited reads: a rationale for each item, then (when `rationalize`)
/// a rationalization of the wrong ones with the hint, classified. `on_token(hinted, token)` sees
/// every token of both rounds.
async fn attempt(
    g: &Generator<'_>,
    items: &[&Item],
    rationalize: bool,
    seed: u64,
    on_token: &mut dyn FnMut(bool, TokenEvent<'_>),
) -> Result<Vec<RationaleRecord>, JsError> {
    let first = complete(g, items, false, seed, &mut |t| on_token(false, t)).await?;
    let mut records = classify_rationales(g.task, items, first);
    let wrong = to_rationalize(&records, rationalize);
    if !wrong.is_empty() {
        let hinted: Vec<&Item> = wrong.iter().map(|&i| items[i]).collect();
        let second = complete(g, &hinted, true, rationalization_seed(seed), &mut |t| on_token(true, t)).await?;
        apply_rationalizations(g.task, items, &mut records, &wrong, second);
    }
    Ok(records)
}

/// A serializable value as a plain JS object (through JSON: small values, no extra crate).
fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(v).map_err(js_err)?;
    js_sys::JSON::parse(&text).map_err(|e| js_err(format!("{e:?}")))
}

/// The picked or fetched files of a model as (name, bytes).
fn named_files(names: Vec<String>, files: Vec<js_sys::Uint8Array>) -> Result<Vec<(String, Vec<u8>)>, JsError> {
    if names.len() != files.len() {
        return Err(js_err("load: one name per file"));
    }
    Ok(names.into_iter().zip(files.iter().map(|f| f.to_vec())).collect())
}
