//! `starling bench`: forward, forward+backward and generation speed of a model, optionally beside
//! a reference timing (e.g. PyTorch's, from a JSON file with `cpu_timing_reference`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{RngExt, SeedableRng};

use starling_model::checkpoint::files::open_checkpoint;
use starling_model::device::{DeviceChoice, describe_compiler};
use starling_model::generate::{GenerateConfig, generate_ids};
use starling_model::weights::load_transformer;
use starling_train::data::{Example, make_batch};
use starling_train::trainer::masked_nll;

use crate::common::{ModelArgs, pick_device};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Timed runs per measurement (the median is reported), after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Prompt length for the generation benchmark.
    #[arg(long, default_value_t = 32)]
    prompt_len: usize,
    /// New tokens per generation run.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Batch sizes for the generation benchmark.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    gen_batches: Vec<usize>,
    /// A JSON file with reference timings (`cpu_timing_reference.forward_no_grad.median_s`, …).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Also write the measurements to this JSON file (for scripts such as bench/gpu.sh).
    #[arg(long)]
    json: Option<PathBuf>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..runs.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let dev = pick_device(device)?;
    let loaded = a.model.load(&dev.device)?;
    let model = &loaded.model;
    let vocab = model.config().vocab_size as u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<i64> = (0..a.batch * a.seq_len).map(|_| rng.random_range(0..vocab) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [a.batch, a.seq_len]), &dev.device);

    let fwd = time_runs(a.runs, || {
        let logits = model.forward(tokens.clone());
        dev.device.sync().expect("device sync");
        drop(logits);
    });

    // Forward + backward of the causal-LM loss over the full vocabulary.
    let ad = dev.device.clone().autodiff();
    let ck = open_checkpoint(&a.model.model, a.model.tokenizer.as_deref())?;
    let (train_model, _) = load_transformer(&ck.config, ck.weights.as_ref(), &ad)?;
    drop(ck);
    let rows: Vec<Example> =
        ids.chunks(a.seq_len).map(|r| Example::full(r.iter().map(|&t| t as u32).collect())).collect();
    let refs: Vec<&Example> = rows.iter().collect();
    let batch = make_batch(&refs, a.seq_len + 1, 0, &ad);
    let fwd_bwd = time_runs(a.runs, || {
        let loss = masked_nll(&train_model, &batch, batch.target_count);
        let grads = loss.backward();
        ad.sync().expect("device sync");
        drop(grads);
    });
    drop(train_model);

    let mut gen_rows = Vec::new();
    for &b in &a.gen_batches {
        let prompts: Vec<Vec<u32>> =
            (0..b).map(|_| (0..a.prompt_len).map(|_| rng.random_range(0..vocab)).collect()).collect();
        let cfg = GenerateConfig { max_new_tokens: a.new_tokens, ..GenerateConfig::default() };
        let secs = time_runs(a.runs.min(3), || {
            generate_ids(model, &loaded.tokenizer, &prompts, &cfg, &mut |_| {}).expect("generation");
        });
        gen_rows.push((b, (b * a.new_tokens) as f64 / secs, secs));
    }

    let reference = match &a.reference {
        Some(p) => {
            let v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{} is not JSON", p.display()))?;
            let r = &v["cpu_timing_reference"];
            Some((
                r["forward_no_grad"]["median_s"].as_f64(),
                r["forward_backward"]["median_s"].as_f64(),
                r["torch"].as_str().unwrap_or("reference").to_string(),
            ))
        }
        None => None,
    };
    println!("model {} on {}", loaded.path.display(), dev.name);
    println!(
        "| measurement | Starling | {} | ratio (reference / Starling) |",
        reference.as_ref().map(|r| r.2.as_str()).unwrap_or("reference")
    );
    println!("|---|---|---|---|");
    let row = |what: String, ours: f64, theirs: Option<f64>| match theirs {
        Some(t) => println!("| {what} | {ours:.3} s | {t:.3} s | {:.2}× |", t / ours),
        None => println!("| {what} | {ours:.3} s | – | – |"),
    };
    row(format!("forward {}×{} (no grad)", a.batch, a.seq_len), fwd, reference.as_ref().and_then(|r| r.0));
    row(format!("forward+backward {}×{}", a.batch, a.seq_len), fwd_bwd, reference.as_ref().and_then(|r| r.1));
    for &(b, tps, secs) in &gen_rows {
        println!(
            "| generation, batch {b}, {} prompt + {} new tokens | {tps:.1} tokens/s ({secs:.2} s) | – | – |",
            a.prompt_len, a.new_tokens
        );
    }
    if let Some(path) = &a.json {
        let report = serde_json::json!({
            "device": dev.name,
            "compiler": describe_compiler(&dev.device).runtime,
            "model": loaded.path.display().to_string(),
            "batch": a.batch,
            "seq_len": a.seq_len,
            "runs": a.runs,
            "forward_s": fwd,
            "forward_backward_s": fwd_bwd,
            "generation": gen_rows.iter().map(|&(b, tps, secs)| serde_json::json!({
                "batch": b, "prompt_len": a.prompt_len, "new_tokens": a.new_tokens,
                "tokens_per_s": tps, "seconds": secs,
            })).collect::<Vec<_>>(),
        });
        starling_model::checkpoint::files::write_atomic(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}
