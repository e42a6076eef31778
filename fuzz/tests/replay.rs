//! Every fuzz target over its seeds (written by Starling's writers, and real files committed in
//! `seeds/`), its regressions (inputs that once broke it, kept in `regressions/` after the fix)
//! and a fixed number of seeded mutations of them: the bounded pass of the fuzz targets that CI
//! runs on the stable toolchain. A failing input is saved and named in the message.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use starling_fuzz::mutate::{Rng, mutate};
use starling_fuzz::{TARGETS, seeds};

/// Mutations per target: a few seconds for all targets on 2 cores.
const MUTATIONS: usize = 20_000;

fn committed(dir: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("readable")))
        .collect();
    files.sort();
    files
}

/// The inputs a target starts from.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> =
        seeds::synthetic().into_iter().filter(|s| s.0 == target).map(|s| (s.1, s.2)).collect();
    all.extend(committed("seeds", target));
    all.extend(committed("regressions", target).into_iter().map(|(n, b)| (format!("regression {n}"), b)));
    if all.is_empty() {
        all.push(("empty".into(), Vec::new()));
    }
    all
}

/// Runs `f` on `input`; on a panic, saves the input and fails naming it.
fn run(target: &str, f: fn(&[u8]), what: &str, input: &[u8]) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(input))) {
        let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        let saved = std::env::temp_dir().join(format!("starling-fuzz-{target}-{:016x}", fnv(input)));
        std::fs::write(&saved, input).expect("writable temp dir");
        panic!(
            "fuzz target {target} failed on {what}: {}; the input is saved at {} (replay: fuzz/run.sh {target} with it, \
             or copy it to fuzz/regressions/{target}/)",
            why.unwrap_or_default(),
            saved.display()
        );
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn every_target_survives_its_seeds_regressions_and_mutations() {
    for (i, (target, f)) in TARGETS.into_iter().enumerate() {
        let inputs = inputs(target);
        for (name, bytes) in &inputs {
            run(target, f, name, bytes);
        }
        let mut rng = Rng::new(i as u64 + 1);
        for m in 0..MUTATIONS {
            let (name, base) = &inputs[rng.below(inputs.len())];
            let input = mutate(base, &mut rng);
            run(target, f, &format!("mutation {m} of {name}"), &input);
        }
    }
}

/// Writes every target's starting inputs to `$STARLING_FUZZ_CORPUS/<target>/` (fuzz/run.sh
/// seeds cargo-fuzz's corpus with them).
#[test]
#[ignore = "run by fuzz/run.sh"]
fn write_corpus() {
    let root =
        PathBuf::from(std::env::var("STARLING_FUZZ_CORPUS").expect("STARLING_FUZZ_CORPUS names the corpus folder"));
    for (target, _) in TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        for (name, bytes) in inputs(target) {
            std::fs::write(dir.join(format!("seed-{:016x}", fnv(name.as_bytes()))), bytes).expect("writable");
        }
    }
}
