//! The built-in STaR experiment at a size that runs in seconds, for the command-line tests: the
//! run's settings, without the device, `--out` or `--iterations`.

use std::path::Path;

/// Settings of a tiny STaR run on one-digit sums (34 distinct ones, in generation batches of 16),
/// whose built-in base model is prepared in `base`.
pub fn tiny_star_settings(base: &Path) -> Vec<String> {
    let base = base.to_str().expect("a UTF-8 path");
    [
        "--base-dir",
        base,
        "--digits",
        "1-1",
        "--train-size",
        "48",
        "--dev-per-digit",
        "16",
        "--base-steps",
        "150",
        "--base-documents",
        "2000",
        "--base-layers",
        "2",
        "--base-hidden",
        "64",
        // A base this small fails the gate: the tests are about the machinery.
        "--no-gate",
        "--first-steps",
        "8",
        "--batch-size",
        "8",
        "--gen-batch",
        "16",
    ]
    .map(String::from)
    .to_vec()
}
