//! Training end to end on the built-in arithmetic task, on the CPU backend and on wgpu: the loss
//! falls, a run killed after a checkpoint and resumed gives the same loss curve as a run that
//! was never interrupted, and data-parallel training over two devices makes one device's steps.

use std::path::PathBuf;

use burn::tensor::Device;

use starling_model::checkpoint::files::open_checkpoint;
use starling_model::device::{DeviceChoice, select_device};
use starling_model::weights::{init_transformer, load_transformer};
use starling_model::{ModelConfig, Tokenizer, Transformer};
use starling_tasks::arithmetic::{self, Pool};
use starling_train::data::Example;
use starling_train::optim::{AdamW, GradientFault};
use starling_train::run_dir::{RunDir, RunObserver};
use starling_train::trainer::{
    NoObserver, StepMetrics, TrainConfig, TrainError, TrainObserver, train, train_data_parallel,
};

fn tokenizer() -> Tokenizer {
    Tokenizer::word_level(&arithmetic::WORDS, &["<pad>", "<eos>"]).unwrap()
}

fn examples(tok: &Tokenizer, seed: u64, n: usize) -> Vec<Example> {
    arithmetic::problems(Pool::Pretrain, seed, n, 1, 3)
        .iter()
        .map(|p| {
            // Loss on the worked answer only: given the question it is determined, so learnable.
            let prompt = tok.encode(&p.question(), false).unwrap();
            let mut answer = tok.encode(&p.worked_answer(), false).unwrap();
            answer.push(1);
            Example::prompt_completion(&prompt, &answer)
        })
        .collect()
}

fn model(tok: &Tokenizer, device: &Device) -> Transformer {
    let c = ModelConfig::builder(tok.vocab_size()).layers(2).hidden(64).heads(4, 2).ffn(160).build().unwrap();
    init_transformer(&c, 7, device).unwrap()
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 5,
        max_len: 160,
        seed: 3,
        eval_every: Some(steps),
        save_every: Some(steps / 2),
        ..TrainConfig::default()
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let d = std::env::temp_dir().join(format!("starling-{tag}-{}-{thread}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn loss_falls(device: Device) {
    let tok = tokenizer();
    let train_set = examples(&tok, 1, 400);
    let eval_set = examples(&tok, 2, 40);
    let m = model(&tok, &device.clone().autodiff());
    let cfg = config(120);
    let (_, hist) = train(m, &train_set, Some(&eval_set), &cfg, None, &mut NoObserver).unwrap();
    let first = hist[..3].iter().map(|m| m.loss).sum::<f64>() / 3.0;
    let last = hist[hist.len() - 3..].iter().map(|m| m.loss).sum::<f64>() / 3.0;
    let eval = hist.last().unwrap().eval_loss.unwrap();
    // A uniform guess over the 19 words costs ln 19 ≈ 2.94 nats; the scratchpad is learnable.
    assert!(first > 2.5, "initial loss {first}");
    assert!(last < 0.6 * first, "loss did not fall: {first} → {last}");
    assert!(eval < 0.65 * first, "held-out loss {eval} vs initial {first}");
}

/// Stops the run right after the checkpoint at `kill_at` is on disk, like a killed process.
struct KillAfter {
    kill_at: usize,
}

impl TrainObserver for KillAfter {
    fn on_checkpoint(&mut self, step: usize, _: &Transformer, _: &AdamW) -> Result<(), TrainError> {
        if step == self.kill_at {
            return Err(TrainError::Checkpoint("killed".into()));
        }
        Ok(())
    }
}

fn resume_is_exact(device: Device) {
    let ad = device.autodiff();
    let tok = tokenizer();
    let train_set = examples(&tok, 5, 120);
    let cfg = config(12);

    let straight_dir = temp_dir("straight");
    let run = RunDir::create(&straight_dir, &cfg, &tok).unwrap();
    let mut obs = RunObserver { run: &run, inner: &mut NoObserver };
    let (_, straight) = train(model(&tok, &ad), &train_set, None, &cfg, None, &mut obs).unwrap();

    let killed_dir = temp_dir("killed");
    let run = RunDir::create(&killed_dir, &cfg, &tok).unwrap();
    let mut kill = KillAfter { kill_at: 6 };
    let mut obs = RunObserver { run: &run, inner: &mut kill };
    let err = train(model(&tok, &ad), &train_set, None, &cfg, None, &mut obs).err().unwrap();
    assert!(err.to_string().contains("killed"));

    // A new "process": the run folder alone tells where to continue.
    let run = RunDir::create(&killed_dir, &cfg, &tok).unwrap();
    let (step, path) = run.latest_checkpoint().unwrap();
    assert_eq!(step, 6);
    let ck = open_checkpoint(&path, None).unwrap();
    let (resumed_model, _) = load_transformer(&ck.config, ck.weights.as_ref(), &ad).unwrap();
    let start = run.load_start(&path, &ad).unwrap();
    run.truncate_metrics(step).unwrap();
    let mut obs = RunObserver { run: &run, inner: &mut NoObserver };
    let (_, resumed) = train(resumed_model, &train_set, None, &cfg, Some(start), &mut obs).unwrap();

    let logged: Vec<StepMetrics> = run.read_metrics();
    assert_eq!(logged.iter().map(|m| m.step).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
    assert_eq!(resumed.len(), 6);
    for (a, b) in straight.iter().zip(&logged) {
        assert_eq!(a.step, b.step);
        assert!((a.loss - b.loss).abs() <= 1e-6 * a.loss.abs().max(1.0), "step {}: {} vs {}", a.step, a.loss, b.loss);
        assert!((a.grad_norm - b.grad_norm).abs() <= 1e-5 * a.grad_norm.max(1.0));
    }
    // Only `keep_checkpoints` (2) complete checkpoints remain.
    assert_eq!(run.checkpoints().iter().map(|c| c.0).collect::<Vec<_>>(), vec![6, 12]);
    std::fs::remove_dir_all(straight_dir).unwrap();
    std::fs::remove_dir_all(killed_dir).unwrap();
}

fn nothing_to_learn_is_an_error(device: Device) {
    let tok = tokenizer();
    let m = model(&tok, &device.autodiff());
    let masked = vec![Example { ids: vec![3, 4, 5], train: vec![false; 3] }];
    let err = train(m, &masked, None, &config(2), None, &mut NoObserver).err().unwrap().to_string();
    assert!(err.contains("nothing") || err.contains("no example"), "{err}");
}

/// Two micro-batches of 4 make the same step as one batch of 8 (same examples, same loss).
fn accumulation_matches_a_big_batch(device: Device) {
    let ad = device.autodiff();
    let tok = tokenizer();
    let train_set = examples(&tok, 9, 64);
    let big = TrainConfig { save_every: None, eval_every: None, ..config(4) };
    let small = TrainConfig { batch_size: 4, grad_accum: 2, ..big.clone() };
    let (_, a) = train(model(&tok, &ad), &train_set, None, &big, None, &mut NoObserver).unwrap();
    let (_, b) = train(model(&tok, &ad), &train_set, None, &small, None, &mut NoObserver).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x.loss - y.loss).abs() < 1e-5, "step {}: {} vs {}", x.step, x.loss, y.loss);
        assert!((x.grad_norm - y.grad_norm).abs() < 1e-4 * x.grad_norm.max(1.0));
        assert_eq!(x.target_tokens, y.target_tokens);
    }
}

/// Data parallel over two devices — `device` and the CPU backend (so on wgpu the all-reduce
/// crosses backends), each with a copy of the model and half of every micro-batch — makes the
/// steps one device makes on the whole batch: the same examples, losses, gradient norms and
/// weights, up to the order of floating-point sums. Also with an odd batch (slices of 3 and 2)
/// and accumulation.
fn two_devices_match_one_device_on_the_whole_batch(device: Device) {
    use burn::module::Module;
    use starling_model::weights::export_tensors;
    let ad = device.autodiff();
    let second = Device::flex().autodiff();
    let tok = tokenizer();
    let train_set = examples(&tok, 9, 64);
    let even = TrainConfig { save_every: None, eval_every: None, ..config(6) };
    let odd = TrainConfig { batch_size: 5, grad_accum: 2, ..even.clone() };
    for cfg in [even, odd] {
        let (one, a) = train(model(&tok, &ad), &train_set, None, &cfg, None, &mut NoObserver).unwrap();
        let (two, b) = train_data_parallel(
            model(&tok, &ad),
            std::slice::from_ref(&second),
            &train_set,
            None,
            &cfg,
            None,
            &mut NoObserver,
        )
        .unwrap();
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x.loss - y.loss).abs() < 1e-5, "step {}: loss {} vs {}", x.step, x.loss, y.loss);
            assert!((x.grad_norm - y.grad_norm).abs() < 1e-4 * x.grad_norm.max(1.0), "step {}", x.step);
            assert_eq!((x.tokens, x.target_tokens), (y.tokens, y.target_tokens));
        }
        let (wa, wb) = (export_tensors(&one.valid()), export_tensors(&two.valid()));
        let mut largest = 0f32;
        for ((name, ta), (_, tb)) in wa.iter().zip(&wb) {
            assert_eq!(ta.shape, tb.shape, "{name}");
            for (p, q) in ta.data.iter().zip(&tb.data) {
                largest = largest.max((p - q).abs());
            }
        }
        assert!(
            largest < 1e-4,
            "weights differ by up to {largest} (batch {}, accumulation {})",
            cfg.batch_size,
            cfg.grad_accum
        );
        // And the training moved them: the comparison is not between two untouched models.
        let start = export_tensors(&model(&tok, &ad).valid());
        assert!(start.iter().zip(&wa).any(|((_, s), (_, t))| s.data != t.data));
    }
}

/// A NaN in the weights makes the loss NaN: training stops with an error naming the step, and
/// no checkpoint is written for it.
fn nan_loss_stops_training(device: Device) {
    use burn::module::Param;
    let ad = device.autodiff();
    let tok = tokenizer();
    let mut m = model(&tok, &ad);
    let bad = m.norm.gamma.val().mul_scalar(f32::NAN);
    m.norm.gamma = Param::initialized(m.norm.gamma.id, bad.detach().require_grad());
    let dir = temp_dir("nan");
    let cfg = config(4);
    let run = RunDir::create(&dir, &cfg, &tok).unwrap();
    let mut obs = RunObserver { run: &run, inner: &mut NoObserver };
    let err = train(m, &examples(&tok, 3, 16), None, &cfg, None, &mut obs).err().unwrap();
    assert!(matches!(err, TrainError::NonFinite { step: 1, .. }), "{err}");
    assert!(err.to_string().contains("the last good one is kept"), "{err}");
    assert!(run.checkpoints().is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

fn cpu() -> Device {
    Device::flex()
}

fn wgpu() -> Device {
    select_device(DeviceChoice::Gpu).expect("a wgpu adapter is required (apt install mesa-vulkan-drivers)").device
}

/// A gradient that overflows while the loss stays finite stops training, naming the parameter:
/// scaling one MLP's up projection by 1e25 and its down projection by 1e-25 leaves the forward
/// pass as it was, but the down projection's gradient grows to ~1e22, whose square overflows f32.
fn gradient_overflow_is_named(device: Device) {
    use burn::module::Param;
    use burn::tensor::Tensor;
    let ad = device.autodiff();
    let tok = tokenizer();
    let mut m = model(&tok, &ad);
    let scaled = |p: &Param<Tensor<2>>, s: f32| Param::initialized(p.id, p.val().mul_scalar(s).detach().require_grad());
    let mlp = &mut m.layers[0].mlp;
    mlp.up_proj.weight = scaled(&mlp.up_proj.weight, 1e25);
    mlp.down_proj.weight = scaled(&mlp.down_proj.weight, 1e-25);
    let dir = temp_dir("overflow");
    let cfg = config(4);
    let run = RunDir::create(&dir, &cfg, &tok).unwrap();
    let mut obs = RunObserver { run: &run, inner: &mut NoObserver };
    let err = train(m, &examples(&tok, 3, 16), None, &cfg, None, &mut obs).err().unwrap();
    let TrainError::NonFiniteGradient { step: 1, fault: GradientFault::Overflow { largest: Some((name, _)) }, .. } =
        &err
    else {
        panic!("expected an overflowing gradient at step 1, got: {err}");
    };
    assert!(name.contains("down_proj"), "{err}");
    assert!(err.to_string().contains(name.as_str()) && err.to_string().contains("the last good one is kept"), "{err}");
    assert!(run.checkpoints().is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A checkpoint whose optimizer state holds a NaN (a damaged file, or one saved by a diverged
/// run elsewhere) is refused at resume, naming the file and the moment tensor: resuming from it
/// would turn every later update into NaN.
#[test]
fn optimizer_state_holding_nan_is_refused_at_resume() {
    use starling_model::checkpoint::HostTensor;
    use starling_model::checkpoint::WeightSource;
    use starling_model::checkpoint::files::map_file;
    use starling_model::checkpoint::safetensors::{SafetensorsSource, serialize_f32};
    use std::collections::{BTreeMap, HashMap};
    let ad = cpu().autodiff();
    let tok = tokenizer();
    let cfg = config(2);
    let dir = temp_dir("nan-optimizer");
    let run = RunDir::create(&dir, &cfg, &tok).unwrap();
    let mut obs = RunObserver { run: &run, inner: &mut NoObserver };
    train(model(&tok, &ad), &examples(&tok, 5, 40), None, &cfg, None, &mut obs).unwrap();
    assert!(run.resume(&ad).unwrap().is_some(), "a sound checkpoint resumes");
    let opt = run.latest_checkpoint().unwrap().1.join("optimizer.safetensors");
    let source = SafetensorsSource::new(opt.clone(), vec![(opt.clone(), map_file(&opt).unwrap())]).unwrap();
    let mut tensors: BTreeMap<String, HostTensor> =
        source.names().into_iter().map(|n| (n.clone(), source.load(&n).unwrap())).collect();
    drop(source);
    let name = tensors.keys().nth(1).unwrap().clone();
    tensors.get_mut(&name).unwrap().data[3] = f32::NAN;
    std::fs::write(&opt, serialize_f32(&tensors, HashMap::new()).unwrap()).unwrap();
    let err = run.resume(&ad).err().unwrap().to_string();
    assert!(
        err.contains("optimizer.safetensors") && err.contains(&format!("`{name}`")) && err.contains("NaN"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

macro_rules! on_both_devices {
    ($($name:ident),*) => {
        mod on_cpu { $( #[test] fn $name() { super::$name(super::cpu()) } )* }
        mod on_wgpu { $( #[test] fn $name() { super::$name(super::wgpu()) } )* }
    };
}

on_both_devices!(
    loss_falls,
    resume_is_exact,
    nothing_to_learn_is_an_error,
    accumulation_matches_a_big_batch,
    two_devices_match_one_device_on_the_whole_batch,
    nan_loss_stops_training,
    gradient_overflow_is_named
);
