//! Opening an `.eln` archive safely. Every entry is checked before anything is read: exactly one
//! top folder, no absolute path, no `..`, no symlink, no encrypted entry, a bounded number of
//! entries, bounded declared sizes and a bounded compression ratio (zip bombs). Reads count the
//! bytes actually inflated too, since a ZIP header can lie about sizes.
//!
//! Paths are normalised the lenient way real files need (eLabFTW writes `//` inside names;
//! some Windows tools write `\`), and looked up only among the entries found under the root.

use crate::graph::Graph;
use crate::model::Crate;
use crate::scratch::{PlainScratch, Scratch};
use crate::{ElnError, Result, refused};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};

/// Safety limits of one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries in the ZIP.
    pub max_entries: usize,
    /// Sum of the uncompressed sizes.
    pub max_total_bytes: u64,
    /// Uncompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Uncompressed ÷ compressed size, for entries larger than [`Limits::RATIO_FLOOR`].
    pub max_ratio: u64,
    /// Size of `ro-crate-metadata.json`.
    pub max_metadata_bytes: u64,
}

impl Limits {
    /// Entries smaller than this are not ratio-checked (a small text file compresses well).
    pub const RATIO_FLOOR: u64 = 1 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_total_bytes: 8 << 30,
            max_entry_bytes: 2 << 30,
            max_ratio: 200,
            max_metadata_bytes: 128 << 20,
        }
    }
}

/// An opened, checked archive.
#[derive(Debug)]
pub struct ElnArchive<R: Read + Seek> {
    zip: zip::ZipArchive<R>,
    root: String,
    /// Normalised path under the root → (entry index, declared size).
    files: HashMap<String, (usize, u64)>,
    krate: Crate,
    signed: bool,
    limits: Limits,
}

/// Splits a ZIP entry name or a crate path into clean segments: `\` counts as `/`, empty and `.`
/// segments go (the `//` quirk), and anything that could leave the folder is refused.
pub fn clean_segments(name: &str) -> Result<Vec<&str>, String> {
    if name.contains('\0') {
        return Err(format!("{name:?}: a NUL byte in a file name"));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(format!("{name}: absolute paths are not allowed"));
    }
    let mut segments = Vec::new();
    for segment in name.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => return Err(format!("{name}: a path leaving the archive's folder (..)")),
            s if segments.is_empty() && s.len() == 2 && s.ends_with(':') => {
                return Err(format!("{name}: absolute paths are not allowed"));
            }
            s => segments.push(s),
        }
    }
    Ok(segments)
}

impl<R: Read + Seek> ElnArchive<R> {
    /// Opens and checks `reader`; refuses the whole archive at the first broken rule. The
    /// metadata is copied to an anonymous temporary file of the system's temporary folder.
    pub fn open(reader: R, limits: Limits) -> Result<Self> {
        Self::open_in(reader, limits, &std::env::temp_dir())
    }

    /// Like [`ElnArchive::open`], the temporary copy of `ro-crate-metadata.json` made in
    /// `temp_dir` (anonymous: removed when the archive is dropped, or by the system if the
    /// process dies). Memory then holds the graph's index ([`Graph`]), not the graph.
    pub fn open_in(reader: R, limits: Limits, temp_dir: &std::path::Path) -> Result<Self> {
        Self::open_with(reader, limits, &PlainScratch(temp_dir.to_owned()))
    }

    /// Like [`ElnArchive::open_in`], the copy of the metadata kept in a file of `scratch`
    /// (encrypted at rest on a field replica).
    pub fn open_with(reader: R, limits: Limits, scratch: &dyn Scratch) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(reader)?;
        if zip.len() > limits.max_entries {
            return Err(refused(format!(
                "the archive has {} entries; at most {} are accepted",
                zip.len(),
                limits.max_entries
            )));
        }
        let mut root: Option<String> = None;
        let mut files = HashMap::new();
        let mut total: u64 = 0;
        for index in 0..zip.len() {
            let entry = zip.by_index_raw(index)?;
            let name = entry.name()?.into_owned();
            if entry.is_symlink() {
                return Err(refused(format!(
                    "{name}: symbolic links are not accepted in an archive"
                )));
            }
            if entry.encrypted() {
                return Err(refused(format!(
                    "{name}: encrypted entries are not supported"
                )));
            }
            let segments = clean_segments(&name).map_err(refused)?;
            let Some((first, rest)) = segments.split_first() else {
                continue;
            };
            match &root {
                None => root = Some((*first).to_owned()),
                Some(r) if r == first => {}
                Some(r) => {
                    return Err(refused(format!(
                        "the archive must hold exactly one top folder; found {r:?} and {first:?}"
                    )));
                }
            }
            if entry.is_dir() {
                continue;
            }
            if rest.is_empty() {
                return Err(refused(format!(
                    "{name}: a file outside the archive's top folder"
                )));
            }
            let size = entry.size();
            if size > limits.max_entry_bytes {
                return Err(refused(format!(
                    "{name}: {size} bytes uncompressed; at most {} are accepted per file",
                    limits.max_entry_bytes
                )));
            }
            if size > Limits::RATIO_FLOOR
                && size / entry.compressed_size().max(1) > limits.max_ratio
            {
                return Err(refused(format!(
                    "{name}: compressed more than {}:1, refused as a possible zip bomb",
                    limits.max_ratio
                )));
            }
            total = total.saturating_add(size);
            if total > limits.max_total_bytes {
                return Err(refused(format!(
                    "the archive holds more than {} bytes uncompressed",
                    limits.max_total_bytes
                )));
            }
            files.insert(rest.join("/"), (index, size));
        }
        let Some(root) = root else {
            return Err(refused("the archive is empty"));
        };
        let signed = files.contains_key("ro-crate-metadata.json.minisig");
        let mut copy = scratch.create()?;
        copy_limited(
            &mut zip,
            &files,
            "ro-crate-metadata.json",
            &mut copy,
            limits.max_metadata_bytes,
        )
        .map_err(|error| match error {
            ElnError::Missing(_) => refused(format!(
                "{root}/ro-crate-metadata.json is missing: not an .eln archive"
            )),
            ElnError::Refused(_) => refused(format!(
                "ro-crate-metadata.json is larger than {} bytes",
                limits.max_metadata_bytes
            )),
            other => other,
        })?;
        let krate = Crate::from_graph(Graph::from_reader(copy.into_reader()?)?);
        Ok(Self {
            zip,
            root,
            files,
            krate,
            signed,
            limits,
        })
    }

    /// The top folder's name.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The crate graph of `ro-crate-metadata.json`, indexed ([`Crate`]).
    pub fn krate(&self) -> &Crate {
        &self.krate
    }

    /// Whether the archive carries `ro-crate-metadata.json.minisig`.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The normalised path under the root of the file a crate `@id` names, if the archive holds
    /// it. Remote ids (`https://…`) and ids leaving the folder give `None`.
    pub fn resolve(&self, id: &str) -> Option<String> {
        if is_remote(id) {
            return None;
        }
        let decoded = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
        for candidate in [decoded.as_ref(), id] {
            if let Ok(segments) = clean_segments(candidate) {
                let path = segments.join("/");
                if self.files.contains_key(&path) {
                    return Some(path);
                }
            }
        }
        None
    }

    /// The declared size of a file found by [`ElnArchive::resolve`].
    pub fn size(&self, path: &str) -> Option<u64> {
        self.files.get(path).map(|(_, size)| *size)
    }

    /// Copies the file at `path` (from [`ElnArchive::resolve`]) into `sink`, refusing it if it
    /// inflates past its declared size or the per-file limit.
    pub fn copy(&mut self, path: &str, sink: &mut dyn Write) -> Result<u64> {
        let limit = self.limits.max_entry_bytes;
        copy_limited(&mut self.zip, &self.files, path, sink, limit)
    }
}

/// Copies the file at `path` into `sink`, refusing it past its declared size or `limit`.
fn copy_limited<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    files: &HashMap<String, (usize, u64)>,
    path: &str,
    sink: &mut dyn Write,
    limit: u64,
) -> Result<u64> {
    let Some(&(index, declared)) = files.get(path) else {
        return Err(ElnError::Missing(path.to_owned()));
    };
    if declared > limit {
        return Err(refused(format!("{path}: larger than {limit} bytes")));
    }
    let mut entry = zip.by_index(index)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut written: u64 = 0;
    loop {
        let n = entry.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        written = written.saturating_add(n as u64);
        if written > declared || written > limit {
            return Err(refused(format!(
                "{path}: inflates past its declared size, refused as a possible zip bomb"
            )));
        }
        sink.write_all(&buffer[..n])?;
    }
    Ok(written)
}

/// Whether an `@id` is an absolute URI (never read, never fetched).
pub fn is_remote(id: &str) -> bool {
    match id.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_drop_doubled_slashes_and_refuse_escapes() {
        assert_eq!(clean_segments("a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert!(clean_segments("a/../../etc").is_err());
        assert!(clean_segments("/etc/passwd").is_err());
        assert!(clean_segments("C:/x").is_err());
        assert!(clean_segments("a\\..\\b").is_err());
    }

    #[test]
    fn remote_ids_are_recognised() {
        assert!(is_remote("https://example.org/x.png"));
        assert!(is_remote("urn:uuid:1234"));
        assert!(!is_remote("./folder/file.txt"));
        assert!(!is_remote("folder/file:1.txt"));
    }
}
