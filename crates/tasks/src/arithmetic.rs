//! n-digit addition with a scratchpad, in the spirit of the STaR paper's arithmetic task: the
//! digits are separated by spaces and a `<scratch>` block adds them from the right, one column
//! per line, carrying `C: 0/1`, before the answer.
//!
//! ```text
//! Q: 2 9 + 5 7
//! <scratch>
//! 9 + 7 + 0 = 1 6 , C: 1
//! 2 + 5 + 1 = 8 , C: 0
//! </scratch>
//! A: 8 6
//! ```

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every character the task's text uses; a character-level tokenizer over it covers the task.
pub const ALPHABET: &str = "0123456789+=:,ACQ<>/abcehrst \n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addition {
    pub a: u64,
    pub b: u64,
}

fn spaced(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() * 2);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

fn digits_lsb_first(mut n: u64) -> Vec<u64> {
    let mut d = Vec::new();
    loop {
        d.push(n % 10);
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

impl Addition {
    /// The larger operand's digit count.
    pub fn digits(&self) -> usize {
        self.a.max(self.b).to_string().len()
    }

    pub fn sum(&self) -> u64 {
        self.a + self.b
    }

    /// `Q: 2 9 + 5 7\n`
    pub fn question(&self) -> String {
        format!("Q: {} + {}\n", spaced(self.a), spaced(self.b))
    }

    /// The worked column additions, `<scratch>` … `</scratch>\n`.
    pub fn scratchpad(&self) -> String {
        let (da, db) = (digits_lsb_first(self.a), digits_lsb_first(self.b));
        let mut out = String::from("<scratch>\n");
        let mut carry = 0;
        for i in 0..da.len().max(db.len()) {
            let (x, y) = (da.get(i).copied().unwrap_or(0), db.get(i).copied().unwrap_or(0));
            let s = x + y + carry;
            let c_out = s / 10;
            out.push_str(&format!("{x} + {y} + {carry} = {} , C: {c_out}\n", spaced(s)));
            carry = c_out;
        }
        out.push_str("</scratch>\n");
        out
    }

    /// `A: 8 6\n`
    pub fn answer_line(&self) -> String {
        format!("A: {}\n", spaced(self.sum()))
    }

    /// Question, scratchpad and answer: one training document.
    pub fn worked_example(&self) -> String {
        format!("{}{}{}", self.question(), self.scratchpad(), self.answer_line())
    }
}

/// The number on the first `A:` line of a model's output (digits may be space-separated);
/// `None` when there is no such line or it holds no number.
pub fn parse_answer(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.trim_start().strip_prefix("A:"))?;
    let digits: String = line.chars().take_while(|c| c.is_ascii_digit() || *c == ' ').filter(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.parse().ok()
}

/// `n` problems whose larger operand has between `min_digits` and `max_digits` digits, from a
/// seeded generator (same seed, same problems, on every platform).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratchpad_carries_column_by_column() {
        let p = Addition { a: 29, b: 57 };
        assert_eq!(
            p.worked_example(),
            "Q: 2 9 + 5 7\n<scratch>\n9 + 7 + 0 = 1 6 , C: 1\n2 + 5 + 1 = 8 , C: 0\n</scratch>\nA: 8 6\n"
        );
        let p = Addition { a: 95, b: 7 };
        assert!(p.scratchpad().contains("9 + 0 + 1 = 1 0 , C: 1\n"));
        assert_eq!(p.answer_line(), "A: 1 0 2\n");
    }

    #[test]
    fn answers_are_parsed_from_model_output() {
        assert_eq!(parse_answer("<scratch>\n...\n</scratch>\nA: 1 0 2\nQ: 3 + 4"), Some(102));
        assert_eq!(parse_answer("A:86"), Some(86));
        assert_eq!(parse_answer("no answer here"), None);
        assert_eq!(parse_answer("A: x"), None);
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
    fn alphabet_covers_the_text() {
        for p in problems(1, 50, 1, 6) {
            assert!(p.worked_example().chars().all(|c| ALPHABET.contains(c)), "{p:?}");
        }
    }
}
