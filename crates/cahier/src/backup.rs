//! `cahier backup` and `cahier restore` of a lab on the embedded SQLite database.
//!
//! A backup is a folder laid out like a data folder, plus a manifest:
//!
//! ```text
//! DEST/cahier-backup.json   the manifest (written last: a folder without one is no backup)
//! DEST/cahier.db            the database, a consistent copy (VACUUM INTO), one file
//! DEST/blobs/ab/abcdef…     every attachment file, named by its SHA-256 as in the lab
//! DEST/exports/…            the files of finished background exports
//! DEST/cahier.toml          the lab's configuration file, when it has one in its folder
//! ```
//!
//! The database is copied first and the files after: a file is written before any row names
//! it (ARCHITECTURE.md, "Attachments") and never removed while a row names it, so every file
//! the copy names is on disk when the files are listed. Each file is hashed as it is copied
//! and must hash to its name. Everything is written under `DEST.incomplete-…` and renamed to
//! `DEST` at the end, so a backup cut short never looks complete. Not copied: `blobs/tmp`
//! (uploads in progress), `blobs/thumbs` (a cache), `tsa/` (root bundles written again from
//! the database at start), `cahier.lock`, and files outside the folder (a `--config` file
//! elsewhere, the TSA's roots or password file it names).
//!
//! The manifest's [`FORMAT`] is a contract with older and newer Cahiers: add fields, never
//! change or remove one (a newer format is refused by name).
//!
//! Restoring: [`restore`] (`backup/restore.rs`).

use anyhow::{Context, bail};
use cahier_store::blobs::BlobStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod restore;
pub use restore::{RestoreOptions, RestoreSummary, restore};

/// The manifest's file name in a backup folder.
pub const MANIFEST: &str = "cahier-backup.json";
/// The database's file name, in a data folder and in a backup.
pub const DATABASE: &str = "cahier.db";
/// The configuration file's name in a data folder.
const CONFIG: &str = "cahier.toml";
/// A field replica's folder holds this file (`replica.rs`); its database is encrypted.
const REPLICA_MARKER: &str = "replica.salt";
/// Version of the manifest's layout. DO NOT CHANGE the meaning of a field; add fields, and
/// bump this only for a change older Cahiers must refuse.
pub const FORMAT: u32 = 1;
/// How often progress is reported while files are copied.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What `cahier-backup.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The Cahier that made it.
    pub cahier_version: String,
    /// When the database copy was taken, RFC 3339 UTC.
    pub created_at: String,
    /// The same, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The data folder it was taken from.
    pub source: String,
    /// The last migration applied to the database.
    pub schema_version: i64,
    /// The mark of the lab's history at the copy (`<seq>.<stamp>`, docs/SYNC.md "Marks"):
    /// replicas that synced later hold later marks, which a lab restored from this backup
    /// lacks, and so they see the restore.
    pub history_mark: Option<String>,
    /// The database file.
    pub database: DatabaseFile,
    /// What the database holds.
    pub counts: Counts,
    /// The attachment files copied.
    pub files: Copied,
    /// The export files copied.
    pub exports: Copied,
    /// Whether `cahier.toml` was copied.
    pub config: bool,
    /// Attachment files the database names that the lab did not hold intact when the backup
    /// was made (`cahier verify` on the lab lists them too); empty in a sound backup.
    #[serde(default)]
    pub missing_files: Vec<String>,
}

/// The database file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseFile {
    /// Its name in the folder.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: String,
}

/// Rows of the database copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Entities of every kind.
    pub entities: i64,
    /// Stored document changes.
    pub changes: i64,
    /// Accounts.
    pub users: i64,
    /// Attachment records.
    pub attachments: i64,
    /// Audit log entries.
    pub audit_entries: i64,
}

/// Files copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copied {
    /// How many.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What `cahier backup` is asked.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The lab's data folder.
    pub data: PathBuf,
    /// The backup folder to make: new, or empty.
    pub to: PathBuf,
    /// Hard-link attachment files instead of copying them when `to` is on the same file
    /// system (copies otherwise).
    pub link: bool,
}

/// What a backup made.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The backup folder.
    pub dest: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Attachment files hard-linked rather than copied.
    pub linked: u64,
}

impl std::fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        write!(
            f,
            "backup complete: {} — {} entities, {} users, {} attachment files ({}{}), {} exports, \
             database {} (schema {}), taken {}, history mark {}",
            self.dest.display(),
            m.counts.entities,
            m.counts.users,
            m.files.count,
            human_bytes(m.files.bytes),
            if self.linked > 0 {
                format!(", {} hard-linked", self.linked)
            } else {
                String::new()
            },
            m.exports.count,
            human_bytes(m.database.bytes),
            m.schema_version,
            m.created_at,
            m.history_mark.as_deref().unwrap_or("none"),
        )
    }
}

/// Sizes as people read them: `512 B`, `3.4 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Makes a backup of the lab in `options.data` while its server may run; reports progress
/// through `progress`, one line at a time. The returned manifest's `missing_files` lists the
/// files the lab itself lacked: the backup is then complete but so is the damage (the caller
/// fails).
pub async fn backup(
    options: &BackupOptions,
    now_ms: i64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<BackupSummary> {
    let data = &options.data;
    let live = data.join(DATABASE);
    if data.join(REPLICA_MARKER).exists() {
        bail!(
            "{} is a field replica's folder: back up the lab instead (a replica gets everything back from it)",
            data.display()
        );
    }
    if !live.is_file() {
        bail!("{} holds no lab database ({DATABASE})", data.display());
    }
    let dest = absolute(&options.to)?;
    let data_abs = std::fs::canonicalize(data)
        .with_context(|| format!("reading the data directory {}", data.display()))?;
    let (parent, name) = split_dest(&dest)?;
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating the folder {}", parent.display()))?;
    let parent = std::fs::canonicalize(&parent)
        .with_context(|| format!("reading the folder {}", parent.display()))?;
    let dest = parent.join(&name);
    if dest.starts_with(&data_abs) {
        bail!(
            "{} is inside the data directory {}: put backups outside it",
            dest.display(),
            data_abs.display()
        );
    }
    if dest.exists() && !is_empty_dir(&dest)? {
        bail!(
            "{} already exists and is not an empty folder: give a new folder for each backup",
            dest.display()
        );
    }
    // Shared, like a server's: refused only while the folder is being restored.
    let _lock = crate::data_lock::DataLock::shared(data)?;
    let work = parent.join(format!(
        "{name}.incomplete-{}",
        hex::encode(rand::random::<[u8; 4]>())
    ));
    std::fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    progress(format!(
        "backing up {} to {} (written in {} until complete)",
        data_abs.display(),
        dest.display(),
        work.display()
    ));
    match fill(options, &data_abs, &work, now_ms, progress).await {
        Ok((manifest, linked)) => {
            // An empty folder given as the destination is replaced by the rename.
            std::fs::rename(&work, &dest)
                .with_context(|| format!("renaming {} to {}", work.display(), dest.display()))?;
            sync_dir(&parent)?;
            Ok(BackupSummary {
                dest,
                manifest,
                linked,
            })
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&work);
            Err(error)
        }
    }
}

/// Writes the backup into `work`: database, files, exports, configuration, then manifest.
async fn fill(
    options: &BackupOptions,
    data: &Path,
    work: &Path,
    now_ms: i64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<(Manifest, u64)> {
    let copy = work.join(DATABASE);
    cahier_store::backup::snapshot(&data.join(DATABASE), &copy)
        .await
        .context("copying the database")?;
    let facts = cahier_store::backup::inspect(&copy)
        .await
        .context("checking the database copy")?;
    let (db_bytes, db_sha256) = hash_file(&copy).await?;
    progress(format!(
        "database: copied and checked, {} (schema {}, {} entities, {} users, history mark {})",
        human_bytes(db_bytes),
        facts.schema_version,
        facts.entities,
        facts.users,
        facts.history_mark.as_deref().unwrap_or("none"),
    ));

    let source = BlobStore::new(data.join("blobs"), u64::MAX);
    let target = BlobStore::new(work.join("blobs"), u64::MAX);
    let stored = source
        .stored()
        .await
        .context("listing the attachment files")?;
    let mut sizes = Vec::with_capacity(stored.len());
    let mut total = 0u64;
    for (hash, path) in stored {
        // A file removed since the listing (an orphan swept) is skipped below.
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        total = total.saturating_add(size);
        sizes.push((hash, path, size));
    }
    progress(format!(
        "files: {} to copy ({})",
        sizes.len(),
        human_bytes(total)
    ));
    let mut copied = Copied::default();
    let mut linked = 0u64;
    let mut present = std::collections::BTreeSet::new();
    let mut reported = Instant::now();
    for (hash, path, _) in &sizes {
        let outcome = if options.link {
            link_blob(&source, &target, hash, path).await?
        } else {
            copy_blob(&source, &target, hash).await?
        };
        match outcome {
            BlobCopy::Copied(bytes) | BlobCopy::Linked(bytes) => {
                if matches!(outcome, BlobCopy::Linked(_)) {
                    linked += 1;
                }
                copied.count += 1;
                copied.bytes = copied.bytes.saturating_add(bytes);
                present.insert(hash.clone());
            }
            BlobCopy::Gone => {}
            BlobCopy::Damaged(actual) => progress(format!(
                "files: {hash} is damaged in the lab (its content hashes to {actual}); not copied"
            )),
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            progress(format!(
                "files: {} of {} copied ({} of {})",
                copied.count,
                sizes.len(),
                human_bytes(copied.bytes),
                human_bytes(total)
            ));
        }
    }
    // The writer's scratch folder, empty now.
    let _ = std::fs::remove_dir(work.join("blobs").join("tmp"));
    let missing: Vec<String> = facts
        .files
        .iter()
        .filter(|hash| !present.contains(*hash))
        .cloned()
        .collect();
    progress(format!(
        "files: {} copied and verified ({}){}",
        copied.count,
        human_bytes(copied.bytes),
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                "; {} named by the database missing or damaged in the lab",
                missing.len()
            )
        }
    ));

    let exports = copy_exports(data, work, &facts.exports, progress)?;
    let config = data.join(CONFIG);
    let has_config = config.is_file();
    if has_config {
        copy_file(&config, &work.join(CONFIG))?;
        progress(format!("configuration: {CONFIG} copied"));
    }

    let manifest = Manifest {
        format: FORMAT,
        cahier_version: crate::VERSION.to_owned(),
        created_at: cahier_core::zone::Zone::utc().rfc3339(now_ms),
        created_at_ms: now_ms,
        source: data.display().to_string(),
        schema_version: facts.schema_version,
        history_mark: facts.history_mark,
        database: DatabaseFile {
            file: DATABASE.to_owned(),
            bytes: db_bytes,
            sha256: db_sha256,
        },
        counts: Counts {
            entities: facts.entities,
            changes: facts.changes,
            users: facts.users,
            attachments: facts.attachments,
            audit_entries: facts.audit_entries,
        },
        files: copied,
        exports,
        config: has_config,
        missing_files: missing,
    };
    let text = serde_json::to_string_pretty(&manifest).context("writing the manifest")?;
    write_synced(&work.join(MANIFEST), text.as_bytes())?;
    sync_dir(work)?;
    Ok((manifest, linked))
}

/// What became of one attachment file.
enum BlobCopy {
    /// Copied, its content hashing to its name; its size.
    Copied(u64),
    /// Hard-linked, its content hashing to its name; its size.
    Linked(u64),
    /// Gone from the source since it was listed.
    Gone,
    /// Its content hashes to this other value; nothing was written.
    Damaged(String),
}

/// Copies one blob through the target's writer, which hashes what it writes and names the
/// file only if it hashes to `hash` (synced, then renamed into place).
async fn copy_blob(source: &BlobStore, target: &BlobStore, hash: &str) -> anyhow::Result<BlobCopy> {
    use cahier_store::blobs::BlobError;
    let mut reader = match source.open(hash).await {
        Ok(reader) => reader,
        Err(BlobError::NotFound) => return Ok(BlobCopy::Gone),
        Err(error) => return Err(error).with_context(|| format!("reading the file {hash}")),
    };
    let mut writer = target
        .writer()
        .await
        .with_context(|| format!("writing the file {hash}"))?;
    while let Some(chunk) = reader
        .next_chunk()
        .await
        .with_context(|| format!("reading the file {hash}"))?
    {
        writer
            .write(&chunk)
            .await
            .with_context(|| format!("writing the file {hash}"))?;
    }
    match writer.finish_expecting(hash).await {
        Ok((_, size)) => Ok(BlobCopy::Copied(size)),
        Err(BlobError::HashMismatch { actual, .. }) => Ok(BlobCopy::Damaged(actual)),
        Err(error) => Err(error).with_context(|| format!("writing the file {hash}")),
    }
}

/// Hard-links one blob into the target (copying it when the two are on different file
/// systems), after checking that its content hashes to its name.
async fn link_blob(
    source: &BlobStore,
    target: &BlobStore,
    hash: &str,
    path: &Path,
) -> anyhow::Result<BlobCopy> {
    let (size, actual) = match hash_blob(source, hash).await? {
        Some(found) => found,
        None => return Ok(BlobCopy::Gone),
    };
    if actual != hash {
        return Ok(BlobCopy::Damaged(actual));
    }
    let link = target.path_of(hash).context("naming the file")?;
    if let Some(folder) = link.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
    }
    match std::fs::hard_link(path, &link) {
        Ok(()) => Ok(BlobCopy::Linked(size)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BlobCopy::Gone),
        // Another file system (EXDEV), one without hard links, too many links: a copy does.
        Err(_) => copy_blob(source, target, hash).await,
    }
}

/// The size and SHA-256 of a blob's content, or `None` if it is gone.
async fn hash_blob(store: &BlobStore, hash: &str) -> anyhow::Result<Option<(u64, String)>> {
    use cahier_store::blobs::BlobError;
    let mut reader = match store.open(hash).await {
        Ok(reader) => reader,
        Err(BlobError::NotFound) => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("reading the file {hash}")),
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = reader
        .next_chunk()
        .await
        .with_context(|| format!("reading the file {hash}"))?
    {
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(Some((size, hex::encode(hasher.finalize()))))
}

/// Copies the files of finished exports named by the database copy; one that is missing or
/// of another size is reported and left out (an export can be made again).
fn copy_exports(
    data: &Path,
    work: &Path,
    exports: &[(String, i64)],
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    if exports.is_empty() {
        return Ok(copied);
    }
    let folder = work.join("exports");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    for (name, size) in exports {
        if !is_plain_name(name) {
            progress(format!("exports: {name:?} is not a file name; left out"));
            continue;
        }
        let source = data.join("exports").join(name);
        match std::fs::metadata(&source) {
            Ok(meta) if i64::try_from(meta.len()).ok() == Some(*size) => {
                copy_file(&source, &folder.join(name))?;
                copied.count += 1;
                copied.bytes = copied.bytes.saturating_add(meta.len());
            }
            Ok(meta) => progress(format!(
                "exports: {name} is {} bytes, not the {size} recorded; left out",
                meta.len()
            )),
            Err(_) => progress(format!("exports: {name} is missing in the lab; left out")),
        }
    }
    sync_dir(&folder)?;
    progress(format!(
        "exports: {} copied ({})",
        copied.count,
        human_bytes(copied.bytes)
    ));
    Ok(copied)
}

/// A name of one file in one folder: no separator, not `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

/// Copies a file and syncs the copy.
fn copy_file(from: &Path, to: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::File::open(to)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("syncing {}", to.display()))?;
    Ok(bytes)
}

/// Writes a new file and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes a folder's entries durable (a new or renamed name survives power loss).
fn sync_dir(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing the folder {}", path.display()))?;
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The size and SHA-256 of a file, read in a blocking thread.
async fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String)> {
        use std::io::Read;
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buffer[..n]);
        }
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .context("hashing a file")?
}

/// Whether `path` is a folder with nothing in it.
fn is_empty_dir(path: &Path) -> anyhow::Result<bool> {
    if !path.is_dir() {
        return Ok(false);
    }
    Ok(std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .next()
        .is_none())
}

/// `path` made absolute against the current directory (without resolving links).
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("reading the path {}", path.display()))
}

/// The parent folder and the last name of a destination.
fn split_dest(dest: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n != "..")
        .with_context(|| format!("{} names no folder", dest.display()))?;
    let parent = dest
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} names no folder", dest.display()))?;
    Ok((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn export_names_from_the_database_stay_in_their_folder() {
        assert!(is_plain_name("export-3-0a1b2c3d.eln"));
        for bad in ["", ".", "..", "../cahier.db", "a/b", "a\\b", ".hidden"] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }
}
