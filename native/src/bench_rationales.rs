//! `starling bench-rationales`: STaR's rationale-generation throughput (questions/s, tokens/s)
//! at several batch sizes, on a task's training questions.

use std::time::Instant;

use anyhow::Result;

use starling_model::checkpoint::files::{open_checkpoint, write_atomic};
use starling_model::device::DeviceChoice;
use starling_model::prefix::PrefixStore;
use starling_model::weights::load_transformer;
use starling_star::attempt::Generator;
use starling_tasks::{Item, PromptStyle};

use crate::common::pick_device;
use crate::star::TuneArgs;
use crate::tasks_args::TaskArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    tune: TuneArgs,
    /// Questions generated per batch size (the same ones for each).
    #[arg(long, default_value_t = 64)]
    questions: usize,
    /// Batch sizes to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    batches: Vec<usize>,
    /// Write the tokenized prompts, decoding settings and the fastest configuration's output here
    /// (JSON), for the transformers peer (`bench/hf_rationales.py`).
    #[arg(long)]
    prompts_out: Option<std::path::PathBuf>,
    /// Skip the configurations without the prefix cache (the slow baseline).
    #[arg(long)]
    no_uncached: bool,
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    a.tune.check(&a.task)?;
    let dev = pick_device(device)?;
    let task = a.task.load(a.tune.seed)?;
    let (base, tokenizer) = a.tune.base(&a.task, &dev.device, false)?;
    let ck = open_checkpoint(&base, None)?;
    let (model, _) = load_transformer(&ck.config, ck.weights.as_ref(), &dev.device)?;
    let items: Vec<&Item> = task.data.train.iter().take(a.questions.max(1)).collect();
    let store = PrefixStore::default();
    let generator = |prefixes| a.tune.generator(&task, a.task.task, &model, &tokenizer, a.tune.shots, prefixes);
    let (mut cached, uncached) = (generator(Some(&store)), generator(None));
    // Warm-up: first-use costs (allocation, kernel compilation on GPUs) are not throughput.
    for g in [&uncached, &cached].into_iter().skip(usize::from(a.no_uncached)) {
        g.generations(&items[..items.len().min(2)], PromptStyle::Rationale, false, 0)?;
    }
    let prefix_tokens = cached.shared_prefix(PromptStyle::Rationale, false)?.map_or(0, |p| p.len());
    println!(
        "rationale generation, {} questions of {} ({} shots, a shared prefix of {prefix_tokens} tokens), greedy, on {}",
        items.len(),
        task.kind.name(),
        cached.exemplars.len(),
        dev.name
    );
    println!("| prefix cache | batching | rows | questions/s | generated tokens/s | seconds | speed-up |");
    println!("|---|---|---|---|---|---|---|");
    let mut first: Option<f64> = None;
    let mut outputs: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut fastest = (0.0, String::new());
    let mut measure = |g: &Generator, prefix: &str, batching: &str, rows: usize, per_call: usize| -> Result<()> {
        let t = Instant::now();
        let mut ids = Vec::new();
        for chunk in items.chunks(per_call) {
            ids.extend(g.generations(chunk, PromptStyle::Rationale, false, 0)?.into_iter().map(|x| x.ids));
        }
        let secs = t.elapsed().as_secs_f64();
        let tokens: usize = ids.iter().map(Vec::len).sum();
        let qps = items.len() as f64 / secs;
        let base = *first.get_or_insert(qps);
        println!(
            "| {prefix} | {batching} | {rows} | {qps:.2} | {:.1} | {secs:.1} | {:.1}× |",
            tokens as f64 / secs,
            qps / base
        );
        if qps > fastest.0 {
            fastest = (qps, format!("prefix cache {prefix}, {batching} batching, {rows} rows"));
        }
        outputs.push(ids);
        Ok(())
    };
    let batches: Vec<usize> = a.batches.iter().copied().filter(|&b| b > 0).collect();
    // Static batches: each batch of questions runs until its longest row is done (finished
    // rows leave it, but nothing takes their place).
    for (g, name) in [(&uncached, "off"), (&cached, "on")] {
        if a.no_uncached && name == "off" {
            continue;
        }
        for &b in &batches {
            measure(g, name, "static", b, b)?;
        }
    }
    // Continuous: all questions in one call, `b` rows at a time, refilled as rows finish.
    for &b in &batches {
        cached.max_rows = Some(b);
        measure(&cached, "on", "continuous", b, items.len())?;
    }
    if let Some(path) = &a.prompts_out {
        let prompts = cached.prompts(&items, PromptStyle::Rationale, false)?;
        let cfg = cached.decode_config(0);
        let questions: Vec<_> = prompts
            .iter()
            .zip(outputs.last().expect("at least one configuration ran"))
            .map(|(p, ids)| serde_json::json!({"prompt": p, "starling": ids}))
            .collect();
        let spec = serde_json::json!({
            "max_new_tokens": cfg.max_new_tokens,
            "stop_strings": cfg.stop_strings,
            "eos_ids": cfg.eos_ids,
            "starling_questions_per_s": fastest.0,
            "starling_config": fastest.1,
            "questions": questions,
        });
        write_atomic(path, serde_json::to_string(&spec)?.as_bytes())?;
    }
    // Greedy decoding: every configuration must write the same rationales.
    let differing = outputs.iter().skip(1).filter(|o| *o != &outputs[0]).count();
    if differing > 0 {
        println!(
            "note: {differing} configuration(s) wrote different tokens from the first (float rounding at a near-tie)"
        );
    }
    Ok(())
}
