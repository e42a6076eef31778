//! Helpers shared by the model crate's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::Device;
use starling_model::device::{DeviceChoice, select_device};

/// The folder with the project's shared data, models and reference outputs (`../shared` beside
/// the repository, or `$STARLING_SHARED`).
pub fn shared() -> PathBuf {
    let dir = std::env::var_os("STARLING_SHARED").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("../../../shared")
    });
    assert!(
        dir.join("models").is_dir(),
        "shared data not found at {} (set STARLING_SHARED to the folder holding models/ and reference/)",
        dir.display()
    );
    dir
}

/// The CPU backend.
pub fn cpu() -> Device {
    Device::flex()
}

/// A wgpu device. Tests must run on a real adapter (lavapipe in CI), so its absence fails.
pub fn wgpu() -> Device {
    select_device(DeviceChoice::Gpu)
        .expect("a wgpu adapter is required for this test (apt install mesa-vulkan-drivers)")
        .device
}
