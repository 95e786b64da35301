//! The changes of an entity after a replica's heads, read from the server's change log
//! (`entity_changes`: hash, dependencies, bytes of every accepted change) instead of loading
//! the document (issue #5: a pull of edited entries loaded each Automerge document to call
//! `save_after`). The log answers only when it is sure: it must hold every hash the replica
//! names and every dependency it lists, and its own heads must be the entity's heads;
//! otherwise the caller loads the document as before.

use crate::Result;
use sqlx::SqliteConnection;
use std::collections::{HashMap, HashSet};

/// For each request (`entity id, have, heads`): the bytes of the changes not in the history
/// of `have` (comma-separated hashes), as change chunks in the order the server accepted
/// them, or `None` when the log cannot tell. Two statements whatever the number of requests
/// (one entity at a time, a pull batch of 500 edits made 1,000 round trips to the database
/// thread). One answer per request, in order.
pub(crate) async fn changes_after_many(
    conn: &mut SqliteConnection,
    requests: &[(i64, &str, &str)],
) -> Result<Vec<Option<Vec<u8>>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = requests.iter().map(|(id, _, _)| *id).collect();
    let list = crate::entities::json_list(&ids)?;
    let rows: Vec<(i64, i64, String, String)> = sqlx::query_as(
        "SELECT entity_id, seq, hash, deps FROM entity_changes \
         WHERE entity_id IN (SELECT value FROM json_each(?)) ORDER BY entity_id, seq",
    )
    .bind(list)
    .fetch_all(&mut *conn)
    .await?;
    let mut logs: HashMap<i64, Vec<(i64, String, String)>> = HashMap::new();
    for (entity_id, seq, hash, deps) in rows {
        logs.entry(entity_id).or_default().push((seq, hash, deps));
    }
    let needed: Vec<Option<Vec<i64>>> = requests
        .iter()
        .map(|(id, have, heads)| {
            needed_seqs(logs.get(id).map_or(&[][..], Vec::as_slice), have, heads)
        })
        .collect();
    let all: Vec<i64> = needed.iter().flatten().flatten().copied().collect();
    let mut bytes: HashMap<i64, Vec<u8>> = HashMap::new();
    if !all.is_empty() {
        let list = crate::entities::json_list(&all)?;
        let chunks: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, bytes FROM entity_changes WHERE seq IN (SELECT value FROM json_each(?))",
        )
        .bind(list)
        .fetch_all(&mut *conn)
        .await?;
        bytes.extend(chunks);
    }
    Ok(needed
        .into_iter()
        .map(|seqs| {
            let seqs = seqs?;
            let mut out = Vec::new();
            for seq in seqs {
                out.extend_from_slice(bytes.get(&seq)?);
            }
            Some(out)
        })
        .collect())
}

/// Which rows of the log (`seq`, `hash`, `deps`) are not in the history of `have`; `None`
/// when the log is not the whole history of a document at `heads`, or lacks a hash of
/// `have`.
fn needed_seqs(log: &[(i64, String, String)], have: &str, heads: &str) -> Option<Vec<i64>> {
    let split = |s: &'_ str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let by_hash: HashMap<&str, Vec<String>> = log
        .iter()
        .map(|(_, hash, deps)| (hash.as_str(), split(deps)))
        .collect();
    // Closed: every dependency is in the log.
    let mut named = HashSet::new();
    for deps in by_hash.values() {
        for dep in deps {
            if !by_hash.contains_key(dep.as_str()) {
                return None;
            }
            named.insert(dep.as_str());
        }
    }
    // Whole: the log's heads are the entity's.
    let mut log_heads: Vec<&str> = by_hash
        .keys()
        .copied()
        .filter(|h| !named.contains(h))
        .collect();
    log_heads.sort_unstable();
    let mut want_heads = split(heads);
    want_heads.sort_unstable();
    if log_heads != want_heads.iter().map(String::as_str).collect::<Vec<_>>() {
        return None;
    }
    // The history of `have`.
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack = Vec::new();
    for hash in split(have) {
        let (key, _) = by_hash.get_key_value(hash.as_str())?;
        stack.push(*key);
    }
    while let Some(hash) = stack.pop() {
        if !seen.insert(hash) {
            continue;
        }
        if let Some(deps) = by_hash.get(hash) {
            stack.extend(deps.iter().map(String::as_str));
        }
    }
    Some(
        log.iter()
            .filter(|(_, hash, _)| !seen.contains(hash.as_str()))
            .map(|(seq, _, _)| *seq)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::needed_seqs;

    fn log() -> Vec<(i64, String, String)> {
        // a ← b ← d, a ← c ← d (d merges b and c); e after d.
        vec![
            (1, "a".into(), String::new()),
            (2, "b".into(), "a".into()),
            (3, "c".into(), "a".into()),
            (4, "d".into(), "b,c".into()),
            (5, "e".into(), "d".into()),
        ]
    }

    #[test]
    fn only_what_the_replica_lacks_is_sent() {
        assert_eq!(needed_seqs(&log(), "b", "e"), Some(vec![3, 4, 5]));
        // A change accepted before the replica's head but not in its history still goes.
        assert_eq!(needed_seqs(&log(), "c", "e"), Some(vec![2, 4, 5]));
        assert_eq!(needed_seqs(&log(), "d", "e"), Some(vec![5]));
        assert_eq!(needed_seqs(&log(), "e", "e"), Some(vec![]));
        assert_eq!(needed_seqs(&log(), "b,c", "e"), Some(vec![4, 5]));
    }

    #[test]
    fn the_log_answers_only_when_it_is_sure() {
        // An unknown hash of the replica's.
        assert_eq!(needed_seqs(&log(), "z", "e"), None);
        // Heads that are not the log's (a change missing from the log).
        assert_eq!(needed_seqs(&log(), "b", "f"), None);
        // A dependency missing from the log.
        let mut broken = log();
        broken.remove(0);
        assert_eq!(needed_seqs(&broken, "b", "e"), None);
    }
}
