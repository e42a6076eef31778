//! GGUF files (llama.cpp's format): a small, bounds-checked reader of the header, metadata and
//! tensor table, plus the mapping of llama.cpp tensor names and layouts to Hugging Face ones.
//!
//! No published crate both reads GGUF v2/v3 robustly and dequantizes k-quants, so this reader is
//! Starling's own; it is tested on the real SmolLM2 file and on hand-built files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::quant::{GgmlType, dequantize};
use super::{FileBytes, HostTensor, WeightSource};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U64(v) => Some(v),
            MetaValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F64(v) => Some(v),
            MetaValue::U64(v) => Some(v as f64),
            MetaValue::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
    /// A short rendering for `starling info` (arrays summarised).
    pub fn summary(&self) -> String {
        match self {
            MetaValue::U64(v) => v.to_string(),
            MetaValue::I64(v) => v.to_string(),
            MetaValue::F64(v) => v.to_string(),
            MetaValue::Bool(v) => v.to_string(),
            MetaValue::Str(s) if s.len() > 80 => format!("{:?}…", &s[..s.floor_char_boundary(80)]),
            MetaValue::Str(s) => format!("{s:?}"),
            MetaValue::Array(a) => format!("[{} items]", a.len()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GgufTensorInfo {
    pub name: String,
    /// Shape in PyTorch order (outermost first); GGUF stores it innermost first.
    pub shape: Vec<usize>,
    pub ty: GgmlType,
    /// Byte range in the file.
    pub start: usize,
    pub len: usize,
}

/// A parsed GGUF file. Tensor data stays in the (memory-mapped) bytes until loaded.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: BTreeMap<String, GgufTensorInfo>,
    /// Tensors whose type Starling cannot decode: name → reason.
    pub unsupported: BTreeMap<String, String>,
    bytes: FileBytes,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.at.checked_add(n).is_none_or(|end| end > self.b.len()) {
            return Err(ModelError::format(
                self.path,
                format!("GGUF header ends early at byte {} (file truncated or not GGUF)", self.at),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64()?;
        // Nothing in a GGUF header legitimately needs more entries than the file has bytes.
        if n > self.b.len() as u64 {
            return Err(ModelError::format(self.path, format!("implausible {what} length {n}: corrupt GGUF header")));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len("string")?;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| ModelError::format(self.path, "a GGUF string is not UTF-8: corrupt header"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U64(self.take(1)?[0] as u64),
            1 => MetaValue::I64(self.take(1)?[0] as i8 as i64),
            2 => MetaValue::U64(u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as u64),
            3 => MetaValue::I64(i16::from_le_bytes(self.take(2)?.try_into().unwrap()) as i64),
            4 => MetaValue::U64(self.u32()? as u64),
            5 => MetaValue::I64(self.u32()? as i32 as i64),
            6 => MetaValue::F64(f32::from_le_bytes(self.take(4)?.try_into().unwrap()) as f64),
            7 => MetaValue::Bool(self.take(1)?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 if depth < 4 => {
                let inner = self.u32()?;
                let n = self.len("array")?;
                let mut items = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    items.push(self.value(inner, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(self.u64()? as i64),
            12 => MetaValue::F64(f64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            other => {
                return Err(ModelError::format(
                    self.path,
                    format!("unknown GGUF metadata type {other}: corrupt header"),
                ));
            }
        })
    }
}

impl GgufFile {
    pub fn parse(path: PathBuf, bytes: FileBytes) -> Result<Self> {
        let mut c = Cursor { b: &bytes, at: 0, path: &path };
        if bytes.len() < 4 || &bytes[0..4] != b"GGUF" {
            return Err(ModelError::format(&path, "not a GGUF file (missing the `GGUF` magic bytes)"));
        }
        c.at = 4;
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::format(
                &path,
                format!("GGUF version {version} is not supported (versions 2 and 3 are)"),
            ));
        }
        let n_tensors = c.len("tensor count")?;
        let n_kv = c.len("metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::with_capacity(n_tensors.min(1 << 16));
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()? as usize;
            if n_dims > 8 {
                return Err(ModelError::format(
                    &path,
                    format!("tensor `{name}` has {n_dims} dimensions: corrupt header"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(c.u64()? as usize);
            }
            let ty = c.u32()?;
            let offset = c.u64()? as usize;
            dims.reverse();
            infos.push((name, dims, ty, offset));
        }
        let alignment = metadata.get("general.alignment").and_then(MetaValue::as_u64).unwrap_or(32).max(1) as usize;
        let data_start = c.at.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        let mut unsupported = BTreeMap::new();
        for (name, shape, ty_id, offset) in infos {
            let Some(n) = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
                return Err(ModelError::format(
                    &path,
                    format!("tensor `{name}` claims shape {shape:?}, more values than can exist: corrupt header"),
                ));
            };
            let ty = match GgmlType::from_id(ty_id) {
                Ok(ty) => ty,
                Err(why) => {
                    unsupported.insert(name, why);
                    continue;
                }
            };
            let len = ty.bytes_for(n).ok_or_else(|| {
                ModelError::format(
                    &path,
                    format!("tensor `{name}` has {n} values: not a whole number of {ty:?} blocks, or more bytes than can exist"),
                )
            })?;
            let start = data_start.checked_add(offset);
            if let Some(start) = start.filter(|s| s.checked_add(len).is_some_and(|end| end <= bytes.len())) {
                tensors.insert(name.clone(), GgufTensorInfo { name, shape, ty, start, len });
            } else {
                return Err(ModelError::format(
                    &path,
                    format!("tensor `{name}` extends past the end of the file; the file is truncated"),
                ));
            }
        }
        Ok(Self { path, version, metadata, tensors, unsupported, bytes })
    }

    pub fn architecture(&self) -> &str {
        self.metadata.get("general.architecture").and_then(MetaValue::as_str).unwrap_or("")
    }

    fn arch_key(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(&format!("{}.{key}", self.architecture()))
    }

    /// Raw f32 values of a tensor in GGUF layout (before name mapping / permutation).
    pub fn dequantize(&self, name: &str) -> Result<HostTensor> {
        if let Some(why) = self.unsupported.get(name) {
            return Err(ModelError::format(
                &self.path,
                format!(
                    "tensor `{name}` is stored as {why}, which Starling cannot dequantize; supported \
                     types are F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K — use a GGUF \
                     quantized to one of those (e.g. Q4_K_M or Q8_0)"
                ),
            ));
        }
        let info = self.tensors.get(name).ok_or_else(|| ModelError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            hint: "the GGUF file does not have it".into(),
        })?;
        let data = dequantize(info.ty, &self.bytes[info.start..info.start + info.len]);
        Ok(HostTensor::new(info.shape.clone(), data))
    }

    /// The model config described by the metadata (Llama-family architectures).
    pub fn model_config(&self) -> Result<ModelConfig> {
        let arch = self.architecture().to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(ModelError::format(
                &self.path,
                format!("architecture `{arch}` is not supported; Starling loads llama, mistral and qwen2 GGUF files"),
            ));
        }
        let need = |key: &str| -> Result<usize> {
            self.arch_key(key)
                .and_then(MetaValue::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| ModelError::format(&self.path, format!("metadata `{arch}.{key}` is missing")))
        };
        let hidden_size = need("embedding_length")?;
        let num_heads = need("attention.head_count")?;
        let num_kv_heads = self
            .arch_key("attention.head_count_kv")
            .and_then(MetaValue::as_u64)
            .map(|v| v as usize)
            .unwrap_or(num_heads);
        let head_dim = self
            .arch_key("attention.key_length")
            .and_then(MetaValue::as_u64)
            .map(|v| v as usize)
            .unwrap_or(hidden_size / num_heads.max(1));
        let embed = self.tensors.get("token_embd.weight").map(|t| t.shape.clone()).ok_or_else(|| {
            ModelError::MissingTensor {
                path: self.path.clone(),
                name: "token_embd.weight".into(),
                hint: "every llama GGUF has it; the file is damaged".into(),
            }
        })?;
        let token_id = |key: &str| {
            self.metadata.get(&format!("tokenizer.ggml.{key}")).and_then(MetaValue::as_u64).map(|v| v as u32)
        };
        let has_bias = self.tensors.contains_key("blk.0.attn_q.bias");
        let vocab_size = *embed.first().ok_or_else(|| {
            ModelError::format(&self.path, "tensor `token_embd.weight` has no dimensions: corrupt header")
        })?;
        let cfg = ModelConfig {
            vocab_size,
            hidden_size,
            intermediate_size: need("feed_forward_length")?,
            num_layers: need("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.arch_key("attention.layer_norm_rms_epsilon").and_then(MetaValue::as_f64).unwrap_or(1e-5),
            rope_theta: self.arch_key("rope.freq_base").and_then(MetaValue::as_f64).unwrap_or(10_000.0),
            max_position_embeddings: need("context_length")?,
            tie_word_embeddings: !self.tensors.contains_key("output.weight"),
            qkv_bias: has_bias,
            o_bias: self.tensors.contains_key("blk.0.attn_output.bias"),
            mlp_bias: false,
            sliding_window: None,
            bos_token_id: token_id("bos_token_id"),
            eos_token_id: token_id("eos_token_id"),
            pad_token_id: token_id("padding_token_id"),
        };
        cfg.validate().map_err(|e| ModelError::format(&self.path, e.to_string()))?;
        Ok(cfg)
    }
}

/// Hugging Face name of a llama.cpp tensor name, or `None` for tensors Starling does not use
/// (e.g. precomputed RoPE frequencies).
pub fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, leaf) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = leaf.rsplit_once('.')?;
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's reordering of Q/K projection rows. Its converter interleaves the two
/// halves of each head (for GPT-J-style RoPE); Hugging Face Llama rotates halves, so the rows of
/// each head go back from `[h, d/2, 2]` to `[h, 2, d/2]` order. Works for weights (`[out, in]`)
/// and biases (`[out]`) whose rows are `n_heads` heads of an even size.
pub fn unpermute_rows(t: &HostTensor, n_heads: usize) -> HostTensor {
    let rows = t.shape[0];
    let cols: usize = t.shape[1..].iter().product();
    let head = rows / n_heads;
    let half = head / 2;
    let mut out = vec![0f32; t.data.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head + i * 2 + j;
                let dst = h * head + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor::new(t.shape.clone(), out)
}

/// A GGUF file seen through Hugging Face names and layouts.
pub struct GgufSource {
    pub file: GgufFile,
    config: ModelConfig,
    /// HF name → GGUF name.
    names: BTreeMap<String, String>,
}

impl GgufSource {
    pub fn new(file: GgufFile) -> Result<Self> {
        let config = file.model_config()?;
        let names = file
            .tensors
            .keys()
            .chain(file.unsupported.keys())
            .filter_map(|g| hf_name(g).map(|h| (h, g.clone())))
            .collect();
        Ok(Self { file, config, names })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
}

impl WeightSource for GgufSource {
    fn origin(&self) -> &Path {
        &self.file.path
    }

    fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.file.tensors.get(self.names.get(name)?).map(|t| t.shape.clone())
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let gguf_name = self.names.get(name).ok_or_else(|| ModelError::MissingTensor {
            path: self.file.path.clone(),
            name: name.to_string(),
            hint: "the GGUF file has no matching llama.cpp tensor".into(),
        })?;
        let t = self.file.dequantize(gguf_name)?;
        // Only llama-architecture files are converted with the Q/K row interleave; qwen2 uses
        // the rotate-half RoPE natively and is stored unpermuted.
        let permuted = matches!(self.file.architecture(), "llama" | "mistral");
        let heads = if name.contains(".q_proj.") {
            self.config.num_heads
        } else if name.contains(".k_proj.") {
            self.config.num_kv_heads
        } else {
            return Ok(t);
        };
        if !permuted {
            return Ok(t);
        }
        let rows = t.shape.first().copied().unwrap_or(0);
        if heads == 0 || rows == 0 || !rows.is_multiple_of(2 * heads) {
            return Err(ModelError::format(
                &self.file.path,
                format!(
                    "tensor `{gguf_name}` has shape {:?}: its rows are not {heads} heads of an even size; the file is damaged",
                    t.shape
                ),
            ));
        }
        Ok(unpermute_rows(&t, heads))
    }
}

/// Writes a GGUF v3 file (tests and the fuzz seeds build small files with it; not a
/// general-purpose writer).
pub fn write_gguf(metadata: &[(&str, MetaValue)], tensors: &[(&str, GgmlType, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn put_value(out: &mut Vec<u8>, v: &MetaValue, with_type: bool) {
        let (ty, body): (u32, Vec<u8>) = match v {
            MetaValue::U64(x) => (10, x.to_le_bytes().to_vec()),
            MetaValue::I64(x) => (11, x.to_le_bytes().to_vec()),
            MetaValue::F64(x) => (12, x.to_le_bytes().to_vec()),
            MetaValue::Bool(x) => (7, vec![*x as u8]),
            MetaValue::Str(s) => {
                let mut b = Vec::new();
                put_str(&mut b, s);
                (8, b)
            }
            MetaValue::Array(items) => {
                let mut b = Vec::new();
                let inner = match items.first() {
                    Some(MetaValue::Str(_)) => 8u32,
                    Some(MetaValue::I64(_)) => 11,
                    Some(MetaValue::F64(_)) => 12,
                    _ => 10,
                };
                b.extend(inner.to_le_bytes());
                b.extend((items.len() as u64).to_le_bytes());
                for it in items {
                    put_value(&mut b, it, false);
                }
                (9, b)
            }
        };
        if with_type {
            out.extend(ty.to_le_bytes());
        }
        out.extend(body);
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut out, k);
        put_value(&mut out, v, true);
    }
    let type_id = |t: GgmlType| -> u32 { (0..64).find(|&i| GgmlType::from_id(i) == Ok(t)).unwrap() };
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for (name, ty, shape, data) in tensors {
        put_str(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(type_id(*ty).to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offsets.push(offset);
        offset = (offset + data.len()).div_ceil(32) * 32;
    }
    let start = out.len().div_ceil(32) * 32;
    out.resize(start, 0);
    for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
        out.resize(start + off, 0);
        out.extend(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn parses_a_hand_built_file() {
        let bytes = write_gguf(
            &[
                ("general.architecture", MetaValue::Str("llama".into())),
                ("general.name", MetaValue::Str("test".into())),
                (
                    "tokenizer.ggml.tokens",
                    MetaValue::Array(vec![MetaValue::Str("a".into()), MetaValue::Str("b".into())]),
                ),
            ],
            &[
                ("x", GgmlType::F32, vec![2, 3], f32_bytes(&[1., 2., 3., 4., 5., 6.])),
                ("y", GgmlType::F32, vec![1], f32_bytes(&[7.])),
            ],
        );
        let f = GgufFile::parse("t.gguf".into(), FileBytes::Owned(bytes)).unwrap();
        assert_eq!(f.architecture(), "llama");
        assert_eq!(f.metadata["tokenizer.ggml.tokens"].as_array().unwrap().len(), 2);
        let x = f.dequantize("x").unwrap();
        assert_eq!(x.shape, vec![2, 3]);
        assert_eq!(x.data, vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(f.dequantize("y").unwrap().data, vec![7.]);
    }

    #[test]
    fn corrupt_and_truncated_files_are_errors() {
        let err = GgufFile::parse("a.bin".into(), FileBytes::Owned(b"PK\x03\x04zip".to_vec())).err().unwrap();
        assert!(err.to_string().contains("not a GGUF file"), "{err}");
        let good = write_gguf(&[], &[("x", GgmlType::F32, vec![64], f32_bytes(&[0.5; 64]))]);
        for cut in [10, 30, good.len() - 8] {
            let err = GgufFile::parse("t.gguf".into(), FileBytes::Owned(good[..cut].to_vec())).err().unwrap();
            let msg = err.to_string();
            assert!(msg.starts_with("t.gguf") && (msg.contains("truncated") || msg.contains("ends early")), "{msg}");
        }
    }

    #[test]
    fn unsupported_quant_type_is_named() {
        let mut bytes = write_gguf(&[], &[("x", GgmlType::F32, vec![256], vec![0; 1024])]);
        // Patch the tensor's type id (after name, n_dims, one dim) to 16 = IQ2_XXS.
        let at = 4 + 4 + 8 + 8 + (8 + 1) + 4 + 8;
        bytes[at..at + 4].copy_from_slice(&16u32.to_le_bytes());
        let f = GgufFile::parse("q.gguf".into(), FileBytes::Owned(bytes)).unwrap();
        let err = f.dequantize("x").unwrap_err().to_string();
        assert!(err.contains("IQ") && err.contains("cannot dequantize"), "{err}");
    }

    #[test]
    fn maps_names_and_unpermutes() {
        assert_eq!(hf_name("blk.3.attn_k.weight").unwrap(), "model.layers.3.self_attn.k_proj.weight");
        assert_eq!(hf_name("blk.0.ffn_norm.weight").unwrap(), "model.layers.0.post_attention_layernorm.weight");
        assert_eq!(hf_name("rope_freqs.weight"), None);
        // One head of 4 rows, interleaved [a0 b0 a1 b1] → halves [a0 a1 b0 b1].
        let t = HostTensor::new(vec![4, 1], vec![0., 10., 1., 11.]);
        assert_eq!(unpermute_rows(&t, 1).data, vec![0., 1., 10., 11.]);
    }
}
