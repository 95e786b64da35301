//! The blob store: attachment files named by the SHA-256 of their content, under
//! `<root>/ab/abcdef…` (the first two hex digits name the folder). A blob is written to a
//! temporary file under `<root>/tmp` while it is hashed, synced to disk, then renamed into place
//! and its folder synced, so a blob that has a name is complete. Writing the same bytes twice
//! keeps one file. Memory use is flat whatever the size: bytes pass through a fixed buffer.
//!
//! A store may be encrypted (a field replica's: [`BlobStore::encrypted`]). Its files are then
//! `MAGIC`, a random 19-byte nonce prefix, and the content in 64 KiB segments sealed with
//! XChaCha20-Poly1305 in the STREAM construction (each segment's nonce holds its position and
//! a last-segment flag, so reordering, truncation and tampering are all detected). Names stay
//! the SHA-256 of the plaintext; a Range read decrypts only the segments it needs.
//! DO NOT CHANGE this format: files written by it must stay readable (bump `MAGIC` instead).

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

mod sealed;
pub use sealed::{ContentScratch, ContentSink, ContentSource, SealedReader, SealedWriter};

/// Size of the copy buffer.
const BUFFER: usize = 64 * 1024;
/// Plaintext bytes per encrypted segment.
const SEGMENT: usize = 64 * 1024;
/// Authentication tag per encrypted segment.
const TAG: usize = 16;
/// First bytes of an encrypted blob (format version 1).
const MAGIC: &[u8; 8] = b"CAHIERB1";
/// Random nonce prefix of an encrypted blob (XChaCha20's 24 bytes less STREAM's 5).
const PREFIX: usize = 19;
/// Header of an encrypted blob.
const HEADER: usize = MAGIC.len() + PREFIX;

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
    /// An encrypted blob that does not decrypt: damaged, cut, or sealed with another key.
    #[error("the stored file is damaged or was encrypted with another key")]
    Unreadable,
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
    key: Option<BlobKey>,
    /// Hashes named or touched by a write (in an encrypted store: a field replica's) since the
    /// file-policy drop step last found them otherwise kept ([`BlobStore::remove_unless_fresh`]); shared by clones. Naming a blob and
    /// removing one both hold this lock, so a drop never removes a file a write has just
    /// handed to its caller (who has yet to write the row, or the fetch record, keeping it).
    fresh: Arc<tokio::sync::Mutex<std::collections::HashSet<String>>>,
}

/// The key of an encrypted store; never printed.
#[derive(Clone)]
struct BlobKey(Arc<[u8; 32]>);

impl std::fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobKey(..)")
    }
}

impl BlobKey {
    fn stream(&self, prefix: &[u8]) -> StreamBE32<XChaCha20Poly1305> {
        let cipher = XChaCha20Poly1305::new(GenericArray::from_slice(&self.0[..]));
        StreamBE32::from_aead(cipher, GenericArray::from_slice(prefix))
    }
}

/// Plaintext size of an encrypted file of `len` bytes.
fn plain_size(len: u64) -> Result<u64, BlobError> {
    let body = len
        .checked_sub(HEADER as u64)
        .filter(|b| *b >= TAG as u64)
        .ok_or(BlobError::Unreadable)?;
    let segments = body.div_ceil((SEGMENT + TAG) as u64);
    Ok(body - segments * TAG as u64)
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
            key: None,
            fresh: Arc::default(),
        }
    }

    /// Encrypts every blob written from now on with `key`, and decrypts on reading.
    pub fn encrypted(mut self, key: [u8; 32]) -> Self {
        self.key = Some(BlobKey(Arc::new(key)));
        self
    }

    /// Whether blobs are encrypted at rest.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
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
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let seal = match &self.key {
            Some(key) => {
                let prefix: [u8; PREFIX] = rand::random();
                let mut header = MAGIC.to_vec();
                header.extend_from_slice(&prefix);
                if let Err(error) = file.write_all(&header).await {
                    drop(file);
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(error.into());
                }
                Some(Seal::new(key, prefix))
            }
            None => None,
        };
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            tmp: Some(path),
            hasher: Sha256::new(),
            size: 0,
            seal,
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

    async fn open_file(&self, hash: &str) -> Result<tokio::fs::File, BlobError> {
        match tokio::fs::File::open(self.path_of(hash)?).await {
            Ok(file) => Ok(file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(BlobError::NotFound),
            Err(error) => Err(error.into()),
        }
    }

    /// The size of the blob's content, bytes.
    pub async fn size(&self, hash: &str) -> Result<u64, BlobError> {
        let len = self.open_file(hash).await?.metadata().await?.len();
        match self.key {
            Some(_) => plain_size(len),
            None => Ok(len),
        }
    }

    /// Opens the whole content of the blob named `hash`.
    pub async fn open(&self, hash: &str) -> Result<BlobReader, BlobError> {
        let size = self.size(hash).await?;
        self.open_range(hash, 0, size).await
    }

    /// Opens `length` bytes of the blob's content from `start` (decrypting only the segments
    /// they fall in). A range past the end is cut at the end.
    pub async fn open_range(
        &self,
        hash: &str,
        start: u64,
        length: u64,
    ) -> Result<BlobReader, BlobError> {
        let file = self.open_file(hash).await?;
        self.reader_over(file, start, length).await
    }

    /// A reader of `length` bytes of content from `start` of an open file written by this
    /// store (a blob, or a sealed file of [`BlobStore::content_sink`]).
    async fn reader_over(
        &self,
        mut file: tokio::fs::File,
        start: u64,
        length: u64,
    ) -> Result<BlobReader, BlobError> {
        let len = file.metadata().await?.len();
        let Some(key) = &self.key else {
            file.seek(std::io::SeekFrom::Start(start)).await?;
            return Ok(BlobReader {
                file,
                remaining: length.min(len.saturating_sub(start)),
                open: None,
            });
        };
        let size = plain_size(len)?;
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header)
            .await
            .map_err(|_| BlobError::Unreadable)?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(BlobError::Unreadable);
        }
        let segment = start / SEGMENT as u64;
        let segments = (len - HEADER as u64).div_ceil((SEGMENT + TAG) as u64);
        file.seek(std::io::SeekFrom::Start(
            HEADER as u64 + segment * (SEGMENT + TAG) as u64,
        ))
        .await?;
        Ok(BlobReader {
            file,
            remaining: length.min(size.saturating_sub(start)),
            open: Some(Open {
                stream: key.stream(&header[MAGIC.len()..]),
                segment,
                segments,
                skip: usize::try_from(start % SEGMENT as u64).unwrap_or(0),
            }),
        })
    }

    /// Whether the blob named `hash` exists.
    pub async fn exists(&self, hash: &str) -> bool {
        match self.path_of(hash) {
            Ok(path) => tokio::fs::try_exists(path).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Every blob on disk: its hash and its file (the `<root>/ab/abcdef…` layout; other files,
    /// such as `tmp/` and `thumbs/`, are not blobs).
    pub async fn stored(&self) -> Result<Vec<(String, PathBuf)>, BlobError> {
        let mut stored = Vec::new();
        let mut folders = match tokio::fs::read_dir(&self.root).await {
            Ok(dir) => dir,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(stored),
            Err(error) => return Err(error.into()),
        };
        while let Some(folder) = folders.next_entry().await? {
            let name = folder.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !folder.file_type().await?.is_dir() {
                continue;
            }
            let mut files = tokio::fs::read_dir(folder.path()).await?;
            while let Some(file) = files.next_entry().await? {
                let hash = file.file_name().to_string_lossy().into_owned();
                if is_hash(&hash) && hash.starts_with(&name) {
                    stored.push((hash, file.path()));
                }
            }
        }
        Ok(stored)
    }

    /// Removes the blob named `hash` unless a write named or touched it since the last
    /// [`BlobStore::settle`] of that hash; returns whether a file was removed. For the
    /// file-policy drop step, whose view of what is kept may be older than a write whose row
    /// (or fetch record) is still to come.
    pub async fn remove_unless_fresh(&self, hash: &str) -> Result<bool, BlobError> {
        let path = self.path_of(hash)?;
        let fresh = self.fresh.lock().await;
        if fresh.contains(hash) {
            return Ok(false);
        }
        let removed = match tokio::fs::remove_file(&path).await {
            Ok(()) => true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
            Err(error) => return Err(error.into()),
        };
        drop(fresh);
        Ok(removed)
    }

    /// Forgets every write (the policy keeps every file: none is dropped).
    pub async fn settle_all(&self) {
        self.fresh.lock().await.clear();
    }

    /// Forgets that `hash` was written lately: the caller has seen it kept by a record (a
    /// local change, a fetch, the policy), which protects it from now on.
    pub async fn settle(&self, hash: &str) {
        self.fresh.lock().await.remove(hash);
    }

    /// Re-hashes every blob on disk, and reports those of `expected` that are missing.
    pub async fn verify(
        &self,
        expected: impl IntoIterator<Item = String>,
    ) -> Result<VerifyReport, BlobError> {
        let mut report = VerifyReport::default();
        let mut present = std::collections::BTreeSet::new();
        for (hash, _) in self.stored().await? {
            let mut hasher = Sha256::new();
            let intact = match self.open(&hash).await {
                Ok(mut reader) => loop {
                    match reader.next_chunk().await {
                        Ok(Some(chunk)) => hasher.update(&chunk),
                        Ok(None) => break true,
                        Err(BlobError::Unreadable) => break false,
                        Err(error) => return Err(error),
                    }
                },
                Err(BlobError::Unreadable) => false,
                Err(error) => return Err(error),
            };
            report.checked += 1;
            if !intact || hex::encode(hasher.finalize()) != hash {
                report.corrupted.push(hash.clone());
            }
            present.insert(hash);
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

/// Reads a blob's content in chunks of at most 64 KiB. See [`BlobStore::open_range`].
pub struct BlobReader {
    file: tokio::fs::File,
    remaining: u64,
    open: Option<Open>,
}

/// Decryption state of an encrypted blob being read.
struct Open {
    stream: StreamBE32<XChaCha20Poly1305>,
    /// The next segment to read.
    segment: u64,
    /// Segments in the file.
    segments: u64,
    /// Bytes to drop from the next segment (a range starting inside it).
    skip: usize,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl BlobReader {
    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next chunk of content, or `None` at the end of the range.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, BlobError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let Some(open) = self.open.as_mut() else {
            let want = usize::try_from(self.remaining.min(BUFFER as u64)).unwrap_or(BUFFER);
            let mut buffer = vec![0u8; want];
            let n = self.file.read(&mut buffer).await?;
            if n == 0 {
                self.remaining = 0;
                return Ok(None);
            }
            buffer.truncate(n);
            self.remaining -= n as u64;
            return Ok(Some(buffer));
        };
        let mut sealed = vec![0u8; SEGMENT + TAG];
        let mut filled = 0;
        while filled < sealed.len() {
            let n = self.file.read(&mut sealed[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        sealed.truncate(filled);
        let position = u32::try_from(open.segment).map_err(|_| BlobError::Unreadable)?;
        let last = open.segment + 1 == open.segments;
        let mut plain = open
            .stream
            .decrypt(position, last, sealed.as_slice())
            .map_err(|_| BlobError::Unreadable)?;
        open.segment += 1;
        if open.skip > 0 {
            plain.drain(..open.skip.min(plain.len()));
            open.skip = 0;
        }
        plain.truncate(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if plain.is_empty() {
            return Err(BlobError::Unreadable);
        }
        self.remaining -= plain.len() as u64;
        Ok(Some(plain))
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
    seal: Option<Seal>,
}

/// Encryption state of a blob being written, in the format of the module's header (STREAM
/// over XChaCha20-Poly1305, 64 KiB segments: each segment's nonce is the file's prefix, its
/// position in big-endian 32 bits and a last-segment byte, as `aead::stream::StreamBE32`
/// builds it, which reads these files). Segments are sealed in place in one output buffer, so
/// a byte is copied once on its way to the disk. The last segment is held back (as plaintext
/// at the end of the buffer) until [`Seal::finish`] seals it as last.
struct Seal {
    cipher: XChaCha20Poly1305,
    prefix: [u8; PREFIX],
    /// Position of the next segment sealed.
    position: u32,
    /// Sealed segments not yet written, then the plaintext of the segment held back.
    out: Vec<u8>,
    /// Length of the plaintext held back at the end of `out` (at most one segment).
    held: usize,
}

impl Seal {
    fn new(key: &BlobKey, prefix: [u8; PREFIX]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(GenericArray::from_slice(&key.0[..])),
            prefix,
            position: 0,
            out: Vec::with_capacity(SEGMENT + TAG),
            held: 0,
        }
    }

    /// Seals the segment held back, as last or not.
    fn seal_held(&mut self, last: bool) -> Result<(), BlobError> {
        let mut nonce = chacha20poly1305::XNonce::default();
        nonce[..PREFIX].copy_from_slice(&self.prefix);
        nonce[PREFIX..PREFIX + 4].copy_from_slice(&self.position.to_be_bytes());
        nonce[PREFIX + 4] = u8::from(last);
        let start = self.out.len() - self.held;
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, &[], &mut self.out[start..])
            .map_err(|_| sealing_failed())?;
        self.out.extend_from_slice(&tag);
        self.held = 0;
        // STREAM refuses to go past the last position rather than reuse a nonce.
        self.position = self.position.checked_add(1).ok_or_else(sealing_failed)?;
        Ok(())
    }

    /// Takes in plaintext, sealing each segment it completes once more bytes follow it.
    fn absorb(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.held == SEGMENT {
                self.seal_held(false)?;
            }
            let take = rest.len().min(SEGMENT - self.held);
            self.out.extend_from_slice(&rest[..take]);
            self.held += take;
            rest = &rest[take..];
        }
        Ok(())
    }

    /// The file's header: `MAGIC` and the nonce prefix.
    fn header(&self) -> Vec<u8> {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&self.prefix);
        header
    }

    /// Sealed bytes ready to be written.
    fn ready(&self) -> &[u8] {
        &self.out[..self.out.len() - self.held]
    }

    /// Forgets the bytes of [`Seal::ready`] (written).
    fn written(&mut self) {
        let ready = self.out.len() - self.held;
        self.out.drain(..ready);
    }

    /// Seals the segment held back as last; returns what remains to be written.
    fn finish(&mut self) -> Result<&[u8], BlobError> {
        self.seal_held(true)?;
        Ok(&self.out)
    }
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal").finish_non_exhaustive()
    }
}

fn sealing_failed() -> BlobError {
    BlobError::Io(std::io::Error::other("encrypting the file failed"))
}

fn hashing_failed() -> BlobError {
    BlobError::Io(std::io::Error::other("hashing the file failed"))
}

/// Bytes per write of [`BlockOut`], and the alignment of direct writes (a multiple of any
/// disk's logical block size).
const BLOCK_WRITE: usize = 1024 * 1024;
const BLOCK_ALIGN: usize = 4096;

/// The temporary file opened a second time with `O_DIRECT` (Linux): a download's blocks go
/// to the disk as they come instead of piling up in the page cache for the `fsync` at the end
/// to write (which, measured, writes a downloaded file at half the speed and only once the
/// transfer is over). `None` where the file system refuses it (tmpfs); then the page cache.
#[derive(Debug)]
struct DirectOut(std::fs::File);

impl DirectOut {
    #[cfg(target_os = "linux")]
    fn open(path: &Path) -> Option<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
            .map(Self)
    }

    /// Elsewhere, the page cache.
    #[cfg(not(target_os = "linux"))]
    fn open(_path: &Path) -> Option<Self> {
        None
    }
}

/// Writes `bytes` at `offset` of `file` (portable: seek, then write).
fn write_at(mut file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    file.seek(std::io::SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

/// Writes a file from its start in aligned blocks of [`BLOCK_WRITE`] bytes, directly when it
/// can ([`DirectOut`]), else through the page cache; the last, partial block always through
/// the page cache. Memory: one block, whatever the file's size.
struct BlockOut {
    file: std::fs::File,
    direct: Option<DirectOut>,
    /// One block and room to align its start.
    storage: Vec<u8>,
    /// Where the aligned block starts in `storage`.
    start: usize,
    /// Bytes in the block.
    len: usize,
    /// File offset of the block.
    offset: u64,
}

impl BlockOut {
    /// Starts at the file's beginning with `head`, the bytes already written there.
    fn new(file: std::fs::File, direct: Option<DirectOut>, head: &[u8]) -> Self {
        let storage = vec![0u8; BLOCK_WRITE + BLOCK_ALIGN];
        let misalignment = storage.as_ptr() as usize % BLOCK_ALIGN;
        let start = (BLOCK_ALIGN - misalignment) % BLOCK_ALIGN;
        let mut out = Self {
            file,
            direct,
            storage,
            start,
            len: 0,
            offset: 0,
        };
        out.storage[start..start + head.len()].copy_from_slice(head);
        out.len = head.len();
        out
    }

    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK_WRITE - self.len);
            let at = self.start + self.len;
            self.storage[at..at + take].copy_from_slice(&rest[..take]);
            self.len += take;
            rest = &rest[take..];
            if self.len == BLOCK_WRITE {
                self.write_block()?;
            }
        }
        Ok(())
    }

    fn write_block(&mut self) -> std::io::Result<()> {
        let block = &self.storage[self.start..self.start + self.len];
        let written = match &self.direct {
            Some(direct) => write_at(&direct.0, block, self.offset),
            None => write_at(&self.file, block, self.offset),
        };
        if let Err(error) = written {
            // A file system that takes `O_DIRECT` at open but not for this write: the page
            // cache from now on (the same bytes at the same place).
            if self.direct.take().is_none() {
                return Err(error);
            }
            tracing::debug!(%error, "direct write refused; writing through the page cache");
            write_at(&self.file, block, self.offset)?;
        }
        self.offset += self.len as u64;
        self.len = 0;
        Ok(())
    }

    /// Writes the partial block through the page cache; returns the file, positioned at the
    /// end of what was written.
    fn finish(self) -> std::io::Result<std::fs::File> {
        let block = &self.storage[self.start..self.start + self.len];
        write_at(&self.file, block, self.offset)?;
        Ok(self.file)
    }
}

/// Content written by [`BlobWriter::write_from`] before its hashing moves to a thread of its
/// own (a small file is not worth a thread).
const HASH_THREAD_AFTER: u64 = 1024 * 1024;
/// Chunks waiting for the hashing thread.
const HASH_QUEUE: usize = 64;

/// A thread hashing the chunks of a blob being written, beside the one encrypting them.
struct HashThread<'scope, T> {
    chunks: std::sync::mpsc::SyncSender<std::sync::Arc<T>>,
    handle: std::thread::ScopedJoinHandle<'scope, Sha256>,
}

impl<'scope, T: AsRef<[u8]> + Send + Sync + 'scope> HashThread<'scope, T> {
    fn start<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, mut hasher: Sha256) -> Self {
        let (chunks, received) = std::sync::mpsc::sync_channel::<std::sync::Arc<T>>(HASH_QUEUE);
        let handle = scope.spawn(move || {
            while let Ok(chunk) = received.recv() {
                hasher.update((*chunk).as_ref());
            }
            hasher
        });
        Self { chunks, handle }
    }

    /// The hash state once every chunk sent is hashed.
    fn finish(self) -> Result<Sha256, BlobError> {
        drop(self.chunks);
        self.handle.join().map_err(|_| hashing_failed())
    }
}

impl BlobWriter {
    /// Appends `bytes`; fails with [`BlobError::TooLarge`] past the store's limit (the
    /// temporary file is removed when the writer is dropped).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.account(bytes)?;
        let file = self.file.as_mut().ok_or(BlobError::NotFound)?;
        let Some(seal) = self.seal.as_mut() else {
            file.write_all(bytes).await?;
            return Ok(());
        };
        seal.absorb(bytes)?;
        file.write_all(seal.ready()).await?;
        seal.written();
        Ok(())
    }

    /// Appends everything `chunks` yields until its senders are gone, encrypting and writing
    /// on one blocking thread in aligned 1 MiB blocks that go to the disk as they come
    /// ([`DirectOut`]), so that the sender (a download), the encryption and the disk work at
    /// the same time and the final `fsync` has little left to do. Past the first MiB, the
    /// content is hashed on a second thread beside it (a large file's hash and its encryption
    /// then take one core each). Only on a fresh writer. Returns the writer, to
    /// [`BlobWriter::finish`]; on error the temporary file is removed.
    pub async fn write_from<T>(
        mut self,
        mut chunks: tokio::sync::mpsc::Receiver<T>,
    ) -> Result<Self, BlobError>
    where
        T: AsRef<[u8]> + Send + Sync + 'static,
    {
        // The bytes already written (an encrypted file's header) are written again from the
        // start of the first block, so every block lies at an aligned offset.
        let head: Vec<u8> = match (&self.seal, self.size) {
            (Some(seal), 0) => seal.header(),
            (None, 0) => Vec::new(),
            _ => {
                return Err(BlobError::Io(std::io::Error::other(
                    "write_from after write",
                )));
            }
        };
        let file = self
            .file
            .take()
            .ok_or(BlobError::NotFound)?
            .into_std()
            .await;
        tokio::task::spawn_blocking(move || {
            let direct = self.tmp.as_deref().and_then(DirectOut::open);
            let mut out = BlockOut::new(file, direct, &head);
            // On error, `self` is dropped on return, which removes the temporary file.
            std::thread::scope(|scope| -> Result<(), BlobError> {
                let mut hashing: Option<HashThread<'_, T>> = None;
                while let Some(chunk) = chunks.blocking_recv() {
                    let chunk = std::sync::Arc::new(chunk);
                    let bytes = (*chunk).as_ref();
                    let size = self.size.saturating_add(bytes.len() as u64);
                    if size > self.store.max_bytes {
                        return Err(BlobError::TooLarge {
                            limit: self.store.max_bytes,
                        });
                    }
                    self.size = size;
                    match &hashing {
                        Some(thread) => {
                            // The thread only stops when this side drops its sender.
                            thread
                                .chunks
                                .send(chunk.clone())
                                .map_err(|_| hashing_failed())?;
                        }
                        None => {
                            self.hasher.update(bytes);
                            if self.size >= HASH_THREAD_AFTER {
                                hashing = Some(HashThread::start(
                                    scope,
                                    std::mem::take(&mut self.hasher),
                                ));
                            }
                        }
                    }
                    match self.seal.as_mut() {
                        None => out.push(bytes)?,
                        Some(seal) => {
                            seal.absorb(bytes)?;
                            // Moved on a block at a time: the segment held back is
                            // moved to the front of the buffer once per block, not per chunk.
                            if seal.ready().len() >= BLOCK_WRITE {
                                out.push(seal.ready())?;
                                seal.written();
                            }
                        }
                    }
                }
                if let Some(seal) = self.seal.as_mut() {
                    out.push(seal.ready())?;
                    seal.written();
                }
                if let Some(thread) = hashing {
                    self.hasher = thread.finish()?;
                }
                Ok(())
            })?;
            self.file = Some(tokio::fs::File::from_std(out.finish()?));
            Ok(self)
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?
    }

    /// Counts and hashes `bytes` (the plaintext); refuses them past the store's limit.
    fn account(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let size = self.size.saturating_add(bytes.len() as u64);
        if size > self.store.max_bytes {
            return Err(BlobError::TooLarge {
                limit: self.store.max_bytes,
            });
        }
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
        if let Some(mut seal) = self.seal.take() {
            file.write_all(seal.finish()?).await?;
        }
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
        // Held until the file is named (or found and touched): see `BlobStore::fresh`. Only
        // an encrypted store (a field replica, whose file policy may drop files) keeps track.
        let mut fresh = self.store.fresh.lock().await;
        if self.store.key.is_some() {
            fresh.insert(hash.clone());
        }
        if tokio::fs::try_exists(&target).await? {
            // Same content already stored: the name proves it. Its time is refreshed, so the
            // orphan sweep (sweep.rs) leaves it alone while the caller attaches it.
            tokio::fs::remove_file(&tmp).await?;
            let touched = target.clone();
            #[expect(
                clippy::disallowed_methods,
                reason = "a file's time comes from the system clock, as a write would set it"
            )]
            let now = std::time::SystemTime::now();
            tokio::task::spawn_blocking(move || {
                std::fs::File::options()
                    .write(true)
                    .open(&touched)?
                    .set_modified(now)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
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
        drop(fresh);
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
    use chacha20poly1305::aead::stream::EncryptorBE32;

    #[tokio::test]
    async fn stores_once_verifies_and_enforces_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"), 10);
        let (hash, size) = store.put_stream(&b"hello"[..]).await.unwrap();
        assert_eq!(size, 5);
        assert_eq!(hash, hex::encode(Sha256::digest(b"hello")));
        let again = store.put_stream(&b"hello"[..]).await.unwrap();
        assert_eq!(again.0, hash);
        assert_eq!(read_all(&store, &hash).await, b"hello");
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

    async fn read_all(store: &BlobStore, hash: &str) -> Vec<u8> {
        let mut reader = store.open(hash).await.unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            all.extend(chunk);
        }
        all
    }

    async fn read_range(store: &BlobStore, hash: &str, start: u64, length: u64) -> Vec<u8> {
        let mut reader = store.open_range(hash, start, length).await.unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            all.extend(chunk);
        }
        all
    }

    #[tokio::test]
    async fn encrypted_blobs_round_trip_by_plaintext_hash_and_serve_any_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"), 1 << 24).encrypted([7; 32]);
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (hash, size) = store.put_stream(&content[..]).await.unwrap();
            assert_eq!(
                hash,
                hex::encode(Sha256::digest(&content)),
                "named by plaintext"
            );
            assert_eq!(size, len as u64);
            assert_eq!(store.size(&hash).await.unwrap(), len as u64);
            assert_eq!(read_all(&store, &hash).await, content, "length {len}");
            let raw = std::fs::read(store.path_of(&hash).unwrap()).unwrap();
            assert!(raw.starts_with(MAGIC));
            if len >= 64 {
                let probe = &content[len / 2..len / 2 + 32];
                assert!(
                    !raw.windows(32).any(|w| w == probe),
                    "no plaintext on disk (length {len})"
                );
            }
            for (start, length) in [(0, 10), (SEGMENT - 3, 7), (len / 3, len / 2), (len, 5)] {
                let (start, length) = (start as u64, length as u64);
                if start > len as u64 {
                    continue;
                }
                let end = (start + length).min(len as u64);
                assert_eq!(
                    read_range(&store, &hash, start, length).await,
                    content[start as usize..end as usize],
                    "length {len}, range {start}+{length}"
                );
            }
        }
        let report = store.verify([]).await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.checked, 6);
    }

    /// Chunks fed through a channel (a download) give the same file as the async writer:
    /// same name, same plaintext, readable in the same format; a stream that stops early or
    /// runs past the limit leaves no file and no temporary file.
    #[tokio::test]
    async fn a_blob_written_from_a_channel_matches_and_a_failed_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        for store in [
            BlobStore::new(&root, 1 << 24).encrypted([7; 32]),
            BlobStore::new(dir.path().join("plain"), 1 << 24),
        ] {
            for len in [0, 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT + 3] {
                let content: Vec<u8> = (0..len).map(|i| (i % 247) as u8).collect();
                let (sender, receiver) = tokio::sync::mpsc::channel(4);
                let chunks: Vec<Vec<u8>> = content.chunks(7_777).map(<[u8]>::to_vec).collect();
                let feed = async move {
                    for chunk in chunks {
                        sender.send(chunk).await.unwrap();
                    }
                };
                let writer = store.writer().await.unwrap();
                let ((), written) = tokio::join!(feed, writer.write_from(receiver));
                let expected = hex::encode(Sha256::digest(&content));
                let (hash, size) = written.unwrap().finish_expecting(&expected).await.unwrap();
                assert_eq!((hash.as_str(), size), (expected.as_str(), len as u64));
                assert_eq!(read_all(&store, &hash).await, content, "length {len}");
            }
            assert!(store.verify([]).await.unwrap().is_ok());
            // Cut off: the content does not match the awaited hash; nothing is named.
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            sender.send(vec![1u8; 1000]).await.unwrap();
            drop(sender);
            let writer = store.writer().await.unwrap().write_from(receiver).await;
            let error = writer
                .unwrap()
                .finish_expecting(&"a".repeat(64))
                .await
                .unwrap_err();
            assert!(matches!(error, BlobError::HashMismatch { .. }));
            // Past the limit.
            let small = BlobStore::new(&store.root, 10);
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            sender.send(vec![1u8; 11]).await.unwrap();
            drop(sender);
            let error = small
                .writer()
                .await
                .unwrap()
                .write_from(receiver)
                .await
                .unwrap_err();
            assert!(matches!(error, BlobError::TooLarge { limit: 10 }));
            let tmp: Vec<_> = std::fs::read_dir(store.root.join("tmp")).unwrap().collect();
            assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
        }
    }

    /// Feeds `content` to a new blob in chunks of `chunk` bytes through [`BlobWriter::write_from`].
    async fn write_in_chunks(
        store: &BlobStore,
        content: &[u8],
        chunk: usize,
    ) -> Result<BlobWriter, BlobError> {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let chunks: Vec<Vec<u8>> = content.chunks(chunk).map(<[u8]>::to_vec).collect();
        let feed = async move {
            for chunk in chunks {
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
        };
        let writer = store.writer().await.unwrap();
        let ((), written) = tokio::join!(feed, writer.write_from(receiver));
        written
    }

    #[tokio::test]
    async fn large_blobs_hashed_beside_their_encryption_match_and_files_of_the_first_writer_still_read()
     {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"), 1 << 24).encrypted([5; 32]);
        let threshold = usize::try_from(HASH_THREAD_AFTER).unwrap();
        for (len, chunk) in [
            (threshold - 1, 16_384),
            (threshold, 65_536),
            (32 * SEGMENT, 65_536),
            (3 * threshold + 12_345, 100_003),
            (threshold + 70_000, 4_099),
        ] {
            let content: Vec<u8> = (0..len)
                .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
                .collect();
            let expected = hex::encode(Sha256::digest(&content));
            let written = write_in_chunks(&store, &content, chunk).await.unwrap();
            let (hash, size) = written.finish_expecting(&expected).await.unwrap();
            assert_eq!((hash.as_str(), size), (expected.as_str(), len as u64));
            assert_eq!(read_all(&store, &hash).await, content, "length {len}");
            // Sealed segment by segment as the format says: a range read decrypts alone.
            let start = (len / 2) as u64;
            assert_eq!(
                read_range(&store, &hash, start, 1000).await,
                content[len / 2..(len / 2 + 1000).min(len)],
                "length {len}"
            );
        }
        // Past the limit, after the hashing moved to its thread: refused, nothing left.
        let small =
            BlobStore::new(dir.path().join("blobs"), 3 * HASH_THREAD_AFTER / 2).encrypted([5; 32]);
        let error = write_in_chunks(&small, &vec![3u8; 2 * threshold], 65_536)
            .await
            .unwrap_err();
        assert!(matches!(error, BlobError::TooLarge { .. }), "{error}");
        let tmp: Vec<_> = std::fs::read_dir(dir.path().join("blobs").join("tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "temporary files left: {tmp:?}");

        // A file sealed by the first writer (aead's STREAM encryptor, segment by segment)
        // reads back unchanged: the format did not change.
        for len in [0, SEGMENT, 3 * SEGMENT + 17] {
            let content: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
            let prefix = [42u8; PREFIX];
            let key = store.key.clone().unwrap();
            let mut encryptor = EncryptorBE32::from_stream_primitive(key.stream(&prefix));
            let mut file = MAGIC.to_vec();
            file.extend_from_slice(&prefix);
            let mut segments: Vec<&[u8]> = content.chunks(SEGMENT).collect();
            let last = segments.pop().unwrap_or(&[]);
            for segment in segments {
                file.extend(encryptor.encrypt_next(segment).unwrap());
            }
            file.extend(encryptor.encrypt_last(last).unwrap());
            let hash = hex::encode(Sha256::digest(&content));
            let path = store.path_of(&hash).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &file).unwrap();
            assert_eq!(read_all(&store, &hash).await, content, "length {len}");
            // And the writer of today writes the same bytes for the same prefix.
            let mut seal = Seal::new(&key, prefix);
            seal.absorb(&content).unwrap();
            let mut rewritten = MAGIC.to_vec();
            rewritten.extend_from_slice(&prefix);
            rewritten.extend_from_slice(seal.ready());
            seal.written();
            rewritten.extend_from_slice(seal.finish().unwrap());
            assert_eq!(rewritten, file, "length {len}");
        }
    }

    #[tokio::test]
    async fn a_tampered_cut_or_foreign_encrypted_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let store = BlobStore::new(&root, 1 << 24).encrypted([7; 32]);
        let content: Vec<u8> = (0..2 * SEGMENT + 100).map(|i| (i % 13) as u8).collect();
        let (hash, _) = store.put_stream(&content[..]).await.unwrap();
        let path = store.path_of(&hash).unwrap();
        let sealed = std::fs::read(&path).unwrap();

        // Another key.
        let other = BlobStore::new(&root, 1 << 24).encrypted([8; 32]);
        let mut reader = other.open(&hash).await.unwrap();
        assert!(matches!(
            reader.next_chunk().await,
            Err(BlobError::Unreadable)
        ));
        // One flipped bit.
        let mut flipped = sealed.clone();
        flipped[HEADER + 10] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let mut reader = store.open(&hash).await.unwrap();
        assert!(matches!(
            reader.next_chunk().await,
            Err(BlobError::Unreadable)
        ));
        // Cut at a segment boundary: the new last segment was not sealed as last.
        std::fs::write(&path, &sealed[..HEADER + 2 * (SEGMENT + TAG)]).unwrap();
        let mut reader = store.open(&hash).await.unwrap();
        let mut outcome = Ok(Some(Vec::new()));
        while let Ok(Some(_)) = outcome {
            outcome = reader.next_chunk().await;
        }
        assert!(matches!(outcome, Err(BlobError::Unreadable)), "{outcome:?}");
        let report = store.verify([]).await.unwrap();
        assert_eq!(report.corrupted, vec![hash.clone()]);
        // A plaintext file where an encrypted one is expected.
        std::fs::write(&path, &content).unwrap();
        assert!(matches!(
            store.open(&hash).await.map(|_| ()),
            Err(BlobError::Unreadable)
        ));
    }
}
