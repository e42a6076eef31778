//! Quiet-STaR end to end on a tiny model: training moves the mixing head and the thought
//! markers with a finite loss (CPU and wgpu), the model starts exactly at the base model,
//! thoughtful KV-cached generation equals the thought-parallel reference token for token, and
//! checkpoints round-trip and resume.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use starling_model::generate::GenerateConfig;
use starling_model::weights::init_transformer;
use starling_model::{ModelConfig, Tokenizer};
use starling_quiet::analyze::{continuation_deltas, token_deltas, token_deltas_batch, token_deltas_from};
use starling_quiet::checkpoint::{checkpoint_files, load_quiet};
use starling_quiet::config::{MixingWeight, PolicyReduction, QuietPreset};
use starling_quiet::config::{Thinking, ThoughtSource};
use starling_quiet::eval::{OfficialOptions, official_scores};
use starling_quiet::generate::generate_thoughtful;
use starling_quiet::inside::look_inside;
use starling_quiet::loss::{quiet_gradients, quiet_loss};
use starling_quiet::model::ThoughtState;
use starling_quiet::probe::{next_token_with, sample_at};
use starling_quiet::sample::sample_thoughts;
use starling_quiet::trainer::{NoObserver, QuietRun, QuietRunConfig, train_quiet, train_quiet_data_parallel};
use starling_quiet::{QuietConfig, QuietModel};
use starling_thought::Kernel;
use starling_train::trainer::TrainConfig;

/// burn's device RNG is process-wide per backend: tests that sample thoughts take turns so each
/// one's seeded draws are its own (the resume test compares two runs draw for draw).
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_turn() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tokenizer() -> Tokenizer {
    Tokenizer::char_level("0123456789+=-\n ", &["<pad>"]).unwrap()
}

fn small_quiet() -> QuietConfig {
    QuietConfig { n_thought: 3, n_talk: 2, n_passes: 2, policy_loss_weight: 1.0, ..QuietConfig::default() }
}

fn model(device: &Device, seed: u64) -> (QuietModel, Tokenizer) {
    model_with(tokenizer(), device, seed)
}

fn model_with(tok: Tokenizer, device: &Device, seed: u64) -> (QuietModel, Tokenizer) {
    let c =
        ModelConfig::builder(tok.vocab_size()).layers(2).hidden(32).heads(4, 2).ffn(64).context(64).build().unwrap();
    let lm = init_transformer(&c, seed, device).unwrap();
    (QuietModel::new(lm, &tok, small_quiet(), seed).unwrap(), tok)
}

fn seqs(tok: &Tokenizer) -> Vec<Vec<u32>> {
    ["12+34=46\n", "51+17=68\n", "20+22=42\n", "33+44=77\n"].iter().map(|s| tok.encode(s, false).unwrap()).collect()
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as().unwrap()
}

fn train_cfg(steps: usize) -> QuietRunConfig {
    QuietRunConfig {
        train: TrainConfig {
            steps,
            batch_size: 2,
            max_len: 9,
            lr: 1e-2,
            warmup_steps: 0,
            seed: 3,
            ..TrainConfig::default()
        },
        quiet: small_quiet(),
        loss_chunk: None,
        thinking: Default::default(),
    }
}

fn short_training_moves_the_quiet_parameters(device: Device, kernel: Kernel) {
    let (m, tok) = model(&device.clone().autodiff(), 1);
    let before = (host(m.mixing.output.weight.val()), host(m.start_thought.val()), host(m.end_thought.val()));
    let (m, history) = train_quiet(m, &seqs(&tok), &train_cfg(3), kernel, None, None, &mut NoObserver).unwrap();
    assert_eq!(history.len(), 3);
    for h in &history {
        assert!(h.stats.loss.is_finite() && h.stats.talk_nll.is_finite() && h.stats.policy_loss.is_finite(), "{h:?}");
    }
    let after = (host(m.mixing.output.weight.val()), host(m.start_thought.val()), host(m.end_thought.val()));
    assert_ne!(before.0, after.0, "the mixing head's last layer did not move");
    assert_ne!(before.1, after.1, "the start-of-thought embedding did not move");
    assert_ne!(before.2, after.2, "the end-of-thought embedding did not move");
}

#[test]
fn short_training_on_cpu() {
    let _turn = rng_turn();
    short_training_moves_the_quiet_parameters(Device::flex(), Kernel::Auto);
}

#[test]
fn short_training_on_wgpu_with_the_fused_kernel() {
    let _turn = rng_turn();
    let (device, _) = starling_model::device::init_wgpu().expect("a wgpu adapter (apt install mesa-vulkan-drivers)");
    short_training_moves_the_quiet_parameters(device, Kernel::Fused);
}

#[test]
fn training_starts_exactly_at_the_base_model() {
    let _turn = rng_turn();
    let device = Device::flex().autodiff();
    let (m, tok) = model(&device, 2);
    device.seed(1);
    let (_, stats) = quiet_loss(&m, &m.valid(), &seqs(&tok)[..2], &Thinking::default(), Kernel::Split);
    assert_eq!(stats.mix_weight, 0.0);
    assert!((stats.talk_nll - stats.talk_nll_base).abs() < 1e-6, "{stats:?}");
}

/// The thought-parallel path (all positions think at once through the attention op) for the
/// last position of `ids`: greedy thought, mixed logits → argmax.
fn reference_next(m: &QuietModel, ids: &[u32], kernel: Kernel) -> (u32, Vec<u32>) {
    let (predictions, thoughts) = reference_predictions(m, ids, kernel);
    (*predictions.mixed.last().unwrap(), thoughts)
}

/// The likeliest next token at every position of `ids`, by the base model, after the thought and
/// mixed (greedy thoughts).
struct Likeliest {
    base: Vec<u32>,
    post: Vec<u32>,
    mixed: Vec<u32>,
}

/// The reference computation, op by op: [`Likeliest`] at every position, and the last position's
/// thought.
fn reference_predictions(m: &QuietModel, ids: &[u32], kernel: Kernel) -> (Likeliest, Vec<u32>) {
    let device = m.device();
    let l = ids.len();
    let d = m.hidden_size();
    let nt = m.config.n_thought;
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, l]),
        &device,
    );
    let thoughts = sample_thoughts(m, tokens.clone(), &[0], 1, 0.0, kernel);
    let (h_base, cache) = m.base_pass(tokens, &[0]);
    let mut state = ThoughtState::new(&cache, m.lm.config().num_layers, &[0], 1, kernel);
    let block = Tensor::cat(
        vec![
            m.marker_block(false, 1, l),
            m.lm.embed(thoughts.clone().reshape([1, nt * l])).reshape([1, nt, l, d]),
            m.marker_block(true, 1, l),
        ],
        1,
    );
    let h_post = m.thought_steps(block, &mut state).narrow(1, nt + 1, 1);
    let h_base = h_base.reshape([1, 1, l, d]);
    let (mixed, _) = m.mix(h_base.clone(), h_post.clone());
    let argmax = |h: Tensor<4>| -> Vec<u32> {
        let ids: Vec<i64> = m.logits4(h).argmax(3).into_data().try_into_vec_as().unwrap();
        ids.into_iter().map(|i| i as u32).collect()
    };
    let th: Vec<i64> = thoughts.into_data().try_into_vec_as().unwrap();
    let likeliest = Likeliest { base: argmax(h_base), post: argmax(h_post), mixed: argmax(mixed) };
    (likeliest, (0..nt).map(|t| th[t * l + l - 1] as u32).collect())
}

#[test]
fn thoughtful_generation_equals_the_reference_path() {
    let _turn = rng_turn();
    let device = Device::flex();
    // A few training steps so the mixing head is not zero.
    let (m, tok) = model(&device.clone().autodiff(), 4);
    let (m, _) = train_quiet(m, &seqs(&tok), &train_cfg(4), Kernel::Auto, None, None, &mut NoObserver).unwrap();
    // Open the mix (w = 0.4 everywhere) so the thought decides part of every prediction.
    let mut m = m.valid();
    let bias = m.mixing.output.bias.take().unwrap();
    m.mixing.output.bias = Some(burn::module::Param::initialized(bias.id, Tensor::full([1], 0.4, &device)));
    let prompts = vec![tok.encode("12+3", false).unwrap(), tok.encode("5", false).unwrap()];
    let cfg = GenerateConfig { max_new_tokens: 6, ..GenerateConfig::default() };
    let got = generate_thoughtful(&m, &tok, &prompts, &cfg, 0.0, &mut |_, _| {}).unwrap();
    for (prompt, g) in prompts.iter().zip(&got) {
        assert_eq!(g.tokens.len(), 6);
        let mut ids = prompt.clone();
        for t in &g.tokens {
            let (next, thought) = reference_next(&m, &ids, Kernel::Split);
            assert_eq!(t.thought_ids, thought, "thought after {:?}", tok.decode(&ids, false).unwrap());
            assert_eq!(t.id, next, "token after {:?}", tok.decode(&ids, false).unwrap());
            assert!(t.mix_weight > 0.0 && t.mix_weight <= 1.0, "{}", t.mix_weight);
            ids.push(next);
        }
    }
    // Same on wgpu through the fused kernel.
    let (wgpu, _) = starling_model::device::init_wgpu().unwrap();
    let files = checkpoint_files(&m, &tok).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let (mw, _) = load_quiet(dir.path(), &wgpu).unwrap();
    let mut ids = prompts[0].clone();
    for t in &got[0].tokens {
        let (next, thought) = reference_next(&mw, &ids, Kernel::Fused);
        assert_eq!((next, thought), (t.id, t.thought_ids.clone()));
        ids.push(next);
    }
}

#[test]
fn a_sliding_window_applies_alike_to_generation_and_to_thought_parallel_attention() {
    let _turn = rng_turn();
    let device = Device::flex();
    let tok = tokenizer();
    let mut c =
        ModelConfig::builder(tok.vocab_size()).layers(2).hidden(32).heads(4, 2).ffn(64).context(64).build().unwrap();
    // Narrower than a prompt plus its thought: the window cuts real keys and thought keys.
    c.sliding_window = Some(5);
    let ad = device.clone().autodiff();
    let m = QuietModel::new(init_transformer(&c, 6, &ad).unwrap(), &tok, small_quiet(), 6).unwrap();
    let (m, _) = train_quiet(m, &seqs(&tok), &train_cfg(2), Kernel::Split, None, None, &mut NoObserver).unwrap();
    let mut m = m.valid();
    let bias = m.mixing.output.bias.take().unwrap();
    m.mixing.output.bias = Some(burn::module::Param::initialized(bias.id, Tensor::full([1], 0.4, &device)));
    let prompt = tok.encode("12+34=46\n5", false).unwrap();
    let cfg = GenerateConfig { max_new_tokens: 4, ..GenerateConfig::default() };
    let got = generate_thoughtful(&m, &tok, std::slice::from_ref(&prompt), &cfg, 0.0, &mut |_, _| {}).unwrap();
    let mut ids = prompt.clone();
    for t in &got[0].tokens {
        let (next, thought) = reference_next(&m, &ids, Kernel::Split);
        assert_eq!((next, &thought), (t.id, &t.thought_ids), "after {:?}", tok.decode(&ids, false).unwrap());
        // The values too, not only the argmax: the thought's gain and mixing weight.
        let with_next = [ids.as_slice(), &[next]].concat();
        let d = token_deltas_from(&m, &[with_next], &[ids.len()], 0.0, Kernel::Split).remove(0).remove(0);
        assert!((d.delta() - t.logp_gain).abs() < 1e-4, "gain {} vs {}", d.delta(), t.logp_gain);
        assert!((d.mix_weight - t.mix_weight).abs() < 1e-5, "w {} vs {}", d.mix_weight, t.mix_weight);
        ids.push(next);
    }
}

#[test]
fn runs_resume_from_their_checkpoints() {
    let _turn = rng_turn();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex().autodiff();
    let mut cfg = train_cfg(4);
    cfg.train.save_every = Some(2);
    let (m, tok) = model(&device, 7);
    let run = QuietRun::open(dir.path(), cfg.clone()).unwrap();
    let (full, _) = train_quiet(m, &seqs(&tok), &cfg, Kernel::Auto, None, Some((&run, &tok)), &mut NoObserver).unwrap();
    // Resume from step 2 and run the last two steps again: same weights.
    std::fs::remove_dir_all(dir.path().join("checkpoints/step-00000004")).unwrap();
    let r = run.resume(&device).unwrap().unwrap();
    let (m2, opt, step) = (r.model, r.optimizer, r.step);
    assert_eq!(step, 2);
    assert_eq!(run.read_metrics().len(), 2);
    let (resumed, _) =
        train_quiet(m2, &seqs(&tok), &cfg, Kernel::Auto, Some((opt, step)), Some((&run, &tok)), &mut NoObserver)
            .unwrap();
    assert_eq!(host(full.mixing.output.weight.val()), host(resumed.mixing.output.weight.val()));
    assert_eq!(host(full.start_thought.val()), host(resumed.start_thought.val()));
    assert_eq!(run.read_metrics().len(), 4);
    // Other settings are refused.
    let mut other = cfg.clone();
    other.quiet.n_thought = 5;
    assert!(QuietRun::open(dir.path(), other).is_err());
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let _turn = rng_turn();
    let bad = QuietConfig { n_thought: 0, ..QuietConfig::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("n_thought"));
    let (m, tok) = model(&Device::flex(), 1);
    let err = m.check_length(60).unwrap_err().to_string();
    assert!(err.contains("context"), "{err}");
    let long = vec![tok.encode("1", false).unwrap()[0]; 60];
    let cfg = GenerateConfig { max_new_tokens: 2, ..GenerateConfig::default() };
    assert!(generate_thoughtful(&m, &tok, &[long], &cfg, 0.0, &mut |_, _| {}).is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(load_quiet(dir.path(), &Device::flex()).unwrap_err().to_string().contains("not a Quiet-STaR checkpoint"));
}

#[test]
fn scoring_a_padded_batch_equals_scoring_each_sequence() {
    let _turn = rng_turn();
    let device = Device::flex();
    let (m, tok) = model(&device.clone().autodiff(), 5);
    // A few steps so the mixing head is no longer zero and thoughts change the predictions.
    let (m, _) = train_quiet(m, &seqs(&tok), &train_cfg(3), Kernel::Split, None, None, &mut NoObserver).unwrap();
    let m = m.valid();
    let texts = ["12+34=46\n51", "7+8=15\n", "20+22=42\n33+4"];
    let batch: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, false).unwrap()).collect();
    let together = token_deltas_batch(&m, &batch, 0.0, Kernel::Split);
    assert!(together.iter().flatten().any(|d| d.mix_weight > 0.0), "the trained head should mix something in");
    for (seq, joint) in batch.iter().zip(&together) {
        let alone = token_deltas(&m, seq, 0.0, Kernel::Split);
        assert_eq!(alone.len(), seq.len() - 1);
        assert_eq!(joint.len(), alone.len());
        for (a, j) in alone.iter().zip(joint) {
            assert_eq!((a.index, a.id, &a.thought_ids), (j.index, j.id, &j.thought_ids));
            for (x, y) in [
                (a.logp_base, j.logp_base),
                (a.logp_thought, j.logp_thought),
                (a.logp_post, j.logp_post),
                (a.mix_weight, j.mix_weight),
            ] {
                assert!((x - y).abs() < 1e-4, "{a:?}\nvs\n{j:?}");
            }
        }
    }
}

#[test]
fn mixing_weight_is_in_range_and_never_stuck() {
    let device = Device::flex().autodiff();
    let (m, _) = model(&device, 6);
    let d = m.hidden_size();
    let h = || Tensor::<4>::ones([1, 1, 1, d], &device).require_grad();
    let weight_and_slope = |bias: f32| {
        let mut head = m.mixing.clone();
        head.output.bias = Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![bias], [1]), &device)));
        let w = head.weight(h(), h(), MixingWeight::TanhAbs);
        let grads = w.clone().sum().backward();
        let slope = host(head.output.bias.as_ref().unwrap().val().grad(&grads).unwrap())[0];
        (host(w)[0], slope)
    };
    // At the start (z = 0): w = 0 exactly, and the gradient is not zero.
    assert_eq!(weight_and_slope(0.0), (0.0, 1.0));
    // Pushed below 0, w rises again, so the loss pushes z back up (no run-away to −∞).
    let (w, slope) = weight_and_slope(-0.5);
    assert!((w - 0.5f32.tanh()).abs() < 1e-6 && slope < 0.0, "{w} {slope}");
    // Far above: w stays below 1.
    let (w, slope) = weight_and_slope(20.0);
    assert!(w <= 1.0 && slope >= 0.0, "{w} {slope}");
}

#[test]
fn checkpoints_load_from_files_in_memory_as_the_browser_does() {
    let device = Device::flex();
    let (m, tok) = model(&device, 8);
    let files: std::collections::HashMap<String, Vec<u8>> = checkpoint_files(&m, &tok).unwrap().into_iter().collect();
    let (back, tok2) = starling_quiet::checkpoint::from_files(files.clone(), &device).unwrap();
    assert_eq!(host(m.start_thought.val()), host(back.start_thought.val()));
    assert_eq!(host(m.mixing.input.weight.val()), host(back.mixing.input.weight.val()));
    assert_eq!(host(m.lm.embed_tokens.val()), host(back.lm.embed_tokens.val()));
    assert_eq!(back.config, m.config);
    assert_eq!(tok.encode("12+3", false).unwrap(), tok2.encode("12+3", false).unwrap());
    // A missing file and a foreign quiet.safetensors are named in the error.
    let mut missing = files.clone();
    missing.remove("quiet.safetensors");
    let err = starling_quiet::checkpoint::from_files(missing, &device).err().unwrap().to_string();
    assert!(err.contains("no quiet.safetensors"), "{err}");
    let mut foreign = files;
    foreign.insert("quiet_config.json".into(), b"{\"n_thought\": 0}".to_vec());
    let err = starling_quiet::checkpoint::from_files(foreign, &device).err().unwrap().to_string();
    assert!(err.contains("n_thought"), "{err}");
}

#[test]
fn the_official_mixing_weight_is_the_head_output_itself() {
    let device = Device::flex().autodiff();
    let (m, _) = model(&device, 6);
    let d = m.hidden_size();
    let h = || Tensor::<4>::ones([1, 1, 1, d], &device).require_grad();
    for bias in [0.0f32, -0.5, 2.5] {
        let mut head = m.mixing.clone();
        head.output.bias = Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![bias], [1]), &device)));
        // The last layer starts at zero weights, so z is its bias: official w = z, unbounded,
        // with slope 1 everywhere.
        let w = head.weight(h(), h(), MixingWeight::Linear);
        let grads = w.clone().sum().backward();
        let slope = host(head.output.bias.as_ref().unwrap().val().grad(&grads).unwrap())[0];
        assert_eq!((host(w)[0], slope), (bias, 1.0));
    }
}

/// One loss evaluation of `cfg` on the first two sequences, thoughts sampled with `seed`.
fn loss_with(cfg: QuietConfig, seed: u64) -> starling_quiet::loss::LossStats {
    let _turn = rng_turn();
    let device = Device::flex().autodiff();
    let (mut m, tok) = model(&device, 2);
    // A mixing head away from zero, so thoughts change the prediction and rewards are not 0.
    m.mixing.output.bias =
        Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![0.3f32], [1]), &device)));
    m.config = cfg;
    device.seed(seed);
    quiet_loss(&m, &m.valid(), &seqs(&tok)[..2], &Thinking::default(), Kernel::Split).1
}

#[test]
fn the_official_policy_loss_averages_over_thought_tokens() {
    let sum = QuietConfig { policy_reduction: PolicyReduction::Sum, ..small_quiet() };
    let mean = QuietConfig { policy_reduction: PolicyReduction::Mean, ..small_quiet() };
    let (a, b) = (loss_with(sum.clone(), 5), loss_with(mean, 5));
    // Same thoughts, same rewards: the mean is the sum over the n_thought tokens divided by n.
    assert_eq!(a.mean_reward, b.mean_reward);
    assert!(a.policy_loss != 0.0, "{a:?}");
    let n = sum.n_thought as f64;
    assert!((a.policy_loss / n - b.policy_loss).abs() < 1e-6 * a.policy_loss.abs().max(1.0), "{a:?} {b:?}");
}

#[test]
fn with_one_pass_the_reward_is_the_improvement_over_the_base_prediction() {
    // Without clamping, the mean reward over scored positions is Σ (log p_mixed − log p_base)
    // over every talk target, divided by the scored positions: with batch B, length L and
    // n_talk K, B·Σ_k (L − k) targets and B·(L − 1) scored positions.
    let one = QuietConfig { n_passes: 1, drop_negative_rewards: false, ..small_quiet() };
    let s = loss_with(one.clone(), 7);
    let (b, l, k) = (2.0, 9.0, one.n_talk as f64);
    let targets = b * (1..=one.n_talk).map(|k| l - k as f64).sum::<f64>();
    let scored = b * (l - 1.0);
    let expected = (s.talk_nll_base - s.talk_nll) * targets / scored;
    assert!(s.mean_reward != 0.0, "one pass must still give a reward: {s:?}");
    assert!((s.mean_reward - expected).abs() < 1e-4, "reward {} vs {expected} (k = {k})", s.mean_reward);
    assert!(s.policy_loss != 0.0, "one pass must still give a policy gradient: {s:?}");
}

#[test]
fn the_official_preset_is_the_official_objective() {
    let o = QuietPreset::Official.config();
    // quiet-star-train.py: n_ahead 12 → 12 − 3 = 9 sampled thought tokens in training; talk 4,
    // 2 passes, original_loss_weight 0.5, policy_loss_beta 1e6, reinforce temperature 3,
    // negative rewards removed, ×100 marker embeddings; no post-thought term.
    assert_eq!((o.n_thought, o.n_talk, o.n_passes), (9, 4, 2));
    assert_eq!((o.base_loss_weight, o.talk_loss_weight, o.policy_loss_weight), (0.5, 0.5, 1e6));
    assert_eq!((o.reinforce_temperature, o.embedding_multiplier, o.drop_negative_rewards), (3.0, 100.0, true));
    assert_eq!(
        (o.post_thought_loss_weight, o.mixing, o.policy_reduction),
        (0.0, MixingWeight::Linear, PolicyReduction::Mean)
    );
    assert!(QuietPreset::Official.constant_lr() && !QuietPreset::Starling.constant_lr());
    assert_eq!(QuietPreset::Starling.config(), QuietConfig::default());
    // Checkpoints saved before the preset fields existed keep their behaviour.
    let old: QuietConfig = serde_json::from_str(r#"{"n_thought": 10, "n_talk": 4}"#).unwrap();
    assert_eq!((old.mixing, old.policy_reduction), (MixingWeight::TanhAbs, PolicyReduction::Sum));
    assert_eq!("official".parse::<QuietPreset>(), Ok(QuietPreset::Official));
    assert!("offical".parse::<QuietPreset>().unwrap_err().contains("official, starling"));
}

#[test]
fn gradient_accumulation_matches_one_large_batch() {
    let _turn = rng_turn();
    let device = Device::flex().autodiff();
    // Near-greedy thoughts, so both runs think the same; one pass, so the policy term is live.
    let quiet = QuietConfig { n_passes: 1, thought_temperature: 1e-6, ..small_quiet() };
    let step = |batch_size: usize, grad_accum: usize| {
        let (mut m, tok) = model(&device, 9);
        m.mixing.output.bias =
            Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![0.3f32], [1]), &device)));
        let mut cfg = train_cfg(1);
        cfg.quiet = quiet.clone();
        cfg.train.batch_size = batch_size;
        cfg.train.grad_accum = grad_accum;
        let (_, history) = train_quiet(m, &seqs(&tok), &cfg, Kernel::Split, None, None, &mut NoObserver).unwrap();
        history[0].clone()
    };
    let (large, accumulated) = (step(4, 1), step(2, 2));
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
    assert!(large.stats.policy_loss != 0.0, "{large:?}");
    for (what, a, b) in [
        ("loss", large.stats.loss, accumulated.stats.loss),
        ("policy loss", large.stats.policy_loss, accumulated.stats.policy_loss),
        ("gradient norm", large.grad_norm, accumulated.grad_norm),
    ] {
        assert!(close(a, b), "{what}: one batch of 4 gives {a}, 2 × 2 accumulated {b}");
    }
}

/// Data parallel over two devices (the CPU twice), each with a copy and a slice of the batch,
/// makes one device's step on the whole batch — with near-greedy thoughts, so both think the same
/// — for an even batch (2 + 2) and an odd one (2 + 1, the slices weighted by their share).
#[test]
fn two_devices_match_one_device_on_the_whole_batch() {
    let _turn = rng_turn();
    let device = Device::flex().autodiff();
    let quiet = QuietConfig { n_passes: 1, thought_temperature: 1e-6, ..small_quiet() };
    let step = |batch_size: usize, more: &[Device]| {
        let (mut m, tok) = model(&device, 9);
        m.mixing.output.bias =
            Some(Param::from_tensor(Tensor::<1>::from_data(TensorData::new(vec![0.3f32], [1]), &device)));
        let mut cfg = train_cfg(2);
        cfg.quiet = quiet.clone();
        cfg.train.batch_size = batch_size;
        let (m, history) =
            train_quiet_data_parallel(m, more, &seqs(&tok), &cfg, Kernel::Split, None, None, &mut NoObserver).unwrap();
        (host(m.mixing.output.weight.val()), history)
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
    for batch_size in [4, 3] {
        let (one_weights, one) = step(batch_size, &[]);
        let (two_weights, two) = step(batch_size, &[Device::flex().autodiff()]);
        assert!(one[0].stats.policy_loss != 0.0, "{:?}", one[0]);
        for (a, b) in one.iter().zip(&two) {
            for (what, x, y) in [
                ("loss", a.stats.loss, b.stats.loss),
                ("policy loss", a.stats.policy_loss, b.stats.policy_loss),
                ("mixing weight", a.stats.mix_weight, b.stats.mix_weight),
                ("gradient norm", a.grad_norm, b.grad_norm),
            ] {
                assert!(close(x, y), "batch {batch_size}, step {}: {what} {x} on one device, {y} on two", a.step);
            }
        }
        let largest = one_weights.iter().zip(&two_weights).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(largest < 1e-5, "batch {batch_size}: the mixing head differs by {largest}");
    }
}

/// A trained model, to score with: the mixing head no longer zero.
fn trained_valid(tok: Tokenizer, seed: u64) -> (QuietModel, Tokenizer) {
    let device = Device::flex();
    let (m, tok) = model_with(tok, &device.clone().autodiff(), seed);
    let (m, _) = train_quiet(m, &seqs(&tok), &train_cfg(3), Kernel::Split, None, None, &mut NoObserver).unwrap();
    (m.valid(), tok)
}

fn scored_positions_equal_full_scoring(m: &QuietModel, tok: &Tokenizer, kernel: Kernel) {
    let texts = ["12+34=46\n51", "7+8=15\n", "20+22=42\n33+4"];
    let batch: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, false).unwrap()).collect();
    let full = token_deltas_batch(m, &batch, 0.0, kernel);
    let from = [9, 5, 11];
    let part = token_deltas_from(m, &batch, &from, 0.0, kernel);
    for ((f, p), &start) in full.iter().zip(&part).zip(&from) {
        assert_eq!(p.len(), f.len() + 1 - start, "one value per token from {start}");
        for (a, b) in f[start - 1..].iter().zip(p) {
            assert_eq!((a.index, a.id, &a.thought_ids), (b.index, b.id, &b.thought_ids));
            for (x, y) in [
                (a.logp_base, b.logp_base),
                (a.logp_thought, b.logp_thought),
                (a.logp_post, b.logp_post),
                (a.mix_weight, b.mix_weight),
            ] {
                assert!((x - y).abs() < 1e-4, "{kernel:?}: {a:?}\nvs\n{b:?}");
            }
        }
    }
    assert!(part.iter().flatten().any(|d| (d.logp_thought - d.logp_base).abs() > 1e-4), "thoughts change something");
}

/// `check` on a trained model on the CPU (split kernel) and on wgpu (fused kernels); returns the
/// CPU model.
fn on_cpu_and_wgpu(check: impl Fn(&QuietModel, &Tokenizer, Kernel)) -> QuietModel {
    let (m, tok) = trained_valid(tokenizer(), 5);
    check(&m, &tok, Kernel::Split);
    let wgpu = starling_model::device::init_wgpu().expect("a wgpu adapter").0;
    check(&m.clone().to_device(&wgpu), &tok, Kernel::Fused);
    m
}

#[test]
fn thoughts_only_at_scored_positions_give_the_full_values_there() {
    let _turn = rng_turn();
    on_cpu_and_wgpu(scored_positions_equal_full_scoring);
}

fn inside_equals_the_analysis(m: &QuietModel, tok: &Tokenizer, kernel: Kernel) {
    let ids = tok.encode("12+34=46\n51", false).unwrap();
    let inside =
        starling_model::host::block_on(look_inside(m, &ids, 3, 0.0, kernel, &mut starling_model::host::Blocking))
            .unwrap();
    let deltas = token_deltas(m, &ids, 0.0, kernel);
    assert_eq!((inside.positions.len(), inside.steps), (ids.len(), m.config.n_thought + 2));
    // Position p predicts token p + 1: the same thought, weight and probabilities as the analysis.
    for (p, d) in deltas.iter().enumerate() {
        let at = &inside.positions[p];
        let next = at.next.expect("a next token before the end");
        assert_eq!((&at.thought_ids, next.id), (&d.thought_ids, d.id));
        for (x, y) in [
            (next.base, d.logp_base.exp()),
            (next.post, d.logp_post.exp()),
            (next.mixed, d.logp_thought.exp()),
            (at.mix_weight, d.mix_weight),
        ] {
            assert!((x - y).abs() < 1e-4, "{kernel:?} position {p}: {x} vs {y}");
        }
    }
    assert!(inside.positions.last().unwrap().next.is_none(), "the last token has no next token");
    // Each prediction's likeliest token (by the reference computation) is among the candidates,
    // and the likeliest mixed one comes first.
    let (likeliest, _) = reference_predictions(m, &ids, kernel);
    for (p, at) in inside.positions.iter().enumerate() {
        let c = &at.candidates;
        assert!((3..=9).contains(&c.len()), "the union of three top-3 lists: {c:?}");
        assert!(c.windows(2).all(|w| w[0].mixed >= w[1].mixed), "likeliest mixed first: {c:?}");
        assert!(c.iter().all(|x| [x.base, x.post, x.mixed].iter().all(|p| (0.0..=1.0).contains(p))));
        assert_eq!(c[0].id, likeliest.mixed[p], "{kernel:?} position {p}: {c:?}");
        for id in [likeliest.base[p], likeliest.post[p]] {
            assert!(c.iter().any(|x| x.id == id), "{kernel:?} position {p}: {id} is not a candidate: {c:?}");
        }
    }
    assert!(inside.positions.iter().any(|at| at.mix_weight > 1e-3), "the trained head mixes");
}

#[test]
fn looking_inside_a_thought_shows_what_the_analysis_computes() {
    let _turn = rng_turn();
    let m = on_cpu_and_wgpu(inside_equals_the_analysis);
    // Bad input is refused, not panicked on.
    let empty = starling_model::host::block_on(look_inside(
        &m,
        &[],
        3,
        0.0,
        Kernel::Split,
        &mut starling_model::host::Blocking,
    ));
    assert!(empty.unwrap_err().to_string().contains("no tokens"));
}

fn letters_tokenizer() -> Tokenizer {
    Tokenizer::char_level("abcdefghijklmnopqrstuvwxyzABCDEQ:?()0123456789+=-\n ", &["<pad>"]).unwrap()
}

#[test]
fn the_official_metric_renormalises_the_answer_over_its_alphabet() {
    let _turn = rng_turn();
    let device = Device::flex();
    let (m, tok) = model_with(letters_tokenizer(), &device, 3);
    let choices: Vec<String> = ["bank", "park", "zoo"].iter().map(|s| s.to_string()).collect();
    let items = vec![
        starling_tasks::csqa::item("c1", "where is money", &choices, 1),
        starling_tasks::gsm8k::item("g1", "how many is 3 and 4?", "17"),
    ];
    let opts = OfficialOptions {
        samples: 2,
        temperature: 1.0,
        seed: 4,
        batch_size: 2,
        kernel: Kernel::Split,
        think_everywhere: false,
    };
    let scores = official_scores(&m, &tok, &items, &opts, &mut |_| {}).unwrap();
    // By hand: the base model over the official text, each alphabet token's softmax restricted
    // to the alphabet (letters, or digits, and the newline), multiplied over the answer.
    for (item, score) in items.iter().zip(&scores) {
        let text = starling_tasks::official::official_text(item);
        let prompt = tok.encode(&text.prompt, false).unwrap();
        let ids: Vec<u32> = [prompt.clone(), tok.encode(&text.answer, false).unwrap()].concat();
        let mut alphabet: Vec<u32> = text.alphabet.iter().map(|a| tok.encode(a, false).unwrap()[0]).collect();
        alphabet.push(tok.encode("\n", false).unwrap()[0]);
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, ids.len()]),
            &device,
        );
        let (h, _) = m.base_pass(input, &[0]);
        let logits = host(m.lm.logits(h));
        let v = tok.vocab_size();
        let mut p = 1.0f64;
        let mut scored = 0;
        for index in prompt.len()..ids.len() {
            if !alphabet.contains(&ids[index]) {
                continue; // the space before the answer
            }
            let row = &logits[(index - 1) * v..index * v];
            let z: f64 = alphabet.iter().map(|&a| (row[a as usize] as f64).exp()).sum();
            p *= (row[ids[index] as usize] as f64).exp() / z;
            scored += 1;
        }
        assert_eq!(score.scored_tokens, scored, "{}", item.id);
        assert_eq!(scored, if item.choices.is_empty() { 3 } else { 2 }, "digits or letter, and the newline");
        assert!((score.p_base - p).abs() < 1e-5, "{}: {} vs {p} by hand", item.id, score.p_base);
        // An untrained mixing head (w = 0): thoughts change nothing.
        for &pt in &score.p_thought {
            assert!((pt - p).abs() < 1e-5, "{}: {pt} with thoughts vs {p}", item.id);
        }
    }
}

#[test]
fn the_official_metric_samples_thoughts_reproducibly() {
    let _turn = rng_turn();
    let (m, tok) = trained_valid(letters_tokenizer(), 9);
    let items = vec![
        starling_tasks::gsm8k::item("a", "12+34=", "46"),
        starling_tasks::gsm8k::item("b", "7+8=", "15"),
        starling_tasks::gsm8k::item("c", "20+22=", "42"),
    ];
    let opts = OfficialOptions {
        samples: 3,
        temperature: 1.0,
        seed: 7,
        batch_size: 2,
        kernel: Kernel::Split,
        think_everywhere: false,
    };
    let run = |opts: &OfficialOptions| official_scores(&m, &tok, &items, opts, &mut |_| {}).unwrap();
    let (a, b) = (run(&opts), run(&opts));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.p_thought, y.p_thought, "same seed, same samples");
        assert_eq!(x.p_thought.len(), 3);
        assert!(x.p_thought.iter().all(|p| (0.0..=1.0).contains(p)));
    }
    // The trained head mixes the thought in, and different samples give different answers' odds.
    assert!(a.iter().any(|s| s.p_thought.iter().any(|p| (p - s.p_base).abs() > 1e-6)));
    assert!(a.iter().any(|s| s.p_thought.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-9)));
    // Greedy thoughts: thinking only where the answer is predicted gives what thinking at every
    // position gives there.
    let greedy = OfficialOptions { temperature: 0.0, ..opts };
    let everywhere = OfficialOptions { think_everywhere: true, ..greedy.clone() };
    for (x, y) in run(&greedy).iter().zip(&run(&everywhere)) {
        assert!(x.p_thought.iter().zip(&y.p_thought).all(|(p, q)| (p - q).abs() < 1e-5), "{x:?} vs {y:?}");
    }
}

#[test]
fn shared_prompts_give_what_whole_sequences_give() {
    let _turn = rng_turn();
    let (m, tok) = trained_valid(tokenizer(), 5);
    let enc = |t: &str| tok.encode(t, false).unwrap();
    let prompts = vec![enc("12+34="), enc("7+8=1"), enc("20+22=42\n33+4")];
    let conts = vec![vec![enc("46\n"), enc("47"), enc("5")], vec![enc("5\n")], vec![enc("4"), enc("7\n1+1=2")]];
    let wgpu = starling_model::device::init_wgpu().expect("a wgpu adapter").0;
    for (m, kernel) in [(m.clone(), Kernel::Split), (m.to_device(&wgpu), Kernel::Fused)] {
        let shared = continuation_deltas(&m, &prompts, &conts, 0.0, kernel);
        for ((p, cs), per_item) in prompts.iter().zip(&conts).zip(&shared) {
            for (c, got) in cs.iter().zip(per_item) {
                let whole = token_deltas_from(&m, &[[p.as_slice(), c].concat()], &[p.len()], 0.0, kernel).remove(0);
                assert_eq!(got.len(), c.len());
                for (a, b) in whole.iter().zip(got) {
                    assert_eq!((a.index, a.id, &a.thought_ids), (b.index, b.id, &b.thought_ids));
                    for (x, y) in
                        [(a.logp_base, b.logp_base), (a.logp_thought, b.logp_thought), (a.mix_weight, b.mix_weight)]
                    {
                        assert!((x - y).abs() < 1e-4, "{kernel:?}: {a:?}\nvs\n{b:?}");
                    }
                }
            }
        }
    }
}

/// The gradient of every parameter, flattened in a fixed order.
fn flat_grads(m: &QuietModel, grads: &burn::optim::GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a> {
        grads: &'a burn::optim::GradientsParams,
        out: Vec<Vec<f32>>,
    }
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                self.out.push(g.into_data().try_into_vec_as().unwrap());
            }
        }
    }
    let mut c = Collect { grads, out: Vec::new() };
    m.visit(&mut c);
    c.out
}

#[test]
fn chunked_vocabulary_loss_gives_the_gradients_of_the_whole_loss() {
    let _turn = rng_turn();
    let device = Device::flex().autodiff();
    let (m, tok) = model(&device, 12);
    // A few steps first, so every loss term (mixing, rewards) is non-trivial.
    let (m, _) = train_quiet(m, &seqs(&tok), &train_cfg(2), Kernel::Split, None, None, &mut NoObserver).unwrap();
    let batch = &seqs(&tok)[..2];
    let len = batch[0].len();
    // Thoughts everywhere (the paper), and pause thoughts at a few positions only.
    let pause = tok.token_to_id("-").unwrap();
    for thinking in
        [Thinking::default(), Thinking { positions: Some((2, len - 1)), source: ThoughtSource::Pause { token: pause } }]
    {
        device.seed(21);
        let (loss, whole) = quiet_loss(&m, &m.valid(), batch, &thinking, Kernel::Split);
        let reference = flat_grads(&m, &burn::optim::GradientsParams::from_grads(loss.mul_scalar(0.5).backward(), &m));
        assert!(reference.len() > 10, "gradients for the model, markers and mixing head");
        for chunk in [1, 3, 100] {
            device.seed(21);
            let (grads, stats) = quiet_gradients(&m, &m.valid(), batch, &thinking, Kernel::Split, 0.5, chunk);
            for (a, b) in [
                (whole.loss, stats.loss),
                (whole.talk_nll, stats.talk_nll),
                (whole.policy_loss, stats.policy_loss),
                (whole.mix_weight, stats.mix_weight),
            ] {
                assert!((a - b).abs() < 1e-5 * (1.0 + a.abs()), "chunk {chunk}: {whole:?}\nvs\n{stats:?}");
            }
            let got = flat_grads(&m, &grads);
            assert_eq!(got.len(), reference.len(), "chunk {chunk}: the same parameters have gradients");
            for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                let worst = g.iter().zip(r).map(|(x, y)| (x - y).abs() / (1e-3 + y.abs())).fold(0.0f32, f32::max);
                assert!(worst < 2e-3, "{thinking:?} chunk {chunk}, parameter {i}: relative difference {worst}");
            }
        }
    }
}

#[test]
fn probe_reads_the_thought_it_is_given() {
    let _turn = rng_turn();
    let device = Device::flex().autodiff();
    let (m, tok) = model(&device, 8);
    // A few steps, so the mixing weight is off 0 and the mixed prediction reads the thought.
    let (m, _) = train_quiet(m, &seqs(&tok), &train_cfg(3), Kernel::Split, None, None, &mut NoObserver).unwrap();
    let m = m.valid();
    let batch = &seqs(&tok)[..3];
    let pos = 4;
    let thoughts = sample_at(&m, batch, pos, 0.0, Kernel::Split);
    assert!(thoughts.iter().all(|t| t.len() == m.config.n_thought));
    let probe = next_token_with(&m, batch, pos, &thoughts, Kernel::Split);
    for (r, seq) in batch.iter().enumerate() {
        // The same greedy thought and the same three predictions as the whole-sequence analysis.
        let d = &token_deltas(&m, seq, 0.0, Kernel::Split)[pos];
        assert_eq!(d.index, pos + 1);
        assert_eq!(d.thought_ids, thoughts[r]);
        let id = seq[pos + 1] as usize;
        for (got, want) in
            [(probe[r].mixed[id], d.logp_thought), (probe[r].base[id], d.logp_base), (probe[r].post[id], d.logp_post)]
        {
            assert!((got - want).abs() < 1e-4, "row {r}: {got} vs {want}");
        }
    }
    // Another thought changes the post-thought prediction but not the base one; an empty
    // thought (start then end) is a valid intervention.
    let other: Vec<Vec<u32>> = thoughts.iter().map(|t| t.iter().map(|&x| (x + 1) % 10).collect()).collect();
    let swapped = next_token_with(&m, batch, pos, &other, Kernel::Split);
    assert_eq!(swapped[0].base, probe[0].base);
    assert_ne!(swapped[0].post, probe[0].post);
    let empty = next_token_with(&m, batch, pos, &vec![Vec::new(); 3], Kernel::Split);
    assert!(empty.iter().all(|p| p.mixed.iter().all(|v| v.is_finite())));
}
