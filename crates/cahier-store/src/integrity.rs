//! Checks that every entity's stored history still adds up, for `cahier verify`: each change in
//! `entity_changes` hashes to its recorded hash, the changes together rebuild a document whose
//! heads are the recorded ones (`entity_docs.heads`, `entities.heads`), and the saved document
//! (`entity_docs.doc`) loads to those heads too. Read-only; it never repairs anything.

use crate::{Result, Store};
use automerge::{Automerge, Change};
use sqlx::Row;

/// One entity whose stored history does not add up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenDocument {
    /// The entity.
    pub entity_id: i64,
    /// The change at fault (`entity_changes.seq`), when one is.
    pub change_seq: Option<i64>,
    /// What is wrong.
    pub reason: String,
}

/// The result of [`Store::verify_documents`].
#[derive(Debug, Clone, Default)]
pub struct DocumentsReport {
    /// Documents checked.
    pub checked: usize,
    /// Changes checked.
    pub changes: usize,
    /// What is broken.
    pub broken: Vec<BrokenDocument>,
}

fn sorted_heads(heads: &str) -> Vec<String> {
    let mut list: Vec<String> = heads
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    list.sort();
    list
}

fn heads_of(doc: &Automerge) -> Vec<String> {
    let mut list: Vec<String> = doc.get_heads().iter().map(|h| h.to_string()).collect();
    list.sort();
    list
}

impl Store {
    /// Re-checks every document against its stored changes (module docs). One document in
    /// memory at a time.
    pub async fn verify_documents(&self) -> Result<DocumentsReport> {
        let mut report = DocumentsReport::default();
        let mut after = i64::MIN;
        loop {
            let row = sqlx::query(
                "SELECT d.entity_id, d.doc, d.heads, e.heads FROM entity_docs d \
                 JOIN entities e ON e.id = d.entity_id WHERE d.entity_id > ? \
                 ORDER BY d.entity_id LIMIT 1",
            )
            .bind(after)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { break };
            let entity_id: i64 = row.try_get(0)?;
            after = entity_id;
            let saved: Vec<u8> = row.try_get(1)?;
            let recorded = sorted_heads(&row.try_get::<String, _>(2)?);
            let projected = sorted_heads(&row.try_get::<String, _>(3)?);
            report.checked += 1;
            let mut broken = |change_seq: Option<i64>, reason: String| {
                report.broken.push(BrokenDocument {
                    entity_id,
                    change_seq,
                    reason,
                });
            };
            if projected != recorded {
                broken(
                    None,
                    "the entry's row names other heads than its document".into(),
                );
            }
            match Automerge::load(&saved) {
                Ok(doc) if heads_of(&doc) != recorded => broken(
                    None,
                    "the saved document's heads differ from the recorded heads".into(),
                ),
                Ok(_) => {}
                Err(error) => broken(None, format!("the saved document does not load: {error}")),
            }
            let changes = sqlx::query(
                "SELECT seq, hash, bytes FROM entity_changes WHERE entity_id = ? ORDER BY seq",
            )
            .bind(entity_id)
            .fetch_all(&self.pool)
            .await?;
            let mut parsed = Vec::with_capacity(changes.len());
            let mut changes_ok = true;
            for change in changes {
                report.changes += 1;
                let seq: i64 = change.try_get(0)?;
                let hash: String = change.try_get(1)?;
                let bytes: Vec<u8> = change.try_get(2)?;
                match Change::from_bytes(bytes) {
                    Ok(change) if change.hash().to_string() == hash => parsed.push(change),
                    Ok(_) => {
                        changes_ok = false;
                        broken(
                            Some(seq),
                            "the stored change does not hash to its recorded hash".into(),
                        );
                    }
                    Err(error) => {
                        changes_ok = false;
                        broken(
                            Some(seq),
                            format!("the stored change does not load: {error}"),
                        );
                    }
                }
            }
            if changes_ok {
                let mut rebuilt = Automerge::new();
                match rebuilt.apply_changes(parsed) {
                    Ok(()) if heads_of(&rebuilt) != recorded => broken(
                        None,
                        "the stored changes lead to other heads than the recorded ones".into(),
                    ),
                    Ok(()) => {}
                    Err(error) => {
                        broken(None, format!("the stored changes do not apply: {error}"));
                    }
                }
            }
        }
        Ok(report)
    }
}
