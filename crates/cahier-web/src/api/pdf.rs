//! Archival PDF of an entity (`?format=pdf|pdfa` on the API, the "PDF (archive)" link of the
//! entity page): gathers what the reader may see through the store's access-checked reads,
//! then lets `cahier-pdf` lay it out on a blocking thread. Nothing here decides layout.
//!
//! On a field replica the images to draw and the proofs to embed are fetched first when the
//! laptop lacks them (`offline_files::fetch_for_export`); those it cannot get are named under
//! the attachments, with why, instead of being drawn or embedded.

use crate::AppState;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::offline_files::{MissingFiles, NeededFile, fetch_for_export};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cahier_core::clock::format_sql_datetime;
use cahier_core::fields::Metadata;
use cahier_core::markdown::ContentType;
use cahier_core::{EntityKind, Subject};
use cahier_pdf::{EntityPdf, Standard};
use cahier_store::catalog::Vocabulary;
use std::collections::{BTreeMap, HashMap};

/// Largest image, in bytes, that is read to be drawn inside the PDF; bigger ones are named.
const MAX_IMAGE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest timestamp archive, in bytes, embedded in a PDF/A-3b.
const MAX_EMBEDDED_BYTES: u64 = 16 * 1024 * 1024;

/// The PDF standard an API `format` asks for: `pdf` is PDF/A-2b, `pdfa` is PDF/A-3b with the
/// proofs attached.
pub(crate) fn standard_of(format: &str) -> Option<Standard> {
    match format {
        "pdf" => Some(Standard::PdfA2b),
        "pdfa" => Some(Standard::PdfA3b),
        _ => None,
    }
}

/// Whether the PDF draws this attachment (an image small enough to read whole).
fn is_drawn(upload: &cahier_store::uploads::UploadRow) -> bool {
    upload.media_type.starts_with("image/")
        && u64::try_from(upload.size).unwrap_or(u64::MAX) <= MAX_IMAGE_BYTES
}

/// The attachment files the PDF of entity `id` reads: the images it may draw and, in
/// PDF/A-3b, its timestamps' proof archives. A field replica fetches those it lacks first.
pub(crate) async fn pdf_files(
    app: &AppState,
    subject: &Subject,
    id: i64,
    standard: Standard,
) -> Result<Vec<NeededFile>, AppError> {
    let store = &app.store;
    let mut needed: Vec<NeededFile> = store
        .uploads(subject, id, false)
        .await?
        .iter()
        .filter(|upload| is_drawn(upload))
        .map(NeededFile::of)
        .collect();
    if standard == Standard::PdfA3b {
        for stamp in store.timestamps(subject, id).await? {
            if let Ok(upload) = store.upload(subject, id, stamp.upload_id).await
                && u64::try_from(upload.size).unwrap_or(u64::MAX) <= MAX_EMBEDDED_BYTES
            {
                needed.push(NeededFile::of(&upload));
            }
        }
    }
    Ok(needed)
}

/// On a field replica, fetches what the PDF of `ids` needs and the laptop lacks; returns
/// what it could not get. On a lab server, nothing.
pub(crate) async fn fetch_for_pdf(
    app: &AppState,
    subject: &Subject,
    ids: &[i64],
    standard: Standard,
    lang: Lang,
) -> Result<MissingFiles, AppError> {
    if app.replica.is_none() {
        return Ok(MissingFiles::none(lang));
    }
    let mut needed = Vec::new();
    for id in ids {
        needed.extend(pdf_files(app, subject, *id, standard).await?);
    }
    Ok(fetch_for_export(app, needed, lang).await)
}

/// The PDF of entity `id` as the subject may see it, as an `application/pdf` download.
/// 404 when the subject may not read it, like every other read.
pub(crate) async fn entity_pdf(
    app: &AppState,
    subject: &Subject,
    kind: EntityKind,
    id: i64,
    standard: Standard,
    lang: Lang,
) -> Result<Response, AppError> {
    // The access check comes first: nothing is fetched for an entry the subject may not read.
    app.store.entity_of_kind(subject, kind, id).await?;
    let missing = fetch_for_pdf(app, subject, &[id], standard, lang).await?;
    let (title, pdf) = entity_pdf_bytes(app, subject, kind, id, standard, lang, &missing).await?;
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.pdf\"",
        file_stem(&title)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment; filename=\"entry.pdf\""));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        pdf,
    )
        .into_response())
}

/// The title and PDF of entity `id` as the subject may see it; the files of `missing` are
/// named, with why, rather than drawn or embedded.
pub(crate) async fn entity_pdf_bytes(
    app: &AppState,
    subject: &Subject,
    kind: EntityKind,
    id: i64,
    standard: Standard,
    lang: Lang,
    missing: &MissingFiles,
) -> Result<(String, Vec<u8>), AppError> {
    let entity = gather(app, subject, kind, id, standard, lang, missing).await?;
    let title = entity.title.clone();
    let pdf = tokio::task::spawn_blocking(move || cahier_pdf::render(&entity, standard))
        .await
        .map_err(|e| AppError::internal(&e))?
        .map_err(|e| AppError::internal(&e))?;
    Ok((title, pdf))
}

/// One PDF of the entities `ids` (in order, each read through the access policy), titled
/// `title`; `progress` is told how many entries are gathered. The entries' text and images
/// are held in memory until the layout, so selections are bounded by the export scope limit.
/// The files of `missing` are named, with why, rather than drawn or embedded.
#[expect(
    clippy::too_many_arguments,
    reason = "the selection, its presentation and the files left out, all needed"
)]
pub(crate) async fn selection_pdf(
    app: &AppState,
    subject: &Subject,
    ids: &[i64],
    title: &str,
    standard: Standard,
    lang: Lang,
    missing: &MissingFiles,
    mut progress: impl FnMut(usize) + Send,
) -> Result<Vec<u8>, AppError> {
    let mut entities = Vec::with_capacity(ids.len());
    for (n, id) in ids.iter().enumerate() {
        let row = app.store.entity(subject, *id).await?;
        entities.push(gather(app, subject, row.kind, *id, standard, lang, missing).await?);
        progress(n + 1);
    }
    let title = title.to_owned();
    tokio::task::spawn_blocking(move || cahier_pdf::render_selection(&title, &entities, standard))
        .await
        .map_err(|e| AppError::internal(&e))?
        .map_err(|e| AppError::internal(&e))
}

/// A file name from a title: printable ASCII without quotes or slashes, at most 100 characters.
pub(crate) fn file_stem(title: &str) -> String {
    let stem: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '(' | ')') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let stem = stem.trim().trim_start_matches('.');
    if stem.is_empty() {
        "entry".to_owned()
    } else {
        stem.to_owned()
    }
}

async fn gather(
    app: &AppState,
    subject: &Subject,
    kind: EntityKind,
    id: i64,
    standard: Standard,
    lang: Lang,
    missing: &MissingFiles,
) -> Result<EntityPdf, AppError> {
    let store = &app.store;
    // The access check: everything below reads only what this row lets the subject see.
    let row = store.entity_of_kind(subject, kind, id).await?;
    let steps = store.steps(id).await?;
    let history = store.history(subject, id).await?;
    let uploads = store.uploads(subject, id, false).await?;
    let stamps = store.timestamps(subject, id).await?;
    let links = store.links(subject, id).await?;
    let signatures = store.signatures(subject, id).await?;

    let mut people: Vec<i64> = vec![row.owner_id, row.lastchangeby];
    people.extend(steps.iter().filter_map(|s| s.done_by));
    people.extend(history.iter().map(|v| v.user_id));
    people.extend(signatures.iter().map(|s| s.user_id));
    people.sort_unstable();
    people.dedup();
    let names: HashMap<i64, String> = store
        .users_by_ids(&people)
        .await?
        .into_iter()
        .map(|u| (u.id, u.fullname()))
        .collect();
    let name = |user: i64| {
        names
            .get(&user)
            .cloned()
            .unwrap_or_else(|| format!("#{user}"))
    };
    let term = |vocabulary, term: Option<i64>| async move {
        let Some(term) = term else {
            return Ok::<_, AppError>(None);
        };
        Ok(store
            .terms_by_ids(vocabulary, &[term])
            .await?
            .into_iter()
            .next()
            .map(|t| t.title))
    };
    let status = term(Vocabulary::Status, row.status_id).await?;
    let category = term(Vocabulary::Category, row.category_id).await?;
    let team = store.team(row.team_id).await?.name;

    let fields = row
        .metadata
        .as_deref()
        .and_then(|m| Metadata::parse(m).ok())
        .map(|m| {
            m.fields
                .iter()
                .map(|f| cahier_pdf::Field {
                    name: f.name.clone(),
                    value: f.display_value(),
                    unit: Some(f.unit().to_owned()).filter(|u| !u.is_empty()),
                })
                .collect()
        })
        .unwrap_or_default();

    // Images the body may show, by name and by hash (the editor links them by hash).
    let mut images = BTreeMap::new();
    // Files a field replica could not get: named under the attachments, with why.
    let mut left_out = Vec::new();
    let blobs = store.blob_store().ok();
    for upload in &uploads {
        if !is_drawn(upload) {
            continue;
        }
        if let Some(reason) = missing.reason(&upload.sha256) {
            left_out.push(missing.pdf_line(&upload.real_name, reason));
            continue;
        }
        if let Some(bytes) = read_blob(blobs, &upload.sha256).await {
            // One buffer under both keys.
            let bytes: std::sync::Arc<[u8]> = bytes.into();
            images.insert(upload.sha256.clone(), bytes.clone());
            images.insert(upload.real_name.clone(), bytes);
        }
    }

    let mut embedded = Vec::new();
    if standard == Standard::PdfA3b {
        // Each signature with what it signed and its key, checkable with `minisign -V`.
        for signature in &signatures {
            for (suffix, mime_type, data) in [
                ("export.json", "application/json", signature.export.clone()),
                (
                    "export.json.minisig",
                    "text/plain",
                    signature.signature.clone().into_bytes(),
                ),
                (
                    "key.pub",
                    "text/plain",
                    signature.public_key.clone().into_bytes(),
                ),
            ] {
                embedded.push(cahier_pdf::EmbeddedFile {
                    name: format!("signature-{}-{suffix}", signature.id),
                    mime_type: mime_type.to_owned(),
                    description: format!(
                        "minisign signature {} by {}",
                        signature.id,
                        name(signature.user_id)
                    ),
                    data,
                });
            }
        }
        for stamp in &stamps {
            let Ok(upload) = store.upload(subject, id, stamp.upload_id).await else {
                continue;
            };
            if u64::try_from(upload.size).unwrap_or(u64::MAX) > MAX_EMBEDDED_BYTES {
                continue;
            }
            if let Some(reason) = missing.reason(&stamp.upload_sha256) {
                let line = missing.pdf_line(&upload.real_name, reason);
                if !left_out.contains(&line) {
                    left_out.push(line);
                }
                continue;
            }
            if let Some(data) = read_blob(blobs, &stamp.upload_sha256).await {
                embedded.push(cahier_pdf::EmbeddedFile {
                    name: format!("timestamp-{}.zip", stamp.id),
                    mime_type: "application/zip".to_owned(),
                    description: format!(
                        "RFC 3161 proof archive ({}, {})",
                        stamp.tsa_name,
                        format_sql_datetime(stamp.gen_time_ms)
                    ),
                    data,
                });
            }
        }
    }

    let now = store.now_ms();
    let printed = time::OffsetDateTime::from_unix_timestamp(now.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let t = |key: &str| lang.t(key).to_owned();
    let last = history.last();
    Ok(EntityPdf {
        title: row.title.clone(),
        kind: t(match kind {
            EntityKind::Experiment => "pdf.experiment",
            EntityKind::Resource => "pdf.resource",
            _ => "pdf.template",
        }),
        id: row.id,
        elabid: row.elabid.clone(),
        uuid: row.uuid.clone(),
        owner: name(row.owner_id),
        team,
        created: format_sql_datetime(row.created_at),
        modified: format_sql_datetime(row.modified_at),
        date: Some(row.date.clone()).filter(|d| !d.is_empty()),
        status,
        category,
        tags: row.tags.clone(),
        body: row.body.clone(),
        body_is_html: ContentType::from_code(row.content_type) == ContentType::Html,
        fields,
        steps: steps
            .iter()
            .map(|s| cahier_pdf::Step {
                text: s.body.clone(),
                done: s.done,
                done_by: s.done_by.map(|user| {
                    let when = s.done_at.map(format_sql_datetime).unwrap_or_default();
                    format!("{} {when}", name(user)).trim().to_owned()
                }),
            })
            .collect(),
        links: links
            .iter()
            .map(|l| cahier_pdf::Link {
                title: l.title.clone(),
                kind: t(match EntityKind::parse(&l.kind) {
                    Some(EntityKind::Resource) => "pdf.resource",
                    Some(EntityKind::Experiment) => "pdf.experiment",
                    _ => "pdf.template",
                }),
                id: l.id,
            })
            .collect(),
        attachments: uploads
            .iter()
            .map(|u| cahier_pdf::Attachment {
                name: u.real_name.clone(),
                size: u64::try_from(u.size).unwrap_or_default(),
                sha256: u.sha256.clone(),
            })
            .collect(),
        missing: left_out,
        history: cahier_pdf::History {
            versions: u64::try_from(history.len()).unwrap_or_default(),
            last_change: last
                .map(|v| {
                    format!(
                        "{}, {}",
                        name(v.user_id),
                        format_sql_datetime(v.received_at)
                    )
                })
                .unwrap_or_default(),
            offline: offline_line(&history, lang),
        },
        timestamps: stamps
            .iter()
            .map(|s| cahier_pdf::TimestampProof {
                time: format_sql_datetime(s.gen_time_ms),
                tsa: s.tsa_name.clone(),
                hash: format!("{} {}", s.hash_alg, s.export_sha256),
            })
            .collect(),
        signatures: signatures
            .iter()
            .map(|s| cahier_pdf::SignatureProof {
                signer: name(s.user_id),
                meaning: cahier_core::signature::Meaning::from_code(s.meaning)
                    .map_or_else(|| s.meaning.to_string(), |m| m.name().to_owned()),
                time: format_sql_datetime(s.created_at),
            })
            .collect(),
        images,
        embedded,
        printed_at: (
            printed.year(),
            u8::from(printed.month()),
            printed.day(),
            printed.hour(),
            printed.minute(),
            printed.second(),
        ),
        printed_label: format!("{} {} UTC", t("pdf.printed"), format_sql_datetime(now)),
        labels: cahier_pdf::Labels {
            lang: lang.code().to_owned(),
            owner: t("pdf.owner"),
            team: t("pdf.team"),
            created: t("pdf.created"),
            modified: t("pdf.modified"),
            date: t("pdf.date"),
            status: t("pdf.status"),
            category: t("pdf.category"),
            tags: t("pdf.tags"),
            fields: t("pdf.fields"),
            steps: t("pdf.steps"),
            links: t("pdf.links"),
            attachments: t("pdf.attachments"),
            history: t("pdf.history"),
            versions: t("pdf.versions"),
            last_change: t("pdf.last_change"),
            timestamps: t("pdf.timestamps"),
            signatures: t("pdf.signatures"),
            name: t("pdf.name"),
            value: t("pdf.value"),
            size: t("pdf.size"),
            done: t("pdf.done"),
            none: t("pdf.none"),
            contents: t("pdf.contents"),
        },
    })
}

/// The whole content of a blob, or `None` if it cannot be read (the PDF then names the file
/// instead of drawing or embedding it).
async fn read_blob(blobs: Option<&cahier_store::blobs::BlobStore>, hash: &str) -> Option<Vec<u8>> {
    let mut reader = blobs?.open(hash).await.ok()?;
    let mut bytes = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.ok()? {
        bytes.extend_from_slice(&chunk);
    }
    Some(bytes)
}

/// The history line for changes captured offline on field devices (any device but this
/// server): how many, from which devices, the devices' clocks (never presented as proven) and
/// the server's receive times. Empty when every change was made on the server.
fn offline_line(history: &[cahier_store::entities::VersionRow], lang: Lang) -> String {
    let offline: Vec<_> = history
        .iter()
        .filter(|v| v.device != cahier_store::SERVER_DEVICE)
        .collect();
    let (Some(first), Some(last)) = (offline.first(), offline.last()) else {
        return String::new();
    };
    let mut devices: Vec<&str> = offline.iter().map(|v| v.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let device_min = offline
        .iter()
        .map(|v| v.time_ms)
        .min()
        .unwrap_or(first.time_ms);
    let device_max = offline
        .iter()
        .map(|v| v.time_ms)
        .max()
        .unwrap_or(last.time_ms);
    lang.t("pdf.offline_capture")
        .replace("{n}", &offline.len().to_string())
        .replace("{devices}", &devices.join(", "))
        .replace("{device_from}", &format_sql_datetime(device_min))
        .replace("{device_to}", &format_sql_datetime(device_max))
        .replace("{received_from}", &format_sql_datetime(first.received_at))
        .replace("{received_to}", &format_sql_datetime(last.received_at))
}
