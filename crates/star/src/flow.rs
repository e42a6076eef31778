//! Where one iteration's training questions went: kept (the model's own rationale reached the
//! gold answer), rationalized (only the hinted one did) or rejected, per group; the first two
//! form the fine-tuning set. Where the steps can be checked (arithmetic), the rationales trained
//! on that reach the right answer through a wrong step are counted and shown line by line:
//! STaR filters on the answer alone, so it trains on them all the same.

use serde::Serialize;
use starling_tasks::Item;
use starling_tasks::arithmetic::LineCheck;

use crate::attempt::{Outcome, RationaleRecord};
use crate::config::StarConfig;

/// One group's questions by outcome. Where steps can be checked, `*_unsound` counts those whose
/// steps are not all right (a wrong, missing or extra line, or no scratchpad at all: the same
/// rule as the iteration table's "every line right").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupFlow {
    /// The group (`3 digits`), or `all` for items without one.
    pub group: String,
    pub questions: usize,
    pub kept: usize,
    pub kept_unsound: usize,
    pub rationalized: usize,
    pub rationalized_unsound: usize,
    pub rejected: usize,
    /// Rationales the iteration fine-tunes on: kept and rationalized, less the unsound ones when
    /// the run requires sound steps.
    pub trained_on: usize,
}

/// A rationale trained on though one of its steps is wrong: the right answer, wrong reasoning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LuckyRationale {
    pub id: String,
    pub outcome: Outcome,
    /// The question as the model saw it (the hinted one for a rationalization).
    pub question: String,
    /// Its scratchpad, line by line against the correct one.
    pub lines: Vec<LineCheck>,
    /// The answer line it wrote (right, so the gold answer's text).
    pub answer: String,
}

/// One iteration's flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IterationFlow {
    /// Per group, in the groups' natural order (`2 digits` before `10 digits`).
    pub groups: Vec<GroupFlow>,
    /// Whether failures were asked again with the hint (off: STaR without rationalization).
    pub rationalize: bool,
    /// Whether steps could be checked (arithmetic): the `*_unsound` counts mean something.
    pub checkable: bool,
    /// Up to `show` rationales trained on with a right answer and a wrong step.
    pub lucky: Vec<LuckyRationale>,
}

/// The flow of `records` (one per training question of an iteration) over `train`, under the
/// run's `config`; `show` bounds the lucky rationales returned.
pub fn iteration_flow(config: &StarConfig, records: &[RationaleRecord], train: &[Item], show: usize) -> IterationFlow {
    let training = config.training_set();
    let checkable = config.task.steps_checkable();
    let mut groups: Vec<GroupFlow> = Vec::new();
    for r in records {
        let name = r.group.clone().unwrap_or_else(|| "all".to_string());
        let at = match groups.iter().position(|g| g.group == name) {
            Some(i) => i,
            None => {
                groups.push(GroupFlow { group: name, ..GroupFlow::default() });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        g.questions += 1;
        let unsound = usize::from(checkable && r.sound != Some(true));
        match r.outcome {
            Outcome::Kept => (g.kept, g.kept_unsound) = (g.kept + 1, g.kept_unsound + unsound),
            Outcome::Rationalized => {
                (g.rationalized, g.rationalized_unsound) = (g.rationalized + 1, g.rationalized_unsound + unsound)
            }
            Outcome::Rejected => g.rejected += 1,
        }
        g.trained_on += usize::from(training.trains_on(r));
    }
    groups.sort_by(|a, b| natural_key(&a.group).cmp(&natural_key(&b.group)));
    let lucky = records
        .iter()
        .filter(|r| r.sound == Some(false) && training.trains_on(r))
        .filter_map(|r| {
            let item = train.iter().find(|it| it.id == r.id)?;
            let completion = r.training_completion()?;
            let lines = config.task.check_rationale(item, completion)?;
            let question = if r.outcome == Outcome::Rationalized { &item.hinted_question } else { &item.question };
            Some(LuckyRationale {
                id: r.id.clone(),
                outcome: r.outcome,
                question: question.clone(),
                lines,
                answer: item.answer_text.clone(),
            })
        })
        .take(show)
        .collect();
    IterationFlow { groups, rationalize: config.rationalize, checkable, lucky }
}

/// Groups sort by their leading number, then by name.
fn natural_key(group: &str) -> (u64, &str) {
    let digits: String = group.chars().take_while(char::is_ascii_digit).collect();
    (digits.parse().unwrap_or(u64::MAX), group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::example;
    use starling_tasks::TaskKind;
    use starling_tasks::arithmetic::Addition;

    fn record(sum: Addition, outcome: Outcome, completion: String) -> RationaleRecord {
        let item = sum.item();
        let checkable = outcome != Outcome::Rejected;
        RationaleRecord {
            id: item.id,
            group: item.group,
            outcome,
            completion: if outcome == Outcome::Rationalized { "\n1\n".into() } else { completion.clone() },
            answer: None,
            rationalization: (outcome == Outcome::Rationalized).then(|| completion.clone()),
            rationalization_answer: None,
            leaked_hint: false,
            sound: if checkable { sum.scratchpad_is_sound(&completion) } else { None },
        }
    }

    #[test]
    fn questions_flow_into_outcomes_per_group_and_lucky_ones_are_shown_line_by_line() {
        let (a, b, c, d, e) = (
            Addition { a: 624, b: 259 },
            Addition { a: 38, b: 47 },
            Addition { a: 4, b: 5 },
            Addition { a: 12, b: 34 },
            Addition { a: 7, b: 1 },
        );
        let lucky = a.worked_answer().replace("2 + 5 , 3 C: 1", "2 + 5 , 3 C: 0");
        let records = vec![
            record(a, Outcome::Kept, lucky),
            record(b, Outcome::Rationalized, b.worked_answer()),
            record(c, Outcome::Kept, c.worked_answer()),
            record(d, Outcome::Rejected, "\n5 5\n".into()),
            // The right answer without a scratchpad: not every step right either.
            record(e, Outcome::Kept, "\n8\n".into()),
        ];
        let train: Vec<Item> = [a, b, c, d, e].iter().map(Addition::item).collect();
        let arithmetic = example(TaskKind::Arithmetic);
        let flow = iteration_flow(&arithmetic, &records, &train, 5);
        assert!(flow.rationalize && flow.checkable);
        let names: Vec<&str> = flow.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["1 digits", "2 digits", "3 digits"]);
        let one = &flow.groups[0];
        assert_eq!((one.questions, one.kept, one.kept_unsound, one.trained_on), (2, 2, 1, 2));
        let two = &flow.groups[1];
        assert_eq!((two.questions, two.kept, two.rationalized, two.rejected, two.trained_on), (2, 0, 1, 1, 1));
        let three = &flow.groups[2];
        assert_eq!((three.kept, three.kept_unsound), (1, 1));
        assert_eq!(flow.groups.iter().map(|g| g.questions).sum::<usize>(), records.len());
        // The one lucky rationale with lines to show, its wrong line marked.
        assert_eq!(flow.lucky.len(), 1);
        let shown = &flow.lucky[0];
        assert_eq!((shown.id.as_str(), shown.outcome, shown.answer.as_str()), ("624+259", Outcome::Kept, "8 8 3"));
        let wrong: Vec<_> = shown.lines.iter().filter(|l| !l.right).collect();
        assert_eq!(wrong.len(), 1);
        assert_eq!(wrong[0].expected.as_deref(), Some("2 + 5 , 3 C: 1"));
        // Requiring sound steps leaves the unsound ones out of the fine-tuning set (and out of
        // the lucky ones: they are not trained on).
        let sound_only = StarConfig { require_sound: true, ..arithmetic.clone() };
        let flow = iteration_flow(&sound_only, &records, &train, 5);
        assert_eq!(flow.groups.iter().map(|g| g.trained_on).collect::<Vec<_>>(), [1, 1, 0]);
        assert!(flow.lucky.is_empty());
        // `show` bounds what is returned; tasks without checkable steps count nothing unsound.
        assert!(iteration_flow(&arithmetic, &records, &train, 0).lucky.is_empty());
        let csqa = iteration_flow(&example(TaskKind::Csqa), &records, &train, 5);
        assert!(csqa.lucky.is_empty() && !csqa.checkable);
        assert!(csqa.groups.iter().all(|g| g.kept_unsound + g.rationalized_unsound == 0));
        let without_hints = StarConfig { rationalize: false, ..arithmetic };
        assert!(!iteration_flow(&without_hints, &records, &train, 5).rationalize);
    }
}
