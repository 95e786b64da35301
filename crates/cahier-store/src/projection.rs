//! Writes an entity's projection: the content columns of `entities` and the child tables that
//! lists, search and pages read instead of loading documents. Always called inside the
//! transaction that stores the document change, so the two never disagree.

use cahier_core::EntityContent;
use cahier_core::markdown::{ContentType, index_text, render_body};
use sqlx::SqliteConnection;

/// The parts of a projection that cost CPU: computed before the write transaction starts.
pub(crate) struct Rendered {
    body_html: String,
    index_body: String,
}

pub(crate) fn render(content: &EntityContent) -> Rendered {
    let content_type = ContentType::from_code(content.content_type);
    Rendered {
        body_html: render_body(&content.body, content_type),
        index_body: index_text(&content.body, content_type),
    }
}

pub(crate) async fn write(
    conn: &mut SqliteConnection,
    entity_id: i64,
    content: &EntityContent,
    rendered: &Rendered,
    heads: &str,
    modified_at: i64,
    changed_by: i64,
) -> Result<(), sqlx::Error> {
    let body_html = &rendered.body_html;
    let tags_text = content.tags.join("|");
    sqlx::query(
        "UPDATE entities SET title = ?, date = ?, body = ?, body_html = ?, content_type = ?, status_id = ?, \
         category_id = ?, rating = ?, tags_text = ?, template_uuid = ?, heads = ?, n_conflicts = ?, \
         modified_at = ?, lastchangeby = ? WHERE id = ?",
    )
    .bind(&content.title)
    .bind(&content.date)
    .bind(&content.body)
    .bind(body_html)
    .bind(content.content_type)
    .bind(content.status)
    .bind(content.category)
    .bind(content.rating)
    .bind(&tags_text)
    .bind(content.template.map(|t| t.to_string()))
    .bind(heads)
    .bind(i64::try_from(content.conflicts.len()).unwrap_or(i64::MAX))
    .bind(modified_at)
    .bind(changed_by)
    .bind(entity_id)
    .execute(&mut *conn)
    .await?;

    for table in [
        "entity_tags",
        "entity_links",
        "entity_steps",
        "entity_comments",
        "entity_conflicts",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE entity_id = ?"
        )))
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    }
    for tag in &content.tags {
        sqlx::query("INSERT INTO entity_tags (entity_id, tag) VALUES (?, ?)")
            .bind(entity_id)
            .bind(tag)
            .execute(&mut *conn)
            .await?;
    }
    for target in &content.links {
        sqlx::query("INSERT INTO entity_links (entity_id, target_uuid) VALUES (?, ?)")
            .bind(entity_id)
            .bind(target.to_string())
            .execute(&mut *conn)
            .await?;
    }
    for (ordering, step) in content.steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO entity_steps (entity_id, step_id, ordering, body, done, done_by, done_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entity_id)
        .bind(&step.id)
        .bind(i64::try_from(ordering).unwrap_or(i64::MAX))
        .bind(&step.body)
        .bind(step.done)
        .bind(step.done_by)
        .bind(step.done_at_ms)
        .execute(&mut *conn)
        .await?;
    }
    for comment in &content.comments {
        sqlx::query(
            "INSERT INTO entity_comments (entity_id, comment_id, author, created_at, edited_at, body) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(entity_id)
        .bind(&comment.id)
        .bind(comment.author)
        .bind(comment.created_at_ms)
        .bind(comment.edited_at_ms)
        .bind(&comment.body)
        .execute(&mut *conn)
        .await?;
    }
    for conflict in &content.conflicts {
        sqlx::query(
            "INSERT INTO entity_conflicts (entity_id, field, values_json) VALUES (?, ?, ?)",
        )
        .bind(entity_id)
        .bind(conflict.field.key())
        .bind(serde_json::to_string(&conflict.values).unwrap_or_else(|_| "[]".into()))
        .execute(&mut *conn)
        .await?;
    }

    let comments_text: Vec<&str> = content.comments.iter().map(|c| c.body.as_str()).collect();
    sqlx::query("DELETE FROM entity_fts WHERE rowid = ?")
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO entity_fts (rowid, title, body, tags, comments) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(entity_id)
    .bind(&content.title)
    .bind(&rendered.index_body)
    .bind(content.tags.join(" "))
    .bind(comments_text.join("\n"))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
