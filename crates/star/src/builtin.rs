//! The built-in base model of STaR's arithmetic experiment: a small transformer pretrained on a
//! built-in corpus of worked sums, standing in for the prior a large pretrained model brings (GPT-J,
//! few-shot prompted, in the paper). It knows the official scratchpad format and what the hint
//! means, solves short sums, and rarely long ones — so STaR has something to bootstrap.
//!
//! The corpus comes from the pretraining pool of sums (`arithmetic::Pool::Pretrain`), so it never
//! holds a STaR training or dev question. Its mix ([`BaseRecipe`]): worked sums of the short
//! digit counts, and a share of documents of every digit count that show the hint. The recipe is
//! recorded beside the model with a fingerprint of what the code makes of it (the corpus's first
//! documents, the tokenizer, the model size): a model made by another recipe or another version
//! of the format is refused instead of silently reused.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use starling_model::hash::Fnv1a;
use starling_model::{ModelConfig, Tokenizer};
use starling_tasks::arithmetic::{self, Addition, Pool};
use starling_train::optim::AdamWConfig;
use starling_train::schedule::ScheduleKind;
use starling_train::trainer::TrainConfig;

/// The built-in tokenizer's special tokens.
pub const SPECIALS: [&str; 2] = ["<pad>", "<eos>"];

/// The built-in arithmetic tokenizer: one token per word of the format — a digit is the same
/// token wherever it stands — and the newline.
pub fn tokenizer() -> starling_model::Result<Tokenizer> {
    Tokenizer::word_level(&arithmetic::WORDS, &SPECIALS)
}

/// Whether `tokenizer` is the built-in arithmetic one (a model with it learned the format in
/// pretraining and is prompted without exemplars).
pub fn is_builtin_tokenizer(t: &Tokenizer) -> bool {
    let Ok(ours) = tokenizer() else { return false };
    t.vocab_size() == ours.vocab_size()
        && arithmetic::WORDS.iter().all(|w| t.encode(w, false).ok() == ours.encode(w, false).ok())
}

/// How the built-in base model is made. Every field changes the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseRecipe {
    /// The task's digit counts the base is meant for (the hinted documents span them).
    pub max_digits: usize,
    /// Digit counts of the plain worked sums.
    pub plain_digits: (usize, usize),
    /// Share of documents that show the hint after `Target:`, over 1..=max_digits digits.
    pub hint_share: f64,
    /// Pretraining documents drawn (the pool of short sums is small: they repeat).
    pub documents: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub seed: u64,
}

impl Default for BaseRecipe {
    fn default() -> Self {
        Self {
            max_digits: 5,
            plain_digits: (1, 2),
            hint_share: 0.3,
            documents: 20_000,
            steps: 2000,
            batch_size: 32,
            lr: 2e-3,
            layers: 4,
            hidden: 128,
            heads: 4,
            seed: 0,
        }
    }
}

/// One pretraining document: the prompt (question, maybe hinted) and the worked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub prompt: String,
    pub completion: String,
}

impl BaseRecipe {
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = self.plain_digits;
        if !(1 <= lo && lo <= hi && hi <= self.max_digits && self.max_digits <= 18) {
            return Err(format!("base digits: need 1 ≤ {lo} ≤ {hi} ≤ {} ≤ 18", self.max_digits));
        }
        if !(0.0..=1.0).contains(&self.hint_share) {
            return Err(format!("the base's hint share must be in [0, 1] (got {})", self.hint_share));
        }
        if self.documents == 0 || self.steps == 0 || self.batch_size == 0 {
            return Err("the base needs documents, steps and a batch size".into());
        }
        Ok(())
    }

    /// The pretraining corpus: documents from the pretraining pool only, seeded.
    pub fn corpus(&self) -> Vec<Document> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0xba5e);
        let (lo, hi) = self.plain_digits;
        let hinted_count = (self.documents as f64 * self.hint_share).round() as usize;
        let plain_count = self.documents - hinted_count;
        // Draws with repeats from the (small) pools of short sums; each sum's scratchpad is fixed.
        let pools: Vec<Vec<Addition>> =
            (1..=self.max_digits).map(|d| arithmetic::sums_in_pool(Pool::Pretrain, self.seed, 4000, d)).collect();
        let pick = |digits: usize, rng: &mut ChaCha8Rng| {
            let pool = &pools[digits - 1];
            pool[rng.random_range(0..pool.len())]
        };
        let mut docs = Vec::with_capacity(self.documents);
        for i in 0..self.documents {
            let hinted = i < hinted_count;
            let d = if hinted { rng.random_range(1..=self.max_digits) } else { rng.random_range(lo..=hi) };
            let p = pick(d, &mut rng);
            let prompt = if hinted { p.hinted_question() } else { p.question() };
            docs.push(Document { prompt, completion: p.worked_answer() });
        }
        debug_assert_eq!(docs.len(), hinted_count + plain_count);
        // Interleave hinted and plain documents.
        use rand::seq::SliceRandom;
        docs.shuffle(&mut rng);
        docs
    }

    /// The model's architecture for `tokenizer`.
    pub fn model_config(&self, tokenizer: &Tokenizer) -> starling_model::Result<ModelConfig> {
        ModelConfig::builder(tokenizer.vocab_size())
            .layers(self.layers)
            .hidden(self.hidden)
            .heads(self.heads, self.heads)
            .context(512)
            .special_tokens(tokenizer)
            .build()
    }

    /// The pretraining settings: AdamW, warm-up then cosine decay, global-norm clipping.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: 1,
            max_len: 512,
            lr: self.lr,
            warmup_steps: 100.min(self.steps / 10),
            schedule: ScheduleKind::Cosine,
            min_lr_ratio: 0.05,
            adamw: AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() },
            grad_clip: Some(1.0),
            seed: self.seed,
            eval_every: None,
            // A kill loses at most a tenth of the pretraining (and never more than 250 steps).
            save_every: Some((self.steps / 10).clamp(1, 250)),
            keep_checkpoints: 1,
        }
    }

    /// What the code makes of this recipe, as a hash: the recipe, the first documents of its
    /// corpus, the tokenizer and the model config. A base model saved with another fingerprint
    /// was made by another recipe or another version of the format.
    pub fn fingerprint(&self) -> starling_model::Result<String> {
        let tok = tokenizer()?;
        let mut h = Fnv1a::new();
        h.write(serde_json::to_string(self).expect("recipe JSON").as_bytes());
        for doc in self.corpus().iter().take(64) {
            h.write(doc.prompt.as_bytes());
            h.write(doc.completion.as_bytes());
        }
        h.write(tok.to_json()?.as_bytes());
        h.write(serde_json::to_string(&self.model_config(&tok)?).expect("config JSON").as_bytes());
        Ok(h.hex())
    }
}

/// What is recorded beside a built-in base model (`recipe.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRecipe {
    pub recipe: BaseRecipe,
    pub fingerprint: String,
}

#[cfg(not(target_family = "wasm"))]
pub use native::*;

#[cfg(not(target_family = "wasm"))]
mod native {
    use std::path::{Path, PathBuf};

    use burn::module::Module;
    use burn::tensor::Device;

    use starling_model::checkpoint::files::{save_hf_folder, write_atomic};
    use starling_model::weights::init_transformer;
    use starling_train::Example;
    use starling_train::run_dir::{RunDir, RunObserver};
    use starling_train::trainer::{TrainObserver, train};

    use super::{BaseRecipe, RecordedRecipe, tokenizer};
    use crate::StarError;

    /// Why a base-model folder cannot be used.
    #[derive(Debug, thiserror::Error)]
    pub enum BaseError {
        #[error("{} holds no built-in base model", dir.display())]
        Missing { dir: PathBuf },
        #[error(
            "the base model in {} was made by another recipe or version of the arithmetic format \
             (fingerprint {found}, this code makes {expected})",
            dir.display()
        )]
        Stale { dir: PathBuf, found: String, expected: String },
        #[error("base recipe: {0}")]
        Recipe(String),
        #[error(transparent)]
        Star(#[from] StarError),
    }

    fn recorded(dir: &Path) -> Option<RecordedRecipe> {
        let text = std::fs::read_to_string(dir.join("recipe.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The model folder of the base model in `dir` when it was made by `recipe` with this code.
    pub fn check(dir: &Path, recipe: &BaseRecipe) -> Result<PathBuf, BaseError> {
        let model = dir.join("model");
        if !model.join("config.json").exists() {
            return Err(BaseError::Missing { dir: dir.to_path_buf() });
        }
        let expected = recipe.fingerprint().map_err(StarError::from)?;
        match recorded(dir) {
            Some(r) if r.fingerprint == expected && &r.recipe == recipe => Ok(model),
            r => Err(BaseError::Stale {
                dir: dir.to_path_buf(),
                found: r.map(|r| r.fingerprint).unwrap_or_else(|| "none".into()),
                expected,
            }),
        }
    }

    /// Pretrains the base model of `recipe` into `dir` (resuming an interrupted pretraining of the
    /// same recipe), and records the recipe; returns the model folder. Deterministic for a
    /// backend: the same recipe gives the same weights.
    pub fn prepare(
        dir: &Path,
        recipe: &BaseRecipe,
        device: &Device,
        progress: &mut dyn TrainObserver,
    ) -> Result<PathBuf, BaseError> {
        recipe.validate().map_err(BaseError::Recipe)?;
        let record =
            RecordedRecipe { recipe: recipe.clone(), fingerprint: recipe.fingerprint().map_err(StarError::from)? };
        let io = |e: std::io::Error| StarError::Model(starling_model::ModelError::write(dir, e));
        if recorded(dir).as_ref() != Some(&record) {
            // Another recipe's model or unfinished pretraining must not be reused.
            let _ = std::fs::remove_dir_all(dir.join("train"));
            let _ = std::fs::remove_dir_all(dir.join("model"));
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(&record).expect("recipe JSON");
        write_atomic(&dir.join("recipe.json"), &json).map_err(StarError::from)?;
        let model_dir = dir.join("model");
        if model_dir.join("config.json").exists() {
            return Ok(model_dir);
        }
        let tok = tokenizer().map_err(StarError::from)?;
        let eos = tok.token_to_id("<eos>");
        let mut examples = Vec::with_capacity(recipe.documents);
        for doc in recipe.corpus() {
            let mut target = tok.encode(&doc.completion, false).map_err(StarError::from)?;
            target.extend(eos);
            examples
                .push(Example::prompt_completion(&tok.encode(&doc.prompt, false).map_err(StarError::from)?, &target));
        }
        let cfg = recipe.train_config();
        let train_device = device.clone().autodiff();
        let run = RunDir::create(&dir.join("train"), &cfg, &tok).map_err(StarError::from)?;
        let (model, start) = match run.resume(&train_device).map_err(StarError::from)? {
            Some(r) => (r.model, Some(r.start)),
            None => {
                let config = recipe.model_config(&tok).map_err(StarError::from)?;
                (init_transformer(&config, recipe.seed, &train_device).map_err(StarError::from)?, None)
            }
        };
        let mut observer = RunObserver { run: &run, inner: progress };
        let (model, _) = train(model, &examples, None, &cfg, start, &mut observer).map_err(StarError::from)?;
        save_hf_folder(&model_dir, &model.valid(), &tok).map_err(StarError::from)?;
        let _ = std::fs::remove_dir_all(dir.join("train").join("checkpoints"));
        Ok(model_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_seeded_and_never_holds_a_star_question() {
        let recipe = BaseRecipe { documents: 2000, ..BaseRecipe::default() };
        let corpus = recipe.corpus();
        assert_eq!(corpus, recipe.corpus());
        assert_eq!(corpus.len(), 2000);
        let hinted = corpus.iter().filter(|d| d.prompt.contains("Target: ")).count();
        assert_eq!(hinted, 600, "30% show the hint");
        let (train, dev) = arithmetic::train_dev_split(0, 2000, 50, 1, 5).unwrap();
        let star: std::collections::HashSet<String> = train.iter().chain(&dev).map(|it| it.question.clone()).collect();
        for d in &corpus {
            let plain = d.prompt.split_once("Target:").map(|(q, _)| format!("{q}Target:")).unwrap();
            assert!(!star.contains(&plain), "{plain}");
        }
        assert_ne!(recipe.fingerprint().unwrap(), BaseRecipe { seed: 1, ..recipe.clone() }.fingerprint().unwrap());
    }

    #[test]
    fn documents_are_whole_words_of_the_tokenizer() {
        let tok = tokenizer().unwrap();
        let unk = tok.token_to_id("<unk>").unwrap();
        for d in (BaseRecipe { documents: 300, ..BaseRecipe::default() }).corpus() {
            let ids = tok.encode(&format!("{}{}", d.prompt, d.completion), false).unwrap();
            assert!(!ids.contains(&unk));
            assert_eq!(tok.decode(&ids, false).unwrap(), format!("{}{}", d.prompt, d.completion));
        }
    }
}
