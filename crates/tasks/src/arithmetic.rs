//! n-digit addition in the STaR paper's arithmetic format, written exactly as the official code
//! writes it (ezelikman/STaR at 6ffd3c4: `arithmetic/gen_sums.py` builds the documents,
//! `device_inference.py` the prompts, hints and answer reading):
//!
//! ```text
//! Input:
//! 6 2 4 + 2 5 9
//! Target:
//! <scratch>
//! 6 2 4 + 2 5 9 , C: 0
//! 2 + 5 , 3 C: 1
//! 6 + 2 , 8 3 C: 0
//! , 8 8 3 C: 0
//! 0 8 8 3
//! </scratch>
//! 8 8 3
//! ```
//!
//! - Both operands of an n-digit sum have exactly n digits, the first one 1–9 (`gen_sums.py`
//!   draws `randrange(10**(n-1), 10**n)` for each), so there are 81 one-digit sums.
//! - The scratchpad's first line copies the sum with `, C: 0`. Each later line names the **next**
//!   column's two digits (right to left, from the second column on), then the result digits found
//!   so far and the carry into that column. The second-last line is `, <result so far> C: <carry>`
//!   and the last one the final carry followed by those digits.
//! - The prompt ends at `Target:`; the model writes the rest. The answer is the line after
//!   `</scratch>` (`device_inference.py` reads that line).
//! - The rationalization hint is the scratchpad's last line after `Target:` —
//!   `Target: 0 8 8 3` — as `question_to_context` builds it (a quirk of the official code: the
//!   hint carries the final carry). Writing the hint's digits is part of every correct scratchpad,
//!   so for this task a completion that repeats the hint has not leaked it.
//!
//! Operands of different lengths (the official code never makes them; a page visitor may type
//! them) are written as they are in the question and their columns read a missing digit as 0.
//!
//! Every sum belongs to one of three disjoint pools — pretraining, STaR training, dev — by a hash
//! of its unordered operands ([`pool_of`]), so a base model's pretraining corpus, STaR's training
//! questions and the dev questions never share a sum (nor its mirror `b + a`), whatever the seeds.

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every word of the task's text: a word-level tokenizer over these (and the newline) covers it,
/// one token per digit wherever the digit stands.
pub const WORDS: [&str; 17] =
    ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "+", ",", "C:", "Input:", "Target:", "<scratch>", "</scratch>"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// The digits of `n`, least significant first.
fn digits_lsb_first(n: u64) -> Vec<u32> {
    n.to_string().chars().rev().map(|c| c.to_digit(10).expect("decimal digit")).collect()
}

impl Addition {
    /// The longer operand's digit count (both have it in the official format).
    pub fn digits(&self) -> usize {
        self.a.max(self.b).to_string().len()
    }

    pub fn sum(&self) -> u64 {
        self.a + self.b
    }

    /// `6 2 4 + 2 5 9`
    fn sum_text(&self) -> String {
        format!("{} + {}", spaced(self.a), spaced(self.b))
    }

    /// `Input:\n6 2 4 + 2 5 9\nTarget:` — the prompt; the model writes what follows.
    pub fn question(&self) -> String {
        format!("Input:\n{}\nTarget:", self.sum_text())
    }

    /// The scratchpad's last line, the rationalization hint: `0 8 8 3`.
    pub fn hint(&self) -> String {
        let lines = self.scratch_lines();
        lines.last().expect("a scratchpad has lines").clone()
    }

    /// The question with the hint after `Target:`: `Input:\n6 2 4 + 2 5 9\nTarget: 0 8 8 3`.
    pub fn hinted_question(&self) -> String {
        format!("{} {}", self.question(), self.hint())
    }

    /// The lines between `<scratch>` and `</scratch>`.
    fn scratch_lines(&self) -> Vec<String> {
        let (a, b) = (digits_lsb_first(self.a), digits_lsb_first(self.b));
        let columns = a.len().max(b.len());
        let digit = |d: &[u32], i: usize| d.get(i).copied().unwrap_or(0);
        let mut lines = vec![format!("{} , C: 0", self.sum_text())];
        let mut result = String::new(); // `8 3 ` — digits found so far, most significant first
        let mut carry = 0;
        for i in 0..columns {
            let (x, y) = (digit(&a, i), digit(&b, i));
            if i > 0 {
                lines.push(format!("{x} + {y} , {result}C: {carry}"));
            }
            let s = x + y + carry;
            carry = s / 10;
            result = format!("{} {result}", s % 10);
        }
        lines.push(format!(", {result}C: {carry}"));
        lines.push(format!("{carry} {result}").trim_end().to_string());
        lines
    }

    /// `<scratch>\n` … `</scratch>\n`
    pub fn scratchpad(&self) -> String {
        let mut s = String::from("<scratch>\n");
        for line in self.scratch_lines() {
            s.push_str(&line);
            s.push('\n');
        }
        s.push_str("</scratch>\n");
        s
    }

    /// `8 8 3\n`
    pub fn answer_line(&self) -> String {
        format!("{}\n", spaced(self.sum()))
    }

    /// What the model writes after the question: `\n<scratch>` … `</scratch>\n8 8 3\n`.
    pub fn worked_answer(&self) -> String {
        format!("\n{}{}", self.scratchpad(), self.answer_line())
    }

    /// Question, scratchpad and answer: one document of `gen_sums.py` (without its blank line).
    pub fn worked_example(&self) -> String {
        format!("{}{}", self.question(), self.worked_answer())
    }

    /// The problem as a task item; its group is its digit count (`3 digits`).
    pub fn item(&self) -> crate::Item {
        crate::Item {
            id: format!("{}+{}", self.a, self.b),
            question: self.question(),
            hinted_question: self.hinted_question(),
            hint: self.hint(),
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

    /// The sum an arithmetic item asks for, read back from its id (`624+259`).
    pub fn of_item(item: &crate::Item) -> Option<Addition> {
        let (a, b) = item.id.split_once('+')?;
        Some(Addition { a: a.parse().ok()?, b: b.parse().ok()? })
    }

    /// Whether every line of `completion`'s scratchpad is the correct one (and there are as many
    /// as there should be): the rationale is sound, not only its answer. `None` when the completion
    /// has no `<scratch>` … `</scratch>` block.
    pub fn scratchpad_is_sound(&self, completion: &str) -> Option<bool> {
        Some(self.check_scratchpad(completion)?.iter().all(|l| l.right))
    }

    /// `completion`'s scratchpad line by line against the correct one, aligned like a diff: a
    /// missing line shows as one (`written: None`) without shifting the lines after it, an extra
    /// one as `expected: None`, and a wrong line beside the correct one it replaces. `None` when
    /// the completion has no `<scratch>` … `</scratch>` block.
    pub fn check_scratchpad(&self, completion: &str) -> Option<Vec<LineCheck>> {
        let start = completion.find("<scratch>")?;
        let body = &completion[start + "<scratch>".len()..];
        let end = body.find("</scratch>")?;
        let written: Vec<&str> = body[..end].lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let expected = self.scratch_lines();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        Some(align_lines(&written, &expected))
    }
}

/// `written` against `expected` through their longest common subsequence: common lines are
/// right; between two of them, the unmatched lines pair up in order (a wrong line for a
/// correct one), and what is left over is an extra or a missing line.
fn align_lines(written: &[&str], expected: &[&str]) -> Vec<LineCheck> {
    let (n, m) = (written.len(), expected.len());
    // common[i][j]: the longest common subsequence of written[i..] and expected[j..].
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if written[i] == expected[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut out = Vec::with_capacity(n.max(m));
    let (mut unmatched_w, mut unmatched_e): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let flush = |out: &mut Vec<LineCheck>, w: &mut Vec<&str>, e: &mut Vec<&str>| {
        for k in 0..w.len().max(e.len()) {
            let (written, expected) = (w.get(k).map(|s| s.to_string()), e.get(k).map(|s| s.to_string()));
            out.push(LineCheck { written, expected, right: false });
        }
        w.clear();
        e.clear();
    };
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && written[i] == expected[j] {
            flush(&mut out, &mut unmatched_w, &mut unmatched_e);
            out.push(LineCheck { written: Some(written[i].into()), expected: Some(expected[j].into()), right: true });
            (i, j) = (i + 1, j + 1);
        } else if j == m || (i < n && common[i + 1][j] >= common[i][j + 1]) {
            unmatched_w.push(written[i]);
            i += 1;
        } else {
            unmatched_e.push(expected[j]);
            j += 1;
        }
    }
    flush(&mut out, &mut unmatched_w, &mut unmatched_e);
    out
}

/// One line of a written scratchpad against the correct one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineCheck {
    /// The line written (`None`: the scratchpad stopped before it).
    pub written: Option<String>,
    /// The correct line (`None`: a line too many).
    pub expected: Option<String>,
    pub right: bool,
}

/// The number a completion answers: the first non-empty line after `</scratch>` (as the official
/// code reads it), or the first non-empty line when there is no scratchpad (a direct answer).
/// Tolerates missing or doubled spaces between digits; `None` when that line is not a number.
pub fn parse_answer(text: &str) -> Option<u64> {
    let after = match text.find("</scratch>") {
        Some(i) => &text[i + "</scratch>".len()..],
        None if text.contains("<scratch>") => return None,
        None => text,
    };
    let line = after.lines().map(str::trim).find(|l| !l.is_empty())?;
    if !line.chars().all(|c| c.is_ascii_digit() || c == ' ') {
        return None;
    }
    let digits: String = line.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.parse().ok()
}

/// Few-shot exemplars for prompting a pretrained model (the built-in base model learned the
/// format in pretraining and is prompted without them).
pub fn exemplars() -> Vec<crate::Exemplar> {
    [Addition { a: 624, b: 259 }, Addition { a: 38, b: 47 }, Addition { a: 4071, b: 2985 }]
        .iter()
        .map(Addition::exemplar)
        .collect()
}

/// Where a sum may be used: the three pools are disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// A base model's pretraining corpus.
    Pretrain,
    /// STaR's training questions.
    Train,
    /// Dev questions (evaluation only).
    Dev,
}

/// The pool of `a + b`: 40% of the sums pretraining, 40% training, 20% dev, by the unordered
/// operands (so `b + a` shares it); it never depends on a seed. Sums of two one-digit numbers
/// (only 45 unordered pairs) are dealt out in turn, so each pool gets its share; longer ones by
/// a fixed hash.
pub fn pool_of(a: u64, b: u64) -> Pool {
    let (lo, hi) = (a.min(b), a.max(b));
    let slot = if hi < 10 {
        // The pair's index among (lo, hi), lo ≤ hi < 10, in order.
        (0..lo).map(|l| 10 - l).sum::<u64>() + (hi - lo)
    } else {
        // splitmix64's finalizer over both operands: well mixed, fixed forever.
        let mut z = lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi.rotate_left(32) ^ 0x5374_6152_4172_6974;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % 10 / 2
    };
    match slot % 5 {
        0 | 1 => Pool::Pretrain,
        2 | 3 => Pool::Train,
        _ => Pool::Dev,
    }
}

/// The `d`-digit operands: `10^(d-1) ..= 10^d − 1` (the official range).
fn operand_range(d: usize) -> std::ops::Range<u64> {
    10u64.pow(d as u32 - 1)..10u64.pow(d as u32)
}

/// Up to `n` distinct `d`-digit sums of `pool`, seeded. Small digit counts (up to two digits,
/// 8 100 sums) are enumerated and shuffled, so a pool smaller than `n` gives all it has; larger
/// ones are drawn until `n` are found.
pub fn sums_in_pool(pool: Pool, seed: u64, n: usize, d: usize) -> Vec<Addition> {
    assert!((1..=18).contains(&d), "digit counts run from 1 to 18");
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (d as u64).wrapping_mul(0x0100_0000_01b3));
    let range = operand_range(d);
    if d <= 2 {
        let mut all: Vec<Addition> = range
            .clone()
            .flat_map(|a| range.clone().map(move |b| Addition { a, b }))
            .filter(|p| pool_of(p.a, p.b) == pool)
            .collect();
        all.shuffle(&mut rng);
        all.truncate(n);
        return all;
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = Addition { a: rng.random_range(range.clone()), b: rng.random_range(range.clone()) };
        if pool_of(p.a, p.b) == pool && seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// `n` sums of `pool` with digit counts drawn uniformly from `lo..=hi`, seeded; no sum repeats
/// (a digit count whose pool runs out gives what it has).
pub fn problems(pool: Pool, seed: u64, n: usize, lo: usize, hi: usize) -> Vec<Addition> {
    assert!(1 <= lo && lo <= hi && hi <= 18, "digit counts: 1 ≤ min ≤ max ≤ 18");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut wanted = vec![0usize; hi + 1];
    for _ in 0..n {
        wanted[rng.random_range(lo..=hi)] += 1;
    }
    let mut out: Vec<Addition> = (lo..=hi).flat_map(|d| sums_in_pool(pool, seed, wanted[d], d)).collect();
    out.shuffle(&mut rng);
    out
}

/// A STaR data set of sums with `lo..=hi` digits: `train_size` training questions from the
/// training pool (fewer when the short digit counts' pools run out) and `dev_per_digit` dev
/// questions per digit count from the dev pool (all of them for one digit: the dev pool holds 14
/// of the 81 one-digit sums). The two never share a sum, nor with any pretraining corpus.
pub fn train_dev_split(
    seed: u64,
    train_size: usize,
    dev_per_digit: usize,
    lo: usize,
    hi: usize,
) -> Result<(Vec<crate::Item>, Vec<crate::Item>), EmptySplit> {
    let dev: Vec<_> =
        (lo..=hi).flat_map(|d| sums_in_pool(Pool::Dev, seed ^ 0xde5e7, dev_per_digit, d)).map(|p| p.item()).collect();
    let train: Vec<_> = problems(Pool::Train, seed, train_size, lo, hi).into_iter().map(|p| p.item()).collect();
    if train.is_empty() || dev.is_empty() {
        return Err(EmptySplit { lo, hi, train: train.len(), dev: dev.len() });
    }
    Ok((train, dev))
}

/// A digit range and sizes that leave no training or no dev questions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sums of {lo} to {hi} digits leave {train} training and {dev} dev questions; STaR needs both")]
pub struct EmptySplit {
    pub lo: usize,
    pub hi: usize,
    pub train: usize,
    pub dev: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_match_the_official_code() {
        // The example of the STaR paper's Figure 3, as gen_sums.py writes it.
        let p = Addition { a: 624, b: 259 };
        assert_eq!(
            p.worked_example(),
            "Input:\n6 2 4 + 2 5 9\nTarget:\n<scratch>\n6 2 4 + 2 5 9 , C: 0\n2 + 5 , 3 C: 1\n6 + 2 , 8 3 C: 0\n\
             , 8 8 3 C: 0\n0 8 8 3\n</scratch>\n8 8 3\n"
        );
        assert_eq!(p.hinted_question(), "Input:\n6 2 4 + 2 5 9\nTarget: 0 8 8 3");
        // A final carry; one digit (no column lines: gen_sums.py writes none for the first column).
        assert_eq!(
            Addition { a: 95, b: 27 }.scratchpad(),
            "<scratch>\n9 5 + 2 7 , C: 0\n9 + 2 , 2 C: 1\n, 2 2 C: 1\n1 2 2\n</scratch>\n"
        );
        assert_eq!(Addition { a: 7, b: 5 }.scratchpad(), "<scratch>\n7 + 5 , C: 0\n, 2 C: 1\n1 2\n</scratch>\n");
        assert_eq!(Addition { a: 3, b: 4 }.hint(), "0 7");
        // Unequal lengths (never made by the official code): a missing digit reads as 0.
        assert_eq!(
            Addition { a: 95, b: 7 }.scratchpad(),
            "<scratch>\n9 5 + 7 , C: 0\n9 + 0 , 2 C: 1\n, 0 2 C: 1\n1 0 2\n</scratch>\n"
        );
    }

    /// A transliteration of gen_sums.py's loop (Python's `zip` over equal-length digit lists).
    fn official_scratchpad(a: u64, b: u64) -> String {
        let to_str = |n: u64| spaced(n);
        let input_sum = format!("{} + {}", to_str(a), to_str(b));
        let mut pad = format!("<scratch>\n{input_sum} , C: 0\n");
        let (mut carry, mut running, mut initial) = (0, String::new(), true);
        let (da, db): (Vec<u32>, Vec<u32>) = (digits_lsb_first(a), digits_lsb_first(b));
        for (x, y) in da.iter().zip(&db) {
            let s = x + y + carry;
            if !initial {
                pad.push_str(&format!("{x} + {y} , {running}C: {carry}\n"));
            }
            carry = u32::from(s >= 10);
            running = format!("{} {running}", s % 10);
            initial = false;
        }
        pad.push_str(&format!(", {running}C: {carry}\n"));
        pad.push_str(&format!("{}\n", format!("{carry} {running}").trim()));
        pad.push_str("</scratch>\n");
        pad
    }

    #[test]
    fn scratchpads_equal_the_official_loop_at_every_length() {
        for d in 1..=8 {
            for p in sums_in_pool(Pool::Train, 3, 40, d) {
                assert_eq!(p.scratchpad(), official_scratchpad(p.a, p.b), "{p:?}");
                assert_eq!(parse_answer(&p.worked_answer()), Some(p.sum()));
                assert_eq!(p.scratchpad_is_sound(&p.worked_answer()), Some(true));
            }
        }
    }

    #[test]
    fn answers_are_read_from_the_line_after_the_scratchpad() {
        assert_eq!(parse_answer("\n<scratch>\n...\n</scratch>\n1 0 2\n"), Some(102));
        assert_eq!(parse_answer("\n<scratch>\n</scratch>\n  1 0  2 \nInput:"), Some(102));
        assert_eq!(parse_answer("\n8 6\n"), Some(86), "a direct answer");
        assert_eq!(parse_answer("\n<scratch>\n6 + 2 , 8"), None, "an unfinished scratchpad has no answer");
        assert_eq!(parse_answer("\n<scratch>\n</scratch>\nx"), None);
        assert_eq!(parse_answer("\n<scratch>\n</scratch>\n9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9"), None);
    }

    #[test]
    fn sound_scratchpads_are_told_from_lucky_ones() {
        let p = Addition { a: 624, b: 259 };
        let right = p.worked_answer();
        assert_eq!(p.scratchpad_is_sound(&right), Some(true));
        // The right answer reached through a wrong line.
        let wrong_line = right.replace("2 + 5 , 3 C: 1", "2 + 5 , 3 C: 0");
        assert_eq!(parse_answer(&wrong_line), Some(883));
        assert_eq!(p.scratchpad_is_sound(&wrong_line), Some(false));
        // …and that line is the one marked wrong, with the correct one beside it.
        let checked = p.check_scratchpad(&wrong_line).unwrap();
        assert_eq!(checked.len(), 5);
        let wrong: Vec<_> = checked.iter().filter(|l| !l.right).collect();
        assert_eq!(wrong.len(), 1);
        assert_eq!(wrong[0].written.as_deref(), Some("2 + 5 , 3 C: 0"));
        assert_eq!(wrong[0].expected.as_deref(), Some("2 + 5 , 3 C: 1"));
        // A missing line is marked missing, and the lines after it stay right.
        let missing_line = right.replace("6 + 2 , 8 3 C: 0\n", "");
        assert_eq!(p.scratchpad_is_sound(&missing_line), Some(false));
        let checked = p.check_scratchpad(&missing_line).unwrap();
        let rights: Vec<bool> = checked.iter().map(|l| l.right).collect();
        assert_eq!(rights, [true, true, false, true, true]);
        assert_eq!(checked[2], LineCheck { written: None, expected: Some("6 + 2 , 8 3 C: 0".into()), right: false });
        // An extra line likewise; a scratchpad cut short misses its last lines.
        let extra_line = right.replace("6 + 2 , 8 3 C: 0\n", "6 + 2 , 8 3 C: 0\n6 + 2 , 8 3 C: 0\n");
        let checked = p.check_scratchpad(&extra_line).unwrap();
        assert_eq!(checked.iter().filter(|l| !l.right).count(), 1);
        assert!(checked.iter().any(|l| l.expected.is_none() && l.written.as_deref() == Some("6 + 2 , 8 3 C: 0")));
        let cut = "\n<scratch>\n6 2 4 + 2 5 9 , C: 0\n2 + 5 , 3 C: 1\n</scratch>\n8 8 3\n";
        let checked = p.check_scratchpad(cut).unwrap();
        let missing: Vec<_> =
            checked.iter().filter(|l| l.written.is_none()).filter_map(|l| l.expected.as_deref()).collect();
        assert_eq!(missing, ["6 + 2 , 8 3 C: 0", ", 8 8 3 C: 0", "0 8 8 3"]);
        assert_eq!(p.scratchpad_is_sound("\n8 8 3\n"), None);
    }

    #[test]
    fn pools_are_disjoint_and_mirror_sums_share_one() {
        for d in 1..=5 {
            let pre = sums_in_pool(Pool::Pretrain, 1, 400, d);
            let train = sums_in_pool(Pool::Train, 1, 400, d);
            let dev = sums_in_pool(Pool::Dev, 1, 400, d);
            assert!(pre.iter().all(|p| pool_of(p.a, p.b) == Pool::Pretrain));
            assert!(train.iter().all(|p| pool_of(p.a, p.b) == Pool::Train));
            assert!(dev.iter().all(|p| pool_of(p.a, p.b) == Pool::Dev));
            assert!(
                dev.iter()
                    .chain(&train)
                    .chain(&pre)
                    .all(|p| p.digits() == d && p.a.to_string().len() == d && p.b.to_string().len() == d)
            );
        }
        for a in 0..200 {
            for b in 0..200 {
                assert_eq!(pool_of(a, b), pool_of(b, a));
            }
        }
        // One-digit sums: every one of the 81 is in exactly one pool, and each pool has some.
        let counts = [Pool::Pretrain, Pool::Train, Pool::Dev].map(|p| sums_in_pool(p, 0, 100, 1).len());
        assert_eq!(counts.iter().sum::<usize>(), 81, "{counts:?}");
        assert!(counts.iter().all(|&c| c >= 10), "{counts:?}");
    }

    #[test]
    fn train_and_dev_sets_are_seeded_disjoint_and_cover_every_length() {
        let (train, dev) = train_dev_split(3, 500, 20, 1, 5).unwrap();
        assert_eq!(train_dev_split(3, 500, 20, 1, 5).unwrap(), (train.clone(), dev.clone()), "seeded");
        assert_ne!(train_dev_split(4, 500, 20, 1, 5).unwrap().0, train);
        let ids = |v: &[crate::Item]| v.iter().map(|it| it.id.clone()).collect::<std::collections::HashSet<_>>();
        assert_eq!(ids(&train).len(), train.len(), "no training question repeats");
        assert!(ids(&train).is_disjoint(&ids(&dev)));
        for d in 1..=5 {
            let group = format!("{d} digits");
            let n = dev.iter().filter(|it| it.group.as_deref() == Some(group.as_str())).count();
            assert!(n == 20 || (d == 1 && n == sums_in_pool(Pool::Dev, 0, 100, 1).len()), "{n} dev sums of {d} digits");
            assert!(train.iter().any(|it| it.group.as_deref() == Some(group.as_str())));
        }
    }

    #[test]
    fn items_round_trip_through_the_task_format() {
        use crate::{PromptStyle, TaskKind};
        for ex in exemplars() {
            let c = TaskKind::Arithmetic.completion(&ex.item, &ex.rationale, PromptStyle::Rationale);
            assert!(TaskKind::Arithmetic.is_correct(&ex.item, &c), "{c}");
            assert!(!TaskKind::Arithmetic.leaks_hint(&ex.item, &c));
        }
        let p = Addition { a: 624, b: 259 };
        let c = TaskKind::Arithmetic.completion(&p.item(), &p.scratchpad(), PromptStyle::Rationale);
        assert_eq!(format!("{}{c}", p.question()), p.worked_example());
        assert_eq!(p.item().group.as_deref(), Some("3 digits"));
        assert_eq!(Addition::of_item(&p.item()), Some(p));
        let direct = TaskKind::Arithmetic.completion(&p.item(), "", PromptStyle::Direct);
        assert_eq!(direct, "\n8 8 3\n");
        assert!(TaskKind::Arithmetic.is_correct(&p.item(), &direct));
    }

    #[test]
    fn words_cover_the_text() {
        for p in problems(Pool::Train, 1, 60, 1, 6) {
            let all = format!("{}{} {}", p.worked_example(), p.hinted_question(), p.hint());
            assert!(all.split([' ', '\n']).filter(|w| !w.is_empty()).all(|w| WORDS.contains(&w)), "{p:?}");
        }
    }
}
