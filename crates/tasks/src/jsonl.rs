//! Line-by-line JSONL parsing with errors that name the file and line.

use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TaskError {
    #[error("{origin}:{line}: {message}")]
    BadLine { origin: String, line: usize, message: String },
    #[error("{origin} holds no usable examples{hint}")]
    Empty { origin: String, hint: String },
    #[error("{0}")]
    Invalid(String),
}

/// What to do with a malformed line: stop with its file and line number, or skip and count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBadLine {
    #[default]
    Error,
    Skip,
}

/// Parsed records, and how many malformed lines were skipped.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub records: Vec<T>,
    pub skipped: usize,
    /// The first skipped line's error, to show the user what was wrong.
    pub first_error: Option<String>,
}

/// Parses every non-blank line of `text` as `R`, then converts it with `convert` (which may reject
/// a well-formed record, e.g. one without an answer). Blank lines are ignored.
pub fn parse<R: DeserializeOwned, T>(
    text: &str,
    origin: &str,
    on_bad: OnBadLine,
    mut convert: impl FnMut(R, usize) -> Result<T, String>,
) -> Result<Parsed<T>, TaskError> {
    let mut out = Parsed { records: Vec::new(), skipped: 0, first_error: None };
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_start_matches('\u{feff}');
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<R>(line)
            .map_err(|e| format!("not a valid record: {e}"))
            .and_then(|r| convert(r, line_no));
        match result {
            Ok(t) => out.records.push(t),
            Err(message) => match on_bad {
                OnBadLine::Error => {
                    return Err(TaskError::BadLine { origin: origin.to_string(), line: line_no, message });
                }
                OnBadLine::Skip => {
                    out.skipped += 1;
                    out.first_error.get_or_insert_with(|| format!("{origin}:{line_no}: {message}"));
                }
            },
        }
    }
    if out.records.is_empty() {
        let hint = if out.skipped > 0 {
            format!(
                " (all {} lines were malformed; first: {})",
                out.skipped,
                out.first_error.clone().unwrap_or_default()
            )
        } else {
            " (the file is empty)".to_string()
        };
        return Err(TaskError::Empty { origin: origin.to_string(), hint });
    }
    Ok(out)
}
