//! One shape for every task: an [`Item`] is a question with its gold answer and its hinted form;
//! a [`TaskKind`] knows how the task writes completions, builds prompts and reads answers.

use serde::{Deserialize, Serialize};

use crate::answer::{choice_letter, normalize_number, normalize_text, number_after, text_after_answer_is};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// n-digit addition with a scratchpad (built in).
    Arithmetic,
    /// CommonsenseQA: five choices, answer by letter.
    Csqa,
    /// GSM8K: grade-school word problems, numeric answer after `####`.
    Gsm8k,
    /// Users' own question/answer JSONL (free text, numbers, or choices).
    Qa,
}

/// How the answer is asked for: with a rationale first (chain of thought), or directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptStyle {
    Rationale,
    Direct,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    /// What the model is shown, ending in a newline (e.g. `Q: …\nAnswer Choices:\n(a) …\n`).
    pub question: String,
    /// The same with the rationalization hint.
    pub hinted_question: String,
    /// The hint's text as it appears in `hinted_question` (e.g. `(CORRECT)`): a completion that
    /// contains it leaked the hint and is never trained on.
    pub hint: String,
    /// The gold answer in canonical form: a number, a choice letter, or normalized text.
    pub gold: String,
    /// The answer as a completion writes it: `bank (a)`, `18`, `8 8 3`.
    pub answer_text: String,
    /// Multiple choice: the choices' texts, lettered (a), (b), … in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Reporting group (arithmetic: `3 digits`); accuracy is also shown per group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A worked example for few-shot prompts: an item and the rationale that reaches its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    pub item: Item,
    pub rationale: String,
}

/// `["bank", "library"]` → `Answer Choices:\n(a) bank\n(b) library\n`.
pub fn choices_block(choices: &[String], hint_at: Option<(usize, &str)>) -> String {
    let mut s = String::from("Answer Choices:\n");
    for (i, c) in choices.iter().enumerate() {
        s.push_str(&format!("({}) {c}", (b'a' + i as u8) as char));
        if let Some((at, hint)) = hint_at
            && at == i
        {
            s.push(' ');
            s.push_str(hint);
        }
        s.push('\n');
    }
    s
}

/// Stop strings for generation: a completion ends at a blank line or the next question.
pub const STOP_STRINGS: [&str; 3] = ["\n\n", "\nQ:", "\nInput:"];

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Arithmetic => "arithmetic",
            TaskKind::Csqa => "csqa",
            TaskKind::Gsm8k => "gsm8k",
            TaskKind::Qa => "qa",
        }
    }

    /// What the model writes after the question, given a rationale (ignored for `Direct`).
    pub fn completion(self, item: &Item, rationale: &str, style: PromptStyle) -> String {
        let ans = &item.answer_text;
        let r = rationale.trim();
        match (self, style) {
            // The official format: the question ends at `Target:`, the scratchpad and the answer
            // follow on their own lines.
            (TaskKind::Arithmetic, PromptStyle::Rationale) => format!("\n{r}\n{ans}\n"),
            (TaskKind::Arithmetic, PromptStyle::Direct) => format!("\n{ans}\n"),
            (TaskKind::Gsm8k, PromptStyle::Rationale) => format!("A: {r}\n#### {ans}\n"),
            (TaskKind::Gsm8k, PromptStyle::Direct) => format!("A: #### {ans}\n"),
            (TaskKind::Csqa | TaskKind::Qa, PromptStyle::Rationale) => {
                format!("A: {r} Therefore, the answer is {ans}.\n")
            }
            (TaskKind::Csqa | TaskKind::Qa, PromptStyle::Direct) => format!("A: The answer is {ans}.\n"),
        }
    }

    /// A few-shot prompt: each exemplar's question and completion, a blank line between, then
    /// `item`'s question; the model continues with its completion. With `hinted`, exemplars and
    /// item show the hint (rationalization).
    pub fn prompt(self, exemplars: &[Exemplar], item: &Item, style: PromptStyle, hinted: bool) -> String {
        let mut s = self.exemplar_block(exemplars, style, hinted);
        s.push_str(if hinted { &item.hinted_question } else { &item.question });
        s
    }

    /// The part of every [`TaskKind::prompt`] before the question: the exemplars, solved. The
    /// same for every question of a run, so its keys and values can be computed once.
    pub fn exemplar_block(self, exemplars: &[Exemplar], style: PromptStyle, hinted: bool) -> String {
        let mut s = String::new();
        for ex in exemplars {
            s.push_str(if hinted { &ex.item.hinted_question } else { &ex.item.question });
            s.push_str(&self.completion(&ex.item, &ex.rationale, style));
            s.push('\n');
        }
        s
    }

    /// The answer a completion gives, in canonical form (comparable with [`Item::gold`]).
    pub fn extract(self, item: &Item, completion: &str) -> Option<String> {
        match self {
            TaskKind::Arithmetic => crate::arithmetic::parse_answer(completion).map(|n| n.to_string()),
            TaskKind::Gsm8k => number_after(completion, "####").or_else(|| number_after(completion, "answer is")),
            TaskKind::Csqa => choice_letter(completion, &item.choices).map(String::from),
            TaskKind::Qa => {
                if !item.choices.is_empty() {
                    choice_letter(completion, &item.choices).map(String::from)
                } else if normalize_number(&item.gold).as_deref() == Some(item.gold.as_str()) {
                    number_after(completion, "answer is")
                } else {
                    text_after_answer_is(completion)
                }
            }
        }
    }

    /// Whether `completion` answers `item` correctly.
    pub fn is_correct(self, item: &Item, completion: &str) -> bool {
        self.extract(item, completion).is_some_and(|a| a == item.gold)
    }

    /// Whether `completion` repeats the hint, so it cannot be trained on without it. Never for
    /// arithmetic: its hint (the scratchpad's last line) is written by every correct scratchpad.
    pub fn leaks_hint(self, item: &Item, completion: &str) -> bool {
        self != TaskKind::Arithmetic && item.leaks_hint(completion)
    }

    /// Whether a rationale's steps can be checked one by one (arithmetic's scratchpad lines).
    pub fn steps_checkable(self) -> bool {
        matches!(self, TaskKind::Arithmetic)
    }

    /// Whether every step of `completion`'s rationale is right, for tasks whose steps can be
    /// checked (arithmetic: each scratchpad line); `None` for the others, or without a rationale.
    pub fn rationale_is_sound(self, item: &Item, completion: &str) -> Option<bool> {
        Some(self.check_rationale(item, completion)?.iter().all(|l| l.right))
    }

    /// `completion`'s rationale checked step by step, for tasks whose steps can be checked
    /// (arithmetic: each scratchpad line against the correct one); `None` otherwise.
    pub fn check_rationale(self, item: &Item, completion: &str) -> Option<Vec<crate::arithmetic::LineCheck>> {
        match self {
            TaskKind::Arithmetic => crate::arithmetic::Addition::of_item(item)?.check_scratchpad(completion),
            _ => None,
        }
    }
}

impl Item {
    /// Whether `text` contains the hint (so it must not be trained on).
    pub fn leaks_hint(&self, text: &str) -> bool {
        !self.hint.is_empty() && text.to_lowercase().contains(&self.hint.to_lowercase())
    }
}

/// Canonical gold form of a free-text answer (numbers as numbers, else normalized text).
pub fn canonical_answer(answer: &str) -> String {
    // A number when the whole answer is one (separators, currency and decimals allowed).
    let numeric = answer.trim().trim_end_matches('.').chars().all(|c| c.is_ascii_digit() || ",.$€£- ".contains(c));
    match normalize_number(answer) {
        Some(n) if numeric => n,
        _ => normalize_text(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_caught_in_any_case() {
        let it = crate::csqa::item("x", "q?", &["a1".to_string(), "b1".to_string()], 0);
        assert!(it.leaks_hint("a1 is (correct) so"));
        assert!(!it.leaks_hint("the correct answer is a1"));
    }

    #[test]
    fn canonical_answers() {
        assert_eq!(canonical_answer("1,200"), "1200");
        assert_eq!(canonical_answer("$5"), "5");
        assert_eq!(canonical_answer("The Nile"), "nile");
        assert_eq!(canonical_answer("3 apples"), "3 apples");
        assert_eq!(canonical_answer("$5.00"), "5");
        assert_eq!(canonical_answer("1.50"), "1.5");
        assert_eq!(canonical_answer("007"), "7");
    }
}
