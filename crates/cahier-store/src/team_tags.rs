//! A team's tags: every tag carried by the team's entries (not deleted), plus the tags its
//! admins declared ahead of use (`team_tags`). Renaming or removing a tag across the team edits
//! each entry's document (so each change is in that entry's history); that part is the web
//! layer's, which applies it through [`Store::update_entity`] with the caller's rights.

use crate::entities::state;
use crate::{Result, Store, StoreError};
use cahier_core::Subject;
use cahier_core::document::{EntityOp, EntityPatch, clean_tag};

/// One tag of a team, with the number of the team's entries (not deleted) that carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamTag {
    pub tag: String,
    pub item_count: i64,
}

impl Store {
    /// The team's tags in alphabetical order (case-insensitive), declared ones included.
    pub async fn team_tags(&self, team_id: i64) -> Result<Vec<TeamTag>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tag, SUM(n) FROM ( \
               SELECT t.tag AS tag, 1 AS n FROM entity_tags t JOIN entities e ON e.id = t.entity_id \
                WHERE e.team_id = ?1 AND e.state != ?2 \
               UNION ALL \
               SELECT tag, 0 FROM team_tags WHERE team_id = ?1 \
             ) GROUP BY tag ORDER BY lower(tag), tag",
        )
        .bind(team_id)
        .bind(state::DELETED)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(tag, item_count)| TeamTag { tag, item_count })
            .collect())
    }

    /// Declares a tag for the team; answers the tag as stored (trimmed). Declaring a tag the
    /// team already has changes nothing.
    pub async fn add_team_tag(&self, team_id: i64, tag: &str, by: i64) -> Result<String> {
        let tag = clean_tag(tag)?;
        sqlx::query(
            "INSERT INTO team_tags (team_id, tag, created_by, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (team_id, tag) DO NOTHING",
        )
        .bind(team_id)
        .bind(&tag)
        .bind(by)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        Ok(tag)
    }

    /// The team's entries (not deleted) that carry the tag, by id.
    pub async fn team_tag_entries(&self, team_id: i64, tag: &str) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT e.id FROM entity_tags t JOIN entities e ON e.id = t.entity_id \
             WHERE e.team_id = ? AND t.tag = ? AND e.state != ? ORDER BY e.id",
        )
        .bind(team_id)
        .bind(tag)
        .bind(state::DELETED)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets a declared tag (the entries that carry it are the caller's to change).
    pub async fn forget_team_tag(&self, team_id: i64, tag: &str) -> Result<()> {
        sqlx::query("DELETE FROM team_tags WHERE team_id = ? AND tag = ?")
            .bind(team_id)
            .bind(tag)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Renames a tag on every entry of the team that carries it (each change in that entry's
    /// history, as `subject`), and keeps it declared under its new text. Refused as a whole,
    /// before anything changes, when one of those entries may not be changed by `subject`.
    /// Answers the new text as stored. Who may do this (team admins) is the caller's check.
    pub async fn rename_team_tag(
        &self,
        subject: &Subject,
        team_id: i64,
        tag: &str,
        new_text: &str,
    ) -> Result<String> {
        let renamed = clean_tag(new_text)?;
        if renamed != tag {
            let ops = [
                EntityOp::AddTag(renamed.clone()),
                EntityOp::RemoveTag(tag.to_owned()),
            ];
            self.change_team_entries(subject, team_id, tag, &ops, "tag renamed")
                .await?;
            self.forget_team_tag(team_id, tag).await?;
            self.add_team_tag(team_id, &renamed, subject.user_id)
                .await?;
        }
        Ok(renamed)
    }

    /// Removes a tag from every entry of the team that carries it, and forgets it; refused as
    /// a whole like [`Store::rename_team_tag`].
    pub async fn remove_team_tag(&self, subject: &Subject, team_id: i64, tag: &str) -> Result<()> {
        let ops = [EntityOp::RemoveTag(tag.to_owned())];
        self.change_team_entries(subject, team_id, tag, &ops, "tag removed")
            .await?;
        self.forget_team_tag(team_id, tag).await
    }

    /// Applies `ops` to every entry of the team that carries `tag`, after checking that each
    /// of them may be changed by `subject`.
    async fn change_team_entries(
        &self,
        subject: &Subject,
        team_id: i64,
        tag: &str,
        ops: &[EntityOp],
        message: &str,
    ) -> Result<()> {
        let ids = self.team_tag_entries(team_id, tag).await?;
        let refused = self.unwritable_entries(subject, &ids).await?;
        if !refused.is_empty() {
            let list: Vec<String> = refused
                .iter()
                .take(10)
                .map(|(id, why)| format!("#{id}: {why}"))
                .collect();
            return Err(StoreError::Conflict(format!(
                "{} of the {} entries carrying {tag:?} cannot be changed, so nothing was changed ({}{})",
                refused.len(),
                ids.len(),
                list.join("; "),
                if refused.len() > 10 { "; …" } else { "" }
            )));
        }
        for id in ids {
            let patch = EntityPatch {
                ops: ops.to_vec(),
                ..Default::default()
            };
            self.update_entity(subject, id, None, &patch, message)
                .await?;
        }
        Ok(())
    }

    /// Why the subject could not change each of these entries (locked, deleted, not theirs
    /// to write), so that a change across a team's entries is refused before any of it lands.
    pub async fn unwritable_entries(
        &self,
        subject: &Subject,
        ids: &[i64],
    ) -> Result<Vec<(i64, String)>> {
        let mut refused = Vec::new();
        for &id in ids {
            let outcome = match self.entity(subject, id).await {
                Ok(row) => crate::entities::check_writable(&row, subject),
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                refused.push((id, e.to_string()));
            }
        }
        Ok(refused)
    }
}
