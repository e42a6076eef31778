//! Hidden multi-hop lookups: in-context pointer chasing through a random permutation table, the
//! task of Quiet-STaR's built-in demonstration (`starling quiet demo`).
//!
//! A document writes a fresh random permutation π of the first `symbols` letters as pairs, then
//! queries `?kx=y;` with y = π^k(x). A pair is one token, `Ab` for π(a) = b (the key upper case,
//! the value lower case; [`HopTask::pair_pieces`] lists them for the tokenizer), so one hop is one
//! attention lookup: the query's letter against the pairs' keys (with the key and the value as
//! two tokens, a hop would need a two-layer induction circuit). Each layer can take one
//! hop, or, by pointer doubling, a 2-layer model at most about three; a thought that writes
//! π(x), π²(x), … takes one hop per written token and reaches any k. So a 2-layer model answers
//! k ≥ 4 from the compressed form only by chance, while a thought can reach the answer.
//!
//! Two forms of the same query:
//! - compressed: `?4a=f;` — the answer right after the query;
//! - explicit: `?4a=[cgkf..]f;` — the chain between brackets, padded with `.` to `max_hops`
//!   symbols (so every written chain has one length: the length of a thought), then the answer.
//!
//! Every table belongs to one split (pretraining, training, held-out) by a fixed hash of the
//! permutation, and the generator draws only tables of the requested split: no held-out table
//! is ever in pretraining or training data, whatever the seeds.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The characters of the task's text besides the letters: digits for hop counts, punctuation.
pub const PUNCTUATION: &str = "|?=;[].";
/// What pads a written chain to `max_hops` symbols, and what a pause thought is made of.
pub const FILLER: char = '.';
/// The brackets around a written chain: the thought markers of the demo start as their embeddings.
pub const CHAIN_OPEN: char = '[';
pub const CHAIN_CLOSE: char = ']';

/// Sizes of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopTask {
    /// Letters in a table (2..=26).
    pub symbols: usize,
    /// Hop counts are 1..=max_hops (1..=9: one digit).
    pub max_hops: usize,
}

impl Default for HopTask {
    fn default() -> Self {
        Self { symbols: 16, max_hops: 6 }
    }
}

/// Which data a table may appear in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HopSplit {
    /// Warm-start pretraining (explicit and compressed documents).
    Pretrain,
    /// Quiet-STaR training and the plain controls (compressed documents).
    Train,
    /// Evaluation only.
    HeldOut,
}

/// The two ways a query is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HopForm {
    /// `?kx=y;`
    Compressed,
    /// `?kx=[chain]y;`
    Explicit,
}

/// What poses questions to a model trained on this task: the task and the documents' number of
/// queries (the model answers the last one). Saved beside a checkpoint as [`HOPS_CARD_FILE`]
/// (by `starling quiet demo`), where the browser page looks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopsCard {
    pub task: HopTask,
    pub queries: usize,
}

pub const HOPS_CARD_FILE: &str = "hops.json";

impl HopsCard {
    /// Reads a card, checking that it describes a task that can be posed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let card: Self =
            serde_json::from_str(text).map_err(|e| format!("{HOPS_CARD_FILE} is not a multi-hop task card: {e}"))?;
        card.task.validate().map_err(|e| format!("{HOPS_CARD_FILE}: {e}"))?;
        if card.queries < 1 {
            return Err(format!("{HOPS_CARD_FILE}: documents need at least one query"));
        }
        Ok(card)
    }
}

/// A permutation of `0..symbols`: `next[s]` = π(s).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HopTable {
    pub next: Vec<u8>,
}

impl HopTable {
    /// π^k(x).
    pub fn follow(&self, x: u8, k: usize) -> u8 {
        (0..k).fold(x, |s, _| self.next[s as usize])
    }

    /// π(x), π²(x), …, π^k(x).
    pub fn chain(&self, x: u8, k: usize) -> Vec<u8> {
        (1..=k).map(|j| self.follow(x, j)).collect()
    }

    /// The split this table belongs to (fixed forever: a splitmix64 finalizer over the table).
    pub fn split(&self) -> HopSplit {
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
        for &v in &self.next {
            h = (h ^ v as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 31;
        }
        h = (h ^ (h >> 30)).wrapping_mul(0x94d0_49bb_1331_11eb);
        match (h ^ (h >> 31)) % 3 {
            0 => HopSplit::Pretrain,
            1 => HopSplit::Train,
            _ => HopSplit::HeldOut,
        }
    }
}

/// One query: y = π^k(x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopQuery {
    pub hops: usize,
    pub start: u8,
    pub answer: u8,
}

/// A table and its queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopDocument {
    pub table: HopTable,
    /// The order in which the table's pairs are written (a permutation of the keys).
    pub order: Vec<u8>,
    pub queries: Vec<HopQuery>,
}

impl HopDocument {
    /// The last query (the one a model is asked), replaced by `hops` hops from `start`.
    pub fn ask(&mut self, hops: usize, start: u8) {
        let q = HopQuery { hops, start, answer: self.table.follow(start, hops) };
        match self.queries.last_mut() {
            Some(last) => *last = q,
            None => self.queries.push(q),
        }
    }

    /// The last query.
    pub fn asked(&self) -> Option<&HopQuery> {
        self.queries.last()
    }
}

/// One hop of a written chain read against the table: the pair of `from` says `expected`, the
/// chain wrote `written`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReadHop {
    pub from: u8,
    pub expected: u8,
    pub written: u8,
}

impl ReadHop {
    /// Whether this hop looked up the table correctly (from wherever the chain was).
    pub fn followed(&self) -> bool {
        self.written == self.expected
    }
}

impl HopTask {
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=26).contains(&self.symbols) {
            return Err(format!("symbols must be 2..=26 letters (got {})", self.symbols));
        }
        if !(1..=9).contains(&self.max_hops) {
            return Err(format!("max_hops must be 1..=9, one digit (got {})", self.max_hops));
        }
        Ok(())
    }

    /// Every character the task writes (for a character-level tokenizer, with
    /// [`HopTask::pair_pieces`] as whole tokens).
    pub fn alphabet(&self) -> String {
        let letters: String = (0..self.symbols as u8).map(letter).collect();
        let keys: String = (0..self.symbols as u8).map(key_letter).collect();
        format!("{letters}{keys}123456789{PUNCTUATION}")
    }

    /// The table's pairs `Ab` (π(a) = b), each to be one token.
    pub fn pair_pieces(&self) -> Vec<String> {
        let n = self.symbols as u8;
        (0..n).flat_map(|k| (0..n).map(move |v| format!("{}{}", key_letter(k), letter(v)))).collect()
    }

    /// The symbols' characters, in order.
    pub fn letters(&self) -> Vec<char> {
        (0..self.symbols as u8).map(letter).collect()
    }

    /// Tokens of the written table: one per pair, then `|`.
    pub fn table_len(&self) -> usize {
        self.symbols + 1
    }

    /// Tokens (and characters) of one query in `form`.
    pub fn query_len(&self, form: HopForm) -> usize {
        match form {
            HopForm::Compressed => 6,
            HopForm::Explicit => 8 + self.max_hops,
        }
    }

    /// A random table of `split` (tables of other splits are drawn and discarded).
    pub fn table(&self, split: HopSplit, rng: &mut ChaCha8Rng) -> HopTable {
        loop {
            let mut next: Vec<u8> = (0..self.symbols as u8).collect();
            for i in (1..next.len()).rev() {
                next.swap(i, rng.random_range(0..=i));
            }
            let table = HopTable { next };
            if table.split() == split {
                return table;
            }
        }
    }

    /// A document of `split` with `queries` queries (hop counts uniform in 1..=max_hops).
    pub fn document(&self, split: HopSplit, queries: usize, rng: &mut ChaCha8Rng) -> HopDocument {
        let table = self.table(split, rng);
        let mut order: Vec<u8> = (0..self.symbols as u8).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let queries = (0..queries)
            .map(|_| {
                let hops = rng.random_range(1..=self.max_hops);
                let start = rng.random_range(0..self.symbols as u8);
                HopQuery { hops, start, answer: table.follow(start, hops) }
            })
            .collect();
        HopDocument { table, order, queries }
    }

    /// `count` documents of `split`, seeded: the same seed gives the same documents.
    pub fn documents(&self, split: HopSplit, count: usize, queries: usize, seed: u64) -> Vec<HopDocument> {
        let stream = match split {
            HopSplit::Pretrain => 0x7072_6574,
            HopSplit::Train => 0x7472_6169,
            HopSplit::HeldOut => 0x6865_6c64,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ stream);
        (0..count).map(|_| self.document(split, queries, &mut rng)).collect()
    }

    /// The written query.
    pub fn query_text(&self, q: &HopQuery, table: &HopTable, form: HopForm) -> String {
        let head = format!("?{}{}=", q.hops, letter(q.start));
        match form {
            HopForm::Compressed => format!("{head}{};", letter(q.answer)),
            HopForm::Explicit => format!("{head}{}{};", self.chain_text(table, q), letter(q.answer)),
        }
    }

    /// A query's written chain with its brackets: `[` π(x) … π^k(x), `.` up to `max_hops`, `]`.
    pub fn chain_text(&self, table: &HopTable, q: &HopQuery) -> String {
        let mut s = String::from(CHAIN_OPEN);
        s.extend(table.chain(q.start, q.hops).into_iter().map(letter));
        s.extend(std::iter::repeat_n(FILLER, self.max_hops - q.hops));
        s.push(CHAIN_CLOSE);
        s
    }

    /// What a model answers from: the compressed document up to its last query's `=`.
    pub fn prompt(&self, doc: &HopDocument) -> String {
        let mut text = self.text(doc, HopForm::Compressed);
        text.truncate(text.len() - 2); // the answer letter and `;`
        text
    }

    /// A written chain (a thought's text, the brackets left out) read hop by hop from `start`:
    /// hop i looks up the letter written before it (the start for the first). Reading stops at
    /// the first character that is not one of the table's letters, or after `max_hops` hops.
    pub fn read_chain(&self, table: &HopTable, start: u8, written: &str) -> Vec<ReadHop> {
        let mut from = start;
        written
            .chars()
            .map_while(|c| symbol(c).filter(|&s| (s as usize) < self.symbols))
            .take(self.max_hops)
            .map(|w| {
                let hop = ReadHop { from, expected: table.next[from as usize], written: w };
                from = w;
                hop
            })
            .collect()
    }

    /// The document's text: the table, then every query in `form`.
    pub fn text(&self, doc: &HopDocument, form: HopForm) -> String {
        self.text_with(doc, |_| form)
    }

    /// The document's text with query i written in `form(i)` (mixed documents: the chain
    /// written out for some queries only).
    pub fn text_with(&self, doc: &HopDocument, form: impl Fn(usize) -> HopForm) -> String {
        let mut s: String =
            doc.order.iter().map(|&k| format!("{}{}", key_letter(k), letter(doc.table.next[k as usize]))).collect();
        s.push('|');
        for (i, q) in doc.queries.iter().enumerate() {
            s.push_str(&self.query_text(q, &doc.table, form(i)));
        }
        s
    }
}

/// The character of symbol `s`.
pub fn letter(s: u8) -> char {
    (b'a' + s) as char
}

/// The symbol of a lower-case letter.
pub fn symbol(c: char) -> Option<u8> {
    c.is_ascii_lowercase().then(|| c as u8 - b'a')
}

/// The character of symbol `s` as a table key.
pub fn key_letter(s: u8) -> char {
    (b'A' + s) as char
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn parse_table(text: &str) -> Vec<(char, char)> {
        let table: Vec<char> = text.split('|').next().unwrap().chars().collect();
        table.chunks(2).map(|p| (p[0].to_ascii_lowercase(), p[1])).collect()
    }

    #[test]
    fn tables_are_permutations_and_answers_follow_them() {
        let task = HopTask::default();
        for doc in task.documents(HopSplit::Train, 50, 8, 3) {
            let mut seen = doc.table.next.clone();
            seen.sort();
            assert_eq!(seen, (0..16).collect::<Vec<u8>>(), "a permutation");
            // Answers read back from the written text by following the written pairs.
            let text = task.text(&doc, HopForm::Compressed);
            let pairs: std::collections::HashMap<char, char> = parse_table(&text).into_iter().collect();
            assert_eq!(pairs.len(), 16, "every key written once");
            for q in text.split('|').nth(1).unwrap().split(';').filter(|q| !q.is_empty()) {
                let c: Vec<char> = q.chars().collect();
                let (k, mut x) = (c[1].to_digit(10).unwrap(), c[2]);
                for _ in 0..k {
                    x = pairs[&x];
                }
                assert_eq!(c[4], x, "{q}");
            }
        }
    }

    #[test]
    fn explicit_and_compressed_forms_agree() {
        let task = HopTask { symbols: 8, max_hops: 5 };
        let doc = task.document(HopSplit::Pretrain, 20, &mut ChaCha8Rng::seed_from_u64(1));
        let (c, e) = (task.text(&doc, HopForm::Compressed), task.text(&doc, HopForm::Explicit));
        let mixed = task.text_with(&doc, |i| if i % 2 == 0 { HopForm::Explicit } else { HopForm::Compressed });
        let mixed_queries: Vec<&str> = mixed.split('|').nth(1).unwrap().split(';').filter(|q| !q.is_empty()).collect();
        assert!(mixed_queries[0].contains('[') && !mixed_queries[1].contains('['), "per-query forms");
        assert_eq!(c.split('|').next(), e.split('|').next(), "the same table");
        let cq: Vec<&str> = c.split('|').nth(1).unwrap().split(';').filter(|q| !q.is_empty()).collect();
        let eq: Vec<&str> = e.split('|').nth(1).unwrap().split(';').filter(|q| !q.is_empty()).collect();
        assert_eq!(cq.len(), eq.len());
        let pairs: std::collections::HashMap<char, char> = parse_table(&c).into_iter().collect();
        for (q, (cq, eq)) in doc.queries.iter().zip(cq.iter().zip(&eq)) {
            assert_eq!(cq.len() + 1, task.query_len(HopForm::Compressed));
            assert_eq!(eq.len() + 1, task.query_len(HopForm::Explicit));
            assert_eq!(&eq[..4], &cq[..4], "same head");
            assert_eq!(eq.chars().last(), cq.chars().last(), "same answer");
            // The chain: one written hop per symbol, the last one the answer, then filler.
            let chain: Vec<char> = eq[5..5 + task.max_hops].chars().collect();
            let mut x = eq.chars().nth(2).unwrap();
            for (j, &ch) in chain.iter().enumerate() {
                if j < q.hops {
                    x = pairs[&x];
                    assert_eq!(ch, x);
                } else {
                    assert_eq!(ch, FILLER);
                }
            }
            assert_eq!(Some(x), eq.chars().last());
        }
    }

    #[test]
    fn splits_are_disjoint_and_seeded() {
        let task = HopTask::default();
        let tables = |split| -> HashSet<Vec<u8>> {
            task.documents(split, 300, 1, 7).into_iter().map(|d| d.table.next).collect()
        };
        let (p, t, h) = (tables(HopSplit::Pretrain), tables(HopSplit::Train), tables(HopSplit::HeldOut));
        assert!(p.is_disjoint(&t) && p.is_disjoint(&h) && t.is_disjoint(&h));
        // Membership is a property of the table itself, not of the seed that drew it.
        for doc in task.documents(HopSplit::HeldOut, 100, 1, 99) {
            assert_eq!(doc.table.split(), HopSplit::HeldOut);
        }
        assert_eq!(task.documents(HopSplit::Train, 3, 4, 5), task.documents(HopSplit::Train, 3, 4, 5));
        assert_ne!(task.documents(HopSplit::Train, 3, 4, 5), task.documents(HopSplit::Train, 3, 4, 6));
    }

    #[test]
    fn a_prompt_stops_at_the_asked_query_and_chains_read_against_the_table() {
        let task = HopTask { symbols: 8, max_hops: 6 };
        let mut doc = task.document(HopSplit::HeldOut, 8, &mut ChaCha8Rng::seed_from_u64(4));
        doc.ask(4, 2);
        let q = *doc.asked().unwrap();
        assert_eq!((q.hops, q.start, q.answer), (4, 2, doc.table.follow(2, 4)));
        let full = task.text(&doc, HopForm::Compressed);
        let prompt = task.prompt(&doc);
        assert!(prompt.ends_with("?4c="), "{prompt}");
        assert_eq!(format!("{prompt}{};", letter(q.answer)), full);

        // The true chain, padded: every hop followed, reading stops at the filler.
        let chain = task.chain_text(&doc.table, &q);
        let read = task.read_chain(&doc.table, 2, &chain[1..chain.len() - 1]);
        assert_eq!(read.len(), 4);
        assert!(read.iter().all(ReadHop::followed));
        assert_eq!(read.last().unwrap().written, q.answer);
        // A wrong second letter, then the table followed from it: hop 2 is wrong, hop 3 right.
        let first = letter(doc.table.follow(2, 1));
        let wrong = (0..8u8).find(|&s| s != doc.table.follow(2, 2)).unwrap();
        let after = letter(doc.table.next[wrong as usize]);
        let read = task.read_chain(&doc.table, 2, &format!("{first}{}{after}", letter(wrong)));
        assert_eq!(read.iter().map(ReadHop::followed).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(read[2].from, wrong);
        // Letters outside the table and other characters end the reading.
        assert!(task.read_chain(&doc.table, 2, "z").is_empty());
        assert_eq!(task.read_chain(&doc.table, 2, &format!("{first};?1")).len(), 1);
        assert_eq!(task.read_chain(&doc.table, 2, &"a".repeat(20)).len(), 6, "at most max_hops");
    }

    #[test]
    fn a_task_card_is_checked_when_read() {
        let card = HopsCard { task: HopTask { symbols: 4, max_hops: 3 }, queries: 2 };
        assert_eq!(HopsCard::parse(&serde_json::to_string(&card).unwrap()).unwrap(), card);
        let bad = [
            "{}",
            "not json",
            r#"{"task": {"symbols": 40, "max_hops": 3}, "queries": 2}"#,
            r#"{"task": {"symbols": 4, "max_hops": 3}, "queries": 0}"#,
        ];
        for text in bad {
            let err = HopsCard::parse(text).unwrap_err();
            assert!(err.contains("hops.json"), "{err}");
        }
    }

    fn alphabet_has(task: &HopTask, c: char) -> bool {
        task.alphabet().contains(c)
    }

    #[test]
    fn lengths_and_alphabet_cover_the_text() {
        let task = HopTask::default();
        let doc = task.document(HopSplit::Train, 8, &mut ChaCha8Rng::seed_from_u64(0));
        let text = task.text(&doc, HopForm::Compressed);
        assert_eq!(
            text.len(),
            2 * task.symbols + 1 + 8 * task.query_len(HopForm::Compressed),
            "a pair is two characters"
        );
        assert_eq!(task.pair_pieces().len(), 256);
        assert!(task.pair_pieces().iter().all(|p| p.chars().all(|c| alphabet_has(&task, c))));
        assert!(task.text(&doc, HopForm::Explicit).chars().all(|c| alphabet_has(&task, c)));
        assert!(HopTask { symbols: 27, max_hops: 3 }.validate().is_err());
        assert!(HopTask { symbols: 8, max_hops: 10 }.validate().is_err());
    }
}
