//! Opening a checkpoint from files already in memory — what a browser has after a file picker or
//! a download: a Hugging Face folder's files (`config.json`, `*.safetensors`, `tokenizer.json`)
//! or one `.gguf` file. The same parsers and checks as [`super::files`] on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::gguf::{GgufFile, GgufSource};
use super::gguf_tokenizer::tokenizer_from_gguf;
use super::safetensors::SafetensorsSource;
use super::{Checkpoint, CheckpointFormat, FileBytes};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

/// The base name of a picked file (a folder pick names files `folder/config.json`).
pub fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Opens the checkpoint held by `files` (name, bytes); other files among them are ignored.
pub fn open_from_memory(files: Vec<(String, Vec<u8>)>) -> Result<Checkpoint> {
    let mut by_name: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut full_names: BTreeMap<String, String> = BTreeMap::new();
    for (name, bytes) in files {
        let base = base_name(&name).to_string();
        if let Some(other) = full_names.insert(base.clone(), name.clone()) {
            return Err(ModelError::format(
                PathBuf::from(&name),
                format!("two files are named {base} ({other} and {name}); select the files of one model only"),
            ));
        }
        by_name.insert(base, bytes);
    }
    let ggufs: Vec<String> = by_name.keys().filter(|n| n.to_ascii_lowercase().ends_with(".gguf")).cloned().collect();
    match ggufs.as_slice() {
        [] => open_hf_files(by_name),
        [one] => {
            let bytes = by_name.remove(one).expect("listed");
            let file = GgufFile::parse(PathBuf::from(one), FileBytes::Owned(bytes))?;
            let version = file.version;
            let tokenizer = tokenizer_from_gguf(&file)?;
            let source = GgufSource::new(file)?;
            Ok(Checkpoint {
                path: PathBuf::from(one),
                config: source.config().clone(),
                weights: Box::new(source),
                tokenizer,
                format: CheckpointFormat::Gguf { version },
            })
        }
        many => Err(ModelError::format(
            PathBuf::from(&many[0]),
            format!("{} GGUF files were given ({}); choose one model", many.len(), many.join(", ")),
        )),
    }
}

fn text(name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| ModelError::format(PathBuf::from(name), "is not UTF-8 text"))
}

fn open_hf_files(mut files: BTreeMap<String, Vec<u8>>) -> Result<Checkpoint> {
    let given = files_list(&files);
    let Some(config) = files.remove("config.json") else {
        return Err(ModelError::format(
            PathBuf::from("config.json"),
            format!(
                "missing: a model is a Hugging Face folder's config.json, *.safetensors and tokenizer.json, \
                 or one .gguf file (given: {})",
                given
            ),
        ));
    };
    let config = ModelConfig::from_hf_json(&text("config.json", config)?)
        .map_err(|e| ModelError::format(PathBuf::from("config.json"), e.to_string()))?;
    let Some(tokenizer) = files.remove("tokenizer.json") else {
        return Err(ModelError::format(
            PathBuf::from("tokenizer.json"),
            format!("missing: select it with the model's other files (given: {})", given),
        ));
    };
    let tokenizer = Tokenizer::from_json(&text("tokenizer.json", tokenizer)?)
        .map_err(|e| ModelError::format(PathBuf::from("tokenizer.json"), e.to_string()))?;
    let shards: Vec<String> = match files.remove("model.safetensors.index.json") {
        Some(index) => {
            let v: serde_json::Value =
                serde_json::from_str(&text("model.safetensors.index.json", index)?).map_err(|e| {
                    ModelError::format(PathBuf::from("model.safetensors.index.json"), format!("not valid JSON: {e}"))
                })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
                ModelError::format(PathBuf::from("model.safetensors.index.json"), "has no `weight_map` object")
            })?;
            let named: BTreeSet<String> = map.values().filter_map(|s| s.as_str().map(str::to_string)).collect();
            if let Some(missing) = named.iter().find(|s| !files.contains_key(*s)) {
                return Err(ModelError::format(
                    PathBuf::from("model.safetensors.index.json"),
                    format!("names shard `{missing}`, which was not among the files given; select every shard"),
                ));
            }
            named.into_iter().collect()
        }
        None => files.keys().filter(|n| n.ends_with(".safetensors")).cloned().collect(),
    };
    if shards.is_empty() {
        return Err(ModelError::format(
            PathBuf::from("model.safetensors"),
            format!("missing: no *.safetensors file among the files given ({})", given),
        ));
    }
    let parts =
        shards.iter().map(|n| (PathBuf::from(n), FileBytes::Owned(files.remove(n).expect("present")))).collect();
    let weights = SafetensorsSource::new(PathBuf::from("model.safetensors"), parts)?;
    Ok(Checkpoint {
        path: PathBuf::from("."),
        config,
        weights: Box::new(weights),
        tokenizer,
        format: CheckpointFormat::HfFolder,
    })
}

fn files_list(files: &BTreeMap<String, Vec<u8>>) -> String {
    if files.is_empty() { "no files".into() } else { files.keys().cloned().collect::<Vec<_>>().join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(files: Vec<(&str, &[u8])>) -> String {
        match open_from_memory(files.into_iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect()) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn missing_or_wrong_files_are_named() {
        let e = err(vec![("notes.txt", b"hello")]);
        assert!(e.contains("config.json") && e.contains("notes.txt"), "{e}");
        let e = err(vec![("config.json", b"{not json")]);
        assert!(e.contains("config.json"), "{e}");
        let e = err(vec![("a.gguf", b"GGUF"), ("b.gguf", b"GGUF")]);
        assert!(e.contains("2 GGUF files"), "{e}");
        let e = err(vec![("a/config.json", b"{}"), ("b/config.json", b"{}")]);
        assert!(e.contains("two files are named config.json"), "{e}");
        let e = err(vec![("model.gguf", b"PK\x03\x04 this is a zip")]);
        assert!(e.contains("model.gguf"), "{e}");
    }
}
