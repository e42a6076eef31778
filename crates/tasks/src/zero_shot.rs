//! The zero-shot likelihood protocol (as Quiet-STaR evaluates CommonsenseQA and GSM8K): no
//! exemplars, no generation; the model scores candidate answers written after the question.
//!
//! Prompt: the item's question followed by `A: The answer is`; candidates: ` {choice} ({letter}).`
//! for each choice of a multiple-choice item, else the gold answer alone (` {answer}.`), whose
//! likelihood is then the measure.

use crate::item::Item;

/// What to score for one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    pub prompt: String,
    pub continuations: Vec<String>,
    /// Index of the correct continuation.
    pub gold: usize,
}

pub const ANSWER_PREFIX: &str = "A: The answer is";

pub fn candidates(item: &Item) -> Candidates {
    let prompt = format!("{}{ANSWER_PREFIX}", item.question);
    if item.choices.is_empty() {
        return Candidates { prompt, continuations: vec![format!(" {}.", item.answer_text)], gold: 0 };
    }
    let continuations =
        item.choices.iter().enumerate().map(|(i, c)| format!(" {c} ({}).", (b'a' + i as u8) as char)).collect();
    let gold = item.gold.bytes().next().map_or(0, |g| (g - b'a') as usize);
    Candidates { prompt, continuations, gold }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csqa_candidates_name_every_choice_and_the_gold_one() {
        let item = crate::csqa::item("x", "Where is money kept?", &["bank".into(), "library".into(), "park".into()], 1);
        let c = candidates(&item);
        assert!(c.prompt.starts_with("Q: Where is money kept?\nAnswer Choices:\n(a) bank\n"));
        assert!(c.prompt.ends_with("(c) park\nA: The answer is"));
        assert_eq!(c.continuations, [" bank (a).", " library (b).", " park (c)."]);
        assert_eq!(c.gold, 1);
    }

    #[test]
    fn gsm8k_scores_the_gold_answer() {
        let item = crate::gsm8k::item("y", "Tom has 3 apples and buys 4. How many?", "7");
        let c = candidates(&item);
        assert_eq!(c.prompt, "Q: Tom has 3 apples and buys 4. How many?\nA: The answer is");
        assert_eq!(c.continuations, [" 7."]);
        assert_eq!(c.gold, 0);
    }
}
