//! GSM8K in its distributed JSONL format: `{"question": …, "answer": "…<<16-3-4=9>>9 …\n#### 18"}`.
//!
//! Prompt: `Q: {question}\n`, completion `A: {solution}\n#### {answer}`; the hint appends the
//! answer to the question: `Q: {question} ({answer})`. Calculator annotations `<<…>>` are removed
//! from reference solutions.

use serde::Deserialize;

use crate::answer::normalize_number;
use crate::item::{Exemplar, Item};
use crate::jsonl::{OnBadLine, Parsed, TaskError, parse};

#[derive(Deserialize)]
struct Record {
    question: String,
    answer: String,
    id: Option<String>,
}

/// An item from a question and a numeric answer.
pub fn item(id: &str, question: &str, answer: &str) -> Item {
    let q = question.trim();
    let gold = normalize_number(answer).unwrap_or_else(|| answer.trim().to_string());
    let hint = format!("({gold})");
    Item {
        id: id.to_string(),
        question: format!("Q: {q}\n"),
        hinted_question: format!("Q: {q} {hint}\n"),
        hint,
        answer_text: gold.clone(),
        gold,
        choices: Vec::new(),
        group: None,
    }
}

/// `"It takes <<2/2=1>>1 bolt"` → `"It takes 1 bolt"`.
pub fn strip_calculator(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("<<") {
        out.push_str(&rest[..start]);
        match rest[start..].find(">>") {
            Some(end) => rest = &rest[start + end + 2..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A reference solution split into its rationale and final answer.
pub fn split_solution(answer: &str) -> Option<(String, String)> {
    let (solution, final_answer) = answer.rsplit_once("####")?;
    let n = normalize_number(final_answer)?;
    Some((strip_calculator(solution).trim().to_string(), n))
}

fn convert(r: Record, line: usize) -> Result<(Item, String), String> {
    if r.question.trim().is_empty() {
        return Err("the question is empty".into());
    }
    let (solution, ans) = split_solution(&r.answer).ok_or("the answer has no `#### <number>` final line")?;
    let id = r.id.unwrap_or_else(|| format!("line-{line}"));
    Ok((item(&id, &r.question, &ans), solution))
}

/// Parses GSM8K JSONL; each item comes with its reference solution (used by the direct and
/// supervised baselines, never by STaR itself).
pub fn parse_jsonl(text: &str, origin: &str, on_bad: OnBadLine) -> Result<Parsed<(Item, String)>, TaskError> {
    parse::<Record, (Item, String)>(text, origin, on_bad, convert)
}

/// Few-shot exemplars written for Starling (not taken from the data set).
pub fn exemplars() -> Vec<Exemplar> {
    let ex = |q: &str, solution: &str, ans: &str| Exemplar {
        item: item("exemplar", q, ans),
        rationale: solution.to_string(),
    };
    vec![
        ex(
            "A baker makes 24 muffins. She sells 15 of them and gives 3 to her neighbor. How many muffins does she have left?",
            "She sells and gives away 15 + 3 = 18 muffins.\nShe has 24 - 18 = 6 muffins left.",
            "6",
        ),
        ex(
            "Tom reads 12 pages every day. How many pages does he read in 2 weeks?",
            "Two weeks have 2 * 7 = 14 days.\nHe reads 12 * 14 = 168 pages.",
            "168",
        ),
        ex(
            "A shirt costs $20 and is on sale for 25% off. How many dollars does the shirt cost on sale?",
            "The discount is 20 * 25 / 100 = 5 dollars.\nThe sale price is 20 - 5 = 15 dollars.",
            "15",
        ),
        ex(
            "Maria has 3 boxes with 8 pencils in each. She gives away half of her pencils. How many pencils does she keep?",
            "She has 3 * 8 = 24 pencils.\nShe gives away 24 / 2 = 12 pencils.\nShe keeps 24 - 12 = 12 pencils.",
            "12",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{PromptStyle, TaskKind};

    const LINE: &str = r#"{"question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?", "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 bolts of fabric\n#### 3"}"#;

    #[test]
    fn parses_the_distributed_format() {
        let p = parse_jsonl(LINE, "test.jsonl", OnBadLine::Error).unwrap();
        let (it, solution) = &p.records[0];
        assert_eq!(it.gold, "3");
        assert_eq!(
            solution,
            "It takes 2/2=1 bolt of white fiber\nSo the total amount of fabric is 2+1=3 bolts of fabric"
        );
        assert!(it.hinted_question.ends_with("does it take? (3)\n"));
        let c = TaskKind::Gsm8k.completion(it, solution, PromptStyle::Rationale);
        assert!(c.ends_with("\n#### 3\n"));
        assert!(TaskKind::Gsm8k.is_correct(it, &c));
        assert!(TaskKind::Gsm8k.is_correct(it, "A: so the answer is 3."));
        assert!(!TaskKind::Gsm8k.is_correct(it, "A: 2 + 1 = 3\n#### 4"));
        assert!(TaskKind::Gsm8k.is_correct(&item("i", "q", "1,000"), "A: …\n#### $1,000.00"));
    }

    #[test]
    fn broken_lines_are_reported() {
        let text = format!("{LINE}\n{{\"question\": \"q\", \"answer\": \"no final line\"}}\n");
        let err = parse_jsonl(&text, "g.jsonl", OnBadLine::Error).unwrap_err().to_string();
        assert!(err.starts_with("g.jsonl:2:") && err.contains("####"), "{err}");
        assert_eq!(parse_jsonl(&text, "g.jsonl", OnBadLine::Skip).unwrap().skipped, 1);
    }

    #[test]
    fn exemplars_answer_themselves() {
        for ex in exemplars() {
            let c = TaskKind::Gsm8k.completion(&ex.item, &ex.rationale, PromptStyle::Rationale);
            assert!(TaskKind::Gsm8k.is_correct(&ex.item, &c), "{c}");
        }
    }
}
