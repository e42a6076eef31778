//! The Quiet-STaR paper's evaluation format (the official code's `eval_helpers.py`): the item
//! written as `Q: {question}` (multiple choice: then `(A) {choice}` lines), the answer marker
//! `\nA:`, then the gold answer — ` {letter}\n` for CommonsenseQA, ` {number}\n` for GSM8K. The
//! metric is the probability of the answer's tokens, each renormalised over the answer alphabet
//! (letters or digits, and the newline); it is computed in `starling_quiet::eval`.

use crate::item::{Item, choices_block};

/// What the official metric reads for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfficialText {
    /// The question, ending in the answer marker `\nA:`.
    pub prompt: String,
    /// The gold answer as written after the marker: ` B\n`, ` 72\n`.
    pub answer: String,
    /// The answer alphabet: the choice letters (`A`, `B`, …), or the ten digits.
    pub alphabet: Vec<String>,
}

pub const ANSWER_MARKER: &str = "\nA:";

/// The item in the official format. Multiple-choice items answer with an upper-case letter as
/// the official data (`answerKey`) does; others with their gold answer (GSM8K: the number after
/// `####`, normalised: the official text keeps commas, which its metric skips anyway).
pub fn official_text(item: &Item) -> OfficialText {
    let question = item.question.strip_suffix(&choices_block(&item.choices, None)).unwrap_or(&item.question);
    let question = question.trim_end();
    if item.choices.is_empty() {
        return OfficialText {
            prompt: format!("{question}{ANSWER_MARKER}"),
            answer: format!(" {}\n", item.gold),
            alphabet: (0..10).map(|d| d.to_string()).collect(),
        };
    }
    let letter = |i: usize| ((b'A' + i as u8) as char).to_string();
    let lines: Vec<String> = item.choices.iter().enumerate().map(|(i, c)| format!("({}) {c}", letter(i))).collect();
    OfficialText {
        prompt: format!("{question}\n{}{ANSWER_MARKER}", lines.join("\n")),
        answer: format!(" {}\n", item.gold.to_uppercase()),
        alphabet: (0..item.choices.len()).map(letter).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csqa_is_written_as_the_official_code_writes_it() {
        let choices = ["bank".to_string(), "library".to_string(), "park".to_string()];
        let t = official_text(&crate::csqa::item("x", "Where is money kept?", &choices, 1));
        // eval_helpers.py: f"Q: {q}" + "\n" + "\n".join(f"({label}) {choice}") + "\nA:" + " " + a + "\n"
        assert_eq!(t.prompt, "Q: Where is money kept?\n(A) bank\n(B) library\n(C) park\nA:");
        assert_eq!(t.answer, " B\n");
        assert_eq!(t.alphabet, ["A", "B", "C"]);
    }

    #[test]
    fn gsm8k_is_written_as_the_official_code_writes_it() {
        let t = official_text(&crate::gsm8k::item("y", "Tom has 3 apples and buys 4. How many?", "7"));
        // eval_helpers.py: "Q: " + q + "\nA:" + a.split("####")[-1] + "\n", the answer " 7".
        assert_eq!(t.prompt, "Q: Tom has 3 apples and buys 4. How many?\nA:");
        assert_eq!(t.answer, " 7\n");
        assert_eq!(t.alphabet.len(), 10);
    }
}
