//! Files a partial field copy does not hold (issue #5), in exports and over a network that
//! hangs. Exports on a replica (the archival PDF, eLabFTW's ZIP, `.eln`, at once and as
//! background jobs) fetch the files they need first, each once; with the lab stopped or
//! hanging they still complete and name the files left out, with why, in French or English.
//! A download that receives nothing gives up after the stall timeout, while one that keeps
//! receiving is never cut. A lab server from the test kit, a replica with the `pinned` policy
//! served by the production router, the production transport, over real HTTP (through the
//! loopback fault proxy where requests are counted), and raw TCP servers that accept and
//! never answer, or answer in part.

use super::archives::{job_file, unzip};
use super::eln::import;
use super::fault_proxy::FaultProxy;
use super::pdf::{check_pdf, png, run};
use super::sync_blobs::{Replica, empty_replica_at, serve_replica, serve_replica_fetching};
use super::uploads::{sha256, upload};
use cahier_store::Store;
use cahier_store::replica_files::FilePolicy;
use cahier_sync::SyncError;
use cahier_sync::http::{HttpTransport, INTERACTIVE_STALL_TIMEOUT, TlsOptions};
use cahier_testkit::{Api, Browser, TestApp, TestUser};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BLOB_GET: &str = "GET /api/sync/v1/blobs/";

/// An experiment at the lab whose body draws a picture, with the picture and a table attached;
/// returns its id, the picture and the table.
async fn survey(lab: &Api) -> (i64, Vec<u8>, Vec<u8>) {
    let id = lab
        .create("/experiments", json!({"title": "Dune survey"}))
        .await;
    let picture = png();
    let table = b"site,height\ncrest,12.5\n".to_vec();
    let path = format!("/experiments/{id}/uploads");
    upload(lab, &path, "plot.png", picture.clone()).await;
    upload(lab, &path, "heights.csv", table.clone()).await;
    let body = format!(
        "Heights along the ridge.\n\n![the plot](/experiments/{id}/attachments/{})\n",
        sha256(&picture)
    );
    let response = lab
        .patch(&format!("/experiments/{id}"), json!({ "body": body }))
        .await;
    assert_eq!(response.status(), 200);
    (id, picture, table)
}

/// A replica of `user` at `server` keeping only pinned entries' files, after its first copy
/// (every entry, no file).
async fn pinned_replica(server: &str, user: &TestUser) -> Replica {
    let laptop = empty_replica_at(server, &TlsOptions::default(), user)
        .await
        .unwrap();
    laptop
        .store
        .set_file_policy(&FilePolicy::Pinned)
        .await
        .unwrap();
    let report = laptop.sync().await;
    assert_eq!((report.added, report.files_received), (1, 0), "{report}");
    laptop
}

async fn holds(replica: &Replica, bytes: &[u8]) -> bool {
    replica
        .store
        .blob_store()
        .unwrap()
        .exists(&sha256(bytes))
        .await
}

/// The body of a 200 answer.
async fn download(response: reqwest::Response) -> Vec<u8> {
    let status = response.status();
    let bytes = response.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    bytes
}

/// The text of a PDF, its whitespace collapsed (lines wrap where the layout wants).
fn pdf_words(dir: &Path, name: &str, pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let path = dir.join(name);
    std::fs::write(&path, pdf).unwrap();
    let text = run("pdftotext", &[path.to_str().unwrap(), "-"]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn draws_an_image(pdf: &[u8]) -> bool {
    pdf.windows(b"/Image".len()).any(|w| w == b"/Image")
}

/// The file of a ZIP whose path ends with `suffix`.
fn entry<'a>(files: &'a BTreeMap<String, Vec<u8>>, suffix: &str) -> Option<&'a Vec<u8>> {
    files
        .iter()
        .find(|(name, _)| name.ends_with(suffix))
        .map(|(_, bytes)| bytes)
}

fn has_content(files: &BTreeMap<String, Vec<u8>>, bytes: &[u8]) -> bool {
    files.values().any(|content| content == bytes)
}

/// The paths of a ZIP, for messages.
fn names(files: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    files.keys().collect()
}

#[tokio::test]
async fn a_pinned_replica_fetches_what_its_exports_need_once_and_puts_it_in_them() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Geology", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let (id, picture, table) = survey(&lab).await;
    let proxy = FaultProxy::start(&app.url).await;
    let laptop = pinned_replica(&proxy.url, &ada).await;
    assert!(!holds(&laptop, &picture).await && !holds(&laptop, &table).await);
    let (local_server, local) = serve_replica(&laptop).await;
    let scratch = tempfile::tempdir().unwrap();
    let mark = proxy.log().len();

    // The PDF fetches the picture and draws it.
    let pdf = download(local.get(&format!("/experiments/{id}?format=pdf")).await).await;
    let text = pdf_words(scratch.path(), "entry.pdf", &pdf);
    assert!(text.contains("Dune survey"), "{text}");
    assert!(!text.contains("[the plot"), "the picture is drawn: {text}");
    assert!(!text.contains("Not in this PDF"), "{text}");
    assert!(draws_an_image(&pdf));
    assert!(holds(&laptop, &picture).await, "fetched, verified and kept");

    // The ZIP fetches the table and holds both files, byte for byte, and no note.
    let zip = unzip(&download(local.get(&format!("/experiments/{id}?format=zip")).await).await);
    assert_eq!(
        entry(&zip, "/heights.csv"),
        Some(&table),
        "{:?}",
        names(&zip)
    );
    assert_eq!(
        entry(&zip, "/plot.png"),
        Some(&picture),
        "{:?}",
        names(&zip)
    );
    assert!(
        entry(&zip, "MISSING-FILES.txt").is_none(),
        "{:?}",
        names(&zip)
    );

    // The .eln holds both files in the entry's folder.
    let eln = unzip(&download(local.get(&format!("/experiments/{id}?format=eln")).await).await);
    assert!(has_content(&eln, &table), "{:?}", names(&eln));
    assert!(has_content(&eln, &picture), "{:?}", names(&eln));
    assert!(
        entry(&eln, "MISSING-FILES.txt").is_none(),
        "{:?}",
        names(&eln)
    );

    // Background jobs: the same, and done without a note.
    for format in ["eln", "zip", "pdf"] {
        let (job, bytes, _) =
            job_file(&local, json!({"experiments": [id], "format": format})).await;
        assert_eq!(job["note"], Value::Null, "{job}");
        if format == "pdf" {
            assert!(
                draws_an_image(&bytes),
                "the selection's PDF draws the picture"
            );
        } else {
            let files = unzip(&bytes);
            assert!(has_content(&files, &table), "{format}: {:?}", names(&files));
            assert!(
                has_content(&files, &picture),
                "{format}: {:?}",
                names(&files)
            );
        }
    }

    // Each file crossed once, however many exports needed it.
    let downloads: Vec<String> = proxy.log()[mark..]
        .iter()
        .map(|request| request.key())
        .filter(|key| key.starts_with(BLOB_GET))
        .collect();
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    for file in [&picture, &table] {
        assert!(downloads.contains(&format!("{BLOB_GET}{}", sha256(file))));
    }
    local_server.stop().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn with_the_lab_stopped_exports_on_a_replica_complete_and_name_the_files_left_out() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Geology", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let (id, picture, table) = survey(&lab).await;
    let laptop = pinned_replica(&app.url, &ada).await;
    let (local_server, local) = serve_replica(&laptop).await;
    let ui = Browser::at(&local_server.url);
    let scratch = tempfile::tempdir().unwrap();
    app.stop().await;

    // The PDF, in English over the API and in French from the entry page, says what it could
    // not show and why.
    let pdf = download(local.get(&format!("/experiments/{id}?format=pdf")).await).await;
    check_pdf(scratch.path(), "checked.pdf", &pdf, "2");
    let text = pdf_words(scratch.path(), "en.pdf", &pdf);
    assert!(
        text.contains(
            "Not in this PDF: plot.png — not on this laptop, and the lab server could not be reached"
        ),
        "{text}"
    );
    assert!(text.contains("Heights along the ridge"), "{text}");
    assert!(
        text.contains("[the plot: "),
        "named where it would be drawn: {text}"
    );
    let pdf = download(ui.get(&format!("/experiments/{id}/pdf")).await).await;
    let text = pdf_words(scratch.path(), "fr.pdf", &pdf);
    assert!(
        text.contains("Absent de ce PDF : plot.png — pas sur cet ordinateur, et le serveur du laboratoire est injoignable"),
        "{text}"
    );

    // The ZIP holds the entry's JSON and PDF, and a note naming both files instead of them.
    let zip = unzip(&download(local.get(&format!("/experiments/{id}?format=zip")).await).await);
    assert!(entry(&zip, "/export.json").is_some(), "{:?}", names(&zip));
    assert!(entry(&zip, ".pdf").is_some(), "{:?}", names(&zip));
    assert!(!has_content(&zip, &table) && !has_content(&zip, &picture));
    let note = String::from_utf8(entry(&zip, "/MISSING-FILES.txt").unwrap().clone()).unwrap();
    assert!(
        note.starts_with("Attachment files missing from this export."),
        "{note}"
    );
    for file in [
        format!(
            "heights.csv ({} B, SHA-256 {})",
            table.len(),
            sha256(&table)
        ),
        format!(
            "plot.png ({} B, SHA-256 {})",
            picture.len(),
            sha256(&picture)
        ),
    ] {
        assert!(
            note.contains(&format!(
                "Dune survey — {file}: not on this laptop, and the lab server could not be reached"
            )),
            "{note}"
        );
    }

    // The .eln from the entry page (French): the note at the top, listed in the crate as a
    // file, not as the entry's attachment; the archive still imports.
    let eln_bytes = download(ui.get(&format!("/experiments/{id}/export")).await).await;
    let eln = unzip(&eln_bytes);
    assert!(!has_content(&eln, &table) && !has_content(&eln, &picture));
    let (note_path, note) = eln
        .iter()
        .find(|(name, _)| name.ends_with("/MISSING-FILES.txt"))
        .unwrap_or_else(|| panic!("no note in {:?}", names(&eln)));
    assert_eq!(note_path.matches('/').count(), 1, "at the top: {note_path}");
    let note = String::from_utf8(note.clone()).unwrap();
    assert!(
        note.starts_with("Pièces jointes absentes de cet export."),
        "{note}"
    );
    assert!(
        note.contains("heights.csv") && note.contains("plot.png"),
        "{note}"
    );
    assert!(
        note.contains("le serveur du laboratoire est injoignable"),
        "{note}"
    );
    let metadata: Value =
        serde_json::from_slice(entry(&eln, "ro-crate-metadata.json").unwrap()).unwrap();
    let graph = metadata["@graph"].as_array().unwrap();
    let root = graph.iter().find(|node| node["@id"] == "./").unwrap();
    assert!(
        root["hasPart"]
            .as_array()
            .unwrap()
            .contains(&json!({"@id": "MISSING-FILES.txt"})),
        "{root}"
    );
    let dataset = graph
        .iter()
        .find(|node| node["@type"] == "Dataset" && node["@id"] != "./")
        .unwrap();
    assert_eq!(dataset["hasPart"], json!([]), "{dataset}");
    let (status, preview) = import(&local, "field.eln", eln_bytes, &[("dry_run", "1")]).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        preview["entries"].as_array().map(Vec::len),
        Some(1),
        "{preview}"
    );

    // Background jobs complete, and their note says what they left out.
    for format in ["eln", "zip", "pdf"] {
        let (job, bytes, _) =
            job_file(&local, json!({"experiments": [id], "format": format})).await;
        let note = job["note"].as_str().unwrap_or_else(|| panic!("{job}"));
        let expected = if format == "pdf" {
            "1 attachment file(s) left out: plot.png (not on this laptop, and the lab server could not be reached)"
        } else {
            "2 attachment file(s) left out: "
        };
        assert!(note.starts_with(expected), "{format}: {note}");
        assert!(note.contains("plot.png"), "{format}: {note}");
        assert_eq!(job["error"], Value::Null, "{job}");
        if format != "pdf" {
            let files = unzip(&bytes);
            assert!(
                entry(&files, "MISSING-FILES.txt").is_some(),
                "{:?}",
                names(&files)
            );
        }
    }
    // Asked from the Exports page (French), the job says so there.
    let exports = ui.page("/exports").await;
    assert!(exports.contains("id=\"export-jobs\""), "{exports}");
    let started = ui
        .post_form(
            "/exports",
            &[
                ("scope", "entries"),
                ("experiments", &id.to_string()),
                ("format", "zip"),
            ],
        )
        .await;
    assert_eq!(started.status(), 303);
    let mut page = String::new();
    for _ in 0..600 {
        page = ui.page("/exports").await;
        if !page.contains("data-poll") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        page.contains("Terminé: 2 pièce(s) jointe(s) laissée(s) de côté : "),
        "{page}"
    );
    // The banner says the laptop is offline.
    assert!(page.contains("class=\"replica-bar offline\""), "{page}");
    local_server.stop().await.unwrap();
}

/// A TCP server on loopback that accepts connections and never answers; its address.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn a_file_opened_while_the_lab_hangs_answers_not_on_this_laptop_within_seconds() {
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Geology", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let (id, picture, table) = survey(&lab).await;
    let laptop = pinned_replica(&app.url, &ada).await;
    // The lab's address now leads to a network that accepts and never answers.
    let hanging = HttpTransport::new(
        &silent_server().await,
        &TlsOptions::default(),
        &laptop.token,
    )
    .unwrap();
    let (local_server, local) = serve_replica_fetching(&laptop, hanging).await;
    let ui = Browser::at(&local_server.url);
    assert!(
        ui.page("/experiments")
            .await
            .contains("class=\"replica-bar\"")
    );
    let uploads = local.json(&format!("/experiments/{id}/uploads")).await;
    let upload_id = uploads
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["hash"] == sha256(&table))
        .unwrap()["id"]
        .clone();

    let started = Instant::now();
    let answer = local
        .get(&format!(
            "/experiments/{id}/uploads/{upload_id}?format=binary"
        ))
        .await;
    let waited = started.elapsed();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("not on this laptop"),
        "{body}"
    );
    assert!(
        waited >= INTERACTIVE_STALL_TIMEOUT && waited < Duration::from_secs(15),
        "gave up after {waited:?}"
    );
    let page = ui.page("/experiments").await;
    assert!(page.contains("class=\"replica-bar offline\""), "{page}");
    assert!(
        page.contains("the server sent nothing for 5 s (the network seems to hang)"),
        "the reason is given: {page}"
    );

    // A background export does not hang either: both files are asked for at once, once.
    let started = Instant::now();
    let (job, bytes, _) = job_file(&local, json!({"experiments": [id], "format": "zip"})).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the job took {:?}",
        started.elapsed()
    );
    assert!(
        job["note"]
            .as_str()
            .unwrap()
            .starts_with("2 attachment file(s) left out: "),
        "{job}"
    );
    let files = unzip(&bytes);
    assert!(
        entry(&files, "MISSING-FILES.txt").is_some(),
        "{:?}",
        names(&files)
    );
    assert!(!holds(&laptop, &picture).await);
    local_server.stop().await.unwrap();
    app.stop().await;
}

/// A loopback HTTP server that answers every request with `body`'s length as
/// `Content-Length`, then sends `body` in pieces of `piece` bytes, `pause` apart, and after
/// `sent` bytes nothing more (holding the connection open); its address.
async fn trickling_server(body: Vec<u8>, piece: usize, pause: Duration, sent: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let body = Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in body[..sent.min(body.len())].chunks(piece) {
                    tokio::time::sleep(pause).await;
                    if socket.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                // Then silence, the connection open.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(socket);
            });
        }
    });
    format!("http://{address}")
}

/// A replica's store with an encrypted file store and nothing else.
async fn file_store(dir: &Path) -> Store {
    Store::open_sqlite(&dir.join("cahier.db"), Arc::new(cahier_core::SystemClock))
        .await
        .unwrap()
        .with_encrypted_blobs(dir.join("blobs"), 64 * 1024 * 1024, [7; 32])
}

#[tokio::test]
async fn a_download_gives_up_when_nothing_comes_but_never_while_bytes_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path()).await;
    store.init_replica().await.unwrap();
    let blobs = store.blob_store().unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 249) as u8).collect();
    let hash = sha256(&body);
    let stall = Duration::from_secs(1);

    // A server that stops sending half-way: the download gives up after the stall, and leaves
    // nothing named by the hash.
    let halting = trickling_server(body.clone(), 50_000, Duration::ZERO, 100_000).await;
    let transport = HttpTransport::new(&halting, &TlsOptions::default(), "device.secret")
        .unwrap()
        .with_stall_timeout(stall);
    let started = Instant::now();
    let error = cahier_sync::fetch_file(&store, &transport, &hash)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&error, SyncError::Unreachable(m) if m.contains("sent nothing for 1 s")),
        "{error}"
    );
    assert!(!blobs.exists(&hash).await);

    // A slow server whose whole transfer lasts longer than the stall, each piece within it:
    // the file arrives whole.
    let slow = trickling_server(body.clone(), 40_000, Duration::from_millis(400), usize::MAX).await;
    let transport = HttpTransport::new(&slow, &TlsOptions::default(), "device.secret")
        .unwrap()
        .with_stall_timeout(stall);
    let started = Instant::now();
    assert!(
        cahier_sync::fetch_file(&store, &transport, &hash)
            .await
            .unwrap()
    );
    assert!(started.elapsed() > stall, "{:?}", started.elapsed());
    assert!(blobs.exists(&hash).await);
}
