//! `starling bench-rationales`: STaR's rationale-generation throughput (questions/s, tokens/s)
//! at several batch sizes, on a task's training questions.

use std::time::Instant;

use anyhow::Result;

use starling_model::checkpoint::files::open_checkpoint;
use starling_model::device::DeviceChoice;
use starling_model::weights::load_transformer;
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
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    a.tune.check(&a.task)?;
    let dev = pick_device(device)?;
    let task = a.task.load(a.tune.seed)?;
    let (base, tokenizer) = a.tune.base(&a.task, &dev.device, false)?;
    let ck = open_checkpoint(&base, None)?;
    let (model, _) = load_transformer(&ck.config, ck.weights.as_ref(), &dev.device)?;
    let g = a.tune.generator(&task, a.task.task, &model, &tokenizer, a.tune.shots);
    let shots = g.exemplars.len();
    let items: Vec<&Item> = task.data.train.iter().take(a.questions.max(1)).collect();
    // Warm-up: first-use costs (allocation, kernel compilation on GPUs) are not throughput.
    g.generations(&items[..items.len().min(2)], PromptStyle::Rationale, false, 0)?;
    println!(
        "rationale generation, {} questions of {} ({} shots), greedy, on {}",
        items.len(),
        task.kind.name(),
        shots,
        dev.name
    );
    println!("| batch | questions/s | generated tokens/s | seconds | speed-up |");
    println!("|---|---|---|---|---|");
    let mut first: Option<f64> = None;
    for &b in a.batches.iter().filter(|&&b| b > 0) {
        let t = Instant::now();
        let mut tokens = 0;
        for chunk in items.chunks(b.max(1)) {
            tokens +=
                g.generations(chunk, PromptStyle::Rationale, false, 0)?.iter().map(|x| x.ids.len()).sum::<usize>();
        }
        let secs = t.elapsed().as_secs_f64();
        let qps = items.len() as f64 / secs;
        let base = *first.get_or_insert(qps);
        println!("| {b} | {qps:.2} | {:.1} | {secs:.1} | {:.1}× |", tokens as f64 / secs, qps / base);
    }
    Ok(())
}
