//! Users' own question/answer data, one JSON object per line:
//!
//! ```text
//! {"question": "What is 7 times 8?", "answer": "56"}
//! {"id": "q2", "question": "Which is a mammal?", "choices": ["trout", "whale", "eagle"], "answer": "whale"}
//! ```
//!
//! `answer` is compared after normalization (numbers as numbers; text lowercased without
//! punctuation or articles). With `choices`, `answer` is a choice's text or its letter (`b`) and
//! the task is multiple choice like CommonsenseQA. Exemplars for few-shot prompts use the same
//! format plus `"rationale"`. Prompt: `Q: {question}\n` (plus lettered choices), completion
//! `A: {rationale} Therefore, the answer is {answer}.`; the hint is `(CORRECT)` on the right choice,
//! or `(answer: …)` after the question.

use serde::Deserialize;

use crate::csqa;
use crate::item::{Exemplar, Item, canonical_answer};
use crate::jsonl::{OnBadLine, Parsed, TaskError, parse};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: Option<serde_json::Value>,
    question: String,
    answer: serde_json::Value,
    #[serde(default)]
    choices: Vec<String>,
    rationale: Option<String>,
}

fn answer_string(v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err("`answer` must be a non-empty string or a number".into()),
    }
}

fn convert(r: Record, line: usize) -> Result<(Item, Option<String>), String> {
    if r.question.trim().is_empty() {
        return Err("the question is empty".into());
    }
    let answer = answer_string(&r.answer)?;
    let id = match r.id {
        Some(serde_json::Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => format!("line-{line}"),
    };
    let item = if r.choices.is_empty() {
        let hint = format!("(answer: {answer})");
        let q = r.question.trim();
        Item {
            id,
            question: format!("Q: {q}\n"),
            hinted_question: format!("Q: {q} {hint}\n"),
            hint,
            gold: canonical_answer(&answer),
            answer_text: answer,
            choices: Vec::new(),
            group: None,
        }
    } else {
        if r.choices.len() < 2 || r.choices.len() > 26 {
            return Err(format!("expected 2 to 26 choices, found {}", r.choices.len()));
        }
        let lower = answer.to_lowercase();
        let by_letter = (lower.len() == 1)
            .then(|| lower.as_bytes()[0].wrapping_sub(b'a') as usize)
            .filter(|&i| i < r.choices.len());
        let by_text = r.choices.iter().position(|c| canonical_answer(c) == canonical_answer(&answer));
        let correct = by_text
            .or(by_letter)
            .ok_or_else(|| format!("answer {answer:?} is neither one of the choices nor a choice letter"))?;
        csqa::item(&id, &r.question, &r.choices, correct)
    };
    Ok((item, r.rationale.filter(|s| !s.trim().is_empty())))
}

/// Parses question/answer JSONL; each item comes with its `rationale` if the line has one.
pub fn parse_jsonl(text: &str, origin: &str, on_bad: OnBadLine) -> Result<Parsed<(Item, Option<String>)>, TaskError> {
    parse::<Record, (Item, Option<String>)>(text, origin, on_bad, convert)
}

/// Exemplars from a file in the same format; every line needs a `rationale`.
pub fn parse_exemplars(text: &str, origin: &str) -> Result<Vec<Exemplar>, TaskError> {
    let parsed = parse::<Record, Exemplar>(text, origin, OnBadLine::Error, |r, line| {
        let (item, rationale) = convert(r, line)?;
        let rationale =
            rationale.ok_or("an exemplar needs a \"rationale\": the worked reasoning that leads to the answer")?;
        Ok(Exemplar { item, rationale })
    })?;
    Ok(parsed.records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{PromptStyle, TaskKind};

    #[test]
    fn free_text_numbers_and_choices() {
        let text = r#"{"question": "What is the capital of France?", "answer": "Paris"}
{"id": 7, "question": "What is 7 times 8?", "answer": 56}
{"question": "Which is a mammal?", "choices": ["trout", "whale", "eagle"], "answer": "whale"}
{"question": "Pick the second", "choices": ["x", "y"], "answer": "B"}"#;
        let p = parse_jsonl(text, "mine.jsonl", OnBadLine::Error).unwrap();
        let items: Vec<&Item> = p.records.iter().map(|(i, _)| i).collect();
        assert_eq!(items[0].gold, "paris");
        assert!(TaskKind::Qa.is_correct(items[0], "A: France's capital. Therefore, the answer is Paris."));
        assert_eq!((items[1].id.as_str(), items[1].gold.as_str()), ("7", "56"));
        assert!(TaskKind::Qa.is_correct(items[1], "A: 7 * 8 = 56. Therefore, the answer is 56."));
        assert!(!TaskKind::Qa.is_correct(items[1], "A: Therefore, the answer is 54."));
        assert_eq!(items[2].gold, "b");
        assert!(TaskKind::Qa.is_correct(items[2], "A: Whales nurse their young. Therefore, the answer is whale (b)."));
        assert_eq!(items[3].gold, "b");
        let c = TaskKind::Qa.completion(items[0], "It is Paris.", PromptStyle::Rationale);
        assert!(!items[0].leaks_hint(&c) && items[0].hinted_question.contains("(answer: Paris)"));
    }

    #[test]
    fn bad_lines_and_exemplars() {
        let err = parse_jsonl("{\"question\": \"q\"}", "m.jsonl", OnBadLine::Error).unwrap_err().to_string();
        assert!(err.contains("m.jsonl:1") && err.contains("answer"), "{err}");
        let err = parse_jsonl(
            "{\"question\": \"q\", \"choices\": [\"a1\", \"b1\"], \"answer\": \"zz\"}",
            "m.jsonl",
            OnBadLine::Error,
        )
        .unwrap_err();
        assert!(err.to_string().contains("neither one of the choices"));
        let err = parse_jsonl(
            "{\"question\": \"q\", \"choices\": [\"a1\"], \"answer\": \"a1\"}",
            "m.jsonl",
            OnBadLine::Error,
        )
        .unwrap_err();
        assert!(err.to_string().contains("2 to 26 choices"));
        let err = parse_exemplars("{\"question\": \"q\", \"answer\": \"a\"}", "ex.jsonl").unwrap_err().to_string();
        assert!(err.contains("rationale"), "{err}");
        let ex = parse_exemplars(
            "{\"question\": \"2+2?\", \"answer\": \"4\", \"rationale\": \"Two and two make four.\"}",
            "ex.jsonl",
        )
        .unwrap();
        assert_eq!(ex[0].rationale, "Two and two make four.");
    }
}
