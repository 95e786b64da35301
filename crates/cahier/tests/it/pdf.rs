//! Archival PDF of an entity over real HTTP (`?format=pdf|pdfa`, the page's download link),
//! checked with outside tools as an archivist would: `qpdf --check` for the file's structure,
//! the XMP metadata for the PDF/A claim, `pdftoppm` for rendering and `pdftotext` for content.
//! These tools come from the `qpdf` and `poppler-utils` packages (`.ci/run` installs them).

use super::uploads::{sha256, upload};
use cahier_testkit::{Api, TestApp};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// A small PNG with a colour gradient (so that a rendered page is visibly not blank).
pub(super) fn png() -> Vec<u8> {
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(200, 100, |x, y| {
        image::Rgb([(x % 256) as u8, (y * 2 % 256) as u8, 40])
    })
    .write_to(&mut png, image::ImageFormat::Png)
    .unwrap();
    png.into_inner()
}

async fn pdf_of(api: &Api, path: &str) -> Vec<u8> {
    let response = api.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "application/pdf");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert!(disposition.ends_with(".pdf\""), "{disposition}");
    response.bytes().await.unwrap().to_vec()
}

pub(super) fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (qpdf, poppler-utils): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes `pdf`, checks its structure and PDF/A claim, and returns its text.
pub(super) fn check_pdf(dir: &Path, name: &str, pdf: &[u8], part: &str) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let xmp = String::from_utf8_lossy(pdf);
    assert!(
        xmp.contains(&format!("<pdfaid:part>{part}</pdfaid:part>"))
            || xmp.contains(&format!("pdfaid:part=\"{part}\"")),
        "no PDF/A-{part} claim in the XMP metadata"
    );
    assert!(
        xmp.contains("<pdfaid:conformance>B</pdfaid:conformance>")
            || xmp.contains("pdfaid:conformance=\"B\""),
        "no conformance B in the XMP metadata"
    );
    let path = dir.join(name);
    std::fs::write(&path, pdf).unwrap();
    let path = path.to_str().unwrap();
    run("qpdf", &["--check", path]);
    run("pdftotext", &["-layout", path, "-"])
}

#[tokio::test]
async fn experiment_pdf_is_pdfa_with_body_table_image_steps_fields_and_hashes() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create(
            "/experiments",
            json!({"title": "Soil survey north", "tags": ["soil", "ph"],
                   "metadata": r#"{"extra_fields": {"Depth": {"type": "number", "value": "12", "unit": "cm"}}}"#}),
        )
        .await;
    let image = png();
    let hash = sha256(&image);
    upload(
        &api,
        &format!("/experiments/{id}/uploads"),
        "plot.png",
        image,
    )
    .await;
    let body = format!(
        "## Samples\n\n| Site | Rock |\n|---|---|\n| North | Granite |\n| South | Basalt |\n\n\
         ![the plot](/experiments/{id}/attachments/{hash})\n\nSome *emphasis* and `code`.\n"
    );
    assert_eq!(
        api.patch(&format!("/experiments/{id}"), json!({"body": body}))
            .await
            .status(),
        200
    );
    api.create(
        &format!("/experiments/{id}/steps"),
        json!({"body": "Weigh the samples"}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdf")).await;
    let text = check_pdf(dir.path(), "a2b.pdf", &pdf, "2");
    for expected in [
        "Soil survey north",
        "Granite",
        "Basalt",
        "Weigh the samples",
        "Depth",
        "12 cm",
        "ph, soil",
        "alice",
        hash.as_str(),
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    // The image is drawn (not replaced by its name).
    assert!(!text.contains("[the plot"), "{text}");
    assert!(pdf.windows(b"/Image".len()).any(|w| w == b"/Image"));

    // Page 1 renders, and is not blank.
    let prefix = dir.path().join("page");
    run(
        "pdftoppm",
        &[
            "-png",
            "-r",
            "50",
            "-f",
            "1",
            "-l",
            "1",
            dir.path().join("a2b.pdf").to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    let page = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .expect("a rendered page");
    let page = image::open(page).unwrap().to_rgb8();
    let dark = page
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c < 128))
        .count();
    assert!(dark > 100, "page 1 looks blank ({dark} dark pixels)");

    // PDF/A-3b for the variant with proofs.
    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdfa")).await;
    let text = check_pdf(dir.path(), "a3b.pdf", &pdf, "3");
    assert!(text.contains("Soil survey north"));

    // Another team's reader learns nothing, like every other read.
    let foreign = app.api(&app.api_key(&bob, true).await);
    assert_eq!(
        foreign
            .get(&format!("/experiments/{id}?format=pdf"))
            .await
            .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn typst_syntax_in_user_text_prints_literally() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let hostile = "#import \"x\": *\n\n#panic(\"boom\")\n\n$x^2$ <label> @ref [a] \\ = b\n\n- #read(\"/etc/passwd\")\n\n```\n#panic()\n```\n\n<b>raw html</b> 😀 漢字";
    let id = api
        .create(
            "/experiments",
            json!({"title": "#set page(width: 1pt) \"quoted\" \\", "body": hostile, "tags": ["#tag"]}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdf")).await;
    let text = check_pdf(dir.path(), "hostile.pdf", &pdf, "2");
    for expected in [
        "#set page(width: 1pt) \"quoted\" \\",
        "#import \"x\": *",
        "#panic(\"boom\")",
        "$x^2$",
        "#read(\"/etc/passwd\")",
        "#panic()",
        "raw html",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(!text.contains("root:"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn the_entity_page_links_to_its_pdf_under_the_page_access_check() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Physics", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Page download"}))
        .await;
    let browser = app.browser(&alice).await;
    let page = browser.page(&format!("/experiments/{id}")).await;
    assert!(
        page.contains(&format!("href=\"/experiments/{id}/pdf\"")),
        "{page}"
    );
    let response = browser.get(&format!("/experiments/{id}/pdf")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert!(response.bytes().await.unwrap().starts_with(b"%PDF-"));

    let other = app.browser(&bob).await;
    assert_eq!(
        other.get(&format!("/experiments/{id}/pdf")).await.status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn pdfa_3b_carries_the_timestamp_proof_archive_and_pdfa_2b_does_not() {
    let tsa = cahier_testkit::tsa::TestTsa::start().await;
    let app = TestApp::spawn_with_tsa(Some(tsa.config())).await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Stamped record"}))
        .await;
    let response = api
        .patch(
            &format!("/experiments/{id}"),
            json!({"action": "timestamp"}),
        )
        .await;
    assert_eq!(response.status(), 200);

    let dir = tempfile::tempdir().unwrap();
    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdfa")).await;
    let text = check_pdf(dir.path(), "a3b.pdf", &pdf, "3");
    assert!(text.contains("Cahier Test TSA"), "{text}");
    let path = dir.path().join("a3b.pdf");
    let list = run("pdfdetach", &["-list", path.to_str().unwrap()]);
    assert!(list.contains("1 embedded files"), "{list}");
    assert!(list.contains(".zip"), "{list}");
    // The proof inside is the stored archive, byte for byte.
    let out = dir.path().join("proof.zip");
    run(
        "pdfdetach",
        &[
            "-save",
            "1",
            "-o",
            out.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    let uploads = api.json(&format!("/experiments/{id}/uploads")).await;
    assert_eq!(
        sha256(&std::fs::read(&out).unwrap()),
        uploads[0]["hash"].as_str().unwrap()
    );

    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdf")).await;
    let text = check_pdf(dir.path(), "a2b.pdf", &pdf, "2");
    assert!(text.contains("Cahier Test TSA"), "{text}");
    let list = run(
        "pdfdetach",
        &["-list", dir.path().join("a2b.pdf").to_str().unwrap()],
    );
    assert!(list.contains("0 embedded files"), "{list}");
    app.stop().await;
}

/// A signed entry's PDF lists the signature, and its PDF/A-3b carries the signed export, the
/// signature and the public key, which `minisign -V` verifies once detached.
#[tokio::test]
async fn signatures_are_listed_and_pdfa_3b_carries_what_minisign_verifies() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let browser = app.browser(&alice).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let id = api
        .create("/experiments", json!({"title": "Signed record"}))
        .await;
    super::signatures::sign_with_a_new_key(&browser, &api, id, 20).await;

    let dir = tempfile::tempdir().unwrap();
    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdfa")).await;
    let text = check_pdf(dir.path(), "signed.pdf", &pdf, "3");
    assert!(text.contains("alice Test"), "{text}");
    let path = dir.path().join("signed.pdf");
    let list = run("pdfdetach", &["-list", path.to_str().unwrap()]);
    assert!(list.contains("3 embedded files"), "{list}");
    run(
        "pdfdetach",
        &[
            "-saveall",
            "-o",
            dir.path().to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    let named = |suffix: &str| {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap()
    };
    super::signatures::minisign_verifies(
        &named("-key.pub"),
        &named("-export.json"),
        &named("-export.json.minisig"),
    );
    app.stop().await;
}

/// Offline honesty: an entry written on a field replica shows, in its archival PDF and in its
/// `.eln` export, the device's clock marked as not proven beside the server's receive time.
#[tokio::test]
async fn content_captured_offline_shows_device_time_as_unproven_beside_the_receive_time() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let api = app.api(&app.api_key(&alice, true).await);
    let (laptop, _) = super::sync_blobs::replica(&app, &alice).await;
    let subject = laptop.store.subject(alice.id).await.unwrap();
    laptop
        .store
        .create_entity(
            &subject,
            cahier_store::NewEntity {
                kind: cahier_core::EntityKind::Experiment,
                team_id: alice.team_id,
                canread: None,
                canwrite: None,
                patch: cahier_core::EntityPatch {
                    title: Some("Sampling at the river".into()),
                    body: Some("Water at 12 °C.".into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .unwrap();
    let report = laptop.sync().await;
    assert_eq!(report.rejected, 0, "{report:?}");
    let list = api.json("/experiments?q=river").await;
    let id = list[0]["id"].as_i64().unwrap();
    // A second entry made on the server has no such line.
    let server_id = api
        .create("/experiments", json!({"title": "Made at the lab"}))
        .await;

    let dir = tempfile::tempdir().unwrap();
    let pdf = pdf_of(&api, &format!("/experiments/{id}?format=pdf")).await;
    let text = check_pdf(dir.path(), "offline.pdf", &pdf, "2").replace('\n', " ");
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("Captured offline: "), "{flat}");
    assert!(flat.contains("not proven"), "{flat}");
    assert!(flat.contains("received by the server"), "{flat}");
    let pdf = pdf_of(&api, &format!("/experiments/{server_id}?format=pdf")).await;
    let text = check_pdf(dir.path(), "server.pdf", &pdf, "2");
    assert!(!text.contains("Captured offline"), "{text}");

    // The .eln export lists each version with its device, the device's clock marked unproven,
    // and the server's receive time.
    let response = api.get(&format!("/experiments/{id}?format=eln")).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let name = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().unwrap().into_owned())
        .find(|n| n.ends_with("ro-crate-metadata.json"))
        .unwrap();
    let mut metadata = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(&name).unwrap(), &mut metadata).unwrap();
    let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
    let dataset = metadata["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "Sampling at the river")
        .unwrap();
    let history: Vec<serde_json::Value> =
        serde_json::from_str(dataset["cahier:history"].as_str().unwrap()).unwrap();
    assert!(!history.is_empty());
    assert_eq!(history[0]["captured_offline"], true, "{history:?}");
    assert_eq!(history[0]["device_time_proven"], false);
    assert_ne!(history[0]["device"], "server");
    assert!(history[0]["device_time"].as_str().unwrap().ends_with('Z'));
    assert!(history[0]["received_at"].as_str().is_some());
    app.stop().await;
}
