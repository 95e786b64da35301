//! The blob store: attachment files named by the SHA-256 of their content, under
//! `<root>/ab/abcdef…` (the first two hex digits name the folder). A blob is written to a
//! temporary file under `<root>/tmp` while it is hashed, synced to disk, then renamed into place
//! and its folder synced, so a blob that has a name is complete. Writing the same bytes twice
//! keeps one file. Memory use is flat whatever the size: bytes pass through a fixed buffer.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Size of the copy buffer.
const BUFFER: usize = 64 * 1024;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The content is larger than the store accepts.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// No blob has this hash.
    #[error("blob not found")]
    NotFound,
    /// A hash that is not 64 lowercase hex digits.
    #[error("not a SHA-256 hash")]
    BadHash,
    /// The content does not hash to the name it was sent under (corrupted or cut off); nothing
    /// was kept.
    #[error("the content hashes to {actual}, not {expected}")]
    HashMismatch {
        /// The hash the sender named.
        expected: String,
        /// The hash of what arrived.
        actual: String,
    },
    /// Reading the source, or the disk, failed.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

/// A folder of content-addressed files.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    max_bytes: u64,
}

/// What [`BlobStore::verify`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs read and hashed.
    pub checked: usize,
    /// Expected hashes with no file.
    pub missing: Vec<String>,
    /// Files whose content no longer hashes to their name.
    pub corrupted: Vec<String>,
}

impl VerifyReport {
    /// Whether every blob is present and intact.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.corrupted.is_empty()
    }
}

/// Whether `hash` is a SHA-256 in lowercase hex.
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl BlobStore {
    /// A store rooted at `root` (created on first write) accepting blobs up to `max_bytes`.
    pub fn new(root: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            root: root.into(),
            max_bytes,
        }
    }

    /// The folder holding the blobs.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The largest accepted blob, bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the blob named `hash` lives.
    pub fn path_of(&self, hash: &str) -> Result<PathBuf, BlobError> {
        if !is_hash(hash) {
            return Err(BlobError::BadHash);
        }
        Ok(self.root.join(&hash[..2]).join(hash))
    }

    /// Starts writing a blob; feed it with [`BlobWriter::write`], then [`BlobWriter::finish`].
    /// Dropping the writer before `finish` removes the temporary file.
    pub async fn writer(&self) -> Result<BlobWriter, BlobError> {
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let path = tmp_dir.join(format!("upload-{}", crate::random_hex(16)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            tmp: Some(path),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stores everything `reader` yields; returns the hash and size.
    pub async fn put_stream(
        &self,
        mut reader: impl AsyncRead + Unpin,
    ) -> Result<(String, u64), BlobError> {
        let mut writer = self.writer().await?;
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let n = reader.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            writer.write(&buffer[..n]).await?;
        }
        writer.finish().await
    }

    /// Opens the blob named `hash` for reading.
    pub async fn open(&self, hash: &str) -> Result<tokio::fs::File, BlobError> {
        match tokio::fs::File::open(self.path_of(hash)?).await {
            Ok(file) => Ok(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether the blob named `hash` exists.
    pub async fn exists(&self, hash: &str) -> bool {
        match self.path_of(hash) {
            Ok(path) => tokio::fs::try_exists(path).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Re-hashes every blob on disk, and reports those of `expected` that are missing.
    pub async fn verify(
        &self,
        expected: impl IntoIterator<Item = String>,
    ) -> Result<VerifyReport, BlobError> {
        let mut report = VerifyReport::default();
        let mut present = std::collections::BTreeSet::new();
        let mut folders = match tokio::fs::read_dir(&self.root).await {
            Ok(dir) => Some(dir),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(error.into()),
        };
        let mut buffer = vec![0u8; BUFFER];
        while let Some(dir) = folders.as_mut() {
            let Some(folder) = dir.next_entry().await? else {
                break;
            };
            let name = folder.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !folder.file_type().await?.is_dir() {
                continue;
            }
            let mut files = tokio::fs::read_dir(folder.path()).await?;
            while let Some(file) = files.next_entry().await? {
                let hash = file.file_name().to_string_lossy().into_owned();
                if !is_hash(&hash) || !hash.starts_with(&name) {
                    continue;
                }
                let mut reader = tokio::fs::File::open(file.path()).await?;
                let mut hasher = Sha256::new();
                loop {
                    let n = reader.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                }
                report.checked += 1;
                if hex::encode(hasher.finalize()) != hash {
                    report.corrupted.push(hash.clone());
                }
                present.insert(hash);
            }
        }
        let mut missing: Vec<String> = expected
            .into_iter()
            .filter(|h| !present.contains(h))
            .collect();
        missing.sort();
        missing.dedup();
        report.missing = missing;
        report.corrupted.sort();
        Ok(report)
    }
}

/// A blob being written. See [`BlobStore::writer`].
#[derive(Debug)]
pub struct BlobWriter {
    store: BlobStore,
    file: Option<tokio::fs::File>,
    tmp: Option<PathBuf>,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    /// Appends `bytes`; fails with [`BlobError::TooLarge`] past the store's limit (the
    /// temporary file is removed when the writer is dropped).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let size = self.size.saturating_add(bytes.len() as u64);
        if size > self.store.max_bytes {
            return Err(BlobError::TooLarge {
                limit: self.store.max_bytes,
            });
        }
        let file = self.file.as_mut().ok_or(BlobError::NotFound)?;
        file.write_all(bytes).await?;
        self.hasher.update(bytes);
        self.size = size;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Syncs the file, names it by its hash (keeping an existing copy), syncs the folder;
    /// returns the hash and size.
    pub async fn finish(self) -> Result<(String, u64), BlobError> {
        self.finish_checked(None).await
    }

    /// [`BlobWriter::finish`], but only if the content hashes to `expected`; otherwise the
    /// temporary file is removed and nothing gets that name ([`BlobError::HashMismatch`]).
    pub async fn finish_expecting(self, expected: &str) -> Result<(String, u64), BlobError> {
        self.finish_checked(Some(expected)).await
    }

    async fn finish_checked(mut self, expected: Option<&str>) -> Result<(String, u64), BlobError> {
        let mut file = self.file.take().ok_or(BlobError::NotFound)?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        let hash = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = expected
            && expected != hash
        {
            // Dropping `self` removes the temporary file.
            return Err(BlobError::HashMismatch {
                expected: expected.to_owned(),
                actual: hash,
            });
        }
        let target = self.store.path_of(&hash)?;
        let folder = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.store.root.clone());
        let tmp = self.tmp.take().ok_or(BlobError::NotFound)?;
        if tokio::fs::try_exists(&target).await? {
            // Same content already stored: the name proves it.
            tokio::fs::remove_file(&tmp).await?;
            return Ok((hash, self.size));
        }
        let new_folder = !tokio::fs::try_exists(&folder).await?;
        tokio::fs::create_dir_all(&folder).await?;
        if new_folder {
            sync_dir(&self.store.root).await?;
        }
        if let Err(error) = tokio::fs::rename(&tmp, &target).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(error.into());
        }
        sync_dir(&folder).await?;
        Ok((hash, self.size))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            drop(self.file.take());
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Makes a folder's entries durable (a renamed file's new name survives power loss).
async fn sync_dir(path: &Path) -> Result<(), BlobError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
        .await
        .map_err(std::io::Error::other)??;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_once_verifies_and_enforces_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"), 10);
        let (hash, size) = store.put_stream(&b"hello"[..]).await.unwrap();
        assert_eq!(size, 5);
        assert_eq!(hash, hex::encode(Sha256::digest(b"hello")));
        let again = store.put_stream(&b"hello"[..]).await.unwrap();
        assert_eq!(again.0, hash);
        let mut read = String::new();
        store
            .open(&hash)
            .await
            .unwrap()
            .read_to_string(&mut read)
            .await
            .unwrap();
        assert_eq!(read, "hello");
        let error = store.put_stream(&b"way too long!"[..]).await.unwrap_err();
        assert!(matches!(error, BlobError::TooLarge { limit: 10 }));
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
        let other = "0".repeat(64);
        let report = store.verify([hash.clone(), other.clone()]).await.unwrap();
        assert_eq!(report.checked, 1);
        assert_eq!(report.missing, vec![other]);
        std::fs::write(store.path_of(&hash).unwrap(), b"jello").unwrap();
        let report = store.verify([]).await.unwrap();
        assert_eq!(report.corrupted, vec![hash]);
    }
}
