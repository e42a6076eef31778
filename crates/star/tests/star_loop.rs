//! The STaR loop end to end on a tiny model: two iterations whose fine-tuning provably starts
//! from the base weights, no hint in any training example, resume after a kill between (and
//! inside) phases giving the same artefacts, a clear error when nothing is kept, and generation
//! sharded over processes giving the single-process run.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::module::Module;
use burn::tensor::Device;

use starling_model::checkpoint::files::{open_checkpoint, save_hf_folder};
use starling_model::host::{Blocking, block_on};
use starling_model::sampling::SamplingConfig;
use starling_model::weights::{init_transformer, load_transformer};
use starling_model::{ModelConfig, Tokenizer, Transformer};
use starling_star::attempt::training_examples;
use starling_star::fingerprint::fingerprint;
use starling_star::report::IterationRow;
use starling_star::run::{BaseInfo, Quiet, StarRun, Stop, TrainStart};
use starling_star::{Finish, Shard, ShardOutcome};
use starling_star::{RationaleRecord, StarConfig};
use starling_star::{Resume, StarData, StarError, StarEvent, StarLoop, StarSetup};
use starling_tasks::arithmetic::{self, Pool};
use starling_tasks::{Item, TaskKind};
use starling_train::Example;
use starling_train::trainer::{NoObserver, TrainConfig, train};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("starling-star-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tokenizer() -> Tokenizer {
    starling_star::builtin::tokenizer().unwrap()
}

fn tiny_config(tok: &Tokenizer) -> ModelConfig {
    ModelConfig::builder(tok.vocab_size())
        .layers(2)
        .hidden(64)
        .heads(4, 4)
        .context(256)
        .special_tokens(tok)
        .build()
        .unwrap()
}

/// A base model that has seen worked one-digit sums, half of them with the answer as a hint.
fn pretrained_base(dir: &Path, steps: usize) -> PathBuf {
    let tok = tokenizer();
    let eos = tok.token_to_id("<eos>").unwrap();
    // The pretraining pool's one-digit sums, over and over.
    let pool = arithmetic::sums_in_pool(Pool::Pretrain, 11, 100, 1);
    let examples: Vec<Example> = pool
        .iter()
        .cycle()
        .take(600)
        .enumerate()
        .map(|(i, p)| {
            let q = if i % 2 == 0 { p.hinted_question() } else { p.question() };
            let mut target = tok.encode(&p.worked_answer(), false).unwrap();
            target.push(eos);
            Example::prompt_completion(&tok.encode(&q, false).unwrap(), &target)
        })
        .collect();
    let device = Device::flex().autodiff();
    let model = init_transformer(&tiny_config(&tok), 5, &device).unwrap();
    let cfg = TrainConfig { steps, batch_size: 16, lr: 3e-3, warmup_steps: 10, max_len: 128, ..TrainConfig::default() };
    let (model, _) = train(model, &examples, None, &cfg, None, &mut NoObserver).unwrap();
    let path = dir.join("base");
    save_hf_folder(&path, &model.valid(), &tok).unwrap();
    path
}

fn data() -> StarData {
    let (train, dev) = arithmetic::train_dev_split(21, 48, 8, 1, 2).unwrap();
    StarData { train, dev, exemplars: Vec::new() }
}

fn config(iterations: usize) -> StarConfig {
    StarConfig {
        task: TaskKind::Arithmetic,
        iterations,
        rationalize: true,
        shots: 0,
        first_steps: 10,
        step_growth: 1.2,
        train: TrainConfig {
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 2,
            max_len: 128,
            save_every: Some(5),
            ..TrainConfig::default()
        },
        sampling: SamplingConfig::greedy(),
        max_new_tokens: 90,
        gen_batch: 16,
        gen_rows: None,
        epochs: None,
        patience: 0,
        seed: 3,
        gate: None,
        require_sound: false,
        p_show_hint_save: 0.0,
        no_prompt: false,
    }
}

fn star<'a>(root: &Path, base: &Path, data: &'a StarData, iterations: usize) -> StarRun<'a> {
    StarRun {
        root: root.to_path_buf(),
        cfg: config(iterations),
        data,
        base: base.to_path_buf(),
        tokenizer: tokenizer(),
        device: Device::flex(),
        more_devices: Vec::new(),
    }
}

fn read<T: for<'de> serde::Deserialize<'de>>(p: &Path) -> T {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn records(root: &Path, n: usize) -> Vec<RationaleRecord> {
    let text = std::fs::read_to_string(root.join(format!("iter-{n:02}/rationales.jsonl"))).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn model_fingerprint(dir: &Path) -> String {
    let ck = open_checkpoint(dir, None).unwrap();
    let (m, _): (Transformer, _) = load_transformer(&ck.config, ck.weights.as_ref(), &Device::flex()).unwrap();
    fingerprint(&m)
}

/// Every artefact that must not depend on whether the run was interrupted.
fn artefacts(root: &Path, iterations: usize) -> Vec<String> {
    let mut out = Vec::new();
    for n in 0..=iterations {
        let dir = root.join(format!("iter-{n:02}"));
        out.push(std::fs::read_to_string(dir.join("eval.json")).unwrap());
        let mut row: IterationRow = read(&dir.join("row.json"));
        row.seconds = 0.0;
        out.push(serde_json::to_string(&row).unwrap());
        if n > 0 {
            out.push(std::fs::read_to_string(dir.join("rationales.jsonl")).unwrap());
            out.push(model_fingerprint(&dir.join("model")));
        }
    }
    out
}

#[test]
fn star_loop_fine_tunes_the_base_each_iteration_and_resumes_exactly() {
    let dir = temp_dir("loop");
    let base = pretrained_base(&dir, 150);
    let data = data();

    // Uninterrupted: two iterations.
    let a = dir.join("a");
    let (rows, _) = star(&a, &base, &data, 2).run(false, &mut Quiet).unwrap();
    for r in &rows {
        eprintln!(
            "iteration {}: kept {} rationalized {} rejected {}, dev {:.2}",
            r.iteration,
            r.kept,
            r.rationalized,
            r.rejected,
            r.dev.accuracy()
        );
    }
    assert_eq!(rows.iter().map(|r| r.iteration).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(rows[1].kept + rows[1].rationalized > 0, "iteration 1 kept nothing: {:?}", rows[1]);
    for r in &rows[1..] {
        assert_eq!(r.kept + r.rationalized + r.rejected, data.train.len());
    }
    assert_eq!((rows[1].steps, rows[2].steps), (10, 12));

    // Fine-tuning started from the base weights both times — checked on the weights themselves.
    let base_info: BaseInfo = read(&a.join("base.json"));
    assert_eq!(base_info.fingerprint, model_fingerprint(&base));
    let m1 = model_fingerprint(&a.join("iter-01/model"));
    for n in 1..=2 {
        let start: TrainStart = read(&a.join(format!("iter-{n:02}/train_start.json")));
        assert_eq!(start.start_fingerprint, base_info.fingerprint, "iteration {n} did not start from the base model");
    }
    assert_ne!(m1, base_info.fingerprint, "iteration 1 did not change the model");
    assert_ne!(m1, model_fingerprint(&a.join("iter-02/model")));

    // No training example contains the hint, and every one starts with the plain question.
    let tok = tokenizer();
    let by_id = data.train.iter().map(|it| (it.id.as_str(), it)).collect();
    for n in 1..=2 {
        let recs = records(&a, n);
        let by_id_map: &std::collections::HashMap<&str, &Item> = &by_id;
        for r in &recs {
            let wrong = r.answer.as_deref() != Some(by_id_map[r.id.as_str()].gold.as_str());
            assert_eq!(
                wrong,
                r.rationalization.is_some(),
                "every wrong answer (and only those) is rationalized: {r:?}"
            );
        }
        for ex in training_examples(&recs, &by_id, &tok, tok.token_to_id("<eos>")).unwrap() {
            let text = tok.decode(&ex.ids, false).unwrap();
            assert!(!text.contains("Target: "), "a hint reached the training data: {text}");
            assert!(text.starts_with("Input:\n") && text.contains("\nTarget:\n<scratch>"), "{text}");
        }
    }
    let expected = artefacts(&a, 2);

    // Killed after iteration 1, then resumed with two iterations.
    let b = dir.join("b");
    star(&b, &base, &data, 1).run(false, &mut Quiet).unwrap();
    assert!(
        matches!(star(&b, &base, &data, 2).run(false, &mut Quiet), Err(StarError::RunExists { .. })),
        "a second start must not overwrite"
    );
    star(&b, &base, &data, 2).run(true, &mut Quiet).unwrap();
    assert_eq!(artefacts(&b, 2), expected);

    // Killed inside iteration 2: halfway through generation (a torn last line), or after
    // generation and before the model was saved.
    let it2 = b.join("iter-02");
    let full = std::fs::read_to_string(it2.join("rationales.jsonl")).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    let partial = format!("{}\n{}", lines[..20].join("\n"), &lines[20][..10]);
    for f in ["rationales.jsonl", "eval.json", "row.json", "train_start.json"] {
        std::fs::remove_file(it2.join(f)).unwrap();
    }
    std::fs::remove_dir_all(it2.join("model")).unwrap();
    std::fs::remove_dir_all(it2.join("train")).unwrap();
    std::fs::write(it2.join("rationales.partial.jsonl"), partial).unwrap();
    star(&b, &base, &data, 2).run(true, &mut Quiet).unwrap();
    assert_eq!(artefacts(&b, 2), expected);
    assert!(!it2.join("rationales.partial.jsonl").exists());

    // Changed settings, questions or base model are refused on resume.
    let mut other = star(&b, &base, &data, 2);
    other.cfg.first_steps = 11;
    assert!(matches!(other.run(true, &mut Quiet), Err(StarError::OtherSettings { .. })));
    let mut fewer = self::data();
    fewer.dev.pop();
    assert!(matches!(star(&b, &base, &fewer, 2).run(true, &mut Quiet), Err(StarError::OtherData)));
    assert!(matches!(
        star(&b, &a.join("iter-01/model"), &data, 2).run(true, &mut Quiet),
        Err(StarError::OtherBase { .. })
    ));
    // Questions are matched by id, so duplicate ids are refused up front.
    let mut dup = self::data();
    dup.train.push(dup.train[0].clone());
    assert!(matches!(star(&dir.join("dup"), &base, &dup, 1).run(false, &mut Quiet), Err(StarError::Config(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_that_never_answers_gets_a_clear_error() {
    let dir = temp_dir("nothing");
    let tok = tokenizer();
    let model = init_transformer(&tiny_config(&tok), 1, &Device::flex()).unwrap();
    let base = dir.join("random-base");
    save_hf_folder(&base, &model, &tok).unwrap();
    let data = data();
    let mut run = star(&dir.join("run"), &base, &data, 1);
    run.cfg.rationalize = false;
    run.cfg.max_new_tokens = 12;
    let err = run.run(false, &mut Quiet).unwrap_err();
    assert!(matches!(err, StarError::NothingKept { iteration: 1, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("nothing to fine-tune on") && msg.contains("rationales.jsonl"), "{msg}");
    // The generation phase's artefact is kept for inspection.
    assert_eq!(records(&dir.join("run"), 1).len(), data.train.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_state_machine_stepped_in_memory_makes_the_same_run_as_the_cli_driver() {
    let dir = temp_dir("machine");
    let base = pretrained_base(&dir, 150);
    let data = data();
    let disk = dir.join("disk");
    let (rows, _) = star(&disk, &base, &data, 2).run(false, &mut Quiet).unwrap();

    // The same loop, stepped by hand with nothing written anywhere (as the browser drives it).
    let setup = StarSetup {
        cfg: config(2),
        data: data.clone(),
        base: Rc::new(open_checkpoint(&base, None).unwrap()),
        tokenizer: tokenizer(),
        device: Device::flex(),
        more_devices: Vec::new(),
    };
    let mut machine = StarLoop::new(setup, Vec::new(), Resume::Start).unwrap();
    let mut generated: Vec<Vec<RationaleRecord>> = vec![Vec::new(); 3];
    let mut steps = 0;
    let mut events = 0;
    loop {
        events += 1;
        match block_on(machine.step(&mut Blocking)).unwrap() {
            StarEvent::Generated { iteration, records, .. } => generated[iteration].extend(records),
            StarEvent::TrainStep { .. } => steps += 1,
            StarEvent::Finished(_) => break,
            _ => {}
        }
    }
    let timeless =
        |rows: &[IterationRow]| rows.iter().map(|r| IterationRow { seconds: 0.0, ..r.clone() }).collect::<Vec<_>>();
    assert_eq!(timeless(machine.rows()), timeless(&rows));
    for (n, batch_records) in generated.iter().enumerate().skip(1) {
        assert_eq!(batch_records, &records(&disk, n), "iteration {n}'s rationales");
    }
    assert_eq!(steps, 10 + 12);
    assert!(events > steps + 6, "every dev batch, generation batch and step is its own event");
    assert!(matches!(block_on(machine.step(&mut Blocking)), Ok(StarEvent::Finished(_))), "finished stays finished");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shard's file with its header edited by `edit`.
fn edit_header(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let text = std::fs::read_to_string(path).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut header: serde_json::Value = serde_json::from_str(first).unwrap();
    edit(&mut header);
    std::fs::write(path, format!("{header}\n{rest}")).unwrap();
}

/// The merge refuses `path` with `reason`, then takes the set again once the file is restored.
fn refused_then_restored(run: &StarRun<'_>, path: &Path, reason: &str, edit: impl Fn(&mut serde_json::Value)) {
    let original = std::fs::read(path).unwrap();
    edit_header(path, edit);
    match run.run_until_generation(&mut Quiet) {
        Err(StarError::ForeignShard { path: named, reason: r }) => {
            assert_eq!(named, path);
            assert!(r.contains(reason), "{r}");
        }
        other => panic!("a shard edited to say {reason:?} was taken: {:?}", other.map(|(_, stop)| stop)),
    }
    std::fs::write(path, original).unwrap();
}

#[test]
fn sharded_generation_merges_into_the_single_process_run() {
    let dir = temp_dir("shards");
    let base = pretrained_base(&dir, 150);
    let data = data();
    let whole = dir.join("whole");
    star(&whole, &base, &data, 2).run(false, &mut Quiet).unwrap();

    let root = dir.join("sharded");
    let run = star(&root, &base, &data, 2);
    // Shards before the run has started (its base evaluation) are refused.
    let first = Shard { index: 0, count: 2 };
    assert!(matches!(run.generate_shard(first, &mut Quiet), Err(StarError::NotStarted { .. })));
    assert_eq!(run.run_until_generation(&mut Quiet).unwrap().1, Stop::GenerationDue { iteration: 1 });
    assert_eq!(
        run.run_until_generation(&mut Quiet).unwrap().1,
        Stop::GenerationDue { iteration: 1 },
        "nothing to merge yet: it stops again"
    );

    // Iteration 1 in two shards (48 questions: batches 0 and 2 for shard 0, batch 1 for shard 1).
    assert_eq!(
        run.generate_shard(first, &mut Quiet).unwrap(),
        ShardOutcome::Generated { iteration: 1, records: 32, resumed_from: 0 }
    );
    assert_eq!(run.generate_shard(first, &mut Quiet).unwrap(), ShardOutcome::AlreadyGenerated { iteration: 1 });
    let shards = root.join("iter-01/shards");
    match run.run_until_generation(&mut Quiet) {
        Err(StarError::MissingShards { iteration: 1, count: 2, missing, .. }) => assert_eq!(missing, vec![1]),
        other => panic!("merged without shard 1: {:?}", other.map(|(_, stop)| stop)),
    }
    // Shard 0 died after its first batch, in the middle of writing the second: rerun alone, it
    // keeps the whole batch and writes the same file.
    let done = std::fs::read_to_string(shards.join("0-of-2.jsonl")).unwrap();
    let lines: Vec<&str> = done.lines().collect();
    std::fs::remove_file(shards.join("0-of-2.jsonl")).unwrap();
    std::fs::write(shards.join("0-of-2.partial.jsonl"), format!("{}\n{}", lines[..17].join("\n"), &lines[17][..9]))
        .unwrap();
    assert!(matches!(run.run_until_generation(&mut Quiet), Err(StarError::MissingShards { .. })));
    assert_eq!(
        run.generate_shard(first, &mut Quiet).unwrap(),
        ShardOutcome::Generated { iteration: 1, records: 32, resumed_from: 16 }
    );
    assert_eq!(std::fs::read_to_string(shards.join("0-of-2.jsonl")).unwrap(), done);
    let second = Shard { index: 1, count: 2 };
    run.generate_shard(second, &mut Quiet).unwrap();

    // Shards of another run, iteration, model or split are refused, naming the file.
    let one = shards.join("1-of-2.jsonl");
    refused_then_restored(&run, &one, "other settings", |h| h["settings"] = "0".into());
    refused_then_restored(&run, &one, "another base model", |h| h["base"] = "0".into());
    refused_then_restored(&run, &one, "another model", |h| h["model"] = "0".into());
    refused_then_restored(&run, &one, "another iteration", |h| h["iteration"] = 2.into());
    // A second process on the same shard is turned away while the first holds it.
    {
        let lock = std::fs::File::open(shards.join("1-of-2.lock")).unwrap();
        lock.lock().unwrap();
        let busy = run.generate_shard(second, &mut Quiet);
        assert!(matches!(busy, Err(StarError::ShardInUse { .. })), "{:?}", busy.map(|_| ()));
    }
    // A finished shard whose header is not this iteration's is not taken as done.
    let original = std::fs::read(&one).unwrap();
    edit_header(&one, |h| h["model"] = "0".into());
    assert!(matches!(run.generate_shard(second, &mut Quiet), Err(StarError::ForeignShard { .. })));
    std::fs::write(&one, original).unwrap();
    // Strays of another split (an earlier count, a task resubmitted with the wrong count) are
    // left out when one count's set is complete.
    std::fs::copy(&one, shards.join("1-of-3.jsonl")).unwrap();
    std::fs::write(shards.join("0-of-5.partial.jsonl"), "").unwrap();

    // Merged, fine-tuned, evaluated; iteration 2 in three shards, written by M_1.
    assert_eq!(run.run_until_generation(&mut Quiet).unwrap().1, Stop::GenerationDue { iteration: 2 });
    assert!(!shards.exists(), "merged shards are removed");
    assert_eq!(
        std::fs::read(root.join("iter-01/rationales.jsonl")).unwrap(),
        std::fs::read(whole.join("iter-01/rationales.jsonl")).unwrap()
    );
    for index in (0..3).rev() {
        run.generate_shard(Shard { index, count: 3 }, &mut Quiet).unwrap();
    }
    let (rows, stop) = run.run_until_generation(&mut Quiet).unwrap();
    assert_eq!(stop, Stop::Finished(Finish::Iterations));
    assert_eq!(rows.len(), 3);
    assert_eq!(artefacts(&root, 2), artefacts(&whole, 2), "K shards + merge == one process");
    assert_eq!(run.generate_shard(first, &mut Quiet).unwrap(), ShardOutcome::RunFinished);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fine-tuning data parallel over two devices (the CPU twice: the copies take turns) gives the
/// one-device model of iteration 1, up to the order of floating-point sums — from the same
/// rationales, since those come from the base model.
#[test]
fn data_parallel_fine_tuning_makes_the_one_device_model() {
    use starling_model::weights::export_tensors;
    let dir = temp_dir("parallel");
    let base = pretrained_base(&dir, 150);
    let data = data();
    let one = dir.join("one");
    star(&one, &base, &data, 1).run(false, &mut Quiet).unwrap();
    let two = dir.join("two");
    let mut run = star(&two, &base, &data, 1);
    run.more_devices = vec![Device::flex()];
    run.run(false, &mut Quiet).unwrap();
    assert_eq!(records(&one, 1), records(&two, 1));
    let weights = |root: &Path| {
        let ck = open_checkpoint(&root.join("iter-01/model"), None).unwrap();
        let (m, _): (Transformer, _) = load_transformer(&ck.config, ck.weights.as_ref(), &Device::flex()).unwrap();
        export_tensors(&m)
    };
    let (a, b) = (weights(&one), weights(&two));
    let largest = a
        .iter()
        .zip(&b)
        .flat_map(|((_, x), (_, y))| x.data.iter().zip(&y.data).map(|(p, q)| (p - q).abs()))
        .fold(0f32, f32::max);
    assert!(largest < 1e-4, "the two-device model differs by up to {largest}");
    assert_ne!(model_fingerprint(&one.join("iter-01/model")), model_fingerprint(&base), "nothing was trained");
    let _ = std::fs::remove_dir_all(&dir);
}
