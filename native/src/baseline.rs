//! `starling baseline`: the comparisons the STaR paper reports beside STaR itself — few-shot
//! prompting (direct or with a rationale) of the base model, and fine-tuning it to answer directly.
//! (The ablation "STaR without rationalization" is `starling star --no-rationalization`.)

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::module::Module;

use starling_model::checkpoint::files::{open_checkpoint, save_hf_folder, write_atomic};
use starling_model::device::DeviceChoice;
use starling_model::prefix::PrefixStore;
use starling_model::weights::load_transformer;
use starling_star::Outcome;
use starling_star::attempt::{RationaleRecord, training_examples};
use starling_star::evaluate::evaluate;
use starling_tasks::PromptStyle;
use starling_train::run_dir::{RunDir, RunObserver};
use starling_train::trainer::train;

use crate::common::{StepBar, bar, pick_device};
use crate::star::TuneArgs;
use crate::tasks_args::TaskArgs;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The base model prompted with exemplars that answer directly.
    FewShotDirect,
    /// The base model prompted with exemplars that reason first (chain of thought).
    FewShotRationale,
    /// The base model fine-tuned on the training questions' gold answers, answering directly.
    DirectFinetune,
}

#[derive(clap::Args)]
pub struct Args {
    /// Which baseline.
    kind: Kind,
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    tune: TuneArgs,
    /// Output folder (default: runs/baseline-KIND-TASK).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Fine-tuning steps for direct-finetune.
    #[arg(long, default_value_t = 400)]
    steps: usize,
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let kind_name = match a.kind {
        Kind::FewShotDirect => "few-shot-direct",
        Kind::FewShotRationale => "few-shot-rationale",
        Kind::DirectFinetune => "direct-finetune",
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/baseline-{kind_name}-{}", a.task.task.kind().name())));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    a.tune.check(&a.task)?;
    let dev = pick_device(device)?;
    let task = a.task.load(a.tune.seed)?;
    let (base_path, tokenizer) = a.tune.base(&a.task, &dev.device, false)?;
    let ck = open_checkpoint(&base_path, None)?;
    let (mut model, _) = load_transformer(&ck.config, ck.weights.as_ref(), &dev.device)?;
    let few_shot = matches!(a.kind, Kind::FewShotDirect | Kind::FewShotRationale);
    let shots = if few_shot { a.tune.shots.unwrap_or(task.data.exemplars.len()) } else { 0 };
    let style = if a.kind == Kind::FewShotRationale { PromptStyle::Rationale } else { PromptStyle::Direct };

    if a.kind == Kind::DirectFinetune {
        // Gold answers written as direct completions, trained with the same machinery as STaR.
        let records: Vec<RationaleRecord> = task
            .data
            .train
            .iter()
            .map(|it| RationaleRecord {
                id: it.id.clone(),
                group: it.group.clone(),
                outcome: Outcome::Kept,
                completion: task.kind.completion(it, "", PromptStyle::Direct),
                answer: Some(it.gold.clone()),
                rationalization: None,
                rationalization_answer: None,
                leaked_hint: false,
                sound: None,
            })
            .collect();
        let by_id: HashMap<&str, &starling_tasks::Item> =
            task.data.train.iter().map(|it| (it.id.as_str(), it)).collect();
        let examples = training_examples(&records, &by_id, &tokenizer, ck.config.eos_token_id)?;
        let train_device = dev.device.clone().autodiff();
        let (start, _) = load_transformer(&ck.config, ck.weights.as_ref(), &train_device)?;
        let cfg = a.tune.train_config(a.steps);
        let run = RunDir::create(&out.join("train"), &cfg, &tokenizer)?;
        run.truncate_metrics(0)?;
        let pb = bar(cfg.steps as u64, "fine-tune");
        let mut progress = StepBar(pb.clone());
        let mut observer = RunObserver { run: &run, inner: &mut progress };
        let (tuned, _) = train(start, &examples, None, &cfg, None, &mut observer)?;
        pb.finish_and_clear();
        let tuned = tuned.valid();
        save_hf_folder(&out.join("model"), &tuned, &tokenizer)?;
        model = tuned;
    }

    let prefixes = PrefixStore::default();
    let g = a.tune.generator(&task, a.task.task, &model, &tokenizer, Some(shots), Some(&prefixes));
    let pb = bar(task.data.dev.len() as u64, "dev eval");
    let result = evaluate(&g, &task.data.dev, style, false, a.tune.gen_batch, &mut |d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    write_atomic(&out.join("result.json"), &serde_json::to_vec_pretty(&result)?)?;
    println!(
        "{kind_name} on {} ({} dev questions, {} shots): accuracy {:.1}% ({} of {}; {} without a readable answer)",
        task.kind.name(),
        result.overall.total,
        g.exemplars.len(),
        100.0 * result.accuracy(),
        result.overall.correct,
        result.overall.total,
        result.unparsable
    );
    for (g, t) in &result.by_group {
        println!("  {g}: {:.1}% ({}/{})", 100.0 * t.accuracy(), t.correct, t.total);
    }
    println!("result: {}", out.join("result.json").display());
    Ok(())
}
