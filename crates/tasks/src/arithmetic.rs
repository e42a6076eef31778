//! n-digit addition with a scratchpad, in the STaR paper's arithmetic format (from Nye et al.'s
//! scratchpads): digits separated by spaces; the `<scratch>` block starts from the two numbers
//! and removes one column per line, from the right, writing the digits of the result found so
//! far and the carry `C: 0/1`; its last line is the final carry followed by the result.
//!
//! ```text
//! Q: 6 2 4 + 2 5 9
//! <scratch>
//! 6 2 4 + 2 5 9 , C: 0
//! 6 2 + 2 5 , 3 C: 1
//! 6 + 2 , 8 3 C: 0
//! , 8 8 3 C: 0
//! 0 8 8 3
//! </scratch>
//! A: 8 8 3
//! ```
//!
//! The rationalization hint gives the answer after the question: `Q: 6 2 4 + 2 5 9 (8 8 3)`.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every character the task's text uses; a character-level tokenizer over it covers the task.
pub const ALPHABET: &str = "0123456789+=:,()ACQ<>/abcehrst \n";

/// Multi-character tokens for the task's tokenizer: a space and the digit or sign after it are one
/// token, as in the BPE vocabularies of the STaR paper's models (GPT-J reads ` 7` as one token),
/// and the markers are one token each. This halves the length of the text.
pub const PIECES: [&str; 17] = [
    " 0",
    " 1",
    " 2",
    " 3",
    " 4",
    " 5",
    " 6",
    " 7",
    " 8",
    " 9",
    " +",
    " ,",
    " C:",
    "Q:",
    "A:",
    "<scratch>",
    "</scratch>",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addition {
    pub a: u64,
    pub b: u64,
}

/// `624` → `6 2 4`.
pub fn spaced(n: u64) -> String {
    spaced_digits(&n.to_string())
}

fn spaced_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

impl Addition {
    /// The larger operand's digit count.
    pub fn digits(&self) -> usize {
        self.a.max(self.b).to_string().len()
    }

    pub fn sum(&self) -> u64 {
        self.a + self.b
    }

    /// `Q: 6 2 4 + 2 5 9\n`
    pub fn question(&self) -> String {
        format!("Q: {} + {}\n", spaced(self.a), spaced(self.b))
    }

    /// The question with the answer given as a hint, for rationalization: `Q: 6 2 4 + 2 5 9 (8 8 3)\n`.
    pub fn hinted_question(&self) -> String {
        format!("Q: {} + {} ({})\n", spaced(self.a), spaced(self.b), spaced(self.sum()))
    }

    /// The worked columns, `<scratch>\n` … `</scratch>\n`.
    pub fn scratchpad(&self) -> String {
        let (mut a, mut b) = (self.a.to_string(), self.b.to_string());
        let mut result = String::new(); // digits found so far, most significant first
        let mut carry = 0u32;
        let mut out = String::from("<scratch>\n");
        loop {
            let mut parts: Vec<String> = Vec::new();
            if !a.is_empty() || !b.is_empty() {
                if !a.is_empty() {
                    parts.push(spaced_digits(&a));
                }
                parts.push("+".into());
                if !b.is_empty() {
                    parts.push(spaced_digits(&b));
                }
            }
            parts.push(",".into());
            if !result.is_empty() {
                parts.push(spaced_digits(&result));
            }
            parts.push(format!("C: {carry}"));
            out.push_str(&parts.join(" "));
            out.push('\n');
            if a.is_empty() && b.is_empty() {
                break;
            }
            let x = a.pop().map_or(0, |c| c.to_digit(10).expect("digit"));
            let y = b.pop().map_or(0, |c| c.to_digit(10).expect("digit"));
            let s = x + y + carry;
            result.insert(0, char::from_digit(s % 10, 10).expect("digit"));
            carry = s / 10;
        }
        out.push_str(&format!("{carry} {}\n</scratch>\n", spaced_digits(&result)));
        out
    }

    /// `A: 8 8 3\n`
    pub fn answer_line(&self) -> String {
        format!("A: {}\n", spaced(self.sum()))
    }

    /// Scratchpad and answer: what the model writes after the question.
    pub fn worked_answer(&self) -> String {
        format!("{}{}", self.scratchpad(), self.answer_line())
    }

    /// Question, scratchpad and answer: one training document.
    pub fn worked_example(&self) -> String {
        format!("{}{}", self.question(), self.worked_answer())
    }
}

/// The number on the first `A:` line of a model's output. Tolerates missing or doubled spaces
/// between digits and thousands separators; `None` when there is no such line or no number.
pub fn parse_answer(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.trim_start().strip_prefix("A:"))?;
    let digits: String = line
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ' ' || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.parse().ok()
}

impl Addition {
    /// The problem as a task item; its group is its digit count (`3 digits`).
    pub fn item(&self) -> crate::Item {
        crate::Item {
            id: format!("{}+{}", self.a, self.b),
            question: self.question(),
            hinted_question: self.hinted_question(),
            hint: format!("({})", spaced(self.sum())),
            gold: self.sum().to_string(),
            answer_text: spaced(self.sum()),
            choices: Vec::new(),
            group: Some(format!("{} digits", self.digits())),
        }
    }

    /// The problem with its worked scratchpad as a few-shot exemplar.
    pub fn exemplar(&self) -> crate::Exemplar {
        crate::Exemplar { item: self.item(), rationale: self.scratchpad() }
    }
}

/// Few-shot exemplars for prompting a pretrained model (a from-scratch model learns the format
/// in pretraining instead).
pub fn exemplars() -> Vec<crate::Exemplar> {
    [Addition { a: 624, b: 259 }, Addition { a: 38, b: 7 }, Addition { a: 4071, b: 2985 }]
        .iter()
        .map(Addition::exemplar)
        .collect()
}

/// `n` problems whose larger operand has between `min_digits` and `max_digits` digits, from a
/// seeded generator (same seed, same problems, on every platform). Digit counts are uniform.
pub fn problems(seed: u64, n: usize, min_digits: usize, max_digits: usize) -> Vec<Addition> {
    assert!(1 <= min_digits && min_digits <= max_digits && max_digits <= 18);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let d = rng.random_range(min_digits..=max_digits) as u32;
            let hi = 10u64.pow(d);
            let lo = if d == 1 { 0 } else { 10u64.pow(d - 1) };
            let a = rng.random_range(lo..hi);
            let b = rng.random_range(0..hi);
            if rng.random_bool(0.5) { Addition { a, b } } else { Addition { a: b, b: a } }
        })
        .collect()
}

/// A STaR data set of sums with `lo..=hi` digits: `train_size` training questions drawn (fewer
/// remain after removing repeats) and `dev_per_digit` dev questions per digit count, so every
/// count is measured. Training questions never repeat, and never include a dev question of two or
/// more digits; one-digit sums number only 100, so there dev and training share questions (as they
/// did in the STaR paper, which drew its problems at random).
pub fn train_dev_split(
    seed: u64,
    train_size: usize,
    dev_per_digit: usize,
    lo: usize,
    hi: usize,
) -> (Vec<crate::Item>, Vec<crate::Item>) {
    let mut dev_ids = std::collections::HashSet::new();
    let dev: Vec<crate::Item> = (lo..=hi)
        .flat_map(|d| problems(seed.wrapping_add(7_919 * d as u64 + 1), dev_per_digit, d, d))
        .filter(|p| dev_ids.insert(p.item().id))
        .map(|p| p.item())
        .collect();
    let mut train_ids = std::collections::HashSet::new();
    let train = problems(seed, train_size, lo, hi)
        .into_iter()
        .filter(|p| (p.digits() == 1 || !dev_ids.contains(&p.item().id)) && train_ids.insert(p.item().id))
        .map(|p| p.item())
        .collect();
    (train, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratchpad_removes_one_column_per_line() {
        let p = Addition { a: 624, b: 259 };
        assert_eq!(
            p.worked_example(),
            "Q: 6 2 4 + 2 5 9\n<scratch>\n6 2 4 + 2 5 9 , C: 0\n6 2 + 2 5 , 3 C: 1\n6 + 2 , 8 3 C: 0\n\
             , 8 8 3 C: 0\n0 8 8 3\n</scratch>\nA: 8 8 3\n"
        );
        // Operands of different lengths; a final carry.
        let p = Addition { a: 95, b: 7 };
        assert_eq!(p.scratchpad(), "<scratch>\n9 5 + 7 , C: 0\n9 + , 2 C: 1\n, 0 2 C: 1\n1 0 2\n</scratch>\n");
        assert_eq!(p.answer_line(), "A: 1 0 2\n");
        assert_eq!(
            Addition { a: 3, b: 41 }.scratchpad(),
            "<scratch>\n3 + 4 1 , C: 0\n+ 4 , 4 C: 0\n, 4 4 C: 0\n0 4 4\n</scratch>\n"
        );
        assert_eq!(Addition { a: 624, b: 259 }.hinted_question(), "Q: 6 2 4 + 2 5 9 (8 8 3)\n");
    }

    #[test]
    fn answers_are_parsed_from_model_output() {
        assert_eq!(parse_answer("<scratch>\n...\n</scratch>\nA: 1 0 2\nQ: 3 + 4"), Some(102));
        assert_eq!(parse_answer("A:86"), Some(86));
        assert_eq!(parse_answer("A:  1,0 2 "), Some(102));
        assert_eq!(parse_answer("no answer here"), None);
        assert_eq!(parse_answer("A: x"), None);
        assert_eq!(parse_answer("A: 99999999999999999999"), None);
    }

    #[test]
    fn generator_is_seeded_and_respects_digits() {
        let a = problems(5, 200, 2, 4);
        assert_eq!(a, problems(5, 200, 2, 4));
        assert_ne!(a, problems(6, 200, 2, 4));
        assert!(a.iter().all(|p| (2..=4).contains(&p.digits())));
        assert!((2..=4).all(|d| a.iter().any(|p| p.digits() == d)));
    }

    #[test]
    fn items_round_trip_through_the_task_format() {
        use crate::{PromptStyle, TaskKind};
        for ex in exemplars() {
            let c = TaskKind::Arithmetic.completion(&ex.item, &ex.rationale, PromptStyle::Rationale);
            assert!(TaskKind::Arithmetic.is_correct(&ex.item, &c));
            assert!(!ex.item.leaks_hint(&c), "{c}");
        }
        let p = Addition { a: 624, b: 259 };
        let c = TaskKind::Arithmetic.completion(&p.item(), &p.scratchpad(), PromptStyle::Rationale);
        assert_eq!(format!("{}{c}", p.question()), p.worked_example());
        assert_eq!(p.item().group.as_deref(), Some("3 digits"));
    }

    #[test]
    fn alphabet_covers_the_text() {
        for p in problems(1, 50, 1, 6) {
            let all = format!("{}{}", p.worked_example(), p.hinted_question());
            assert!(all.chars().all(|c| ALPHABET.contains(c)), "{p:?}");
        }
    }

    #[test]
    fn train_dev_split_measures_every_length_and_never_repeats() {
        let (train, dev) = train_dev_split(3, 400, 10, 1, 3);
        for d in 1..=3 {
            let group = format!("{d} digits");
            let n = dev.iter().filter(|it| it.group.as_deref() == Some(group.as_str())).count();
            assert!((8..=10).contains(&n), "{n} dev questions of {d} digits");
        }
        let mut seen = std::collections::HashSet::new();
        assert!(train.iter().all(|it| seen.insert(it.id.clone())), "a training question repeats");
        assert!(train.len() > 300 && train.len() <= 400);
        let dev_ids: std::collections::HashSet<_> = dev.iter().map(|it| it.id.clone()).collect();
        assert!(train.iter().filter(|it| it.group.as_deref() != Some("1 digits")).all(|it| !dev_ids.contains(&it.id)));
        assert_eq!(train_dev_split(3, 400, 10, 1, 3).0, train, "seeded");
    }
}
