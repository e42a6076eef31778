//! The built-in multi-hop demonstration end to end, tiny and seeded: every phase runs, every
//! condition is scored on every held-out answer, and the same seed gives the same numbers.

use burn::tensor::Device;
use starling_model::generate::GenerateConfig;
use starling_quiet::QuietConfig;
use starling_quiet::demo::DemoObserver;
use starling_quiet::generate::generate_thoughtful;
use starling_quiet::hops_demo::{
    HopsSettings, chart_svg, margins, report, rows, run_hops_demo, thought_length_svg, train_hops_model,
};
use starling_quiet::probe::{argmax, next_token_with, sample_at};
use starling_tasks::hops::{HopSplit, HopTask};
use starling_thought::Kernel;

/// The tests here sample on the device's one random stream; run concurrently, they would draw
/// from it in turns and no run would repeat itself. Each holds this while it runs.
static DEVICE_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Phases(Vec<String>);

impl DemoObserver for Phases {
    fn phase(&mut self, name: &str, _steps: usize) {
        self.0.push(name.to_string());
    }
}

fn tiny() -> HopsSettings {
    HopsSettings {
        task: HopTask { symbols: 4, max_hops: 3 },
        queries: 2,
        explicit_share: 0.5,
        pretrain_steps: 4,
        steps: 2,
        batch_size: 4,
        pretrain_lr: 3e-3,
        lr: 1e-3,
        layers: 1,
        hidden: 16,
        init_std: 0.1,
        seeds: vec![5],
        eval_docs: 24,
        same_compute_steps: Some(3),
        kernel: Kernel::Split,
        quiet: QuietConfig {
            n_thought: 3,
            n_talk: 2,
            n_passes: 2,
            policy_loss_weight: 1.0,
            initial_mixing_weight: 0.5,
            embedding_multiplier: 1.0,
            ..QuietConfig::default()
        },
    }
}

#[test]
fn tiny_seeded_demo_runs_every_phase_and_scores_every_answer() {
    let _rng = one_at_a_time();
    let s = tiny();
    let device = Device::flex();
    let mut phases = Phases(Vec::new());
    let (results, model) = run_hops_demo(&s, &device, &mut phases).unwrap();
    assert_eq!(
        phases.0,
        [
            "warm start",
            "plain LM",
            "quiet-star",
            "quiet-star without policy term",
            "pause thoughts",
            "random thoughts",
            "plain LM, same time",
            "evaluation"
        ]
    );
    let r = &results[0];
    assert_eq!(r.same_compute_steps, 3);
    for (name, per) in &r.rows {
        assert_eq!(per.count.iter().sum::<usize>(), s.eval_docs, "{name}: every held-out answer scored once");
        assert!(per.nll.iter().all(|v| v.is_finite() && *v >= 0.0), "{name}");
    }
    for name in rows::CONTROLS.iter().chain(&[rows::QUIET, rows::QUIET_W0, rows::QUIET_TRUE, rows::QUIET_SHUFFLED]) {
        assert!(r.row(name).is_some(), "{name} is reported");
    }
    assert_eq!(r.truncated.len(), s.quiet.n_thought + 1, "thoughts cut to 0..=n_thought tokens");
    // A thought cut to its full length is the thought itself.
    assert_eq!(r.truncated[s.quiet.n_thought].correct, r.row(rows::QUIET).unwrap().correct);
    assert_eq!(model.model.config.n_thought, 3);
    let text = report(&s, &results, "test");
    assert!(text.contains("Target (≥ 30 points at every seed)"));
    let chart = chart_svg(&s, &results);
    assert_eq!(chart.matches("<polyline").count(), r.rows.len(), "a line per condition");
    let lengths = thought_length_svg(&s, &results);
    assert_eq!(lengths.matches("<polyline").count(), s.task.max_hops, "a line per hop count");
    assert_eq!(margins(&results).len(), 1);

    // Seeded: the same numbers again.
    let (again, _) = run_hops_demo(&s, &device, &mut Phases(Vec::new())).unwrap();
    for ((name, a), (_, b)) in r.rows.iter().zip(&again[0].rows) {
        assert_eq!(a.correct, b.correct, "{name}");
    }
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let _rng = one_at_a_time();
    let mut s = tiny();
    s.quiet.n_thought = 2; // shorter than the longest chain
    let err = run_hops_demo(&s, &Device::flex(), &mut Phases(Vec::new())).err().unwrap().to_string();
    assert!(err.contains("cannot write a chain of 3 hops"), "{err}");
    let mut s = tiny();
    s.quiet.initial_mixing_weight = 1.5;
    assert!(run_hops_demo(&s, &Device::flex(), &mut Phases(Vec::new())).is_err());
}

/// The page's model (`--model-only`) is the demo's Quiet-STaR model of that seed, and the decoder
/// the page thinks with answers a posed question as the evaluation scores it: the same greedy
/// thought at the asked `=`, the same mixing weight, the same answer.
#[test]
fn the_page_model_is_the_demo_model_and_decodes_as_the_evaluation_scores() {
    let _rng = one_at_a_time();
    let s = tiny();
    let device = Device::flex();
    let mut phases = Phases(Vec::new());
    let (page, greedy) = train_hops_model(&s, &device, &mut phases).unwrap();
    assert_eq!(phases.0, ["warm start", "quiet-star", "evaluation"]);
    assert_eq!(greedy.count.iter().sum::<usize>(), s.eval_docs, "every held-out answer scored once");
    let (_, demo) = run_hops_demo(&s, &device, &mut Phases(Vec::new())).unwrap();

    let docs = s.task.documents(HopSplit::HeldOut, 6, s.queries, 11);
    let prompts: Vec<Vec<u32>> =
        docs.iter().map(|d| page.tokenizer.encode(&s.task.prompt(d), false).unwrap()).collect();
    let pos = s.answer_position();
    assert!(prompts.iter().all(|p| p.len() == pos + 1), "a prompt ends at the asked `=`");
    let thoughts = sample_at(&page.model, &prompts, pos, 0.0, s.kernel);
    let scored = next_token_with(&page.model, &prompts, pos, &thoughts, s.kernel);
    let again = next_token_with(&demo.model, &prompts, pos, &thoughts, s.kernel);
    for (a, b) in scored.iter().zip(&again) {
        assert_eq!(a.mixed, b.mixed, "the page's model is the demo's, trained the same way");
    }

    let cfg = GenerateConfig { max_new_tokens: 1, ..GenerateConfig::default() };
    let generated = generate_thoughtful(&page.model, &page.tokenizer, &prompts, &cfg, 0.0, &mut |_, _| {}).unwrap();
    for ((g, t), p) in generated.iter().zip(&thoughts).zip(&scored) {
        let first = &g.tokens[0];
        assert_eq!(&first.thought_ids, t, "the decoder's thought is the evaluation's greedy thought");
        assert_eq!(first.id as usize, argmax(&p.mixed), "the decoder's answer is the evaluation's");
        assert!((first.mix_weight - p.weight).abs() < 1e-4, "{} vs {}", first.mix_weight, p.weight);
    }
}
