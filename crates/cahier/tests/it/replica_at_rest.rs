//! A lost laptop reveals nothing (issue #5): on a field replica whose database is SQLCipher
//! and whose files are sealed, exports (`.eln`, eLabFTW's ZIP, the archival PDF, at once or as
//! background jobs) leave nothing readable under the data folder, while their downloads hold
//! the entry. A lab server from the test kit, a replica served by the production router, over
//! real HTTP.

use super::archives::{job_file, unzip};
use super::eln::import;
use super::pdf::run;
use super::sync_blobs::{Replica, serve_replica};
use super::uploads::upload;
use cahier_store::Store;
use cahier_sync::http::{HttpTransport, TlsOptions};
use cahier_sync::sync_once;
use cahier_testkit::TestApp;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// One word, so PDF text extraction keeps it whole.
const MARKER: &str = "lostlaptopmarker7f3a9c";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pdf_text(dir: &Path, name: &str, pdf: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pdf).unwrap();
    run("pdftotext", &[path.to_str().unwrap(), "-"])
}

#[tokio::test]
async fn exports_on_an_encrypted_replica_leave_nothing_readable_in_its_data_folder() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let id = lab
        .create(
            "/experiments",
            json!({"title": "Field notes", "body": format!("Seen at dawn: {MARKER} on the ridge.")}),
        )
        .await;
    upload(
        &lab,
        &format!("/experiments/{id}/uploads"),
        "notes.txt",
        format!("raw {MARKER} bytes").into_bytes(),
    )
    .await;

    // A replica as `cahier replica init` makes it: SQLCipher database, sealed files.
    let dir = tempfile::tempdir().unwrap();
    let (transport, registered) = HttpTransport::register(
        &app.url,
        &TlsOptions::default(),
        &alice.email,
        &alice.password,
        "laptop",
    )
    .await
    .unwrap();
    let store = Store::open_encrypted(
        &dir.path().join("cahier.db"),
        Arc::new(cahier_core::SystemClock),
        &[3; 32],
    )
    .await
    .unwrap()
    .with_device(&registered.device)
    .with_encrypted_blobs(dir.path().join("blobs"), 64 * 1024 * 1024, [4; 32]);
    store.init_replica().await.unwrap();
    sync_once(&store, &transport).await.unwrap();
    let data = dir.path().to_path_buf();
    let replica = Replica::new(store, transport, registered.token, registered.user_id, dir);
    let (_running, local) = serve_replica(&replica).await;
    let scratch = tempfile::tempdir().unwrap();

    // At once: the downloads hold the entry.
    let response = local.get(&format!("/experiments/{id}?format=eln")).await;
    assert_eq!(response.status(), 200);
    let eln_bytes = response.bytes().await.unwrap().to_vec();
    let eln = unzip(&eln_bytes);
    assert!(
        eln.values().any(|f| contains(f, MARKER.as_bytes())),
        "the .eln holds the entry: {:?}",
        eln.keys()
    );
    let response = local.get(&format!("/experiments/{id}?format=zip")).await;
    assert_eq!(response.status(), 200);
    let zip = unzip(&response.bytes().await.unwrap());
    assert!(
        zip.iter()
            .any(|(name, f)| name.ends_with("notes.txt") && contains(f, MARKER.as_bytes())),
        "{:?}",
        zip.keys()
    );
    let response = local.get(&format!("/experiments/{id}?format=pdf")).await;
    assert_eq!(response.status(), 200);
    let text = pdf_text(scratch.path(), "one.pdf", &response.bytes().await.unwrap());
    assert!(text.contains(MARKER), "{text}");

    // In the background: the files stay under the data folder until downloaded again.
    for format in ["eln", "zip", "pdf"] {
        let (job, bytes, _) =
            job_file(&local, json!({"experiments": [id], "format": format})).await;
        assert_eq!(
            job["file_size"].as_u64(),
            Some(bytes.len() as u64),
            "the size told is the download's ({format})"
        );
        let found = match format {
            "pdf" => pdf_text(scratch.path(), "job.pdf", &bytes).contains(MARKER),
            _ => unzip(&bytes)
                .values()
                .any(|f| contains(f, MARKER.as_bytes())),
        };
        assert!(found, "the {format} export holds the entry");
    }

    // An .eln imported on the replica: the received archive, the reader's copy of its metadata
    // and the import's prepared entries are sealed scratch files too, and the import works
    // through them (a dry run, then the import).
    let (status, preview) =
        import(&local, "field.eln", eln_bytes.clone(), &[("dry_run", "1")]).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview["entries"].as_array().map(Vec::len),
        Some(1),
        "{preview}"
    );
    let (status, report) = import(&local, "field.eln", eln_bytes, &[]).await;
    assert_eq!(status, 201, "{report}");
    let imported = local.json(&format!("/experiments?q={MARKER}")).await;
    assert_eq!(
        imported.as_array().map(Vec::len),
        Some(2),
        "the original and its imported copy: {imported}"
    );

    // Nothing under the data folder is readable: no marker, no ZIP, no PDF in clear.
    let files = files_under(&data);
    let exports: Vec<_> = files
        .iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("exports")))
        .collect();
    assert_eq!(exports.len(), 3, "the three job files are kept: {files:?}");
    for path in &files {
        let raw = std::fs::read(path).unwrap();
        for needle in [MARKER.as_bytes(), b"%PDF-", b"PK\x03\x04", b"ro-crate"] {
            assert!(
                !contains(&raw, needle),
                "{} holds {:?} in clear",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}
