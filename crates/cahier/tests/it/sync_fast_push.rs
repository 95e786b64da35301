//! A body edit pushed from a field replica over HTTP is accepted without loading its document
//! and projected in the background (docs/SYNC.md, "Fast path of a push"): API v2 shows the new
//! body at once, search finds it once the projector ran, and both sides keep the same heads.

use super::sync_blobs::replica;
use cahier_core::EntityPatch;
use cahier_testkit::TestApp;
use serde_json::json;

#[tokio::test]
async fn a_body_edit_pushed_from_a_replica_reads_fresh_through_api_v2_and_search() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Optics", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Lens grinding", "body": "first line\nsecond line\n"}),
        )
        .await;
    let (laptop, _) = replica(&app, &ada).await;
    let subject = laptop.store.subject(ada.id).await.unwrap();
    let uuid = app
        .store
        .entity(&app.store.subject(ada.id).await.unwrap(), id)
        .await
        .unwrap()
        .uuid;
    let row = laptop.store.entity_by_uuid(&subject, &uuid).await.unwrap();
    laptop
        .store
        .update_entity(
            &subject,
            row.id,
            None,
            &EntityPatch {
                body: Some(format!("{}platypus line\n", row.body)),
                title: Some("Lens grinding, field".into()),
                ..Default::default()
            },
            "save",
        )
        .await
        .unwrap();
    let fast_before = app.store.sync_stats().fast_pushes();
    let report = laptop.sync().await;
    assert_eq!((report.pushed, report.rejected), (1, 0), "{report}");
    assert_eq!(app.store.sync_stats().fast_pushes(), fast_before + 1);

    // One entry through API v2: fresh, whether or not the projector ran yet.
    let entry = lab.json(&format!("/experiments/{id}")).await;
    assert_eq!(
        entry["body"].as_str().unwrap(),
        "first line\nsecond line\nplatypus line\n"
    );
    assert_eq!(entry["title"].as_str().unwrap(), "Lens grinding, field");

    // Search, once the projector is done.
    app.store.project_stale().await.unwrap();
    assert_eq!(app.store.stale_count().await.unwrap(), 0);
    let found = lab.json("/experiments?q=platypus").await;
    let ids: Vec<i64> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id]);

    // Both sides hold the same heads, and a sync more moves nothing.
    let lab_heads = app.store.heads_of(&uuid).await.unwrap();
    assert_eq!(lab_heads, laptop.store.heads_of(&uuid).await.unwrap());
    let again = laptop.sync().await;
    assert_eq!((again.pushed, again.rejected), (0, 0), "{again}");
}
