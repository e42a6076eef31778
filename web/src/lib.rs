//! Starling in the browser: the same model, Quiet-STaR, STaR and task crates as the native CLI,
//! bound to JavaScript with wasm-bindgen. The page (`web/static/`) has three views:
//!
//! - **Think** (`think`): a Quiet-STaR checkpoint streams thoughtful generation token by token.
//! - **Rationalize** (`reason`): a plain model writes a rationale and answer; when wrong, it
//!   rationalizes with the hint, as in the STaR paper.
//! - **STaR live** (`star_live`): STaR iterations run in the page, one bounded step per call.
//! - **Learn** (`learn`): the Think model's warm start learns to think again with Quiet-STaR, one
//!   optimizer step per call, probed on held-out tables as it goes.
//!
//! Host reads are awaited: on WebGPU a synchronous read cannot complete inside the browser's event
//! loop. The core's loops leave their reads to a `Host` for that reason; `Page` is the page's.

mod advice;
mod backend;
mod hops;
mod learn;
mod plain;
mod reason;
mod star_live;
mod think;

use burn::tensor::{TensorData, Transaction};
use serde::Serialize;
use starling_model::ModelError;
use starling_model::host::Host;
use wasm_bindgen::prelude::*;

pub use learn::Lesson;
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

/// A failed device read, explained when the WebGPU device was lost. A read in flight when the
/// device goes fails before wgpu's device-lost callback has run, so the event loop gets a few
/// turns first.
async fn read_failure(e: impl std::fmt::Debug) -> String {
    for _ in 0..LOST_CALLBACK_TURNS {
        if backend::device_lost().is_some() {
            break;
        }
        next_task().await;
    }
    read_err_message(&e)
}

/// Event-loop turns a failed read waits for the device-lost callback (seen: one is not enough
/// on chromium's WebGPU).
const LOST_CALLBACK_TURNS: usize = 5;

fn read_err_message(e: &dyn std::fmt::Debug) -> String {
    match backend::device_lost() {
        Some(why) => format!(
            "the WebGPU device was lost ({why}). Load the model again: it will run on the CPU (reload the page to try the GPU again)"
        ),
        None => {
            // The error's Debug form ends with a backtrace section that is empty in WebAssembly.
            let text = format!("{e:?}");
            let text = text.split("\nBacktrace:").next().unwrap_or_default().trim_end().to_string();
            format!("reading a result back from the device failed: {text}")
        }
    }
}

thread_local! {
    static LAST_YIELD: std::cell::Cell<Option<web_time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Gives the event loop a turn between steps, at most every 10 ms: in the engine's worker that
/// is when a Stop or a new request from the page is read; on the page's own thread (when no
/// worker could start) it is when the browser paints and handles input.
async fn yield_to_browser() {
    let now = web_time::Instant::now();
    if LAST_YIELD.with(|l| l.get()).is_some_and(|last| now.duration_since(last).as_millis() < 10) {
        return;
    }
    LAST_YIELD.with(|l| l.set(Some(now)));
    next_task().await;
}

/// Waits for the event loop's next task: a message posted to a fresh channel. Unlike a nested
/// `setTimeout`, which browsers clamp to 4 ms, it costs no fixed delay, and it works in a worker
/// (no `window`) as on the page.
async fn next_task() {
    #[cfg(target_family = "wasm")]
    {
        let Ok(channel) = web_sys::MessageChannel::new() else { return };
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            channel.port1().set_onmessage(Some(&resolve));
            let _ = channel.port2().post_message(&JsValue::NULL);
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        channel.port1().close();
        channel.port2().close();
    }
}

/// Reads device tensors back in one awaited transaction.
async fn read_all<const N: usize>(tensors: Transaction) -> Result<[TensorData; N], JsError> {
    let data = match tensors.execute_async().await {
        Ok(data) => data,
        Err(e) => return Err(js_err(read_failure(e).await)),
    };
    data.try_into().map_err(|_| js_err("the device returned the wrong number of results"))
}

/// The page's [`Host`] for the core's loops: every read is awaited (a synchronous read cannot
/// complete on WebGPU inside the page's event loop), and the page gets a turn after it.
pub(crate) struct Page;

impl Host for Page {
    async fn read(&mut self, reads: Transaction) -> starling_model::Result<Vec<TensorData>> {
        let data = match reads.execute_async().await {
            Ok(data) => data,
            Err(e) => return Err(ModelError::Device(read_failure(e).await)),
        };
        yield_to_browser().await;
        Ok(data)
    }
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
