//! Crash anywhere, lose nothing: every long-running command — the built-in base model's
//! preparation, `train-lm`, `quiet train` and `star` — is killed with SIGKILL at seeded random
//! moments, resumed, and must end with the same artefacts as an uninterrupted run, bit for bit
//! (the CPU backend is deterministic). After every kill each file in the run folder must be whole:
//! JSON that parses, JSONL whose every line parses, safetensors whose tensors lie inside the file,
//! model folders that load. A third of the moments are taken while a file is being written (the
//! kill lands as soon as a temporary file shows up), the rest uniformly over the run's duration;
//! half the trials kill the resumed process too.
//!
//! Then each command runs on a small full disk (a tmpfs mounted for the test): it must stop with
//! a clear message, keep what it wrote whole, and resume elsewhere to the same artefacts.
//!
//! `STARLING_CRASH_TRIALS` sets the trials per command (default 2, the CI pass);
//! `experiments/crash/run.sh` runs 20 and records the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use starling_model::checkpoint::files::{map_file, open_checkpoint};
use starling_model::checkpoint::safetensors::SafetensorsSource;

#[path = "support/snapshot.rs"]
mod snapshot;
use snapshot::{differences, entries, snapshot};

fn starling() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_starling"));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn run_to_end(args: &[String]) -> Duration {
    let t0 = Instant::now();
    let out = starling().args(args).output().expect("run starling");
    assert!(out.status.success(), "starling {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    t0.elapsed()
}

/// One long-running command: how it starts and how it is continued after a crash.
struct Job {
    name: &'static str,
    /// The folder it writes, compared at the end.
    out: PathBuf,
    first: Vec<String>,
    again: Vec<String>,
    /// Which part of the work a run folder shows in progress (where a kill landed).
    stage: fn(&Path) -> String,
    /// The full-disk check's disk, as a multiple of the finished run folder's size: small enough
    /// that a write fails part-way through the run, after something was written.
    disk: f64,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The built-in base model's recipe: the same for its preparation and for STaR on top of it.
const BASE_RECIPE: [&str; 8] =
    ["--base-steps", "120", "--base-documents", "1500", "--base-layers", "2", "--base-hidden", "64"];

fn base_job(out: &Path) -> Job {
    let args =
        [strings(&["--device", "cpu", "star", "--base-only", "--base-dir", s(out)]), strings(&BASE_RECIPE)].concat();
    let stage = |out: &Path| if out.join("model").exists() { "gate" } else { "pretraining" }.to_string();
    // Pretraining ends by deleting its checkpoint: one checkpoint (weights and the optimizer's two
    // moments) fits, a second does not.
    Job { name: "base preparation", out: out.into(), first: args.clone(), again: args, stage, disk: 4.5 }
}

fn train_lm_job(out: &Path) -> Job {
    let first = strings(&[
        "--device",
        "cpu",
        "train-lm",
        "--builtin",
        "arithmetic",
        "--digits",
        "1-2",
        "--problems",
        "300",
        "--steps",
        "300",
        "--save-every",
        "20",
        "--eval-every",
        "20",
        "--layers",
        "2",
        "--hidden",
        "64",
        "--batch-size",
        "8",
        "--max-len",
        "96",
        "--out",
        s(out),
    ]);
    let again = [first.clone(), strings(&["--resume"])].concat();
    let stage = |out: &Path| if out.join("model").exists() { "probe" } else { "training" }.to_string();
    Job { name: "train-lm", out: out.into(), first, again, stage, disk: 0.5 }
}

fn quiet_job(out: &Path, model: &Path, text: &Path) -> Job {
    let args = strings(&[
        "--device",
        "cpu",
        "quiet",
        "train",
        "-m",
        s(model),
        "--text",
        s(text),
        "--out",
        s(out),
        "--steps",
        "200",
        "--batch-size",
        "2",
        "--seq-len",
        "24",
        "--n-thought",
        "3",
        "--n-talk",
        "2",
        "--save-every",
        "15",
        "--lr",
        "1e-4",
    ]);
    Job {
        name: "quiet train",
        out: out.into(),
        first: args.clone(),
        again: args,
        stage: |_| "training".into(),
        disk: 0.5,
    }
}

fn star_job(out: &Path, base: &Path) -> Job {
    let first = strings(&[
        "--device",
        "cpu",
        "star",
        "--out",
        s(out),
        "--base-dir",
        s(base),
        "--digits",
        "1-2",
        "--train-size",
        "480",
        "--dev-per-digit",
        "100",
        "--no-gate",
        "--iterations",
        "3",
        "--first-steps",
        "30",
        "--batch-size",
        "8",
        "--gen-batch",
        "16",
    ]);
    let first = [first, strings(&BASE_RECIPE)].concat();
    let again = [first.clone(), strings(&["--resume"])].concat();
    Job { name: "star", out: out.into(), first, again, stage: star_stage, disk: 0.5 }
}

/// The STaR phase in progress: the first iteration without a row, and how far it got.
fn star_stage(out: &Path) -> String {
    let n = (0..).find(|i| !out.join(format!("iter-{i:02}/row.json")).exists()).unwrap();
    let dir = out.join(format!("iter-{n:02}"));
    if n == 0 {
        "evaluate base".into()
    } else if out.join("summary.json").exists() && !dir.exists() {
        "report".into()
    } else if !dir.join("rationales.jsonl").exists() {
        "generate".into()
    } else if !dir.join("model/config.json").exists() {
        "fine-tune".into()
    } else {
        "evaluate".into()
    }
}

/// A temporary file or folder of an atomic write (`.NAME.tmp-PID`, `.NAME.old-PID`).
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && (name.contains(".tmp-") || name.contains(".old-"))
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    entries(dir).into_iter().filter(|p| is_temporary(&p.file_name().unwrap().to_string_lossy())).collect()
}

fn inside_temporary(root: &Path, p: &Path) -> bool {
    p.strip_prefix(root).unwrap().components().any(|c| is_temporary(&c.as_os_str().to_string_lossy()))
}

/// Every file outside temporaries that is not whole, with the reason.
fn broken_files(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for p in entries(root).into_iter().filter(|p| !inside_temporary(root, p)) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if p.join("config.json").exists()
                && let Err(e) = open_checkpoint(&p, None)
            {
                problems.push(format!("{}: model folder does not load: {e}", p.display()));
            }
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        let problem = match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "json" => serde_json::from_slice::<serde_json::Value>(&bytes).err().map(|e| e.to_string()),
            "jsonl" => {
                let t = text();
                // Append-only journals (metrics, rationales in progress) may end in a line torn
                // by the kill: resuming drops it. Every other line, and any other file, is whole.
                let journal = name == "metrics.jsonl" || name.ends_with(".partial.jsonl");
                let whole = if journal && !t.ends_with('\n') { t.rsplit_once('\n').map_or("", |(w, _)| w) } else { &t };
                if !journal && !t.is_empty() && !t.ends_with('\n') {
                    Some("last line is cut short".into())
                } else {
                    whole.lines().find_map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).err().map(|e| format!("{e} in `{l}`"))
                    })
                }
            }
            "safetensors" => {
                SafetensorsSource::new(p.clone(), vec![(p.clone(), map_file(&p).unwrap())]).err().map(|e| e.to_string())
            }
            "svg" => (!text().trim_end().ends_with("</svg>")).then(|| "no closing </svg>".into()),
            "md" => (!text().ends_with('\n')).then(|| "does not end with a newline".into()),
            _ => Some(format!("unknown kind of file `{name}`: teach this checker what whole means for it")),
        };
        if let Some(why) = problem {
            problems.push(format!("{}: {why}", p.display()));
        }
    }
    problems
}

enum Moment {
    /// SIGKILL this long after the start.
    At(Duration),
    /// SIGKILL as soon as a temporary file appears after this long (a write in progress), or
    /// after `give_up` at the latest.
    InWrite { after: Duration, give_up: Duration },
}

enum Ending {
    Killed { in_write: bool },
    Exited(std::process::Output),
}

fn kill_at(mut child: Child, moment: &Moment, out: &Path) -> Ending {
    let t0 = Instant::now();
    let (after, deadline, watch) = match *moment {
        Moment::At(t) => (t, t, false),
        Moment::InWrite { after, give_up } => (after, after + give_up, true),
    };
    loop {
        if child.try_wait().unwrap().is_some() {
            return Ending::Exited(child.wait_with_output().unwrap());
        }
        let now = t0.elapsed();
        // Its own temporaries only: a killed predecessor's may still lie there.
        let own = format!("-{}", child.id());
        let writing = watch
            && now >= after
            && temporaries(out).iter().any(|p| p.file_name().unwrap().to_string_lossy().ends_with(&own));
        if writing || now >= deadline {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return Ending::Killed { in_write: writing };
        }
        std::thread::sleep(Duration::from_micros(if watch { 200 } else { 2000 }));
    }
}

#[derive(Default)]
struct Tally {
    trials: usize,
    kills: usize,
    in_write: usize,
    /// Kills by the stage they interrupted.
    stages: BTreeMap<String, usize>,
    failures: Vec<String>,
}

/// `trials` crash trials of `job` (made for a given output folder), each compared with `want`.
fn crash_trials(
    make: &dyn Fn(&Path) -> Job,
    scratch: &Path,
    want: &BTreeMap<String, Vec<u8>>,
    duration: Duration,
    trials: usize,
    seed: u64,
) -> Tally {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tally = Tally { trials, ..Tally::default() };
    for trial in 0..trials {
        let dir = scratch.join(format!("trial-{trial}"));
        let _ = std::fs::remove_dir_all(&dir);
        let job = make(&dir);
        let fail = |what: String| format!("{} trial {trial}: {what}", job.name);
        let failures_before = tally.failures.len();
        let kills = if rng.random_bool(0.5) { 2 } else { 1 };
        let mut started = false;
        for _ in 0..kills {
            let moment = if rng.random_bool(1.0 / 3.0) {
                Moment::InWrite { after: duration.mul_f64(rng.random_range(0.0..0.9)), give_up: duration }
            } else {
                Moment::At(duration.mul_f64(rng.random_range(0.0..1.0)))
            };
            let args = if started { &job.again } else { &job.first };
            let child = starling().args(args).spawn().expect("start starling");
            started = true;
            match kill_at(child, &moment, &job.out) {
                Ending::Killed { in_write } => {
                    tally.kills += 1;
                    *tally.stages.entry((job.stage)(&job.out)).or_default() += 1;
                    tally.in_write += in_write as usize;
                    tally.failures.extend(broken_files(&job.out).into_iter().map(&fail));
                }
                Ending::Exited(o) if o.status.success() => break,
                Ending::Exited(o) => {
                    tally
                        .failures
                        .push(fail(format!("the resumed run failed:\n{}", String::from_utf8_lossy(&o.stderr))));
                    break;
                }
            }
        }
        let o = starling().args(&job.again).output().expect("run starling");
        if !o.status.success() {
            tally.failures.push(fail(format!("resuming failed:\n{}", String::from_utf8_lossy(&o.stderr))));
            continue;
        }
        tally.failures.extend(broken_files(&job.out).into_iter().map(&fail));
        tally.failures.extend(
            temporaries(&job.out).iter().map(|t| fail(format!("{} left behind after the run ended", t.display()))),
        );
        tally.failures.extend(differences(want, &snapshot(&job.out)).into_iter().map(&fail));
        // A failed trial's folder stays for a look.
        if tally.failures.len() == failures_before {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    tally
}

fn folder_bytes(dir: &Path) -> u64 {
    entries(dir).iter().filter(|p| p.is_file()).map(|p| p.metadata().unwrap().len()).sum()
}

/// The full-disk check of one command: run it on a tmpfs of `job.disk` × `size` bytes (mounted in
/// a private mount namespace, so it needs no root where user namespaces are allowed). The run
/// must stop with exit code 1, name the file it could not write and say the disk is full; every
/// file it leaves must be whole; and, copied to a disk with room, it must resume and end with
/// the uninterrupted run's artefacts. Returns the stage it stopped in, or the failures.
fn full_disk(
    make: &dyn Fn(&Path) -> Job,
    scratch: &Path,
    want: &BTreeMap<String, Vec<u8>>,
    size: u64,
) -> Result<String, Vec<String>> {
    let (mount, keep) = (scratch.join("full-disk"), scratch.join("kept"));
    for d in [&mount, &keep] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    let job = make(&mount.join("run"));
    let kib = ((size as f64 * job.disk) / 1024.0).ceil() as u64;
    let script = r#"mount -t tmpfs -o size="$SIZE_KIB"k starling-full "$MOUNT" || exit 97
"$@"; rc=$?
cp -a "$MOUNT/run" "$KEEP/" || exit 98
exit $rc"#;
    let o = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", script, "sh", env!("CARGO_BIN_EXE_starling")])
        .args(&job.first)
        .env("SIZE_KIB", kib.to_string())
        .env("MOUNT", &mount)
        .env("KEEP", &keep)
        .output()
        .expect("run unshare (util-linux)");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let fail = |what: String| vec![format!("{} on a full disk of {kib} KiB: {what}", job.name)];
    match o.status.code() {
        Some(97) | Some(98) => {
            return Err(fail(format!("cannot mount a small tmpfs here (user namespaces needed):\n{err}")));
        }
        Some(1) => {}
        _ => return Err(fail(format!("expected a clean failure (exit code 1), got {:?}:\n{err}", o.status))),
    }
    if err.contains("panicked") || !err.contains("cannot write") || !err.contains("the disk is full") {
        return Err(fail(format!("the message does not say which write failed and why:\n{err}")));
    }
    let kept = keep.join("run");
    let stage = (job.stage)(&kept);
    let mut failures: Vec<String> = broken_files(&kept).into_iter().flat_map(&fail).collect();
    failures.extend(temporaries(&kept).iter().flat_map(|t| fail(format!("{} left behind", t.display()))));
    let resumed = make(&kept);
    let o = starling().args(&resumed.again).output().expect("run starling");
    if !o.status.success() {
        failures.extend(fail(format!("resuming on a disk with room failed:\n{}", String::from_utf8_lossy(&o.stderr))));
    } else {
        failures.extend(differences(want, &snapshot(&kept)).into_iter().flat_map(&fail));
    }
    if failures.is_empty() { Ok(stage) } else { Err(failures) }
}

/// Arithmetic text for Quiet-STaR training (the built-in tokenizer's alphabet).
fn arithmetic_text() -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..400)
        .map(|_| {
            let (a, b) = (rng.random_range(0..100u32), rng.random_range(0..100u32));
            format!("{a} + {b} = {} .", a + b)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_long_running_command_survives_sigkill_and_a_full_disk() {
    let trials: usize = std::env::var("STARLING_CRASH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let scratch = std::env::temp_dir().join(format!("starling-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let text = scratch.join("text.txt");
    std::fs::write(&text, arithmetic_text()).unwrap();

    // Uninterrupted runs: the reference artefacts, and the inputs of the later commands.
    let reference = scratch.join("reference");
    let (base, lm) = (reference.join("base"), reference.join("train-lm"));
    type Make<'a> = Box<dyn Fn(&Path) -> Job + 'a>;
    let makes: Vec<Make> = vec![
        Box::new(base_job),
        Box::new(train_lm_job),
        Box::new(|out: &Path| quiet_job(out, &lm.join("model"), &text)),
        Box::new(|out: &Path| star_job(out, &base)),
    ];
    let names = ["base", "train-lm", "quiet", "star"];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (i, (make, name)) in makes.iter().zip(names).enumerate() {
        let job = make(&reference.join(name));
        let duration = run_to_end(&job.first);
        let problems = broken_files(&job.out);
        assert!(problems.is_empty(), "{problems:?}");
        let want = snapshot(&job.out);
        let tally = crash_trials(make.as_ref(), &scratch.join(name), &want, duration, trials, 1000 + i as u64);
        let stages: Vec<String> = tally.stages.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let disk = match full_disk(make.as_ref(), &scratch.join(name), &want, folder_bytes(&job.out)) {
            Ok(stage) => format!("stopped in {stage}, resumed"),
            Err(f) => {
                failures.extend(f);
                "FAILED".into()
            }
        };
        report.push(format!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {disk} |",
            job.name,
            duration.as_secs_f64(),
            tally.trials,
            tally.kills,
            tally.in_write,
            stages.join(", "),
            tally.failures.len()
        ));
        failures.extend(tally.failures);
    }
    eprintln!(
        "| command | uninterrupted s | trials | kills | kills while writing | kills by stage | failures | full disk |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    for row in &report {
        eprintln!("{row}");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    let _ = std::fs::remove_dir_all(&scratch);
}
