//! Metadata fields on the store side: the checks that need the database (an `experiments` or
//! `items` field must point at an entry of that kind the writer may read). The rules on types
//! and values live in `cahier_core::fields`.

use crate::{Result, Store, StoreError, invalid};
use cahier_core::document::EntityOp;
use cahier_core::fields::{Field, LinkKind};
use cahier_core::{EntityKind, EntityPatch, Subject};

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

    async fn check_links_of(&self, subject: &Subject, field: &Field) -> Result<()> {
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
