//! eLabFTW's ZIP exports and the background jobs that are not `.eln`.
//!
//! `format=zip|zipa` (one entry at once, or a selection as a background job): a ZIP with one
//! folder per entry, `<kind>-<id> - <title>/`, holding `export.json` (what
//! `GET /{experiments|items}/{id}` answers), `<title>.pdf` (PDF/A-2b for `zip`, PDF/A-3b with
//! the proofs for `zipa`) and the entry's current attachments under their own names (made safe
//! for every file system, de-duplicated as `name (2).ext`). The ZIP is written into a file,
//! attachments chunk by chunk from the blob store, then streamed: memory stays flat whatever
//! the size of the attachments.
//!
//! `pdf|pdfa` jobs: one archival PDF of the whole selection (`api::pdf::selection_pdf`).
//! Every read goes through the store's access-checked reads with the requester's subject.
//!
//! On a field replica every export first fetches the attachment files it needs that the
//! laptop lacks (`offline_files::fetch_for_export`). Those it cannot get (the lab server
//! unreachable) are left out, never silently: an entry's ZIP folder then holds a
//! `MISSING-FILES.txt` naming them with why, its PDF names them under the attachments, and
//! the finished job's note says how many and which.

use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::offline_files::{MissingFiles, NeededFile, fetch_for_export};
use cahier_core::Subject;
use cahier_pdf::Standard;
use cahier_store::eln_export::{MISSING_FILES_NOTE, missing_file_line, missing_files_note};
use std::collections::HashSet;
use std::io::Write;
use zip::write::SimpleFileOptions;

/// A name that is safe as one path component on every system: no separators, no control or
/// reserved characters, no leading dots, at most 120 characters; `fallback` when nothing is left.
pub(crate) fn safe_component(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .take(120)
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// `name`, or `name (2).ext`, `name (3).ext`… so that no two names of `taken` are equal when
/// compared without case (as on Windows and macOS).
fn unique(name: &str, taken: &mut HashSet<String>) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let mut candidate = name.to_owned();
    let mut n = 2;
    while !taken.insert(candidate.to_lowercase()) {
        candidate = format!("{stem} ({n}){ext}");
        n += 1;
    }
    candidate
}

fn zip_error(error: zip::result::ZipError) -> AppError {
    AppError::internal(&error)
}

fn io_error(error: std::io::Error) -> AppError {
    AppError::internal(&error)
}

/// The attachment files the ZIP of `ids` reads: every current attachment of each entry, and
/// what its PDF embeds.
async fn zip_files(
    app: &AppState,
    subject: &Subject,
    ids: &[i64],
    standard: Standard,
) -> Result<Vec<NeededFile>, AppError> {
    let mut needed = Vec::new();
    for id in ids {
        let uploads = app.store.uploads(subject, *id, false).await?;
        needed.extend(uploads.iter().map(NeededFile::of));
        needed.extend(super::pdf::pdf_files(app, subject, *id, standard).await?);
    }
    Ok(needed)
}

/// On a field replica, fetches what the ZIP of `ids` needs and the laptop lacks; returns
/// what it could not get. On a lab server, nothing.
async fn fetch_for_zip(
    app: &AppState,
    subject: &Subject,
    ids: &[i64],
    standard: Standard,
    lang: Lang,
) -> Result<MissingFiles, AppError> {
    if app.replica.is_none() {
        return Ok(MissingFiles::none(lang));
    }
    let needed = zip_files(app, subject, ids, standard).await?;
    Ok(fetch_for_export(app, needed, lang).await)
}

/// Writes the ZIP of `ids` (in order) into `sink`; `progress` is told how many entries are
/// written. `standard` is the PDF of each folder. The ZIP is streamed (data descriptors, no
/// seeking), so `sink` may be a sealed file of user content. The files of `missing` are left
/// out and named, with why, in a `MISSING-FILES.txt` of their entry's folder.
#[expect(
    clippy::too_many_arguments,
    reason = "the selection, its presentation, the files left out and where it goes"
)]
pub(crate) async fn write_zip<W: Write + Send>(
    app: &AppState,
    caller: &ApiCaller,
    ids: &[i64],
    standard: Standard,
    lang: Lang,
    missing: &MissingFiles,
    sink: W,
    mut progress: impl FnMut(usize) + Send,
) -> Result<W, AppError> {
    let store = &app.store;
    let subject = &caller.subject;
    let mut zip = zip::ZipWriter::new_stream(sink);
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut folders = HashSet::new();
    for (n, id) in ids.iter().enumerate() {
        let row = store.entity(subject, *id).await?;
        let kind = row.kind;
        let folder = unique(
            &safe_component(
                &format!("{}-{} - {}", kind.as_str(), row.id, row.title),
                "entry",
            ),
            &mut folders,
        );
        let json: serde_json::Value =
            serde_json::from_slice(&super::entities::full_entity(app, caller, kind, *id).await?)
                .map_err(|e| AppError::internal(&e))?;
        let (title, pdf) =
            super::pdf::entity_pdf_bytes(app, subject, kind, *id, standard, lang, missing).await?;
        let mut taken = HashSet::new();
        let json_name = unique("export.json", &mut taken);
        // Reserved first, so that an attachment of that name takes another.
        let note_name = unique(MISSING_FILES_NOTE, &mut taken);
        let mut left_out = Vec::new();
        let pdf_name = unique(
            &format!("{}.pdf", super::pdf::file_stem(&title)),
            &mut taken,
        );
        zip.add_directory(format!("{folder}/"), SimpleFileOptions::default())
            .map_err(zip_error)?;
        zip.start_file(format!("{folder}/{json_name}"), deflated)
            .map_err(zip_error)?;
        let text = serde_json::to_vec_pretty(&json).map_err(|e| AppError::internal(&e))?;
        zip.write_all(&text).map_err(io_error)?;
        zip.start_file(format!("{folder}/{pdf_name}"), deflated)
            .map_err(zip_error)?;
        zip.write_all(&pdf).map_err(io_error)?;
        drop(pdf);
        let blobs = store.blob_store()?;
        for upload in store.uploads(subject, *id, false).await?.into_iter().rev() {
            let size = u64::try_from(upload.size).unwrap_or_default();
            if let Some(reason) = missing.reason(&upload.sha256) {
                left_out.push(missing_file_line(
                    &row.title,
                    &upload.real_name,
                    &upload.sha256,
                    size,
                    reason,
                ));
                continue;
            }
            let name = unique(&safe_component(&upload.real_name, "attachment"), &mut taken);
            // Attachments are mostly compressed already (images, archives): stored as is.
            let options = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(size >= u64::from(u32::MAX));
            zip.start_file(format!("{folder}/{name}"), options)
                .map_err(zip_error)?;
            let unreadable = |error: cahier_store::blobs::BlobError| {
                AppError::Conflict(format!(
                    "reading the attachment {} of entry {id} failed: {error}",
                    upload.real_name
                ))
            };
            let mut reader = blobs.open(&upload.sha256).await.map_err(unreadable)?;
            while let Some(chunk) = reader.next_chunk().await.map_err(unreadable)? {
                zip.write_all(&chunk).map_err(io_error)?;
            }
        }
        if !left_out.is_empty() {
            zip.start_file(format!("{folder}/{note_name}"), deflated)
                .map_err(zip_error)?;
            let note = missing_files_note(missing.heading(), &left_out);
            zip.write_all(note.as_bytes()).map_err(io_error)?;
        }
        progress(n + 1);
    }
    zip.finish()
        .map(|sink| sink.into_inner())
        .map_err(zip_error)
}

/// `GET /{experiments|items}/{id}?format=zip|zipa`: the entry's ZIP, written to a temporary
/// file and streamed.
pub(crate) async fn entity_zip(
    app: &AppState,
    caller: &ApiCaller,
    kind: cahier_core::EntityKind,
    id: i64,
    archival: bool,
) -> Result<axum::response::Response, AppError> {
    let row = app.store.entity_of_kind(&caller.subject, kind, id).await?;
    let standard = if archival {
        Standard::PdfA3b
    } else {
        Standard::PdfA2b
    };
    let missing = fetch_for_zip(app, &caller.subject, &[id], standard, Lang::En).await?;
    let dir = app.store.blob_store()?.root().join("tmp");
    tokio::fs::create_dir_all(&dir).await.map_err(io_error)?;
    let path = dir.join(format!(
        "export-{}.zip",
        hex::encode(rand::random::<[u8; 16]>())
    ));
    // Through the blob store: sealed with the replica's key on a field replica.
    let blobs = app.store.blob_store()?;
    let file = std::fs::File::create(&path).map_err(io_error)?;
    let sink = blobs.content_sink(file).map_err(io_error)?;
    let written = write_zip(
        app,
        caller,
        &[id],
        standard,
        Lang::En,
        &missing,
        sink,
        |_| {},
    )
    .await
    .and_then(|sink| sink.finish().map_err(io_error));
    if let Err(error) = written {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(error);
    }
    let reader = blobs.open_content(&path).await;
    // The open handle keeps the content readable; nothing is left on disk.
    let _ = tokio::fs::remove_file(&path).await;
    let reader = reader.map_err(|e| AppError::internal(&e))?;
    let size = reader.remaining();
    let format = if archival { "zipa" } else { "zip" };
    crate::audit_trail::exported(
        &app.store,
        caller.subject.user_id,
        "entity",
        id.to_string(),
        serde_json::json!({"format": format, "bytes": size}),
    )
    .await;
    let name = format!("{}-{}.zip", row.kind.as_str(), row.id);
    Ok(super::exports::content_response(
        reader,
        &name,
        "application/zip",
    ))
}

/// Runs a background job of any format to its end; the outcome is in the job's row.
pub(crate) async fn run_job(app: AppState, subject: Subject, id: i64, lang: Lang) {
    let store = app.store.clone();
    let (job, name, partial) = match store.begin_export_job(&subject, id).await {
        Ok(begun) => begun,
        Err(error) => {
            tracing::warn!(job_id = id, error = %error, "export job could not start");
            return;
        }
    };
    if job.format == "eln" {
        // The store writes .eln itself, with its own bookkeeping, leaving out what a field
        // replica could not fetch.
        let left_out = match eln_job_missing(&app, &subject, &job, lang).await {
            Ok(missing) => missing.left_out(),
            Err(error) => {
                let _ = store
                    .finish_export_job(id, &name, Err(error.to_string()))
                    .await;
                return;
            }
        };
        let _ = store
            .run_export_job_leaving_out(&subject, id, &left_out)
            .await;
        return;
    }
    let outcome = write_job(&app, &subject, &job, &partial, lang).await;
    let _ = store
        .finish_export_job(id, &name, outcome.map_err(|e| e.to_string()))
        .await;
}

/// On a field replica, fetches the files an `.eln` job needs and the laptop lacks.
async fn eln_job_missing(
    app: &AppState,
    subject: &Subject,
    job: &cahier_store::export_jobs::ExportJob,
    lang: Lang,
) -> Result<MissingFiles, AppError> {
    if app.replica.is_none() {
        return Ok(MissingFiles::none(lang));
    }
    let ids = app.store.export_scope_ids(subject, &job.scope).await?;
    let needed = super::exports::eln_files(app, subject, &ids).await?;
    Ok(fetch_for_export(app, needed, lang).await)
}

/// Writes a job's file; returns what it left out, if anything, for the job's note.
async fn write_job(
    app: &AppState,
    subject: &Subject,
    job: &cahier_store::export_jobs::ExportJob,
    partial: &std::path::Path,
    lang: Lang,
) -> Result<Option<String>, AppError> {
    let store = &app.store;
    let ids = store.export_scope_ids(subject, &job.scope).await?;
    // Progress goes to the row from a watcher, so the writer never waits on the database.
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(0usize);
    let watcher_store = store.clone();
    let job_id = job.id;
    let watcher = tokio::spawn(async move {
        while progress_rx.changed().await.is_ok() {
            let done = *progress_rx.borrow_and_update();
            let _ = watcher_store.export_job_progress(job_id, done).await;
        }
    });
    let progress = move |n: usize| {
        let _ = progress_tx.send(n);
    };
    let outcome = match job.format.as_str() {
        "zip" | "zipa" => {
            let caller = ApiCaller {
                user: store.user(subject.user_id).await?,
                subject: subject.clone(),
                team_id: None,
                can_write: false,
            };
            let standard = if job.format == "zipa" {
                Standard::PdfA3b
            } else {
                Standard::PdfA2b
            };
            let missing = fetch_for_zip(app, subject, &ids, standard, lang).await?;
            let file = std::fs::File::create(partial).map_err(io_error)?;
            let sink = store.blob_store()?.content_sink(file).map_err(io_error)?;
            write_zip(app, &caller, &ids, standard, lang, &missing, sink, progress)
                .await
                .and_then(|sink| sink.finish().map_err(io_error))
                .and_then(|file| file.sync_all().map_err(io_error))
                .map(|()| missing.summary())
        }
        "pdf" | "pdfa" => {
            let standard = if job.format == "pdfa" {
                Standard::PdfA3b
            } else {
                Standard::PdfA2b
            };
            let title = format!("Cahier — {} ({})", lang.t("exchange.pdf_title"), ids.len());
            let missing = super::pdf::fetch_for_pdf(app, subject, &ids, standard, lang).await?;
            match super::pdf::selection_pdf(
                app, subject, &ids, &title, standard, lang, &missing, progress,
            )
            .await
            {
                // The PDF is the one whole-document buffer typst gives (`render_selection`);
                // it goes to disk through the blob store (sealed on a field replica).
                Ok(pdf) => {
                    let blobs = store.blob_store()?;
                    std::fs::File::create(partial)
                        .and_then(|file| blobs.content_sink(file))
                        .and_then(|mut sink| {
                            sink.write_all(&pdf)?;
                            sink.finish()
                        })
                        .and_then(|file| file.sync_all())
                        .map_err(io_error)
                        .map(|()| missing.summary())
                }
                Err(error) => Err(error),
            }
        }
        other => Err(AppError::invalid(
            "format",
            format!("{other} is not a background export format"),
        )),
    };
    let _ = watcher.await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_and_unique() {
        assert_eq!(safe_component("../../etc/passwd", "x"), "_.._etc_passwd");
        assert_eq!(safe_component("...", "x"), "x");
        assert_eq!(safe_component("a\u{0}b:c", "x"), "a_b_c");
        let mut taken = HashSet::new();
        assert_eq!(unique("data.csv", &mut taken), "data.csv");
        assert_eq!(unique("DATA.csv", &mut taken), "DATA (2).csv");
        assert_eq!(unique("data.csv", &mut taken), "data (3).csv");
        assert_eq!(unique("README", &mut taken), "README");
        assert_eq!(unique("readme", &mut taken), "readme (2)");
    }
}
