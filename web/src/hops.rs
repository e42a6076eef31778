//! Questions to a model of the multi-hop demo (`starling quiet demo`): a held-out table, a query
//! at its end, and the thought before the answer read hop by hop against the table. The task
//! code is the core's (`starling_tasks::hops`); this module only shapes it for the page.

use serde::Serialize;
use starling_tasks::hops::{HopDocument, HopSplit, HopsCard, letter, symbol};

/// A posed question as the page shows it.
#[derive(Debug, Serialize)]
pub struct Puzzle {
    /// The text the model continues: the table, the earlier queries with their answers, the
    /// asked query up to its `=`.
    pub prompt: String,
    /// The table as (key, value) letters, in key order.
    pub pairs: Vec<(char, char)>,
    pub hops: usize,
    pub start: char,
    pub answer: char,
    /// π(start), π²(start), …, the answer.
    pub chain: String,
}

/// One hop of the thought before the answer, read against the table.
#[derive(Debug, Serialize)]
pub struct PageHop {
    /// The letter looked up (the start, then what the thought wrote before).
    pub from: char,
    /// What the table says comes after `from`.
    pub expected: char,
    pub written: char,
    /// The table was followed at this hop (from wherever the thought was).
    pub followed: bool,
    /// The written letter is the true chain's at this hop.
    pub on_chain: bool,
}

/// The card's task posed on a held-out table: document `seed` of the held-out split, its last
/// query replaced by `hops` hops from letter `start` (`hops` 0 keeps the drawn query).
pub fn pose(card: &HopsCard, seed: u64, hops: usize, start: char) -> Result<(HopDocument, Puzzle), String> {
    let task = &card.task;
    let mut doc = task.documents(HopSplit::HeldOut, 1, card.queries, seed).remove(0);
    if hops > 0 {
        if hops > task.max_hops {
            return Err(format!("this model was trained on 1 to {} hops (asked {hops})", task.max_hops));
        }
        let s = symbol(start).filter(|&s| (s as usize) < task.symbols).ok_or_else(|| {
            format!("the start must be one of the table's letters a–{} (got {start:?})", letter(task.symbols as u8 - 1))
        })?;
        doc.ask(hops, s);
    }
    let q = *doc.asked().expect("documents have queries");
    let puzzle = Puzzle {
        prompt: task.prompt(&doc),
        pairs: (0..task.symbols as u8).map(|k| (letter(k), letter(doc.table.next[k as usize]))).collect(),
        hops: q.hops,
        start: letter(q.start),
        answer: letter(q.answer),
        chain: doc.table.chain(q.start, q.hops).into_iter().map(letter).collect(),
    };
    Ok((doc, puzzle))
}

/// A thought's text read hop by hop against the posed table.
pub fn read_thought(card: &HopsCard, doc: &HopDocument, thought: &str) -> Vec<PageHop> {
    let q = doc.asked().expect("documents have queries");
    let chain = doc.table.chain(q.start, card.task.max_hops);
    card.task
        .read_chain(&doc.table, q.start, thought)
        .into_iter()
        .zip(chain)
        .map(|(h, truth)| PageHop {
            from: letter(h.from),
            expected: letter(h.expected),
            written: letter(h.written),
            followed: h.followed(),
            on_chain: h.written == truth,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_tasks::hops::HopTask;

    const CARD: HopsCard = HopsCard { task: HopTask { symbols: 8, max_hops: 6 }, queries: 8 };

    #[test]
    fn a_posed_question_is_a_held_out_table_asked_as_chosen() {
        let (doc, p) = pose(&CARD, 3, 5, 'c').unwrap();
        assert_eq!(doc.table.split(), HopSplit::HeldOut);
        assert!(p.prompt.ends_with("?5c="), "{}", p.prompt);
        assert_eq!(p.pairs.len(), 8);
        assert_eq!((p.hops, p.start), (5, 'c'));
        assert_eq!(p.chain.chars().count(), 5);
        assert_eq!(p.chain.chars().last(), Some(p.answer));
        // The chain follows the shown pairs.
        let mut x = 'c';
        for c in p.chain.chars() {
            x = p.pairs.iter().find(|(k, _)| *k == x).unwrap().1;
            assert_eq!(c, x);
        }
        assert_eq!(pose(&CARD, 3, 5, 'c').unwrap().1.prompt, p.prompt, "seeded");
        assert_ne!(pose(&CARD, 4, 5, 'c').unwrap().1.prompt, p.prompt);
        assert!(pose(&CARD, 3, 7, 'c').unwrap_err().contains("1 to 6 hops"));
        assert!(pose(&CARD, 3, 2, 'z').unwrap_err().contains("a–h"));
        let (_, drawn) = pose(&CARD, 3, 0, 'a').unwrap();
        assert!((1..=6).contains(&drawn.hops), "0 keeps the drawn query");
    }

    #[test]
    fn the_thought_is_read_against_the_true_chain() {
        let (doc, p) = pose(&CARD, 9, 4, 'b').unwrap();
        let right = read_thought(&CARD, &doc, &format!("{}..", p.chain));
        assert_eq!(right.len(), 4);
        assert!(right.iter().all(|h| h.followed && h.on_chain));
        assert_eq!(right[0].from, 'b');
        // Off the chain at hop 1, then the table followed from the wrong letter.
        let wrong = ('a'..='h').find(|&c| c != p.chain.chars().next().unwrap()).unwrap();
        let next = p.pairs.iter().find(|(k, _)| *k == wrong).unwrap().1;
        let read = read_thought(&CARD, &doc, &format!("{wrong}{next}"));
        assert!(!read[0].followed && !read[0].on_chain);
        assert!(read[1].followed && read[1].from == wrong);
    }
}
