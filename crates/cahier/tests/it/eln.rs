//! .eln exchange over real HTTP: every shared fixture imports with what it holds (titles,
//! counts, attachments whose hashes match), a bad hash refuses only that file, hostile
//! archives built here are refused with a message and leave nothing behind, and a Cahier
//! export imports back into the same content. The export is also checked by the RO-Crate
//! tools of PyPI (`roc-validator`, `rocrate`) in a fresh venv, offline for the contexts.

use cahier_store::catalog::{Family, Vocabulary};
use cahier_testkit::{Api, TestApp};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

const FIXTURES: &str = "/work/shared/fixtures/eln";
const CONTEXTS: &str = "/work/shared/fixtures/rocrate-context";

pub(super) async fn import(
    api: &Api,
    name: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_owned()));
    for (key, value) in fields {
        form = form.text(key.to_string(), value.to_string());
    }
    let response = api
        .client
        .post(format!("{}/import", api.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text })),
    )
}

async fn count_entities(app: &TestApp) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM entities")
        .fetch_one(&pool(app).await)
        .await
        .unwrap()
}

async fn pool(app: &TestApp) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.dir.path().join("cahier.db").display()
    ))
    .await
    .unwrap()
}

/// A team member with a resource category (imported resources need one) and a key.
async fn importer(app: &TestApp) -> (Api, i64) {
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    app.store
        .create_term(
            Vocabulary::Category,
            alice.team_id,
            Family::Resource,
            "Imported",
            "29aeb9",
            true,
        )
        .await
        .unwrap();
    (app.api(&app.api_key(&alice, true).await), alice.team_id)
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(path)).unwrap()
}

#[tokio::test]
async fn every_fixture_imports_with_its_entries_and_files() {
    let app = TestApp::spawn().await;
    let (api, _) = importer(&app).await;
    // (file, entries, attached files, a title that must arrive)
    let cases = [
        ("elabftw/export.eln", 12, 2, "Gold master experiment"),
        (
            "elabftw/single-experiment.eln",
            1,
            1,
            "test eln export with metadata",
        ),
        (
            "elabftw/multiple-experiments.eln",
            9,
            4,
            "Synthesis of Aspirin",
        ),
        (
            "elabftw/4.9.0_special_chars.eln",
            2,
            4,
            "export from 4.9.0 - special chars",
        ),
        ("kadi4mat/records-example.eln", 1, 4, "records-example"),
        (
            "RSpace/RSpace-2023-12-08-14-44-xml-SELECTION-c0bEtpHcnNe-HA.eln",
            3,
            6,
            "doc_Editable2-32",
        ),
        ("SampleDB/sampledb_export.eln", 2, 4, "OMBE-1"),
        ("PASTA/PASTA.eln", 9, 8, "PASTAs Example Project"),
        (
            "OpenSemanticLab/MinimalExample.osl.eln",
            1,
            0,
            "MinimalExample",
        ),
    ];
    for (path, n_entries, n_files, title) in cases {
        let (status, report) = import(&api, path, fixture(path), &[]).await;
        assert_eq!(status, 201, "{path}: {report}");
        let created = report["created"].as_array().unwrap();
        assert_eq!(created.len(), n_entries, "{path}: {report}");
        let attached: u64 = created.iter().map(|c| c["n_files"].as_u64().unwrap()).sum();
        assert_eq!(attached, n_files, "{path}: {report}");
        assert!(
            created
                .iter()
                .any(|c| c["title"].as_str().unwrap().starts_with(title)),
            "{path}: {title} missing from {report}"
        );
        assert!(
            report["refused_files"].as_array().unwrap().is_empty(),
            "{path}: {report}"
        );
        // Every attached file is stored with the hash of its content.
        for entry in created {
            let kind = if entry["kind"] == "resource" {
                "items"
            } else {
                "experiments"
            };
            let id = entry["id"].as_i64().unwrap();
            let uploads = api.json(&format!("/{kind}/{id}/uploads")).await;
            for upload in uploads.as_array().unwrap() {
                let bytes = api
                    .get(&format!(
                        "/{kind}/{id}/uploads/{}?format=binary",
                        upload["id"]
                    ))
                    .await
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(
                    hex::encode(sha2::Sha256::digest(&bytes)),
                    upload["hash"].as_str().unwrap(),
                    "{path}"
                );
            }
        }
    }

    // What eLabFTW's gold master carries arrived: tags, steps, comments, links, fields.
    let list = api.json("/experiments?q=Gold&limit=5").await;
    let gold = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"] == "Gold master experiment")
        .expect("gold master listed");
    let gold = api.json(&format!("/experiments/{}", gold["id"])).await;
    assert_eq!(gold["steps"].as_array().unwrap().len(), 2, "{gold}");
    assert_eq!(gold["comments"].as_array().unwrap().len(), 1);
    let n_links = gold["experiments_links"].as_array().unwrap().len()
        + gold["items_links"].as_array().unwrap().len();
    assert_eq!(n_links, 3, "{gold}");
    assert!(
        gold["tags"]
            .as_str()
            .unwrap_or_default()
            .contains("test-data"),
        "{gold}"
    );
    let metadata: Value = serde_json::from_str(gold["metadata"].as_str().unwrap()).unwrap();
    assert!(
        metadata["extra_fields"].as_object().unwrap().len() > 5,
        "{metadata}"
    );
    assert_eq!(
        metadata["eln_import"]["authors"][0]["name"], "Nicola Mohr",
        "original author kept: {metadata}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_file_whose_hash_does_not_match_is_refused_and_reported() {
    let app = TestApp::spawn().await;
    let (api, _) = importer(&app).await;
    let (status, report) = import(
        &api,
        "invalid-shasum.eln",
        fixture("elabftw/invalid-shasum.eln"),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["created"][0]["n_files"], 1, "{report}");
    let refused = report["refused_files"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{report}");
    assert!(
        refused[0].as_str().unwrap().contains("file.txt"),
        "{report}"
    );
    assert!(refused[0].as_str().unwrap().contains("SHA-256"), "{report}");
    app.stop().await;
}

#[tokio::test]
async fn a_preview_lists_what_would_be_created_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let (api, _) = importer(&app).await;
    let before = count_entities(&app).await;
    let (status, preview) = import(
        &api,
        "export.eln",
        fixture("elabftw/export.eln"),
        &[("dry_run", "1"), ("target", "experiments")],
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["entries"].as_array().unwrap().len(), 12);
    assert!(
        preview["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "experiment")
    );
    assert_eq!(count_entities(&app).await, before);
    app.stop().await;
}

/// A ZIP built entry by entry: (name, content, deflated).
fn zip_of(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, deflate) in entries {
        let method = if *deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        zip.start_file(
            *name,
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn metadata_with_file(file_id: &str) -> Vec<u8> {
    json!({
        "@context": "https://w3id.org/ro/crate/1.2/context",
        "@graph": [
            {"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"}},
            {"@id": "./", "@type": "Dataset", "hasPart": [{"@id": "./a/"}]},
            {"@id": "./a/", "@type": "Dataset", "name": "Hostile", "hasPart": [{"@id": file_id}]},
            {"@id": file_id, "@type": "File", "name": "x"}
        ]
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn hostile_archives_are_refused_with_a_message_and_leave_nothing() {
    let app = TestApp::spawn().await;
    let (api, _) = importer(&app).await;
    let before = count_entities(&app).await;
    let metadata = metadata_with_file("./a/x.txt");

    let traversal = zip_of(&[
        ("root/ro-crate-metadata.json", &metadata, true),
        ("root/../../etc/passwd", b"x", false),
    ]);
    let absolute = zip_of(&[
        ("root/ro-crate-metadata.json", &metadata, true),
        ("/etc/passwd", b"x", false),
    ]);
    let two_roots = zip_of(&[
        ("root/ro-crate-metadata.json", &metadata, true),
        ("other/x.txt", b"x", false),
    ]);
    let symlink = {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("root/ro-crate-metadata.json", options)
            .unwrap();
        zip.write_all(&metadata).unwrap();
        zip.add_symlink("root/a/x.txt", "/etc/passwd", options)
            .unwrap();
        zip.finish().unwrap().into_inner()
    };
    // 5 MiB of zeros (under the per-file limit) deflate to about 5 KiB: a ratio near 1000.
    let zeros = vec![0u8; 5 << 20];
    let bomb = zip_of(&[
        ("root/ro-crate-metadata.json", &metadata, true),
        ("root/a/x.txt", &zeros, true),
    ]);
    drop(zeros);
    // Metadata past the 128 MiB limit (compressed well below the upload limit).
    let mut huge = b"{\"@graph\": [], \"pad\": \"".to_vec();
    huge.resize(129 << 20, b' ');
    huge.extend_from_slice(b"\"}");
    let huge_metadata = zip_of(&[("root/ro-crate-metadata.json", &huge, true)]);
    let no_metadata = zip_of(&[("root/a/x.txt", b"x", false)]);
    let not_zip = b"this is not a zip archive".to_vec();

    for (label, bytes, expected) in [
        ("traversal", traversal, ".."),
        ("absolute", absolute, "absolute"),
        ("two roots", two_roots, "one top folder"),
        ("symlink", symlink, "symbolic link"),
        ("bomb", bomb, "zip bomb"),
        ("huge metadata", huge_metadata, "are accepted"),
        (
            "no metadata",
            no_metadata,
            "ro-crate-metadata.json is missing",
        ),
        ("not a zip", not_zip, "ZIP"),
    ] {
        let (status, body) = import(&api, "hostile.eln", bytes, &[]).await;
        assert_eq!(status, 422, "{label}: {body}");
        assert!(
            body["description"]
                .as_str()
                .unwrap_or_default()
                .contains(expected)
                || body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(expected),
            "{label}: {body}"
        );
    }
    assert_eq!(count_entities(&app).await, before);
    // Nothing of the refused archives stays in the temporary folder.
    let tmp = app.dir.path().join("blobs/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_import_that_fails_midway_creates_nothing() {
    let app = TestApp::spawn().await;
    // No resource category in this team: the resource of the archive cannot be created, so
    // the experiments before it must not be either.
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let before = count_entities(&app).await;
    let (status, body) = import(
        &api,
        "multiple-experiments.eln",
        fixture("elabftw/multiple-experiments.eln"),
        &[],
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("nothing was imported") || body.to_string().contains("category"),
        "{body}"
    );
    assert_eq!(count_entities(&app).await, before);
    app.stop().await;
}

/// The files an import leaves in the blob store's temporary folder.
fn temporary_files(app: &TestApp) -> Vec<String> {
    match std::fs::read_dir(app.dir.path().join("blobs/tmp")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn an_import_failing_in_its_insert_phase_leaves_nothing_and_no_temporary_file() {
    let app = TestApp::spawn().await;
    let (api, _team_id) = importer(&app).await;
    let pool = pool(&app).await;
    let before = count_entities(&app).await;
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table}"
            )))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (changes, uploads) = (count("entity_changes").await, count("uploads").await);
    // Real SQLite refuses the third entity row: every entry is already prepared (and on disk),
    // the transaction has written two entries when the insert phase fails.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TRIGGER injected_import_failure BEFORE INSERT ON entities \
         WHEN (SELECT count(*) FROM entities) >= {} \
         BEGIN SELECT RAISE(ABORT, 'injected failure at the third entry'); END",
        before + 2
    )))
    .execute(&pool)
    .await
    .unwrap();
    let archive = fixture("elabftw/multiple-experiments.eln");
    let (status, body) = import(&api, "multiple-experiments.eln", archive.clone(), &[]).await;
    assert!(status >= 400, "{status} {body}");
    assert_eq!(count_entities(&app).await, before, "no entry is left");
    assert_eq!(count("entity_changes").await, changes);
    assert_eq!(count("uploads").await, uploads);
    assert_eq!(count("entity_fts").await, before);
    assert_eq!(temporary_files(&app), Vec::<String>::new());
    // Without the injected failure the same archive imports whole, and leaves no file either.
    sqlx::query("DROP TRIGGER injected_import_failure")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = import(&api, "multiple-experiments.eln", archive, &[]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["created"].as_array().unwrap().len(), 9, "{body}");
    assert_eq!(count_entities(&app).await, before + 9);
    assert_eq!(temporary_files(&app), Vec::<String>::new());
    app.stop().await;
}

/// Builds an experiment with every part the round trip must carry.
async fn rich_experiment(api: &Api, team_id: i64, app: &TestApp) -> (i64, i64) {
    let category = app
        .store
        .create_term(
            Vocabulary::Category,
            team_id,
            Family::Experiment,
            "Chemistry",
            "ff0000",
            false,
        )
        .await
        .unwrap();
    let target = api
        .create(
            "/experiments",
            json!({"title": "Linked target", "body": "target"}),
        )
        .await;
    let id = api
        .create(
            "/experiments",
            json!({
                "title": "Titration of acetic acid",
                "body": "# Aim\n\nMeasure the **concentration**.",
                "tags": ["acid", "titration"],
                "category": category,
                "metadata": {"extra_fields": {
                    "Volume": {"type": "number", "value": "25", "unit": "mL", "units": ["mL", "L"]},
                    "Operator": {"type": "text", "value": "Alice"}
                }},
            }),
        )
        .await;
    api.create(
        &format!("/experiments/{id}/steps"),
        json!({"body": "Weigh"}),
    )
    .await;
    api.create(
        &format!("/experiments/{id}/comments"),
        json!({"comment": "Looks right"}),
    )
    .await;
    let response = api
        .post(
            &format!("/experiments/{id}/experiments_links/{target}"),
            json!({}),
        )
        .await;
    assert!(response.status().is_success());
    let form = Form::new().part(
        "file",
        Part::bytes(b"t,ph\n0,2.9\n".to_vec()).file_name("curve é.csv"),
    );
    let response = api
        .client
        .post(format!("{}/experiments/{id}/uploads", api.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    (id, target)
}

/// Starts a background export, waits for it (polling its job) and downloads the file.
async fn export(api: &Api, ids: &[i64]) -> Vec<u8> {
    let response = api.post("/exports", json!({"experiments": ids})).await;
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let job = api.json(&format!("/exports/{id}")).await;
        match job["state"].as_str().unwrap() {
            "done" => {
                assert_eq!(job["done"], job["total"]);
                break;
            }
            "failed" => panic!("export failed: {job}"),
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "export still {job}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let response = api.get(&format!("/exports/{id}?format=binary")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.eln+zip"
    );
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn export_jobs_are_listed_to_their_owner_only() {
    let app = TestApp::spawn().await;
    let (api, team_id) = importer(&app).await;
    let (id, target) = rich_experiment(&api, team_id, &app).await;
    let archive = export(&api, &[id, target]).await;
    assert!(!archive.is_empty());
    // A whole team's notebook, as a background job too.
    let response = api.post("/exports", json!({"team": team_id})).await;
    assert_eq!(response.status(), 201);
    let jobs = api.json("/exports").await;
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");
    assert_eq!(jobs[1]["total"], 2);
    let bob = app.user("bob@lab.fr", "Geology", false).await;
    let bob_api = app.api(&app.api_key(&bob, true).await);
    assert!(
        bob_api
            .json("/exports")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let first = jobs[1]["id"].as_i64().unwrap();
    assert_eq!(
        bob_api.get(&format!("/exports/{first}")).await.status(),
        404
    );
    assert_eq!(
        bob_api
            .get(&format!("/exports/{first}?format=binary"))
            .await
            .status(),
        404
    );
    // Bob may not export Alice's team, nor her private entries.
    assert_eq!(
        bob_api
            .post("/exports", json!({"team": team_id}))
            .await
            .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cahier_export_imports_back_with_everything() {
    let app = TestApp::spawn().await;
    let (api, team_id) = importer(&app).await;
    let (id, target) = rich_experiment(&api, team_id, &app).await;
    let original = api.json(&format!("/experiments/{id}")).await;

    // One entity through `?format=eln`, and the pair through POST /exports.
    let single = api.get(&format!("/experiments/{id}?format=eln")).await;
    assert_eq!(single.status(), 200);
    assert!(!single.bytes().await.unwrap().is_empty());
    let archive = export(&api, &[id, target]).await;

    let (status, report) = import(&api, "back.eln", archive, &[]).await;
    assert_eq!(status, 201, "{report}");
    let created = report["created"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    let copy_id = created[0]["id"].as_i64().unwrap();
    let copy = api.json(&format!("/experiments/{copy_id}")).await;
    for key in [
        "title",
        "body",
        "content_type",
        "tags",
        "category",
        "status",
        "rating",
        "date",
    ] {
        assert_eq!(copy[key], original[key], "{key}");
    }
    let fields = |v: &Value| {
        let metadata: Value = serde_json::from_str(v["metadata"].as_str().unwrap()).unwrap();
        metadata["extra_fields"].clone()
    };
    assert_eq!(fields(&copy), fields(&original));
    assert_eq!(copy["steps"][0]["body"], "Weigh");
    assert_eq!(copy["comments"][0]["comment"], "Looks right");
    // The link now points at the imported copy of the target.
    assert_eq!(copy["experiments_links"][0]["entityid"], created[1]["id"]);
    let uploads = api.json(&format!("/experiments/{copy_id}/uploads")).await;
    let originals = api.json(&format!("/experiments/{id}/uploads")).await;
    assert_eq!(uploads[0]["real_name"], "curve é.csv");
    assert_eq!(uploads[0]["hash"], originals[0]["hash"]);
    app.stop().await;
}

#[tokio::test]
async fn exporting_what_one_may_not_read_is_not_found() {
    let app = TestApp::spawn().await;
    let (api, _) = importer(&app).await;
    let bob = app.user("bob@lab.fr", "Geology", false).await;
    let bob_api = app.api(&app.api_key(&bob, true).await);
    let secret = bob_api
        .create(
            "/experiments",
            json!({"title": "Secret", "canread_base": 10}),
        )
        .await;
    let response = api.get(&format!("/experiments/{secret}?format=eln")).await;
    assert_eq!(response.status(), 404);
    let response = api.post("/exports", json!({"experiments": [secret]})).await;
    assert_eq!(response.status(), 404);
    let response = api.post("/exports", json!({"user": bob.id})).await;
    assert_eq!(response.status(), 422, "nothing of Bob's is readable");
    app.stop().await;
}

fn run(what: &str, command: &mut std::process::Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// Seeds the validator's HTTP cache with the vendored RO-Crate contexts (the recipe of
/// `reference/interop-trust.md` §1.6), so it runs without network.
const SEED_CACHE: &str = r#"
import io, sys, urllib3
from requests.adapters import HTTPAdapter
from requests_cache import CachedSession
ctx_dir = sys.argv[2]
CTX = {"https://w3id.org/ro/crate/1.1/context": ctx_dir + "/1.1.jsonld",
       "https://w3id.org/ro/crate/1.2/context": ctx_dir + "/1.2.jsonld"}
class Local(HTTPAdapter):
    def send(self, req, **kw):
        p = CTX.get(req.url.rstrip("/"))
        body = open(p, "rb").read() if p else b""
        raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers={"Content-Type": "application/ld+json"},
                                   status=200 if p else 404, preload_content=False, request_url=req.url)
        return self.build_response(req, raw)
s = CachedSession(cache_name=sys.argv[1], backend="sqlite", expire_after=-1,
                  allowable_methods=("GET",), allowable_codes=(200, 302, 404))
s.mount("https://", Local())
for u in CTX:
    s.get(u)
"#;

const LOAD_WITH_ROCRATE: &str = r#"
import sys
from rocrate.rocrate import ROCrate
crate = ROCrate(sys.argv[1])
datasets = [e for e in crate.get_entities() if "Dataset" in (e.type if isinstance(e.type, list) else [e.type]) and e.id != "./"]
files = [e for e in crate.get_entities() if e.type == "File"]
print("datasets", len(datasets), "files", len(files))
"#;

/// The export validates as RO-Crate 1.2 with `roc-validator` and loads with `rocrate`
/// (both from PyPI, in a fresh venv). Needs python3 and PyPI: without them the test fails
/// and says why.
#[tokio::test]
async fn an_export_passes_the_ro_crate_validator_and_loads_with_rocrate() {
    let app = TestApp::spawn().await;
    let (api, team_id) = importer(&app).await;
    let (id, target) = rich_experiment(&api, team_id, &app).await;
    let archive = export(&api, &[id, target]).await;
    let work = tempfile::tempdir().unwrap();
    let unzipped = work.path().join("x");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    zip.extract(&unzipped).unwrap();
    let root: PathBuf = std::fs::read_dir(&unzipped)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let work_path = work.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        let venv = work_path.join("venv");
        run(
            "python3 -m venv",
            std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv),
        );
        let python = venv.join("bin/python");
        run(
            "pip install roc-validator rocrate (is PyPI reachable from this machine?)",
            std::process::Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--timeout",
                "30",
                "--retries",
                "2",
                "roc-validator==0.13.0",
                "rocrate==0.16.0",
            ]),
        );
        let cache = work_path.join("rocache/http_cache");
        std::fs::create_dir_all(work_path.join("rocache")).unwrap();
        let seed = work_path.join("seed_cache.py");
        std::fs::write(&seed, SEED_CACHE).unwrap();
        run(
            "seeding the validator's cache with the vendored contexts",
            std::process::Command::new(&python)
                .arg(&seed)
                .arg(&cache)
                .arg(CONTEXTS),
        );
        let report = work_path.join("report.json");
        let validation = std::process::Command::new(venv.join("bin/rocrate-validator"))
            .args(["-y", "validate", "--no-paging", "--offline", "--cache-path"])
            .arg(&cache)
            .args([
                "--skip-availability-check",
                "-p",
                "ro-crate-1.2",
                "-f",
                "json",
                "-o",
            ])
            .arg(&report)
            .arg(&root)
            .output()
            .unwrap();
        let report_text = std::fs::read_to_string(&report).unwrap_or_default();
        assert!(
            validation.status.success(),
            "rocrate-validator refused the export:\n{}\n{}\n{report_text}",
            String::from_utf8_lossy(&validation.stdout),
            String::from_utf8_lossy(&validation.stderr)
        );
        let loader = work_path.join("load.py");
        std::fs::write(&loader, LOAD_WITH_ROCRATE).unwrap();
        run(
            "rocrate (ro-crate-py) loading the export",
            std::process::Command::new(&python).arg(&loader).arg(&root),
        )
    })
    .await
    .unwrap();
    assert!(output.contains("datasets 2 files 1"), "{output}");
    app.stop().await;
}

/// The pages, without JavaScript: upload → preview → confirm → report; the Exports page
/// starts a background export and offers its download; the entry page offers its `.eln`.
#[tokio::test]
async fn the_import_and_export_pages_work_without_javascript() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let browser = app.browser(&alice).await;
    let page = browser.page("/import").await;
    assert!(page.contains("id=\"import-form\""), "{page}");
    let csrf = browser.csrf().await;
    let form = Form::new().text("target", "experiments").part(
        "file",
        Part::bytes(fixture("elabftw/multiple-experiments.eln")).file_name("m.eln"),
    );
    let response = browser
        .client
        .post(format!("{}/import/preview?csrf={csrf}", browser.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let preview = response.text().await.unwrap();
    assert!(
        preview.contains("High-Speed Insect Flight Analysis"),
        "{preview}"
    );
    let before = count_entities(&app).await;
    assert_eq!(before, 0, "the preview creates nothing");
    let token = preview
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    // Another user cannot confirm Alice's waiting import.
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let bob_browser = app.browser(&bob).await;
    bob_browser.page("/import").await;
    let response = bob_browser
        .post_form(
            "/import/confirm",
            &[
                ("token", &token),
                ("team", &alice.team_id.to_string()),
                ("target", "experiments"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let response = browser
        .post_form(
            "/import/confirm",
            &[
                ("token", &token),
                ("team", &alice.team_id.to_string()),
                ("target", "experiments"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let report = response.text().await.unwrap();
    assert!(report.contains("id=\"import-created\">9 "), "{report}");
    assert_eq!(count_entities(&app).await, 9);

    let response = browser.post_form("/exports", &[("scope", "mine")]).await;
    assert_eq!(response.status(), 303);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let page = browser.page("/exports").await;
        if let Some(link) = page.split("href=\"/exports/").nth(1) {
            break link.split('/').next().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let response = browser.get(&format!("/exports/{id}/download")).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert!(
        archive
            .file_names()
            .any(|n| n.is_ok_and(|n| n.ends_with("ro-crate-metadata.json")))
    );

    let entry = browser.page("/experiments/1").await;
    assert!(entry.contains("/experiments/1/export"), "{entry}");
    let response = browser.get("/experiments/1/export").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.eln+zip"
    );
    app.stop().await;
}

#[tokio::test]
async fn lists_export_as_csv_and_json_and_the_list_page_exports_its_entries() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let api = app.api(&app.api_key(&alice, true).await);
    api.create(
        "/experiments",
        json!({"title": "=HYPERLINK(\"x\") soil", "tags": ["a", "b"]}),
    )
    .await;
    api.create("/experiments", json!({"title": "Plain \"quoted\" soil"}))
        .await;
    api.create("/experiments", json!({"title": "Other"})).await;
    let response = api.get("/experiments?format=csv&q=soil").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,title,date"));
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"x\"\") soil\""),
        "formula made inert: {csv}"
    );
    assert!(csv.contains("\"Plain \"\"quoted\"\" soil\""), "{csv}");
    assert!(csv.contains("\"a|b\""), "{csv}");
    let json = api.json("/experiments?format=json&q=soil").await;
    assert_eq!(json.as_array().unwrap().len(), 2);
    // A list format that does not exist is a mistake (422 naming `format`).
    let response = api.get("/experiments?format=xlsx").await;
    assert_eq!(response.status(), 422);

    let browser = app.browser(&alice).await;
    let page = browser.page("/experiments?q=soil").await;
    assert!(page.contains("id=\"export-list\""), "{page}");
    assert!(
        page.contains("format=csv&amp;limit=10000&amp;q=soil"),
        "{page}"
    );
    let ids = page
        .split("name=\"experiments\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(ids.split(',').count(), 2, "{ids}");
    let response = browser
        .post_form("/exports", &[("scope", "ids"), ("experiments", &ids)])
        .await;
    assert_eq!(response.status(), 303);
    let jobs = api.json("/exports").await;
    assert_eq!(jobs[0]["total"], 2, "{jobs}");
    // A search as the scope of an export, over the API.
    let response = api.post("/exports", json!({"query": "soil"})).await;
    assert_eq!(response.status(), 201);
    let jobs = api.json("/exports").await;
    assert_eq!(jobs[0]["total"], 2, "{jobs}");
    assert_eq!(jobs[0]["scope"]["query"], "soil");
    app.stop().await;
}

#[tokio::test]
async fn exports_left_unfinished_by_a_restart_are_marked_failed() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api.create("/experiments", json!({"title": "x"})).await;
    let subject = app.subject(&alice).await;
    // A job recorded but never run, as if the server stopped before its task did anything.
    let job = app
        .store
        .create_export_job(
            &subject,
            &cahier_store::export_jobs::ExportScope {
                experiments: vec![id],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(app.store.fail_interrupted_export_jobs().await.unwrap(), 1);
    let job = api.json(&format!("/exports/{job}")).await;
    assert_eq!(job["state"], "failed");
    assert!(job["error"].as_str().unwrap().contains("restart"), "{job}");
    app.stop().await;
}

#[tokio::test]
async fn a_team_dmp_lists_its_readable_entries_as_rda_datasets() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    api.create(
        "/experiments",
        json!({"title": "Soil survey", "tags": ["soil"]}),
    )
    .await;
    let bob = app.user("bob@lab.fr", "Ecology", false).await;
    let bob_api = app.api(&app.api_key(&bob, true).await);
    bob_api
        .create(
            "/experiments",
            json!({"title": "Bob's private", "canread_base": 10}),
        )
        .await;
    let dmp = api
        .json(&format!("/exports/dmp?team={}", alice.team_id))
        .await;
    let datasets = dmp["dmp"]["dataset"].as_array().unwrap();
    assert_eq!(datasets.len(), 1, "{dmp}");
    assert_eq!(datasets[0]["title"], "Soil survey");
    for key in ["title", "dataset_id", "personal_data", "sensitive_data"] {
        assert!(!datasets[0][key].is_null(), "{key}: {dmp}");
    }
    for key in [
        "title",
        "created",
        "modified",
        "dmp_id",
        "contact",
        "language",
        "ethical_issues_exist",
    ] {
        assert!(!dmp["dmp"][key].is_null(), "{key}: {dmp}");
    }
    let outsider = app.user("carol@lab.fr", "Geology", false).await;
    let carol = app.api(&app.api_key(&outsider, true).await);
    let response = carol
        .get(&format!("/exports/dmp?team={}", alice.team_id))
        .await;
    assert_eq!(response.status(), 404);
    app.stop().await;
}
