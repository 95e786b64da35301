//! `.eln` exchange over the API: `GET /{experiments|items}/{id}?format=eln` (one entity, at
//! once), `GET|POST /exports` and `GET /exports/{id}[?format=binary]` (background exports of
//! a selection, a user's or a team's notebook), `POST /import` (multipart `file`,
//! with `team`, `target` = `experiments`|`items`, `category`, and `dry_run=1` for a preview).
//! Handlers are thin: the store reads through the access policy and imports in one
//! transaction; this module only moves bytes between HTTP and temporary files.
//!
//! Temporary archives live in the blob store's `tmp` folder (the orphan sweep removes any a
//! crash leaves behind). An export file is unlinked as soon as it is opened for the response.
//! Export files are written through `BlobStore::content_sink` and read back with
//! `open_content`: on a field replica they are sealed with the replica's key on disk and
//! decrypted only as they stream to the user.

use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::offline_files::{MissingFiles, NeededFile, fetch_for_export};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::handler::Handler;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cahier_core::clock::format_sql_datetime;
use cahier_core::{EntityKind, Subject};
use cahier_store::Store;
use cahier_store::eln_import::ImportOptions;
use cahier_store::export_jobs::{ExportJob, ExportScope};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;

use super::openapi::{Documented, Op, integer, list_of, object, schema, string};

pub(super) fn routes() -> Documented {
    let ids = || json!({"type": "array", "items": {"type": "integer"}});
    Documented::new()
        .route(
            "exchange",
            "/exports",
            get(list_exports).post(create_export),
            vec![
                Op::get("Your background exports", list_of("ExportJob")),
                Op::post(
                    "Start a background export (.eln, eLabFTW's zip/zipa, or one PDF/A of the selection)",
                )
                .body(object(&[
                    ("experiments", ids()),
                    ("items", ids()),
                    ("user", integer()),
                    ("team", integer()),
                    ("query", string()),
                    (
                        "format",
                        json!({"type": "string", "enum": cahier_store::export_jobs::EXPORT_FORMATS}),
                    ),
                ])),
            ],
        )
        .route(
            "exchange",
            "/exports/{id}",
            get(read_export),
            vec![
                Op::get_file("An export, or its file once done", schema("ExportJob"))
                    .also(cahier_eln::MEDIA_TYPE)
                    .also("application/zip")
                    .also("application/pdf"),
            ],
        )
        .route(
            "exchange",
            "/exports/dmp",
            get(team_dmp),
            vec![
                Op::get(
                    "A team's datasets as a maDMP (RDA DMP Common Standard 1.2)",
                    json!({"type": "object"}),
                )
                .query(&[("team", integer())]),
            ],
        )
        .route(
            "exchange",
            "/import",
            post(import.layer(DefaultBodyLimit::disable())),
            vec![
                Op::post("Import an .eln archive (dry_run=1 previews)")
                    .multipart()
                    .answers("200", schema("ImportReport"))
                    .answers("201", schema("ImportReport")),
            ],
        )
}

fn tmp_dir(store: &Store) -> Result<PathBuf, AppError> {
    Ok(store.blob_store()?.root().join("tmp"))
}

/// The attachment files the `.eln` of `ids` reads: every attachment of each entry, archived
/// ones included.
pub(crate) async fn eln_files(
    app: &AppState,
    subject: &Subject,
    ids: &[i64],
) -> Result<Vec<NeededFile>, AppError> {
    let mut needed = Vec::new();
    for id in ids {
        let uploads = app.store.uploads(subject, *id, true).await?;
        needed.extend(uploads.iter().map(NeededFile::of));
    }
    Ok(needed)
}

/// The archive of `ids` (in order) as a download named `name`. On a field replica the files
/// it needs and the laptop lacks are fetched first; those it cannot get are named, with why
/// (in `lang`), in the archive's `MISSING-FILES.txt`.
pub(crate) async fn eln_response(
    app: &AppState,
    subject: &Subject,
    ids: &[i64],
    name: &str,
    lang: Lang,
) -> Result<Response, AppError> {
    let store = &app.store;
    let missing = if app.replica.is_some() {
        fetch_for_export(app, eln_files(app, subject, ids).await?, lang).await
    } else {
        MissingFiles::none(lang)
    };
    let dir = tmp_dir(store)?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| AppError::internal(&e))?;
    let path = dir.join(format!(
        "export-{}.eln",
        hex::encode(rand::random::<[u8; 16]>())
    ));
    // Through the blob store: sealed with the replica's key on a field replica.
    let blobs = store.blob_store()?;
    let file = std::fs::File::create(&path).map_err(|e| AppError::internal(&e))?;
    let sink = blobs
        .content_sink(file)
        .map_err(|e| AppError::internal(&e))?;
    let written = match store
        .export_eln_stream(subject, ids, sink, "Cahier", &missing.left_out(), |_| {})
        .await
    {
        Ok(sink) => sink.finish().map_err(|e| AppError::internal(&e)),
        Err(error) => Err(error.into()),
    };
    if let Err(error) = written {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(error);
    }
    let reader = blobs.open_content(&path).await;
    // The open handle keeps the content readable; nothing is left on disk.
    let _ = tokio::fs::remove_file(&path).await;
    let reader = reader.map_err(|e| AppError::internal(&e))?;
    let size = reader.remaining();
    let (target_type, target_id) = match ids {
        [one] => ("entity", one.to_string()),
        _ => ("entities", format!("{} entries", ids.len())),
    };
    crate::audit_trail::exported(
        store,
        subject.user_id,
        target_type,
        target_id,
        serde_json::json!({"format": "eln", "ids": ids.iter().take(100).collect::<Vec<_>>(), "bytes": size}),
    )
    .await;
    Ok(content_response(reader, name, cahier_eln::MEDIA_TYPE))
}

/// Streams a file of user content (opened with `BlobStore::open_content`, so decrypted on a
/// replica) as an attachment download.
pub(crate) fn content_response(
    reader: cahier_store::blobs::BlobReader,
    name: &str,
    media_type: &str,
) -> Response {
    let size = reader.remaining();
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        match reader.next_chunk().await {
            Ok(None) => None,
            Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), reader)),
            Err(error) => Some((Err(std::io::Error::other(error.to_string())), reader)),
        }
    });
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, media_type.to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /{experiments|items}/{id}?format=eln`.
pub(crate) async fn entity_eln(
    app: &AppState,
    caller: &ApiCaller,
    kind: EntityKind,
    id: i64,
) -> Result<Response, AppError> {
    let row = app.store.entity_of_kind(&caller.subject, kind, id).await?;
    let name = format!("{}-{}.eln", row.kind.as_str(), row.id);
    eln_response(app, &caller.subject, &[id], &name, Lang::En).await
}

/// `POST /exports`: `{"experiments": [ids], "items": [ids], "user": id, "team": id, "query": q}` starts a
/// background export; 201 with `Location: /api/v2/exports/{id}`.
async fn create_export(
    State(app): State<AppState>,
    caller: ApiCaller,
    body: Bytes,
) -> Result<Response, AppError> {
    let scope: ExportScope = serde_json::from_slice(&body).map_err(|e| {
        AppError::BadRequest(format!(
            "expected {{\"experiments\": [ids], \"items\": [ids], \"user\": id, \"team\": id, \"format\": \"eln\"}}: {e}"
        ))
    })?;
    let format = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("format").cloned())
        .unwrap_or(serde_json::Value::Null);
    let format = match &format {
        serde_json::Value::Null => "eln",
        serde_json::Value::String(f) => f.as_str(),
        _ => return Err(AppError::invalid("format", "expected a string")),
    };
    let id = start_export(&app, &caller.subject, &scope, format, crate::i18n::Lang::En).await?;
    let location = format!(
        "{}/api/v2/exports/{id}",
        app.config.public_url.trim_end_matches('/')
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(json!({ "id": id })),
    )
        .into_response())
}

/// Records an export job and runs it in the background; returns its id.
pub(crate) async fn start_export(
    app: &AppState,
    subject: &Subject,
    scope: &ExportScope,
    format: &str,
    lang: crate::i18n::Lang,
) -> Result<i64, AppError> {
    let id = app
        .store
        .create_export_job_as(subject, scope, format)
        .await?;
    crate::audit_trail::exported(
        &app.store,
        subject.user_id,
        "export",
        id,
        serde_json::json!({"format": format, "scope": scope}),
    )
    .await;
    // The outcome is in the job's row (and logged); nobody waits on this task.
    tokio::spawn(super::archive::run_job(
        app.clone(),
        subject.clone(),
        id,
        lang,
    ));
    Ok(id)
}

fn job_json(job: &ExportJob) -> serde_json::Value {
    json!({
        "id": job.id, "scope": job.scope, "format": job.format, "state": job.state,
        "total": job.total, "done": job.done, "file_size": job.file_size, "error": job.error,
        "note": job.note,
        "created_at": format_sql_datetime(job.created_at),
        "finished_at": job.finished_at.map(format_sql_datetime),
    })
}

/// `GET /exports`: the caller's export jobs, newest first.
async fn list_exports(
    State(app): State<AppState>,
    caller: ApiCaller,
) -> Result<Response, AppError> {
    let jobs = app.store.export_jobs(&caller.subject).await?;
    Ok(axum::Json(jobs.iter().map(job_json).collect::<Vec<_>>()).into_response())
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    format: Option<String>,
}

/// `GET /exports/{id}`: the job; with `?format=binary`, its file once done.
async fn read_export(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, AppError> {
    let id: i64 = id
        .parse()
        .map_err(|_| AppError::NotFound("export".into()))?;
    if query.format.as_deref() == Some("binary") {
        return export_download(&app.store, &caller.subject, id).await;
    }
    let job = app.store.export_job(&caller.subject, id).await?;
    Ok(axum::Json(job_json(&job)).into_response())
}

/// The finished file of an export job, as a download.
pub(crate) async fn export_download(
    store: &Store,
    subject: &Subject,
    id: i64,
) -> Result<Response, AppError> {
    let job = store.export_job(subject, id).await?;
    let reader = store.open_export_job_file(subject, id).await?;
    let extension = cahier_store::export_jobs::export_extension(&job.format);
    let media_type = match extension {
        "zip" => "application/zip",
        "pdf" => "application/pdf",
        _ => cahier_eln::MEDIA_TYPE,
    };
    Ok(content_response(
        reader,
        &format!("cahier-export-{id}.{extension}"),
        media_type,
    ))
}

/// A received archive waiting in the temporary folder; removed when dropped.
pub(crate) struct ReceivedArchive {
    /// Where it is.
    pub path: PathBuf,
    /// The other form fields.
    pub fields: HashMap<String, String>,
}

impl Drop for ReceivedArchive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Streams the multipart `file` field into a temporary file (bounded by the upload limit)
/// and collects the small fields. The file is written through the blob store's
/// [`cahier_store::blobs::BlobStore::content_sink`] (sealed on a field replica): read it with
/// [`Store::preview_received_eln`] and [`Store::import_received_eln`].
pub(crate) async fn receive_archive(
    store: &Store,
    mut multipart: Multipart,
) -> Result<ReceivedArchive, AppError> {
    let blobs = store.blob_store()?.clone();
    let limit = blobs.max_bytes();
    let dir = tmp_dir(store)?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| AppError::internal(&e))?;
    let path = dir.join(format!(
        "import-{}.eln",
        hex::encode(rand::random::<[u8; 16]>())
    ));
    let mut received = ReceivedArchive {
        path,
        fields: HashMap::new(),
    };
    let mut has_file = false;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file = std::fs::File::create(&received.path).map_err(|e| AppError::internal(&e))?;
            let mut sink = blobs
                .content_sink(file)
                .map_err(|e| AppError::internal(&e))?;
            let mut total: u64 = 0;
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                total = total.saturating_add(chunk.len() as u64);
                if total > limit {
                    return Err(AppError::TooLarge(format!(
                        "archives are limited to {limit} bytes (max_upload_mb in cahier.toml)"
                    )));
                }
                // Sealing and writing off the async threads, one chunk at a time.
                sink = tokio::task::spawn_blocking(move || {
                    std::io::Write::write_all(&mut sink, &chunk).map(|()| sink)
                })
                .await
                .map_err(|e| AppError::internal(&e))?
                .map_err(|e| AppError::internal(&e))?;
            }
            tokio::task::spawn_blocking(move || sink.finish())
                .await
                .map_err(|e| AppError::internal(&e))?
                .map_err(|e| AppError::internal(&e))?;
            has_file = total > 0;
        } else {
            let value = field.text().await.map_err(multipart_error)?;
            if value.len() > 1000 {
                return Err(AppError::invalid(&name, "too long"));
            }
            received.fields.insert(name, value);
        }
    }
    if !has_file {
        return Err(AppError::invalid("file", "choose an .eln file to import"));
    }
    Ok(received)
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> AppError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge("the upload is larger than this server accepts".into())
    } else {
        AppError::BadRequest(format!("could not read the upload: {}", error.body_text()))
    }
}

/// Reads `team`, `target` and `category` form fields into import options.
pub(crate) fn import_options(
    fields: &HashMap<String, String>,
    default_team: Option<i64>,
) -> Result<ImportOptions, AppError> {
    let team_id = match fields
        .get("team")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        Some(team) => team
            .parse()
            .map_err(|_| AppError::invalid("team", "expected a team id"))?,
        None => default_team.ok_or_else(|| AppError::invalid("team", "choose a team"))?,
    };
    let kind = match fields.get("target").map(|t| t.trim()).unwrap_or_default() {
        "" | "auto" => None,
        "experiments" | "experiment" => Some(EntityKind::Experiment),
        "items" | "resources" | "resource" => Some(EntityKind::Resource),
        _ => {
            return Err(AppError::invalid(
                "target",
                "expected experiments, items or auto",
            ));
        }
    };
    let category_id = match fields
        .get("category")
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
    {
        Some(category) => Some(
            category
                .parse()
                .map_err(|_| AppError::invalid("category", "expected a category id"))?,
        ),
        None => None,
    };
    Ok(ImportOptions {
        team_id,
        kind,
        category_id,
    })
}

/// `POST /import`: 201 with the report, or 200 with the preview when `dry_run=1`.
async fn import(
    State(app): State<AppState>,
    caller: ApiCaller,
    multipart: Multipart,
) -> Result<Response, AppError> {
    caller.require_write()?;
    let received = receive_archive(&app.store, multipart).await?;
    let options = import_options(&received.fields, caller.team_id)?;
    let dry_run = received
        .fields
        .get("dry_run")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
    if dry_run {
        let preview = app
            .store
            .preview_received_eln(&caller.subject, &received.path, &options)
            .await?;
        return Ok(axum::Json(json!(preview)).into_response());
    }
    let report = app
        .store
        .import_received_eln(&caller.subject, &received.path, &options)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(json!(report))).into_response())
}

/// A CSV cell: always quoted, quotes doubled, and a leading `=`, `+`, `-`, `@` or tab made
/// inert (a spreadsheet would run it as a formula).
fn csv_cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// `GET /{experiments|items}?format=csv`: the list (same filters as JSON, up to `limit` rows)
/// as CSV, one row per entry.
pub(crate) async fn list_csv(
    app: &AppState,
    caller: &ApiCaller,
    query: &cahier_store::listing::ListQuery,
) -> Result<Response, AppError> {
    let page = app.store.list_entities(&caller.subject, query).await?;
    crate::audit_trail::exported(
        &app.store,
        caller.user.id,
        "list",
        query.kind.as_str(),
        serde_json::json!({"format": "csv", "rows": page.rows.len(), "q": query.q}),
    )
    .await;
    rows_csv(app, &page.rows, "cahier-list.csv").await
}

/// `GET /{experiments|items}/{id}?format=csv`: the entry as a one-row CSV, with the columns
/// of the list's CSV.
pub(crate) async fn entity_csv(
    app: &AppState,
    caller: &ApiCaller,
    kind: EntityKind,
    id: i64,
) -> Result<Response, AppError> {
    let row = app.store.entity_of_kind(&caller.subject, kind, id).await?;
    crate::audit_trail::exported(
        &app.store,
        caller.user.id,
        "entity",
        id.to_string(),
        serde_json::json!({"format": "csv"}),
    )
    .await;
    let name = format!("{}-{}.csv", row.kind.as_str(), row.id);
    rows_csv(app, std::slice::from_ref(&row), &name).await
}

async fn rows_csv(
    app: &AppState,
    rows: &[cahier_store::EntityRow],
    file_name: &str,
) -> Result<Response, AppError> {
    use cahier_store::catalog::Vocabulary;
    let ids = |f: &dyn Fn(&cahier_store::EntityRow) -> Option<i64>| -> Vec<i64> {
        rows.iter().filter_map(f).collect()
    };
    let statuses: HashMap<i64, String> = app
        .store
        .terms_by_ids(Vocabulary::Status, &ids(&|r| r.status_id))
        .await?
        .into_iter()
        .map(|t| (t.id, t.title))
        .collect();
    let categories: HashMap<i64, String> = app
        .store
        .terms_by_ids(Vocabulary::Category, &ids(&|r| r.category_id))
        .await?
        .into_iter()
        .map(|t| (t.id, t.title))
        .collect();
    let owners: HashMap<i64, String> = app
        .store
        .users_by_ids(&ids(&|r| Some(r.owner_id)))
        .await?
        .into_iter()
        .map(|u| (u.id, u.fullname()))
        .collect();
    let mut out =
        String::from("id,title,date,status,category,tags,owner,created_at,modified_at,elabid\r\n");
    for row in rows {
        let cells = [
            row.id.to_string(),
            row.title.clone(),
            row.date.clone(),
            row.status_id
                .and_then(|s| statuses.get(&s).cloned())
                .unwrap_or_default(),
            row.category_id
                .and_then(|c| categories.get(&c).cloned())
                .unwrap_or_default(),
            row.tags.join("|"),
            owners.get(&row.owner_id).cloned().unwrap_or_default(),
            format_sql_datetime(row.created_at),
            format_sql_datetime(row.modified_at),
            row.elabid.clone(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        out,
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct DmpQuery {
    team: Option<i64>,
}

/// `GET /exports/dmp?team={id}`: a machine-actionable DMP (RDA DMP Common Standard 1.2) whose
/// datasets are the team's experiments and resources the caller may read. Values Cahier does
/// not know (personal or sensitive data, ethical issues) are `unknown`, as the standard allows.
async fn team_dmp(
    State(app): State<AppState>,
    caller: ApiCaller,
    Query(query): Query<DmpQuery>,
) -> Result<Response, AppError> {
    let team_id = query
        .team
        .or(caller.team_id)
        .ok_or_else(|| AppError::invalid("team", "name a team"))?;
    let team = app.store.team(team_id).await?;
    let scope = ExportScope {
        team: Some(team_id),
        ..Default::default()
    };
    let ids = app.store.export_scope_ids(&caller.subject, &scope).await?;
    let now = app.store.now_ms();
    let iso = cahier_store::eln_export::rfc3339;
    let mut datasets = Vec::new();
    for id in ids {
        let row = app.store.entity(&caller.subject, id).await?;
        let mut dataset = json!({
            "title": row.title,
            "type": if row.kind == EntityKind::Resource { "resource" } else { "experiment" },
            "dataset_id": {"identifier": format!("urn:uuid:{}", row.uuid), "type": "other"},
            "personal_data": "unknown",
            "sensitive_data": "unknown",
            "issued": row.date,
            "keyword": row.tags,
            "metadata": [{
                "description": "eLabFTW extra fields (metadata JSON)",
                "language": "eng",
                "metadata_standard_id": {"identifier": "https://doc.elabftw.net/metadata.html", "type": "url"},
            }],
            "distribution": [{
                "title": format!("{}.eln", row.title),
                "format": [cahier_eln::MEDIA_TYPE],
                "data_access": "closed",
            }],
        });
        if !row.body.is_empty() {
            dataset["description"] = json!(row.body.chars().take(2000).collect::<String>());
        }
        datasets.push(dataset);
    }
    let user = &caller.user;
    let dmp = json!({
        "dmp": {
            "title": format!("Data of team {}", team.name),
            "description": "Experiments and resources recorded in Cahier, an electronic lab notebook.",
            "language": "eng",
            "created": iso(now),
            "modified": iso(now),
            "dmp_id": {"identifier": format!("{}/teams/{team_id}", app.config.public_url.trim_end_matches('/')), "type": "url"},
            "contact": {
                "name": user.fullname(),
                "mbox": user.email,
                "contact_id": {"identifier": user.email, "type": "other"},
            },
            "ethical_issues_exist": "unknown",
            "dataset": datasets,
        }
    });
    Ok((
        [(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"dmp-team-{team_id}.json\""),
        )],
        axum::Json(dmp),
    )
        .into_response())
}
