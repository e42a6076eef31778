//! The built-in STaR experiment at a size that runs in seconds, for the command-line tests: the
//! run's settings, without the device, `--out` or `--iterations`.

use std::path::Path;

/// The recipe of a tiny built-in base model, prepared in (or reused from) `base`.
pub fn tiny_base_recipe(base: &Path) -> Vec<String> {
    let base = base.to_str().expect("a UTF-8 path");
    ["--base-dir", base, "--base-steps", "150", "--base-documents", "2000", "--base-layers", "2", "--base-hidden", "64"]
        .map(String::from)
        .to_vec()
}

/// Settings of a tiny STaR run on one-digit sums (34 distinct ones, in generation batches of 16)
/// from the tiny base model in `base`.
pub fn tiny_star_settings(base: &Path) -> Vec<String> {
    let mut settings = tiny_base_recipe(base);
    settings.extend(
        [
            "--digits",
            "1-1",
            "--train-size",
            "48",
            "--dev-per-digit",
            "16",
            // A base this small fails the gate: the tests are about the machinery.
            "--no-gate",
            "--first-steps",
            "8",
            "--batch-size",
            "8",
            "--gen-batch",
            "16",
        ]
        .map(String::from),
    );
    settings
}
