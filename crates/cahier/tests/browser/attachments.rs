//! Attachments in the browser: the upload form sends through the script (progress, then the
//! list), files dropped on the page are attached, and an image pasted into the body is
//! attached and linked from the text as Markdown, which the autosave keeps.

use crate::harness::Ui;
use serde_json::json;

/// Script: a DataTransfer holding one small file.
const FILE: &str = "const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(arguments[1])], arguments[0], { type: arguments[2] }));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_uploaded_by_form_drop_and_paste() {
    let ui = Ui::launch().await;
    let ada = ui.app.user("ada@lab.fr", "Ecology", false).await;
    let key = ui.app.api_key(&ada, true).await;
    let id = ui
        .app
        .api(&key)
        .create("/experiments", json!({"title": "Gels"}))
        .await;
    ui.sign_in(&ada).await;
    ui.goto(&format!("/experiments/{id}")).await;

    // The form, sent by the script.
    ui.js(
        &format!(
            "{FILE} const input = document.getElementById('upload-files');
             input.files = dt.files; document.getElementById('upload-form').requestSubmit();"
        ),
        vec![json!("notes.txt"), json!([104, 105]), json!("text/plain")],
    )
    .await;
    ui.wait_js(
        "the uploaded file in the list",
        "[...document.querySelectorAll('#attachments td a')].some(a => a.textContent === 'notes.txt')",
    )
    .await;

    // Dropped on the page.
    ui.js(
        &format!(
            "{FILE} document.body.dispatchEvent(new DragEvent('drop', {{ dataTransfer: dt, bubbles: true, cancelable: true }}));"
        ),
        vec![json!("dropped.csv"), json!([49, 44, 50]), json!("text/csv")],
    )
    .await;
    ui.wait_js(
        "the dropped file in the list",
        "[...document.querySelectorAll('#attachments td a')].some(a => a.textContent === 'dropped.csv')",
    )
    .await;

    // An image pasted into the body: attached, linked at the cursor, saved.
    ui.js(
        &format!(
            "{FILE} const body = document.getElementById('body'); body.focus();
             body.selectionStart = body.selectionEnd = body.value.length;
             body.dispatchEvent(new ClipboardEvent('paste', {{ clipboardData: dt, bubbles: true, cancelable: true }}));"
        ),
        vec![
            json!("image.png"),
            json!([137, 80, 78, 71, 13, 10, 26, 10]),
            json!("image/png"),
        ],
    )
    .await;
    let link = ui
        .wait_js(
            "the Markdown image link in the body",
            "(document.getElementById('body').value.match(/!\\[pasted-[^\\]]*\\]\\((\\/experiments\\/\\d+\\/attachments\\/[0-9a-f]{64})\\)/) || [])[1]",
        )
        .await;
    ui.wait_js(
        "the autosave to report saved",
        "document.querySelector('#save-state').dataset.state === 'saved'",
    )
    .await;
    let link = link.as_str().unwrap().to_owned();
    let status = ui
        .js(
            "return fetch(arguments[0]).then(r => r.status + ' ' + r.headers.get('content-type'));",
            vec![json!(link)],
        )
        .await;
    assert_eq!(status, json!("200 image/png"));
    let saved = ui.app.api(&key).json(&format!("/experiments/{id}")).await;
    assert!(
        saved["body"].as_str().unwrap().contains(&link),
        "{}",
        saved["body"]
    );
    ui.screenshot("attachments-pasted").await;
    ui.js(
        "document.getElementById('attachments').scrollIntoView();",
        vec![],
    )
    .await;
    ui.screenshot("attachments-list").await;
    ui.finish().await;
}
