//! CommonsenseQA in its distributed JSONL format:
//! `{"answerKey": "A", "id": …, "question": {"stem": …, "choices": [{"label": "A", "text": …}, …]}}`.
//!
//! Prompt (as in the STaR paper): `Q: {stem}\nAnswer Choices:\n(a) …\n…(e) …\n`, completion
//! `A: {rationale} Therefore, the answer is {text} ({letter}).`; the hint marks the correct choice
//! with `(CORRECT)`.

use serde::Deserialize;

use crate::item::{Exemplar, Item, choices_block};
use crate::jsonl::{OnBadLine, Parsed, TaskError, parse};

pub const HINT: &str = "(CORRECT)";

#[derive(Deserialize)]
struct Record {
    id: Option<String>,
    #[serde(rename = "answerKey")]
    answer_key: Option<String>,
    question: Question,
}

#[derive(Deserialize)]
struct Question {
    stem: String,
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    label: String,
    text: String,
}

/// An item from a stem, choice texts (at most 26: they are lettered a–z), and the index of the
/// correct choice.
pub fn item(id: &str, stem: &str, choices: &[String], correct: usize) -> Item {
    assert!(
        choices.len() <= 26 && correct < choices.len(),
        "choices are lettered a–z and the correct one is among them"
    );
    let letter = (b'a' + correct as u8) as char;
    let q = format!("Q: {}\n", stem.trim());
    Item {
        id: id.to_string(),
        question: format!("{q}{}", choices_block(choices, None)),
        hinted_question: format!("{q}{}", choices_block(choices, Some((correct, HINT)))),
        hint: HINT.to_string(),
        gold: letter.to_string(),
        answer_text: format!("{} ({letter})", choices[correct]),
        choices: choices.to_vec(),
        group: None,
    }
}

fn convert(r: Record, line: usize) -> Result<Item, String> {
    if r.question.stem.trim().is_empty() {
        return Err("the question stem is empty".into());
    }
    if r.question.choices.len() < 2 || r.question.choices.len() > 26 {
        return Err(format!("expected 2 to 26 answer choices, found {}", r.question.choices.len()));
    }
    let key = r
        .answer_key
        .filter(|k| !k.trim().is_empty())
        .ok_or("no answerKey: this looks like an unlabeled (test) split; STaR needs gold answers for train and dev")?;
    let correct = r
        .question
        .choices
        .iter()
        .position(|c| c.label.trim().eq_ignore_ascii_case(key.trim()))
        .ok_or_else(|| format!("answerKey {key:?} is not one of the choice labels"))?;
    let texts: Vec<String> = r.question.choices.iter().map(|c| c.text.trim().to_string()).collect();
    let id = r.id.unwrap_or_else(|| format!("line-{line}"));
    Ok(item(&id, &r.question.stem, &texts, correct))
}

/// Parses CommonsenseQA JSONL text (`origin` names the file in errors).
pub fn parse_jsonl(text: &str, origin: &str, on_bad: OnBadLine) -> Result<Parsed<Item>, TaskError> {
    parse::<Record, Item>(text, origin, on_bad, convert)
}

/// Few-shot exemplars written for Starling (not taken from the data set).
pub fn exemplars() -> Vec<Exemplar> {
    let ex = |stem: &str, choices: [&str; 5], correct: usize, rationale: &str| Exemplar {
        item: item("exemplar", stem, &choices.map(String::from), correct),
        rationale: rationale.to_string(),
    };
    vec![
        ex(
            "Where would you keep milk so that it stays cold?",
            ["cupboard", "refrigerator", "oven", "backpack", "garden"],
            1,
            "Milk spoils when it gets warm, so it is kept somewhere cold. A refrigerator is the appliance that keeps food cold.",
        ),
        ex(
            "What do people usually do when they feel tired late at night?",
            ["run a marathon", "paint the house", "go to sleep", "start a business", "climb a tree"],
            2,
            "Feeling tired is the body asking for rest, and at night the usual way to rest is to sleep.",
        ),
        ex(
            "What does a musician draw across the strings of a violin to play it?",
            ["a bow", "a hammer", "a spoon", "a brush", "a key"],
            0,
            "A violin's strings sound when something is drawn across them, and the tool made for that is a bow.",
        ),
        ex(
            "If you want to cross a wide river without getting wet, what could you use?",
            ["umbrella", "towel", "bridge", "raincoat", "bucket"],
            2,
            "Crossing a river means getting over the water to the other side. A bridge spans the river so people can walk across and stay dry.",
        ),
        ex(
            "Where could a family see lions, penguins and giraffes in one afternoon?",
            ["library", "bakery", "parking lot", "office", "zoo"],
            4,
            "Lions, penguins and giraffes live in very different parts of the world. A zoo keeps animals from many places together for people to visit.",
        ),
        ex(
            "What happens to an ice cube left in the summer sun?",
            ["it melts", "it grows", "it sings", "it turns blue", "it freezes"],
            0,
            "The summer sun is warm, and ice is frozen water that turns back into liquid when it warms up.",
        ),
        ex(
            "Someone who wants to see objects from ancient times might visit a what?",
            ["gym", "swimming pool", "car wash", "museum", "nightclub"],
            3,
            "Objects from ancient times are collected, preserved and displayed for the public in museums.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{PromptStyle, TaskKind};

    const LINE: &str = r#"{"answerKey": "A", "id": "x1", "question": {"question_concept": "revolving door", "choices": [{"label": "A", "text": "bank"}, {"label": "B", "text": "library"}, {"label": "C", "text": "department store"}, {"label": "D", "text": "mall"}, {"label": "E", "text": "new york"}], "stem": "A revolving door is convenient for two direction travel, but it also serves as a security measure at a what?"}}"#;

    #[test]
    fn parses_the_distributed_format() {
        let p = parse_jsonl(LINE, "dev.jsonl", OnBadLine::Error).unwrap();
        let it = &p.records[0];
        assert_eq!(it.gold, "a");
        assert_eq!(it.answer_text, "bank (a)");
        assert!(it.question.starts_with("Q: A revolving door"));
        assert!(it.question.contains("\n(e) new york\n"));
        assert!(it.hinted_question.contains("(a) bank (CORRECT)\n"));
        assert!(!it.question.contains("CORRECT"));
        let completion = TaskKind::Csqa.completion(it, "Banks guard money.", PromptStyle::Rationale);
        assert_eq!(completion, "A: Banks guard money. Therefore, the answer is bank (a).\n");
        assert!(TaskKind::Csqa.is_correct(it, &completion));
        assert!(!TaskKind::Csqa.is_correct(it, "A: Therefore, the answer is mall (d)."));
    }

    #[test]
    fn broken_lines_name_file_and_line() {
        let text = format!("{LINE}\n{{\"answerKey\": \"A\"\n\n{}\n", LINE.replace("\"answerKey\": \"A\", ", ""));
        let err = parse_jsonl(&text, "dev.jsonl", OnBadLine::Error).unwrap_err();
        assert!(matches!(err, TaskError::BadLine { line: 2, .. }), "{err}");
        let p = parse_jsonl(&text, "dev.jsonl", OnBadLine::Skip).unwrap();
        assert_eq!((p.records.len(), p.skipped), (1, 2));
        // The unlabeled line is explained.
        let only_unlabeled = LINE.replace("\"answerKey\": \"A\", ", "");
        let err = parse_jsonl(&only_unlabeled, "test.jsonl", OnBadLine::Error).unwrap_err().to_string();
        assert!(err.contains("test.jsonl:1") && err.contains("no answerKey"), "{err}");
        assert!(matches!(parse_jsonl("\n\n", "e.jsonl", OnBadLine::Error), Err(TaskError::Empty { .. })));
    }

    #[test]
    fn exemplars_answer_themselves() {
        for ex in exemplars() {
            let c = TaskKind::Csqa.completion(&ex.item, &ex.rationale, PromptStyle::Rationale);
            assert!(TaskKind::Csqa.is_correct(&ex.item, &c), "{c}");
            assert!(!ex.item.leaks_hint(&c));
        }
    }
}
