//! Text ↔ token ids through the Hugging Face `tokenizers` crate, and a character-level
//! tokenizer for the built-in tasks (saved as an ordinary `tokenizer.json`).

use std::collections::BTreeMap;

use serde_json::json;

use crate::error::{ModelError, Result};

/// A loaded tokenizer plus the ids Starling needs to know about.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer(vocab={})", self.vocab_size())
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Parses the contents of a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| ModelError::Tokenizer(format!("not a valid tokenizer.json: {e}"));
        // The syntax first: tokenizers 0.22 panics (`expect("Helper")` in its decoder's
        // deserializer) on a document cut short inside the decoder, e.g. a truncated download.
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e))?;
        let inner: tokenizers::Tokenizer = serde_json::from_value(value).map_err(|e| bad(&e))?;
        Ok(Self { inner })
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tok_err)
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens: one more than the largest id, so that every id
    /// the tokenizer writes has an embedding row in a model of this size (a tokenizer.json may
    /// leave gaps between ids, where counting the entries would come short).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1)
    }

    /// Encodes text. `add_special` applies the tokenizer's post-processor (e.g. a BOS token
    /// for tokenizers that declare one); special tokens written in the text are always parsed.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, add_special).map_err(tok_err)?.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Decodes a stream of ids one at a time, returning the text each id completes (multi-byte
    /// characters can span several ids).
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder { tokenizer: self, ids: Vec::new(), emitted: 0, skip_special }
    }

    /// A character-level tokenizer over `alphabet` plus special tokens (ids 0..specials.len()).
    /// Unknown characters map to `<unk>`, which is added if not among `specials`.
    pub fn char_level(alphabet: &str, specials: &[&str]) -> Result<Self> {
        Self::char_level_with_pieces(alphabet, &[], specials)
    }

    /// Like [`Tokenizer::char_level`], plus multi-character `pieces` that are kept whole where
    /// they occur (the longest first): e.g. `" 7"` makes a space-separated digit one token, as a
    /// BPE tokenizer would, which halves the length of spaced-digit text.
    pub fn char_level_with_pieces(alphabet: &str, pieces: &[&str], specials: &[&str]) -> Result<Self> {
        let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
        let mut added = Vec::new();
        let mut push_special = |vocab: &mut BTreeMap<String, u32>, s: &str| {
            let id = vocab.len() as u32;
            vocab.insert(s.to_string(), id);
            added.push(json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}));
        };
        for s in specials {
            push_special(&mut vocab, s);
        }
        if !vocab.contains_key("<unk>") {
            push_special(&mut vocab, "<unk>");
        }
        for ch in alphabet.chars() {
            let key = ch.to_string();
            if !vocab.contains_key(&key) {
                let id = vocab.len() as u32;
                vocab.insert(key, id);
            }
        }
        let mut sorted: Vec<&str> = pieces.iter().copied().filter(|p| !p.is_empty()).collect();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.chars().count()));
        for p in &sorted {
            let id = vocab.len() as u32;
            vocab.entry(p.to_string()).or_insert(id);
        }
        let alternatives: Vec<String> = sorted.iter().map(|p| regex_escape(p)).chain(["(?s).".to_string()]).collect();
        let tokenizer = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            // Every listed piece, else every character, is its own token, whitespace included.
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": alternatives.join("|")}, "behavior": "Isolated", "invert": false},
            "post_processor": null,
            "decoder": {"type": "Fuse"},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        });
        Self::from_json(&tokenizer.to_string())
    }
}

impl Tokenizer {
    /// A word-level tokenizer for text whose words are separated by single spaces and whose
    /// lines end in `\n` (the STaR arithmetic format: `6 2 4 + 2 5 9 , C: 0`): every word of
    /// `words` is one token wherever it stands — at the start of a line or after a space — and
    /// the newline is a token too. Spaces carry no token: decoding puts one between the words of
    /// a line. Other words map to `<unk>`. Saved as an ordinary `tokenizer.json`.
    pub fn word_level(words: &[&str], specials: &[&str]) -> Result<Self> {
        const MARK: char = '\u{2581}'; // the word-start mark of SentencePiece-style tokenizers
        let mut vocab: BTreeMap<String, u32> = BTreeMap::new();
        let mut added = Vec::new();
        for s in specials.iter().copied().chain((!specials.contains(&"<unk>")).then_some("<unk>")) {
            let id = vocab.len() as u32;
            vocab.insert(s.to_string(), id);
            added.push(json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true}));
        }
        for w in words.iter().copied().chain(["\n"]) {
            if w.is_empty() || w.contains(' ') || (w.contains('\n') && w != "\n") {
                return Err(ModelError::Tokenizer(format!("{w:?} is not a word (no spaces, newline alone)")));
            }
            let id = vocab.len() as u32;
            vocab.entry(format!("{MARK}{w}")).or_insert(id);
        }
        let mark = MARK.to_string();
        let metaspace = json!({"type": "Metaspace", "replacement": mark, "prepend_scheme": "always", "split": true});
        let replace = |from: &str, to: &str| json!({"type": "Replace", "pattern": {"String": from}, "content": to});
        let tokenizer = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            // Lines first (each newline its own piece), then words: every piece gets the mark, so
            // `6` is `▁6` at a line's start and after a space alike.
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"String": "\n"}, "behavior": "Isolated", "invert": false},
                metaspace,
            ]},
            "post_processor": null,
            // Marks back to spaces, then no space around newlines.
            "decoder": {"type": "Sequence", "decoders": [
                metaspace, {"type": "Fuse"}, replace(" \n", "\n"), replace("\n ", "\n"),
            ]},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        });
        Self::from_json(&tokenizer.to_string())
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == ' ' { c.to_string() } else { format!("\\x{{{:x}}}", c as u32) })
        .collect()
}

/// Incremental decoding for streaming (see [`Tokenizer::stream_decoder`]).
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    emitted: usize,
    skip_special: bool,
}

impl StreamDecoder<'_> {
    /// Adds one id; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        // Hold back while the tail is an incomplete UTF-8 sequence (decoded as U+FFFD).
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let new = if text.len() >= self.emitted && text.is_char_boundary(self.emitted) {
            text[self.emitted..].to_string()
        } else {
            String::new()
        };
        self.emitted = text.len();
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_level_round_trip() {
        let t = Tokenizer::char_level("0123456789+= \n", &["<pad>", "<eos>"]).unwrap();
        assert_eq!(t.vocab_size(), 2 + 1 + 14);
        let ids = t.encode("12+3 =15\n", false).unwrap();
        assert_eq!(ids.len(), 9);
        assert_eq!(t.decode(&ids, false).unwrap(), "12+3 =15\n");
        assert_eq!(t.token_to_id("<eos>"), Some(1));
        // Unknown characters become <unk>; special tokens in text are parsed as one id.
        let ids = t.encode("1x<eos>", false).unwrap();
        assert_eq!(ids, vec![t.token_to_id("1").unwrap(), t.token_to_id("<unk>").unwrap(), 1]);
        assert_eq!(t.decode(&ids, true).unwrap(), "1");
        // Survives a save/load through tokenizer.json.
        let again = Tokenizer::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(again.encode("9=9", false).unwrap(), t.encode("9=9", false).unwrap());
    }

    #[test]
    fn pieces_are_kept_whole() {
        let t =
            Tokenizer::char_level_with_pieces("0123456789+ <>/\n", &[" 1", " 2", "<s>", "</s>"], &["<pad>"]).unwrap();
        let text = "</s>1 2 1+ 3<s>\n";
        let ids = t.encode(text, false).unwrap();
        let pieces: Vec<String> = ids.iter().map(|&i| t.id_to_token(i).unwrap()).collect();
        assert_eq!(pieces, ["</s>", "1", " 2", " 1", "+", " ", "3", "<s>", "\n"]);
        assert_eq!(t.decode(&ids, false).unwrap(), text);
        let again = Tokenizer::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(again.encode(text, false).unwrap(), ids);
    }

    #[test]
    fn word_level_gives_a_word_one_token_wherever_it_stands() {
        let words = ["0", "1", "2", "3", "+", ",", "C:", "Input:", "Target:", "<scratch>"];
        let t = Tokenizer::word_level(&words, &["<pad>", "<eos>"]).unwrap();
        let text = "Input:\n1 2 + 3 0\nTarget:\n<scratch>\n2 + 0 , 3 C: 0\n";
        let ids = t.encode(text, false).unwrap();
        let pieces: Vec<String> = ids.iter().map(|&i| t.id_to_token(i).unwrap()).collect();
        assert_eq!(pieces.iter().filter(|p| p.as_str() == "\u{2581}2").count(), 2, "{pieces:?}");
        assert_eq!(ids.len(), 20, "{pieces:?}");
        assert_eq!(t.decode(&ids, false).unwrap(), text);
        // A prompt and its completion tokenize the same apart as together (the boundary is a newline).
        let (prompt, completion) = text.split_at(text.find("\n<scratch>").unwrap());
        let apart = [t.encode(prompt, false).unwrap(), t.encode(completion, false).unwrap()].concat();
        assert_eq!(apart, ids);
        // Streaming gives the same text, piece by piece; <eos> is special.
        let mut s = t.stream_decoder(true);
        let streamed: String = ids.iter().map(|&i| s.push(i).unwrap()).collect();
        assert_eq!(streamed, text);
        assert_eq!(t.encode("9", false).unwrap(), vec![t.token_to_id("<unk>").unwrap()]);
        assert_eq!(t.encode("<eos>", false).unwrap(), vec![1]);
        let again = Tokenizer::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(again.encode(text, false).unwrap(), ids);
        assert!(Tokenizer::word_level(&["a b"], &[]).is_err());
    }

    #[test]
    fn stream_decoder_emits_text_incrementally() {
        let t = Tokenizer::char_level("ab c", &[]).unwrap();
        let ids = t.encode("ab c", false).unwrap();
        let mut s = t.stream_decoder(false);
        let pieces: Vec<String> = ids.iter().map(|&i| s.push(i).unwrap()).collect();
        assert_eq!(pieces.concat(), "ab c");
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(Tokenizer::from_json("{}").unwrap_err().to_string().contains("tokenizer.json"));
    }
}
