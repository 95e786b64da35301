//! Full-text search: what a typed search matches, and that both query plans (driven by a few
//! matches, or walking the list with many) return the same readable entries.

use cahier_core::{AccessRule, BaseLevel, EntityKind, EntityPatch};
use cahier_store::NewEntity;
use cahier_store::listing::{ListQuery, SearchLimits};
use cahier_testkit::TestApp;
use serde_json::json;

fn titles(list: &serde_json::Value) -> Vec<String> {
    let mut titles: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    titles
}

#[tokio::test]
async fn search_matches_whole_words_and_prefixes_on_request() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    for (title, body, tags) in [
        (
            "Carottage",
            "Prélèvement de sédiment, lot batch-8",
            vec!["batch-8"],
        ),
        ("Sédimentation", "Colonne de décantation", vec!["batch-9"]),
        ("Batch then 8", "other 8 batch words", vec![]),
    ] {
        api.create(
            "/experiments",
            json!({"title": title, "body": body, "tags": tags}),
        )
        .await;
    }
    let search = |q: &str| {
        let api = &api;
        let q = q.to_owned();
        async move {
            titles(
                &api.json(&format!("/experiments?q={}", url_escape(&q)))
                    .await,
            )
        }
    };
    assert_eq!(search("sédiment").await, ["Carottage"], "whole word");
    assert_eq!(
        search("SEDIMENT").await,
        ["Carottage"],
        "case and accents ignored"
    );
    assert_eq!(
        search("sédim").await,
        Vec::<String>::new(),
        "no prefix unless asked"
    );
    assert_eq!(
        search("sédim*").await,
        ["Carottage", "Sédimentation"],
        "a trailing * matches words starting with it"
    );
    assert_eq!(
        search("batch-8").await,
        ["Carottage"],
        "a hyphenated word matches its words in that order"
    );
    assert_eq!(search("prélèvement lot").await, ["Carottage"], "every word");
    assert_eq!(search("prélèvement absent").await, Vec::<String>::new());
    assert_eq!(
        search("\"); DROP TABLE entities; --").await,
        Vec::<String>::new(),
        "FTS syntax stays out of users' hands"
    );

    // The list page offers the prefix search when whole words find nothing.
    let browser = app.browser(&alice).await;
    let page = browser.page("/experiments?q=s%C3%A9dim").await;
    assert!(
        page.contains("/experiments?q=s%C3%A9dim*"),
        "prefix link offered: {page}"
    );
    let page = browser.page("/experiments?q=s%C3%A9dim*").await;
    assert!(page.contains("Sédimentation"));
    app.stop().await;
}

fn url_escape(s: &str) -> String {
    let url = reqwest::Url::parse_with_params("http://x/", [("q", s)]).unwrap();
    url.query().unwrap()[2..].to_owned()
}

/// Every search plan (driven by few matches, a set of some, a lookup per row for many) gives
/// the same answer, and only entries the reader may read — before and after the index is
/// tidied into one segment.
#[tokio::test]
async fn every_search_plan_keeps_to_what_the_reader_may_read() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner@lab.fr", "Ecology", false).await;
    let reader = app.user("reader@lab.fr", "Ecology", false).await;
    let owner_subject = app.subject(&owner).await;
    let reader_subject = app.subject(&reader).await;
    let n = 300;
    let mut readable = Vec::new();
    for i in 0..n {
        // One in ten is readable by the team; every one contains "quadrat".
        let base = if i % 10 == 0 {
            BaseLevel::Team
        } else {
            BaseLevel::OwnerOnly
        };
        let rare = if i == 7 { " unicorn" } else { "" };
        let id = app
            .store
            .create_entity(
                &owner_subject,
                NewEntity {
                    kind: EntityKind::Experiment,
                    team_id: owner.team_id,
                    canread: Some(AccessRule::base(base)),
                    canwrite: None,
                    patch: EntityPatch {
                        title: Some(format!("Quadrat {i}{rare}")),
                        ..Default::default()
                    },
                    template: None,
                },
            )
            .await
            .unwrap();
        if base == BaseLevel::Team {
            readable.push(id);
        }
    }
    let search_with = |limits: SearchLimits, q: &'static str| {
        let store = app.store.clone().with_search_limits(limits);
        let subject = reader_subject.clone();
        async move {
            let mut query = ListQuery::new(EntityKind::Experiment);
            query.q = Some(q.to_owned());
            query.limit = 10_000;
            let mut ids: Vec<i64> = store
                .list_entities(&subject, &query)
                .await
                .unwrap()
                .rows
                .iter()
                .map(|r| r.id)
                .collect();
            ids.sort_unstable();
            ids
        }
    };
    let plans = [
        SearchLimits {
            small: 1_000,
            large: 2_000,
        },
        SearchLimits {
            small: 10,
            large: 2_000,
        },
        SearchLimits {
            small: 10,
            large: 100,
        },
    ];
    let search = |q: &'static str| async move {
        let mut answers = Vec::new();
        for limits in plans {
            answers.push(search_with(limits, q).await);
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "every plan agrees for {q}"
        );
        answers.pop().unwrap()
    };
    readable.sort_unstable();
    assert_eq!(search("quadrat").await, readable);
    assert_eq!(search("unicorn").await, Vec::<i64>::new(), "not readable");

    // Pages of the walk plan follow each other without gaps or repeats.
    for limits in plans {
        let store = app.store.clone().with_search_limits(limits);
        let mut query = ListQuery::new(EntityKind::Experiment);
        query.q = Some("quadrat".into());
        query.limit = 7;
        let mut paged = Vec::new();
        loop {
            let page = store.list_entities(&reader_subject, &query).await.unwrap();
            paged.extend(page.rows.iter().map(|r| r.id));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        paged.sort_unstable();
        assert_eq!(paged, readable, "pages of {limits:?}");
    }

    let mut steps = 0;
    while app.store.tidy_search_index(50).await.unwrap() {
        steps += 1;
        assert!(steps < 10_000, "tidying ends");
    }
    assert!(steps > 0, "there was something to merge");
    assert!(
        !app.store.tidy_search_index(50).await.unwrap(),
        "nothing left"
    );
    assert_eq!(search("quadrat").await, readable, "after tidying");
    let owner_view = {
        let mut query = ListQuery::new(EntityKind::Experiment);
        query.q = Some("unicorn".into());
        app.store
            .list_entities(&owner_subject, &query)
            .await
            .unwrap()
            .rows
            .len()
    };
    assert_eq!(owner_view, 1, "the owner finds the rare word (driven plan)");
    app.stop().await;
}

/// Entries indexed before hyphenated words were indexed as one term are found once the store
/// has run migration 4 (a rebuild of the index from the projection).
#[tokio::test]
async fn migration_reindexes_hyphenated_words_of_existing_entries() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Lot", "body": "échantillon batch-8", "tags": ["soil-core"]}),
        )
        .await;
    assert_eq!(titles(&api.json("/experiments?q=batch-8").await), ["Lot"]);

    // Put the row back as the previous version indexed it, and forget the migration.
    let path = app.dir.path().join("cahier.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM entity_fts WHERE rowid = ?")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO entity_fts (rowid, title, body, tags, comments) VALUES (?, 'Lot', 'échantillon batch-8', 'soil-core', '')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM schema_migrations WHERE version = 4")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(titles(&api.json("/experiments?q=batch-8").await).is_empty());

    let reopened = cahier_store::Store::open_sqlite(
        &path,
        std::sync::Arc::new(cahier_core::clock::SystemClock),
    )
    .await
    .unwrap();
    reopened.close().await;
    assert_eq!(titles(&api.json("/experiments?q=batch-8").await), ["Lot"]);
    assert_eq!(titles(&api.json("/experiments?q=soil-core").await), ["Lot"]);
    assert_eq!(
        titles(&api.json("/experiments?q=soil").await),
        ["Lot"],
        "parts still found"
    );
    app.stop().await;
}

/// Field filters also choose their plan from the number of matching values; every plan gives
/// the same entries.
#[tokio::test]
async fn every_field_filter_plan_gives_the_same_entries() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    for i in 0..150 {
        let site = if i % 3 == 0 { "lac" } else { "forêt" };
        api.create(
            "/experiments",
            json!({"title": format!("Sample {i}"), "metadata": {"extra_fields": {
                "Temperature": {"type": "number", "value": format!("{}", i % 40)},
                "Site": {"type": "text", "value": site}}}}),
        )
        .await;
    }
    let subject = app.subject(&alice).await;
    let plans = [
        SearchLimits {
            small: 1_000,
            large: 2_000,
        },
        SearchLimits {
            small: 10,
            large: 2_000,
        },
    ];
    for (q, expected) in [
        ("field:Temperature>=30", 30),
        ("field:Site=lac", 50),
        ("field:Site=LAC field:Temperature<5", 7),
        ("field:Temperature>100", 0),
    ] {
        let mut answers = Vec::new();
        for limits in plans {
            let store = app.store.clone().with_search_limits(limits);
            let (words, fields) = cahier_store::field_filter::parse(q).unwrap();
            let mut query = ListQuery::new(EntityKind::Experiment);
            query.q = words;
            query.fields = fields;
            query.limit = 1_000;
            let mut ids: Vec<i64> = store
                .list_entities(&subject, &query)
                .await
                .unwrap()
                .rows
                .iter()
                .map(|r| r.id)
                .collect();
            ids.sort_unstable();
            answers.push(ids);
        }
        assert_eq!(answers[0].len(), expected, "{q}");
        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{q}: plans agree");
    }
    app.stop().await;
}
