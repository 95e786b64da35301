//! Words joined by hyphens or underscores (`batch-8`, `soil_water`, `CO2-free`) as single
//! search terms.
//!
//! SQLite's `unicode61` tokenizer splits `batch-8` into `batch` and `8`; searching for it is then
//! a phrase query, which reads the positions of two common words in every entry that holds both
//! (44 ms at 100,000 entries, BENCHMARKS.md). Indexing each joined word once more as one term,
//! its parts glued by [`GLUE`], makes that search a lookup of one rare term. The same function
//! builds the term on both sides, so they always agree.

use std::collections::BTreeSet;

/// A private-use character: the tokenizer keeps it inside a term (it is neither a space nor a
/// punctuation mark) and no user types it.
pub const GLUE: char = '\u{E000}';

fn is_joiner(c: char) -> bool {
    c == '-' || c == '_'
}

/// The joined term of one typed word, if it has at least two parts (`batch-8` →
/// `batch\u{E000}8`); `None` for a plain word.
pub fn joined_term(word: &str) -> Option<String> {
    // Most words hold no joiner: answered without allocating (an entry's body is hundreds of
    // words, and every one passes here when the entry is indexed).
    if !word.contains(is_joiner) {
        return None;
    }
    let parts: Vec<&str> = word.split(is_joiner).filter(|p| !p.is_empty()).collect();
    if parts.len() < 2 || !parts.iter().all(|p| p.chars().all(char::is_alphanumeric)) {
        return None;
    }
    Some(parts.join(&GLUE.to_string()))
}

/// Every joined word in `texts`, once each, separated by spaces: extra text for the index.
pub fn joined_terms<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut terms = BTreeSet::new();
    for text in texts {
        if !text.contains(is_joiner) {
            continue;
        }
        for word in text.split(|c: char| !c.is_alphanumeric() && !is_joiner(c)) {
            if let Some(term) = joined_term(word) {
                terms.insert(term);
            }
        }
    }
    let mut out = String::new();
    for term in terms {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&term);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_words_become_one_term() {
        assert_eq!(joined_term("batch-8").as_deref(), Some("batch\u{E000}8"));
        assert_eq!(
            joined_term("soil_water-2").as_deref(),
            Some("soil\u{E000}water\u{E000}2")
        );
        assert_eq!(joined_term("-lead-").as_deref(), None);
        assert_eq!(joined_term("plain"), None);
        assert_eq!(
            joined_terms(["Lot batch-8, batch-8 and CO2-free; x - y", "tag_a"]),
            "CO2\u{E000}free batch\u{E000}8 tag\u{E000}a"
        );
    }
}
