//! `starling bench-thought`: forward + backward of the thought-parallel attention op, the fused
//! WGSL kernels beside the tensor-op references, over sequence lengths × thought lengths. Each
//! measurement runs in a child process of its own, so its peak resident memory (VmHWM, above
//! the child's baseline after the inputs are made) is the op's alone; on a software adapter
//! such as lavapipe, device buffers live in that memory too. On a hardware GPU, the device's
//! own memory is not in RSS: the memory column then shows host memory only.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use starling_model::device::DeviceChoice;
use starling_thought::{Kernel, Visibility, thought_attention};

use crate::common::pick_device;

#[derive(clap::Args)]
pub struct Args {
    /// Sequence lengths L.
    #[arg(long, value_delimiter = ',', default_value = "128,256,512")]
    lengths: Vec<usize>,
    /// Thought lengths S (every step queried at once, as in the training talk pass).
    #[arg(long, value_delimiter = ',', default_value = "8,16,24")]
    thoughts: Vec<usize>,
    /// Implementations to compare (the first is the one the others are divided by).
    #[arg(long, value_delimiter = ',', default_value = "fused,dense")]
    kernels: Vec<Kernel>,
    /// Query heads, key/value heads and head size (default: SmolLM2-135M's).
    #[arg(long, default_value_t = 9)]
    heads: usize,
    #[arg(long, default_value_t = 3)]
    kv_heads: usize,
    #[arg(long, default_value_t = 64)]
    head_dim: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed runs per measurement (median reported), after one warm-up run (whose peak memory is
    /// the one reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A measurement taking longer than this (seconds, whole child process) is reported as such.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Internal: run one measurement `L,S,kernel` and print it as JSON.
    #[arg(long, hide = true)]
    single: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    seconds: f64,
    peak_bytes: u64,
}

pub fn run(a: Args, device: DeviceChoice) -> Result<()> {
    let device_flag = match device {
        DeviceChoice::Auto => "auto",
        DeviceChoice::Gpu => "gpu",
        DeviceChoice::Cpu => "cpu",
        DeviceChoice::Cuda => "cuda",
    };
    if let Some(spec) = &a.single {
        return single(&a, spec, device);
    }
    let dev = pick_device(device)?;
    println!(
        "thought attention, forward + backward: batch {}, {} heads ({} KV), head dim {}; median of {} runs; device: {}",
        a.batch, a.heads, a.kv_heads, a.head_dim, a.runs, dev.name
    );
    let names: Vec<String> = a.kernels.iter().map(|k| format!("{k:?}").to_lowercase()).collect();
    let mut header = String::from("| L | thought |");
    for n in &names {
        header.push_str(&format!(" {n} time | {n} peak MiB |"));
    }
    for n in names.iter().skip(1) {
        header.push_str(&format!(" {n}/{} time | {n}/{} memory |", names[0], names[0]));
    }
    println!("{header}");
    println!("|{}", "---|".repeat(2 + 2 * names.len() + 2 * (names.len() - 1)));
    let exe = std::env::current_exe().context("cannot find the starling executable")?;
    for &l in &a.lengths {
        for &s in &a.thoughts {
            let results: Vec<Result<Measured, String>> = names
                .iter()
                .map(|k| {
                    let mut cmd = Command::new(&exe);
                    cmd.args(["--device", device_flag, "bench-thought", "--single", &format!("{l},{s},{k}")]);
                    cmd.args([
                        "--heads",
                        &a.heads.to_string(),
                        "--kv-heads",
                        &a.kv_heads.to_string(),
                        "--head-dim",
                        &a.head_dim.to_string(),
                    ]);
                    cmd.args(["--batch", &a.batch.to_string(), "--runs", &a.runs.to_string()]);
                    child(cmd, Duration::from_secs(a.timeout))
                })
                .collect();
            let mut row = format!("| {l} | {s} |");
            for r in &results {
                match r {
                    Ok(m) => row.push_str(&format!(
                        " {:.4} s | {:.1} |",
                        m.seconds,
                        m.peak_bytes as f64 / (1u64 << 20) as f64
                    )),
                    Err(e) => row.push_str(&format!(" {e} | |")),
                }
            }
            for r in results.iter().skip(1) {
                match (&results[0], r) {
                    (Ok(f), Ok(o)) => row.push_str(&format!(
                        " {:.2}× | {:.1}× |",
                        o.seconds / f.seconds,
                        o.peak_bytes as f64 / f.peak_bytes.max(1) as f64
                    )),
                    _ => row.push_str(" – | – |"),
                }
            }
            println!("{row}");
        }
    }
    Ok(())
}

/// Runs one measurement in a child process; its last stdout line is the JSON result.
fn child(mut cmd: Command, timeout: Duration) -> Result<Measured, String> {
    let mut proc = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    loop {
        match proc.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t0.elapsed() > timeout => {
                let _ = proc.kill();
                return Err(format!("> {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let out = proc.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().and_then(|l| serde_json::from_str::<Measured>(l).ok()) {
        Some(m) if out.status.success() => Ok(m),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            // The adapter refuses a single buffer above its limit (wgpu's max buffer size).
            if let Some(bytes) = err
                .split("can't allocate buffer of size: ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            {
                return Err(format!("cannot allocate a {} MiB buffer", bytes >> 20));
            }
            if out.status.code().is_none() {
                return Err("killed (out of memory?)".into());
            }
            let why = err
                .lines()
                .skip_while(|l| !l.contains("panicked at") && !l.starts_with("error:"))
                .nth(1)
                .or(err.lines().last());
            Err(format!("failed ({})", why.unwrap_or("no output").trim()))
        }
    }
}

/// Peak resident set size of this process so far (VmHWM), in bytes.
fn peak_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("peak memory needs /proc (Linux)")?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kb * 1024)
}

/// Resets the peak resident set size to the current one (Linux ≥ 4.0).
fn reset_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("cannot reset the peak memory counter (/proc/self/clear_refs)")
}

fn single(a: &Args, spec: &str, device: DeviceChoice) -> Result<()> {
    let parts: Vec<&str> = spec.split(',').collect();
    let [l, s, k] = parts.as_slice() else { bail!("--single expects L,S,kernel") };
    let (l, s, kernel): (usize, usize, Kernel) =
        (l.parse()?, s.parse()?, k.parse().map_err(|e: String| anyhow::anyhow!(e))?);
    let dev = pick_device(device)?;
    let d = dev.device.clone().autodiff();
    starling_thought::check_kernel(kernel, &d, a.head_dim)?;
    let (b, h, kvh, hd) = (a.batch, a.heads, a.kv_heads, a.head_dim);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut values = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
    let mut inputs = |l: usize, s: usize| -> [Tensor<5>; 5] {
        let t = |v: Vec<f32>, shape: [usize; 5]| Tensor::<5>::from_data(TensorData::new(v, shape), &d).require_grad();
        [
            t(values(b * h * s * l * hd), [b, h, s, l, hd]),
            t(values(b * kvh * l * hd), [b, kvh, 1, l, hd]),
            t(values(b * kvh * l * hd), [b, kvh, 1, l, hd]),
            t(values(b * kvh * s * l * hd), [b, kvh, s, l, hd]),
            t(values(b * kvh * s * l * hd), [b, kvh, s, l, hd]),
        ]
    };
    let pad = vec![0usize; b];
    let step = |x: &[Tensor<5>; 5]| {
        let [q, kr, vr, kd, vd] = x.clone();
        let l = kr.dims()[3];
        let out = thought_attention(
            q,
            kr.reshape([b, kvh, l, hd]),
            vr.reshape([b, kvh, l, hd]),
            kd,
            vd,
            &Visibility::full(&pad),
            kernel,
        );
        let grads = out.sum().backward();
        // Reading every gradient waits for the device to finish.
        let total: f32 = x.iter().filter_map(|t| t.grad(&grads)).map(|g| g.sum().into_scalar::<f32>()).sum();
        std::hint::black_box(total);
    };
    // A tiny warm-up compiles the kernels (the same for every size), so neither compilation
    // nor reused memory pools enter the measured run.
    step(&inputs(8, 2));
    let x = inputs(l, s);
    // The first run's peak (fresh allocations, before any pool reuse) is the op's memory.
    reset_peak_rss()?;
    let base = peak_rss()?;
    step(&x);
    let peak = peak_rss()?.saturating_sub(base);
    let mut times = Vec::new();
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        step(&x);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!("{}", serde_json::to_string(&Measured { seconds: times[times.len() / 2], peak_bytes: peak })?);
    Ok(())
}
