//! Opening checkpoints on disk (native builds only): a Hugging Face folder or a GGUF file.
//! Everything here reads files and hands bytes to the format parsers next door.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;

use super::FileBytes;
use super::gguf::{GgufFile, GgufSource};
use super::gguf_tokenizer::tokenizer_from_gguf;
use super::safetensors::SafetensorsSource;
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

pub use super::{Checkpoint, CheckpointFormat};

pub fn map_file(path: &Path) -> Result<FileBytes> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: the map is read-only; Starling never writes checkpoint files it has mapped, and a
    // file changed underneath by another program yields wrong numbers, not memory unsafety in
    // practice on the platforms we target (the same trade-off `safetensors` users make).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    Ok(FileBytes::Mapped(map))
}

/// The largest JSON file of a model read (config, tokenizer, shard index): real tokenizer.json
/// files stay under ~40 MiB even for 256 k-token vocabularies, so a bigger file is no model's and
/// is refused before it is read.
pub const MAX_JSON_BYTES: u64 = 256 << 20;

fn read_text(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?.len();
    if len > MAX_JSON_BYTES {
        return Err(ModelError::format(
            path,
            format!(
                "is {:.1} MiB, more than the {} MiB any model's JSON file needs; refused without reading it",
                len as f64 / (1u64 << 20) as f64,
                MAX_JSON_BYTES >> 20
            ),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))
}

/// Every id the tokenizer can produce needs a row in the model's embedding: an id past it would
/// read outside the weights.
fn check_vocabulary(config: &ModelConfig, tokenizer: &Tokenizer, origin: &Path) -> Result<()> {
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(ModelError::format(
            origin,
            format!(
                "the tokenizer has token ids up to {} but the model's vocabulary has {} entries: it is another \
                 model's tokenizer (pass this model's own with --tokenizer)",
                tokenizer.vocab_size() - 1,
                config.vocab_size
            ),
        ));
    }
    Ok(())
}

/// Opens a model: a folder with `config.json`, `*.safetensors` and `tokenizer.json`, or a
/// `.gguf` file. `tokenizer_override` replaces the tokenizer found with the model.
pub fn open_checkpoint(path: &Path, tokenizer_override: Option<&Path>) -> Result<Checkpoint> {
    if !path.exists() {
        return Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder; check the model path"),
        ));
    }
    let override_tok = tokenizer_override
        .map(|p| Tokenizer::from_json(&read_text(p)?).map_err(|e| ModelError::format(p, e.to_string())))
        .transpose()?;
    if path.is_dir() {
        open_hf_folder(path, override_tok.zip(tokenizer_override))
    } else {
        let file = GgufFile::parse(path.to_path_buf(), map_file(path)?)?;
        let version = file.version;
        let tokenizer = match override_tok {
            Some(t) => t,
            None => tokenizer_from_gguf(&file)?,
        };
        let source = GgufSource::new(file)?;
        check_vocabulary(source.config(), &tokenizer, tokenizer_override.unwrap_or(path))?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            config: source.config().clone(),
            weights: Box::new(source),
            tokenizer,
            format: CheckpointFormat::Gguf { version },
        })
    }
}

fn open_hf_folder(dir: &Path, override_tok: Option<(Tokenizer, &Path)>) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(ModelError::format(
            dir,
            "no config.json in this folder; a Hugging Face model folder needs config.json, \
             *.safetensors and tokenizer.json (or pass a .gguf file)",
        ));
    }
    let config = ModelConfig::from_hf_json(&read_text(&config_path)?)
        .map_err(|e| ModelError::format(&config_path, e.to_string()))?;
    let shard_names = safetensors_files(dir)?;
    let mut files = Vec::new();
    for name in shard_names {
        let p = dir.join(&name);
        let bytes = map_file(&p)?;
        files.push((p, bytes));
    }
    let weights = SafetensorsSource::new(dir.to_path_buf(), files)?;
    let tok_path = dir.join("tokenizer.json");
    let (tokenizer, tok_origin) = match override_tok {
        Some((t, origin)) => (t, origin),
        None => {
            if !tok_path.exists() {
                return Err(ModelError::MissingTokenizer { dir: dir.to_path_buf() });
            }
            let t = Tokenizer::from_json(&read_text(&tok_path)?)
                .map_err(|e| ModelError::format(&tok_path, e.to_string()))?;
            (t, tok_path.as_path())
        }
    };
    check_vocabulary(&config, &tokenizer, tok_origin)?;
    Ok(Checkpoint {
        path: dir.to_path_buf(),
        config,
        weights: Box::new(weights),
        tokenizer,
        format: CheckpointFormat::HfFolder,
    })
}

/// The safetensors files of a folder: those named by `model.safetensors.index.json` when it
/// exists (sharded checkpoints), else every `*.safetensors` file.
fn safetensors_files(dir: &Path) -> Result<Vec<String>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let v: serde_json::Value = serde_json::from_str(&read_text(&index)?)
            .map_err(|e| ModelError::format(&index, format!("not valid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::format(&index, "has no `weight_map` object"))?;
        let shards: BTreeSet<String> = map.values().filter_map(|s| s.as_str().map(str::to_string)).collect();
        for s in &shards {
            if !dir.join(s).exists() {
                return Err(ModelError::format(
                    &index,
                    format!("names shard `{s}`, which is not in the folder; the download is incomplete"),
                ));
            }
        }
        return Ok(shards.into_iter().collect());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(ModelError::format(
            dir,
            "no *.safetensors file in this folder (PyTorch .bin checkpoints are not read; convert \
             them with transformers' save_pretrained(safe_serialization=True))",
        ));
    }
    Ok(names)
}

/// The name parts of a temporary entry an atomic write makes: `.NAME.tmp-PID` (the new copy being
/// written) or `.NAME.old-PID` (the previous folder, between the two renames of a replacement).
fn temporary_of(entry: &str) -> Option<(&str, bool, u32)> {
    let rest = entry.strip_prefix('.')?;
    let (name, old, pid) = match (rest.rfind(".tmp-"), rest.rfind(".old-")) {
        (Some(i), _) => (&rest[..i], false, &rest[i + 5..]),
        (None, Some(i)) => (&rest[..i], true, &rest[i + 5..]),
        (None, None) => return None,
    };
    Some((name, old, pid.parse().ok()?))
}

/// Whether process `pid` may still be running: ours is; where `/proc` lists processes (Linux), a
/// listed one is; elsewhere every other process counts as gone.
fn may_be_running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    pid == std::process::id() || (proc.join("self").exists() && proc.join(pid.to_string()).exists())
}

/// Cleans up after atomic writes in `dir` whose process was killed (temporaries of a process
/// that still runs are in use and left alone): a half-written copy is deleted, and a previous
/// folder caught between the two renames of a replacement is put back under its name (the
/// replacement never landed, so the old folder is the newest complete one; if it cannot be put
/// back it stays where it is). Only targets `of` accepts are touched. Every atomic write calls it
/// for its own target; run folders call it for the files they write when they resume.
pub fn remove_interrupted_writes(dir: &Path, of: &dyn Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    // Old folders first: one is restored before the copies are cleared.
    entries.sort_by_key(|e| !temporary_of(e).is_some_and(|(_, old, _)| old));
    for entry in entries {
        let Some((name, old, pid)) = temporary_of(&entry) else { continue };
        if !of(name) || may_be_running(pid) {
            continue;
        }
        let (path, target) = (dir.join(&entry), dir.join(name));
        if old && !target.exists() {
            let _ = std::fs::rename(&path, &target);
            continue;
        }
        // A half-written copy, or an old folder whose replacement landed before the kill.
        let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over the target, so a crash never leaves a half-written file under the real name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    remove_interrupted_writes(dir, &|n| n == name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::write(path, e));
    }
    Ok(())
}

/// The files of a Hugging Face model folder for `model` (f32 safetensors, `config.json`,
/// `generation_config.json`, `tokenizer.json`), as (file name, bytes).
pub fn hf_folder_files(model: &crate::Transformer, tokenizer: &Tokenizer) -> Result<Vec<(String, Vec<u8>)>> {
    let config = model.config();
    let tensors = crate::weights::export_tensors(model);
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let weights = super::safetensors::serialize_f32(&tensors, meta)?;
    let mut generation = serde_json::json!({"_from_model_config": true});
    for (key, id) in [
        ("bos_token_id", config.bos_token_id),
        ("eos_token_id", config.eos_token_id),
        ("pad_token_id", config.pad_token_id),
    ] {
        if let Some(id) = id {
            generation[key] = id.into();
        }
    }
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON");
    Ok(vec![
        ("config.json".into(), pretty(&config.to_hf_json())),
        ("generation_config.json".into(), pretty(&generation)),
        ("tokenizer.json".into(), tokenizer.to_json()?.into_bytes()),
        ("model.safetensors".into(), weights),
    ])
}

/// Writes a folder of files so that `dir` is always either absent, the old complete folder, or
/// the new complete folder: files go to a sibling temp folder that is then renamed into place.
pub fn write_folder_atomic(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    use std::io::Write;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelError::write(parent, e))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    remove_interrupted_writes(parent, &|n| n == name);
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let cleanup = |e: std::io::Error, at: &Path| {
        let _ = std::fs::remove_dir_all(&tmp);
        ModelError::write(at, e)
    };
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| cleanup(e, &tmp))?;
    for (file, bytes) in files {
        // Errors name the file being replaced: the temporary folder is gone by the time they are read.
        let (p, shown) = (tmp.join(file), dir.join(file));
        let mut f = File::create(&p).map_err(|e| cleanup(e, &shown))?;
        f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| cleanup(e, &shown))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| cleanup(e, dir))?;
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        // Put the previous folder back so nothing already written is lost.
        let _ = std::fs::rename(&old, dir);
        return Err(cleanup(e, dir));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Saves `model` as a Hugging Face folder that transformers can load.
pub fn save_hf_folder(dir: &Path, model: &crate::Transformer, tokenizer: &Tokenizer) -> Result<()> {
    write_folder_atomic(dir, &hf_folder_files(model, tokenizer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    }

    /// A killed process's leftovers: the old folder caught between the two renames is put back
    /// and the half-written copy deleted; a running process's temporaries, and names the caller
    /// does not own, are left alone; a superseded old copy goes once the replacement landed.
    #[test]
    fn interrupted_writes_are_recovered_and_live_ones_left_alone() {
        let dir = std::env::temp_dir().join(format!("starling-recover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let gone = u32::MAX - 7; // no process has this id
        let folder = |name: &str, text: &str| {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("f"), text).unwrap();
        };
        folder(&format!(".model.old-{gone}"), "previous");
        folder(&format!(".model.tmp-{gone}"), "half");
        folder(".step-1.tmp-1", "in use"); // process 1 runs
        std::fs::write(dir.join(format!(".notes.old-{gone}")), "the user's").unwrap();
        std::fs::write(dir.join(format!(".metrics.jsonl.tmp-{gone}")), "torn").unwrap();
        remove_interrupted_writes(&dir, &|n| n == "model" || n == "metrics.jsonl" || n.starts_with("step-"));
        assert_eq!(std::fs::read_to_string(dir.join("model/f")).unwrap(), "previous");
        let left: Vec<String> = names(&dir).into_iter().collect();
        assert_eq!(left, [format!(".notes.old-{gone}"), ".step-1.tmp-1".to_string(), "model".to_string()]);

        folder(&format!(".model.old-{gone}"), "superseded");
        write_folder_atomic(&dir.join("model"), &[("f".into(), b"new".to_vec())]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("model/f")).unwrap(), "new");
        assert!(!names(&dir).iter().any(|n| n.starts_with(".model.")), "{:?}", names(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
