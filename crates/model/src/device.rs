//! Choosing where tensors live: a wgpu adapter (Vulkan / Metal / DX12 natively, WebGPU in the
//! browser), an NVIDIA GPU through CUDA (builds with the `cuda` feature), or burn's pure-Rust CPU
//! backend (flex).
//!
//! On wgpu the shader compiler follows the build and the adapter: SPIR-V on a Vulkan adapter with
//! the features cubecl needs when built with `vulkan`, MSL on Metal with `metal`, WGSL otherwise
//! (always in the browser). [`describe_compiler`] says which one a device got.

use burn::backend::DispatchDevice;
use burn::tensor::Device;

#[cfg(not(target_family = "wasm"))]
use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A hardware wgpu adapter if there is one, else the CPU backend.
    Auto,
    /// The first wgpu adapter, software ones (lavapipe, SwiftShader) included; an error if none.
    Gpu,
    /// burn's flex backend on the CPU.
    Cpu,
    /// The first NVIDIA GPU through CUDA (a build with the `cuda` feature; the driver is loaded
    /// at run time).
    Cuda,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "gpu" | "wgpu" => Ok(DeviceChoice::Gpu),
            "cpu" | "flex" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(format!("unknown device `{other}` (expected auto, gpu, cuda or cpu)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Wgpu,
    Cuda,
    Flex,
}

/// The device taken, what it is, and why it was taken.
#[derive(Debug, Clone)]
pub struct SelectedDevice {
    pub device: Device,
    pub backend: BackendKind,
    /// e.g. "wgpu: NVIDIA GeForce RTX 4090 (DiscreteGpu, Vulkan)".
    pub name: String,
    pub reason: DeviceReason,
}

/// Why [`select_device`] took the device it took (front ends add how to choose otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceReason {
    /// The CPU was asked for.
    CpuAsked,
    /// CUDA was asked for.
    CudaAsked,
    /// A GPU was asked for; `software` when the adapter is a CPU implementation of the API.
    GpuAsked { software: bool },
    /// Automatic choice: the first hardware adapter.
    AutoHardware,
    /// Automatic choice: the only adapter is a software one, slower than the CPU backend.
    AutoSoftwareOnly { adapter: String },
    /// Automatic choice: no adapter could be started.
    AutoNoAdapter { error: String },
}

impl std::fmt::Display for DeviceReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceReason::CpuAsked => write!(f, "the CPU was asked for"),
            DeviceReason::CudaAsked => write!(f, "CUDA was asked for"),
            DeviceReason::GpuAsked { software: false } => write!(f, "a GPU was asked for"),
            DeviceReason::GpuAsked { software: true } => {
                write!(f, "a GPU was asked for; note this adapter is a software (CPU) implementation")
            }
            DeviceReason::AutoHardware => write!(f, "auto: the first hardware wgpu adapter"),
            DeviceReason::AutoSoftwareOnly { adapter } => write!(
                f,
                "auto: the only wgpu adapter is `{adapter}`, a software implementation slower than the CPU backend"
            ),
            DeviceReason::AutoNoAdapter { error } => write!(f, "auto: no wgpu adapter ({error})"),
        }
    }
}

/// What a wgpu adapter is, as reported by the driver.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub device_type: String,
    pub api: String,
    /// A CPU implementation (lavapipe/llvmpipe, SwiftShader, WARP).
    pub is_software: bool,
}

/// Initializes burn's default wgpu device (once per process; later calls return the same
/// device) and describes its adapter (native builds).
#[cfg(not(target_family = "wasm"))]
pub fn init_wgpu() -> std::result::Result<(Device, AdapterSummary), String> {
    static WGPU: std::sync::OnceLock<std::result::Result<(Device, AdapterSummary), String>> =
        std::sync::OnceLock::new();
    WGPU.get_or_init(start_wgpu).clone()
}

#[cfg(not(target_family = "wasm"))]
fn start_wgpu() -> std::result::Result<(Device, AdapterSummary), String> {
    use burn::tensor::wgpu::WgpuBackend;
    use burn::tensor::wgpu::wgpu::DeviceType;
    // Adapter discovery can panic inside drivers on broken installs; treat that as "no adapter".
    let start = |api: WgpuBackend| match std::panic::catch_unwind(|| {
        Device::wgpu_options().graphics_api(api).init_with_setup()
    }) {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the wgpu driver panicked while starting".to_string()),
    };
    // The platform's main API first: burn's automatic choice also probes OpenGL when Vulkan has
    // only a software adapter, which prints EGL/Wayland noise on headless machines.
    let native = if cfg!(target_os = "macos") { WgpuBackend::Metal } else { WgpuBackend::Vulkan };
    let (device, setup) = start(native).or_else(|_| start(WgpuBackend::Auto))?;
    let info = setup.adapter.get_info();
    let summary = AdapterSummary {
        name: info.name.clone(),
        device_type: format!("{:?}", info.device_type),
        api: format!("{:?}", info.backend),
        is_software: info.device_type == DeviceType::Cpu,
    };
    Ok((device, summary))
}

#[cfg(not(target_family = "wasm"))]
fn flex(reason: DeviceReason) -> SelectedDevice {
    SelectedDevice {
        device: Device::flex(),
        backend: BackendKind::Flex,
        name: format!("cpu: burn flex backend ({} threads)", cpu_threads()),
        reason,
    }
}

#[cfg(not(target_family = "wasm"))]
fn cpu_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Picks a device as `choice` asks, never silently: `reason` explains the pick.
#[cfg(not(target_family = "wasm"))]
pub fn select_device(choice: DeviceChoice) -> Result<SelectedDevice> {
    let wgpu_pick = |a: &AdapterSummary, device: Device, reason: DeviceReason| SelectedDevice {
        device,
        backend: BackendKind::Wgpu,
        name: format!("wgpu: {} ({}, {})", a.name, a.device_type, a.api),
        reason,
    };
    match choice {
        DeviceChoice::Cpu => Ok(flex(DeviceReason::CpuAsked)),
        DeviceChoice::Cuda => start_cuda(),
        DeviceChoice::Gpu => match init_wgpu() {
            Ok((device, a)) => {
                let software = a.is_software;
                Ok(wgpu_pick(&a, device, DeviceReason::GpuAsked { software }))
            }
            Err(e) => Err(ModelError::NoGpu(e)),
        },
        DeviceChoice::Auto => match init_wgpu() {
            Ok((device, a)) if !a.is_software => Ok(wgpu_pick(&a, device, DeviceReason::AutoHardware)),
            Ok((_, a)) => Ok(flex(DeviceReason::AutoSoftwareOnly { adapter: a.name })),
            Err(e) => Ok(flex(DeviceReason::AutoNoAdapter { error: e })),
        },
    }
}

/// The further devices of data-parallel training over `count` devices, the first being `first`
/// (a [`select_device`] pick), each with its name: on wgpu, discrete GPUs 1 … count−1 in wgpu's
/// order (the first is the adapter `first` took — wgpu's high-performance pick, which on a host
/// of identical GPUs is discrete GPU 0); on CUDA, GPUs 1 … count−1; on the CPU backend, the same
/// CPU again (the copies take turns: a check of the machinery, not a speed-up). An error names a
/// GPU that cannot be started.
#[cfg(not(target_family = "wasm"))]
pub fn data_parallel_devices(first: &SelectedDevice, count: usize) -> Result<Vec<(Device, String)>> {
    (1..count)
        .map(|i| match first.backend {
            BackendKind::Flex => Ok((Device::flex(), first.name.clone())),
            BackendKind::Cuda => further_cuda(i),
            BackendKind::Wgpu => further_wgpu(i),
        })
        .collect()
}

#[cfg(not(target_family = "wasm"))]
fn further_wgpu(index: usize) -> Result<(Device, String)> {
    use burn::tensor::DeviceKind;
    let started = std::panic::catch_unwind(|| {
        Device::wgpu_options().device_kind(DeviceKind::DiscreteGpu(index)).init_with_setup()
    });
    match started {
        Ok(Ok((device, setup))) => {
            let info = setup.adapter.get_info();
            Ok((device, format!("wgpu: {} ({:?}, {:?})", info.name, info.device_type, info.backend)))
        }
        Ok(Err(e)) => {
            Err(ModelError::NoGpu(format!("data parallel needs discrete GPU {index}, which could not be started: {e}")))
        }
        Err(_) => Err(ModelError::NoGpu(format!("the wgpu driver panicked while starting discrete GPU {index}"))),
    }
}

#[cfg(all(feature = "cuda", not(target_family = "wasm")))]
fn further_cuda(index: usize) -> Result<(Device, String)> {
    std::panic::catch_unwind(|| {
        let device = Device::cuda(index);
        describe_compiler(&device);
        device
    })
    .map(|device| (device, format!("cuda: GPU {index}")))
    .map_err(|_| ModelError::NoCuda(format!("CUDA GPU {index} could not be started")))
}

#[cfg(all(not(feature = "cuda"), not(target_family = "wasm")))]
fn further_cuda(_index: usize) -> Result<(Device, String)> {
    Err(ModelError::NoCuda("this build has no CUDA runtime".into()))
}

#[cfg(all(feature = "cuda", not(target_family = "wasm")))]
fn start_cuda() -> Result<SelectedDevice> {
    // cudarc loads the driver on first use and panics when there is none.
    let device = std::panic::catch_unwind(|| {
        let device = Device::cuda(0);
        describe_compiler(&device);
        device
    })
    .map_err(|_| ModelError::NoCuda("no CUDA driver or GPU could be started".into()))?;
    Ok(SelectedDevice {
        device,
        backend: BackendKind::Cuda,
        name: "cuda: GPU 0".into(),
        reason: DeviceReason::CudaAsked,
    })
}

#[cfg(all(not(feature = "cuda"), not(target_family = "wasm")))]
fn start_cuda() -> Result<SelectedDevice> {
    Err(ModelError::NoCuda("this build has no CUDA runtime".into()))
}

/// Which backend a device runs on (autodiff wrappers looked through).
pub fn backend_of(device: &Device) -> BackendKind {
    match device.clone().without_autodiff().as_dispatch() {
        DispatchDevice::Flex(_) => BackendKind::Flex,
        DispatchDevice::Cube(cube) if cube.client().name().starts_with("cuda") => BackendKind::Cuda,
        _ => BackendKind::Wgpu,
    }
}

/// What compiles a device's kernels and what its matmuls can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerInfo {
    /// cubecl's runtime name: `wgpu<wgsl>`, `wgpu<spirv>`, `wgpu<msl>`, `cuda`; `none` off cubecl.
    pub runtime: String,
    /// Cooperative-matrix (tensor-core) multiply-accumulate shapes the compiler can emit.
    pub tensor_core_shapes: usize,
    /// Element types those shapes take as inputs, e.g. `f16, bf16`.
    pub tensor_core_inputs: Vec<String>,
}

impl std::fmt::Display for CompilerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "compiler {}", self.runtime)?;
        if self.tensor_core_shapes == 0 {
            write!(f, ", no cooperative-matrix (tensor-core) matmul")
        } else {
            write!(
                f,
                ", cooperative-matrix matmul: {} shapes ({})",
                self.tensor_core_shapes,
                self.tensor_core_inputs.join(", ")
            )
        }
    }
}

/// The compiler a device's kernels go through, and its tensor-core support.
pub fn describe_compiler(device: &Device) -> CompilerInfo {
    match device.clone().without_autodiff().as_dispatch() {
        DispatchDevice::Cube(cube) => {
            let client = cube.client();
            let cmma = &client.properties().features.matmul.cmma;
            let mut inputs: Vec<String> = cmma.iter().map(|c| format!("{:?}", c.a_type).to_lowercase()).collect();
            inputs.sort();
            inputs.dedup();
            CompilerInfo {
                runtime: client.name().to_string(),
                tensor_core_shapes: cmma.len(),
                tensor_core_inputs: inputs,
            }
        }
        _ => CompilerInfo { runtime: "none (CPU backend)".into(), tensor_core_shapes: 0, tensor_core_inputs: vec![] },
    }
}
