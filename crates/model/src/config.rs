//! The model description: one serde struct for every decoder in the Llama family.
//!
//! `ModelConfig` is Starling's own format (what `starling` writes beside a trained model, inside
//! `config.json` under the key `starling`), and it can also be read from a Hugging Face
//! `config.json` (Llama, Mistral, Qwen2, SmolLM2) or derived from GGUF metadata.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ModelError, Result};

/// Architecture of a decoder-only transformer of the Llama family: RoPE, RMSNorm, SwiGLU MLP,
/// grouped-query attention, tied or untied embeddings, optional projection biases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Longest sequence (prompt + generated tokens) the model accepts.
    pub max_position_embeddings: usize,
    /// The LM head shares the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v projections (Qwen2 has it, Llama does not).
    #[serde(default)]
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    #[serde(default)]
    pub o_bias: bool,
    /// Bias on gate/up/down projections.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral-style sliding-window attention: a query sees at most this many keys.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// A small model for the built-in tasks (character-level vocabulary): 4 layers, width 128,
    /// 4 query heads sharing 2 key/value heads. [`ModelConfig::builder`] sizes it otherwise.
    pub fn tiny(vocab_size: usize) -> Self {
        Self::builder(vocab_size).build().expect("the default small config is valid")
    }

    /// A from-scratch model's config, sized step by step: `ModelConfig::builder(v).layers(2)
    /// .hidden(64).heads(4, 2).build()`. Unset sizes are [`ModelConfig::tiny`]'s.
    pub fn builder(vocab_size: usize) -> ConfigBuilder {
        ConfigBuilder {
            config: Self {
                vocab_size,
                hidden_size: 128,
                intermediate_size: 384,
                num_layers: 4,
                num_heads: 4,
                num_kv_heads: 2,
                head_dim: 32,
                rms_norm_eps: 1e-5,
                rope_theta: 10_000.0,
                max_position_embeddings: 512,
                tie_word_embeddings: true,
                qkv_bias: false,
                o_bias: false,
                mlp_bias: false,
                sliding_window: None,
                bos_token_id: None,
                eos_token_id: None,
                pad_token_id: None,
            },
            ffn: None,
        }
    }

    /// Checks the invariants the model code relies on, so that a bad config fails here with a
    /// message instead of as a shape panic deep inside a forward pass.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(ModelError::Config(msg));
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return fail("vocab_size, hidden_size and num_layers must be positive".into());
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return fail("num_heads, num_kv_heads and head_dim must be positive".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return fail(format!(
                "num_heads ({}) must be a multiple of num_kv_heads ({}) for grouped-query attention",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return fail(format!("head_dim ({}) must be even for RoPE", self.head_dim));
        }
        if !(self.rope_theta > 0.0) || !(self.rms_norm_eps > 0.0) {
            return fail("rope_theta and rms_norm_eps must be positive".into());
        }
        if self.max_position_embeddings == 0 {
            return fail("max_position_embeddings must be positive".into());
        }
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return fail(format!("{name} {id} is outside the vocabulary ({})", self.vocab_size));
            }
        }
        Ok(())
    }

    /// The id that fills padded slots: the model's pad token, else its EOS, else 0. Padded slots
    /// are masked out of attention and losses, so any id in the vocabulary would do; this is the
    /// one choice every batch maker uses.
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id.or(self.eos_token_id).unwrap_or(0)
    }

    pub fn kv_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Number of scalar parameters (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let attn =
            d * q + 2 * d * kv + q * d + if self.qkv_bias { q + 2 * kv } else { 0 } + if self.o_bias { d } else { 0 };
        let mlp = 3 * d * self.intermediate_size + if self.mlp_bias { 2 * self.intermediate_size + d } else { 0 };
        let layer = attn + mlp + 2 * d;
        let embed = self.vocab_size * d;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + head + self.num_layers * layer + d
    }

    /// Reads a Hugging Face `config.json` (Llama, Mistral, Qwen2 and SmolLM2 checkpoints), or
    /// Starling's own format when the file carries a `starling` key.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| ModelError::Config(format!("config.json is not valid JSON: {e}")))?;
        if let Some(own) = v.get("starling") {
            let cfg: ModelConfig = serde_json::from_value(own.clone())
                .map_err(|e| ModelError::Config(format!("the `starling` section is malformed: {e}")))?;
            cfg.validate()?;
            return Ok(cfg);
        }
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("llama");
        if !matches!(model_type, "llama" | "mistral" | "qwen2") {
            return Err(ModelError::Config(format!(
                "model_type `{model_type}` is not supported; Starling loads Llama-family decoders \
                 (llama, mistral, qwen2)"
            )));
        }
        let act = v.get("hidden_act").and_then(Value::as_str).unwrap_or("silu");
        if act != "silu" {
            return Err(ModelError::Config(format!("hidden_act `{act}` is not supported (the SwiGLU MLP uses silu)")));
        }
        let usize_field = |name: &str| -> Result<usize> {
            v.get(name)
                .and_then(Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| ModelError::Config(format!("config.json lacks the integer field `{name}`")))
        };
        let hidden_size = usize_field("hidden_size")?;
        let num_heads = usize_field("num_attention_heads")?;
        let num_kv_heads =
            v.get("num_key_value_heads").and_then(Value::as_u64).map(|x| x as usize).unwrap_or(num_heads);
        let head_dim =
            v.get("head_dim").and_then(Value::as_u64).map(|x| x as usize).unwrap_or(hidden_size / num_heads.max(1));
        // transformers >= 5 nests RoPE settings under `rope_parameters`; older files use
        // `rope_theta` and `rope_scaling` at the top level.
        let rope = v.get("rope_parameters").or_else(|| v.get("rope_scaling")).filter(|r| !r.is_null());
        if let Some(kind) = rope.and_then(|r| r.get("rope_type").or_else(|| r.get("type"))).and_then(Value::as_str)
            && kind != "default"
        {
            return Err(ModelError::Config(format!("rope_type `{kind}` is not supported yet (only the default RoPE)")));
        }
        let rope_theta = rope
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| v.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10_000.0);
        let bool_field = |name: &str| v.get(name).and_then(Value::as_bool);
        let attention_bias = bool_field("attention_bias").unwrap_or(false);
        let qkv_bias = model_type == "qwen2" || attention_bias;
        let id_field = |name: &str| -> Option<u32> {
            match v.get(name) {
                Some(Value::Number(n)) => n.as_u64().map(|x| x as u32),
                // Some configs list several EOS ids; the first is the canonical one.
                Some(Value::Array(a)) => a.first().and_then(Value::as_u64).map(|x| x as u32),
                _ => None,
            }
        };
        let use_sliding = bool_field("use_sliding_window").unwrap_or(model_type == "mistral");
        let cfg = ModelConfig {
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size: usize_field("intermediate_size")?,
            num_layers: usize_field("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: v.get("rms_norm_eps").and_then(Value::as_f64).unwrap_or(1e-6),
            rope_theta,
            max_position_embeddings: usize_field("max_position_embeddings")?,
            tie_word_embeddings: bool_field("tie_word_embeddings").unwrap_or(false),
            qkv_bias,
            o_bias: attention_bias,
            mlp_bias: bool_field("mlp_bias").unwrap_or(false),
            sliding_window: if use_sliding {
                v.get("sliding_window").and_then(Value::as_u64).map(|x| x as usize)
            } else {
                None
            },
            bos_token_id: id_field("bos_token_id"),
            eos_token_id: id_field("eos_token_id"),
            pad_token_id: id_field("pad_token_id"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// A Hugging Face `config.json` that transformers loads as `LlamaForCausalLM` (or
    /// `Qwen2ForCausalLM` when the q/k/v projections carry a bias). Starling's own config is kept
    /// under the `starling` key so that a round trip is exact.
    pub fn to_hf_json(&self) -> Value {
        let qwen = self.qkv_bias && !self.o_bias;
        let mut v = serde_json::json!({
            "architectures": [if qwen { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
            "model_type": if qwen { "qwen2" } else { "llama" },
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.o_bias,
            "mlp_bias": self.mlp_bias,
            "torch_dtype": "float32",
            "starling": self,
        });
        if let Some(w) = self.sliding_window {
            v["sliding_window"] = w.into();
            v["use_sliding_window"] = true.into();
        }
        for (key, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
            ("pad_token_id", self.pad_token_id),
        ] {
            if let Some(id) = id {
                v[key] = id.into();
            }
        }
        v
    }
}

/// Builds a from-scratch [`ModelConfig`] (see [`ModelConfig::builder`]). The head size follows
/// from the width and the query heads; the MLP is 3× the width unless [`ConfigBuilder::ffn`] says.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: ModelConfig,
    ffn: Option<usize>,
}

impl ConfigBuilder {
    pub fn layers(mut self, n: usize) -> Self {
        self.config.num_layers = n;
        self
    }

    /// The model width (hidden size).
    pub fn hidden(mut self, d: usize) -> Self {
        self.config.hidden_size = d;
        self
    }

    /// Query heads and key/value heads (grouped-query attention when fewer).
    pub fn heads(mut self, query: usize, key_value: usize) -> Self {
        self.config.num_heads = query;
        self.config.num_kv_heads = key_value;
        self
    }

    /// The SwiGLU MLP's inner width.
    pub fn ffn(mut self, width: usize) -> Self {
        self.ffn = Some(width);
        self
    }

    /// The longest sequence the model accepts.
    pub fn context(mut self, tokens: usize) -> Self {
        self.config.max_position_embeddings = tokens;
        self
    }

    pub fn qkv_bias(mut self, on: bool) -> Self {
        self.config.qkv_bias = on;
        self
    }

    /// The end-of-text and padding ids: the tokenizer's `<eos>` and `<pad>` tokens, where it has them.
    pub fn special_tokens(mut self, tokenizer: &crate::Tokenizer) -> Self {
        self.config.eos_token_id = tokenizer.token_to_id("<eos>");
        self.config.pad_token_id = tokenizer.token_to_id("<pad>");
        self
    }

    /// The config, checked (see [`ModelConfig::validate`]).
    pub fn build(self) -> Result<ModelConfig> {
        let mut c = self.config;
        if c.num_heads == 0 || !c.hidden_size.is_multiple_of(c.num_heads) {
            return Err(ModelError::Config(format!(
                "the width {} must be a positive multiple of the {} query heads",
                c.hidden_size, c.num_heads
            )));
        }
        c.head_dim = c.hidden_size / c.num_heads;
        c.intermediate_size = self.ffn.unwrap_or(3 * c.hidden_size);
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = r#"{
      "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1,
      "eos_token_id": 2, "head_dim": 64, "hidden_act": "silu", "hidden_size": 576,
      "intermediate_size": 1536, "max_position_embeddings": 8192, "mlp_bias": false,
      "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 4,
      "num_key_value_heads": 3, "pad_token_id": 2, "rms_norm_eps": 9.999999747378752e-06,
      "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
      "tie_word_embeddings": true, "vocab_size": 49152 }"#;

    #[test]
    fn builder_derives_head_size_and_mlp_width() {
        let c = ModelConfig::builder(30).layers(2).hidden(96).heads(6, 2).context(64).build().unwrap();
        assert_eq!((c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads), (2, 96, 6, 2));
        assert_eq!((c.head_dim, c.intermediate_size, c.max_position_embeddings), (16, 288, 64));
        assert_eq!(ModelConfig::builder(30).ffn(100).build().unwrap().intermediate_size, 100);
        assert_eq!(ModelConfig::tiny(30), ModelConfig::builder(30).build().unwrap());
        let err = ModelConfig::builder(30).hidden(100).heads(3, 1).build().unwrap_err().to_string();
        assert!(err.contains("multiple of the 3 query heads"), "{err}");
        assert!(ModelConfig::builder(30).heads(4, 3).build().is_err(), "4 query heads cannot share 3 kv heads");
    }

    #[test]
    fn reads_transformers5_llama_config() {
        let c = ModelConfig::from_hf_json(SMOLLM2).unwrap();
        assert_eq!(c.num_layers, 4);
        assert_eq!(c.kv_groups(), 3);
        assert_eq!(c.rope_theta, 100000.0);
        assert!(c.tie_word_embeddings && !c.qkv_bias);
        assert_eq!(c.eos_token_id, Some(2));
    }

    #[test]
    fn parameter_count_matches_smollm2() {
        let mut c = ModelConfig::from_hf_json(SMOLLM2).unwrap();
        assert_eq!(c.num_parameters(), 42_472_512);
        c.num_layers = 30;
        assert_eq!(c.num_parameters(), 134_515_008);
    }

    #[test]
    fn reads_qwen2_and_mistral_styles() {
        let qwen = r#"{"model_type":"qwen2","hidden_size":896,"num_attention_heads":14,
            "num_key_value_heads":2,"intermediate_size":4864,"num_hidden_layers":24,
            "vocab_size":151936,"max_position_embeddings":32768,"rope_theta":1000000.0,
            "rms_norm_eps":1e-6,"tie_word_embeddings":true,"sliding_window":32768,
            "use_sliding_window":false,"eos_token_id":151643}"#;
        let c = ModelConfig::from_hf_json(qwen).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.sliding_window, None);
        let mistral = r#"{"model_type":"mistral","hidden_size":4096,"num_attention_heads":32,
            "num_key_value_heads":8,"intermediate_size":14336,"num_hidden_layers":32,
            "vocab_size":32000,"max_position_embeddings":32768,"rope_theta":10000.0,
            "rms_norm_eps":1e-5,"tie_word_embeddings":false,"sliding_window":4096}"#;
        let c = ModelConfig::from_hf_json(mistral).unwrap();
        assert_eq!(c.sliding_window, Some(4096));
        assert_eq!(c.num_parameters(), 7_241_732_096);
    }

    #[test]
    fn round_trips_through_hf_json() {
        let c = ModelConfig::tiny(40);
        let text = serde_json::to_string(&c.to_hf_json()).unwrap();
        assert_eq!(ModelConfig::from_hf_json(&text).unwrap(), c);
    }

    #[test]
    fn rejects_bad_configs_with_a_reason() {
        let err = ModelConfig::from_hf_json(r#"{"model_type":"gpt_neox"}"#).unwrap_err();
        assert!(err.to_string().contains("gpt_neox"));
        let err =
            ModelConfig::from_hf_json(&SMOLLM2.replace("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4"))
                .unwrap_err();
        assert!(err.to_string().contains("multiple of num_kv_heads"), "{err}");
        let err = ModelConfig::from_hf_json("{not json").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"));
    }
}
