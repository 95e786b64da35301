//! The `.eln` exchange format of the ELN Consortium: a ZIP holding one folder, an RO-Crate whose
//! `ro-crate-metadata.json` describes every experiment or resource as a `Dataset`.
//!
//! - [`reader`] opens an archive under safety limits (one root folder, no path leaving it, no
//!   symlinks, no encrypted entries, size, count and compression-ratio limits) and reads only
//!   what lies inside that folder.
//! - [`graph`] indexes `ro-crate-metadata.json` (node `@id` → byte range in a temporary copy)
//!   so that memory does not grow with the number of entries; nodes are parsed when asked for.
//! - [`model`] turns the JSON-LD graph into plain import records, leniently: the quirks of
//!   eLabFTW, Kadi4Mat, RSpace, SampleDB, PASTA and OpenSemanticLab files are absorbed, and
//!   properties it does not understand are kept rather than dropped.
//! - [`writer`] writes Cahier's own export (RO-Crate 1.2, flattened, one folder per entity),
//!   streaming file contents entity by entity.
//!
//! This crate does no database or network IO and never reads the clock: the store passes
//! times in. It never interprets a path outside the archive's root folder.

pub mod graph;
pub mod model;
pub mod reader;
pub mod scratch;
pub mod writer;

pub use model::{Crate, ImportedDataset, ImportedFile};
pub use reader::{ElnArchive, Limits};
pub use scratch::{PlainScratch, ReadSeek, Scratch, ScratchFile};
pub use writer::{ElnWriter, ExportEntity, ExportLink};

/// The namespace of Cahier's own properties in its exports (`cahier:kind`, `cahier:heads` …).
pub const CAHIER_NS: &str = "https://w3id.org/cahier/ns#";
/// The RO-Crate 1.2 context.
pub const ROCRATE_CONTEXT_1_2: &str = "https://w3id.org/ro/crate/1.2/context";
/// The media type of an `.eln` file.
pub const MEDIA_TYPE: &str = "application/vnd.eln+zip";

/// Why an archive cannot be read or written. Every message says what is wrong in the user's
/// terms; none of them is a panic.
#[derive(Debug, thiserror::Error)]
pub enum ElnError {
    /// The archive breaks a rule of the format or a safety limit; nothing of it is imported.
    #[error("{0}")]
    Refused(String),
    /// A file named by the metadata is not in the archive.
    #[error("{0} is not in the archive")]
    Missing(String),
    /// Reading or writing failed.
    #[error("reading the archive failed: {0}")]
    Io(#[from] std::io::Error),
    /// The ZIP structure is damaged.
    #[error("not a readable ZIP archive: {0}")]
    Zip(#[from] zip::result::ZipError),
}

/// A `Result` with [`ElnError`].
pub type Result<T, E = ElnError> = std::result::Result<T, E>;

pub(crate) fn refused(message: impl Into<String>) -> ElnError {
    ElnError::Refused(message.into())
}
