//! Turning training text into examples: plain text (one token stream cut into windows) or JSONL
//! (`{"text": …}` learned whole, or `{"prompt": …, "completion": …}` learned on the completion).

use serde_json::Value;

use starling_model::Tokenizer;

use crate::data::{Example, chunk_stream, fixed_windows};
use crate::trainer::TrainError;

/// What to do with a malformed JSONL line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadLines {
    Error,
    Skip,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CorpusReport {
    pub examples: usize,
    pub skipped_lines: usize,
    /// Examples longer than the training window (they are cut).
    pub truncated: usize,
}

/// Plain text: the whole file is one stream of tokens (with the tokenizer's special tokens, e.g. a
/// leading BOS), cut into windows of `max_len`.
pub fn text_examples(
    text: &str,
    tokenizer: &Tokenizer,
    max_len: usize,
    origin: &str,
) -> Result<Vec<Example>, TrainError> {
    if text.trim().is_empty() {
        return Err(TrainError::Data(format!("{origin} is empty; give it some text to learn")));
    }
    let ids = tokenizer.encode(text, true)?;
    let ex = chunk_stream(&ids, max_len);
    if ex.is_empty() {
        return Err(TrainError::Data(format!("{origin} has fewer than two tokens")));
    }
    Ok(ex)
}

/// JSONL: each non-blank line an object with `text`, or with `prompt` and `completion`.
/// `eos` (if given) is appended to every example so the model learns where text ends.
pub fn jsonl_examples(
    text: &str,
    tokenizer: &Tokenizer,
    eos: Option<u32>,
    max_len: usize,
    origin: &str,
    bad: BadLines,
) -> Result<(Vec<Example>, CorpusReport), TrainError> {
    let mut out = Vec::new();
    let mut report = CorpusReport::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = parse_line(line, tokenizer, eos);
        match parsed {
            Ok(e) => {
                if e.ids.len() > max_len {
                    report.truncated += 1;
                }
                out.push(e);
            }
            Err(why) => match bad {
                BadLines::Error => {
                    return Err(TrainError::BadLine { origin: origin.to_string(), line: i + 1, message: why });
                }
                BadLines::Skip => report.skipped_lines += 1,
            },
        }
    }
    if out.is_empty() {
        return Err(TrainError::Data(format!(
            "{origin} has no usable example{}",
            if report.skipped_lines > 0 {
                format!(" ({} malformed lines skipped)", report.skipped_lines)
            } else {
                String::new()
            }
        )));
    }
    report.examples = out.len();
    Ok((out, report))
}

/// Windows of exactly `len` tokens cut from each document on its own, so no window spans two
/// documents (the equal-length sequences Quiet-STaR trains on).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Windows {
    pub windows: Vec<Vec<u32>>,
    pub documents: usize,
    /// Documents shorter than one window: they give nothing.
    pub too_short: usize,
}

/// `text` as documents cut into windows of `len` tokens: with `jsonl`, each non-blank line is a
/// document (`{"text": …}`, `eos` appended); otherwise the whole text is one document.
pub fn document_windows(
    text: &str,
    tokenizer: &Tokenizer,
    eos: Option<u32>,
    len: usize,
    jsonl: bool,
    origin: &str,
) -> Result<Windows, TrainError> {
    let mut out = Windows::default();
    let mut add = |ids: Vec<u32>| {
        out.documents += 1;
        let windows = fixed_windows(&ids, len);
        if windows.is_empty() {
            out.too_short += 1;
        }
        out.windows.extend(windows);
    };
    if jsonl {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| TrainError::BadLine { origin: origin.to_string(), line: i + 1, message };
            let v: Value = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON ({e})")))?;
            let Some(Value::String(doc)) = v.get("text") else {
                return Err(bad("expected an object with a string `text` (one document per line)".into()));
            };
            let mut ids = tokenizer.encode(doc, true)?;
            ids.extend(eos);
            add(ids);
        }
    } else {
        add(tokenizer.encode(text, false)?);
    }
    if out.windows.is_empty() {
        return Err(TrainError::Data(format!(
            "{origin}: none of its {} document(s) has {len} tokens, one training window; give longer text \
             or a shorter --seq-len",
            out.documents
        )));
    }
    Ok(out)
}

fn parse_line(line: &str, tokenizer: &Tokenizer, eos: Option<u32>) -> Result<Example, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    let field = |k: &str| -> Result<Option<&str>, String> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("field `{k}` must be a string")),
        }
    };
    // The start of an example gets the tokenizer's special tokens (a BOS where the model uses
    // one); a completion continues its prompt, so it gets none.
    let enc = |s: &str, special: bool| tokenizer.encode(s, special).map_err(|e| e.to_string());
    let tail: Vec<u32> = eos.into_iter().collect();
    let ex = match (field("text")?, field("prompt")?, field("completion")?) {
        (Some(t), None, None) => Example::full([enc(t, true)?, tail].concat()),
        (None, Some(p), Some(c)) => Example::prompt_completion(&enc(p, true)?, &[enc(c, false)?, tail].concat()),
        _ => return Err("expected an object with `text`, or with `prompt` and `completion`".into()),
    };
    if ex.ids.len() < 2 || ex.targets() == 0 {
        return Err("the example has nothing to learn (empty text or completion)".into());
    }
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        Tokenizer::char_level("abcdefghijklmnopqrstuvwxyz ", &["<pad>", "<eos>"]).unwrap()
    }

    #[test]
    fn windows_never_span_two_documents() {
        let t = tok();
        // Documents of 7, 2 and 9 characters (+ eos), windows of 4: 2 + 0 + 2, each from one line.
        let data = "{\"text\": \"aaaaaaa\"}\n{\"text\": \"bb\"}\n\n{\"text\": \"ccccccccc\"}\n";
        let w = document_windows(data, &t, Some(1), 4, true, "d.jsonl").unwrap();
        assert_eq!((w.documents, w.too_short, w.windows.len()), (3, 1, 4));
        let (a, c) = (t.encode("a", false).unwrap()[0], t.encode("c", false).unwrap()[0]);
        assert_eq!(w.windows[0], vec![a; 4]);
        assert_eq!(w.windows[1], vec![a, a, a, 1], "a document's tail with its eos, not the next document");
        assert!(w.windows[2..].iter().all(|win| win == &vec![c; 4]));
        // Plain text is one document, cut as one stream.
        let w = document_windows("aaaaaaaabbbb", &t, None, 4, false, "t.txt").unwrap();
        assert_eq!((w.documents, w.windows.len()), (1, 3));
        // Nothing long enough, or a line that is not a document: errors that say so.
        let err = document_windows(data, &t, None, 64, true, "d.jsonl").unwrap_err().to_string();
        assert!(err.contains("none of its 3 document(s) has 64 tokens"), "{err}");
        let err = document_windows("{\"txt\": 1}\n", &t, None, 4, true, "d.jsonl").unwrap_err().to_string();
        assert!(err.contains("d.jsonl:1:") && err.contains("`text`"), "{err}");
    }

    #[test]
    fn reads_both_jsonl_shapes() {
        let data = "{\"text\": \"ab\"}\n\n{\"prompt\": \"q \", \"completion\": \"yes\"}\n";
        let (ex, rep) = jsonl_examples(data, &tok(), Some(1), 64, "d.jsonl", BadLines::Error).unwrap();
        assert_eq!(rep.examples, 2);
        assert_eq!(ex[0].ids.len(), 3);
        assert_eq!(ex[0].ids[2], 1);
        assert_eq!(ex[1].train, vec![false, false, true, true, true, true]);
    }

    #[test]
    fn malformed_lines_name_file_and_line_or_are_skipped() {
        let data = "{\"text\": \"ab\"}\n{\"txt\": 3}\nnot json\n";
        let err = jsonl_examples(data, &tok(), None, 64, "d.jsonl", BadLines::Error).unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2:"), "{err}");
        let (ex, rep) = jsonl_examples(data, &tok(), None, 64, "d.jsonl", BadLines::Skip).unwrap();
        assert_eq!((ex.len(), rep.skipped_lines), (1, 2));
        let err = jsonl_examples("\n\n", &tok(), None, 64, "e.jsonl", BadLines::Error).unwrap_err().to_string();
        assert!(err.contains("e.jsonl has no usable example"), "{err}");
        let err = text_examples("  \n", &tok(), 64, "e.txt").unwrap_err().to_string();
        assert!(err.contains("e.txt is empty"), "{err}");
    }
}
