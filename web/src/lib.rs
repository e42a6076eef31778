//! Starling in the browser: the same model and Quiet-STaR crates as the native CLI, bound to
//! JavaScript with wasm-bindgen. The page (`web/static/`) loads a Quiet-STaR checkpoint's files,
//! asks for WebGPU (through burn's wgpu backend; the same WGSL kernels as natively) and falls back
//! to burn's CPU backend, then streams thoughtful generation token by token.
//!
//! Host reads are awaited (`into_data_async`): on WebGPU a synchronous read cannot complete
//! inside the browser's event loop.

use std::collections::HashMap;
use std::rc::Rc;

use burn::tensor::{Device, TensorData, Transaction};
use serde::Serialize;
use starling_model::Tokenizer;
use starling_model::generate::GenerateConfig;
use starling_model::sampling::SamplingConfig;
use starling_quiet::QuietModel;
use starling_quiet::generate::ThoughtfulDecoder;
use wasm_bindgen::prelude::*;

/// Which device runs the model, in words for the page.
#[derive(Clone)]
struct Backend {
    device: Device,
    name: String,
    webgpu: bool,
}

thread_local! {
    /// The WebGPU device once started: burn's wgpu runtime is set up once per page.
    static WEBGPU: std::cell::RefCell<Option<Backend>> = const { std::cell::RefCell::new(None) };
}

/// WebGPU when `prefer_gpu` and the browser has it, else the CPU backend.
async fn pick_backend(prefer_gpu: bool) -> Backend {
    let cpu = |why: String| Backend { device: Device::flex(), name: format!("CPU (burn flex backend, WebAssembly){why}"), webgpu: false };
    if !prefer_gpu {
        return cpu(String::new());
    }
    if let Some(b) = WEBGPU.with(|w| w.borrow().clone()) {
        return b;
    }
    #[cfg(target_family = "wasm")]
    {
        match Device::wgpu_options().init_with_setup_async().await {
            Ok((device, setup)) => {
                let info = setup.adapter.get_info();
                // Browsers may hide the adapter's name; its type (e.g. Cpu for SwiftShader) still tells.
                let name = if info.name.is_empty() { format!("{:?} adapter", info.device_type) } else { info.name.clone() };
                let b = Backend { device, name: format!("WebGPU ({name})"), webgpu: true };
                WEBGPU.with(|w| *w.borrow_mut() = Some(b.clone()));
                b
            }
            Err(e) => {
                let e = e.to_string();
                let why = if e.contains("No suitable graphics adapter") || e.contains("No adapter available") { "this browser offers no WebGPU adapter".to_string() } else { e };
                cpu(format!(" — WebGPU unavailable: {why}"))
            }
        }
    }
    #[cfg(not(target_family = "wasm"))]
    {
        cpu(" — WebGPU exists only in the browser build".to_string())
    }
}

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

struct Loaded {
    model: QuietModel,
    tokenizer: Tokenizer,
    backend: Backend,
}

/// A Quiet-STaR model loaded in the page.
#[wasm_bindgen]
pub struct Starling {
    inner: Rc<Loaded>,
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

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Lets the browser paint and handle input between tokens.
async fn yield_to_browser() {
    #[cfg(target_family = "wasm")]
    {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = web_sys::window().map(|w| w.set_timeout_with_callback(&resolve));
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

#[wasm_bindgen]
impl Starling {
    /// Loads a Quiet-STaR checkpoint from its files (`names[i]` ↔ `files[i]`: config.json,
    /// model.safetensors, tokenizer.json, quiet.safetensors, quiet_config.json).
    pub async fn load(names: Vec<String>, files: Vec<js_sys::Uint8Array>, prefer_gpu: bool) -> Result<Starling, JsError> {
        if names.len() != files.len() {
            return Err(js_err("load: one name per file"));
        }
        let files: HashMap<String, Vec<u8>> = names.into_iter().zip(files.iter().map(|f| f.to_vec())).collect();
        let backend = pick_backend(prefer_gpu).await;
        let (model, tokenizer) = starling_quiet::checkpoint::from_files(files, &backend.device).map_err(js_err)?;
        Ok(Starling { inner: Rc::new(Loaded { model, tokenizer, backend }) })
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

    /// Continues `prompt` by up to `max_tokens` tokens, thinking before each one; calls
    /// `on_token({text, thought, weight, gain})` as each arrives. Resolves to the number of tokens.
    pub fn think(&self, prompt: String, max_tokens: usize, temperature: f32, thought_temperature: f64, seed: u64, on_token: js_sys::Function) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let n = think(&inner, &prompt, max_tokens, temperature, thought_temperature, seed, &on_token).await.map_err(JsValue::from)?;
            Ok(JsValue::from(n as u32))
        })
    }
}

async fn think(l: &Loaded, prompt: &str, max_tokens: usize, temperature: f32, thought_temperature: f64, seed: u64, on_token: &js_sys::Function) -> Result<usize, JsError> {
    let ids = l.tokenizer.encode(prompt, true).map_err(js_err)?;
    let cfg = GenerateConfig {
        max_new_tokens: max_tokens,
        sampling: SamplingConfig { temperature, ..SamplingConfig::greedy() },
        eos_ids: l.model.lm.config().eos_token_id.into_iter().collect(),
        seed,
        ..GenerateConfig::default()
    };
    let thought_cfg = ThoughtfulDecoder::thought_sampling(thought_temperature);
    let Some(mut decoder) = ThoughtfulDecoder::new(&l.model, &l.tokenizer, &[ids], &cfg, &thought_cfg).map_err(js_err)? else {
        return Ok(0);
    };
    let mut count = 0;
    while !decoder.finished() {
        let (ids, scores) = decoder.propose();
        // One awaited read-back per token for both results.
        let data = Transaction::default().register(ids).register(scores).execute_async().await;
        let [ids, scores]: [TensorData; 2] = data
            .map_err(|e| js_err(format!("reading a result back from the device failed: {e:?}")))?
            .try_into()
            .map_err(|_| js_err("the device returned the wrong number of results"))?;
        let ids: Vec<i64> = ids.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))?;
        let scores: Vec<f32> = scores.try_into_vec_as().map_err(|e| js_err(format!("{e:?}")))?;
        for (_, t) in decoder.accept(&ids, &scores).map_err(js_err)? {
            let token = PageToken { text: t.text, thought: t.thought, weight: t.mix_weight, gain: t.logp_gain };
            let value = serde_wasm(&token)?;
            on_token.call1(&JsValue::NULL, &value).map_err(|e| js_err(format!("on_token failed: {e:?}")))?;
            count += 1;
        }
        yield_to_browser().await;
    }
    Ok(count)
}

/// A serializable value as a plain JS object (through JSON: small values, no extra crate).
fn serde_wasm<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(v).map_err(js_err)?;
    js_sys::JSON::parse(&text).map_err(|e| js_err(format!("{e:?}")))
}
