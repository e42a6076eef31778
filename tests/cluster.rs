//! Beyond one machine: a STaR run whose generation is sharded, driven by the repository's own
//! recipes, ends with the artefacts of the single-process run, file for file.
//!
//! Iteration 1 runs through `deploy/slurm/submit.sh` and `star.sbatch` with a stand-in for
//! `sbatch` (`tests/support/fake-sbatch`: each job runs when submitted, an array's tasks as
//! concurrent processes with Slurm's variables, `afterok` honoured). One task is lost: the merge
//! is refused naming the missing shard, the task is resubmitted alone, and the chain is
//! submitted again. Iteration 2 runs through `deploy/k8s/run.sh` with a stand-in for `kubectl`
//! (`tests/support/fake-kubectl`: a Job's pods run the manifest's own command with the
//! ConfigMap's variables and, for the Indexed Job, `JOB_COMPLETION_INDEX`). The manifests are
//! also validated against Kubernetes' schemas by `tests/all.sh`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/snapshot.rs"]
mod snapshot;
use snapshot::{differences, snapshot};

#[path = "support/tiny_star.rs"]
mod tiny_star;
use tiny_star::tiny_star_settings;

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

/// `deploy/k8s` copied to `dir`, set up for this test's run: the ConfigMap's run folder, settings
/// and shard count, and the Indexed Job's completions.
fn k8s_recipe(dir: &Path, run: &Path, star_args: &str, shards: usize, completions: usize) -> PathBuf {
    let k8s = dir.join("k8s");
    std::fs::create_dir_all(&k8s).unwrap();
    for entry in std::fs::read_dir(repo().join("deploy/k8s")).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let edited: Vec<String> = text
            .lines()
            .map(|line| {
                let indent = &line[..line.len() - line.trim_start().len()];
                match line.trim_start().split(':').next().unwrap() {
                    "STAR_RUN" => format!("{indent}STAR_RUN: {}", s(run)),
                    "STAR_ARGS" => format!("{indent}STAR_ARGS: {}", serde_json::to_string(star_args).unwrap()),
                    "STARLING_SHARDS" => format!("{indent}STARLING_SHARDS: \"{shards}\""),
                    "completions" | "parallelism" => {
                        format!("{indent}{}: {completions}", line.trim_start().split(':').next().unwrap())
                    }
                    _ => line.to_string(),
                }
            })
            .collect();
        let copy = k8s.join(p.file_name().unwrap());
        std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
        std::fs::set_permissions(&copy, std::fs::metadata(&p).unwrap().permissions()).unwrap();
    }
    k8s
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn sharded_star_on_slurm_and_kubernetes_recipes_equals_the_single_process_run() {
    let dir = temp("recipes");
    let starling = Path::new(env!("CARGO_BIN_EXE_starling"));
    let (base, whole, sharded) = (dir.join("base"), dir.join("whole"), dir.join("sharded"));
    let settings = tiny_star_settings(&base);

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
        .env_remove("STARLING_SHARDS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("pass --shard K/N"), "{stderr}");

    // Iteration 1 on "Slurm": the start, a 3-task array that loses task 1, a merge that never runs.
    let fake = dir.join("slurm");
    std::fs::create_dir_all(&fake).unwrap();
    let sbatch = repo().join("tests/support/fake-sbatch");
    let star_args = settings.join(" ");
    let slurm = |program: &Path, args: &[&str], extra: &[(&str, &str)]| {
        let mut c = Command::new("bash");
        c.arg(program).args(args);
        c.env("SBATCH", &sbatch).env("FAKE_SBATCH_DIR", &fake).env("STARLING", starling).env("STARLING_DEVICE", "cpu");
        c.env("STAR_RUN", &sharded).env("STAR_ARGS", &star_args).env_remove("STARLING_SHARDS");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let submit = repo().join("deploy/slurm/submit.sh");
    let printed = succeeded("submit.sh", slurm(&submit, &["3", "1"], &[("FAKE_SBATCH_FAIL_TASK", "1")]));
    assert!(printed.contains("iteration 1: generation, 3 shards: job array 102"), "{printed}");
    let log = read(&fake.join("log"));
    let jobs: Vec<&str> = log.lines().collect();
    assert_eq!(jobs.len(), 3, "{log}");
    assert!(jobs[0].ends_with("star.sbatch merge") && !jobs[0].contains("--dependency"), "{log}");
    assert!(jobs[1].contains("--dependency=afterok:101") && jobs[1].contains("--array=0-2"), "{log}");
    assert!(jobs[1].ends_with("star.sbatch shard") && jobs[2].contains("--dependency=afterok:102"), "{log}");
    let states: Vec<String> =
        (101..=103).map(|id| read(&fake.join(format!("state-{id}"))).trim().to_string()).collect();
    assert_eq!(states, ["ok", "failed", "cancelled"]);
    // 34 one-digit sums in batches of 16: 16, 16 and 2 questions.
    for (k, n) in [(0, 16), (2, 2)] {
        let out = read(&fake.join(format!("job-102_{k}.out")));
        assert!(out.contains(&format!("iteration 1, shard {k}/3: {n} rationales")), "task {k}: {out}");
    }
    // The merge, by hand, names the lost shard; then task 1 alone, and the chain once more.
    let sbatch_script = repo().join("deploy/slurm/star.sbatch");
    let with_iterations = format!("{star_args} --iterations 1");
    let refused = slurm(&sbatch_script, &["merge"], &[("STAR_ARGS", &with_iterations)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "merged with a shard missing");
    assert!(stderr.contains("1 of 3 shards missing or unfinished") && stderr.contains("shards 1/3"), "{stderr}");
    assert!(stderr.contains("run the missing shards"), "no advice: {stderr}");
    let rerun = slurm(
        &sbatch,
        &["--export=ALL", "--array=1", s(&sbatch_script), "shard"],
        &[("STAR_ARGS", &with_iterations), ("STARLING_SHARDS", "3")],
    );
    succeeded("task 1 resubmitted", rerun);
    assert!(read(&fake.join("job-104_1.out")).contains("iteration 1, shard 1/3: 16 rationales"));
    succeeded("submit.sh again", slurm(&submit, &["3", "1"], &[]));
    let states: Vec<String> =
        (105..=107).map(|id| read(&fake.join(format!("state-{id}"))).trim().to_string()).collect();
    assert_eq!(states, ["ok", "ok", "ok"]);
    let merged = read(&fake.join("job-105.out"));
    assert!(merged.contains("iteration 1: kept") && merged.contains("| iteration |"), "{merged}");
    assert!(read(&fake.join("job-106_0.out")).contains("nothing to do"));

    // Iteration 2 on "Kubernetes": deploy/k8s/run.sh, one round of shards and merge.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(starling, bin.join("starling")).unwrap();
    std::os::unix::fs::symlink(repo().join("tests/support/fake-kubectl"), bin.join("kubectl")).unwrap();
    let kube = dir.join("kube");
    std::fs::create_dir_all(&kube).unwrap();
    let path = format!("{}:{}", s(&bin), std::env::var("PATH").unwrap_or_default());
    let run_sh = |k8s: &Path| {
        Command::new("bash")
            .arg(k8s.join("run.sh"))
            .arg("1")
            .env("PATH", &path)
            .env("FAKE_KUBECTL_DIR", &kube)
            .env("STARLING_POLL_SECONDS", "0")
            .output()
            .unwrap()
    };
    let star_args = format!("{star_args} --iterations 2");
    // A shard count that is not the Job's completions is refused before anything is applied.
    let mismatched = run_sh(&k8s_recipe(&dir.join("mismatch"), &sharded, &star_args, 2, 3));
    assert!(!mismatched.status.success() && String::from_utf8_lossy(&mismatched.stderr).contains("make them equal"));
    assert!(!kube.join("log").exists(), "kubectl was called before the check");
    succeeded("deploy/k8s/run.sh", run_sh(&k8s_recipe(&dir, &sharded, &star_args, 2, 2)));
    let calls = read(&kube.join("log"));
    assert_eq!(calls.matches("apply -f").count(), 4, "settings, merge, shards, merge:\n{calls}");
    for (k, n) in [(0, 18), (1, 16)] {
        let out = read(&kube.join(format!("starling-star-shards-{k}.out")));
        assert!(out.contains(&format!("iteration 2, shard {k}/2: {n} rationales")), "pod {k}: {out}");
    }
    let merged = read(&kube.join("starling-star-merge-0.out"));
    assert!(merged.contains("iteration 2: kept"), "{merged}");

    let d = differences(&snapshot(&whole), &snapshot(&sharded));
    assert!(d.is_empty(), "the sharded run differs from the single-process one:\n{}", d.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
