//! Beyond one machine: a STaR run whose generation is sharded, driven by the repository's own
//! recipes, ends with the artefacts of the single-process run, file for file.
//!
//! Iteration 1 runs through `deploy/slurm/submit.sh` and `star.sbatch`, with a stand-in for
//! Slurm's `sbatch` that runs each job when it is submitted (so every `afterok` dependency on an
//! earlier job holds) and an array's tasks as concurrent processes with the variables Slurm sets.
//! Iteration 2 runs the commands of the Kubernetes manifests (`deploy/k8s/shards.yaml` and
//! `merge.yaml`) with the variables an Indexed Job sets — one shard late, so the merge is first
//! refused. The manifests themselves are validated against Kubernetes' schemas by `tests/all.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/snapshot.rs"]
mod snapshot;
use snapshot::{differences, snapshot};

/// A stand-in for `sbatch`: enough of it for submit.sh (see the module docs). Every submission
/// is logged to $FAKE_SBATCH_DIR/log, each job's output to $FAKE_SBATCH_DIR/job-ID[_TASK].out.
const FAKE_SBATCH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> "$FAKE_SBATCH_DIR/log"
array=
while [[ $1 == --* ]]; do
  case $1 in --array=*) array=${1#--array=} ;; esac
  shift
done
script=$1
shift
id=$(( $(cat "$FAKE_SBATCH_DIR/last-id" 2>/dev/null || echo 100) + 1 ))
echo "$id" > "$FAKE_SBATCH_DIR/last-id"
if [ -z "$array" ]; then
  bash "$script" "$@" > "$FAKE_SBATCH_DIR/job-$id.out" 2>&1
else
  lo=${array%-*}
  hi=${array#*-}
  pids=()
  for ((k = lo; k <= hi; k++)); do
    SLURM_ARRAY_JOB_ID=$id SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_MIN=$lo SLURM_ARRAY_TASK_MAX=$hi \
      SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) bash "$script" "$@" > "$FAKE_SBATCH_DIR/job-${id}_$k.out" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
fi
echo "$id;cluster"
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("starling-cluster-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn succeeded(what: &str, out: Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// The run's settings (everything but --out and --iterations): the built-in arithmetic task at a
/// size that runs in seconds — the 34 distinct one-digit sums in 3 generation batches.
fn settings(base: &Path) -> Vec<String> {
    [
        "--base-dir",
        s(base),
        "--digits",
        "1-1",
        "--train-size",
        "48",
        "--dev-per-digit",
        "16",
        "--base-steps",
        "150",
        "--base-documents",
        "2000",
        "--base-layers",
        "2",
        "--base-hidden",
        "64",
        "--no-gate",
        "--first-steps",
        "8",
        "--batch-size",
        "8",
        "--gen-batch",
        "16",
    ]
    .map(String::from)
    .to_vec()
}

/// The shell command of a Kubernetes manifest's container (`command: ["sh", "-c", "…"]`).
fn manifest_command(file: &str) -> String {
    let text = std::fs::read_to_string(repo().join("deploy/k8s").join(file)).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("command: [\"sh\", \"-c\",")).unwrap();
    let list: Vec<String> = serde_json::from_str(line.trim_start().trim_start_matches("command:").trim()).unwrap();
    list[2].clone()
}

/// A pod of a manifest: its command under `sh -c`, with the ConfigMap's variables, `starling`
/// on the PATH, and `extra` (what Kubernetes adds, e.g. JOB_COMPLETION_INDEX).
fn pod(file: &str, bin: &Path, run: &Path, star_args: &str, extra: &[(&str, &str)]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(manifest_command(file));
    let path = format!("{}:{}", s(bin), std::env::var("PATH").unwrap_or_default());
    c.env("PATH", path).env("STAR_RUN", run).env("STAR_ARGS", star_args).env("STARLING_SHARDS", "2");
    // The manifests say --device auto: with no hardware GPU here, that is the CPU backend, as in
    // the single-process run.
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

#[test]
fn sharded_star_on_slurm_and_kubernetes_recipes_equals_the_single_process_run() {
    let dir = temp("recipes");
    let starling = Path::new(env!("CARGO_BIN_EXE_starling"));
    let (base, whole, sharded) = (dir.join("base"), dir.join("whole"), dir.join("sharded"));
    let settings = settings(&base);

    // The single-process run (which also prepares the built-in base model, shared by both).
    let mut args = vec!["--device", "cpu", "star", "--out", s(&whole), "--iterations", "2"];
    args.extend(settings.iter().map(String::as_str));
    succeeded("the single-process run", Command::new(starling).args(&args).output().unwrap());

    // A shard outside a scheduler, and without K/N, is told how to say which it is.
    let mut args = vec!["--device", "cpu", "star", "--out", s(&sharded), "--shard"];
    args.extend(settings.iter().map(String::as_str));
    let out = Command::new(starling)
        .args(&args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("pass --shard K/N"), "{stderr}");

    // Iteration 1 on "Slurm": the start, a 3-task array, the merge.
    let fake = dir.join("sbatch");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("sbatch"), FAKE_SBATCH).unwrap();
    std::fs::set_permissions(fake.join("sbatch"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let star_args = settings.join(" ");
    let submitted = Command::new("bash")
        .arg(repo().join("deploy/slurm/submit.sh"))
        .args(["3", "1"])
        .env("SBATCH", fake.join("sbatch"))
        .env("FAKE_SBATCH_DIR", &fake)
        .env("STARLING", starling)
        .env("STARLING_DEVICE", "cpu")
        .env("STAR_RUN", &sharded)
        .env("STAR_ARGS", &star_args)
        .output()
        .unwrap();
    let printed = succeeded("deploy/slurm/submit.sh", submitted);
    let log = std::fs::read_to_string(fake.join("log")).unwrap();
    let jobs: Vec<&str> = log.lines().collect();
    assert_eq!(jobs.len(), 3, "{log}");
    assert!(jobs[0].ends_with("star.sbatch merge") && !jobs[0].contains("--dependency"), "{log}");
    assert!(
        jobs[1].contains("--dependency=afterok:101 --array=0-2") && jobs[1].ends_with("star.sbatch shard"),
        "{log}"
    );
    assert!(jobs[2].contains("--dependency=afterok:102") && jobs[2].ends_with("star.sbatch merge"), "{log}");
    assert!(printed.contains("iteration 1: generation, 3 shards: job array 102"), "{printed}");
    // 34 one-digit sums in batches of 16: 16, 16 and 2 questions.
    for (k, n) in [16, 16, 2].into_iter().enumerate() {
        let out = std::fs::read_to_string(fake.join(format!("job-102_{k}.out"))).unwrap();
        assert!(out.contains(&format!("iteration 1, shard {k}/3: {n} rationales")), "task {k}: {out}");
    }
    let merged = std::fs::read_to_string(fake.join("job-103.out")).unwrap();
    assert!(merged.contains("iteration 1: kept") && merged.contains("| iteration |"), "{merged}");

    // Iteration 2 on "Kubernetes": the Indexed Job's pods, shard 1 late.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(starling, bin.join("starling")).unwrap();
    let star_args = format!("{star_args} --iterations 2");
    let shard = |k: &str| pod("shards.yaml", &bin, &sharded, &star_args, &[("JOB_COMPLETION_INDEX", k)]);
    succeeded("shard 0/2", shard("0").output().unwrap());
    let early = pod("merge.yaml", &bin, &sharded, &star_args, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success(), "merged with a shard missing");
    assert!(stderr.contains("1 of 2 shards missing or unfinished") && stderr.contains("shards 1/2"), "{stderr}");
    let printed = succeeded("shard 1/2", shard("1").output().unwrap());
    assert!(printed.contains("iteration 2, shard 1/2: 16 rationales"), "{printed}");
    let printed = succeeded("the merge", pod("merge.yaml", &bin, &sharded, &star_args, &[]).output().unwrap());
    assert!(printed.contains("iteration 2: kept"), "{printed}");
    let again = succeeded("a late shard", shard("1").output().unwrap());
    assert!(again.contains("finished its iterations; nothing to do"), "{again}");

    let d = differences(&snapshot(&whole), &snapshot(&sharded));
    assert!(d.is_empty(), "the sharded run differs from the single-process one:\n{}", d.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
