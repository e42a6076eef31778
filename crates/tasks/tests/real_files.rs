//! The parsers on the real distributed files in `shared/data` (set STARLING_SHARED to the folder
//! holding data/), and on those files with broken lines spliced in.

use std::path::PathBuf;

use starling_tasks::{OnBadLine, PromptStyle, TaskError, TaskKind, csqa, gsm8k};

fn data(rel: &str) -> (String, String) {
    let dir = std::env::var_os("STARLING_SHARED").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
            .join("../../../shared")
    });
    let path = dir.join("data").join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set STARLING_SHARED to the folder holding data/)", path.display()));
    (text, path.display().to_string())
}

#[test]
fn commonsenseqa_train_and_dev_parse_completely() {
    for (file, lines) in [("commonsenseqa/train.jsonl", 9741), ("commonsenseqa/dev.jsonl", 1221)] {
        let (text, origin) = data(file);
        let p = csqa::parse_jsonl(&text, &origin, OnBadLine::Error).unwrap();
        assert_eq!((p.records.len(), p.skipped), (lines, 0), "{file}");
        for it in &p.records {
            assert_eq!(it.choices.len(), 5);
            assert!(it.question.starts_with("Q: ") && it.question.contains("Answer Choices:\n(a) "));
            assert_eq!(it.hinted_question.matches(csqa::HINT).count(), 1);
            // The gold answer written as the completion reads back as the gold letter.
            let c = TaskKind::Csqa.completion(it, "", PromptStyle::Direct);
            assert!(TaskKind::Csqa.is_correct(it, &c), "{c}");
        }
        // Answer keys spread over all five letters.
        for l in ["a", "b", "c", "d", "e"] {
            assert!(p.records.iter().filter(|i| i.gold == l).count() > lines / 10, "{file}: few answers {l}");
        }
    }
}

#[test]
fn gsm8k_train_and_test_parse_completely() {
    for (file, lines) in [("gsm8k/train.jsonl", 7473), ("gsm8k/test.jsonl", 1319)] {
        let (text, origin) = data(file);
        let p = gsm8k::parse_jsonl(&text, &origin, OnBadLine::Error).unwrap();
        assert_eq!((p.records.len(), p.skipped), (lines, 0), "{file}");
        for (it, solution) in &p.records {
            assert!(!solution.contains("<<") && !solution.contains("####"), "{solution}");
            assert!(it.gold.parse::<f64>().is_ok(), "{}", it.gold);
            let c = TaskKind::Gsm8k.completion(it, solution, PromptStyle::Rationale);
            assert!(TaskKind::Gsm8k.is_correct(it, &c));
        }
    }
}

#[test]
fn broken_lines_in_real_files_are_located_or_skipped() {
    let (text, _) = data("commonsenseqa/dev.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(100, "{\"answerKey\": \"A\", \"question\": ");
    lines.insert(500, "not json at all");
    let broken = lines.join("\n");
    match csqa::parse_jsonl(&broken, "dev.jsonl", OnBadLine::Error) {
        Err(TaskError::BadLine { line, origin, .. }) => assert_eq!((line, origin.as_str()), (101, "dev.jsonl")),
        other => panic!("expected a bad-line error, got {:?}", other.map(|p| p.records.len())),
    }
    let p = csqa::parse_jsonl(&broken, "dev.jsonl", OnBadLine::Skip).unwrap();
    assert_eq!((p.records.len(), p.skipped), (1221, 2));
    assert!(p.first_error.unwrap().starts_with("dev.jsonl:101:"));

    let (text, _) = data("gsm8k/test.jsonl");
    let truncated = &text[..text.len() / 2];
    let cut_line = truncated.lines().count();
    let err = gsm8k::parse_jsonl(truncated, "test.jsonl", OnBadLine::Error).unwrap_err().to_string();
    assert!(err.starts_with(&format!("test.jsonl:{cut_line}:")), "{err}");
}
