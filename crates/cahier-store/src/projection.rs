//! Writes an entity's projection: the content columns of `entities` and the child tables that
//! lists, search and pages read instead of loading documents. Always called inside the
//! transaction that stores the document change, so the two never disagree. The `uploads` rows
//! are part of it: they are written from the document's `attachments` ([`write_uploads`]).

use crate::entities::{CommentRow, StepRow};
use cahier_core::EntityContent;
use cahier_core::document::{ATTACHMENT_NORMAL, Attachment};
use cahier_core::fields::Metadata;
use cahier_core::markdown::{ContentType, index_text, render_body};
use cahier_core::search_terms::joined_terms;
use cahier_core::stock::Stock;
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

/// Everything [`write`] stores for an entity, computed from its content (no IO): the columns
/// of `entities`, the child rows and the full-text row. Serialisable so that an import can
/// keep prepared entities on disk instead of in memory until its one transaction.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rows {
    title: String,
    date: String,
    body: String,
    body_html: String,
    content_type: i64,
    status: Option<i64>,
    category: Option<i64>,
    rating: i64,
    tags: Vec<String>,
    template: Option<String>,
    metadata: Option<String>,
    n_conflicts: i64,
    fields: Vec<FieldRow>,
    links: Vec<String>,
    steps: Vec<StepRow>,
    comments: Vec<CommentRow>,
    /// (field, JSON list of values)
    conflicts: Vec<(String, String)>,
    stock: Option<Stock>,
    index_body: String,
}

impl Rows {
    pub(crate) fn of(content: &EntityContent, rendered: &Rendered) -> Self {
        let steps = content
            .steps
            .iter()
            .enumerate()
            .map(|(ordering, step)| StepRow {
                step_id: step.id.clone(),
                ordering: i64::try_from(ordering).unwrap_or(i64::MAX),
                body: step.body.clone(),
                done: step.done,
                done_by: step.done_by,
                done_at: step.done_at_ms,
            })
            .collect();
        let comments = content
            .comments
            .iter()
            .map(|comment| CommentRow {
                comment_id: comment.id.clone(),
                author: comment.author,
                created_at: comment.created_at_ms,
                edited_at: comment.edited_at_ms,
                body: comment.body.clone(),
            })
            .collect();
        let conflicts = content
            .conflicts
            .iter()
            .map(|c| {
                let values = serde_json::to_string(&c.values).unwrap_or_else(|_| "[]".into());
                (c.field.key().into_owned(), values)
            })
            .collect();
        Self {
            title: content.title.clone(),
            date: content.date.clone(),
            body: content.body.clone(),
            body_html: rendered.body_html.clone(),
            content_type: content.content_type,
            status: content.status,
            category: content.category,
            rating: content.rating,
            tags: content.tags.clone(),
            template: content.template.map(|t| t.to_string()),
            metadata: content.metadata.to_json_string(),
            n_conflicts: i64::try_from(content.conflicts.len()).unwrap_or(i64::MAX),
            fields: field_rows(&content.metadata),
            links: content.links.iter().map(ToString::to_string).collect(),
            steps,
            comments,
            conflicts,
            stock: content.stock.clone(),
            index_body: rendered.index_body.clone(),
        }
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
    let rows = Rows::of(content, rendered);
    write_rows(conn, entity_id, &rows, heads, modified_at, changed_by).await
}

/// On a replica, forgets that an entity's child rows are the ones its last pull wrote
/// (`replica_entities.children`, migration 38): they are being written otherwise, at the same
/// heads (an access change). Rows written from the document need not: they are written at
/// new heads, which the key no longer matches. Nothing to do on a lab server (no such row).
pub(crate) async fn forget_pulled_children(
    conn: &mut SqliteConnection,
    entity_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE replica_entities SET children = NULL WHERE entity_id = ? AND children IS NOT NULL",
    )
    .bind(entity_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes projection rows computed beforehand ([`Rows::of`]).
pub(crate) async fn write_rows(
    conn: &mut SqliteConnection,
    entity_id: i64,
    rows: &Rows,
    heads: &str,
    modified_at: i64,
    changed_by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE entities SET title = ?, date = ?, body = ?, body_html = ?, content_type = ?, status_id = ?, \
         category_id = ?, rating = ?, tags_text = ?, template_uuid = ?, metadata = ?, heads = ?, n_conflicts = ?, \
         modified_at = ?, lastchangeby = ? WHERE id = ?",
    )
    .bind(&rows.title)
    .bind(&rows.date)
    .bind(&rows.body)
    .bind(&rows.body_html)
    .bind(rows.content_type)
    .bind(rows.status)
    .bind(rows.category)
    .bind(rows.rating)
    .bind(rows.tags.join("|"))
    .bind(&rows.template)
    .bind(&rows.metadata)
    .bind(heads)
    .bind(rows.n_conflicts)
    .bind(modified_at)
    .bind(changed_by)
    .bind(entity_id)
    .execute(&mut *conn)
    .await?;
    let children = Children {
        fields: &rows.fields,
        tags: &rows.tags,
        links: &rows.links,
        steps: &rows.steps,
        comments: &rows.comments,
        conflicts: &rows.conflicts,
    };
    write_children(conn, entity_id, &children).await?;
    crate::stock::write_projection(conn, entity_id, rows.stock.as_ref(), modified_at).await?;
    // Projected at the document's heads: no longer stale (deferred.rs).
    sqlx::query("DELETE FROM projection_stale WHERE entity_id = ?")
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    write_fts(
        conn,
        entity_id,
        &rows.title,
        &rows.index_body,
        &rows.tags,
        &rows.comments,
    )
    .await
}

/// One value of a metadata field, as projected into `entity_fields`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct FieldRow {
    pub(crate) name: String,
    pub(crate) field_type: String,
    pub(crate) value_text: String,
    pub(crate) value_num: Option<f64>,
}

/// The `entity_fields` rows of some metadata: one per value, one with '' for an empty field.
pub(crate) fn field_rows(metadata: &Metadata) -> Vec<FieldRow> {
    let mut rows = Vec::new();
    for field in &metadata.fields {
        let mut texts = field.value_texts();
        if texts.is_empty() {
            texts.push(String::new());
        }
        for text in texts {
            rows.push(FieldRow {
                name: field.name.clone(),
                field_type: field.field_type().to_owned(),
                value_num: text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
                value_text: text,
            });
        }
    }
    rows
}

/// The rows of eLabFTW's `metadata` string as stored in `entities.metadata` (a replica
/// rebuilds its field rows from it); unreadable metadata gives none.
pub(crate) fn field_rows_of_json(metadata: Option<&str>) -> Vec<FieldRow> {
    metadata
        .and_then(|m| Metadata::parse(m).ok())
        .map(|m| field_rows(&m))
        .unwrap_or_default()
}

/// The child rows of an entity's projection.
pub(crate) struct Children<'a> {
    /// Metadata field values.
    pub(crate) fields: &'a [FieldRow],
    pub(crate) tags: &'a [String],
    pub(crate) links: &'a [String],
    pub(crate) steps: &'a [StepRow],
    pub(crate) comments: &'a [CommentRow],
    /// (field, JSON list of values)
    pub(crate) conflicts: &'a [(String, String)],
}

/// Replaces the child rows (tags, links, steps, comments, conflicts, fields) of an entity. Shared by
/// the projection of a local document and by a replica applying the server's rows.
pub(crate) async fn write_children(
    conn: &mut SqliteConnection,
    entity_id: i64,
    children: &Children<'_>,
) -> Result<(), sqlx::Error> {
    for table in [
        "entity_tags",
        "entity_links",
        "entity_steps",
        "entity_comments",
        "entity_conflicts",
        "entity_fields",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE entity_id = ?"
        )))
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    }
    for tag in children.tags {
        sqlx::query("INSERT INTO entity_tags (entity_id, tag) VALUES (?, ?)")
            .bind(entity_id)
            .bind(tag)
            .execute(&mut *conn)
            .await?;
    }
    for target in children.links {
        sqlx::query("INSERT INTO entity_links (entity_id, target_uuid) VALUES (?, ?)")
            .bind(entity_id)
            .bind(target)
            .execute(&mut *conn)
            .await?;
    }
    for step in children.steps {
        sqlx::query(
            "INSERT INTO entity_steps (entity_id, step_id, ordering, body, done, done_by, done_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(entity_id)
        .bind(&step.step_id)
        .bind(step.ordering)
        .bind(&step.body)
        .bind(step.done)
        .bind(step.done_by)
        .bind(step.done_at)
        .execute(&mut *conn)
        .await?;
    }
    for comment in children.comments {
        sqlx::query(
            "INSERT INTO entity_comments (entity_id, comment_id, author, created_at, edited_at, body) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(entity_id)
        .bind(&comment.comment_id)
        .bind(comment.author)
        .bind(comment.created_at)
        .bind(comment.edited_at)
        .bind(&comment.body)
        .execute(&mut *conn)
        .await?;
    }
    for field in children.fields {
        sqlx::query(
            "INSERT INTO entity_fields (entity_id, name, type, value_text, value_num) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(entity_id)
        .bind(&field.name)
        .bind(&field.field_type)
        .bind(&field.value_text)
        .bind(field.value_num)
        .execute(&mut *conn)
        .await?;
    }
    for (field, values) in children.conflicts {
        sqlx::query(
            "INSERT INTO entity_conflicts (entity_id, field, values_json) VALUES (?, ?, ?)",
        )
        .bind(entity_id)
        .bind(field)
        .bind(values)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces an entity's full-text row (rowid = entity id).
pub(crate) async fn write_fts(
    conn: &mut SqliteConnection,
    entity_id: i64,
    title: &str,
    index_body: &str,
    tags: &[String],
    comments: &[CommentRow],
) -> Result<(), sqlx::Error> {
    let (tags_text, comments_text) = fts_texts(title, index_body, tags, comments);
    sqlx::query("DELETE FROM entity_fts WHERE rowid = ?")
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO entity_fts (rowid, title, body, tags, comments) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(entity_id)
    .bind(title)
    .bind(index_body)
    .bind(tags_text)
    .bind(comments_text)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The `tags` and `comments` columns of an entity's full-text row (the title and the indexed
/// body go in as they are).
pub(crate) fn fts_texts(
    title: &str,
    index_body: &str,
    tags: &[String],
    comments: &[CommentRow],
) -> (String, String) {
    let comments_text: Vec<&str> = comments.iter().map(|c| c.body.as_str()).collect();
    // Tags, then every hyphenated word of the entry as one term (search_terms.rs).
    let mut tags_text = tags.join(" ");
    let joined = joined_terms(
        [title, index_body]
            .into_iter()
            .chain(tags.iter().map(String::as_str))
            .chain(comments_text.iter().copied()),
    );
    if !joined.is_empty() {
        tags_text.push(' ');
        tags_text.push_str(&joined);
    }
    (tags_text, comments_text.join("\n"))
}

/// Brings an entity's `uploads` rows in line with the document's `attachments` (upsert by
/// entity and hash, so row ids stay stable). Values an old entry does not record (`comment`,
/// `state`, `replaces`) keep what the row has. Rows whose hash the document does not name are
/// left alone: the document never removes an attachment, it marks it deleted.
pub(crate) async fn write_uploads(
    conn: &mut SqliteConnection,
    entity_id: i64,
    attachments: &[Attachment],
) -> Result<(), sqlx::Error> {
    for a in attachments {
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM uploads WHERE entity_id = ? AND sha256 = ? ORDER BY id LIMIT 1",
        )
        .bind(entity_id)
        .bind(&a.sha256)
        .fetch_optional(&mut *conn)
        .await?;
        if existing.is_some() {
            sqlx::query(
                "UPDATE uploads SET real_name = ?, size = ?, media_type = ?, \
                 comment = COALESCE(?, comment), state = COALESCE(?, state) \
                 WHERE entity_id = ? AND sha256 = ?",
            )
            .bind(&a.name)
            .bind(a.size)
            .bind(&a.mime)
            .bind(&a.comment)
            .bind(a.state)
            .bind(entity_id)
            .bind(&a.sha256)
            .execute(&mut *conn)
            .await?;
        } else {
            // A replica may not know the user who attached the file (not a teammate, not an
            // owner it has seen): the row then names the entity's owner; the document keeps
            // the true author.
            sqlx::query(
                "INSERT INTO uploads (entity_id, sha256, real_name, comment, size, media_type, user_id, \
                 created_at, state) VALUES (?, ?, ?, ?, ?, ?, \
                 COALESCE((SELECT id FROM users WHERE id = ?), (SELECT owner_id FROM entities WHERE id = ?)), ?, ?)",
            )
            .bind(entity_id)
            .bind(&a.sha256)
            .bind(&a.name)
            .bind(a.comment.as_deref().unwrap_or_default())
            .bind(a.size)
            .bind(&a.mime)
            .bind(a.added_by)
            .bind(entity_id)
            .bind(a.added_at_ms)
            .bind(a.state.unwrap_or(ATTACHMENT_NORMAL))
            .execute(&mut *conn)
            .await?;
        }
    }
    for a in attachments {
        let Some(replaces) = &a.replaces else {
            continue;
        };
        sqlx::query(
            "UPDATE uploads SET replaces_id = (SELECT id FROM uploads WHERE entity_id = ?1 AND sha256 = ?2 \
             ORDER BY id LIMIT 1) WHERE entity_id = ?1 AND sha256 = ?3",
        )
        .bind(entity_id)
        .bind(replaces)
        .bind(&a.sha256)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
