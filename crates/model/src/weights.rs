//! Building a [`Transformer`] from checkpoint tensors or from a seeded random init, and reading
//! its parameters back out in Hugging Face naming and layout.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Param;
use burn::nn::{Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::checkpoint::{HostTensor, WeightSource};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::model::{Attention, DecoderLayer, Mlp, Transformer, param};

/// What loading found besides the expected tensors.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Tensors in the checkpoint that the model does not use (e.g. `rotary_emb.inv_freq`).
    pub unused: Vec<String>,
}

/// Every parameter of a config: (HF name, HF shape).
pub fn expected_tensors(c: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, q, kv, ff) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, d])];
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        let mut push = |leaf: &str, shape: Vec<usize>| out.push((format!("{p}.{leaf}"), shape));
        push("input_layernorm.weight", vec![d]);
        push("post_attention_layernorm.weight", vec![d]);
        push("self_attn.q_proj.weight", vec![q, d]);
        push("self_attn.k_proj.weight", vec![kv, d]);
        push("self_attn.v_proj.weight", vec![kv, d]);
        push("self_attn.o_proj.weight", vec![d, q]);
        if c.qkv_bias {
            push("self_attn.q_proj.bias", vec![q]);
            push("self_attn.k_proj.bias", vec![kv]);
            push("self_attn.v_proj.bias", vec![kv]);
        }
        if c.o_bias {
            push("self_attn.o_proj.bias", vec![d]);
        }
        push("mlp.gate_proj.weight", vec![ff, d]);
        push("mlp.up_proj.weight", vec![ff, d]);
        push("mlp.down_proj.weight", vec![d, ff]);
        if c.mlp_bias {
            push("mlp.gate_proj.bias", vec![ff]);
            push("mlp.up_proj.bias", vec![ff]);
            push("mlp.down_proj.bias", vec![d]);
        }
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![c.vocab_size, d]));
    }
    out
}

/// Supplies tensors by HF name and shape; implemented by checkpoints and by random init.
trait TensorProvider {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor>;
}

fn build(c: &ModelConfig, p: &mut dyn TensorProvider, device: &Device) -> Result<Transformer> {
    c.validate()?;
    let (d, q, kv, ff) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size);
    let mut linear = |name: &str, d_in: usize, d_out: usize, bias: bool| -> Result<Linear> {
        // burn stores linear weights as [in, out]; checkpoints hold [out, in].
        let w = p.get(&format!("{name}.weight"), &[d_out, d_in])?.transposed();
        let b = if bias { Some(p.get(&format!("{name}.bias"), &[d_out])?) } else { None };
        Ok(Linear {
            weight: param(&format!("{name}.weight"), TensorData::new(w.data, [d_in, d_out]), device),
            bias: b.map(|b| param(&format!("{name}.bias"), TensorData::new(b.data, [d_out]), device)),
        })
    };
    let mut layers = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let pre = format!("model.layers.{i}");
        let self_attn = Attention {
            q_proj: linear(&format!("{pre}.self_attn.q_proj"), d, q, c.qkv_bias)?,
            k_proj: linear(&format!("{pre}.self_attn.k_proj"), d, kv, c.qkv_bias)?,
            v_proj: linear(&format!("{pre}.self_attn.v_proj"), d, kv, c.qkv_bias)?,
            o_proj: linear(&format!("{pre}.self_attn.o_proj"), q, d, c.o_bias)?,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
        };
        let mlp = Mlp {
            gate_proj: linear(&format!("{pre}.mlp.gate_proj"), d, ff, c.mlp_bias)?,
            up_proj: linear(&format!("{pre}.mlp.up_proj"), d, ff, c.mlp_bias)?,
            down_proj: linear(&format!("{pre}.mlp.down_proj"), ff, d, c.mlp_bias)?,
        };
        layers.push((pre, self_attn, mlp));
    }
    let mut norm = |name: &str| -> Result<RmsNorm> {
        let g = p.get(name, &[d])?;
        Ok(RmsNorm { gamma: param(name, TensorData::new(g.data, [d]), device), epsilon: c.rms_norm_eps })
    };
    let layers = layers
        .into_iter()
        .map(|(pre, self_attn, mlp)| {
            Ok(DecoderLayer {
                input_layernorm: norm(&format!("{pre}.input_layernorm.weight"))?,
                self_attn,
                post_attention_layernorm: norm(&format!("{pre}.post_attention_layernorm.weight"))?,
                mlp,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let final_norm = norm("model.norm.weight")?;
    let embed = p.get("model.embed_tokens.weight", &[c.vocab_size, d])?;
    let embed_tokens = param("model.embed_tokens.weight", TensorData::new(embed.data, [c.vocab_size, d]), device);
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        let w = p.get("lm_head.weight", &[c.vocab_size, d])?.transposed();
        Some(param("lm_head.weight", TensorData::new(w.data, [d, c.vocab_size]), device))
    };
    Ok(Transformer { embed_tokens, layers, norm: final_norm, lm_head, config: c.clone() })
}

struct FromSource<'a> {
    source: &'a dyn WeightSource,
    used: BTreeSet<String>,
    tied: bool,
}

impl TensorProvider for FromSource<'_> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let origin = self.source.origin().to_path_buf();
        let found = self.source.shape(name).ok_or_else(|| ModelError::MissingTensor {
            path: origin.clone(),
            name: name.to_string(),
            hint: if name == "lm_head.weight" && !self.tied {
                "config.json says tie_word_embeddings=false, so the LM head must be stored; set it to true if the head shares the embedding".into()
            } else {
                "the checkpoint does not match its config.json (wrong num_hidden_layers or bias settings?)".into()
            },
        })?;
        if found != shape {
            return Err(ModelError::Shape { path: origin, name: name.to_string(), expected: shape.to_vec(), found });
        }
        self.used.insert(name.to_string());
        let t = self.source.load(name)?;
        t.check_finite(&origin, name)?;
        Ok(t)
    }
}

/// Loads a model from checkpoint tensors, checking every name and shape against `config`.
pub fn load_transformer(
    config: &ModelConfig,
    source: &dyn WeightSource,
    device: &Device,
) -> Result<(Transformer, LoadReport)> {
    let mut provider = FromSource { source, used: BTreeSet::new(), tied: config.tie_word_embeddings };
    let model = build(config, &mut provider, device)?;
    let unused = source.names().into_iter().filter(|n| !provider.used.contains(n)).collect();
    Ok((model, LoadReport { unused }))
}

struct RandomInit {
    rng: rand_chacha::ChaCha8Rng,
    std: f32,
}

impl TensorProvider for RandomInit {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        let data = if name.ends_with("layernorm.weight") || name == "model.norm.weight" {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let normal = Normal::new(0.0, self.std).expect("valid std");
            (0..n).map(|_| normal.sample(&mut self.rng)).collect()
        };
        Ok(HostTensor::new(shape.to_vec(), data))
    }
}

/// A freshly initialized model: weights ~ N(0, 0.02²), norms 1, biases 0 (as Hugging Face Llama),
/// drawn on the host from `seed` so every backend starts from identical weights.
pub fn init_transformer(config: &ModelConfig, seed: u64, device: &Device) -> Result<Transformer> {
    init_transformer_with_std(config, seed, 0.02, device)
}

/// [`init_transformer`] with weights ~ N(0, std²). 0.02 suits wide models; a narrow one (d = 64)
/// learns in-context lookups far sooner from a larger scale (README, Quiet-STaR demo).
pub fn init_transformer_with_std(config: &ModelConfig, seed: u64, std: f64, device: &Device) -> Result<Transformer> {
    if !(std > 0.0 && std.is_finite()) {
        return Err(ModelError::Config(format!("the initial weight scale must be positive (got {std})")));
    }
    let mut provider = RandomInit { rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed), std: std as f32 };
    build(config, &mut provider, device)
}

fn host<const D: usize>(t: &Param<Tensor<D>>) -> HostTensor {
    let v = t.val();
    let shape = v.dims().to_vec();
    HostTensor::new(shape, v.into_data().try_into_vec_as::<f32>().expect("f32 data"))
}

/// All parameters in Hugging Face naming and layout (linear weights `[out, in]`).
pub fn export_tensors(model: &Transformer) -> BTreeMap<String, HostTensor> {
    let mut out = BTreeMap::new();
    let put_linear = |out: &mut BTreeMap<String, HostTensor>, name: String, l: &Linear| {
        out.insert(format!("{name}.weight"), host(&l.weight).transposed());
        if let Some(b) = &l.bias {
            out.insert(format!("{name}.bias"), host(b));
        }
    };
    for (i, layer) in model.layers.iter().enumerate() {
        let pre = format!("model.layers.{i}");
        let a = &layer.self_attn;
        put_linear(&mut out, format!("{pre}.self_attn.q_proj"), &a.q_proj);
        put_linear(&mut out, format!("{pre}.self_attn.k_proj"), &a.k_proj);
        put_linear(&mut out, format!("{pre}.self_attn.v_proj"), &a.v_proj);
        put_linear(&mut out, format!("{pre}.self_attn.o_proj"), &a.o_proj);
        put_linear(&mut out, format!("{pre}.mlp.gate_proj"), &layer.mlp.gate_proj);
        put_linear(&mut out, format!("{pre}.mlp.up_proj"), &layer.mlp.up_proj);
        put_linear(&mut out, format!("{pre}.mlp.down_proj"), &layer.mlp.down_proj);
        out.insert(format!("{pre}.input_layernorm.weight"), host(&layer.input_layernorm.gamma));
        out.insert(format!("{pre}.post_attention_layernorm.weight"), host(&layer.post_attention_layernorm.gamma));
    }
    out.insert("model.norm.weight".into(), host(&model.norm.gamma));
    out.insert("model.embed_tokens.weight".into(), host(&model.embed_tokens));
    if let Some(w) = &model.lm_head {
        out.insert("lm_head.weight".into(), host(w).transposed());
    }
    out
}
