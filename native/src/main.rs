//! `starling`: the command-line shell over Starling's libraries.

mod bench;
mod common;
mod generate;
mod info;
mod perplexity;
mod train_lm;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use starling_model::device::DeviceChoice;

/// Starling: self-taught reasoning (STaR, Quiet-STaR) for language models, on burn + wgpu.
///
/// Models are read from a Hugging Face folder (config.json, *.safetensors, tokenizer.json) or a
/// GGUF file. Commands run on a hardware GPU through wgpu when one is present, else on the CPU.
#[derive(Parser)]
#[command(name = "starling", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    /// Where to run: `auto` (a hardware GPU through wgpu if present, else the CPU), `gpu` (the
    /// first wgpu adapter, software ones like lavapipe included) or `cpu` (burn's flex backend).
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceChoice,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  starling info models/SmolLM2-135M-Instruct.Q4_1.gguf
  starling generate -m models/SmolLM2-135M-Instruct.Q4_1.gguf -p 'The capital of France is'
  starling perplexity -m models/smollm2-hf --file notes.txt
  starling train-lm --builtin arithmetic --out runs/arith
  starling bench -m models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Subcommand)]
enum Command {
    /// Describe a model: format, architecture, size, tokenizer, GGUF metadata.
    Info(info::Args),
    /// Generate text from one or more prompts (batched, KV-cached, streamed).
    Generate(generate::Args),
    /// Perplexity of a text file under a model.
    Perplexity(perplexity::Args),
    /// Train a small model from scratch, or fine-tune a loaded one, on text / JSONL / a built-in task.
    TrainLm(train_lm::Args),
    /// Time forward, forward+backward and generation of a model on the chosen device.
    Bench(bench::Args),
}

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, mimalloc.h): how long freed
/// memory is kept before being handed back to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Never hand freed memory back: a training step frees and re-allocates the same gigabytes of
    // activations, and fresh pages from the OS cost a page fault each (with mimalloc's default
    // purging, a SmolLM2 8×256 forward+backward took 15.4 s instead of 8.7 s).
    // SAFETY: called before any other thread exists, as mimalloc's option API requires.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // Vulkan drivers probe for a Wayland display while starting; without XDG_RUNTIME_DIR (a
    // headless server, a container) libwayland prints an alarming but harmless error per probe.
    #[cfg(target_os = "linux")]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: still single-threaded here.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Generate(a) => generate::run(a, cli.device),
        Command::Perplexity(a) => perplexity::run(a, cli.device),
        Command::TrainLm(a) => train_lm::run(a, cli.device),
        Command::Bench(a) => bench::run(a, cli.device),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}
