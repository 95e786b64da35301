//! The rendered bodies a replica's first copy leaves out (issue #5, docs/SYNC.md). The server
//! ships entries without `body_html` when the replica asks (`PullDoc::lazy_html`): two thirds
//! of the copy's bytes. Until it is stored, reading a row renders it from the body
//! (`entities::html_of`); [`Store::render_pending_html`] stores it, a few rows per
//! transaction, after the copy.

use crate::{Result, Store};
use cahier_core::markdown::{ContentType, render_body};

/// Rows rendered per transaction.
const RENDER_BATCH: i64 = 100;

impl Store {
    /// Renders and stores the `body_html` of up to `RENDER_BATCH` entries after `after` (an
    /// entity id) whose rendered body is not stored yet. Returns the last id looked at, to
    /// continue from, and how many rows were rendered, or `None` when there is no such entry
    /// left. A row whose body changed meanwhile is left as the change wrote it.
    pub async fn render_pending_html_after(&self, after: i64) -> Result<Option<(i64, usize)>> {
        let pending: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT id, body, content_type FROM entities WHERE id > ? AND body_html = '' \
             AND body <> '' ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(RENDER_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let Some(last) = pending.last().map(|(id, _, _)| *id) else {
            return Ok(None);
        };
        // Markdown and sanitising cost CPU: done before the write transaction, off the
        // runtime's threads.
        let rendered = tokio::task::spawn_blocking(move || {
            pending
                .into_iter()
                .map(|(id, body, content_type)| {
                    let html = render_body(&body, ContentType::from_code(content_type));
                    (id, body, content_type, html)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| crate::StoreError::Conflict("rendering bodies was interrupted".into()))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // The feed numbers of a replica's rows do not move for a cache (migration 24).
        sqlx::query("INSERT OR IGNORE INTO sync_seq_quiet (id) VALUES (1)")
            .execute(&mut *tx)
            .await?;
        for (id, body, content_type, html) in &rendered {
            sqlx::query(
                "UPDATE entities SET body_html = ? WHERE id = ? AND body_html = '' AND body = ? \
                 AND content_type = ?",
            )
            .bind(html)
            .bind(id)
            .bind(body)
            .bind(content_type)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM sync_seq_quiet")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((last, rendered.len())))
    }

    /// Stores the rendered body of every entry that lacks it (see
    /// [`Store::render_pending_html_after`]); returns how many were rendered.
    pub async fn render_pending_html(&self) -> Result<usize> {
        let mut after = 0;
        let mut rendered = 0;
        while let Some((last, n)) = self.render_pending_html_after(after).await? {
            after = last;
            rendered += n;
        }
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::sync::proto::{PullDoc, PullEntry};
    use crate::test_support::roundtrip;
    use cahier_core::markdown::{ContentType, render_body};
    use cahier_core::{EntityKind, EntityPatch};

    async fn stored_html(store: &Store, uuid: &str) -> String {
        sqlx::query_scalar("SELECT body_html FROM entities WHERE uuid = ?")
            .bind(uuid)
            .fetch_one(&store.pool)
            .await
            .expect("html")
    }

    /// A first copy asked without `body_html`: the server leaves it out, every read of the
    /// replica shows the rendered body all the same, and `render_pending_html` then stores
    /// exactly what the lab stores (but never over a body changed meanwhile).
    #[tokio::test]
    async fn a_copy_without_rendered_bodies_reads_the_same_and_is_filled_in_later() {
        let crate::test_support::LabAndReplica {
            lab,
            replica,
            subject,
            replica_subject,
            team,
            _dir,
            ..
        } = crate::test_support::lab_and_replica().await;
        let mut ids = Vec::new();
        for n in 0..130 {
            let body = format!(
                "# Plot {n}\n\nA *quokka* table:\n\n| a | b |\n|---|---|\n| {n} | 2 |\n\n<script>x</script>\n"
            );
            let id = lab
                .create_entity(
                    &subject,
                    crate::NewEntity {
                        kind: EntityKind::Experiment,
                        team_id: team,
                        canread: None,
                        canwrite: None,
                        patch: EntityPatch {
                            title: Some(format!("Plot {n}")),
                            body: Some(body),
                            ..Default::default()
                        },
                        template: None,
                    },
                )
                .await
                .expect("create");
            ids.push(id);
        }
        let feed = lab.feed(&subject, 0, 10_000).await.expect("feed");
        let docs: Vec<PullDoc> = feed
            .items
            .iter()
            .map(|item| PullDoc {
                uuid: item.uuid.clone(),
                have: String::new(),
                lazy_html: true,
            })
            .collect();
        let entries: Vec<PullEntry> = roundtrip(lab.pull(&subject, &docs).await.expect("pull"));
        assert_eq!(entries.len(), ids.len());
        assert!(
            entries
                .iter()
                .all(|e| e.snapshot.entity.body_html.is_empty()
                    && !e.snapshot.entity.body.is_empty()),
            "the server leaves the rendered bodies out"
        );
        replica.apply_pulled_batch(&entries).await.expect("apply");

        let first = &entries[0];
        let lab_row = lab.entity(&subject, first.id).await.expect("lab row");
        assert!(lab_row.body_html.contains("<table>") && !lab_row.body_html.contains("<script>"));
        assert_eq!(
            stored_html(&replica, &first.uuid).await,
            "",
            "not stored yet"
        );
        // Every read renders it meanwhile: one entry, its sheet (API v2), the listing.
        let row = replica
            .entity(&replica_subject, first.id)
            .await
            .expect("replica row");
        assert_eq!(row.body_html, lab_row.body_html);
        let sheet = replica
            .entity_sheet(&replica_subject, EntityKind::Experiment, first.id, None)
            .await
            .expect("sheet")
            .expect("readable");
        assert_eq!(sheet.row.body_html, lab_row.body_html);
        let page = replica
            .list_entities(
                &replica_subject,
                &crate::listing::ListQuery {
                    q: Some("quokka".into()),
                    ..crate::listing::ListQuery::new(EntityKind::Experiment)
                },
            )
            .await
            .expect("list");
        assert!(!page.rows.is_empty());
        for row in &page.rows {
            assert_eq!(
                row.body_html,
                render_body(&row.body, ContentType::from_code(row.content_type))
            );
        }

        // A body changed locally before the fill-in keeps the HTML its change rendered.
        let edited = entries[1].id;
        replica
            .update_entity(
                &replica_subject,
                edited,
                None,
                &EntityPatch {
                    body: Some("Changed **here**".into()),
                    ..Default::default()
                },
                "edit",
            )
            .await
            .expect("edit");
        let pending_before: i64 =
            sqlx::query_scalar("SELECT count(*) FROM entities WHERE body_html = ''")
                .fetch_one(&replica.pool)
                .await
                .expect("count");
        assert_eq!(pending_before, i64::try_from(ids.len() - 1).expect("n"));

        let rendered = replica.render_pending_html().await.expect("render");
        assert_eq!(rendered, ids.len() - 1);
        for entry in &entries[2..] {
            let lab_row = lab.entity(&subject, entry.id).await.expect("lab row");
            assert_eq!(stored_html(&replica, &entry.uuid).await, lab_row.body_html);
        }
        assert_eq!(
            stored_html(&replica, &entries[1].uuid).await,
            render_body("Changed **here**", ContentType::Markdown)
        );
        // Nothing looks locally changed by the fill-in, the quiet flag is gone, and a second
        // run has nothing to do.
        assert_eq!(replica.pending_count().await.expect("pending"), 1);
        let quiet: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_seq_quiet")
            .fetch_one(&replica.pool)
            .await
            .expect("quiet");
        assert_eq!(quiet, 0);
        assert_eq!(replica.render_pending_html().await.expect("again"), 0);
    }
}
