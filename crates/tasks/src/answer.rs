//! Answer extraction and comparison that tolerate formatting noise: thousands separators,
//! currency signs, spaces between digits, a trailing period, case, articles.

/// Canonical form of a number written in text: `$1,234.50` → `1234.5`, `8 8 3` → `883`,
/// `-7.0` → `-7`. `None` if `s` does not start with a number.
pub fn normalize_number(s: &str) -> Option<String> {
    let s = s.trim_start().trim_start_matches(['$', '€', '£']);
    let mut digits = String::new();
    let mut chars = s.chars().peekable();
    if chars.peek() == Some(&'-') {
        digits.push('-');
        chars.next();
    }
    let mut seen_digit = false;
    while let Some(&c) = chars.peek() {
        match c {
            '0'..='9' => {
                digits.push(c);
                seen_digit = true;
            }
            // Thousands separators and spaced digits: skipped only between digits.
            ',' | ' ' if seen_digit => {
                let mut ahead = chars.clone();
                ahead.next();
                if !ahead.peek().is_some_and(char::is_ascii_digit) {
                    break;
                }
            }
            '.' if seen_digit && !digits.contains('.') => {
                let mut ahead = chars.clone();
                ahead.next();
                if !ahead.peek().is_some_and(char::is_ascii_digit) {
                    break;
                }
                digits.push('.');
            }
            _ => break,
        }
        chars.next();
    }
    if !seen_digit {
        return None;
    }
    if digits.contains('.') {
        digits = digits.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let negative = digits.starts_with('-');
    let body = digits.trim_start_matches('-');
    let int_end = body.find('.').unwrap_or(body.len());
    let trimmed_int = body[..int_end].trim_start_matches('0');
    let int = if trimmed_int.is_empty() { "0" } else { trimmed_int };
    let canon = format!("{int}{}", &body[int_end..]);
    Some(if negative && canon != "0" { format!("-{canon}") } else { canon })
}

/// The first number after the last occurrence of `marker` in `text`.
pub fn number_after(text: &str, marker: &str) -> Option<String> {
    let at = text.rfind(marker)?;
    let rest = &text[at + marker.len()..];
    let start = rest.find(|c: char| c.is_ascii_digit() || c == '-' || c == '$')?;
    // The number must come soon after the marker, not somewhere later in unrelated text.
    if rest[..start].chars().count() > 8 {
        return None;
    }
    normalize_number(&rest[start..])
}

/// The letter `a`, `b`, … of the choice an answer names. Looks after the last "answer is" (or
/// in the whole text if absent) for `(x)`, then `x)`, then a choice's text.
pub fn choice_letter(text: &str, choices: &[String]) -> Option<char> {
    let lower = text.to_lowercase();
    let marker = lower.rfind("answer is");
    let tail = marker.map_or(lower.as_str(), |i| &lower[i + "answer is".len()..]);
    let letters: Vec<char> = (0..choices.len().min(26)).map(|i| (b'a' + i as u8) as char).collect();
    // After "answer is" the first letter named is the answer; without the marker, the last one.
    let mentions = letters.iter().filter_map(|&l| {
        let pat = format!("({l})");
        let at = if marker.is_some() { tail.find(&pat) } else { tail.rfind(&pat) };
        at.map(|at| (at, l))
    });
    let picked = if marker.is_some() { mentions.min() } else { mentions.max() };
    if let Some((_, l)) = picked {
        return Some(l);
    }
    // "the answer is b." / "answer is (b" / "answer is b)".
    // A lone letter, not an article starting a phrase ("the answer is a bank").
    let after_marker = tail.trim_start().trim_start_matches(['(', ':', ' ']);
    let first_word: String = after_marker.chars().take_while(|c| c.is_alphanumeric()).collect();
    let next = after_marker[first_word.len()..].chars().next();
    if first_word.len() == 1 && next.is_none_or(|c| matches!(c, '.' | ')' | ',' | '\n' | ';')) {
        let c = first_word.chars().next().expect("one char");
        if letters.contains(&c) {
            return Some(c);
        }
    }
    // The longest choice text mentioned (so "ground" does not win over "ground up dead cows").
    let mut best: Option<(usize, char)> = None;
    let words = format!(" {} ", normalize_text(tail));
    for (i, choice) in choices.iter().enumerate().take(letters.len()) {
        let c = normalize_text(choice);
        // Whole words only: "art" is not in "party".
        if !c.is_empty() && words.contains(&format!(" {c} ")) && best.is_none_or(|(n, _)| c.len() > n) {
            best = Some((c.len(), letters[i]));
        }
    }
    best.map(|(_, l)| l)
}

/// Lowercase, punctuation removed, articles dropped, whitespace collapsed.
pub fn normalize_text(s: &str) -> String {
    let cleaned: String = s.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    cleaned.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

/// The free-text answer after the last "answer is", up to the end of its sentence.
pub fn text_after_answer_is(text: &str) -> Option<String> {
    // Sliced from the lowercased copy: lowercasing can change byte lengths, so its offsets do
    // not apply to `text` (the result is normalized to lowercase anyway).
    let lower = text.to_lowercase();
    let at = lower.rfind("answer is")?;
    let rest = &lower[at + "answer is".len()..];
    let end = rest.find(['\n']).unwrap_or(rest.len());
    let mut ans = rest[..end].trim().trim_start_matches(':').trim();
    // A final period ends the sentence, unless it is a decimal point.
    if let Some(stripped) = ans.strip_suffix('.') {
        ans = stripped;
    }
    let n = normalize_text(ans);
    (!n.is_empty()).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalized() {
        for (text, want) in [
            ("1,234", "1234"),
            ("$1,234.50 dollars", "1234.5"),
            ("8 8 3", "883"),
            ("18.", "18"),
            ("-7.0", "-7"),
            ("007", "7"),
            ("3.14159", "3.14159"),
            ("12, and then", "12"),
            ("0", "0"),
        ] {
            assert_eq!(normalize_number(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(normalize_number("no number"), None);
        assert_eq!(normalize_number("-"), None);
    }

    #[test]
    fn numbers_are_found_after_markers() {
        assert_eq!(number_after("so 3 + 4 = 7\n#### 7", "####").as_deref(), Some("7"));
        assert_eq!(number_after("#### 5\n#### $1,000", "####").as_deref(), Some("1000"));
        assert_eq!(number_after("The answer is 42.", "answer is").as_deref(), Some("42"));
        assert_eq!(number_after("The answer is unclear, maybe the shop had 40 apples", "answer is"), None);
        assert_eq!(number_after("no marker 12", "####"), None);
    }

    #[test]
    fn choices_are_recognized_in_many_forms() {
        let choices: Vec<String> =
            ["bank", "library", "department store", "mall", "new york"].map(String::from).to_vec();
        assert_eq!(choice_letter("... Therefore, the answer is bank (a).", &choices), Some('a'));
        assert_eq!(choice_letter("So the answer is (D)", &choices), Some('d'));
        assert_eq!(choice_letter("The answer is b.", &choices), Some('b'));
        assert_eq!(choice_letter("the answer is: department store", &choices), Some('c'));
        assert_eq!(choice_letter("I think the answer is a Department Store.", &choices), Some('c'));
        assert_eq!(choice_letter("the answer is a parking lot", &choices), None);
        // Only the final "answer is" counts.
        assert_eq!(choice_letter("not the answer is (a) but the answer is (e)", &choices), Some('e'));
        assert_eq!(choice_letter("the answer is mall (d), not bank (a)", &choices), Some('d'));
        assert_eq!(choice_letter("(a) looks wrong; (c) fits", &choices), Some('c'));
        let words: Vec<String> = ["art", "music"].map(String::from).to_vec();
        assert_eq!(choice_letter("the answer is a party", &words), None);
        let nested: Vec<String> = ["ground", "ground up dead cows"].map(String::from).to_vec();
        assert_eq!(choice_letter("the answer is ground up dead cows", &nested), Some('b'));
    }

    #[test]
    fn free_text_answers() {
        assert_eq!(text_after_answer_is("Thus the answer is The Pacific Ocean.\nQ:").as_deref(), Some("pacific ocean"));
        assert_eq!(text_after_answer_is("nothing"), None);
        // Characters whose lowercase form has another byte length do not upset the slicing.
        assert!(text_after_answer_is("İİİ the answer is İstanbul.").is_some());
        assert_eq!(normalize_text("  An  Apple, please! "), "apple please");
    }
}
