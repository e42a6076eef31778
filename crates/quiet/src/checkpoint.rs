//! Quiet-STaR checkpoints: a Hugging Face folder for the base model (loadable by any tool that
//! reads one) plus `quiet.safetensors` (thought markers, mixing head) and `quiet_config.json`.
//! Written to a temporary folder and renamed into place. The browser, which has no folders,
//! loads the same files from memory ([`from_files`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use starling_model::checkpoint::memory::open_from_memory;
use starling_model::checkpoint::safetensors::SafetensorsSource;
use starling_model::checkpoint::{Checkpoint, FileBytes, HostTensor, WeightSource};
use starling_model::model::param;
use starling_model::weights::load_transformer;
use starling_model::{Tokenizer, Transformer};

use crate::config::QuietConfig;
use crate::model::{MixingHead, QuietModel};
use crate::{QuietError, Result};

pub const QUIET_WEIGHTS: &str = "quiet.safetensors";
pub const QUIET_CONFIG: &str = "quiet_config.json";

fn host<const D: usize>(t: &Param<Tensor<D>>) -> HostTensor {
    let v = t.val();
    HostTensor::new(v.dims().to_vec(), v.into_data().try_into_vec_as::<f32>().expect("f32"))
}

/// The Quiet-STaR tensors by name (stored values: markers divided by the multiplier; linear
/// weights `[in, out]`).
pub fn quiet_tensors(model: &QuietModel) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    out.insert("start_thought".into(), host(&model.start_thought));
    out.insert("end_thought".into(), host(&model.end_thought));
    for (name, l) in
        [("input", &model.mixing.input), ("hidden", &model.mixing.hidden), ("output", &model.mixing.output)]
    {
        out.insert(format!("mixing.{name}.weight"), host(&l.weight));
        if let Some(b) = &l.bias {
            out.insert(format!("mixing.{name}.bias"), host(b));
        }
    }
    out
}

/// Every file of a checkpoint folder, in memory.
#[cfg(not(target_family = "wasm"))]
pub fn checkpoint_files(model: &QuietModel, tokenizer: &Tokenizer) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = starling_model::checkpoint::files::hf_folder_files(&model.lm, tokenizer)?;
    files.push((
        QUIET_WEIGHTS.into(),
        starling_model::checkpoint::safetensors::serialize_f32(&quiet_tensors(model), HashMap::new())?,
    ));
    files.push((QUIET_CONFIG.into(), serde_json::to_vec_pretty(&model.config).expect("config JSON")));
    Ok(files)
}

/// Whether `dir` holds a Quiet-STaR checkpoint (not just a base model).
#[cfg(not(target_family = "wasm"))]
pub fn is_quiet_checkpoint(dir: &Path) -> bool {
    dir.join(QUIET_WEIGHTS).is_file() && dir.join(QUIET_CONFIG).is_file()
}

/// Loads a Quiet-STaR checkpoint folder onto `device`.
#[cfg(not(target_family = "wasm"))]
pub fn load_quiet(dir: &Path, device: &Device) -> Result<(QuietModel, Tokenizer)> {
    use starling_model::checkpoint::files::{map_file, open_checkpoint};
    if !is_quiet_checkpoint(dir) {
        return Err(QuietError::Checkpoint(format!(
            "{} is not a Quiet-STaR checkpoint (no {QUIET_WEIGHTS} / {QUIET_CONFIG}); train one with \
             `starling quiet train`, or pass a base model to start from",
            dir.display()
        )));
    }
    let ck = open_checkpoint(dir, None)?;
    let (lm, _) = load_transformer(&ck.config, ck.weights.as_ref(), device)?;
    let cfg_path = dir.join(QUIET_CONFIG);
    let text = std::fs::read(&cfg_path).map_err(|e| QuietError::Checkpoint(format!("{}: {e}", cfg_path.display())))?;
    let path = dir.join(QUIET_WEIGHTS);
    let model = wrap(lm, &text, &cfg_path, path.clone(), map_file(&path)?, device)?;
    Ok((model, ck.tokenizer))
}

/// A Quiet-STaR checkpoint opened from files in memory, not yet loaded onto a device: the base
/// model (opened by the same code as any model from memory) and the Quiet-STaR files.
pub struct QuietFiles {
    pub base: Checkpoint,
    config: Vec<u8>,
    weights: Vec<u8>,
}

/// Opens a Quiet-STaR checkpoint from its files in memory (name → bytes, as [`checkpoint_files`]
/// writes them: `config.json`, `model.safetensors`, `tokenizer.json`, `quiet.safetensors`,
/// `quiet_config.json`). What the browser does with files fetched or picked by the user.
pub fn open_files(files: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<QuietFiles> {
    let mut rest = Vec::new();
    let (mut config, mut weights) = (None, None);
    for (name, bytes) in files {
        match starling_model::checkpoint::memory::base_name(&name) {
            QUIET_CONFIG => config = Some(bytes),
            QUIET_WEIGHTS => weights = Some(bytes),
            _ => rest.push((name, bytes)),
        }
    }
    let missing = |name: &str| {
        QuietError::Checkpoint(format!(
            "no {name}: a Quiet-STaR checkpoint has config.json, model.safetensors, tokenizer.json, {QUIET_WEIGHTS} and {QUIET_CONFIG}"
        ))
    };
    let config = config.ok_or_else(|| missing(QUIET_CONFIG))?;
    let weights = weights.ok_or_else(|| missing(QUIET_WEIGHTS))?;
    Ok(QuietFiles { base: open_from_memory(rest)?, config, weights })
}

impl QuietFiles {
    /// Loads the model onto `device`.
    pub fn load(self, device: &Device) -> Result<(QuietModel, Tokenizer)> {
        let (lm, _) = load_transformer(&self.base.config, self.base.weights.as_ref(), device)?;
        let model = wrap(
            lm,
            &self.config,
            Path::new(QUIET_CONFIG),
            PathBuf::from(QUIET_WEIGHTS),
            FileBytes::Owned(self.weights),
            device,
        )?;
        Ok((model, self.base.tokenizer))
    }
}

/// [`open_files`] and [`QuietFiles::load`] in one.
pub fn from_files(files: HashMap<String, Vec<u8>>, device: &Device) -> Result<(QuietModel, Tokenizer)> {
    open_files(files)?.load(device)
}

/// A loaded base model plus the Quiet-STaR config (JSON) and tensors (safetensors bytes).
fn wrap(
    lm: Transformer,
    config_json: &[u8],
    cfg_path: &Path,
    path: PathBuf,
    bytes: FileBytes,
    device: &Device,
) -> Result<QuietModel> {
    let config: QuietConfig = serde_json::from_slice(config_json)
        .map_err(|e| QuietError::Checkpoint(format!("{}: {e}", cfg_path.display())))?;
    config.validate()?;
    let source = SafetensorsSource::new(path.clone(), vec![(path.clone(), bytes)])?;
    let d = lm.config().hidden_size;
    let get = |name: &str, shape: &[usize]| -> Result<TensorData> {
        let t = source.load(name).map_err(|e| QuietError::Checkpoint(format!("{}: {name}: {e}", path.display())))?;
        t.check_finite(&path, name)?;
        if t.shape != shape {
            return Err(QuietError::Checkpoint(format!(
                "{}: {name} has shape {:?}, expected {shape:?} for a model with d={d}; the quiet weights belong to another model",
                path.display(),
                t.shape
            )));
        }
        Ok(TensorData::new(t.data, t.shape))
    };
    let linear = |name: &str, i: usize, o: usize| -> Result<Linear> {
        Ok(Linear {
            weight: param(
                &format!("quiet.mixing.{name}.weight"),
                get(&format!("mixing.{name}.weight"), &[i, o])?,
                device,
            ),
            bias: Some(param(&format!("quiet.mixing.{name}.bias"), get(&format!("mixing.{name}.bias"), &[o])?, device)),
        })
    };
    Ok(QuietModel {
        start_thought: param("quiet.start_thought", get("start_thought", &[d])?, device),
        end_thought: param("quiet.end_thought", get("end_thought", &[d])?, device),
        mixing: MixingHead {
            input: linear("input", 2 * d, d)?,
            hidden: linear("hidden", d, d)?,
            output: linear("output", d, 1)?,
        },
        lm,
        config,
    })
}
