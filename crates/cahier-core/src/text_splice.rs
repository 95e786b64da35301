//! Turns "here is the new body" into a few small splices, so that replacing a body through a
//! form or the API never takes Automerge's slow character-level path (seconds for a rewritten
//! 20 KB body, `reference/sync.md` §4.2e) and concurrent edits of other paragraphs still merge.

use similar::{DiffOp, TextDiff};

/// One splice: at `start` (in characters of the old text), delete `delete` characters and
/// insert `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    /// Position in the old text, counted in Unicode scalar values.
    pub start: usize,
    /// Number of characters to delete.
    pub delete: usize,
    /// Text to insert.
    pub insert: String,
}

/// Computes splices that turn `old` into `new`, by lines. Splices are returned from the end of
/// the text backwards, so applying them in order never shifts a later one.
pub fn line_splices(old: &str, new: &str) -> Vec<Splice> {
    if old == new {
        return Vec::new();
    }
    let diff = TextDiff::configure()
        .timeout(std::time::Duration::from_millis(50))
        .diff_lines(old, new);
    let old_lines: Vec<&str> = diff.old_slices().to_vec();
    let new_lines: Vec<&str> = diff.new_slices().to_vec();
    // Character offset of each old line.
    let mut offsets = Vec::with_capacity(old_lines.len() + 1);
    let mut acc = 0usize;
    for line in &old_lines {
        offsets.push(acc);
        acc += line.chars().count();
    }
    offsets.push(acc);

    let mut splices = Vec::new();
    for op in diff.ops() {
        let (old_range, new_range) = match *op {
            DiffOp::Equal { .. } => continue,
            DiffOp::Delete {
                old_index,
                old_len,
                new_index,
            } => (old_index..old_index + old_len, new_index..new_index),
            DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => (old_index..old_index, new_index..new_index + new_len),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => (
                old_index..old_index + old_len,
                new_index..new_index + new_len,
            ),
        };
        let start = offsets[old_range.start];
        let delete = offsets[old_range.end] - start;
        let insert: String = new_lines[new_range].concat();
        splices.push(Splice {
            start,
            delete,
            insert,
        });
    }
    splices.reverse();
    splices
}

/// Applies splices (as returned by [`line_splices`]) to a string; used by tests and by callers
/// that want the resulting text without a document.
pub fn apply(old: &str, splices: &[Splice]) -> String {
    let mut chars: Vec<char> = old.chars().collect();
    for splice in splices {
        chars.splice(
            splice.start..splice.start + splice.delete,
            splice.insert.chars(),
        );
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_rebuild_the_new_text() {
        let cases = [
            ("", "hello\n"),
            ("a\nb\nc\n", "a\nB\nc\n"),
            ("a\nb\nc", "a\nc"),
            ("été\nçà\n", "été\nçà\nœuf\n"),
            ("one\ntwo\nthree\n", "zero\none\nthree\nfour"),
        ];
        for (old, new) in cases {
            assert_eq!(
                apply(old, &line_splices(old, new)),
                new,
                "{old:?} -> {new:?}"
            );
        }
    }

    #[test]
    fn a_changed_line_is_one_small_splice() {
        let old = "l1\nl2\nl3\nl4\n";
        let splices = line_splices(old, "l1\nL2\nl3\nl4\n");
        assert_eq!(
            splices,
            vec![Splice {
                start: 3,
                delete: 3,
                insert: "L2\n".into()
            }]
        );
    }

    #[test]
    fn a_full_rewrite_of_a_large_body_is_fast_and_correct() {
        let old: String = (0..2000).map(|i| format!("old line {i}\n")).collect();
        let new: String = (0..2000).map(|i| format!("new text {i}\n")).collect();
        let splices = line_splices(&old, &new);
        assert_eq!(apply(&old, &splices), new);
    }
}
