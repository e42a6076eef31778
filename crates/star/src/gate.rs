//! The base-model gate: what a base model must do before STaR can bootstrap from it, checked on
//! its dev accuracy per group (digit count) without and with the hint. The STaR paper notes that
//! a model must be above chance for the bootstrap to start; on arithmetic that means a foothold
//! (some short digit count solved reliably, so there are rationales to keep), the longest rarely
//! (room to learn), and the hint understood at every length (rationalization works).
//!
//! The foothold asks for the *best* short digit count, not every one: one-digit sums are too few
//! to split three ways (45 unordered pairs), so a base sees only a third of them in their
//! one-digit form and may score near chance on the rest — which STaR then has to learn too.

use serde::{Deserialize, Serialize};

use crate::report::IterationRow;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseGate {
    /// Groups `1 digits` … `N digits` with N up to this are the short ones.
    pub short_digits: usize,
    /// Least dev accuracy on the best short digit count (the foothold).
    pub min_short: f64,
    /// Most dev accuracy on the longest digit count.
    pub max_longest: f64,
    /// Least dev accuracy with the hint on every digit count.
    pub min_hinted: f64,
}

impl Default for BaseGate {
    fn default() -> Self {
        Self { short_digits: 2, min_short: 0.9, max_longest: 0.25, min_hinted: 0.5 }
    }
}

/// Why a base model failed the gate, with what was measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the base model fails the gate: {}. Measured on the dev set: {measured}", problems.join("; "))]
pub struct GateFailure {
    pub problems: Vec<String>,
    /// Accuracy per digit count, without and with the hint.
    pub measured: String,
}

fn digits_of(group: &str) -> Option<usize> {
    group.strip_suffix(" digits")?.parse().ok()
}

/// `1 digits 100% (hint 100%), 2 digits 96% (hint 99%), …`
pub fn measured(row: &IterationRow) -> String {
    row.dev
        .by_group
        .iter()
        .map(|(g, t)| {
            let hinted = row.dev_hinted.as_ref().and_then(|h| h.by_group.get(g));
            match hinted {
                Some(h) => format!("{g} {:.0}% (hint {:.0}%)", 100.0 * t.accuracy(), 100.0 * h.accuracy()),
                None => format!("{g} {:.0}%", 100.0 * t.accuracy()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl BaseGate {
    /// Whether the base model's row (dev accuracy without and with the hint, per digit count)
    /// passes.
    pub fn check(&self, row: &IterationRow) -> Result<(), GateFailure> {
        check(self, row)
    }
}

fn check(gate: &BaseGate, row: &IterationRow) -> Result<(), GateFailure> {
    let mut problems = Vec::new();
    let longest = row.dev.by_group.keys().filter_map(|g| digits_of(g)).max();
    let best_short = row
        .dev
        .by_group
        .iter()
        .filter(|(g, _)| digits_of(g).is_some_and(|d| d <= gate.short_digits))
        .map(|(g, t)| (g, t.accuracy()))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best_short {
        Some((g, accuracy)) if accuracy < gate.min_short => problems.push(format!(
            "no foothold: the best short sums ({g}) score {:.0}% < {:.0}% needed",
            100.0 * accuracy,
            100.0 * gate.min_short
        )),
        Some(_) => {}
        None => problems.push(format!("no dev sums of {} digits or fewer to find a foothold", gate.short_digits)),
    }
    for (g, t) in &row.dev.by_group {
        let Some(d) = digits_of(g) else { continue };
        if Some(d) == longest && d > gate.short_digits && t.accuracy() > gate.max_longest {
            problems.push(format!(
                "{g}: {:.0}% > {:.0}% (no room left to bootstrap)",
                100.0 * t.accuracy(),
                100.0 * gate.max_longest
            ));
        }
    }
    match &row.dev_hinted {
        Some(hinted) => {
            for (g, t) in &hinted.by_group {
                if t.accuracy() < gate.min_hinted {
                    problems.push(format!(
                        "{g} with the hint: {:.0}% < {:.0}% needed",
                        100.0 * t.accuracy(),
                        100.0 * gate.min_hinted
                    ));
                }
            }
        }
        None => problems.push("the base model was not scored with the hint".into()),
    }
    if problems.is_empty() { Ok(()) } else { Err(GateFailure { problems, measured: measured(row) }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{EvalResult, Tally};

    fn result(accuracy: &[(usize, usize)]) -> EvalResult {
        let mut r = EvalResult::default();
        for (d, correct) in accuracy {
            r.by_group.insert(format!("{d} digits"), Tally { correct: *correct, total: 20 });
        }
        r
    }

    fn row(plain: &[(usize, usize)], hinted: Option<&[(usize, usize)]>) -> IterationRow {
        IterationRow::base(0, result(plain), hinted.map(result))
    }

    #[test]
    fn a_base_worth_bootstrapping_passes() {
        let gate = BaseGate::default();
        let good = row(&[(1, 20), (2, 19), (3, 9), (5, 1)], Some(&[(1, 20), (2, 20), (3, 18), (5, 11)]));
        assert_eq!(gate.check(&good), Ok(()));
        // One unlearned short digit count is fine while another gives the foothold.
        let one_digit_unseen = row(&[(1, 4), (2, 20), (5, 0)], Some(&[(1, 20), (2, 20), (5, 15)]));
        assert_eq!(gate.check(&one_digit_unseen), Ok(()));
        assert!(
            measured(&good).starts_with("1 digits 100% (hint 100%), 2 digits 95% (hint 100%)"),
            "{}",
            measured(&good)
        );
    }

    #[test]
    fn each_failure_is_named_with_its_numbers() {
        let gate = BaseGate::default();
        let weak_short = row(&[(1, 17), (2, 12), (5, 0)], Some(&[(1, 20), (2, 20), (5, 15)]));
        let e = gate.check(&weak_short).unwrap_err();
        assert_eq!(e.problems, ["no foothold: the best short sums (1 digits) score 85% < 90% needed"]);
        let solved = row(&[(1, 20), (2, 20), (5, 10)], Some(&[(1, 20), (2, 20), (5, 20)]));
        assert!(gate.check(&solved).unwrap_err().problems[0].contains("no room left"));
        let no_hint = row(&[(1, 20), (2, 20), (5, 0)], Some(&[(1, 20), (2, 20), (5, 4)]));
        assert_eq!(gate.check(&no_hint).unwrap_err().problems, ["5 digits with the hint: 20% < 50% needed"]);
        let unscored = row(&[(1, 20), (2, 20)], None);
        assert!(gate.check(&unscored).unwrap_err().to_string().contains("not scored with the hint"));
    }
}
