//! `starling`: the command-line shell over Starling's libraries.

mod advice;
mod baseline;
mod bench;
mod bench_rationales;
mod bench_thought;
mod builtin_base;
mod common;
mod convert;
mod eval;
mod generate;
mod info;
mod init_model;
mod perplexity;
mod quiet;
mod quiet_demo;
mod quiet_hops;
mod star;
mod tasks_args;
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
    /// first wgpu adapter, software ones like lavapipe included; its shader compiler is SPIR-V on
    /// Vulkan in builds with `--features vulkan`, else WGSL), `cuda` (an NVIDIA GPU; builds with
    /// `--features cuda`) or `cpu` (burn's flex backend). The device and its compiler are printed.
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceChoice,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  starling info models/SmolLM2-135M-Instruct.Q4_1.gguf
  starling generate -m models/SmolLM2-135M-Instruct.Q4_1.gguf -p 'The capital of France is'
  starling perplexity -m models/smollm2-hf --file notes.txt
  starling star                                  # the built-in STaR experiment on arithmetic
  starling star --task csqa -m models/smollm2-hf --train csqa/train.jsonl --dev csqa/dev.jsonl
  starling baseline few-shot-rationale --task gsm8k -m models/smollm2-hf --train gsm8k/train.jsonl --dev gsm8k/test.jsonl
  starling train-lm --builtin arithmetic --out runs/arith
  starling quiet demo                            # does thinking help? hidden multi-hop lookups (built-in, CPU, minutes)
  starling quiet train -m models/smollm2-hf --text corpus.txt --out runs/quiet
  starling quiet demo-sums                       # the earlier demo: two-digit sums
  starling quiet generate -m runs/quiet-demo-sums/model -p '12+34='
  starling quiet analyze -m runs/quiet-demo-sums/model --text '25+37=62'
  starling bench -m models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Subcommand)]
enum Command {
    /// Describe a model: format, architecture, size, tokenizer, GGUF metadata.
    Info(info::Args),
    /// Write a randomly initialised model of a config.json's shape (for benchmarks).
    InitModel(init_model::Args),
    /// Write a model (GGUF or Hugging Face folder) as a Hugging Face folder of float32 weights.
    Convert(convert::Args),
    /// Generate text from one or more prompts (batched, KV-cached, streamed).
    Generate(generate::Args),
    /// Perplexity of a text file under a model.
    Perplexity(perplexity::Args),
    /// Train a small model from scratch, or fine-tune a loaded one, on text / JSONL / a built-in task.
    TrainLm(train_lm::Args),
    /// STaR: bootstrap reasoning from a model's own rationales (default: the built-in arithmetic
    /// experiment, with a tiny base model pretrained first).
    Star(star::Args),
    /// Baselines for STaR: few-shot direct / rationale prompting, direct fine-tuning.
    Baseline(baseline::Args),
    /// STaR's rationale-generation throughput at several batch sizes.
    BenchRationales(bench_rationales::Args),
    /// Time forward, forward+backward and generation of a model on the chosen device.
    Bench(bench::Args),
    /// Thought-parallel attention, forward + backward: the fused kernels vs the dense-mask
    /// reference (time and peak memory) over sequence × thought lengths.
    BenchThought(bench_thought::Args),
    /// Quiet-STaR: train a model to think before every token; generate and analyze with thoughts.
    Quiet(quiet::Args),
    /// Zero-shot CommonsenseQA / GSM8K by answer likelihood, without and with thoughts.
    Eval(eval::Args),
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
        Command::InitModel(a) => init_model::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Generate(a) => generate::run(a, cli.device),
        Command::Perplexity(a) => perplexity::run(a, cli.device),
        Command::TrainLm(a) => train_lm::run(a, cli.device),
        Command::Bench(a) => bench::run(a, cli.device),
        Command::Star(a) => star::run(a, cli.device),
        Command::BenchRationales(a) => bench_rationales::run(a, cli.device),
        Command::Baseline(a) => baseline::run(a, cli.device),
        Command::Quiet(a) => quiet::run(a, cli.device),
        Command::BenchThought(a) => bench_thought::run(a, cli.device),
        Command::Eval(a) => eval::run(a, cli.device),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        if let Some(hint) = advice::for_error(&e) {
            eprintln!("hint: {hint}");
        }
        std::process::exit(1);
    }
}
