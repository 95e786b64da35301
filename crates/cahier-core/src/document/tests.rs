use super::*;

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

fn meta(n: u8, message: &str) -> CommitMeta {
    CommitMeta {
        actor: actor(n),
        time_ms: 1_700_000_000_000,
        message: message.into(),
    }
}

fn new_doc() -> EntityDoc {
    let content = NewContent {
        id: EntityId::new(1_700_000_000_000, [7; 10]),
        kind: EntityKind::Experiment,
        created_by: 1,
        created_at_ms: 1_700_000_000_000,
        template: None,
        patch: EntityPatch {
            title: Some("Soil sampling".into()),
            body: Some("Intro\n\nMethods\n\nResults\n".into()),
            tags: Some(vec!["soil".into(), "field".into()]),
            ..Default::default()
        },
        default_date: "2026-11-29".into(),
    };
    EntityDoc::create(&content, &meta(1, "create")).expect("create")
}

#[test]
fn a_new_document_holds_its_initial_content() {
    let doc = new_doc();
    let content = doc.content().expect("content");
    assert_eq!(content.title, "Soil sampling");
    assert_eq!(content.date, "2026-11-29");
    assert_eq!(content.tags, vec!["field".to_string(), "soil".to_string()]);
    assert_eq!(content.body, "Intro\n\nMethods\n\nResults\n");
    assert!(content.conflicts.is_empty());
}

#[test]
fn saving_and_loading_keeps_heads_and_content() {
    let mut doc = new_doc();
    let bytes = doc.save();
    let mut loaded = EntityDoc::load(&bytes).expect("load");
    assert_eq!(loaded.heads(), doc.heads());
    assert_eq!(loaded.content().expect("c"), doc.content().expect("c"));
}

#[test]
fn an_empty_patch_makes_no_version() {
    let mut doc = new_doc();
    let before = doc.heads();
    let patch = EntityPatch {
        title: Some("Soil sampling".into()),
        ..Default::default()
    };
    assert_eq!(
        doc.apply(None, &patch, &meta(1, "save"), || actor(9))
            .expect("apply"),
        None
    );
    assert_eq!(doc.heads(), before);
}

#[test]
fn concurrent_edits_of_different_paragraphs_merge() {
    let mut doc = new_doc();
    let base = doc.heads();
    let alice = EntityPatch {
        body: Some("Intro by Alice\n\nMethods\n\nResults\n".into()),
        ..Default::default()
    };
    doc.apply(Some(&base), &alice, &meta(2, "save"), || actor(20))
        .expect("alice");
    let bob = EntityPatch {
        body: Some("Intro\n\nMethods\n\nResults by Bob\n".into()),
        ..Default::default()
    };
    doc.apply(Some(&base), &bob, &meta(3, "save"), || actor(30))
        .expect("bob");
    let content = doc.content().expect("content");
    assert_eq!(
        content.body,
        "Intro by Alice\n\nMethods\n\nResults by Bob\n"
    );
    assert_eq!(
        doc.heads().len(),
        2,
        "two concurrent versions stay visible in the heads"
    );
}

#[test]
fn concurrent_values_of_one_field_are_kept_until_one_is_picked() {
    let mut doc = new_doc();
    let base = doc.heads();
    let a = EntityPatch {
        title: Some("Title A".into()),
        status: Some(Some(1)),
        ..Default::default()
    };
    let b = EntityPatch {
        title: Some("Title B".into()),
        ..Default::default()
    };
    doc.apply(Some(&base), &a, &meta(2, "save"), || actor(20))
        .expect("a");
    doc.apply(Some(&base), &b, &meta(3, "save"), || actor(30))
        .expect("b");
    let content = doc.content().expect("content");
    assert_eq!(
        content.status,
        Some(1),
        "a field changed on one side only is not a conflict"
    );
    assert_eq!(content.conflicts.len(), 1);
    assert_eq!(content.conflicts[0].field, ConflictField::Title);
    assert_eq!(
        content.conflicts[0].values,
        vec!["Title A".to_string(), "Title B".to_string()]
    );

    let pick = EntityPatch {
        ops: vec![EntityOp::ResolveConflict {
            field: ConflictField::Title,
            value: "Title B".into(),
        }],
        ..Default::default()
    };
    doc.apply(None, &pick, &meta(2, "resolve"), || actor(21))
        .expect("pick");
    let content = doc.content().expect("content");
    assert!(content.conflicts.is_empty());
    assert_eq!(content.title, "Title B");
}

#[test]
fn steps_record_who_ticked_them_and_when() {
    let mut doc = new_doc();
    let add = EntityPatch {
        ops: vec![
            EntityOp::AddStep {
                id: "s1".into(),
                body: "Calibrate".into(),
                at_ms: 1,
            },
            EntityOp::AddStep {
                id: "s2".into(),
                body: "Measure".into(),
                at_ms: 2,
            },
        ],
        ..Default::default()
    };
    doc.apply(None, &add, &meta(1, "steps"), || actor(9))
        .expect("add");
    let tick = EntityPatch {
        ops: vec![EntityOp::FinishStep {
            id: "s1".into(),
            done: true,
            by: 4,
            at_ms: 99,
        }],
        ..Default::default()
    };
    doc.apply(None, &tick, &meta(1, "tick"), || actor(9))
        .expect("tick");
    let steps = doc.content().expect("c").steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (
            steps[0].id.as_str(),
            steps[0].done,
            steps[0].done_by,
            steps[0].done_at_ms
        ),
        ("s1", true, Some(4), Some(99))
    );
    assert!(!steps[1].done);
    let missing = EntityPatch {
        ops: vec![EntityOp::FinishStep {
            id: "nope".into(),
            done: true,
            by: 4,
            at_ms: 99,
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &missing, &meta(1, "tick"), || actor(9)),
        Err(DocError::NotFound("step"))
    ));
}

#[test]
fn bad_values_name_their_field() {
    let mut doc = new_doc();
    let cases = [
        EntityPatch {
            date: Some("29/11/2026".into()),
            ..Default::default()
        },
        EntityPatch {
            rating: Some(9),
            ..Default::default()
        },
        EntityPatch {
            title: Some("x".repeat(300)),
            ..Default::default()
        },
        EntityPatch {
            tags: Some(vec!["  ".into()]),
            ..Default::default()
        },
    ];
    let fields = ["date", "rating", "title", "tags"];
    for (patch, field) in cases.iter().zip(fields) {
        match doc.apply(None, patch, &meta(1, "save"), || actor(9)) {
            Err(DocError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
}

#[test]
fn every_version_stays_readable() {
    let mut doc = new_doc();
    let v1 = doc.heads();
    let patch = EntityPatch {
        body: Some("Rewritten\n".into()),
        ..Default::default()
    };
    doc.apply(None, &patch, &meta(1, "save"), || actor(9))
        .expect("save");
    assert_eq!(
        doc.content_at(&v1).expect("v1").body,
        "Intro\n\nMethods\n\nResults\n"
    );
    assert_eq!(doc.content().expect("now").body, "Rewritten\n");
    let history = doc.changes_since(&[]);
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].message, "create");
    assert_eq!(history[1].message, "save");
}

#[test]
fn a_full_rewrite_of_a_20_kb_body_takes_the_fast_path() {
    let mut doc = new_doc();
    let big: String = (0..800)
        .map(|i| format!("line {i} of the old body\n"))
        .collect();
    doc.apply(
        None,
        &EntityPatch {
            body: Some(big),
            ..Default::default()
        },
        &meta(1, "save"),
        || actor(9),
    )
    .expect("big");
    let rewritten: String = (0..800)
        .map(|i| format!("completely new text {i}\n"))
        .collect();
    let started = std::time::Instant::now();
    doc.apply(
        None,
        &EntityPatch {
            body: Some(rewritten.clone()),
            ..Default::default()
        },
        &meta(1, "save"),
        || actor(9),
    )
    .expect("rewrite");
    // A generous bound: the slow path takes seconds; this guards against regressing to it.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(doc.content().expect("c").body, rewritten);
}

#[test]
fn links_refuse_the_entity_itself() {
    let mut doc = new_doc();
    let own = doc.content().expect("c").id;
    let patch = EntityPatch {
        ops: vec![EntityOp::AddLink {
            target: own,
            at_ms: 1,
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &patch, &meta(1, "link"), || actor(9)),
        Err(DocError::Invalid { field: "link", .. })
    ));
}

#[test]
fn attachments_are_referenced_by_hash() {
    let mut doc = new_doc();
    let sha = "ab".repeat(32);
    let attach = |name: &str| EntityPatch {
        ops: vec![EntityOp::AddAttachment {
            sha256: sha.clone(),
            name: name.into(),
            media_type: "image/png".into(),
            size: 42,
            at_ms: 1_700_000_000_000,
            by: 3,
            comment: String::new(),
            replaces: None,
        }],
        ..Default::default()
    };
    doc.apply(None, &attach("gel.png"), &meta(1, "attach"), || actor(9))
        .expect("attach")
        .expect("a change");
    doc.apply(None, &attach("gel-2.png"), &meta(1, "attach"), || actor(9))
        .expect("attach again")
        .expect("a change");
    let attachments = map_obj(&doc.doc, "attachments").expect("map");
    assert_eq!(
        doc.doc.keys(&attachments).collect::<Vec<_>>(),
        vec![sha.clone()]
    );
    let entry = child_obj(&doc.doc, "attachments", &sha, "attachment").expect("entry");
    assert_eq!(
        read_str(&doc.doc, &entry, "name").as_deref(),
        Some("gel-2.png")
    );
    assert_eq!(
        read_str(&doc.doc, &entry, "mime").as_deref(),
        Some("image/png")
    );
    assert_eq!(read_i64(&doc.doc, &entry, "size"), Some(42));
    assert_eq!(read_i64(&doc.doc, &entry, "added_by"), Some(3));
    let bad = EntityPatch {
        ops: vec![EntityOp::AddAttachment {
            sha256: "nope".into(),
            name: "x".into(),
            media_type: "text/plain".into(),
            size: 1,
            at_ms: 1,
            by: 1,
            comment: String::new(),
            replaces: None,
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &bad, &meta(1, "attach"), || actor(9)),
        Err(DocError::Invalid {
            field: "sha256",
            ..
        })
    ));
}

fn attach_op(sha: &str, name: &str, replaces: Option<&str>) -> EntityOp {
    EntityOp::AddAttachment {
        sha256: sha.into(),
        name: name.into(),
        media_type: "text/csv".into(),
        size: 10,
        at_ms: 1_700_000_000_000,
        by: 1,
        comment: "raw".into(),
        replaces: replaces.map(str::to_owned),
    }
}

#[test]
fn attachment_renames_and_comments_made_on_two_sides_merge() {
    let mut doc = new_doc();
    let sha = "cd".repeat(32);
    let attach = EntityPatch {
        ops: vec![attach_op(&sha, "counts.csv", None)],
        ..Default::default()
    };
    doc.apply(None, &attach, &meta(1, "attach"), || actor(9))
        .unwrap()
        .unwrap();
    let base = doc.heads();
    let rename = EntityPatch {
        ops: vec![EntityOp::UpdateAttachment {
            sha256: sha.clone(),
            name: Some("plot-4.csv".into()),
            comment: None,
            state: None,
        }],
        ..Default::default()
    };
    let comment = EntityPatch {
        ops: vec![EntityOp::UpdateAttachment {
            sha256: sha.clone(),
            name: Some("counts.csv".into()),
            comment: Some("second count".into()),
            state: None,
        }],
        ..Default::default()
    };
    let mut other = EntityDoc::load(&doc.save()).unwrap();
    doc.apply(None, &rename, &meta(1, "rename"), || actor(9))
        .unwrap()
        .unwrap();
    other
        .apply(Some(&base), &comment, &meta(2, "comment"), || actor(10))
        .unwrap()
        .unwrap();
    doc.automerge().merge(other.automerge()).unwrap();
    let merged = doc.attachments().unwrap();
    assert_eq!(merged.len(), 1);
    assert_eq!(
        merged[0].name, "plot-4.csv",
        "an unchanged name is not rewritten"
    );
    assert_eq!(merged[0].comment.as_deref(), Some("second count"));
    assert_eq!(merged[0].state, Some(1));
}

#[test]
fn replacing_records_the_old_hash_and_old_entries_read_without_new_keys() {
    let mut doc = new_doc();
    let old = "ef".repeat(32);
    let new = "01".repeat(32);
    // An entry as written before `comment`, `state` and `replaces` existed.
    {
        let attachments = map_obj(&doc.doc, "attachments").unwrap();
        let entry = doc
            .doc
            .put_object(&attachments, old.as_str(), ObjType::Map)
            .unwrap();
        doc.doc.put(&entry, "name", "v1.csv").unwrap();
        doc.doc.put(&entry, "mime", "text/csv").unwrap();
        doc.doc.put(&entry, "size", 3).unwrap();
        doc.doc.put(&entry, "added_by", 1).unwrap();
        doc.doc
            .put(&entry, "added_at", ScalarValue::Timestamp(5))
            .unwrap();
        doc.doc.commit();
    }
    let legacy = doc.attachments().unwrap();
    assert_eq!(legacy[0].comment, None);
    assert_eq!(legacy[0].state, None);
    assert_eq!(legacy[0].replaces, None);
    let replace = EntityPatch {
        ops: vec![
            attach_op(&new, "v2.csv", Some(&old)),
            EntityOp::UpdateAttachment {
                sha256: old.clone(),
                name: None,
                comment: None,
                state: Some(2),
            },
        ],
        ..Default::default()
    };
    doc.apply(None, &replace, &meta(1, "replace"), || actor(9))
        .unwrap()
        .unwrap();
    let all = doc.attachments().unwrap();
    let find = |sha: &str| all.iter().find(|a| a.sha256 == sha).unwrap().clone();
    assert_eq!(find(&new).replaces.as_deref(), Some(old.as_str()));
    assert_eq!(find(&old).state, Some(2));
    let missing = EntityPatch {
        ops: vec![EntityOp::UpdateAttachment {
            sha256: "23".repeat(32),
            name: Some("x".into()),
            comment: None,
            state: None,
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &missing, &meta(1, "rename"), || actor(9)),
        Err(DocError::NotFound("attachment"))
    ));
    let bad_state = EntityPatch {
        ops: vec![EntityOp::UpdateAttachment {
            sha256: new,
            name: None,
            comment: None,
            state: Some(7),
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &bad_state, &meta(1, "state"), || actor(9)),
        Err(DocError::Invalid { field: "state", .. })
    ));
}

fn ops(doc: &mut EntityDoc, n: u8, ops: Vec<EntityOp>) -> Result<Option<ChangeHash>, DocError> {
    let patch = EntityPatch {
        ops,
        ..Default::default()
    };
    doc.apply(None, &patch, &meta(n, "fields"), || actor(99))
}

const METADATA: &str = r#"{"elabftw": {"extra_fields_groups": [{"id": 1, "name": "Conditions"}]},
  "extra_fields": {"Temperature": {"type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"], "group_id": 1, "required": true},
                   "Kits": {"type": "select", "value": ["A"], "options": ["A", "B"], "allow_multi_values": true},
                   "Site": {"type": "text", "value": "", "readonly": true}}}"#;

#[test]
fn metadata_is_stored_per_field_and_read_back_unchanged() {
    let mut doc = new_doc();
    let metadata = crate::fields::Metadata::parse(METADATA).expect("metadata");
    ops(
        &mut doc,
        1,
        vec![EntityOp::SetMetadata {
            metadata: metadata.clone(),
            require: true,
        }],
    )
    .expect("set");
    let mut loaded = EntityDoc::load(&doc.save()).expect("load");
    assert_eq!(loaded.content().expect("content").metadata, metadata);
    let again = ops(
        &mut loaded,
        1,
        vec![EntityOp::SetMetadata {
            metadata,
            require: true,
        }],
    )
    .expect("same");
    assert_eq!(again, None, "writing the same metadata makes no version");
}

#[test]
fn field_values_are_checked_against_their_definition() {
    let mut doc = new_doc();
    let metadata = crate::fields::Metadata::parse(METADATA).expect("metadata");
    ops(
        &mut doc,
        1,
        vec![EntityOp::SetMetadata {
            metadata,
            require: false,
        }],
    )
    .expect("set");
    let set = |name: &str, value: serde_json::Value| EntityOp::SetFieldValue {
        name: name.into(),
        value,
    };
    let err = ops(&mut doc, 1, vec![set("Temperature", "warm".into())]).expect_err("not a number");
    assert!(
        matches!(&err, DocError::InvalidField { name, .. } if name == "Temperature"),
        "{err}"
    );
    let err = ops(&mut doc, 1, vec![set("Temperature", "".into())]).expect_err("required");
    assert!(err.to_string().contains("required"), "{err}");
    let err =
        ops(&mut doc, 1, vec![set("Kits", serde_json::json!(["Z"]))]).expect_err("not an option");
    assert!(err.to_string().contains("Kits"), "{err}");
    assert!(ops(&mut doc, 1, vec![set("Nope", "1".into())]).is_err());
    let mut doc = EntityDoc::load(&doc.save()).expect("reload after refused ops");
    ops(&mut doc, 1, vec![set("Temperature", "4.5".into())]).expect("a number");
    let content = doc.content().expect("content");
    assert_eq!(
        content
            .metadata
            .field("Temperature")
            .and_then(|f| f.number()),
        Some(4.5)
    );
}

#[test]
fn concurrent_edits_of_different_fields_merge() {
    let mut a = new_doc();
    let metadata = crate::fields::Metadata::parse(METADATA).expect("metadata");
    ops(
        &mut a,
        1,
        vec![EntityOp::SetMetadata {
            metadata,
            require: false,
        }],
    )
    .expect("set");
    let mut b = EntityDoc::load(&a.save()).expect("fork");
    ops(
        &mut a,
        1,
        vec![EntityOp::SetFieldValue {
            name: "Temperature".into(),
            value: "30".into(),
        }],
    )
    .expect("a");
    ops(
        &mut b,
        2,
        vec![EntityOp::SetFieldValue {
            name: "Site".into(),
            value: "Lake".into(),
        }],
    )
    .expect("b");
    let changes = b.changes_since(&[]);
    for change in changes {
        a.load_changes(&change.bytes).expect("merge");
    }
    let content = a.content().expect("content");
    assert_eq!(
        content
            .metadata
            .field("Temperature")
            .map(|f| f.display_value()),
        Some("30".into())
    );
    assert_eq!(
        content.metadata.field("Site").map(|f| f.display_value()),
        Some("Lake".into())
    );
}

#[test]
fn a_version_diff_shows_changed_field_values() {
    let mut doc = new_doc();
    let metadata = crate::fields::Metadata::parse(METADATA).expect("metadata");
    ops(
        &mut doc,
        1,
        vec![EntityOp::SetMetadata {
            metadata,
            require: false,
        }],
    )
    .expect("set");
    let before = doc.content().expect("before");
    ops(
        &mut doc,
        1,
        vec![EntityOp::SetFieldValue {
            name: "Temperature".into(),
            value: "30".into(),
        }],
    )
    .expect("set");
    let after = doc.content().expect("after");
    let d = crate::version_diff::diff(&before, &after);
    let change = d
        .fields
        .iter()
        .find(|f| f.field == "metadata")
        .expect("metadata change");
    assert!(
        change.before.contains("Temperature = 20 °C"),
        "{}",
        change.before
    );
    assert!(
        change.after.contains("Temperature = 30 °C"),
        "{}",
        change.after
    );
}

#[test]
fn concurrent_values_of_a_metadata_field_are_a_conflict_until_one_is_picked() {
    let mut doc = new_doc();
    let add = EntityPatch {
        ops: vec![
            EntityOp::PutField(crate::fields::Field::new("pH", "number")),
            EntityOp::PutField(crate::fields::Field::new("Site", "text")),
        ],
        ..Default::default()
    };
    doc.apply(None, &add, &meta(1, "fields"), || actor(9))
        .expect("fields");
    let base = doc.heads();
    let set = |name: &str, value: &str| EntityPatch {
        ops: vec![EntityOp::SetFieldValue {
            name: name.into(),
            value: serde_json::json!(value),
        }],
        ..Default::default()
    };
    doc.apply(Some(&base), &set("pH", "6.5"), &meta(2, "save"), || {
        actor(20)
    })
    .expect("a");
    doc.apply(Some(&base), &set("pH", "7.2"), &meta(3, "save"), || {
        actor(30)
    })
    .expect("b");
    // The same value written on both sides, and a field changed on one side only: no conflict.
    doc.apply(
        Some(&base),
        &set("Site", "plot 4"),
        &meta(2, "save"),
        || actor(21),
    )
    .expect("c");
    doc.apply(
        Some(&base),
        &set("Site", "plot 4"),
        &meta(3, "save"),
        || actor(31),
    )
    .expect("d");
    let content = doc.content().expect("content");
    assert_eq!(
        content.conflicts,
        vec![Conflict {
            field: ConflictField::Field("pH".into()),
            values: vec!["6.5".into(), "7.2".into()],
        }]
    );
    assert_eq!(content.conflicts[0].field.key(), "field:pH");
    assert_eq!(
        serde_json::to_value(&content.conflicts).expect("json"),
        serde_json::json!([{"field": "field:pH", "values": ["6.5", "7.2"]}]),
        "exports name the field by its key, as root fields always were"
    );
    assert_eq!(
        serde_json::to_value(ConflictField::Title).expect("json"),
        "title"
    );
    assert_eq!(
        ConflictField::parse("field:pH"),
        Some(ConflictField::Field("pH".into()))
    );
    assert_eq!(ConflictField::parse("field:"), None);
    let visible = content
        .metadata
        .fields
        .iter()
        .find(|f| f.name == "pH")
        .expect("pH")
        .display_value();

    // Picking the value already shown still settles the conflict (the write supersedes both).
    let pick = EntityPatch {
        ops: vec![EntityOp::ResolveConflict {
            field: ConflictField::Field("pH".into()),
            value: visible.clone(),
        }],
        ..Default::default()
    };
    doc.apply(None, &pick, &meta(2, "resolve"), || actor(22))
        .expect("pick");
    let content = doc.content().expect("content");
    assert!(content.conflicts.is_empty(), "{:?}", content.conflicts);
    let field = content
        .metadata
        .fields
        .iter()
        .find(|f| f.name == "pH")
        .expect("pH");
    assert_eq!(field.display_value(), visible);

    // A value that was not in conflict is checked against the field like any new value.
    let bad = EntityPatch {
        ops: vec![EntityOp::ResolveConflict {
            field: ConflictField::Field("pH".into()),
            value: "acid".into(),
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &bad, &meta(2, "resolve"), || actor(23)),
        Err(DocError::InvalidField { .. })
    ));
    let missing = EntityPatch {
        ops: vec![EntityOp::ResolveConflict {
            field: ConflictField::Field("Depth".into()),
            value: "3".into(),
        }],
        ..Default::default()
    };
    assert!(matches!(
        doc.apply(None, &missing, &meta(2, "resolve"), || actor(24)),
        Err(DocError::NotFound("field"))
    ));
}

/// A replica stores pulled changes by appending them to the saved document (docs/SYNC.md):
/// the concatenation of a saved document and change chunks must load as the merged document,
/// and appending changes the document already holds must change nothing.
#[test]
fn a_saved_document_followed_by_change_chunks_loads_whole() {
    let mut server = new_doc();
    let mut stored = server.save();
    let mut expected_heads = Vec::new();
    for round in 0..3u8 {
        let before = server.heads();
        let patch = EntityPatch {
            body: Some(format!("Intro\n\nMethods round {round}\n\nResults\n")),
            title: Some(format!("Soil sampling {round}")),
            ..Default::default()
        };
        server
            .apply(None, &patch, &meta(2, "save"), || actor(40 + round))
            .expect("apply");
        let chunk = server.automerge().save_after(&before);
        assert!(!chunk.is_empty());
        stored.extend_from_slice(&chunk);
        expected_heads = server.heads();
    }
    let mut loaded = EntityDoc::load(&stored).expect("concatenation loads");
    assert_eq!(loaded.heads(), expected_heads);
    assert_eq!(
        loaded.content().expect("c"),
        server.content().expect("c"),
        "same content as the document that made the changes"
    );
    // The same chunk appended twice (a replayed pull) loads to the same document.
    let again = server.automerge().save_after(&[]);
    let mut doubled = stored.clone();
    doubled.extend_from_slice(&again);
    let mut reloaded = EntityDoc::load(&doubled).expect("duplicates load");
    assert_eq!(reloaded.heads(), expected_heads);
    // And the plain automerge loader (the integrity check's) agrees.
    let plain = automerge::Automerge::load(&stored).expect("automerge loads");
    assert_eq!(plain.get_heads(), expected_heads);
    // Saving compacts it back into one document chunk.
    let compact = loaded.save();
    assert!(compact.len() <= stored.len());
    assert_eq!(
        EntityDoc::load(&compact).expect("compact").heads(),
        expected_heads
    );
}
