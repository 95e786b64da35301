//! A lab store and a replica store, each a real SQLite file; the replica pulls through the
//! lab's `pull` with a JSON round trip of every message, as over HTTP.

use super::super::Applied;
use crate::Store;
use crate::test_support::{LabAndReplica as World, lab_and_replica as world, roundtrip};
use cahier_core::document::EntityOp;
use cahier_core::fields::Metadata;
use cahier_core::markdown::{ContentType, render_body};
use cahier_core::{EntityDoc, EntityId, EntityKind, EntityPatch};
use std::str::FromStr;

impl World {
    async fn create(&self, title: &str, body: &str, ops: Vec<EntityOp>) -> (i64, String) {
        let id = self
            .lab
            .create_entity(
                &self.subject,
                crate::NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: self.team,
                    canread: None,
                    canwrite: None,
                    patch: EntityPatch {
                        title: Some(title.into()),
                        body: Some(body.into()),
                        tags: Some(vec!["soil".into(), "field-trip".into()]),
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .expect("create");
        if !ops.is_empty() {
            self.lab
                .update_entity(
                    &self.subject,
                    id,
                    None,
                    &EntityPatch {
                        ops,
                        ..Default::default()
                    },
                    "ops",
                )
                .await
                .expect("ops");
        }
        let uuid = self.lab.entity(&self.subject, id).await.expect("row").uuid;
        (id, uuid)
    }

    /// Replaces an entry's body at the lab.
    async fn edit_body(&self, lab_id: i64, body: &str) {
        self.lab
            .update_entity(
                &self.subject,
                lab_id,
                None,
                &EntityPatch {
                    body: Some(body.into()),
                    ..Default::default()
                },
                "lab edit",
            )
            .await
            .expect("lab edit");
    }

    /// Pushes the one entry waiting on the replica to the lab, which accepts it, and records
    /// the acknowledgement.
    async fn push_the_one_waiting(&self) {
        let pushes = self.replica.pending_pushes().await.expect("pending");
        assert_eq!(pushes.len(), 1);
        let docs = pushes.iter().map(|(_, doc, _)| doc.clone()).collect();
        let results = self
            .lab
            .push(&self.subject, &self.device, roundtrip(docs))
            .await
            .expect("push");
        assert_eq!(results[0].status, crate::sync::proto::PushStatus::Accepted);
        let (local, _, heads) = &pushes[0];
        self.replica
            .mark_accepted(*local, heads, results[0].id.expect("id"))
            .await
            .expect("ack");
    }
}

/// Every projection row of an entry, by UUID, in a form both databases can be compared in
/// (ids of the database replaced by the UUID).
async fn projection_of(store: &Store, uuid: &str) -> Vec<String> {
    let id: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
        .bind(uuid)
        .fetch_one(&store.pool)
        .await
        .expect("id");
    let mut rows = Vec::new();
    let entity: Vec<String> = sqlx::query_scalar(
        "SELECT json_array(uuid, kind, team_id, owner_id, canread_base, canwrite_base, locked_by, locked_at, \
         state, elabid, created_at, modified_at, lastchangeby, title, date, body, body_html, content_type, \
         status_id, category_id, rating, tags_text, template_uuid, metadata, heads, n_conflicts, stock_unit, \
         stock_quantity, stock_threshold) FROM entities WHERE id = ?",
    )
    .bind(id)
    .fetch_all(&store.pool)
    .await
    .expect("entity");
    rows.extend(entity);
    for (table, columns, order) in [
        (
            "entity_acl",
            "mode, grantee, ref_id",
            "mode, grantee, ref_id",
        ),
        ("entity_tags", "tag", "tag"),
        ("entity_links", "target_uuid", "target_uuid"),
        (
            "entity_steps",
            "step_id, ordering, body, done, done_by, done_at",
            "ordering",
        ),
        (
            "entity_comments",
            "comment_id, author, created_at, edited_at, body",
            "comment_id",
        ),
        ("entity_conflicts", "field, values_json", "field"),
        (
            "entity_fields",
            "name, type, value_text, value_num",
            "name, value_text",
        ),
        (
            "uploads",
            "sha256, real_name, comment, size, media_type, state",
            "sha256",
        ),
        (
            "entity_stock_events",
            "event_id, kind, delta, unit, user_id, at",
            "event_id",
        ),
    ] {
        let sql = format!(
            "SELECT '{table}' || json_array({columns}) FROM {table} WHERE entity_id = ? ORDER BY {order}"
        );
        let more: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&store.pool)
            .await
            .expect("children");
        rows.extend(more);
    }
    let heads: String = sqlx::query_scalar("SELECT heads FROM entity_docs WHERE entity_id = ?")
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .expect("heads");
    rows.push(format!("doc heads {heads}"));
    rows
}

/// Entity ids the full-text index finds for a query, once the rows pulls left for later are
/// written (as every search does first).
async fn search(store: &Store, query: &str) -> Vec<i64> {
    store.search_current().await.expect("current");
    raw_search(store, query).await
}

/// Entity ids the full-text index finds for a query, as it stands.
async fn raw_search(store: &Store, query: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT rowid FROM entity_fts WHERE entity_fts MATCH ? ORDER BY rowid")
        .bind(query)
        .fetch_all(&store.pool)
        .await
        .expect("search")
}

/// The stored document loads (appended chunks included) to the heads recorded beside it.
async fn stored_doc_loads(store: &Store, uuid: &str) -> (usize, String) {
    let (doc, heads, row_heads): (Vec<u8>, String, String) = sqlx::query_as(
        "SELECT d.doc, d.heads, e.heads FROM entity_docs d JOIN entities e ON e.id = d.entity_id WHERE e.uuid = ?",
    )
    .bind(uuid)
    .fetch_one(&store.pool)
    .await
    .expect("doc");
    assert_eq!(heads, row_heads, "the row names the document's heads");
    let mut loaded = EntityDoc::load(&doc).expect("the stored bytes load");
    assert_eq!(
        cahier_core::document::heads_to_string(&loaded.heads()),
        heads,
        "the stored bytes load to the recorded heads"
    );
    (doc.len(), heads)
}

async fn appended(store: &Store, uuid: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT r.appended FROM replica_entities r JOIN entities e ON e.id = r.entity_id WHERE e.uuid = ?",
    )
    .bind(uuid)
    .fetch_one(&store.pool)
    .await
    .expect("appended")
}

#[tokio::test]
async fn a_first_copy_gives_the_labs_projection_rows_and_a_complete_search_index() {
    let w = world().await;
    let (_, target) = w.create("Target site", "Plain *target*\n", vec![]).await;
    let metadata = Metadata::parse(
        r#"{"extra_fields": {"Temperature": {"type": "number", "value": "21.5"}, "Site": {"type": "text", "value": "North"}}}"#,
    )
    .expect("metadata");
    let ops = vec![
        EntityOp::AddStep {
            id: "s1".into(),
            body: "Dig a hole".into(),
            at_ms: 1,
        },
        EntityOp::AddStep {
            id: "s2".into(),
            body: "Take a core".into(),
            at_ms: 2,
        },
        EntityOp::FinishStep {
            id: "s1".into(),
            done: true,
            by: 1,
            at_ms: 3,
        },
        EntityOp::AddComment {
            id: "c1".into(),
            author: 1,
            body: "Looks wet, zanzibarian mud".into(),
            at_ms: 4,
        },
        EntityOp::AddLink {
            target: EntityId::from_str(&target).expect("uuid"),
            at_ms: 5,
        },
        EntityOp::SetMetadata {
            metadata,
            require: false,
        },
        EntityOp::AddAttachment {
            sha256: "ab".repeat(32),
            name: "core.png".into(),
            media_type: "image/png".into(),
            size: 42,
            at_ms: 6,
            by: 1,
            comment: "the core".into(),
            replaces: None,
        },
    ];
    let body =
        "# Soil\n\nA *quokka* table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n<script>x</script>\n";
    let (_, rich) = w.create("Rich entry", body, ops).await;
    let mut uuids = vec![target.clone(), rich.clone()];
    for n in 0..45 {
        uuids.push(
            w.create(&format!("Entry {n}"), &format!("Body {n}\n"), vec![])
                .await
                .1,
        );
    }

    let applied = w.sync_pull().await;
    assert_eq!(applied.len(), uuids.len());
    assert!(applied.iter().all(|a| *a == Applied::Added));
    for uuid in &uuids {
        assert_eq!(
            projection_of(&w.replica, uuid).await,
            projection_of(&w.lab, uuid).await,
            "same projection rows for {uuid}"
        );
        stored_doc_loads(&w.replica, uuid).await;
    }
    // The rich entry's rows are really there (not two empty sets compared).
    let rows = projection_of(&w.replica, &rich).await;
    for needle in [
        "entity_steps[\"s1\"",
        "entity_steps[\"s2\"",
        "entity_comments[\"c1\"",
        "entity_links[",
        "entity_fields[\"Temperature\",\"number\",\"21.5\",21.5]",
        "entity_tags[\"field-trip\"]",
        "uploads[\"abab",
    ] {
        assert!(
            rows.iter().any(|r| r.starts_with(needle)),
            "{needle} in {rows:?}"
        );
    }
    // The stored HTML is what a local render gives.
    let (stored_body, html, code): (String, String, i64) =
        sqlx::query_as("SELECT body, body_html, content_type FROM entities WHERE uuid = ?")
            .bind(&rich)
            .fetch_one(&w.replica.pool)
            .await
            .expect("html");
    assert_eq!(
        html,
        render_body(&stored_body, ContentType::from_code(code))
    );
    assert!(html.contains("<table>") && !html.contains("<script>"));
    // The search index, once written (after the sync, or before a search): body, comment,
    // tag and title words.
    let rich_id: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
        .bind(&rich)
        .fetch_one(&w.replica.pool)
        .await
        .expect("id");
    for word in ["quokka", "zanzibarian", "rich"] {
        assert_eq!(search(&w.replica, word).await, vec![rich_id], "{word}");
    }
    assert_eq!(search(&w.replica, "body").await.len(), 45);
    assert_eq!(search(&w.replica, "\"field-trip\"").await.len(), 47);
    // And through the store's own listing, with the access policy.
    let page = w
        .replica
        .list_entities(
            &w.replica_subject,
            &crate::listing::ListQuery {
                q: Some("quokka".into()),
                ..crate::listing::ListQuery::new(EntityKind::Experiment)
            },
        )
        .await
        .expect("list");
    assert_eq!(page.rows.len(), 1);
    // Nothing looks locally changed, and the quiet flag did not outlive the batch.
    assert_eq!(w.replica.pending_count().await.expect("pending"), 0);
    let quiet: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_seq_quiet")
        .fetch_one(&w.replica.pool)
        .await
        .expect("quiet");
    assert_eq!(quiet, 0);
    // Pulling again changes nothing (idempotent).
    let again = w.sync_pull().await;
    assert!(again.iter().all(|a| *a == Applied::Updated));
    for uuid in &uuids {
        assert_eq!(
            projection_of(&w.replica, uuid).await,
            projection_of(&w.lab, uuid).await
        );
    }
    assert_eq!(search(&w.replica, "quokka").await, vec![rich_id]);
}

/// Adds a tag row on the replica behind the store's back (`true`) or removes it: a pull that
/// writes the entry's child rows again removes it.
async fn marker(store: &Store, uuid: &str, add: bool) {
    let sql = if add {
        "INSERT INTO entity_tags (entity_id, tag) SELECT id, 'marker' FROM entities WHERE uuid = ?"
    } else {
        "DELETE FROM entity_tags WHERE tag = 'marker' AND entity_id = (SELECT id FROM entities WHERE uuid = ?)"
    };
    sqlx::query(sql)
        .bind(uuid)
        .execute(&store.pool)
        .await
        .expect("marker");
}

/// Whether the marker tag row is there.
async fn has_marker(store: &Store, uuid: &str) -> bool {
    sqlx::query_scalar(
        "SELECT count(*) > 0 FROM entity_tags t JOIN entities e ON e.id = t.entity_id \
         WHERE e.uuid = ? AND t.tag = 'marker'",
    )
    .bind(uuid)
    .fetch_one(&store.pool)
    .await
    .expect("marker")
}

/// A pulled edit of the body leaves the entry's child rows as they are (the same ones); a
/// pulled change of its tags writes them again. Tags changed on the laptop and pushed, then
/// set back at the lab to what an earlier pull wrote, are written again too: the rows here
/// were the laptop's, not that pull's.
#[tokio::test]
async fn a_pull_writes_an_entrys_child_rows_again_only_when_they_change() {
    let w = world().await;
    let (lab_id, uuid) = w.create("Cores", "one\n", vec![]).await;
    w.sync_pull().await;
    marker(&w.replica, &uuid, true).await;
    let w = &w;
    let lab_edit = |patch: EntityPatch| async move {
        w.lab
            .update_entity(&w.subject, lab_id, None, &patch, "lab edit")
            .await
            .expect("lab edit");
    };
    let tags = |list: &[&str]| Some(list.iter().map(|t| (*t).to_owned()).collect());

    lab_edit(EntityPatch {
        body: Some("one\ntwo\n".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(w.sync_pull().await, vec![Applied::Updated]);
    assert!(has_marker(&w.replica, &uuid).await, "kept as they were");
    marker(&w.replica, &uuid, false).await;
    assert_eq!(
        projection_of(&w.replica, &uuid).await,
        projection_of(&w.lab, &uuid).await
    );

    marker(&w.replica, &uuid, true).await;
    lab_edit(EntityPatch {
        tags: tags(&["soil", "deep"]),
        ..Default::default()
    })
    .await;
    assert_eq!(w.sync_pull().await, vec![Applied::Updated]);
    assert!(!has_marker(&w.replica, &uuid).await, "written again");
    assert_eq!(
        projection_of(&w.replica, &uuid).await,
        projection_of(&w.lab, &uuid).await
    );

    // The laptop changes the tags and pushes; the lab sets them back.
    let local_id = w
        .replica
        .entity_by_uuid(&w.replica_subject, &uuid)
        .await
        .expect("entry")
        .id;
    w.replica
        .update_entity(
            &w.replica_subject,
            local_id,
            None,
            &EntityPatch {
                tags: tags(&["laptop"]),
                ..Default::default()
            },
            "laptop edit",
        )
        .await
        .expect("laptop edit");
    w.push_the_one_waiting().await;
    lab_edit(EntityPatch {
        tags: tags(&["soil", "deep"]),
        ..Default::default()
    })
    .await;
    assert_eq!(w.sync_pull().await, vec![Applied::Updated]);
    assert_eq!(
        projection_of(&w.replica, &uuid).await,
        projection_of(&w.lab, &uuid).await
    );
    let tags_here: Vec<String> =
        sqlx::query_scalar("SELECT tag FROM entity_tags WHERE entity_id = ? ORDER BY tag")
            .bind(local_id)
            .fetch_all(&w.replica.pool)
            .await
            .expect("tags");
    assert_eq!(tags_here, ["deep", "soil"]);
}

#[tokio::test]
async fn pulled_edits_are_appended_then_a_local_edit_merges_and_converges() {
    let w = world().await;
    let (lab_id, uuid) = w.create("Field notes", "line one\n", vec![]).await;
    w.sync_pull().await;
    let (first_len, _) = stored_doc_loads(&w.replica, &uuid).await;
    assert_eq!(appended(&w.replica, &uuid).await, 0);
    let mut body = String::from("line one\n");
    for round in 0..3 {
        body.push_str(&format!("lab line {round}\n"));
        w.lab
            .update_entity(
                &w.subject,
                lab_id,
                None,
                &EntityPatch {
                    body: Some(body.clone()),
                    ..Default::default()
                },
                "lab edit",
            )
            .await
            .expect("lab edit");
        let applied = w.sync_pull().await;
        assert_eq!(applied, vec![Applied::Updated]);
        assert_eq!(
            projection_of(&w.replica, &uuid).await,
            projection_of(&w.lab, &uuid).await
        );
    }
    // Stored as the first copy followed by the pulled changes, which load.
    let (len, _) = stored_doc_loads(&w.replica, &uuid).await;
    let grown = appended(&w.replica, &uuid).await;
    assert!(grown > 0);
    assert_eq!(len, first_len + usize::try_from(grown).expect("size"));
    let local_id: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
        .bind(&uuid)
        .fetch_one(&w.replica.pool)
        .await
        .expect("id");
    let found = search(&w.replica, "\"lab line 2\"").await;
    assert_eq!(found, vec![local_id]);

    // A local edit loads the appended document, then push and pull converge.
    let mut local_body = w
        .replica
        .content(&w.replica_subject, local_id)
        .await
        .expect("content")
        .body;
    assert_eq!(local_body, body);
    local_body.insert_str(0, "laptop line\n");
    w.replica
        .update_entity(
            &w.replica_subject,
            local_id,
            None,
            &EntityPatch {
                body: Some(local_body),
                ..Default::default()
            },
            "laptop edit",
        )
        .await
        .expect("laptop edit");
    body.push_str("lab line after\n");
    w.lab
        .update_entity(
            &w.subject,
            lab_id,
            None,
            &EntityPatch {
                body: Some(body.clone()),
                ..Default::default()
            },
            "lab edit",
        )
        .await
        .expect("lab edit");
    // The pull meets a local change: merged, not appended.
    assert_eq!(w.sync_pull().await, vec![Applied::Merged]);
    assert_eq!(appended(&w.replica, &uuid).await, 0);
    w.push_the_one_waiting().await;
    // Once more from the lab: a fast-forward again, onto the merged document.
    body = w.lab.content(&w.subject, lab_id).await.expect("c").body;
    body.push_str("final lab line\n");
    w.lab
        .update_entity(
            &w.subject,
            lab_id,
            None,
            &EntityPatch {
                body: Some(body.clone()),
                ..Default::default()
            },
            "lab edit",
        )
        .await
        .expect("lab edit");
    assert_eq!(w.sync_pull().await, vec![Applied::Updated]);
    assert!(appended(&w.replica, &uuid).await > 0);
    let (_, replica_heads) = stored_doc_loads(&w.replica, &uuid).await;
    assert_eq!(
        Some(replica_heads),
        w.lab.heads_of(&uuid).await.expect("heads")
    );
    let merged = w
        .replica
        .content(&w.replica_subject, local_id)
        .await
        .expect("content")
        .body;
    for line in [
        "laptop line",
        "lab line 0",
        "lab line 2",
        "lab line after",
        "final lab line",
    ] {
        assert_eq!(merged.matches(line).count(), 1, "{line} once in {merged}");
    }
    assert_eq!(
        merged,
        w.lab.content(&w.subject, lab_id).await.expect("c").body
    );
    assert_eq!(
        projection_of(&w.replica, &uuid).await,
        projection_of(&w.lab, &uuid).await
    );
    assert_eq!(w.replica.pending_count().await.expect("pending"), 0);

    // Past the bound, the appended document is saved whole again.
    // (Words that do not compress: the change log keeps changes deflated.)
    for i in 0..20_000u64 {
        body.push_str(&format!(
            "{:x} ",
            i.wrapping_mul(2_654_435_761) % 4_294_967_291
        ));
    }
    w.lab
        .update_entity(
            &w.subject,
            lab_id,
            None,
            &EntityPatch {
                body: Some(body.clone()),
                ..Default::default()
            },
            "big lab edit",
        )
        .await
        .expect("lab edit");
    assert_eq!(w.sync_pull().await, vec![Applied::Updated]);
    assert_eq!(appended(&w.replica, &uuid).await, 0);
    stored_doc_loads(&w.replica, &uuid).await;
    assert_eq!(
        projection_of(&w.replica, &uuid).await,
        projection_of(&w.lab, &uuid).await
    );
}

#[tokio::test]
async fn a_batch_that_fails_midway_leaves_nothing_half_applied() {
    let w = world().await;
    let (_, first) = w.create("First", "alpha words\n", vec![]).await;
    let (_, second) = w.create("Second", "beta words\n", vec![]).await;
    let good = w.pulled().await;
    assert_eq!(good.len(), 2);
    // The second entry's rows cannot be written (the same tag twice breaks a key), after the
    // first entry's row and document were.
    let mut broken = good.clone();
    broken[1].snapshot.entity.tags = vec!["twice".into(), "twice".into()];
    assert!(w.replica.apply_pulled_batch(&broken).await.is_err());
    // And one whose bytes are not base64.
    let mut garbled = good.clone();
    garbled[1].changes = "%%%".into();
    assert!(w.replica.apply_pulled_batch(&garbled).await.is_err());
    for uuid in [&first, &second] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entities WHERE uuid = ?")
            .bind(uuid)
            .fetch_one(&w.replica.pool)
            .await
            .expect("count");
        assert_eq!(n, 0, "nothing of {uuid} stays");
    }
    for table in [
        "entity_docs",
        "entity_tags",
        "replica_entities",
        "sync_seq_quiet",
        "search_pending",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&w.replica.pool)
                .await
                .expect("count");
        assert_eq!(n, 0, "{table} is empty");
    }
    assert!(search(&w.replica, "alpha").await.is_empty());
    // The failed batches left no connection with their weaker `synchronous` setting.
    assert_eq!(
        synchronous_of_every_connection(&w.replica).await,
        [2, 2, 2, 2]
    );
    // The whole batch then applies.
    let applied = w.replica.apply_pulled_batch(&good).await.expect("apply");
    assert_eq!(applied, vec![Applied::Added, Applied::Added]);
    assert_eq!(search(&w.replica, "alpha").await.len(), 1);
    for uuid in [&first, &second] {
        assert_eq!(
            projection_of(&w.replica, uuid).await,
            projection_of(&w.lab, uuid).await
        );
    }
}

/// `PRAGMA synchronous` of each of the store's connections (2: `FULL`), all held at once.
async fn synchronous_of_every_connection(store: &Store) -> Vec<i64> {
    let mut held = Vec::new();
    for _ in 0..store.pool.options().get_max_connections() {
        held.push(store.pool.acquire().await.expect("connection"));
    }
    let mut levels = Vec::new();
    for conn in &mut held {
        levels.push(
            sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .expect("pragma"),
        );
    }
    levels
}

/// A setting of the search index (`automerge`, `crisismerge`), as stored.
async fn search_setting(store: &Store, key: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT v FROM entity_fts_config WHERE k = ?")
        .bind(key)
        .fetch_optional(&store.pool)
        .await
        .expect("config")
}

/// Bulk mode of the search index (a first copy): writes add segments without merging them;
/// ending it merges the index into one segment and restores the usual merging. Pull batches
/// are committed with `synchronous = NORMAL` and leave their connection at `FULL`.
#[tokio::test]
async fn bulk_mode_keeps_batches_unmerged_then_merges_the_search_index_once() {
    let w = world().await;
    for i in 0..3 {
        w.create(&format!("Entry {i}"), &format!("gamma{i} words\n"), vec![])
            .await;
    }
    let pulled = w.pulled().await;
    w.replica.search_index_bulk(true).await.expect("bulk on");
    assert_eq!(search_setting(&w.replica, "automerge").await, Some(0));
    assert_eq!(
        w.replica
            .replica_get(crate::listing::SEARCH_BULK)
            .await
            .expect("state")
            .as_deref(),
        Some("1")
    );
    // One batch per entry, its search rows written after it: three segments, none merged.
    for entry in &pulled {
        w.replica
            .apply_pulled_batch(std::slice::from_ref(entry))
            .await
            .expect("apply");
        assert_eq!(w.replica.index_pending_search().await.expect("index"), 1);
    }
    assert!(
        w.replica.tidy_search_index(1).await.expect("tidy"),
        "unmerged segments are left after batches in bulk mode"
    );
    w.replica.search_index_bulk(false).await.expect("bulk off");
    // A replica's writes go on leaving the merging for later.
    assert_eq!(search_setting(&w.replica, "automerge").await, Some(0));
    assert_eq!(search_setting(&w.replica, "crisismerge").await, Some(16));
    assert_eq!(
        w.replica
            .replica_get(crate::listing::SEARCH_BULK)
            .await
            .expect("state"),
        None
    );
    assert!(
        !w.replica.tidy_search_index(1).await.expect("tidy"),
        "one segment after bulk mode ends"
    );
    for i in 0..3 {
        assert_eq!(search(&w.replica, &format!("gamma{i}")).await.len(), 1);
    }
    assert_eq!(
        synchronous_of_every_connection(&w.replica).await,
        [2, 2, 2, 2]
    );
}

/// A replica's pull batches and saves leave the search index's segments unmerged (SQLite would
/// merge four of them inside the fourth write); `merge_search_segments` merges them once the
/// sync is over, as SQLite would have, and the search finds everything throughout. A replica
/// made before this is switched over when opened (`defer_search_merges`); a lab keeps
/// SQLite's merging.
#[tokio::test]
async fn a_replica_merges_its_search_index_after_the_sync_not_inside_its_batches() {
    let w = world().await;
    // As SQLite and earlier replicas have it.
    let mut tx = w.replica.pool.begin().await.expect("begin");
    crate::listing::set_search_merging(&mut tx, 4, 16)
        .await
        .expect("set");
    tx.commit().await.expect("commit");
    w.replica.defer_search_merges().await.expect("defer");
    assert_eq!(search_setting(&w.replica, "automerge").await, Some(0));
    assert_eq!(search_setting(&w.replica, "crisismerge").await, Some(16));
    w.lab.defer_search_merges().await.expect("nothing on a lab");
    assert_ne!(search_setting(&w.lab, "automerge").await, Some(0));

    // Small index pages, and many words: SQLite merges once every 64 pages written.
    sqlx::query("INSERT INTO entity_fts (entity_fts, rank) VALUES ('pgsz', 64)")
        .execute(&w.replica.pool)
        .await
        .expect("pgsz");
    for i in 0..5 {
        let words: Vec<String> = (0..300).map(|n| format!("w{i}x{n}")).collect();
        w.create(
            &format!("Entry {i}"),
            &format!("delta{i} {}\n", words.join(" ")),
            vec![],
        )
        .await;
    }
    // One batch per entry, its search rows written after it (a search between syncs): five
    // segments on the first level, none merged by the writes.
    for entry in &w.pulled().await {
        w.replica
            .apply_pulled_batch(std::slice::from_ref(entry))
            .await
            .expect("apply");
        assert_eq!(w.replica.index_pending_search().await.expect("index"), 1);
    }
    for i in 0..5 {
        assert_eq!(search(&w.replica, &format!("delta{i}")).await.len(), 1);
    }
    assert_eq!(segments(&w.replica).await, 5);
    assert!(
        w.replica.merge_search_segments().await.expect("merge") > 0,
        "the batches left their segments for later"
    );
    assert_eq!(w.replica.merge_search_segments().await.expect("again"), 0);
    assert_eq!(
        segments(&w.replica).await,
        1,
        "the five were merged into one"
    );
    for i in 0..5 {
        assert_eq!(search(&w.replica, &format!("delta{i}")).await.len(), 1);
    }
}

/// The segments of the search index (each has its rows in the `_idx` table).
/// A pull batch leaves its entries' full-text rows for later (`search_pending`): the index
/// still holds what it held, every search writes the rows first and finds the pulled words
/// (never the replaced ones), and the merging after a sync writes them too. An entry removed
/// meanwhile leaves no row behind.
#[tokio::test]
async fn a_pull_leaves_its_search_rows_for_after_the_sync_and_a_search_writes_them_first() {
    let w = world().await;
    let (lab_id, uuid) = w.create("Sampling", "alpha words\n", vec![]).await;
    w.create("Other", "beta words\n", vec![]).await;
    w.sync_pull().await;
    assert_eq!(w.replica.pending_search_count().await.expect("count"), 2);
    assert!(raw_search(&w.replica, "alpha").await.is_empty());
    let listed = |q: &str| {
        let q = q.to_owned();
        let w = &w;
        async move {
            w.replica
                .list_entities(
                    &w.replica_subject,
                    &crate::listing::ListQuery {
                        q: Some(q),
                        ..crate::listing::ListQuery::new(EntityKind::Experiment)
                    },
                )
                .await
                .expect("list")
                .rows
                .into_iter()
                .map(|row| row.uuid)
                .collect::<Vec<_>>()
        }
    };
    // The listing's search writes them first.
    assert_eq!(listed("alpha").await, vec![uuid.clone()]);
    assert_eq!(w.replica.pending_search_count().await.expect("count"), 0);
    let local_id: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
        .bind(&uuid)
        .fetch_one(&w.replica.pool)
        .await
        .expect("id");
    assert_eq!(raw_search(&w.replica, "alpha").await, vec![local_id]);

    // An edit pulled: the index holds the old words until a search asks.
    w.edit_body(lab_id, "omega words\n").await;
    w.sync_pull().await;
    // (This world's pull asks for every entry: both are written again.)
    assert_eq!(w.replica.pending_search_count().await.expect("count"), 2);
    assert_eq!(raw_search(&w.replica, "alpha").await, vec![local_id]);
    assert!(listed("alpha").await.is_empty());
    assert_eq!(listed("omega").await, vec![uuid.clone()]);

    // Another, then the merging after the sync writes it.
    w.edit_body(lab_id, "sigma words\n").await;
    w.sync_pull().await;
    w.replica.merge_search_segments().await.expect("merge");
    assert_eq!(w.replica.pending_search_count().await.expect("count"), 0);
    assert_eq!(raw_search(&w.replica, "sigma").await, vec![local_id]);
    assert!(raw_search(&w.replica, "omega").await.is_empty());

    // An entry gone before its rows are written leaves none.
    w.edit_body(lab_id, "kappa words\n").await;
    w.sync_pull().await;
    sqlx::query("DELETE FROM entities WHERE id = ?")
        .bind(local_id)
        .execute(&w.replica.pool)
        .await
        .expect("delete");
    assert_eq!(w.replica.index_pending_search().await.expect("index"), 2);
    assert!(raw_search(&w.replica, "sigma").await.is_empty());
    assert!(raw_search(&w.replica, "kappa").await.is_empty());
}

async fn segments(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT count(DISTINCT segid) FROM entity_fts_idx")
        .fetch_one(&store.pool)
        .await
        .expect("segments")
}

/// The lab's feed keeps numbering every write: the quiet triggers never apply to a lab.
#[tokio::test]
async fn the_labs_feed_still_moves_with_every_write() {
    let w = world().await;
    let (id, uuid) = w.create("Numbered", "one\n", vec![]).await;
    let seq = |feed: crate::sync::proto::FeedResponse| {
        feed.items
            .iter()
            .find(|item| item.uuid == uuid)
            .map(|item| item.seq)
    };
    let before = seq(w.lab.feed(&w.subject, 0, 100).await.expect("feed")).expect("listed");
    w.lab
        .update_entity(
            &w.subject,
            id,
            None,
            &EntityPatch {
                title: Some("Renumbered".into()),
                ..Default::default()
            },
            "edit",
        )
        .await
        .expect("edit");
    let after = seq(w.lab.feed(&w.subject, 0, 100).await.expect("feed")).expect("listed");
    assert!(after > before);
}

/// Fast-forwards update a row's indexed columns only when they change: in one batch, an entry
/// whose body alone changes, one retitled and re-dated, and one re-tagged with a new rating
/// each end with the lab's projection rows, the indexes agree with the table
/// (`integrity_check`), lists sort by the new title, and the batch's connection is back to
/// the usual checkpointing of the write-ahead log.
#[tokio::test]
async fn fast_forwards_write_changed_indexed_columns_and_keep_every_index_consistent() {
    let w = world().await;
    let (a, ua) = w.create("Alpha", "body a\n", vec![]).await;
    let (b, ub) = w.create("Bravo", "body b\n", vec![]).await;
    let (c, uc) = w.create("Charlie", "body c\n", vec![]).await;
    w.sync_pull().await;
    let edit = |id: i64, patch: EntityPatch| {
        let w = &w;
        async move {
            w.lab
                .update_entity(&w.subject, id, None, &patch, "lab edit")
                .await
                .expect("lab edit");
        }
    };
    edit(
        a,
        EntityPatch {
            body: Some("body a, longer\n".into()),
            ..Default::default()
        },
    )
    .await;
    edit(
        b,
        EntityPatch {
            title: Some("Aardvark".into()),
            date: Some("2026-01-02".into()),
            ..Default::default()
        },
    )
    .await;
    edit(
        c,
        EntityPatch {
            tags: Some(vec!["soil".into(), "water".into()]),
            rating: Some(4),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        w.sync_pull().await,
        vec![Applied::Updated, Applied::Updated, Applied::Updated]
    );
    for uuid in [&ua, &ub, &uc] {
        assert_eq!(
            projection_of(&w.replica, uuid).await,
            projection_of(&w.lab, uuid).await
        );
    }
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&w.replica.pool)
        .await
        .expect("integrity");
    assert_eq!(check, "ok");
    // Through the title index: the retitled entry first.
    let by_title: Vec<String> = sqlx::query_scalar(
        "SELECT uuid FROM entities INDEXED BY entities_by_title \
         WHERE kind = 'experiment' AND state = 1 ORDER BY title",
    )
    .fetch_all(&w.replica.pool)
    .await
    .expect("by title");
    assert_eq!(by_title, [ub.clone(), ua.clone(), uc.clone()]);
    let mut held = Vec::new();
    for _ in 0..w.replica.pool.options().get_max_connections() {
        held.push(w.replica.pool.acquire().await.expect("connection"));
    }
    for conn in &mut held {
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut **conn)
            .await
            .expect("pragma");
        assert_eq!(pages, crate::WAL_AUTOCHECKPOINT);
    }
    drop(held);
    let (log, done) = w.replica.checkpoint_wal().await.expect("checkpoint");
    assert_eq!(log, done, "nothing holds the log back");
}
