//! Metadata fields on the store side: the checks that need the database (an `experiments` or
//! `items` field must point at an entry of that kind the writer may read). The rules on types
//! and values live in `cahier_core::fields`.

use crate::{Result, Store, StoreError, invalid};
use cahier_core::document::EntityOp;
use cahier_core::fields::{Field, LinkKind, Metadata};
use cahier_core::{EntityKind, EntityPatch, Subject};

/// The field rules a pushed document must keep (docs/SYNC.md: the server validates pushes):
/// every field added or changed since `before` has a valid definition and value. Fields left
/// as they were are not re-judged, so a rule added later never blocks unrelated edits. Required
/// values are not enforced here: an offline writer may fill them in a later change.
pub(crate) fn check_changed_fields(before: &Metadata, after: &Metadata) -> Result<()> {
    for field in &after.fields {
        if before.field(&field.name) == Some(field) {
            continue;
        }
        field
            .clone()
            .checked()
            .map_err(|e| invalid(&e.name, e.message))?;
    }
    Ok(())
}

impl Store {
    /// Checks that every entry a patch's fields point at exists and is readable by `subject`.
    /// `entity_id` is the entity changed (to find the type of a field whose value alone is set).
    pub(crate) async fn check_field_links(
        &self,
        subject: &Subject,
        entity_id: Option<i64>,
        patch: &EntityPatch,
    ) -> Result<()> {
        for op in &patch.ops {
            match op {
                EntityOp::SetMetadata { metadata, .. } => {
                    for field in &metadata.fields {
                        self.check_links_of(subject, field).await?;
                    }
                }
                EntityOp::PutField(field) => self.check_links_of(subject, field).await?,
                EntityOp::SetFieldValue { name, value } => {
                    let Some(entity_id) = entity_id else { continue };
                    let field_type: Option<String> = sqlx::query_scalar(
                        "SELECT type FROM entity_fields WHERE entity_id = ? AND name = ? LIMIT 1",
                    )
                    .bind(entity_id)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(field_type) = field_type {
                        let mut field = Field::new(name, &field_type);
                        field.props.insert("value".into(), value.clone());
                        self.check_links_of(subject, &field).await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) async fn check_links_of(&self, subject: &Subject, field: &Field) -> Result<()> {
        let Some((kind, ids)) = field.link_targets() else {
            return Ok(());
        };
        let (kind, what) = match kind {
            LinkKind::Experiment => (EntityKind::Experiment, "experiment"),
            LinkKind::Resource => (EntityKind::Resource, "resource"),
        };
        for id in ids {
            match self.entity_of_kind(subject, kind, id).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => {
                    return Err(invalid(
                        &field.name,
                        format!(
                            "{what} {id} does not exist or you cannot read it; give the number of one you can open"
                        ),
                    ));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::sync::proto::{PushDoc, PushStatus};
    use cahier_core::document::EntityOp;
    use cahier_core::fields::Metadata;
    use cahier_core::{EntityKind, EntityPatch, SystemClock};
    use std::sync::Arc;

    /// A replica (or any sync client) cannot slip in a field value that breaks its rule: the
    /// push is refused and kept in quarantine, as any refused change set.
    #[tokio::test]
    async fn a_pushed_field_value_that_breaks_its_rule_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open_sqlite(&dir.path().join("c.db"), Arc::new(SystemClock))
            .await
            .expect("store");
        let (_, team, device, subject) = crate::test_support::member_with_laptop(&store).await;
        let metadata =
            Metadata::parse(r#"{"extra_fields": {"T": {"type": "number", "value": "4"}}}"#)
                .expect("metadata");
        let id = store
            .create_entity(
                &subject,
                crate::NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: team,
                    canread: None,
                    canwrite: None,
                    patch: EntityPatch {
                        ops: vec![EntityOp::SetMetadata {
                            metadata,
                            require: false,
                        }],
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .expect("create");
        let row = store.entity(&subject, id).await.expect("row");
        let mut conn = store.pool.acquire().await.expect("conn");
        let (heads, mut doc) = store.load_doc(&mut conn, id).await.expect("doc");
        drop(conn);
        // Written below the checks, as a faulty or hostile client could.
        let before = doc.heads();
        {
            use automerge::ReadDoc;
            use automerge::transaction::Transactable;
            let am = doc.automerge();
            am.set_actor(automerge::ActorId::from([9u8; 16]));
            let (_, fields) = am
                .get(automerge::ROOT, "fields")
                .expect("get")
                .expect("fields");
            let (_, field) = am.get(&fields, "T").expect("get").expect("T");
            am.put(&field, "value", "warm").expect("put");
            am.commit();
        }
        let changes: Vec<u8> = doc
            .changes_since(&before)
            .into_iter()
            .flat_map(|c| c.bytes)
            .collect();
        let results = store
            .push(
                &subject,
                &device,
                vec![PushDoc {
                    uuid: row.uuid.clone(),
                    base: heads,
                    changes: crate::sync::proto::b64(&changes),
                    new: None,
                }],
            )
            .await
            .expect("push");
        assert_eq!(results[0].status, PushStatus::Rejected, "{:?}", results[0]);
        let reason = results[0].reason.clone().unwrap_or_default();
        assert!(
            reason.contains("T") && reason.contains("not a number"),
            "{reason}"
        );
        assert_eq!(store.quarantined(&row.uuid).await.expect("kept"), 1);
        let content = store.content(&subject, id).await.expect("content");
        assert_eq!(
            content.metadata.field("T").map(|f| f.display_value()),
            Some("4".into())
        );
    }
}
