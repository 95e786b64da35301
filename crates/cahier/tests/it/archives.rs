//! eLabFTW's ZIP exports (`format=zip|zipa`), the one-entry CSV, and the background jobs that
//! write a ZIP or one archival PDF of a selection, over real HTTP. Archives are opened with
//! the `zip` crate, PDFs checked with qpdf and poppler as in `pdf.rs`.

use super::pdf::{check_pdf, run};
use super::uploads::{sha256, upload};
use cahier_testkit::{Api, TestApp};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;

/// Every file of a ZIP, by name.
pub(super) fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        if entry.is_dir() {
            continue;
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.insert(entry.name().unwrap().into_owned(), content);
    }
    files
}

/// Starts a background export and waits for its file (polling the job, as a client would).
pub(super) async fn job_file(api: &Api, request: Value) -> (Value, Vec<u8>, String) {
    let response = api.post("/exports", request).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut job = Value::Null;
    for _ in 0..6000 {
        job = api.json(&format!("/exports/{id}")).await;
        match job["state"].as_str().unwrap() {
            "done" => break,
            "failed" => panic!("export failed: {job}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["done"], job["total"]);
    let response = api.get(&format!("/exports/{id}?format=binary")).await;
    assert_eq!(response.status(), 200);
    let media_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (job, response.bytes().await.unwrap().to_vec(), media_type)
}

#[tokio::test]
async fn entry_zip_holds_its_json_pdf_and_attachments_under_safe_unique_names() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Soil: survey/north", "body": "Granite and basalt."}),
        )
        .await;
    let first: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let second = b"site,ph\nnorth,6.1\n".to_vec();
    let path = format!("/experiments/{id}/uploads");
    upload(&api, &path, "data.csv", first.clone()).await;
    upload(&api, &path, "DATA.csv", second.clone()).await;
    upload(&api, &path, "export.json", b"{}".to_vec()).await;

    for (format, part) in [("zip", "2"), ("zipa", "3")] {
        let response = api.get(&format!("/experiments/{id}?format={format}")).await;
        assert_eq!(response.status(), 200, "{format}");
        assert_eq!(response.headers()["content-type"], "application/zip");
        let files = unzip(&response.bytes().await.unwrap());
        let folder = format!("experiment-{id} - Soil_ survey_north");
        let names: Vec<&String> = files.keys().collect();
        assert_eq!(files.len(), 5, "{names:?}");
        assert!(files.keys().all(|n| n.starts_with(&format!("{folder}/"))));
        // The attachments, byte for byte; a name met twice (whatever its case) gets " (2)".
        let by_hash: BTreeMap<String, &String> =
            files.iter().map(|(n, b)| (sha256(b), n)).collect();
        let csv = [
            &files[&format!("{folder}/data.csv")],
            &files[&format!("{folder}/DATA (2).csv")],
        ];
        let mut hashes = [sha256(csv[0]), sha256(csv[1])];
        hashes.sort();
        let mut expected = [sha256(&first), sha256(&second)];
        expected.sort();
        assert_eq!(hashes, expected, "{names:?}");
        assert!(by_hash.contains_key(&sha256(b"{}")));
        // The JSON is the API's, and an attachment called export.json does not replace it.
        let json: Value = serde_json::from_slice(&files[&format!("{folder}/export.json")]).unwrap();
        assert_eq!(json["id"], id);
        assert_eq!(json["title"], "Soil: survey/north");
        assert_eq!(files[&format!("{folder}/export (2).json")], b"{}");
        // The PDF (PDF/A-2b for zip, 3b for zipa) passes qpdf and has the body.
        let pdf = &files[&format!("{folder}/Soil_ survey_north.pdf")];
        let dir = tempfile::tempdir().unwrap();
        let text = check_pdf(dir.path(), "entry.pdf", pdf, part);
        assert!(text.contains("Granite and basalt."), "{text}");
    }

    // One entry as CSV: a header and one row.
    let response = api.get(&format!("/experiments/{id}?format=csv")).await;
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("id,title,"), "{csv}");
    assert!(
        lines[1].starts_with(&format!("\"{id}\",\"Soil: survey/north\"")),
        "{csv}"
    );

    // Another team's reader learns nothing; a bad format is a clear 400.
    let foreign = app.api(&app.api_key(&bob, true).await);
    for format in ["zip", "zipa", "csv"] {
        let status = foreign
            .get(&format!("/experiments/{id}?format={format}"))
            .await
            .status();
        assert_eq!(status, 404, "{format}");
    }
    let response = api.get(&format!("/experiments/{id}?format=tar")).await;
    assert_eq!(response.status(), 422);
    let response = api
        .post("/exports", json!({"experiments": [id], "format": "tar"}))
        .await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["description"].as_str().unwrap().contains("zipa"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_selection_exports_as_one_archival_pdf_and_as_a_zip_in_the_background() {
    let tsa = cahier_testkit::tsa::TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", true).await;
    let api = app.api(&app.api_key(&alice, true).await);
    api.create(
        "/teams/current/resources_categories",
        json!({"title": "Instruments", "is_default": true}),
    )
    .await;
    let experiment = api
        .create(
            "/experiments",
            json!({"title": "Nitrogen cycle", "body": "| site | N |\n|---|---|\n| A | 3.2 |\n"}),
        )
        .await;
    api.create(
        &format!("/experiments/{experiment}/steps"),
        json!({"body": "Dry the samples"}),
    )
    .await;
    let stamped = api
        .patch(
            &format!("/experiments/{experiment}"),
            json!({"action": "timestamp"}),
        )
        .await;
    assert_eq!(stamped.status(), 200);
    let item = api
        .create("/items", json!({"title": "Spectrometer XR-7"}))
        .await;
    let attachment = b"calibration 2026".to_vec();
    upload(
        &api,
        &format!("/items/{item}/uploads"),
        "cal.txt",
        attachment.clone(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    // PDF/A-2b: both entries, a table of contents, renders.
    let (job, pdf, media_type) = job_file(
        &api,
        json!({"experiments": [experiment], "items": [item], "format": "pdf"}),
    )
    .await;
    assert_eq!(media_type, "application/pdf");
    assert_eq!(job["format"], "pdf");
    assert_eq!(job["total"], 2);
    let text = check_pdf(dir.path(), "selection.pdf", &pdf, "2");
    for expected in [
        "Contents",
        "Nitrogen cycle",
        "Spectrometer XR-7",
        "3.2",
        "Dry the samples",
        "cal.txt",
        sha256(&attachment).as_str(),
        "Cahier Test TSA",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(pdf.windows(b"/Outlines".len()).any(|w| w == b"/Outlines"));
    let path = dir.path().join("selection.pdf");
    run(
        "pdftoppm",
        &[
            "-png",
            "-r",
            "30",
            "-f",
            "1",
            "-l",
            "1",
            path.to_str().unwrap(),
            dir.path().join("page").to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "png"))
    );

    // PDF/A-3b carries the experiment's timestamp archive, named after the entry.
    let (_, pdf, _) = job_file(
        &api,
        json!({"experiments": [experiment], "items": [item], "format": "pdfa"}),
    )
    .await;
    check_pdf(dir.path(), "selection-3b.pdf", &pdf, "3");
    let list = run(
        "pdfdetach",
        &[
            "-list",
            dir.path().join("selection-3b.pdf").to_str().unwrap(),
        ],
    );
    assert!(list.contains(&format!("{experiment}-timestamp-")), "{list}");

    // ZIP: one folder per entry, with the attachment byte for byte.
    let (_, zip, media_type) = job_file(
        &api,
        json!({"experiments": [experiment], "items": [item], "format": "zip"}),
    )
    .await;
    assert_eq!(media_type, "application/zip");
    let files = unzip(&zip);
    let folders: std::collections::BTreeSet<&str> =
        files.keys().map(|n| n.split('/').next().unwrap()).collect();
    assert_eq!(folders.len(), 2, "{folders:?}");
    assert_eq!(
        files[&format!("resource-{item} - Spectrometer XR-7/cal.txt")],
        attachment
    );
    assert!(files.contains_key(&format!(
        "experiment-{experiment} - Nitrogen cycle/Nitrogen cycle.pdf"
    )));
    app.stop().await;
}

/// Image XObjects of a PDF, as `pdfimages -list` prints them (one line each after two of
/// header).
fn image_objects(dir: &std::path::Path, name: &str, pdf: &[u8]) -> Vec<String> {
    let path = dir.join(name);
    std::fs::write(&path, pdf).unwrap();
    run("pdfimages", &["-list", path.to_str().unwrap()])
        .lines()
        .skip(2)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_selection_pdf_holds_each_distinct_image_once() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let jpeg = {
        let mut jpeg = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_fn(300, 120, |x, y| {
            image::Rgb([(x % 256) as u8, (y * 2 % 256) as u8, 90])
        })
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
        jpeg.into_inner()
    };
    // One entry shows the picture twice; another shows the same bytes under another name.
    let twice = api
        .create(
            "/experiments",
            json!({"title": "Twice", "body": "![first](plot.jpg)\n\nThen again:\n\n![second](plot.jpg)\n"}),
        )
        .await;
    upload(
        &api,
        &format!("/experiments/{twice}/uploads"),
        "plot.jpg",
        jpeg.clone(),
    )
    .await;
    let shared = api
        .create(
            "/experiments",
            json!({"title": "Shared", "body": "![same picture](copy.jpg)\n"}),
        )
        .await;
    upload(
        &api,
        &format!("/experiments/{shared}/uploads"),
        "copy.jpg",
        jpeg.clone(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    let (_, pdf, _) = job_file(
        &api,
        json!({"experiments": [twice, shared], "format": "pdf"}),
    )
    .await;
    let images = image_objects(dir.path(), "selection.pdf", &pdf);
    assert_eq!(images.len(), 3, "three images shown: {images:?}");
    // `pdfimages -list` numbers objects: the three uses name one XObject.
    let objects: std::collections::BTreeSet<&str> = images
        .iter()
        .map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            columns[10]
        })
        .collect();
    assert_eq!(
        objects.len(),
        1,
        "one image object for one picture: {images:?}"
    );
    // The entry showing it twice, alone, also holds it once.
    let response = api.get(&format!("/experiments/{twice}?format=pdf")).await;
    assert_eq!(response.status(), 200);
    let images = image_objects(dir.path(), "one.pdf", &response.bytes().await.unwrap());
    let objects: std::collections::BTreeSet<String> = images
        .iter()
        .map(|line| {
            line.split_whitespace()
                .nth(10)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!((images.len(), objects.len()), (2, 1), "{images:?}");
}
