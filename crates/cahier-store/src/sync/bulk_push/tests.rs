//! The bulk path of a push gives what pushing the documents one by one gives: the same push,
//! mixing every kind of document, is run through [`Store::push`] on one copy of a lab and
//! through the per-document path on another (real SQLite files), then both databases are
//! compared table by table.

use crate::Store;
use crate::accounts::NewUser;
use crate::sync::proto::{self, NewEntityInfo, PushDoc, PushStatus};
use crate::test_support::roundtrip;
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT, ReadDoc};
use cahier_core::access::{AccessRule, BaseLevel};
use cahier_core::document::heads_to_string;
use cahier_core::{EntityKind, EntityPatch, FixedClock, Subject};
use sqlx::Connection;
use std::path::Path;
use std::sync::Arc;

const T0: i64 = 1_790_000_000_000;

async fn open(path: &Path, at: i64) -> Store {
    Store::open_sqlite(path, Arc::new(FixedClock::new(at)))
        .await
        .expect("store")
}

async fn create(store: &Store, subject: &Subject, team: i64, n: usize, write: BaseLevel) -> i64 {
    store
        .create_entity(
            subject,
            crate::NewEntity {
                kind: EntityKind::Experiment,
                team_id: team,
                canread: Some(AccessRule::base(BaseLevel::Team)),
                canwrite: Some(AccessRule::base(write)),
                patch: EntityPatch {
                    title: Some(format!("entry {n}")),
                    body: Some(format!("first line {n}\nsecond line\n")),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .expect("create")
}

/// A field copy of an entry: its stored document, written to by `actor`.
async fn copy(store: &Store, id: i64, actor: &ActorId) -> AutoCommit {
    let bytes: Vec<u8> = sqlx::query_scalar("SELECT doc FROM entity_docs WHERE entity_id = ?")
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .expect("doc");
    AutoCommit::load(&bytes)
        .expect("load")
        .with_actor(actor.clone())
}

async fn uuid_of(store: &Store, id: i64) -> String {
    sqlx::query_scalar("SELECT uuid FROM entities WHERE id = ?")
        .bind(id)
        .fetch_one(&store.pool)
        .await
        .expect("uuid")
}

/// An edit of entry `id` by `actor` (`edit` writes on the copy), as the changes after the
/// entry's heads.
async fn edit(
    store: &Store,
    id: i64,
    actor: &ActorId,
    edit: impl FnOnce(&mut AutoCommit),
) -> PushDoc {
    let mut doc = copy(store, id, actor).await;
    let base = doc.get_heads();
    edit(&mut doc);
    doc.commit();
    PushDoc {
        uuid: uuid_of(store, id).await,
        base: heads_to_string(&base),
        changes: proto::b64(&doc.save_after(&base)),
        new: None,
    }
}

fn place(docs: &mut Vec<PushDoc>, at: usize, doc: PushDoc) {
    let at = at.min(docs.len());
    docs.insert(at, doc);
}

fn body_insert(doc: &mut AutoCommit, text: &str) {
    let body = doc.get(ROOT, "body").expect("get").expect("body").1;
    doc.splice_text(&body, 0, 0, text).expect("edit");
}

async fn count(conn: &mut sqlx::SqliteConnection, sql: String) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .expect("compare")
}

/// Rows of `table` in one database and not the other (both ways), and the two row counts.
async fn differences(conn: &mut sqlx::SqliteConnection, table: &str) -> (i64, i64, i64) {
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .expect("columns");
    // A new entry's eLabFTW id, each opening of a database and the stamps of the sequence
    // are random; an index's JSON lists its maps in a random order (compared apart, parsed).
    let random = [
        ("entities", "elabid"),
        ("sync_history", "id"),
        ("entity_doc_index", "info"),
        ("reference_version", "stamp"),
    ];
    let columns = columns
        .into_iter()
        .filter(|c| !random.contains(&(table, c.as_str())))
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let only_a = count(conn, format!(
        "SELECT count(*) FROM (SELECT {columns} FROM main.\"{table}\" EXCEPT SELECT {columns} FROM b.\"{table}\")"
    ))
    .await;
    let only_b = count(conn, format!(
        "SELECT count(*) FROM (SELECT {columns} FROM b.\"{table}\" EXCEPT SELECT {columns} FROM main.\"{table}\")"
    ))
    .await;
    let sizes = count(
        conn,
        format!(
            "SELECT (SELECT count(*) FROM main.\"{table}\") - (SELECT count(*) FROM b.\"{table}\")"
        ),
    )
    .await;
    (only_a, only_b, sizes)
}

#[tokio::test]
async fn a_mixed_push_in_bulk_gives_the_results_and_database_of_one_by_one() {
    let dir = tempfile::tempdir().expect("dir");
    let path_a = dir.path().join("a.db");
    let path_b = dir.path().join("b.db");
    let lab = open(&path_a, T0).await;
    let (ada_id, team, device, ada) = crate::test_support::member_with_laptop(&lab).await;
    let bob_id = lab
        .create_user(NewUser {
            email: "bob@lab.fr".into(),
            firstname: "Bob".into(),
            lastname: "B".into(),
            password: Some("long password".into()),
            is_sysadmin: false,
        })
        .await
        .expect("bob");
    lab.add_member(team, bob_id, false).await.expect("member");
    let (bob_device, _) = lab
        .register_device("bob@lab.fr", "long password", "tablet", "test")
        .await
        .expect("device");
    let bob = lab.subject(bob_id).await.expect("subject");

    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(create(&lab, &ada, team, n, BaseLevel::OwnerOnly).await);
    }
    let bobs = create(&lab, &bob, team, 100, BaseLevel::OwnerOnly).await;
    let locked = create(&lab, &ada, team, 101, BaseLevel::OwnerOnly).await;
    lab.set_lock(&ada, locked, true).await.expect("lock");
    // An actor of Bob's, bound by his own push.
    let bobs_actor = ActorId::random();
    let bobs_edit = edit(&lab, bobs, &bobs_actor, |d| body_insert(d, "bob ")).await;
    let results = lab
        .push(&bob, &bob_device, vec![bobs_edit])
        .await
        .expect("bob's push");
    assert_eq!(results[0].status, PushStatus::Accepted);
    // An edit pushed once already (replayed below), and an entry without an index.
    let laptop = ActorId::random();
    let replayed = edit(&lab, ids[1], &laptop, |d| body_insert(d, "once ")).await;
    let first = lab
        .push(&ada, &device, vec![replayed.clone()])
        .await
        .expect("push");
    assert_eq!(first[0].status, PushStatus::Accepted);
    sqlx::query("DELETE FROM entity_doc_index WHERE entity_id = ?")
        .bind(ids[2])
        .execute(&lab.pool)
        .await
        .expect("drop index");

    // The push: fast edits around every other kind of document.
    let other = ActorId::random();
    let refused_actor = ActorId::random();
    let mut docs = Vec::new();
    for (n, id) in ids.iter().enumerate().skip(10) {
        docs.push(
            edit(&lab, *id, &laptop, |d| {
                body_insert(d, &format!("field {n} "));
                if n % 3 == 0 {
                    d.put(ROOT, "title", format!("entry {n}, field"))
                        .expect("title");
                }
            })
            .await,
        );
    }
    // The first document of the request: a replay.
    place(&mut docs, 0, replayed.clone());
    // An index to rebuild (the per-document path, then fast there).
    place(
        &mut docs,
        3,
        edit(&lab, ids[2], &laptop, |d| body_insert(d, "rebuilt ")).await,
    );
    // The full path (a tag), with an actor the next fast edit uses too.
    place(
        &mut docs,
        5,
        edit(&lab, ids[3], &other, |d| {
            let tags = d.get(ROOT, "tags").expect("get").expect("tags").1;
            d.put(&tags, "peat", true).expect("tag");
        })
        .await,
    );
    place(
        &mut docs,
        6,
        edit(&lab, ids[6], &other, |d| body_insert(d, "other ")).await,
    );
    // Refused by the full path (the author may not change), with an actor whose binding is
    // then rolled back; a later fast edit binds it.
    place(
        &mut docs,
        9,
        edit(&lab, ids[4], &refused_actor, |d| {
            d.put(ROOT, "created_by", 999_i64).expect("author");
        })
        .await,
    );
    place(
        &mut docs,
        12,
        edit(&lab, ids[7], &refused_actor, |d| body_insert(d, "z ")).await,
    );
    // Refused by the policy: no write access, locked.
    place(
        &mut docs,
        15,
        edit(&lab, bobs, &laptop, |d| body_insert(d, "ada ")).await,
    );
    place(
        &mut docs,
        16,
        edit(&lab, locked, &laptop, |d| body_insert(d, "locked ")).await,
    );
    // An actor bound to another user.
    place(
        &mut docs,
        20,
        edit(&lab, ids[8], &bobs_actor, |d| body_insert(d, "stolen ")).await,
    );
    // The same entry twice: the second edit builds on the first.
    let mut twice = copy(&lab, ids[5], &laptop).await;
    let base = twice.get_heads();
    body_insert(&mut twice, "one ");
    twice.commit();
    let middle = twice.get_heads();
    let once = twice.save_after(&base);
    body_insert(&mut twice, "two ");
    twice.commit();
    let uuid5 = uuid_of(&lab, ids[5]).await;
    place(
        &mut docs,
        22,
        PushDoc {
            uuid: uuid5.clone(),
            base: heads_to_string(&base),
            changes: proto::b64(&once),
            new: None,
        },
    );
    place(
        &mut docs,
        24,
        PushDoc {
            uuid: uuid5,
            base: heads_to_string(&middle),
            changes: proto::b64(&twice.save_after(&middle)),
            new: None,
        },
    );
    // Changes on a version the lab lacks: need_full.
    let mut ahead = copy(&lab, ids[9], &laptop).await;
    body_insert(&mut ahead, "never pushed ");
    ahead.commit();
    let unknown = ahead.get_heads();
    body_insert(&mut ahead, "pushed ");
    ahead.commit();
    place(
        &mut docs,
        30,
        PushDoc {
            uuid: uuid_of(&lab, ids[9]).await,
            base: heads_to_string(&unknown),
            changes: proto::b64(&ahead.save_after(&unknown)),
            new: None,
        },
    );
    // A new entry, made in the field.
    let new_uuid = uuid::Uuid::new_v4();
    let mut new_doc = cahier_core::EntityDoc::create(
        &cahier_core::document::NewContent {
            id: cahier_core::EntityId(new_uuid),
            kind: EntityKind::Experiment,
            created_by: ada_id,
            created_at_ms: T0,
            template: None,
            patch: EntityPatch {
                title: Some("Made in the field".into()),
                body: Some("field notes\n".into()),
                ..Default::default()
            },
            default_date: "2026-11-30".into(),
        },
        &cahier_core::document::CommitMeta {
            actor: laptop.clone(),
            time_ms: T0,
            message: "create".into(),
        },
    )
    .expect("doc");
    place(
        &mut docs,
        48,
        PushDoc {
            uuid: new_uuid.to_string(),
            base: String::new(),
            changes: proto::b64(&new_doc.save()),
            new: Some(NewEntityInfo {
                team_id: team,
                canread: AccessRule::base(BaseLevel::Team),
                canwrite: AccessRule::base(BaseLevel::OwnerOnly),
            }),
        },
    );
    // A replay again, later.
    place(&mut docs, 50, replayed);
    // More than a transaction's worth of documents on the per-document path (refused Bob's
    // entry, again and again), among the fast ones.
    for n in 0..52 {
        let refused = edit(&lab, bobs, &laptop, |d| {
            body_insert(d, &format!("try {n} "))
        })
        .await;
        place(&mut docs, 2 + n * 2, refused);
    }
    assert!(docs.len() > 110);
    let docs = roundtrip(docs);

    // Two copies of the lab: the bulk path on one, one by one on the other.
    lab.close().await;
    drop(lab);
    std::fs::copy(&path_a, &path_b).expect("copy");
    for suffix in ["-wal", "-shm"] {
        let wal = dir.path().join(format!("a.db{suffix}"));
        if wal.exists() {
            std::fs::copy(&wal, dir.path().join(format!("b.db{suffix}"))).expect("copy wal");
        }
    }
    let (a, b) = (
        open(&path_a, T0 + 60_000).await,
        open(&path_b, T0 + 60_000).await,
    );
    let ada = a.subject(ada_id).await.expect("subject");
    let in_bulk = a.push(&ada, &device, docs.clone()).await.expect("bulk");
    let one_by_one = b
        .push_one_by_one(&ada, &device, docs)
        .await
        .expect("one by one");
    // Every accepted document carries the mark of its transaction's end; the two paths cut
    // the request into other transactions, and stamps are random: compared apart.
    for results in [&in_bulk, &one_by_one] {
        for r in results.iter() {
            assert_eq!(
                r.history.is_some(),
                r.status == PushStatus::Accepted,
                "{r:?}"
            );
        }
    }
    let json = |r: &Vec<proto::PushResult>| {
        let unmarked: Vec<proto::PushResult> = r
            .iter()
            .cloned()
            .map(|r| proto::PushResult { history: None, ..r })
            .collect();
        serde_json::to_value(unmarked).expect("json")
    };
    assert_eq!(json(&in_bulk), json(&one_by_one));

    // What the results say, precisely.
    let status = |i: usize| in_bulk[i].status;
    let count = |s: PushStatus| in_bulk.iter().filter(|r| r.status == s).count();
    assert_eq!(count(PushStatus::NeedFull), 1);
    // Refused: the author, Bob's entry, the locked one, the stolen actor.
    assert_eq!(count(PushStatus::Rejected), 4 + 52, "{in_bulk:#?}");
    assert!(
        in_bulk
            .iter()
            .filter(|r| r.status == PushStatus::Rejected)
            .all(|r| r.quarantine.is_some())
    );
    assert_eq!(status(0), PushStatus::Accepted);
    assert_eq!(
        in_bulk[0].seq, in_bulk[0].prev_seq,
        "a replay moves nothing"
    );
    let accepted: Vec<i64> = in_bulk
        .iter()
        .filter(|r| r.status == PushStatus::Accepted && r.seq != r.prev_seq)
        .filter_map(|r| r.seq)
        .collect();
    assert!(
        accepted.windows(2).all(|w| w[0] < w[1]),
        "sequences in order"
    );
    // Both counted the same documents as fast: every edit but the full-path ones.
    assert_eq!(a.sync_stats().fast_pushes(), b.sync_stats().fast_pushes());
    assert_eq!(
        a.sync_stats().index_rebuilds(),
        b.sync_stats().index_rebuilds()
    );
    assert!(a.sync_stats().fast_pushes() >= 50);
    // The fast edits went in bulk on one side only; the others one by one on both.
    assert!(
        a.sync_stats().bulk_pushes() >= 45,
        "{}",
        a.sync_stats().bulk_pushes()
    );
    assert_eq!(b.sync_stats().bulk_pushes(), 0);
    assert!(a.verify_audit_chain().await.expect("chain").is_ok());
    assert!(b.verify_audit_chain().await.expect("chain").is_ok());
    a.close().await;
    b.close().await;

    // Every table, row for row.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path_a.display()))
        .await
        .expect("connect");
    sqlx::query("ATTACH DATABASE ? AS b")
        .bind(path_b.display().to_string())
        .execute(&mut conn)
        .await
        .expect("attach");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    assert!(tables.contains(&"audit_log".to_owned()));
    // The bulk path moves the sequence past its entries at once and stamps only the last
    // value; one by one stamps each (migration 35). The sequence itself is compared.
    for table in tables.iter().filter(|t| *t != "sync_stamps") {
        assert_eq!(differences(&mut conn, table).await, (0, 0, 0), "{table}");
    }
    let indexes: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT a.entity_id, a.info, x.info FROM main.entity_doc_index a \
         JOIN b.entity_doc_index x ON x.entity_id = a.entity_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    assert!(indexes.len() > 60);
    let parsed = |info: &str| {
        (!info.is_empty()).then(|| {
            serde_json::from_str::<crate::sync::fast_push::DocIndex>(info)
                .expect("index")
                .normalized()
        })
    };
    for (id, a, b) in indexes {
        assert_eq!(parsed(&a), parsed(&b), "index of {id}");
    }
}
