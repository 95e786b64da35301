//! Archival PDF (PDF/A-2b or PDF/A-3b) of one entity, laid out by typst used as a library.
//!
//! The caller gathers what the reader may see into an [`EntityPdf`] (this crate does no IO and
//! no access checks) and calls [`render`]. The typst source is generated here: every piece of
//! user text enters it as an escaped string literal ([`markup::literal`]), never as markup, so a
//! body that contains typst syntax prints as written. Fonts ship inside the binary
//! (`typst-assets`); the system's fonts are never read.
//!
//! This crate is heavy to build (typst and its few hundred dependencies): it is its own crate so
//! that editing any other crate never recompiles it.

mod markup;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;

/// The PDF/A level of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standard {
    /// PDF/A-2b: the printable record, nothing attached.
    PdfA2b,
    /// PDF/A-3b: the record with its proofs (timestamp archives, signature files) attached.
    PdfA3b,
}

/// Everything printed about one entity. All text is user data and is shown literally.
#[derive(Debug, Clone, Default)]
pub struct EntityPdf {
    /// The entity's title.
    pub title: String,
    /// "Experiment", "Resource"… as the reader should read it.
    pub kind: String,
    /// Numeric id.
    pub id: i64,
    /// eLabFTW's `elabid`.
    pub elabid: String,
    /// The entity's UUID.
    pub uuid: String,
    /// The owner's full name.
    pub owner: String,
    /// The team's name.
    pub team: String,
    /// Creation time, as printed (UTC).
    pub created: String,
    /// Last change, as printed (UTC).
    pub modified: String,
    /// The entity's own date (eLabFTW's `date`), if any.
    pub date: Option<String>,
    /// Status name.
    pub status: Option<String>,
    /// Category name.
    pub category: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// The body, as Markdown (HTML bodies are shown with their tags removed).
    pub body: String,
    /// Whether `body` is HTML rather than Markdown.
    pub body_is_html: bool,
    /// Extra fields.
    pub fields: Vec<Field>,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Links to other entities.
    pub links: Vec<Link>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Lines printed under the attachments about files this PDF should show (images, proofs)
    /// but could not, and why: a field replica that does not hold them and could not fetch
    /// them. Empty when nothing is missing.
    pub missing: Vec<String>,
    /// A summary of the history.
    pub history: History,
    /// Trusted timestamps.
    pub timestamps: Vec<TimestampProof>,
    /// Signatures.
    pub signatures: Vec<SignatureProof>,
    /// Image bytes by attachment name, for images that the body shows (`![alt](name)`). One
    /// image may be listed under several keys (its name and its hash) sharing one buffer.
    pub images: BTreeMap<String, Arc<[u8]>>,
    /// Files attached to a PDF/A-3b output (ignored for PDF/A-2b).
    pub embedded: Vec<EmbeddedFile>,
    /// When the PDF is made: year, month, day, hour, minute, second (UTC). PDF/A needs a date.
    pub printed_at: (i32, u8, u8, u8, u8, u8),
    /// "Printed at …" line of the footer, as the reader should read it.
    pub printed_label: String,
    /// Section headings and labels, in the reader's language.
    pub labels: Labels,
}

/// Words of the layout, so that the PDF follows the reader's language.
#[derive(Debug, Clone)]
pub struct Labels {
    /// `fr` or `en` (anything else is taken as `en`).
    pub lang: String,
    /// Label "owner".
    pub owner: String,
    /// Label "team".
    pub team: String,
    /// Label "created".
    pub created: String,
    /// Label "modified".
    pub modified: String,
    /// Label "date".
    pub date: String,
    /// Label "status".
    pub status: String,
    /// Label "category".
    pub category: String,
    /// Label "tags".
    pub tags: String,
    /// Label "fields".
    pub fields: String,
    /// Label "steps".
    pub steps: String,
    /// Label "links".
    pub links: String,
    /// Label "attachments".
    pub attachments: String,
    /// Label "history".
    pub history: String,
    /// Label "versions".
    pub versions: String,
    /// Label "last_change".
    pub last_change: String,
    /// Label "timestamps".
    pub timestamps: String,
    /// Label "signatures".
    pub signatures: String,
    /// Label "name".
    pub name: String,
    /// Label "value".
    pub value: String,
    /// Label "size".
    pub size: String,
    /// Label "done".
    pub done: String,
    /// Label "none".
    pub none: String,
    /// Title of the table of contents of a selection.
    pub contents: String,
}

impl Default for Labels {
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        Self {
            lang: s("en"),
            owner: s("Owner"),
            team: s("Team"),
            created: s("Created"),
            modified: s("Modified"),
            date: s("Date"),
            status: s("Status"),
            category: s("Category"),
            tags: s("Tags"),
            fields: s("Fields"),
            steps: s("Steps"),
            links: s("Links"),
            attachments: s("Attachments"),
            history: s("History"),
            versions: s("Versions"),
            last_change: s("Last change"),
            timestamps: s("Trusted timestamps"),
            signatures: s("Signatures"),
            name: s("Name"),
            value: s("Value"),
            size: s("Size"),
            done: s("done"),
            none: s("none"),
            contents: s("Contents"),
        }
    }
}

/// One extra field.
#[derive(Debug, Clone, Default)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Value, as printed.
    pub value: String,
    /// Unit, if any.
    pub unit: Option<String>,
}

/// One step.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// What to do.
    pub text: String,
    /// Whether it is finished.
    pub done: bool,
    /// Who finished it and when, as printed.
    pub done_by: Option<String>,
}

/// One link to another entity.
#[derive(Debug, Clone, Default)]
pub struct Link {
    /// The target's title.
    pub title: String,
    /// The target's kind, as printed.
    pub kind: String,
    /// The target's id.
    pub id: i64,
}

/// One attachment.
#[derive(Debug, Clone, Default)]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

/// How the entity came to be.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Number of saved versions.
    pub versions: u64,
    /// Who changed it last and when, as printed.
    pub last_change: String,
    /// For content captured offline on a field device: the device's clock (not proven) beside
    /// the server's receive time, as printed; empty when every change was made on the server.
    pub offline: String,
}

/// One trusted timestamp.
#[derive(Debug, Clone, Default)]
pub struct TimestampProof {
    /// The token's time, as printed.
    pub time: String,
    /// The authority's name.
    pub tsa: String,
    /// The stamped hash, with its algorithm.
    pub hash: String,
}

/// One signature.
#[derive(Debug, Clone, Default)]
pub struct SignatureProof {
    /// Who signed.
    pub signer: String,
    /// What the signature means (approval, review…).
    pub meaning: String,
    /// When, as printed.
    pub time: String,
}

/// A file carried inside a PDF/A-3b output.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedFile {
    /// File name inside the PDF.
    pub name: String,
    /// Media type.
    pub mime_type: String,
    /// What it is, shown by PDF readers.
    pub description: String,
    /// Content.
    pub data: Vec<u8>,
}

/// Why no PDF came out.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    /// The layout failed (the message is typst's first error).
    #[error("laying out the PDF failed: {0}")]
    Layout(String),
    /// The PDF export failed, for instance on a PDF/A rule.
    #[error("exporting the PDF failed: {0}")]
    Export(String),
}

/// Lays out `entity` and exports it as a PDF of the given standard.
///
/// Images the body shows are decoded by typst; if one of them cannot be, the PDF is laid out
/// again with the image's name in its place rather than failing.
pub fn render(entity: &EntityPdf, standard: Standard) -> Result<Vec<u8>, PdfError> {
    match render_with(entity, standard, true) {
        Ok(pdf) => Ok(pdf),
        Err(_) if !entity.images.is_empty() => render_with(entity, standard, false),
        Err(e) => Err(e),
    }
}

/// Lays out several entities as one document titled `title`: a table of contents (also the
/// PDF's bookmarks), then each entity from a new page with the same sections as [`render`].
/// In PDF/A-3b each entity's embedded files are attached, named after the entity's id.
///
/// Memory: the whole selection is in memory at once, and typst forces it. `entities` (text,
/// images, attached files) are held by the caller; the typst world holds a second copy of each
/// distinct image (once, however many entries show it, and however often) and attached file; `typst::compile` lays out every page into one `PagedDocument`
/// (decoded images included) before `typst_pdf::pdf` serialises it into one `Vec<u8>`. Typst
/// has no page-by-page or streaming output, so the peak grows with the selection's pages and
/// image bytes; callers bound the selection (export scope limit) and prefer `.eln` or ZIP
/// exports, which stream, for large ones.
pub fn render_selection(
    title: &str,
    entities: &[EntityPdf],
    standard: Standard,
) -> Result<Vec<u8>, PdfError> {
    let has_images = entities.iter().any(|e| !e.images.is_empty());
    match render_selection_with(title, entities, standard, true) {
        Ok(pdf) => Ok(pdf),
        Err(_) if has_images => render_selection_with(title, entities, standard, false),
        Err(e) => Err(e),
    }
}

fn render_selection_with(
    title: &str,
    entities: &[EntityPdf],
    standard: Standard,
    with_images: bool,
) -> Result<Vec<u8>, PdfError> {
    let fonts = world::fonts();
    let mut files = BTreeMap::new();
    let source = markup::selection(title, entities, standard, with_images, fonts, &mut files);
    // Only the first entry's id and print time are needed: cloning it would copy its images.
    let (uuid, printed_at) = entities
        .first()
        .map(|e| (e.uuid.as_str(), e.printed_at))
        .unwrap_or_default();
    let ident = format!("selection-{uuid}");
    compile(source, files, printed_at, &ident, standard)
}

fn render_with(
    entity: &EntityPdf,
    standard: Standard,
    with_images: bool,
) -> Result<Vec<u8>, PdfError> {
    let fonts = world::fonts();
    let mut files = BTreeMap::new();
    let source = markup::document(entity, standard, with_images, fonts, &mut files);
    compile(source, files, entity.printed_at, &entity.uuid, standard)
}

fn compile(
    source: String,
    files: BTreeMap<String, typst::foundations::Bytes>,
    printed_at: (i32, u8, u8, u8, u8, u8),
    ident: &str,
    standard: Standard,
) -> Result<Vec<u8>, PdfError> {
    let world = world::PdfWorld::new(source, files)
        .ok_or_else(|| PdfError::Layout("the main file has no valid path".to_owned()))?;
    let document = typst::compile::<typst_layout::PagedDocument>(&world)
        .output
        .map_err(|errors| PdfError::Layout(first_message(&errors)))?;
    let (year, month, day, hour, minute, second) = printed_at;
    let timestamp =
        typst::foundations::Datetime::from_ymd_hms(year, month, day, hour, minute, second)
            .map(typst_pdf::Timestamp::new_utc);
    let standards = typst_pdf::PdfStandards::new(&[match standard {
        Standard::PdfA2b => typst_pdf::PdfStandard::A_2b,
        Standard::PdfA3b => typst_pdf::PdfStandard::A_3b,
    }])
    .map_err(|e| PdfError::Export(e.message().to_string()))?;
    let options = typst_pdf::PdfOptions {
        ident: typst::foundations::Smart::Custom(ident.to_owned()),
        creator: typst::foundations::Smart::Custom(Some("Cahier".to_owned())),
        timestamp,
        standards,
        ..Default::default()
    };
    typst_pdf::pdf(&document, &options).map_err(|errors| PdfError::Export(first_message(&errors)))
}

fn first_message(errors: &[typst::diag::SourceDiagnostic]) -> String {
    errors
        .first()
        .map(|e| e.message.to_string())
        .unwrap_or_else(|| "unknown error".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EntityPdf {
        EntityPdf {
            title: "Soil survey".into(),
            kind: "Experiment".into(),
            id: 7,
            elabid: "20260101-abc".into(),
            uuid: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee".into(),
            owner: "Alice Test".into(),
            team: "Ecology".into(),
            created: "2026-01-01 10:00:00".into(),
            modified: "2026-01-02 11:00:00".into(),
            body: "# Method\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n1. one\n2. two\n   - nested\n\n> quoted\n\n![missing](x.png)".into(),
            steps: vec![Step {
                text: "Weigh".into(),
                done: true,
                done_by: Some("Alice 2026-01-01".into()),
            }],
            attachments: vec![Attachment {
                name: "plot.png".into(),
                size: 10,
                sha256: "ab".repeat(32),
            }],
            printed_at: (2026, 1, 3, 12, 0, 0),
            ..Default::default()
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn renders_pdfa_2b() {
        let pdf = render(&sample(), Standard::PdfA2b).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(contains(&pdf, b"pdfaid:part"));
    }

    #[test]
    fn pdfa_3b_carries_the_embedded_proofs() {
        let mut entity = sample();
        entity.embedded.push(EmbeddedFile {
            name: "../timestamp 1.zip".into(),
            mime_type: "application/zip".into(),
            description: "proof".into(),
            data: b"PK\x05\x06".to_vec(),
        });
        let pdf = render(&entity, Standard::PdfA3b).unwrap();
        assert!(contains(&pdf, b"/EmbeddedFiles"));
        // PDF/A-2b never carries them.
        let pdf = render(&entity, Standard::PdfA2b).unwrap();
        assert!(!contains(&pdf, b"/EmbeddedFiles"));
    }

    #[test]
    fn a_selection_has_every_entry_and_their_proofs() {
        let mut second = sample();
        second.id = 8;
        second.title = "Water survey".into();
        second.embedded.push(EmbeddedFile {
            name: "timestamp-1.zip".into(),
            mime_type: "application/zip".into(),
            description: "proof".into(),
            data: b"PK\x05\x06".to_vec(),
        });
        let mut first = sample();
        first.embedded = second.embedded.clone();
        let pdf = render_selection("Two entries", &[first, second], Standard::PdfA3b).unwrap();
        assert!(contains(&pdf, b"pdfaid:part"));
        assert!(contains(&pdf, b"/Outlines"));
        // The same file name from two entries is attached twice, under two names.
        assert!(contains(&pdf, b"7-timestamp-1.zip"));
        assert!(contains(&pdf, b"8-timestamp-1.zip"));
    }

    #[test]
    fn an_undecodable_image_is_named_instead_of_failing() {
        let mut entity = sample();
        entity
            .images
            .insert("x.png".into(), b"\x89PNG\r\n\x1a\nbroken".as_slice().into());
        let pdf = render(&entity, Standard::PdfA2b).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }

    #[test]
    fn an_image_shown_twice_and_by_two_entries_is_one_file_of_the_layout() {
        let image: Arc<[u8]> = b"\x89PNG\r\n\x1a\nsame bytes".as_slice().into();
        let mut first = sample();
        first.body = "![a](x.png)\n\n![b](x.png)\n\n![c](y.png)".into();
        first.images.insert("x.png".into(), image.clone());
        first.images.insert("y.png".into(), image.clone());
        let mut second = sample();
        second.body = "![d](z.png)".into();
        second.images.insert("z.png".into(), image.to_vec().into());
        let mut files = BTreeMap::new();
        let source = markup::selection(
            "Two",
            &[first, second],
            Standard::PdfA2b,
            true,
            world::fonts(),
            &mut files,
        );
        let images: Vec<_> = files.keys().filter(|p| p.starts_with("/images/")).collect();
        assert_eq!(images.len(), 1, "{images:?}");
        assert_eq!(source.matches("#image(").count(), 4);
    }
}
