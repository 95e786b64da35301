//! Templates (experiment and resource templates share the entity model): making an entry from
//! one, and each team's default template. Who may share a template is `cahier_core::template`.

use crate::entities::NewEntity;
use crate::{Result, Store, StoreError, invalid};
use cahier_core::document::EntityOp;
use cahier_core::{BaseLevel, EntityId, EntityKind, EntityPatch, Subject, template};

impl Store {
    /// Creates an entry of `new.kind` from the template `template_id`: a copy of its title,
    /// body, tags, steps, links, category and fields (their values are the defaults), with
    /// what `new.patch` sets on top, recording the template's UUID in the document.
    /// A template the subject may not read, or of another kind, is "not found".
    pub async fn create_from_template(
        &self,
        subject: &Subject,
        template_id: i64,
        new: NewEntity,
    ) -> Result<i64> {
        let template_kind =
            template::template_kind(new.kind).ok_or(StoreError::NotFound("template"))?;
        let row = match self
            .entity_of_kind(subject, template_kind, template_id)
            .await
        {
            Ok(row) if row.state != crate::entities::state::DELETED => row,
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(StoreError::NotFound("template")),
            Err(other) => return Err(other),
        };
        let content = self.content(subject, template_id).await?;
        let now = self.now_ms();
        let mut ops = Vec::new();
        for (n, step) in content.steps.iter().enumerate() {
            ops.push(EntityOp::AddStep {
                id: crate::random_hex(8),
                body: step.body.clone(),
                at_ms: now + i64::try_from(n).unwrap_or_default(),
            });
        }
        for target in &content.links {
            ops.push(EntityOp::AddLink {
                target: *target,
                at_ms: now,
            });
        }
        if !content.metadata.is_empty() {
            ops.push(EntityOp::SetMetadata {
                metadata: content.metadata.for_copy(),
                require: false,
            });
        }
        let given = new.patch;
        ops.extend(given.ops);
        let same_team = row.team_id == new.team_id;
        let patch = EntityPatch {
            title: given.title.or(Some(content.title.clone())),
            date: given.date,
            body: given.body.or(Some(content.body.clone())),
            content_type: given.content_type.or(Some(
                cahier_core::markdown::ContentType::from_code(content.content_type),
            )),
            status: given.status,
            category: given.category.or(same_team
                .then_some(content.category)
                .filter(Option::is_some)),
            rating: given.rating,
            tags: given.tags.or(Some(content.tags.clone())),
            ops,
        };
        self.create_entity(
            subject,
            NewEntity {
                patch,
                template: row.uuid.parse::<EntityId>().ok(),
                ..new
            },
        )
        .await
    }

    /// Sets (or clears, with `None`) the default template of `kind` for `team_id`. Team admins
    /// only; the template must belong to the team and be readable by its members.
    pub async fn set_default_template(
        &self,
        subject: &Subject,
        team_id: i64,
        kind: EntityKind,
        template_id: Option<i64>,
    ) -> Result<()> {
        if !template::is_template(kind) {
            return Err(invalid("kind", "only templates can be a team's default"));
        }
        if !subject.is_team_admin(team_id) && !subject.is_sysadmin {
            return Err(StoreError::Forbidden(
                "only team admins choose the team's default template".into(),
            ));
        }
        match template_id {
            None => {
                sqlx::query("DELETE FROM team_default_templates WHERE team_id = ? AND kind = ?")
                    .bind(team_id)
                    .bind(kind.as_str())
                    .execute(&self.pool)
                    .await?;
            }
            Some(id) => {
                let row = self.entity_of_kind(subject, kind, id).await?;
                if row.team_id != team_id {
                    return Err(invalid(
                        "template",
                        "this template belongs to another team; pick one of your team's",
                    ));
                }
                if row.canread.base.code() < BaseLevel::Team.code()
                    && !row.canread.teams.contains(&team_id)
                {
                    return Err(invalid(
                        "template",
                        "the team cannot read this template; share it with the team first",
                    ));
                }
                sqlx::query(
                    "INSERT INTO team_default_templates (team_id, kind, entity_id) VALUES (?, ?, ?) \
                     ON CONFLICT (team_id, kind) DO UPDATE SET entity_id = excluded.entity_id",
                )
                .bind(team_id)
                .bind(kind.as_str())
                .bind(id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The default template of `kind` for `team_id`, if one is set and not deleted.
    pub async fn default_template(&self, team_id: i64, kind: EntityKind) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT d.entity_id FROM team_default_templates d JOIN entities e ON e.id = d.entity_id \
             WHERE d.team_id = ? AND d.kind = ? AND e.state = 1",
        )
        .bind(team_id)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }
}
