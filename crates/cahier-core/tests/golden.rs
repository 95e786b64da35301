//! Golden documents: documents saved by every shipped version must load to the same heads and
//! content. Run with `CAHIER_BLESS=1` once to write a new golden file when the document format
//! gains a version; never rewrite an existing one.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use automerge::ActorId;
use cahier_core::document::{CommitMeta, EntityOp, NewContent, heads_to_string};
use cahier_core::{EntityDoc, EntityId, EntityKind, EntityPatch};
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    // The package's directory as `cargo test` gives it when running (a test binary reused from
    // a checkout elsewhere, sharing the target directory, would carry that path built in).
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/golden")
}

/// A document exercising every part of schema version 1, made deterministically.
fn schema_v1_document() -> EntityDoc {
    let meta = |n: u8, message: &str| CommitMeta {
        actor: ActorId::from([n; 16]),
        time_ms: 1_764_400_000_000,
        message: message.into(),
    };
    let content = NewContent {
        id: EntityId::new(1_764_400_000_000, [3; 10]),
        kind: EntityKind::Experiment,
        created_by: 1,
        created_at_ms: 1_764_400_000_000,
        template: None,
        patch: EntityPatch {
            title: Some("Golden experiment — été".into()),
            body: Some("# Results\n\n| a | b |\n|---|---|\n| 1 | 2 |\n".into()),
            tags: Some(vec!["soil".into(), "pH".into()]),
            status: Some(Some(2)),
            ..Default::default()
        },
        default_date: "2025-11-29".into(),
    };
    let mut doc = EntityDoc::create(&content, &meta(1, "create")).unwrap();
    let base = doc.heads();
    let ops = EntityPatch {
        title: Some("Golden experiment (A)".into()),
        ops: vec![
            EntityOp::AddStep {
                id: "s1".into(),
                body: "Calibrate".into(),
                at_ms: 1,
            },
            EntityOp::FinishStep {
                id: "s1".into(),
                done: true,
                by: 1,
                at_ms: 2,
            },
            EntityOp::AddComment {
                id: "c1".into(),
                author: 1,
                body: "Looks right".into(),
                at_ms: 3,
            },
            EntityOp::AddLink {
                target: EntityId::new(1_764_400_000_001, [4; 10]),
                at_ms: 4,
            },
        ],
        ..Default::default()
    };
    doc.apply(None, &ops, &meta(1, "save"), || ActorId::from([9; 16]))
        .unwrap();
    // A concurrent edit from the base: a merged paragraph and a title conflict.
    let concurrent = EntityPatch {
        title: Some("Golden experiment (B)".into()),
        body: Some("# Results\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nAdded by B.\n".into()),
        ..Default::default()
    };
    doc.apply(Some(&base), &concurrent, &meta(2, "save"), || {
        ActorId::from([10; 16])
    })
    .unwrap();
    doc
}

#[test]
fn documents_of_schema_version_1_load_with_identical_heads_and_content() {
    let path = golden_dir().join("v1-experiment.automerge");
    let heads_path = golden_dir().join("v1-experiment.heads");
    let json_path = golden_dir().join("v1-experiment.json");
    if std::env::var_os("CAHIER_BLESS").is_some() && !path.exists() {
        let mut doc = schema_v1_document();
        std::fs::write(&path, doc.save()).unwrap();
        std::fs::write(&heads_path, heads_to_string(&doc.heads())).unwrap();
        std::fs::write(
            &json_path,
            serde_json::to_string_pretty(&doc.content().unwrap()).unwrap(),
        )
        .unwrap();
    }
    let bytes = std::fs::read(&path).expect("golden file (run once with CAHIER_BLESS=1)");
    let mut loaded = EntityDoc::load(&bytes).unwrap();
    assert_eq!(
        heads_to_string(&loaded.heads()),
        std::fs::read_to_string(&heads_path).unwrap().trim()
    );
    let content = serde_json::to_value(loaded.content().unwrap()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(content, expected);
    assert_eq!(
        content["conflicts"][0]["field"], "title",
        "the golden document keeps its title conflict"
    );
}

#[test]
fn the_same_edits_made_today_give_the_same_change_hashes() {
    // Change hashes commit to the bytes of each change: if this fails, the document format or
    // the way we write it changed, and stored documents would no longer match their proofs.
    let mut doc = schema_v1_document();
    let heads = std::fs::read_to_string(golden_dir().join("v1-experiment.heads")).unwrap();
    assert_eq!(heads_to_string(&doc.heads()), heads.trim());
}
