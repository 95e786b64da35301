//! The field test of issue #5, end to end with real processes: a lab server (`cahier serve`)
//! and two field replicas (`cahier replica init/serve/sync`) run as child processes of the
//! built binary; the replicas edit the same experiment offline (through their own local API
//! v2) while the lab edits it too (API and browser); everyone syncs; Chromium then shows the
//! merged result on the lab's web UI, and a metadata field set differently on the two
//! replicas is resolved there; the replicas get the resolved value at their next sync.
//!
//! Every child process is killed when the test ends (`Proc`'s drop), passed or failed; every
//! wait polls with a deadline.

use crate::harness::{Browser, WAIT};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cahier");
/// The replicas' passphrase, given to every child process through the environment.
const PASSPHRASE: &str = "field passphrase";
const PASSWORD: &str = "long enough password";
/// How long a process may take to answer `/healthz` (a debug build migrating a new database).
const START: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// The JavaScript condition "the save indicator says saved".
const SAVED: &str = "document.querySelector('#save-state').dataset.state === 'saved'";

/// The experiment's body as the lab writes it first: a paragraph, a table, two paragraphs.
const BODY: &str = "The buffer series for plot 4.\n\n\
    | Sample | pH |\n|---|---|\n| S1 | 6.5 |\n\n\
    Methods: titration at room temperature.\n\n\
    Notes: none yet.\n";
const LAB_INTRO: &str = "The buffer series for plot 4, prepared at the lab.";
const B_METHODS: &str = "Methods: titration at 19 °C, checked twice.";
const A_ROW: &str = "| S2 | 7.1 |";

/// A child process, killed (SIGKILL) and reaped when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Asks the process to stop (SIGTERM, so it closes its database cleanly) and waits for it;
    /// kills it if it does not stop in time.
    async fn stop(mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        // Drop kills it.
    }
}

/// Runs `cahier args` with `stdin`, asserts success, returns standard output.
fn cahier(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cahier");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for cahier");
    assert!(
        output.status.success(),
        "cahier {args:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts `cahier args` in the background, its output appended to `log`.
fn spawn(args: &[&str], log: &Path) -> Proc {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    let err = out.try_clone().expect("log handle");
    Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", PASSPHRASE)
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map(Proc)
        .expect("spawn cahier")
}

/// Polls `base/healthz` until it answers 200; fails early if `process` exits.
async fn wait_healthy(process: &mut Proc, base: &str, log: &Path) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + START;
    loop {
        if let Ok(response) = http.get(format!("{base}/healthz")).send().await
            && response.status() == 200
        {
            return;
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!(
                "{base} exited ({status}) before answering; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{base} not healthy within {START:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// An API v2 client for `base` with `key`.
fn api(base: &str, key: &str) -> cahier_testkit::Api {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        key.parse().expect("key header"),
    );
    cahier_testkit::Api {
        client: reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        base: format!("{base}/api/v2"),
    }
}

/// The lab instance: `cahier serve` on a data directory and a port that stay the same across
/// restarts.
struct Lab {
    data: String,
    port: u16,
    log: PathBuf,
    process: Option<Proc>,
}

impl Lab {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let mut process = spawn(
            &["serve", "--data", &self.data, "--listen", &listen],
            &self.log,
        );
        wait_healthy(&mut process, &self.url(), &self.log).await;
        self.process = Some(process);
    }

    async fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop().await;
        }
    }
}

/// A field replica: its data directory, and its local server while it runs.
struct Replica {
    name: &'static str,
    data: String,
    log: PathBuf,
    key: String,
    process: Option<Proc>,
    port: u16,
}

impl Replica {
    /// `replica init` against the lab for `email`, then a key for its local API.
    fn init(name: &'static str, dir: &Path, lab: &str, email: &str) -> Replica {
        let data = dir.join(name).to_str().expect("path").to_owned();
        let out = cahier(
            &[
                "replica",
                "init",
                "--server",
                lab,
                "--data",
                &data,
                "--email",
                email,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
        assert!(out.contains("replica ready"), "{name}: {out}");
        assert!(out.contains("waiting 0"), "{name}: {out}");
        let key = cahier(&["replica", "apikey", "--data", &data], "")
            .trim()
            .to_owned();
        Replica {
            name,
            log: dir.join(format!("{name}.log")),
            data,
            key,
            process: None,
            port: free_port(),
        }
    }

    /// `replica sync`: exits 0 only when both sides agree (nothing waiting, refused or
    /// missing); returns its report.
    fn sync(&self) -> String {
        let out = cahier(&["replica", "sync", "--data", &self.data], "");
        assert!(
            out.contains("(rejected 0)") && out.contains("waiting 0") && out.contains("missing 0"),
            "{}: {out}",
            self.name
        );
        out
    }

    /// Starts `replica serve` and returns a client of its local API v2.
    async fn serve(&mut self) -> cahier_testkit::Api {
        let listen = format!("127.0.0.1:{}", self.port);
        let mut process = spawn(
            &[
                "replica", "serve", "--data", &self.data, "--listen", &listen,
            ],
            &self.log,
        );
        let url = format!("http://127.0.0.1:{}", self.port);
        wait_healthy(&mut process, &url, &self.log).await;
        self.process = Some(process);
        api(&url, &self.key)
    }

    async fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop().await;
        }
    }
}

/// A small real PNG (60 × 40 pixels, RGB: a gradient, so it shows on a screenshot).
fn png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(60, 40, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 6) as u8, 200])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode png");
    bytes.into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The id at the end of a 201's `Location`.
async fn created(response: reqwest::Response, what: &str) -> i64 {
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        status,
        201,
        "{what}: {}",
        response.text().await.unwrap_or_default()
    );
    location
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no id in Location {location:?}"))
}

/// POSTs `body` to `path` and asserts 201 (for answers whose `Location` ends in a non-integer
/// id, such as stock events).
async fn post_created(api: &cahier_testkit::Api, path: &str, body: Value) {
    let response = api.post(path, body).await;
    let status = response.status();
    assert_eq!(
        status,
        201,
        "POST {path}: {}",
        response.text().await.unwrap_or_default()
    );
}

async fn ok_json(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{what}: {status} {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
    }
}

async fn attach(api: &cahier_testkit::Api, path: &str, name: &str, bytes: Vec<u8>) -> i64 {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str("image/png")
            .expect("media type"),
    );
    let response = api
        .client
        .post(format!("{}{path}", api.base))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    created(response, "upload").await
}

/// The value of metadata field `name` in an API v2 entity.
fn field_value(entity: &Value, name: &str) -> Value {
    entity["metadata_decoded"]["extra_fields"][name]["value"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_the_lab_edit_offline_sync_and_a_browser_resolves_the_conflict() {
    let dir = tempfile::Builder::new()
        .prefix("cahier-field-")
        .tempdir()
        .expect("temp dir");
    let mut lab = Lab {
        data: dir.path().join("lab").to_str().expect("path").to_owned(),
        port: free_port(),
        log: dir.path().join("lab.log"),
        process: None,
    };

    // 1. The lab: two members of one team (Ada is its admin), keys, then the server.
    for (email, name, admin) in [
        ("ada@lab.fr", "Ada Lovelace", true),
        ("bob@lab.fr", "Bob Martin", false),
    ] {
        let mut args = vec![
            "user",
            "add",
            "--data",
            &lab.data,
            "--email",
            email,
            "--name",
            name,
            "--team",
            "Ecology",
            "--password-stdin",
        ];
        if admin {
            args.push("--team-admin");
        }
        cahier(&args, &format!("{PASSWORD}\n"));
    }
    let ada_key = cahier(
        &[
            "apikey",
            "add",
            "--data",
            &lab.data,
            "--user",
            "ada@lab.fr",
            "--write",
        ],
        "",
    )
    .trim()
    .to_owned();
    lab.start().await;
    let lab_api = api(&lab.url(), &ada_key);

    // A resource category, a resource in it with stock, and the experiment everyone will edit:
    // a body with a Markdown table and a typed metadata field, writable by the team.
    let category = lab_api
        .create(
            "/teams/current/resources_categories",
            json!({"title": "Reagents", "is_default": true}),
        )
        .await;
    let ethanol = lab_api
        .create(
            "/items",
            json!({"title": "Ethanol 96 %", "category": category}),
        )
        .await;
    ok_json(
        lab_api
            .patch(
                &format!("/items/{ethanol}/stock"),
                json!({"unit": "mL", "threshold": 5}),
            )
            .await,
        "track stock",
    )
    .await;
    post_created(
        &lab_api,
        &format!("/items/{ethanol}/stock"),
        json!({"action": "adjust", "amount": 100, "note": "new bottle"}),
    )
    .await;
    let experiment = lab_api
        .create(
            "/experiments",
            json!({
                "title": "Buffer series",
                "body": BODY,
                "canwrite_base": 30,
                "metadata": {"extra_fields": {"Temperature": {
                    "type": "number", "value": "20", "unit": "°C", "units": ["°C", "K"]}}},
            }),
        )
        .await;
    let original = lab_api.json(&format!("/experiments/{experiment}")).await;
    assert_eq!(original["body"], BODY);
    assert_eq!(field_value(&original, "Temperature"), "20");
    assert_eq!(original["has_conflicts"], false);

    // 2. Two field laptops take their copy: Ada's and Bob's.
    let mut laptop_a = Replica::init("laptop-a", dir.path(), &lab.url(), "ada@lab.fr");
    let mut laptop_b = Replica::init("laptop-b", dir.path(), &lab.url(), "bob@lab.fr");

    // 3. The lab goes offline for the field (the server stops); each laptop works through its
    // own local server and API.
    lab.stop().await;
    let picture = png();
    let picture_sha = sha256_hex(&picture);
    let image_link = format!("![gel](/experiments/{experiment}/attachments/{picture_sha})");
    let (new_kit, new_trial) = {
        let local = laptop_a.serve().await;
        let copy = local.json(&format!("/experiments/{experiment}")).await;
        assert_eq!(copy["body"], BODY, "laptop A holds the lab's text");
        // A picture of the gel, attached and shown in the body below a new row of the table.
        attach(
            &local,
            &format!("/experiments/{experiment}/uploads"),
            "gel.png",
            picture.clone(),
        )
        .await;
        let body_a = format!(
            "{}\n\n{image_link}\n",
            BODY.replace("| S1 | 6.5 |\n", &format!("| S1 | 6.5 |\n{A_ROW}\n"))
                .trim_end()
        );
        ok_json(
            local
                .patch(
                    &format!("/experiments/{experiment}"),
                    json!({"body": body_a}),
                )
                .await,
            "laptop A: body",
        )
        .await;
        // A new resource and a new experiment that links to it, both made offline.
        let kit = local
            .create(
                "/items",
                json!({"title": "Field buffer kit", "category": category}),
            )
            .await;
        let trial = local
            .create(
                "/experiments",
                json!({"title": "Field trial made offline", "body": "Uses the new kit."}),
            )
            .await;
        assert!(
            kit >= 1_000_000_000 && trial >= 1_000_000_000,
            "offline entries get local ids: {kit}, {trial}"
        );
        let linked = local
            .post(
                &format!("/experiments/{trial}/items_links/{kit}"),
                json!({}),
            )
            .await;
        assert_eq!(linked.status(), 201, "{}", linked.text().await.unwrap());
        // Ethanol used for the new trial.
        post_created(
            &local,
            &format!("/items/{ethanol}/stock"),
            json!({"action": "consume", "amount": 2.5, "unit": "mL",
                       "experiment": trial, "note": "field trial"}),
        )
        .await;
        ok_json(
            local
                .patch(
                    &format!("/experiments/{experiment}"),
                    json!({"action": "updatemetadatafield", "Temperature": "21.5"}),
                )
                .await,
            "laptop A: field",
        )
        .await;
        laptop_a.stop().await;
        (kit, trial)
    };
    {
        let local = laptop_b.serve().await;
        let copy = local.json(&format!("/experiments/{experiment}")).await;
        assert_eq!(copy["body"], BODY, "laptop B holds the lab's text");
        ok_json(
            local
                .patch(
                    &format!("/experiments/{experiment}"),
                    json!({"body": BODY.replace("Methods: titration at room temperature.", B_METHODS)}),
                )
                .await,
            "laptop B: body",
        )
        .await;
        ok_json(
            local
                .patch(
                    &format!("/experiments/{experiment}"),
                    json!({"action": "updatemetadatafield", "Temperature": "19"}),
                )
                .await,
            "laptop B: field",
        )
        .await;
        laptop_b.stop().await;
    }

    // Back at the lab (same data, same port): the API edits another paragraph and records a
    // consumption; Ada renames the experiment in her browser.
    lab.start().await;
    ok_json(
        lab_api
            .patch(
                &format!("/experiments/{experiment}"),
                json!({"body": BODY.replace("The buffer series for plot 4.", LAB_INTRO)}),
            )
            .await,
        "lab: body",
    )
    .await;
    post_created(
        &lab_api,
        &format!("/items/{ethanol}/stock"),
        json!({"action": "consume", "amount": 1, "note": "lab titration"}),
    )
    .await;
    let browser = Browser::launch(&lab.url()).await;
    browser.sign_in_as("ada@lab.fr", PASSWORD).await;
    let page = format!("/experiments/{experiment}");
    browser.goto(&page).await;
    browser
        .find("#title")
        .await
        .clear()
        .await
        .expect("clear title");
    browser.type_into("#title", "Buffer series, plot 4").await;
    browser.wait_js("the autosave to report saved", SAVED).await;

    // 4. Everyone syncs, twice, so each laptop also receives what the other pushed.
    let a1 = laptop_a.sync();
    assert!(
        a1.contains("files sent 1"),
        "laptop A sends the picture: {a1}"
    );
    let b1 = laptop_b.sync();
    laptop_a.sync();
    let b2 = laptop_b.sync();
    assert!(b2.contains("pushed 0"), "nothing left to send: {b1} / {b2}");

    // 5. The lab holds everything.
    let merged = lab_api.json(&page).await;
    let expected_body = format!(
        "{LAB_INTRO}\n\n| Sample | pH |\n|---|---|\n| S1 | 6.5 |\n{A_ROW}\n\n\
         {B_METHODS}\n\nNotes: none yet.\n\n{image_link}\n"
    );
    assert_eq!(
        merged["body"].as_str().unwrap(),
        expected_body,
        "the three body edits merge"
    );
    assert_eq!(merged["title"], "Buffer series, plot 4");
    assert_eq!(
        merged["has_conflicts"], true,
        "the field set to 21.5 on one laptop and 19 on the other is a conflict"
    );

    let trials = lab_api.json("/experiments?q=offline&limit=10").await;
    let trials = trials.as_array().expect("list");
    assert_eq!(trials.len(), 1, "{trials:?}");
    let trial_id = trials[0]["id"].as_i64().expect("integer id");
    assert!(
        trial_id < 1_000_000_000,
        "the lab gives the offline experiment its own id: {trial_id}"
    );
    let trial = lab_api.json(&format!("/experiments/{trial_id}")).await;
    let links = trial["items_links"].as_array().expect("links");
    assert_eq!(links.len(), 1, "{links:?}");
    let kit_id = links[0]["entityid"].as_i64().expect("integer id");
    assert!(kit_id < 1_000_000_000, "{kit_id}");
    assert_eq!(links[0]["title"], "Field buffer kit");
    let kit = lab_api.json(&format!("/items/{kit_id}")).await;
    assert_eq!(kit["title"], "Field buffer kit");
    assert_eq!(kit["category"], category);
    assert_eq!(kit["related_experiments_links"][0]["entityid"], trial_id);
    assert!(new_kit != kit_id && new_trial != trial_id);

    let uploads = lab_api.json(&format!("{page}/uploads")).await;
    let gel = uploads
        .as_array()
        .expect("uploads")
        .iter()
        .find(|u| u["real_name"] == "gel.png")
        .unwrap_or_else(|| panic!("the picture reached the lab: {uploads}"));
    assert_eq!(gel["hash"], picture_sha.as_str());
    let bytes = lab_api
        .get(&format!("{page}/uploads/{}?format=binary", gel["id"]))
        .await
        .bytes()
        .await
        .expect("download");
    assert_eq!(
        bytes.as_ref(),
        picture.as_slice(),
        "the picture, byte for byte"
    );

    let stock = lab_api.json(&format!("/items/{ethanol}/stock")).await;
    assert_eq!(
        stock["quantity"], 96.5,
        "100 − 2.5 (field) − 1 (lab): {stock}"
    );
    let field_use = stock["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["note"] == "field trial")
        .unwrap_or_else(|| panic!("the field consumption reached the lab: {stock}"));
    assert_eq!(field_use["amount"], 2.5);
    assert_eq!(
        field_use["experiment"], trial_id,
        "the consumption names the offline experiment by its lab id"
    );

    // 6. Ada's browser shows the merged entry and the conflict, and she resolves it.
    browser.goto(&page).await;
    browser
        .wait_js(
            "the table row from laptop A in the preview",
            "[...document.querySelectorAll('#preview table td')].some(td => td.textContent.trim() === 'S2')",
        )
        .await;
    let preview = browser.find("#preview").await.text().await.expect("text");
    assert!(
        preview.contains(LAB_INTRO) && preview.contains(B_METHODS),
        "both paragraphs: {preview}"
    );
    browser
        .wait_js(
            "the picture to load in the preview",
            &format!(
                "[...document.querySelectorAll('#preview img')].some(i => \
                 i.getAttribute('src').endsWith('{picture_sha}') && i.complete && i.naturalWidth === 60)"
            ),
        )
        .await;
    let conflict = "#conflicts .conflict[data-field='field:Temperature']";
    let values = browser
        .js(
            "return [...document.querySelectorAll(arguments[0] + ' .conflict-value')]
                .map(v => v.textContent.trim());",
            vec![json!(conflict)],
        )
        .await;
    assert_eq!(values, json!(["19", "21.5"]), "both laptops' values");
    browser
        .js(
            "document.getElementById('conflicts').scrollIntoView();",
            vec![],
        )
        .await;
    browser.screenshot("field-test-conflict").await;
    // Keep the value the field already shows (which of the two that is depends on the
    // laptops' random actor ids): the harder case, since writing a value equal to the visible
    // one must still settle the conflict.
    let field_input = "#fields .field[data-field='Temperature'] input";
    let kept = browser
        .js(
            "return document.querySelector(arguments[0]).value;",
            vec![json!(field_input)],
        )
        .await;
    let kept = kept.as_str().expect("field value").to_owned();
    assert!(
        kept == "19" || kept == "21.5",
        "the field shows one of them: {kept}"
    );
    browser
        .click(&format!(
            "{conflict} form:has(input[name=value][value='{kept}']) button[type=submit]"
        ))
        .await;
    browser
        .wait_js(
            "the page without the conflict",
            "document.readyState === 'complete' && document.getElementById('conflicts') === null \
             && document.getElementById('fields') !== null",
        )
        .await;
    let shown = browser
        .js(
            "return document.querySelector(arguments[0]).value;",
            vec![json!(field_input)],
        )
        .await;
    assert_eq!(shown, kept.as_str(), "the page shows the value kept");
    browser
        .js(
            "document.getElementById('fields').scrollIntoView();",
            vec![],
        )
        .await;
    browser.screenshot("field-test-resolved").await;
    let resolved = lab_api.json(&page).await;
    assert_eq!(resolved["has_conflicts"], false);
    assert_eq!(field_value(&resolved, "Temperature"), kept.as_str());
    assert_eq!(resolved["body"].as_str().unwrap(), expected_body);

    // Both laptops receive the choice and agree with the lab.
    laptop_a.sync();
    laptop_b.sync();
    let lab_heads = lab_api.json(&page).await["heads"].clone();
    for laptop in [&mut laptop_a, &mut laptop_b] {
        let local = laptop.serve().await;
        let copy = local.json(&page).await;
        assert_eq!(copy["has_conflicts"], false, "{}", laptop.name);
        assert_eq!(
            field_value(&copy, "Temperature"),
            kept.as_str(),
            "{}",
            laptop.name
        );
        assert_eq!(
            copy["body"].as_str().unwrap(),
            expected_body,
            "{}",
            laptop.name
        );
        assert_eq!(
            copy["heads"], lab_heads,
            "{} agrees with the lab",
            laptop.name
        );
        laptop.stop().await;
    }

    browser.finish().await;
    lab.stop().await;
}
