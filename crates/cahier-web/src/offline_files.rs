//! Attachment files a field replica does not hold (issue #5): before a file or its thumbnail
//! is served, the replica makes sure it is here, fetching it from the lab server on demand
//! (through the verified sync download, stored encrypted like the others). When the server
//! cannot be reached the answer is a clear 404 in the user's language — never a 500 — and an
//! image request gets a small picture saying the same, not a broken image.
//!
//! Exports (the archival PDF, eLabFTW's ZIP, `.eln`, at once or as background jobs) first
//! fetch the files they need and the replica lacks ([`fetch_for_export`]), a few at a time,
//! each once; when the server cannot be reached they still complete, without those files,
//! and say which are missing and why ([`MissingFiles`]): in the export itself and in the
//! job's note. A server that cannot be reached is not asked again for the rest of the files
//! of that export, so an export over a dead network waits for one attempt, not one per file.
//!
//! On a lab server this does nothing: every file is held. It decides nothing about access:
//! callers have already read the upload rows through the access policy.

use crate::error::AppError;
use crate::i18n::Lang;
use crate::{AppState, ReplicaHandle};
use askama::Template;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cahier_store::eln_export::LeftOut;
use cahier_store::replica_files::FilePolicy;
use std::collections::BTreeMap;

/// The translation key naming a file policy.
pub(crate) fn policy_key(policy: &FilePolicy) -> &'static str {
    match policy {
        FilePolicy::All => "replica.files_all",
        FilePolicy::Pinned => "replica.files_pinned",
        FilePolicy::Teams(_) => "replica.files_teams",
    }
}

/// Makes sure the file named `sha256` is on this replica, fetching it when the server can be
/// reached. On a lab server, or when the file is here, returns at once.
pub(crate) async fn ensure_held(
    state: &AppState,
    sha256: &str,
    lang: Lang,
) -> Result<(), AppError> {
    let Some(replica) = &state.replica else {
        return Ok(());
    };
    let Some(blobs) = state.store.blobs() else {
        return Ok(());
    };
    if blobs.exists(sha256).await {
        return Ok(());
    }
    let absent = || AppError::FileAbsent(lang.t("replica.file_absent").to_owned());
    let Some(fetcher) = &replica.fetcher else {
        return Err(absent());
    };
    match fetcher.fetch(sha256).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(%sha256, "the lab server has no such file for this device");
            Err(absent())
        }
        Err(error) => {
            tracing::info!(%sha256, %error, "cannot fetch a file on demand");
            mark_offline(replica, error);
            Err(absent())
        }
    }
}

/// The banner then says the replica is offline, with why.
fn mark_offline(replica: &ReplicaHandle, error: String) {
    if let Ok(mut status) = replica.status.lock() {
        status.online = false;
        status.last_error = Some(error);
    }
}

/// Files fetched at once for one export.
const EXPORT_FETCHES: usize = 2;
/// Most files a job's note names (the export's own note names them all).
const NOTE_NAMES: usize = 10;

/// One attachment file an export reads.
#[derive(Debug, Clone)]
pub(crate) struct NeededFile {
    /// Its SHA-256.
    pub sha256: String,
    /// Its name, for the job's note.
    pub name: String,
}

impl NeededFile {
    /// The file of an upload row.
    pub(crate) fn of(upload: &cahier_store::uploads::UploadRow) -> Self {
        Self {
            sha256: upload.sha256.clone(),
            name: upload.real_name.clone(),
        }
    }
}

/// The files an export needs that this replica does not hold and could not fetch, each with
/// why, in the export's language. Empty on a lab server.
#[derive(Debug, Clone)]
pub(crate) struct MissingFiles {
    /// Name and reason, by SHA-256.
    files: BTreeMap<String, (String, String)>,
    lang: Lang,
}

impl MissingFiles {
    /// Nothing missing.
    pub(crate) fn none(lang: Lang) -> Self {
        Self {
            files: BTreeMap::new(),
            lang,
        }
    }

    /// Why the file named `sha256` is missing, if it is.
    pub(crate) fn reason(&self, sha256: &str) -> Option<&str> {
        self.files.get(sha256).map(|(_, reason)| reason.as_str())
    }

    /// The heading of the note of an archive that leaves files out.
    pub(crate) fn heading(&self) -> &'static str {
        self.lang.t("export.missing_heading")
    }

    /// The line of a PDF naming a file it could not show.
    pub(crate) fn pdf_line(&self, name: &str, reason: &str) -> String {
        format!("{} {name} — {reason}", self.lang.t("export.missing_pdf"))
    }

    /// What a finished job says: how many files it left out, the first ones named with why.
    pub(crate) fn summary(&self) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        let mut named: Vec<String> = self
            .files
            .values()
            .take(NOTE_NAMES)
            .map(|(name, reason)| format!("{name} ({reason})"))
            .collect();
        if self.files.len() > NOTE_NAMES {
            named.push(
                self.lang
                    .t("export.missing_more")
                    .replace("{n}", &(self.files.len() - NOTE_NAMES).to_string()),
            );
        }
        Some(format!(
            "{} {}",
            self.lang
                .t("export.missing_summary")
                .replace("{n}", &self.files.len().to_string()),
            named.join("; ")
        ))
    }

    /// What the store's `.eln` export needs to leave them out and say so.
    pub(crate) fn left_out(&self) -> LeftOut {
        LeftOut {
            reasons: self
                .files
                .iter()
                .map(|(sha256, (_, reason))| (sha256.clone(), reason.clone()))
                .collect(),
            heading: self.heading().to_owned(),
            summary: self.summary(),
        }
    }
}

/// How fetching one file for an export went.
enum Fetched {
    Here,
    NotServed,
    Unreachable,
}

/// On a field replica, fetches the files of `needed` it does not hold from the lab server, a
/// few at a time, each once; returns those it could not get, with why in `lang`. When the
/// server cannot be reached the rest are not asked for (each attempt would wait for the
/// transport's timeouts) and the banner says the replica is offline, with the reason. On a
/// lab server, returns at once with nothing missing.
pub(crate) async fn fetch_for_export(
    state: &AppState,
    needed: Vec<NeededFile>,
    lang: Lang,
) -> MissingFiles {
    use futures_util::StreamExt;
    let mut missing = MissingFiles::none(lang);
    let (Some(replica), Some(blobs)) = (&state.replica, state.store.blobs()) else {
        return missing;
    };
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for file in needed {
        wanted.entry(file.sha256).or_insert(file.name);
    }
    let mut absent = Vec::new();
    for (sha256, name) in wanted {
        if !blobs.exists(&sha256).await {
            absent.push((sha256, name));
        }
    }
    if absent.is_empty() {
        return missing;
    }
    let Some(fetcher) = &replica.fetcher else {
        let reason = lang.t("export.missing_no_server");
        missing.files = absent
            .into_iter()
            .map(|(sha256, name)| (sha256, (name, reason.to_owned())))
            .collect();
        return missing;
    };
    let unreachable: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let outcomes: Vec<(String, String, Fetched)> = futures_util::stream::iter(absent)
        .map(|(sha256, name)| {
            let fetcher = fetcher.clone();
            let unreachable = &unreachable;
            async move {
                if unreachable.lock().map_or(true, |first| first.is_some()) {
                    return (sha256, name, Fetched::Unreachable);
                }
                let fetched = match fetcher.fetch(&sha256).await {
                    Ok(true) => Fetched::Here,
                    Ok(false) => {
                        tracing::warn!(%sha256, "the lab server has no such file for this device");
                        Fetched::NotServed
                    }
                    Err(error) => {
                        tracing::info!(%sha256, %error, "cannot fetch a file for an export");
                        if let Ok(mut first) = unreachable.lock() {
                            first.get_or_insert(error);
                        }
                        Fetched::Unreachable
                    }
                };
                (sha256, name, fetched)
            }
        })
        .buffer_unordered(EXPORT_FETCHES)
        .collect()
        .await;
    if let Some(error) = unreachable.into_inner().ok().flatten() {
        mark_offline(replica, error);
    }
    for (sha256, name, fetched) in outcomes {
        let reason = match fetched {
            Fetched::Here => continue,
            Fetched::NotServed => lang.t("export.missing_not_served"),
            Fetched::Unreachable => lang.t("export.missing_unreachable"),
        };
        missing.files.insert(sha256, (name, reason.to_owned()));
    }
    missing
}

/// Whether a request wants an image (an `<img>` in a page body, or a thumbnail).
pub(crate) fn wants_image(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("image/"))
}

#[derive(Template)]
#[template(path = "file_absent.svg", escape = "html")]
struct AbsentPicture {
    line1: &'static str,
    line2: &'static str,
}

/// A small picture saying the file is not on this laptop, with status 404, for image requests.
pub(crate) fn absent_picture(lang: Lang) -> Response {
    let picture = AbsentPicture {
        line1: lang.t("replica.file_absent_short"),
        line2: lang.t("replica.file_absent_hint"),
    };
    match picture.render() {
        Ok(svg) => (
            StatusCode::NOT_FOUND,
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            svg,
        )
            .into_response(),
        Err(error) => AppError::internal(&error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(n: usize, lang: Lang) -> MissingFiles {
        let mut missing = MissingFiles::none(lang);
        for i in 0..n {
            missing.files.insert(
                format!("{i:064}"),
                (
                    format!("file-{i:02}.csv"),
                    lang.t("export.missing_unreachable").to_owned(),
                ),
            );
        }
        missing
    }

    #[test]
    fn nothing_missing_says_nothing() {
        let none = MissingFiles::none(Lang::En);
        assert_eq!(none.summary(), None);
        assert!(none.left_out().is_empty());
        assert_eq!(none.left_out().summary, None);
    }

    #[test]
    fn a_jobs_note_names_the_first_files_with_why_and_counts_the_rest() {
        let two = missing(2, Lang::En);
        assert_eq!(
            two.summary().unwrap(),
            "2 attachment file(s) left out: file-00.csv (not on this laptop, and the lab server \
             could not be reached); file-01.csv (not on this laptop, and the lab server could not \
             be reached)"
        );
        let many = missing(13, Lang::Fr).summary().unwrap();
        assert!(
            many.starts_with("13 pièce(s) jointe(s) laissée(s) de côté : file-00.csv (pas sur"),
            "{many}"
        );
        assert!(many.contains("file-09.csv"), "{many}");
        assert!(!many.contains("file-10.csv"), "{many}");
        assert!(many.ends_with("; et 3 autre(s)"), "{many}");
        let left_out = missing(13, Lang::Fr).left_out();
        assert_eq!(
            left_out.reasons.len(),
            13,
            "the archive's note names them all"
        );
        assert!(left_out.heading.starts_with("Pièces jointes absentes"));
    }
}
