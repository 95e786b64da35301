//! The Exports page in the browser: a user starts a team export as one archival PDF; the page
//! shows the running job and, without being reloaded, its progress and then its download link.

use crate::harness::Ui;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exports_page_shows_the_download_link_when_the_job_finishes_without_a_reload() {
    let ui = Ui::launch().await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;
    let api = ui.app.api(&ui.app.api_key(&ada, true).await);
    // Enough entries that the job is still running when the page first shows.
    let body = "| site | pH |\n|---|---|\n| A | 6.5 |\n\nSome notes on the sampling.\n".repeat(20);
    for n in 0..30 {
        api.create(
            "/experiments",
            json!({"title": format!("Relevé {n}"), "body": body}),
        )
        .await;
    }

    ui.sign_in(&ada).await;
    ui.goto("/exports").await;
    ui.js(
        "document.getElementById('export-format').value = 'pdf';",
        vec![],
    )
    .await;
    ui.click("#export-team").await;
    ui.wait_path("^/exports$").await;
    ui.wait_js(
        "the job row",
        "document.querySelector('#export-jobs tr[data-job]') !== null",
    )
    .await;
    // The page polls while a job runs; nothing is there to download yet.
    let polling = ui
        .js(
            "return document.querySelector('#export-jobs[data-poll]') !== null
                && document.querySelector('#export-jobs .job-download a') === null;",
            vec![],
        )
        .await;
    assert_eq!(
        polling,
        Value::Bool(true),
        "the job finished before the page showed"
    );
    ui.js("window.__sameDocument = true;", vec![]).await;

    // Up to a minute (a debug build under load lays out 30 entries slowly).
    let mut link = Value::Null;
    for _ in 0..600 {
        link = ui
            .js(
                "const a = document.querySelector('#export-jobs .job-download a');
                 return a && window.__sameDocument ? a.getAttribute('href') : null;",
                vec![],
            )
            .await;
        if !link.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if link.is_null() {
        let table = ui.find("#export-jobs").await.text().await.unwrap();
        let jobs = api.json("/exports").await;
        panic!("no download link on the same page: {table}\njobs: {jobs}");
    }
    let href = link.as_str().unwrap();
    assert!(
        href.starts_with("/exports/") && href.ends_with("/download"),
        "{href}"
    );
    let progress = ui
        .find("#export-jobs .job-progress span")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(progress, "30/30");
    let state = ui
        .find("#export-jobs .job-state")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(state, "Terminé", "{state}");
    ui.screenshot("exports-done").await;

    // The link gives the PDF.
    let job: i64 = href.split('/').nth(2).unwrap().parse().unwrap();
    let response = api.get(&format!("/exports/{job}?format=binary")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    ui.finish().await;
}
