//! Which device runs the models: WebGPU through burn's wgpu backend when the browser has it (the
//! same WGSL kernels as natively), else burn's CPU backend compiled to WebAssembly. Also the
//! browser's limits a model must fit, and what happens when the GPU device is lost.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use starling_model::checkpoint::WeightSource;

/// The chosen device, in words for the page.
#[derive(Clone)]
pub struct Backend {
    pub device: Device,
    pub name: String,
    pub webgpu: bool,
    /// The largest storage buffer one tensor may occupy (WebGPU's per-binding limit).
    pub max_tensor_bytes: u64,
    /// Destroys the WebGPU device (to exercise the device-lost path); `None` on the CPU.
    destroy: Option<Rc<dyn Fn()>>,
}

/// WebAssembly's 32-bit address space: 4 GiB in all, and weights are held twice while loading
/// (file bytes and f32 tensors), so models stop well before it.
const WASM_MAX_MODEL_BYTES: u64 = 1 << 30;

thread_local! {
    /// The WebGPU device once started: burn's wgpu runtime is set up once per page.
    static WEBGPU: RefCell<Option<Backend>> = const { RefCell::new(None) };
    /// Whether a load is starting WebGPU now (two loads at once must not start it twice).
    static STARTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Why the WebGPU device was lost, once it was (set by wgpu's device-lost callback, which must be
/// `Send`); later loads then run on the CPU.
static LOST_MESSAGE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn cpu(why: String) -> Backend {
    Backend {
        device: Device::flex(),
        name: format!("CPU (burn flex backend, WebAssembly){why}"),
        webgpu: false,
        max_tensor_bytes: WASM_MAX_MODEL_BYTES,
        destroy: None,
    }
}

/// Why the WebGPU device was lost, if it was.
pub fn device_lost() -> Option<String> {
    let lost = LOST_MESSAGE.lock().ok().and_then(|m| m.clone());
    if lost.is_some() {
        WEBGPU.with(|w| *w.borrow_mut() = None);
    }
    lost
}

/// WebGPU when `prefer_gpu` and the browser has it (and it was not lost), else the CPU backend.
pub async fn pick_backend(prefer_gpu: bool) -> Backend {
    if !prefer_gpu {
        return cpu(String::new());
    }
    if let Some(why) = device_lost() {
        return cpu(format!(" — the WebGPU device was lost ({why}); reload the page to try the GPU again"));
    }
    while STARTING.with(|s| s.get()) {
        crate::next_task().await;
    }
    if let Some(b) = WEBGPU.with(|w| w.borrow().clone()) {
        return b;
    }
    #[cfg(target_family = "wasm")]
    {
        STARTING.with(|s| s.set(true));
        let started = Device::wgpu_options().init_with_setup_async().await;
        STARTING.with(|s| s.set(false));
        match started {
            Ok((device, setup)) => {
                let info = setup.adapter.get_info();
                // Browsers may hide the adapter's name; its type (e.g. Cpu for SwiftShader) still tells.
                let name =
                    if info.name.is_empty() { format!("{:?} adapter", info.device_type) } else { info.name.clone() };
                let limits = setup.device.limits();
                setup.device.set_device_lost_callback(|reason, message| {
                    if let Ok(mut m) = LOST_MESSAGE.lock() {
                        *m = Some(if message.is_empty() {
                            format!("{reason:?}")
                        } else {
                            format!("{reason:?}: {message}")
                        });
                    }
                });
                let gpu = setup.device.clone();
                let b = Backend {
                    device,
                    name: format!("WebGPU ({name})"),
                    webgpu: true,
                    max_tensor_bytes: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
                    destroy: Some(Rc::new(move || gpu.destroy())),
                };
                WEBGPU.with(|w| *w.borrow_mut() = Some(b.clone()));
                b
            }
            Err(e) => {
                let e = e.to_string();
                let why = if e.contains("No suitable graphics adapter") || e.contains("No adapter available") {
                    "this browser offers no WebGPU adapter".to_string()
                } else {
                    e
                };
                cpu(format!(" — WebGPU unavailable: {why}"))
            }
        }
    }
    #[cfg(not(target_family = "wasm"))]
    {
        cpu(" — WebGPU exists only in the browser build".to_string())
    }
}

impl Backend {
    /// An error naming the problem when a model with these tensor shapes cannot be fine-tuned
    /// here: weights, gradients and AdamW's two moments, and the model reloaded each iteration.
    pub fn check_trainable(&self, parameters: usize) -> Result<(), String> {
        let bytes = 5 * 4 * parameters as u64;
        if bytes > WASM_MAX_MODEL_BYTES {
            return Err(format!(
                "this model is too large to fine-tune in the browser: {:.0}M parameters need about {:.0} MiB for weights, gradients and optimizer state \
                 (limit {:.0} MiB); use a smaller model, or `starling star` on the command line",
                parameters as f64 / 1e6,
                bytes as f64 / (1u64 << 20) as f64,
                WASM_MAX_MODEL_BYTES as f64 / (1u64 << 20) as f64
            ));
        }
        Ok(())
    }

    /// [`Backend::check_fits`] for the tensors of a checkpoint, before any is loaded.
    pub fn check_weights_fit(&self, weights: &dyn WeightSource) -> Result<(), String> {
        self.check_fits(weights.names().into_iter().filter_map(|n| weights.shape(&n).map(|s| (n, s))))
    }

    /// An error naming the problem when a model with these tensor shapes cannot fit here.
    pub fn check_fits(&self, shapes: impl Iterator<Item = (String, Vec<usize>)>) -> Result<(), String> {
        let mut total = 0u64;
        let mut largest = (String::new(), 0u64);
        for (name, shape) in shapes {
            let bytes = 4 * shape.iter().product::<usize>() as u64;
            total += bytes;
            if bytes > largest.1 {
                largest = (name, bytes);
            }
        }
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        if self.webgpu && largest.1 > self.max_tensor_bytes {
            return Err(format!(
                "this model is too large for the browser's WebGPU limits: {} needs {:.0} MiB as f32, the device allows {:.0} MiB per buffer. \
                 Untick \"use WebGPU\" and reload it to run on the CPU, or use a smaller model",
                largest.0,
                mib(largest.1),
                mib(self.max_tensor_bytes)
            ));
        }
        if total > WASM_MAX_MODEL_BYTES {
            return Err(format!(
                "this model is too large for the browser: {:.0} MiB of f32 weights, more than the {:.0} MiB a page can hold \
                 (WebAssembly has 4 GiB of memory in all). Use a smaller model, or run it with the starling command line",
                mib(total),
                mib(WASM_MAX_MODEL_BYTES)
            ));
        }
        Ok(())
    }

    /// Destroys the WebGPU device, as a driver reset or a lost GPU would (for tests of that path).
    pub fn destroy_device(&self) -> bool {
        match &self.destroy {
            Some(d) => {
                d();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_over_the_browser_limits_are_refused_with_the_reason() {
        let small = || vec![("model.embed_tokens.weight".to_string(), vec![1000, 64])].into_iter();
        let cpu = cpu(String::new());
        assert!(cpu.check_fits(small()).is_ok());
        // 2 GiB of f32 weights: more than a page can hold.
        let huge = vec![("model.layers.0.mlp.up_proj.weight".to_string(), vec![1 << 15, 1 << 14])];
        let e = cpu.check_fits(huge.into_iter()).unwrap_err();
        assert!(e.contains("too large for the browser") && e.contains("2048 MiB"), "{e}");
        // One tensor over the WebGPU device's per-buffer limit.
        let gpu = Backend { webgpu: true, max_tensor_bytes: 128 << 20, name: "WebGPU".into(), ..cpu.clone() };
        let embed = vec![("model.embed_tokens.weight".to_string(), vec![65536, 1024])];
        let e = gpu.check_fits(embed.into_iter()).unwrap_err();
        assert!(e.contains("model.embed_tokens.weight") && e.contains("256 MiB") && e.contains("128 MiB"), "{e}");
        assert!(gpu.check_fits(small()).is_ok());
        assert!(cpu.check_trainable(1_000_000).is_ok());
        assert!(cpu.check_trainable(135_000_000).unwrap_err().contains("too large to fine-tune"));
    }
}
