//! `starling info`: what a checkpoint is, without loading its weights.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use starling_model::checkpoint::files::{CheckpointFormat, map_file, open_checkpoint};
use starling_model::checkpoint::gguf::GgufFile;

#[derive(clap::Args)]
pub struct Args {
    /// A Hugging Face model folder or a .gguf file.
    model: PathBuf,
    /// Use this tokenizer.json instead of the model's own.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Also list every GGUF metadata key (arrays summarised).
    #[arg(long)]
    metadata: bool,
}

pub fn run(a: Args) -> Result<()> {
    let ck = open_checkpoint(&a.model, a.tokenizer.as_deref())?;
    let c = &ck.config;
    println!("path:        {}", ck.path.display());
    match &ck.format {
        CheckpointFormat::HfFolder => println!("format:      Hugging Face folder (safetensors)"),
        CheckpointFormat::Gguf { version } => println!("format:      GGUF v{version}"),
    }
    println!("parameters:  {} ({:.1}M)", c.num_parameters(), c.num_parameters() as f64 / 1e6);
    println!(
        "layers:      {} × (d={}, ffn={}, heads={} q / {} kv × {})",
        c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim
    );
    println!("rope theta:  {}   rms eps: {:e}   context: {}", c.rope_theta, c.rms_norm_eps, c.max_position_embeddings);
    println!(
        "embeddings:  vocab {} ({}), biases: qkv={} o={} mlp={}",
        c.vocab_size,
        if c.tie_word_embeddings { "tied LM head" } else { "separate LM head" },
        c.qkv_bias,
        c.o_bias,
        c.mlp_bias
    );
    let tok = &ck.tokenizer;
    let name = |id: Option<u32>| {
        id.and_then(|i| tok.id_to_token(i).map(|t| format!("{t} ({i})"))).unwrap_or_else(|| "-".into())
    };
    println!(
        "tokenizer:   {} tokens; bos {}, eos {}, pad {}",
        tok.vocab_size(),
        name(c.bos_token_id),
        name(c.eos_token_id),
        name(c.pad_token_id)
    );
    let tensors = ck.weights.names();
    println!("tensors:     {}", tensors.len());
    if let CheckpointFormat::Gguf { .. } = ck.format {
        let file = GgufFile::parse(ck.path.clone(), map_file(&ck.path)?)?;
        let mut types: BTreeMap<String, usize> = BTreeMap::new();
        for t in file.tensors.values() {
            *types.entry(format!("{:?}", t.ty)).or_default() += 1;
        }
        for why in file.unsupported.values() {
            *types.entry(format!("unsupported {why}")).or_default() += 1;
        }
        let list: Vec<String> = types.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("quant types: {}", list.join(", "));
        for key in
            ["general.name", "general.organization", "general.size_label", "tokenizer.ggml.model", "tokenizer.ggml.pre"]
        {
            if let Some(v) = file.metadata.get(key) {
                println!("{key}: {}", v.summary());
            }
        }
        if a.metadata {
            for (k, v) in &file.metadata {
                println!("  {k} = {}", v.summary());
            }
        }
    }
    Ok(())
}
