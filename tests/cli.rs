//! End-to-end tests of the `starling` command line, as a user runs it: real models from the shared
//! folder, a short training run with resume, and bad input that must give a clear error and
//! exit code 1 (never a panic, never a half-written file).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/tiny_star.rs"]
mod tiny_star;
use tiny_star::{tiny_base_recipe, tiny_star_settings};

fn shared() -> PathBuf {
    let dir = std::env::var_os("STARLING_SHARED").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("../../shared")
    });
    assert!(dir.join("models").is_dir(), "shared data not found at {} (set STARLING_SHARED)", dir.display());
    dir
}

fn gguf() -> PathBuf {
    shared().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn hf() -> PathBuf {
    shared().join("models/smollm2-135m-instruct-4layer-hf")
}

fn starling(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_starling")).args(args).output().expect("run starling")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn ok(args: &[&str]) -> String {
    let o = starling(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "starling {args:?} failed:\n{out}\n{err}");
    out
}

/// The command fails with exit code 1, an `error:` line containing `needle`, and no panic.
fn fails_with(args: &[&str], needle: &str) -> String {
    let o = starling(args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "starling {args:?} should fail cleanly:\n{out}\n{err}");
    assert!(!err.contains("panicked"), "panic instead of an error:\n{err}");
    assert!(err.contains("error:") && err.contains(needle), "expected `{needle}` in:\n{err}");
    err
}

/// A scratch folder, removed when dropped — also when the test fails, so runs never pile up
/// model copies in the temp folder.
struct Temp(PathBuf);

impl std::ops::Deref for Temp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp(tag: &str) -> Temp {
    let d = std::env::temp_dir().join(format!("starling-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Temp(d)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn info_describes_the_gguf_model() {
    let out = ok(&["info", s(&gguf())]);
    assert!(out.contains("GGUF v3"), "{out}");
    assert!(out.contains("134515008"), "{out}");
    assert!(out.contains("Q4_1") && out.contains("Q8_0"), "{out}");
    assert!(out.contains("<|im_end|> (2)"), "{out}");
}

#[test]
fn generate_continues_a_prompt_with_the_full_model() {
    let out =
        ok(&["--device", "cpu", "generate", "-m", s(&gguf()), "-p", "In 1969, the first humans landed on", "-n", "6"]);
    // transformers' greedy continuation starts with " Mars.".
    assert!(out.starts_with("In 1969, the first humans landed on Mars."), "{out}");
}

#[test]
fn generate_batches_prompts_and_stops_on_strings() {
    let out = ok(&[
        "--device",
        "cpu",
        "generate",
        "-m",
        s(&hf()),
        "-p",
        "The quick brown fox",
        "-p",
        "def f(x):",
        "-n",
        "8",
        "--stop",
        "and",
        "--temperature",
        "0.8",
        "--top-k",
        "20",
        "--seed",
        "1",
    ]);
    assert!(out.contains("=== 0 ===\nThe quick brown fox") && out.contains("=== 1 ===\ndef f(x):"), "{out}");
}

#[test]
fn perplexity_of_a_text_file() {
    let dir = temp("ppl");
    let f = dir.join("t.txt");
    std::fs::write(&f, "The quick brown fox jumps over the lazy dog. The capital of France is Paris.").unwrap();
    let out = ok(&["--device", "cpu", "perplexity", "-m", s(&gguf()), "--file", s(&f)]);
    let ppl: f64 = out.split("perplexity ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(ppl > 1.0 && ppl < 200.0, "{out}");
}

#[test]
fn train_lm_builtin_then_resume_extends_the_run() {
    let dir = temp("train");
    let out_dir = dir.join("run");
    let base = [
        "--device",
        "cpu",
        "train-lm",
        "--builtin",
        "arithmetic",
        "--out",
        s(&out_dir),
        "--layers",
        "2",
        "--hidden",
        "64",
        "--batch-size",
        "8",
        "--save-every",
        "10",
        "--eval-every",
        "10",
    ];
    let out = ok(&[&base[..], &["--steps", "10"]].concat());
    assert!(out.contains("trained 10 steps"), "{out}");
    assert!(out_dir.join("model/model.safetensors").exists());
    // A second run into the same folder must not clobber it without --resume.
    fails_with(&[&base[..], &["--steps", "20"]].concat(), "--resume");
    let out = ok(&[&base[..], &["--steps", "20", "--resume"]].concat());
    assert!(out.contains("trained 20 steps"), "{out}");
    let metrics = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 20);
    // The saved model is a normal model folder.
    let info = ok(&["info", s(&out_dir.join("model"))]);
    assert!(info.contains("Hugging Face folder"), "{info}");
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `--data-parallel 2` on the CPU: each batch shared by two copies of the model, the steps those
/// of one device (losses equal to print precision, to 1e-5 in the metrics), the devices named.
#[test]
fn train_lm_data_parallel_makes_the_one_device_steps() {
    let dir = temp("parallel");
    let args = |out: &Path| {
        let out = s(out).to_string();
        ["--device", "cpu", "train-lm", "--builtin", "arithmetic", "--layers", "2", "--hidden", "64"]
            .into_iter()
            .map(String::from)
            .chain(["--batch-size", "7", "--steps", "12", "--out", &out].map(String::from))
            .collect::<Vec<String>>()
    };
    let one = args(&dir.join("one"));
    ok(&refs(&one));
    let mut two = args(&dir.join("two"));
    two.extend(["--data-parallel", "2"].map(String::from));
    let o = starling(&refs(&two));
    let (_, err) = text(&o);
    assert!(o.status.success() && err.contains("data parallel: device 1: cpu"), "{err}");
    let losses = |run: &str| -> Vec<f64> {
        std::fs::read_to_string(dir.join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
            .collect()
    };
    let (a, b) = (losses("one"), losses("two"));
    assert_eq!(a.len(), 12);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    let zero = starling(&[&refs(&one)[..], &["--data-parallel", "0"]].concat());
    assert!(text(&zero).1.contains("invalid value '0' for '--data-parallel <N>'"), "{}", text(&zero).1);
}

#[test]
fn fine_tunes_a_real_checkpoint_on_jsonl() {
    let dir = temp("finetune");
    let data = dir.join("qa.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| format!("{{\"prompt\": \"Q: what is {i} plus one?\\nA:\", \"completion\": \" {}\"}}", i + 1))
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out_dir = dir.join("run");
    let out = ok(&[
        "--device",
        "cpu",
        "train-lm",
        "-m",
        s(&hf()),
        "--data",
        s(&data),
        "--out",
        s(&out_dir),
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
        "--warmup",
        "1",
        "--save-every",
        "6",
    ]);
    let (first, last) = out.split("loss ").nth(1).unwrap().split_once(" → ").unwrap();
    let first: f64 = first.parse().unwrap();
    let last: f64 = last.split_whitespace().next().unwrap().parse().unwrap();
    assert!(last < first, "fine-tuning did not lower the loss: {out}");
    // The fine-tuned model is a complete model folder with the original tokenizer.
    let info = ok(&["info", s(&out_dir.join("model"))]);
    assert!(info.contains("42472512") && info.contains("<|im_end|> (2)"), "{info}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = temp("bad");
    fails_with(&["info", "/nonexistent/model"], "no such file or folder");
    // A truncated GGUF.
    let bytes = std::fs::read(gguf()).unwrap();
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&["info", s(&cut)], "truncated");
    // Not a model at all.
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"hello world, not a model").unwrap();
    fails_with(&["info", s(&junk)], "not a GGUF file");
    // A folder whose weights do not match its config.
    let mismatched = dir.join("mismatch");
    std::fs::create_dir_all(&mismatched).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(hf().join(f), mismatched.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(hf().join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024");
    std::fs::write(mismatched.join("config.json"), cfg).unwrap();
    fails_with(&["--device", "cpu", "generate", "-m", s(&mismatched), "-p", "hi"], "do not belong to this config.json");
    // A prompt longer than the context (the 4-layer model's context is 8192 tokens).
    let long = "word ".repeat(9000);
    fails_with(&["--device", "cpu", "generate", "-m", s(&hf()), "-p", &long, "-n", "4"], "exceeds the model's context");
    // Empty and malformed training data.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(&["--device", "cpu", "train-lm", "--data", s(&empty), "--out", s(&dir.join("r1"))], "no usable example");
    let broken = dir.join("broken.jsonl");
    std::fs::write(&broken, "{\"text\": \"ok\"}\n{\"text\": 5}\n").unwrap();
    fails_with(&["--device", "cpu", "train-lm", "--data", s(&broken), "--out", s(&dir.join("r2"))], "broken.jsonl:2:");
}

/// The tiny built-in STaR run on the CPU into `out`.
fn tiny_star(out: &Path, base: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["--device", "cpu", "star", "--out", s(out)].map(String::from).to_vec();
    args.extend(tiny_star_settings(base));
    args
}

#[test]
fn star_on_builtin_arithmetic_writes_its_artefacts_and_resumes() {
    let dir = temp("star");
    let (out, base) = (dir.join("run"), dir.join("base"));
    let mut args = tiny_star(&out, &base);
    args.extend(["--iterations", "1"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let stdout = ok(&refs);
    assert!(
        stdout.contains("iteration 0 (base model): dev accuracy") && stdout.contains("iteration 1: kept"),
        "{stdout}"
    );
    assert!(stdout.contains("| iteration | dev accuracy % | 1 digits % |"), "{stdout}");
    for f in [
        "report.md",
        "chart.svg",
        "summary.json",
        "base.json",
        "iter-01/rationales.jsonl",
        "iter-01/model/config.json",
        "iter-01/eval.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(base.join("model/config.json").exists());
    // A second start refuses to overwrite; --resume with more iterations continues.
    fails_with(&refs, "--resume");
    let mut more = tiny_star(&out, &base);
    more.extend(["--iterations", "2", "--resume"].map(String::from));
    let refs: Vec<&str> = more.iter().map(String::as_str).collect();
    let stdout = ok(&refs);
    assert!(stdout.contains("iteration 2: kept") && out.join("iter-02/model/config.json").exists(), "{stdout}");
    // The base model is reused, and a baseline runs on it.
    let mut baseline: Vec<String> = ["--device", "cpu", "baseline", "few-shot-rationale", "--digits", "1-1"]
        .into_iter()
        .chain(["--dev-per-digit", "8", "--out", s(&dir.join("b"))])
        .map(String::from)
        .collect();
    baseline.extend(tiny_base_recipe(&base));
    let stdout = ok(&baseline.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(stdout.contains("few-shot-rationale on arithmetic (8 dev questions, 3 shots): accuracy"), "{stdout}");

    // A base made by another recipe is refused, with the command that remakes it.
    let mut other = tiny_star(&dir.join("other"), &base);
    other.iter_mut().filter(|a| *a == "150").for_each(|a| *a = "151".into());
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    let msg = fails_with(&refs, "made by another recipe");
    assert!(msg.contains("starling star --base-only --base-dir"), "{msg}");
    // This tiny base fails the gate: the message says what was measured and what to change.
    let mut gated = tiny_star(&dir.join("gated"), &base);
    gated.retain(|a| a != "--no-gate");
    let refs: Vec<&str> = gated.iter().map(String::as_str).collect();
    let msg = fails_with(&refs, "fails the gate");
    assert!(msg.contains("Measured on the dev set: 1 digits") && msg.contains("--no-gate"), "{msg}");
}

#[test]
fn star_reports_bad_task_input_clearly() {
    let dir = temp("star-bad");
    let out = s(&dir.join("run")).to_string();
    fails_with(&["--device", "cpu", "star", "--task", "csqa", "--out", &out], "needs a pretrained model");
    fails_with(
        &["--device", "cpu", "star", "--digits", "1-1", "--dev-per-digit", "0", "--out", &out],
        "leave 34 training and 0 dev questions",
    );
    let model = gguf();
    let m = s(&model);
    fails_with(
        &["--device", "cpu", "star", "--task", "csqa", "-m", m, "--out", &out],
        "needs --train FILE and --dev FILE",
    );
    let missing = dir.join("missing.jsonl");
    fails_with(
        &[
            "--device",
            "cpu",
            "star",
            "--task",
            "gsm8k",
            "-m",
            m,
            "--train",
            s(&missing),
            "--dev",
            s(&missing),
            "--out",
            &out,
        ],
        "cannot read",
    );
    // A CommonsenseQA file with a broken line, and an unlabeled one.
    let good = r#"{"answerKey": "A", "id": "x", "question": {"stem": "Where is money kept?", "choices": [{"label": "A", "text": "bank"}, {"label": "B", "text": "tree"}]}}"#;
    let broken = dir.join("broken.jsonl");
    std::fs::write(&broken, format!("{good}\n{{\"answerKey\": \n")).unwrap();
    fails_with(
        &[
            "--device",
            "cpu",
            "star",
            "--task",
            "csqa",
            "-m",
            m,
            "--train",
            s(&broken),
            "--dev",
            s(&broken),
            "--out",
            &out,
        ],
        "broken.jsonl:2:",
    );
    let unlabeled = dir.join("test.jsonl");
    std::fs::write(&unlabeled, good.replace("\"answerKey\": \"A\", ", "")).unwrap();
    fails_with(
        &[
            "--device",
            "cpu",
            "star",
            "--task",
            "csqa",
            "-m",
            m,
            "--train",
            s(&broken),
            "--dev",
            s(&unlabeled),
            "--out",
            &out,
            "--skip-bad-lines",
        ],
        "no answerKey",
    );
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    fails_with(
        &["--device", "cpu", "star", "--task", "qa", "-m", m, "--train", s(&empty), "--dev", s(&empty), "--out", &out],
        "no usable examples",
    );
}

const CSQA_LINE: &str = r#"{"answerKey": "A", "id": "q1", "question": {"stem": "Where is money kept?", "choices": [{"label": "A", "text": "bank"}, {"label": "B", "text": "tree"}, {"label": "C", "text": "river"}]}}"#;

#[test]
fn quiet_train_generate_analyze_and_eval_on_a_real_model() {
    let dir = temp("quiet");
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, "The cat sat on the mat. The dog ran in the park. Two and two make four. ".repeat(8))
        .unwrap();
    let run = dir.join("run");
    let model = hf();
    let train = |steps: &str| {
        ok(&[
            "--device",
            "cpu",
            "quiet",
            "train",
            "-m",
            s(&model),
            "--text",
            s(&corpus),
            "--out",
            s(&run),
            "--steps",
            steps,
            "--batch-size",
            "1",
            "--seq-len",
            "16",
            "--n-thought",
            "2",
            "--n-talk",
            "2",
            "--save-every",
            "1",
            "--lr",
            "1e-4",
        ])
    };
    let stdout = train("2");
    assert!(stdout.contains("\"step\":2") && stdout.contains("checkpoint:"), "{stdout}");
    let ckpt = run.join("checkpoints/step-00000002");
    assert!(ckpt.join("quiet.safetensors").is_file() && ckpt.join("config.json").is_file());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    // Running again with more steps resumes from the checkpoint.
    let stdout = train("3");
    assert!(stdout.contains("\"step\":3"), "{stdout}");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 3);
    let ckpt = run.join("checkpoints/step-00000003");

    let stdout = ok(&["--device", "cpu", "quiet", "generate", "-m", s(&ckpt), "-p", "The cat", "-n", "3"]);
    assert!(stdout.starts_with("The cat") && stdout.matches("thought:").count() == 3, "{stdout}");
    let stdout = ok(&[
        "--device",
        "cpu",
        "quiet",
        "analyze",
        "-m",
        s(&ckpt),
        "--text",
        "The dog ran in the park.",
        "--top",
        "2",
    ]);
    assert!(stdout.contains("mean Δ log-prob per token") && stdout.contains("most helped:"), "{stdout}");
    // Over a held-out corpus: the effect by token difficulty, in bands of equal size.
    let held = dir.join("held.jsonl");
    std::fs::write(&held, "{\"text\": \"The cat sat on the mat and looked at the dog.\"}\n{\"text\": \"A bird flew over the house in the morning.\"}\n").unwrap();
    let stdout = ok(&[
        "--device",
        "cpu",
        "quiet",
        "analyze",
        "-m",
        s(&ckpt),
        "--corpus",
        s(&held),
        "--seq-len",
        "6",
        "--bands",
        "3",
    ]);
    assert!(stdout.contains("| base NLL band (nats) |") && stdout.matches("\n| ").count() >= 4, "{stdout}");

    // Zero-shot CommonsenseQA: every choice scored, with and without thoughts.
    let data = dir.join("dev.jsonl");
    std::fs::write(
        &data,
        format!("{CSQA_LINE}\n{}\n", CSQA_LINE.replace("\"A\", \"id\": \"q1\"", "\"C\", \"id\": \"q2\"")),
    )
    .unwrap();
    let scores = dir.join("scores.jsonl");
    let stdout = ok(&["--device", "cpu", "eval", "csqa", "-m", s(&ckpt), "--data", s(&data), "--out", s(&scores)]);
    assert!(
        stdout.contains("csqa zero-shot, 2 items")
            && stdout.contains("| paper's metric")
            && stdout.contains("| accuracy by choice likelihood"),
        "{stdout}"
    );
    let all: Vec<serde_json::Value> =
        std::fs::read_to_string(&scores).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |metric: &str| all.iter().filter(|l| l["metric"] == metric).cloned().collect::<Vec<_>>();
    // The paper's metric: the answer letter and the newline, renormalised, four thought samples.
    let official = of("official");
    assert_eq!(official.len(), 2);
    for l in &official {
        assert_eq!(l["scored_tokens"].as_u64(), Some(2), "{l}");
        let p = l["p_base"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{l}");
        assert_eq!(l["p_thought"].as_array().unwrap().len(), 4, "{l}");
    }
    let lines = of("likelihood");
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["gold"].as_u64(), lines[1]["gold"].as_u64()), (Some(0), Some(2)));
    for l in &lines {
        for key in ["logp_base", "logp_thought"] {
            let v = l[key].as_array().unwrap();
            assert_eq!(v.len(), 3);
            assert!(v.iter().all(|x| x.as_f64().unwrap() < 0.0), "{l}");
        }
    }
    // The two items differ only in their gold answer: same candidate scores.
    assert_eq!(lines[0]["logp_base"], lines[1]["logp_base"]);
    let gsm = dir.join("test.jsonl");
    std::fs::write(&gsm, "{\"question\": \"Tom has 3 apples and buys 4 more. How many does he have?\", \"answer\": \"3+4=7\\n#### 7\"}\n").unwrap();
    let stdout = ok(&["--device", "cpu", "eval", "gsm8k", "-m", s(&model), "--data", s(&gsm), "--n-thought", "2"]);
    assert!(stdout.contains("gsm8k zero-shot, 1 items") && stdout.contains("gold answer NLL per token"), "{stdout}");
}

#[test]
fn quiet_and_eval_report_bad_input_clearly() {
    let dir = temp("quiet-bad");
    let model = hf();
    let m = s(&model);
    let data = dir.join("dev.jsonl");
    std::fs::write(&data, format!("{CSQA_LINE}\nnot json\n")).unwrap();
    fails_with(&["--device", "cpu", "eval", "csqa", "-m", m, "--data", s(&data)], "dev.jsonl:2:");
    fails_with(&["--device", "cpu", "eval", "csqa", "-m", m, "--data", s(&dir.join("missing.jsonl"))], "cannot read");
    // A question far beyond the model's context (8192 tokens) is refused with the numbers.
    let long = CSQA_LINE.replacen("\"stem\": \"", &format!("\"stem\": \"{}", "why ".repeat(20_000)), 1);
    assert_ne!(long, CSQA_LINE);
    std::fs::write(&data, format!("{long}\n")).unwrap();
    fails_with(&["--device", "cpu", "eval", "csqa", "-m", m, "--data", s(&data)], "but the model's context is 8192");
    std::fs::write(&data, format!("{CSQA_LINE}\n")).unwrap();
    fails_with(&["--device", "cpu", "eval", "csqa", "-m", m, "--data", s(&data), "--n-thought", "0"], "n_thought");
    fails_with(&["--device", "cpu", "quiet", "generate", "-m", m, "-p", "Hi"], "not a Quiet-STaR checkpoint");
    let corpus = dir.join("short.txt");
    std::fs::write(&corpus, "Too short.").unwrap();
    // The official preset is exact: a flag that changes it is refused, naming both.
    let run = dir.join("run");
    let quiet_train = |extra: &[&str]| {
        let mut args = vec!["--device", "cpu", "quiet", "train", "-m", m, "--text", s(&corpus), "--out", s(&run)];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let args = quiet_train(&["--preset", "official", "--n-thought", "10"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_with(&refs, "--n-thought 10 contradicts --preset official (n-thought 9 there)");
    let args = quiet_train(&["--preset", "official", "--mixing", "tanh-abs"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_with(&refs, "--mixing tanh-abs contradicts --preset official (mixing linear there)");
    fails_with(
        &[
            "--device",
            "cpu",
            "quiet",
            "train",
            "-m",
            m,
            "--text",
            s(&corpus),
            "--out",
            s(&dir.join("run")),
            "--seq-len",
            "64",
        ],
        "has 64 tokens, one training window",
    );
    // A JSONL corpus is read as documents; a line without `text` is named.
    let docs = dir.join("docs.jsonl");
    std::fs::write(&docs, "{\"text\": \"One document.\"}\n{\"body\": \"no text field\"}\n").unwrap();
    fails_with(
        &["--device", "cpu", "quiet", "train", "-m", m, "--text", s(&docs), "--out", s(&dir.join("run2"))],
        "docs.jsonl:2:",
    );
}

/// The peak resident memory (VmHWM) of a running process, in MiB, while /proc shows it.
fn peak_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib / 1024)
}

#[test]
fn a_two_gib_data_line_is_refused_in_bounded_memory() {
    let dir = temp("huge-line");
    let data = dir.join("huge.jsonl");
    // One 2 GiB line with no line break (sparse: it takes no disk).
    let mut f = std::fs::File::create(&data).unwrap();
    std::io::Write::write_all(&mut f, br#"{"text": ""#).unwrap();
    f.set_len(2 << 30).unwrap();
    drop(f);
    let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["--device", "cpu", "train-lm", "--data", s(&data), "--out", s(&dir.join("run")), "--steps", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // VmHWM only grows: the last reading before the process ends is (nearly) its peak.
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_mib(child.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("huge.jsonl: line 1 is longer than 64 MiB") && !err.contains("panicked"), "{err}");
    assert!(peak > 0 && peak < 512, "peak resident memory {peak} MiB while refusing a 2 GiB line");
}
