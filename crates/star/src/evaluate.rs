//! Accuracy of a model on a question set, overall and per group (e.g. digit count).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use starling_tasks::{Item, PromptStyle, TaskKind};

use crate::attempt::Generator;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    pub correct: usize,
    pub total: usize,
}

impl Tally {
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.correct as f64 / self.total as f64 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub overall: Tally,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_group: BTreeMap<String, Tally>,
    /// Completions from which no answer could be read.
    pub unparsable: usize,
    /// Multiple-choice tasks: how often each answer was given, and how often each is the gold
    /// one — a model that answers one letter whatever the question shows here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, usize>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub golds: BTreeMap<String, usize>,
    /// A few completions, to look at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<EvalSample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSample {
    pub question: String,
    pub completion: String,
    pub correct: bool,
}

impl EvalResult {
    pub fn accuracy(&self) -> f64 {
        self.overall.accuracy()
    }

    /// Scores one completion of `item` and counts it (overall, in its group, and among the samples
    /// kept to look at).
    pub fn record(&mut self, task: TaskKind, item: &Item, completion: String) -> bool {
        let answer = task.extract(item, &completion);
        let ok = answer.as_deref() == Some(item.gold.as_str());
        self.unparsable += usize::from(answer.is_none());
        if !item.choices.is_empty() {
            *self.golds.entry(item.gold.clone()).or_default() += 1;
            if let Some(a) = &answer {
                *self.answers.entry(a.clone()).or_default() += 1;
            }
        }
        self.overall.total += 1;
        self.overall.correct += usize::from(ok);
        if let Some(group) = &item.group {
            let t = self.by_group.entry(group.clone()).or_default();
            t.total += 1;
            t.correct += usize::from(ok);
        }
        if self.samples.len() < 3 || (!ok && self.samples.iter().filter(|s| !s.correct).count() < 2) {
            self.samples.push(EvalSample { question: item.question.clone(), completion, correct: ok });
        }
        ok
    }
}

/// Indices of `items`, shortest question first: questions of similar length share a generation
/// batch, so short ones do not wait for long ones.
pub fn length_order(items: &[Item]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].question.len(), i));
    order
}

/// Greedy-or-configured answers to `items` in `style` (with the hint when `hinted`), in batches
/// of `batch`; `on_batch` sees the number of questions done so far.
pub fn evaluate(
    g: &Generator<'_>,
    items: &[Item],
    style: PromptStyle,
    hinted: bool,
    batch: usize,
    on_batch: &mut dyn FnMut(usize),
) -> starling_model::Result<EvalResult> {
    let mut result = EvalResult::default();
    let order = length_order(items);
    let mut done = 0;
    for (b, chunk) in order.chunks(batch.max(1)).enumerate() {
        let refs: Vec<&Item> = chunk.iter().map(|&i| &items[i]).collect();
        let completions = g.complete(&refs, style, hinted, b as u64)?;
        for (it, c) in refs.iter().zip(completions) {
            result.record(g.task, it, c);
        }
        done += chunk.len();
        on_batch(done);
    }
    Ok(result)
}
