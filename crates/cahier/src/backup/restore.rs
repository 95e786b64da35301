//! `cahier restore`: puts a backup made by `cahier backup` back into a lab's data folder,
//! with the lab's server stopped.
//!
//! Everything about the backup is checked before the folder is touched: its manifest, a
//! schema this Cahier can run, its database's pages, and every attachment file the database
//! names. Then, holding the folder's lock exclusively ([`crate::data_lock`]) and after SQLite
//! said no process has the current database open: the backup's database is copied beside the
//! current one (its SHA-256 checked against the manifest), the attachment and export files
//! are copied in (each file hashed as it is copied; files already there and intact are kept,
//! and so are files the backup lacks: harmless, the orphan sweep removes them), then the
//! current database is kept aside under a dated name (unless `--discard-current`) with its
//! `-wal`, `-shm` or `-journal` files, which must never meet the restored database, and the
//! copy is renamed into place. At every instant `cahier.db` is either the old database or the
//! restored one; a restore cut short leaves at most `cahier.db.restoring` and extra files,
//! and can be run again.

use super::{BlobCopy, CONFIG, FORMAT, PROGRESS_EVERY, copy_blob, copy_file, hash_blob, hash_file};
use super::{
    Copied, DATABASE, MANIFEST, Manifest, REPLICA_MARKER, human_bytes, is_plain_name, sync_dir,
};
use anyhow::{Context, bail};
use cahier_store::backup::Current;
use cahier_store::blobs::BlobStore;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `cahier restore` is asked.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup folder.
    pub from: PathBuf,
    /// The lab's data folder (its server stopped).
    pub data: PathBuf,
    /// Remove the replaced database instead of keeping it aside.
    pub discard_current: bool,
}

/// What became of the lab's configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// The backup has none.
    NotInBackup,
    /// The folder had none: the backup's was put back.
    Restored,
    /// The folder's is the same as the backup's.
    Same,
    /// The folder's differs and was kept; the backup's was written beside it, here.
    KeptCurrent(PathBuf),
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    /// The data folder.
    pub data: PathBuf,
    /// The backup's manifest.
    pub manifest: Manifest,
    /// Where the replaced database was kept, if there was one and it was kept.
    pub kept_aside: Option<PathBuf>,
    /// Whether a database was replaced and, with `--discard-current`, removed.
    pub discarded: bool,
    /// Attachment files copied in.
    pub files_copied: Copied,
    /// Attachment files already in the folder, intact.
    pub files_present: u64,
    /// Export files copied in.
    pub exports: u64,
    /// The configuration file.
    pub config: ConfigOutcome,
}

impl std::fmt::Display for RestoreSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        writeln!(
            f,
            "restored {} to the backup of {}: {} entities, {} users, {} attachment files ({} copied, {} already there), {} exports, schema {}",
            self.data.display(),
            m.created_at,
            m.counts.entities,
            m.counts.users,
            self.files_copied.count + self.files_present,
            self.files_copied.count,
            self.files_present,
            self.exports,
            m.schema_version
        )?;
        match (&self.kept_aside, self.discarded) {
            (Some(aside), _) => writeln!(
                f,
                "the replaced database is kept as {} (remove it once you no longer need it)",
                aside.display()
            )?,
            (None, true) => writeln!(f, "the replaced database was removed (--discard-current)")?,
            (None, false) => writeln!(f, "there was no database to replace")?,
        }
        match &self.config {
            ConfigOutcome::KeptCurrent(beside) => writeln!(
                f,
                "configuration: the folder's {CONFIG} differs from the backup's and was kept; the backup's is {}",
                beside.display()
            )?,
            ConfigOutcome::Restored => {
                writeln!(f, "configuration: the backup's {CONFIG} was put back")?
            }
            ConfigOutcome::Same | ConfigOutcome::NotInBackup => {}
        }
        if !m.missing_files.is_empty() {
            writeln!(
                f,
                "warning: {} attachment files were already missing from the lab when the backup was made; cahier verify lists them",
                m.missing_files.len()
            )?;
        }
        let latest = cahier_store::backup::latest_schema_version();
        if m.schema_version < latest {
            writeln!(
                f,
                "the next start brings the database's schema from version {} to {latest}",
                m.schema_version
            )?;
        }
        writeln!(
            f,
            "field replicas: at its next sync each replica sees that the lab went back (the lab no longer holds the mark of its history the replica last saw), reads the whole feed again and sends back what the lab lost since the backup: its own edits and new entries with their files, and the lab's edits it had pulled. Work done at the lab after the backup that no replica pulled is not recovered{}",
            if self.kept_aside.is_some() {
                " (it is still in the replaced database)"
            } else {
                ""
            }
        )?;
        write!(
            f,
            "start the lab again: cahier serve --data {}",
            self.data.display()
        )
    }
}

/// Restores the backup in `options.from` into the data folder `options.data`, whose server
/// must be stopped; reports progress through `progress`, one line at a time.
pub async fn restore(
    options: &RestoreOptions,
    now_ms: i64,
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<RestoreSummary> {
    let from = &options.from;
    let data = &options.data;
    let manifest = read_manifest(from)?;
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(from), std::fs::canonicalize(data))
        && a == b
    {
        bail!("the backup and the data directory are the same folder");
    }
    if data.join(REPLICA_MARKER).exists() {
        bail!(
            "{} is a field replica's folder, not a lab's: a backup of a lab goes back into a lab's data directory",
            data.display()
        );
    }
    let facts = check_backup(from, &manifest).await?;
    progress(format!(
        "backup of {} checked: schema {}, {} entities, {} attachment files",
        manifest.created_at,
        facts.schema_version,
        facts.entities,
        facts.files.len()
    ));

    let _lock = crate::data_lock::DataLock::exclusive(data)?;
    let live = data.join(DATABASE);
    match cahier_store::backup::settle_current(&live)
        .await
        .with_context(|| format!("checking {}", live.display()))?
    {
        Current::Absent => progress(format!(
            "{} holds no database yet: restoring into it",
            data.display()
        )),
        Current::Settled => {}
        Current::InUse => bail!(
            "{} is open in another process (a Cahier server older than this command, another command, or the sqlite3 shell): stop it first",
            live.display()
        ),
        Current::Unreadable(reason) => progress(format!(
            "the current database cannot be read ({reason}); it is replaced as it is"
        )),
    }

    let staged = data.join(format!("{DATABASE}.restoring"));
    stage_database(&from.join(&manifest.database.file), &staged, &manifest).await?;
    progress(format!(
        "database: copied and verified ({})",
        human_bytes(manifest.database.bytes)
    ));
    let files = match restore_files(from, data, &facts.files, progress).await {
        Ok(files) => files,
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            return Err(error);
        }
    };
    let exports = match restore_exports(from, data, &facts.exports) {
        Ok(exports) => exports,
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            return Err(error);
        }
    };
    if exports > 0 {
        progress(format!("exports: {exports} copied"));
    }
    let config = restore_config(from, data)?;

    let replaced = live.exists();
    let kept_aside = if replaced && !options.discard_current {
        Some(aside_name(data, now_ms))
    } else {
        None
    };
    swap(data, &staged, kept_aside.as_deref())?;
    Ok(RestoreSummary {
        data: data.clone(),
        manifest,
        kept_aside,
        discarded: replaced && options.discard_current,
        files_copied: files.0,
        files_present: files.1,
        exports,
        config,
    })
}

/// Reads and checks the manifest of the backup in `from`.
fn read_manifest(from: &Path) -> anyhow::Result<Manifest> {
    if !from.is_dir() {
        bail!("there is no backup at {}", from.display());
    }
    let path = from.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} holds no {MANIFEST}: it is not a complete backup (a backup cut short stays in a folder named …incomplete-…, without a manifest); restore another one",
            from.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Cahier backup manifest", path.display()))?;
    if manifest.format > FORMAT {
        bail!(
            "{} was written by a newer Cahier ({}, manifest format {}): restore it with that version or a later one",
            from.display(),
            manifest.cahier_version,
            manifest.format
        );
    }
    let latest = cahier_store::backup::latest_schema_version();
    if manifest.schema_version > latest {
        bail!(
            "the backup's database has schema version {}, newer than this Cahier's ({latest}): it was made by Cahier {}; restore it with that version or a later one",
            manifest.schema_version,
            manifest.cahier_version
        );
    }
    if !is_plain_name(&manifest.database.file) {
        bail!(
            "{} names a database outside the backup ({:?})",
            path.display(),
            manifest.database.file
        );
    }
    Ok(manifest)
}

/// Checks the backup's database (its SHA-256 and schema against the manifest's, its pages) and that
/// every attachment file it names is in the backup; returns what the database holds.
async fn check_backup(
    from: &Path,
    manifest: &Manifest,
) -> anyhow::Result<cahier_store::backup::Snapshot> {
    let db = from.join(&manifest.database.file);
    if !db.is_file() {
        bail!(
            "{} is missing: the backup is incomplete; restore another one",
            db.display()
        );
    }
    let (size, sha256) = hash_file(&db).await?;
    if size != manifest.database.bytes || sha256 != manifest.database.sha256 {
        bail!(
            "{} does not match its manifest (SHA-256 {sha256}, {size} bytes; the manifest says {}, {} bytes): it changed after the backup was made (was a server run on the backup folder?); restore another one",
            db.display(),
            manifest.database.sha256,
            manifest.database.bytes
        );
    }
    let facts = cahier_store::backup::inspect(&db)
        .await
        .with_context(|| format!("checking the backup's database {}", db.display()))?;
    if facts.schema_version != manifest.schema_version {
        bail!(
            "{} has schema version {}, not the {} of its manifest: it is not this backup's database",
            db.display(),
            facts.schema_version,
            manifest.schema_version
        );
    }
    let blobs = BlobStore::new(from.join("blobs"), u64::MAX);
    let known_missing: BTreeSet<&str> = manifest.missing_files.iter().map(String::as_str).collect();
    let mut absent = Vec::new();
    for hash in &facts.files {
        if !known_missing.contains(hash.as_str()) && !blobs.exists(hash).await {
            absent.push(hash.as_str());
        }
    }
    if let Some(first) = absent.first() {
        bail!(
            "the backup is incomplete: {} attachment files its database names are not in {} (first: {first}); restore another one",
            absent.len(),
            blobs.root().display()
        );
    }
    Ok(facts)
}

/// Copies the backup's database to `staged`, hashing it as it goes; removes the copy and
/// fails unless it is the file the manifest describes.
async fn stage_database(db: &Path, staged: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let (source, target) = (db.to_path_buf(), staged.to_path_buf());
    let copied = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String)> {
        use std::io::{Read, Write};
        let mut input = std::fs::File::open(&source)
            .with_context(|| format!("reading {}", source.display()))?;
        // A copy left by a restore cut short is replaced.
        let mut output = std::fs::File::create(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = input
                .read(&mut buffer)
                .with_context(|| format!("reading {}", source.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            output
                .write_all(&buffer[..n])
                .with_context(|| format!("writing {}", target.display()))?;
            size += n as u64;
        }
        output
            .sync_all()
            .with_context(|| format!("syncing {}", target.display()))?;
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .context("copying the database")?;
    let (size, sha256) = match copied {
        Ok(copied) => copied,
        Err(error) => {
            let _ = std::fs::remove_file(staged);
            return Err(error);
        }
    };
    if size != manifest.database.bytes || sha256 != manifest.database.sha256 {
        let _ = std::fs::remove_file(staged);
        bail!(
            "{} changed while it was being restored (SHA-256 {sha256}, {size} bytes; the manifest says {}, {} bytes); restore again",
            db.display(),
            manifest.database.sha256,
            manifest.database.bytes
        );
    }
    Ok(())
}

/// Copies every attachment file of the backup into the data folder's blob store, each one
/// hashed as it is copied; keeps the files already there that hash to their name. Returns
/// the files copied and the files found intact.
async fn restore_files(
    from: &Path,
    data: &Path,
    named: &[String],
    progress: &mut dyn FnMut(String),
) -> anyhow::Result<(Copied, u64)> {
    let source = BlobStore::new(from.join("blobs"), u64::MAX);
    let target = BlobStore::new(data.join("blobs"), u64::MAX);
    let named: BTreeSet<&str> = named.iter().map(String::as_str).collect();
    let stored = source
        .stored()
        .await
        .context("listing the backup's attachment files")?;
    progress(format!("files: {} to restore", stored.len()));
    let mut copied = Copied::default();
    let mut present = 0u64;
    let mut reported = Instant::now();
    for (hash, _) in &stored {
        if target.exists(hash).await {
            match hash_blob(&target, hash).await? {
                Some((_, actual)) if &actual == hash => {
                    present += 1;
                    continue;
                }
                _ => {
                    let path = target.path_of(hash).context("naming the file")?;
                    progress(format!(
                        "files: {} is damaged; replaced by the backup's",
                        path.display()
                    ));
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => {
                            return Err(error)
                                .with_context(|| format!("removing {}", path.display()));
                        }
                    }
                }
            }
        }
        match copy_blob(&source, &target, hash).await? {
            BlobCopy::Copied(bytes) | BlobCopy::Linked(bytes) => {
                copied.count += 1;
                copied.bytes = copied.bytes.saturating_add(bytes);
            }
            BlobCopy::Gone if named.contains(hash.as_str()) => {
                bail!("the backup's file {hash} disappeared while it was being restored")
            }
            BlobCopy::Gone => {}
            BlobCopy::Damaged(actual) if named.contains(hash.as_str()) => bail!(
                "the backup's file {hash} is damaged (its content hashes to {actual}): the backup cannot be restored whole; restore another one"
            ),
            BlobCopy::Damaged(_) => progress(format!(
                "files: the backup's {hash} is damaged and no entry names it; left out"
            )),
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            progress(format!(
                "files: {} of {} restored ({} copied)",
                copied.count + present,
                stored.len(),
                human_bytes(copied.bytes)
            ));
        }
    }
    progress(format!(
        "files: {} copied and verified ({}), {} already there and intact",
        copied.count,
        human_bytes(copied.bytes),
        present
    ));
    Ok((copied, present))
}

/// Copies the backup's export files named by its database into `exports/`.
fn restore_exports(from: &Path, data: &Path, exports: &[(String, i64)]) -> anyhow::Result<u64> {
    let mut copied = 0;
    let folder = data.join("exports");
    for (name, _) in exports {
        let source = from.join("exports").join(name);
        if !is_plain_name(name) || !source.is_file() {
            continue;
        }
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let partial = folder.join(format!("{name}.restoring"));
        copy_file(&source, &partial)?;
        std::fs::rename(&partial, folder.join(name))
            .with_context(|| format!("renaming {}", partial.display()))?;
        copied += 1;
    }
    if copied > 0 {
        sync_dir(&folder)?;
    }
    Ok(copied)
}

/// Puts the backup's configuration file back when the folder has none; keeps the folder's
/// when it differs (it may have changed on purpose since), writing the backup's beside it.
fn restore_config(from: &Path, data: &Path) -> anyhow::Result<ConfigOutcome> {
    let source = from.join(CONFIG);
    if !source.is_file() {
        return Ok(ConfigOutcome::NotInBackup);
    }
    let current = data.join(CONFIG);
    if !current.exists() {
        copy_file(&source, &current)?;
        return Ok(ConfigOutcome::Restored);
    }
    let backed_up =
        std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
    let now = std::fs::read(&current).with_context(|| format!("reading {}", current.display()))?;
    if backed_up == now {
        return Ok(ConfigOutcome::Same);
    }
    let beside = data.join(format!("{CONFIG}.from-backup"));
    copy_file(&source, &beside)?;
    Ok(ConfigOutcome::KeptCurrent(beside))
}

/// A name for the replaced database, dated, not taken yet.
fn aside_name(data: &Path, now_ms: i64) -> PathBuf {
    let stamp = cahier_core::clock::format_sql_datetime(now_ms)
        .replace(' ', "T")
        .replace(':', "-");
    let base = format!("{DATABASE}.replaced-{stamp}Z");
    let mut name = data.join(&base);
    let mut n = 2;
    while name.exists() {
        name = data.join(format!("{base}-{n}"));
        n += 1;
    }
    name
}

/// Replaces the database with `staged`: the current one is kept as `aside` (a hard link, so
/// `cahier.db` never goes missing) or dropped, its `-wal`, `-shm` and `-journal` files moved
/// with it (or removed) before the restored database takes the name, which they would
/// otherwise be applied to.
fn swap(data: &Path, staged: &Path, aside: Option<&Path>) -> anyhow::Result<()> {
    let live = data.join(DATABASE);
    if let Some(aside) = aside
        && let Err(error) = std::fs::hard_link(&live, aside)
    {
        // A file system without hard links: the name is free for a moment, under the lock.
        std::fs::rename(&live, aside).with_context(|| {
            format!(
                "keeping {} as {} (a hard link failed: {error})",
                live.display(),
                aside.display()
            )
        })?;
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = data.join(format!("{DATABASE}{suffix}"));
        if !side.exists() {
            continue;
        }
        match aside {
            Some(aside) => {
                let kept = PathBuf::from(format!("{}{suffix}", aside.display()));
                std::fs::rename(&side, &kept)
                    .with_context(|| format!("moving {} to {}", side.display(), kept.display()))?;
            }
            None => std::fs::remove_file(&side)
                .with_context(|| format!("removing {}", side.display()))?,
        }
    }
    std::fs::rename(staged, &live)
        .with_context(|| format!("renaming {} to {}", staged.display(), live.display()))?;
    sync_dir(data)
}
