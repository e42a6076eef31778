//! Builds a `tokenizers` tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file:
//! byte-level BPE (`gpt2` model: SmolLM2, Llama 3, Qwen2) and SentencePiece BPE (`llama` model:
//! Llama 2, Mistral). The result is an ordinary `tokenizer.json`, so it can be saved beside a
//! model converted from GGUF.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::gguf::{GgufFile, MetaValue};
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;

/// GGML token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// Pre-tokenizer regexes of llama.cpp's `tokenizer.ggml.pre` types that differ from GPT-2's.
fn pre_tokenizer(pre: &str) -> Value {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    match pre {
        // SmolLM: every digit on its own, then GPT-2 splitting.
        "smollm" => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        "llama3" | "llama-bpe" | "dbrx" | "smaug-bpe" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        "qwen2" | "deepseek-llm" => json!({"type": "Sequence", "pretokenizers": [
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
            byte_level(false)]}),
        _ => byte_level(true),
    }
}

fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>> {
    let arr = file.metadata.get(key).and_then(MetaValue::as_array).ok_or_else(|| {
        ModelError::format(&file.path, format!("metadata `{key}` is missing; the file has no tokenizer"))
    })?;
    arr.iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| ModelError::format(&file.path, format!("metadata `{key}` is not a list of strings")))
}

/// The tokenizer stored in a GGUF file's metadata.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let meta = |k: &str| file.metadata.get(&format!("tokenizer.ggml.{k}"));
    let model = meta("model").and_then(MetaValue::as_str).unwrap_or("");
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let types: Vec<u64> = meta("token_type")
        .and_then(MetaValue::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(ModelError::format(
            &file.path,
            format!(
                "metadata `tokenizer.ggml.token_type` has {} entries for {} tokens: corrupt tokenizer",
                types.len(),
                tokens.len()
            ),
        ));
    }
    let special_ids: Vec<u32> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(**t, TOKEN_CONTROL | TOKEN_USER_DEFINED))
        .map(|(i, _)| i as u32)
        .collect();
    let added: Vec<Value> = special_ids
        .iter()
        .map(|&id| {
            json!({"id": id, "content": tokens[id as usize], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": types[id as usize] == TOKEN_CONTROL})
        })
        .collect();
    let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let bos = meta("bos_token_id").and_then(MetaValue::as_u64);
    if let Some(bos) = bos.filter(|&b| b >= tokens.len() as u64) {
        return Err(ModelError::format(
            &file.path,
            format!(
                "metadata `tokenizer.ggml.bos_token_id` is {bos}, outside the {} tokens: corrupt tokenizer",
                tokens.len()
            ),
        ));
    }
    let add_bos = meta("add_bos_token").and_then(|v| match v {
        MetaValue::Bool(b) => Some(*b),
        _ => None,
    });

    let (normalizer, pre, decoder, bpe, default_add_bos) = match model {
        "gpt2" => {
            let merges = strings(file, "tokenizer.ggml.merges")?;
            let merges: Vec<Value> = merges
                .iter()
                .map(|m| {
                    let (a, b) = m.split_once(' ').unwrap_or((m, ""));
                    json!([a, b])
                })
                .collect();
            let pre_type = meta("pre").and_then(MetaValue::as_str).unwrap_or("default");
            let bpe = json!({"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges});
            let decoder =
                json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
            (Value::Null, pre_tokenizer(pre_type), decoder, bpe, false)
        }
        "llama" => {
            let scores: Vec<f64> = meta("scores")
                .and_then(MetaValue::as_array)
                .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect())
                .unwrap_or_else(|| vec![0.0; tokens.len()]);
            let merges = sentencepiece_merges(&tokens, &scores);
            let unk = meta("unknown_token_id").and_then(MetaValue::as_u64).unwrap_or(0) as usize;
            let bpe = json!({"type": "BPE", "dropout": null, "unk_token": tokens.get(unk),
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": merges});
            let normalizer = json!({"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]});
            let decoder = json!({"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
            (normalizer, Value::Null, decoder, bpe, true)
        }
        other => {
            return Err(ModelError::UnsupportedTokenizer { path: file.path.clone(), model: other.to_string() });
        }
    };
    let post = match (add_bos.unwrap_or(default_add_bos), bos) {
        (true, Some(bos)) => {
            let bos_tok = &tokens[bos as usize];
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos_tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos_tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos_tok.clone(): {"id": bos_tok, "ids": [bos], "tokens": [bos_tok]}}})
        }
        _ => Value::Null,
    };
    let json = json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post, "decoder": decoder, "model": bpe});
    Tokenizer::from_json(&json.to_string()).map_err(|e| ModelError::format(&file.path, e.to_string()))
}

/// BPE merges equivalent to a SentencePiece model's scores: a pair may merge when its
/// concatenation is a piece, and pairs whose result scores higher merge first.
fn sentencepiece_merges(tokens: &[String], scores: &[f64]) -> Vec<Value> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize)> = Vec::new();
    for (merged_id, piece) in tokens.iter().enumerate() {
        for (split, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(split);
            if let (Some(&ia), Some(&ib)) = (ids.get(a), ids.get(b)) {
                merges.push((scores.get(merged_id).copied().unwrap_or(0.0), merged_id, ia, ib));
            }
        }
    }
    merges.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    merges.into_iter().map(|(_, _, a, b)| json!([tokens[a], tokens[b]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::FileBytes;
    use crate::checkpoint::gguf::write_gguf;

    fn strs(v: &[&str]) -> MetaValue {
        MetaValue::Array(v.iter().map(|s| MetaValue::Str(s.to_string())).collect())
    }

    #[test]
    fn sentencepiece_tokenizer_from_metadata() {
        let tokens = ["<unk>", "<s>", "</s>", "▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "llo", "▁hello", "<0x21>"];
        let scores: Vec<MetaValue> = (0..tokens.len()).map(|i| MetaValue::F64(-(i as f64))).collect();
        let types: Vec<MetaValue> =
            [2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 6].iter().map(|&t| MetaValue::U64(t)).collect();
        let bytes = write_gguf(
            &[
                ("tokenizer.ggml.model", MetaValue::Str("llama".into())),
                ("tokenizer.ggml.tokens", strs(&tokens)),
                ("tokenizer.ggml.scores", MetaValue::Array(scores)),
                ("tokenizer.ggml.token_type", MetaValue::Array(types)),
                ("tokenizer.ggml.bos_token_id", MetaValue::U64(1)),
            ],
            &[],
        );
        let file = GgufFile::parse("spm.gguf".into(), FileBytes::Owned(bytes)).unwrap();
        let t = tokenizer_from_gguf(&file).unwrap();
        let ids = t.encode("hello!", true).unwrap();
        // BOS, then "▁hello", then "!" through byte fallback.
        assert_eq!(ids, vec![1, 12, 13]);
        assert_eq!(t.decode(&ids, true).unwrap(), "hello!");
    }

    #[test]
    fn missing_tokenizer_is_explained() {
        let bytes = write_gguf(&[("tokenizer.ggml.model", MetaValue::Str("gpt2".into()))], &[]);
        let file = GgufFile::parse("m.gguf".into(), FileBytes::Owned(bytes)).unwrap();
        let err = tokenizer_from_gguf(&file).unwrap_err().to_string();
        assert!(err.contains("tokenizer.ggml.tokens") && err.starts_with("m.gguf"), "{err}");
    }
}
