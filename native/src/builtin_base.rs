//! The built-in base model for STaR on arithmetic: a tiny character-level transformer pretrained
//! on a built-in corpus of worked additions — mostly small numbers, a handful of long ones — with
//! half of them showing the answer as a hint. This stands in for the prior a large pretrained
//! model brings (GPT-J, few-shot prompted, in the STaR paper): it knows the scratchpad format and
//! what a hint means, solves short sums, and rarely long ones, so STaR has something to bootstrap.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use starling_model::checkpoint::files::save_hf_folder;
use starling_model::weights::init_transformer;
use starling_model::{ModelConfig, Tokenizer, Transformer};
use starling_tasks::arithmetic::{self, Addition};
use starling_train::Example;
use starling_train::optim::AdamWConfig;
use starling_train::run_dir::{RunDir, RunObserver};
use starling_train::schedule::ScheduleKind;
use starling_train::trainer::{TrainConfig, train};

use crate::common::{StepBar, bar};

/// What the base model is and how it is pretrained; recorded with it, so a changed recipe is
/// noticed instead of silently reusing an old model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct BaseRecipe {
    /// Built-in base: pretraining steps.
    #[arg(id = "base_steps", long = "base-steps", value_name = "N", default_value_t = 1200)]
    pub steps: usize,
    /// Built-in base: digit counts of most pretraining sums.
    #[arg(id = "base_digits", long = "base-digits", value_name = "MIN-MAX", default_value = "1-2", value_parser = crate::train_lm::parse_digit_range)]
    pub digits: (usize, usize),
    /// Built-in base: share of plain pretraining sums longer than --base-digits, up to the task's
    /// largest digit count (the "handful of long exemplars").
    #[arg(id = "base_long_share", long = "base-long-share", value_name = "SHARE", default_value_t = 0.05)]
    pub long_share: f64,
    /// Built-in base: share of pretraining sums that show the answer as a hint.
    #[arg(id = "base_hint_share", long = "base-hint-share", value_name = "SHARE", default_value_t = 0.5)]
    pub hint_share: f64,
    /// Built-in base: layers / width of the model.
    #[arg(id = "base_layers", long = "base-layers", value_name = "N", default_value_t = 4)]
    pub layers: usize,
    #[arg(id = "base_hidden", long = "base-hidden", value_name = "N", default_value_t = 128)]
    pub hidden: usize,
    #[arg(id = "base_seed", long = "base-seed", value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Recorded {
    recipe: BaseRecipe,
    max_digits: usize,
}

const SPECIALS: [&str; 2] = ["<pad>", "<eos>"];

pub fn tokenizer() -> Result<Tokenizer> {
    Ok(Tokenizer::char_level_with_pieces(arithmetic::ALPHABET, &arithmetic::PIECES, &SPECIALS)?)
}

/// The pretraining documents: question → scratchpad and answer. A share show the answer as a hint,
/// over the whole digit range (the model learns what a hint is; copying from it is easier than
/// adding); the plain rest are short sums with a handful of long ones.
pub fn corpus(recipe: &BaseRecipe, n: usize, max_digits: usize) -> Vec<(String, String)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(recipe.seed ^ 0xba5e);
    let long_lo = (recipe.digits.1 + 1).min(max_digits);
    let short = arithmetic::problems(recipe.seed, n, recipe.digits.0, recipe.digits.1);
    let long = arithmetic::problems(recipe.seed.wrapping_add(1), n, long_lo, max_digits.max(long_lo));
    let hinted = arithmetic::problems(recipe.seed.wrapping_add(2), n, 1, max_digits.max(1));
    (0..n)
        .map(|i| {
            if rng.random_bool(recipe.hint_share.clamp(0.0, 1.0)) {
                let p = hinted[i];
                (p.hinted_question(), p.worked_answer())
            } else {
                let p: Addition = if rng.random_bool(recipe.long_share.clamp(0.0, 1.0)) { long[i] } else { short[i] };
                (p.question(), p.worked_answer())
            }
        })
        .collect()
}

/// Prepares (or reuses) the base model in `dir`; returns the path of its model folder.
pub fn prepare(dir: &Path, recipe: &BaseRecipe, max_digits: usize, device: &Device) -> Result<PathBuf> {
    let model_dir = dir.join("model");
    let recorded = Recorded { recipe: recipe.clone(), max_digits };
    let recipe_path = dir.join("recipe.json");
    let old: Option<Recorded> = std::fs::read_to_string(&recipe_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    if !model_dir.join("config.json").exists() && old.as_ref() != Some(&recorded) {
        // An unfinished pretraining with another recipe: its checkpoints must not be resumed.
        let _ = std::fs::remove_dir_all(dir.join("train"));
    }
    if model_dir.join("config.json").exists() {
        if old.as_ref() == Some(&recorded) {
            eprintln!("base model: reusing {} (pretrained earlier with the same recipe)", model_dir.display());
            return Ok(model_dir);
        }
        bail!(
            "{} holds a base model pretrained with other settings; delete that folder or pass --base-dir elsewhere",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir)?;
    starling_model::checkpoint::files::write_atomic(&recipe_path, &serde_json::to_vec_pretty(&recorded)?)?;
    let tok = tokenizer()?;
    let eos = tok.token_to_id("<eos>");
    let examples: Vec<Example> = corpus(recipe, 8000, max_digits)
        .iter()
        .map(|(q, a)| -> Result<Example> {
            let mut target = tok.encode(a, false)?;
            target.extend(eos);
            Ok(Example::prompt_completion(&tok.encode(q, false)?, &target))
        })
        .collect::<Result<_>>()?;
    let cfg = TrainConfig {
        steps: recipe.steps,
        batch_size: 32,
        grad_accum: 1,
        max_len: 512,
        lr: 3e-3,
        warmup_steps: 20,
        schedule: ScheduleKind::Cosine,
        min_lr_ratio: 0.1,
        adamw: AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() },
        grad_clip: Some(1.0),
        seed: recipe.seed,
        eval_every: None,
        save_every: Some(200),
        keep_checkpoints: 1,
    };
    let train_device = device.clone().autodiff();
    let run = RunDir::create(&dir.join("train"), &cfg, &tok)?;
    let (model, start) = match run.resume(&train_device)? {
        Some(r) => (r.model, Some(r.start)),
        None => {
            let mc = ModelConfig::builder(tok.vocab_size())
                .layers(recipe.layers)
                .hidden(recipe.hidden)
                .heads(4, 4)
                .context(512)
                .special_tokens(&tok)
                .build()?;
            (init_transformer(&mc, recipe.seed, &train_device)?, None)
        }
    };
    let t0 = Instant::now();
    eprintln!(
        "base model: pretraining a {:.2}M-parameter model on {} worked additions ({} steps)",
        model.config().num_parameters() as f64 / 1e6,
        examples.len(),
        cfg.steps
    );
    let pb = bar(cfg.steps as u64, "pretraining");
    let mut progress = StepBar(pb.clone());
    let mut observer = RunObserver { run: &run, inner: &mut progress };
    let (model, _): (Transformer, _) = train(model, &examples, None, &cfg, start, &mut observer)?;
    pb.finish_and_clear();
    save_hf_folder(&model_dir, &model.valid(), &tok)?;
    eprintln!("base model: pretrained in {:.0}s, saved to {}", t0.elapsed().as_secs_f64(), model_dir.display());
    Ok(model_dir)
}
