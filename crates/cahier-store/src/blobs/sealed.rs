//! Files of user content that are not blobs (export archives and PDFs, received archives, an
//! import's prepared entries) in the blob store's format: when the store is encrypted (a field
//! replica), they are sealed with its key, its cipher and its segment layout (see the parent
//! module), so nothing of a notebook lies in clear on the laptop's disk, not even for the
//! seconds an export takes. Only the name differs from a blob: these files are named by their
//! job, not by a hash. A plain store writes and reads them as they are.
//!
//! Writing is sequential ([`SealedWriter`]: a ZIP is then written in streaming mode, with data
//! descriptors); reading may seek ([`SealedReader`] decrypts the one segment a read falls in),
//! so an archive can be opened in place.

use super::{
    BlobError, BlobKey, BlobReader, BlobStore, HEADER, MAGIC, PREFIX, SEGMENT, TAG, plain_size,
};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::stream::{EncryptorBE32, StreamBE32, StreamPrimitive};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

fn unreadable() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        BlobError::Unreadable.to_string(),
    )
}

fn sealing_failed() -> io::Error {
    io::Error::other("encrypting the file failed")
}

/// Writes content sealed in segments; [`SealedWriter::finish`] seals the last one. A writer
/// dropped before `finish` leaves a file that does not decrypt (never a shorter valid one).
pub struct SealedWriter<W: Write> {
    inner: W,
    encryptor: Option<EncryptorBE32<XChaCha20Poly1305>>,
    /// One segment is held back, so the last one can be sealed as last.
    buffer: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for SealedWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedWriter").finish_non_exhaustive()
    }
}

impl<W: Write> SealedWriter<W> {
    fn new(mut inner: W, key: &BlobKey) -> io::Result<Self> {
        let prefix: [u8; PREFIX] = rand::random();
        inner.write_all(MAGIC)?;
        inner.write_all(&prefix)?;
        Ok(Self {
            inner,
            encryptor: Some(EncryptorBE32::from_stream_primitive(key.stream(&prefix))),
            buffer: Vec::with_capacity(SEGMENT),
        })
    }

    /// Seals the last segment and flushes; returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let encryptor = self.encryptor.take().ok_or_else(sealing_failed)?;
        let sealed = encryptor
            .encrypt_last(self.buffer.as_slice())
            .map_err(|_| sealing_failed())?;
        self.inner.write_all(&sealed)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.buffer.len() == SEGMENT {
                let encryptor = self.encryptor.as_mut().ok_or_else(sealing_failed)?;
                let sealed = encryptor
                    .encrypt_next(self.buffer.as_slice())
                    .map_err(|_| sealing_failed())?;
                self.inner.write_all(&sealed)?;
                self.buffer.clear();
            }
            let take = rest.len().min(SEGMENT - self.buffer.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(bytes.len())
    }

    /// Flushes the sealed segments; the one held back waits for more bytes or `finish`.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads sealed content, with seeking: each read decrypts (and checks) the segment it falls
/// in. Tampering, truncation and another key are read errors (`InvalidData`).
pub struct SealedReader<R: Read + Seek> {
    inner: R,
    stream: StreamBE32<XChaCha20Poly1305>,
    size: u64,
    segments: u64,
    position: u64,
    /// The decrypted segment last read, and its index.
    current: Option<(u64, Vec<u8>)>,
}

impl<R: Read + Seek> std::fmt::Debug for SealedReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek> SealedReader<R> {
    fn new(mut inner: R, key: &BlobKey) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        let size = plain_size(len).map_err(|_| unreadable())?;
        inner.seek(SeekFrom::Start(0))?;
        let mut header = [0u8; HEADER];
        inner.read_exact(&mut header).map_err(|_| unreadable())?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(unreadable());
        }
        Ok(Self {
            inner,
            stream: key.stream(&header[MAGIC.len()..]),
            size,
            segments: (len - HEADER as u64).div_ceil((SEGMENT + TAG) as u64),
            position: 0,
            current: None,
        })
    }

    /// Size of the content, bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn load(&mut self, segment: u64) -> io::Result<&[u8]> {
        if self.current.as_ref().is_none_or(|(n, _)| *n != segment) {
            self.inner.seek(SeekFrom::Start(
                HEADER as u64 + segment * (SEGMENT + TAG) as u64,
            ))?;
            let mut sealed = vec![0u8; SEGMENT + TAG];
            let mut filled = 0;
            while filled < sealed.len() {
                let n = self.inner.read(&mut sealed[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            sealed.truncate(filled);
            let position = u32::try_from(segment).map_err(|_| unreadable())?;
            let plain = self
                .stream
                .decrypt(position, segment + 1 == self.segments, sealed.as_slice())
                .map_err(|_| unreadable())?;
            self.current = Some((segment, plain));
        }
        Ok(self
            .current
            .as_ref()
            .map(|(_, plain)| plain.as_slice())
            .unwrap_or(&[]))
    }
}

impl<R: Read + Seek> Read for SealedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let segment = self.position / SEGMENT as u64;
        let offset = usize::try_from(self.position % SEGMENT as u64).map_err(|_| unreadable())?;
        let plain = self.load(segment)?;
        let available = plain.get(offset..).ok_or_else(unreadable)?;
        if available.is_empty() {
            return Err(unreadable());
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SealedReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.position = target;
        Ok(target)
    }
}

/// Where a file of user content is written: as is, or sealed (an encrypted store).
#[derive(Debug)]
pub enum ContentSink<W: Write = std::fs::File> {
    /// A plain store: the bytes as they are.
    Plain(W),
    /// An encrypted store: sealed segments.
    Sealed(SealedWriter<W>),
}

impl<W: Write> ContentSink<W> {
    /// Ends the content (sealing the last segment) and flushes; returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::Plain(mut inner) => {
                inner.flush()?;
                Ok(inner)
            }
            Self::Sealed(sealed) => sealed.finish(),
        }
    }
}

impl<W: Write> Write for ContentSink<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(inner) => inner.write(bytes),
            Self::Sealed(sealed) => sealed.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(inner) => inner.flush(),
            Self::Sealed(sealed) => sealed.flush(),
        }
    }
}

/// Reads a file of user content written through a [`ContentSink`], with seeking.
#[derive(Debug)]
pub enum ContentSource<R: Read + Seek> {
    /// A plain store's file.
    Plain(R),
    /// An encrypted store's file.
    Sealed(SealedReader<R>),
}

impl<R: Read + Seek> Read for ContentSource<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(inner) => inner.read(buf),
            Self::Sealed(sealed) => sealed.read(buf),
        }
    }
}

impl<R: Read + Seek> Seek for ContentSource<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            Self::Plain(inner) => inner.seek(to),
            Self::Sealed(sealed) => sealed.seek(to),
        }
    }
}

/// Scratch files of the `.eln` reader and writer (the metadata's copy, the graph written until
/// the end) and of an import's prepared entries, as files of user content: anonymous files in
/// the store's `tmp/` folder, sealed with the store's key on a field replica.
#[derive(Debug, Clone)]
pub struct ContentScratch {
    store: BlobStore,
}

/// One [`ContentScratch`] file being written.
struct ContentScratchFile {
    sink: ContentSink<std::fs::File>,
    store: BlobStore,
}

impl Write for ContentScratchFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.sink.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

impl cahier_eln::ScratchFile for ContentScratchFile {
    fn into_reader(self: Box<Self>) -> io::Result<Box<dyn cahier_eln::ReadSeek>> {
        let Self { sink, store } = *self;
        let mut file = sink.finish()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Box::new(store.content_source(file)?))
    }
}

impl ContentScratch {
    /// An anonymous file of the store's `tmp/` folder (no name: gone when closed, even if the
    /// process dies), written as user content.
    fn create_file(&self) -> io::Result<ContentScratchFile> {
        let dir = self.store.root().join("tmp");
        std::fs::create_dir_all(&dir)?;
        let file = tempfile::tempfile_in(&dir)?;
        Ok(ContentScratchFile {
            sink: self.store.content_sink(file)?,
            store: self.store.clone(),
        })
    }
}

impl cahier_eln::Scratch for ContentScratch {
    fn create(&self) -> io::Result<Box<dyn cahier_eln::ScratchFile>> {
        Ok(Box::new(self.create_file()?))
    }
}

impl BlobStore {
    /// Starts a file of user content in `inner` (a new, empty file): sealed with the store's
    /// key when the store is encrypted, as is otherwise. End it with [`ContentSink::finish`].
    pub fn content_sink<W: Write>(&self, inner: W) -> io::Result<ContentSink<W>> {
        Ok(match &self.key {
            Some(key) => ContentSink::Sealed(SealedWriter::new(inner, key)?),
            None => ContentSink::Plain(inner),
        })
    }

    /// Scratch files for the `.eln` reader and writer and an import's spill, sealed like
    /// [`BlobStore::content_sink`]'s files.
    pub fn scratch(&self) -> ContentScratch {
        ContentScratch {
            store: self.clone(),
        }
    }

    /// Reads back a file written through [`BlobStore::content_sink`].
    pub fn content_source<R: Read + Seek>(&self, inner: R) -> io::Result<ContentSource<R>> {
        Ok(match &self.key {
            Some(key) => ContentSource::Sealed(SealedReader::new(inner, key)?),
            None => ContentSource::Plain(inner),
        })
    }

    /// The size of the content of a file written through [`BlobStore::content_sink`] that
    /// takes `stored` bytes on disk.
    pub fn content_len(&self, stored: u64) -> Result<u64, BlobError> {
        match self.key {
            Some(_) => plain_size(stored),
            None => Ok(stored),
        }
    }

    /// Opens the whole content of a file written through [`BlobStore::content_sink`], to be
    /// streamed ([`BlobReader::remaining`] is its size). The path may be unlinked at once: the
    /// open handle keeps it readable.
    pub async fn open_content(&self, path: &Path) -> Result<BlobReader, BlobError> {
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound);
            }
            Err(error) => return Err(error.into()),
        };
        let size = self.content_len(file.metadata().await?.len())?;
        self.reader_over(file, 0, size).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    #[tokio::test]
    async fn sealed_content_round_trips_seeks_and_holds_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"), 1 << 24).encrypted([5; 32]);
        for len in [0, 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT + 77] {
            let plain = content(len);
            let path = dir.path().join(format!("export-{len}"));
            let mut sink = store
                .content_sink(std::fs::File::create(&path).unwrap())
                .unwrap();
            for chunk in plain.chunks(1000) {
                sink.write_all(chunk).unwrap();
            }
            sink.finish().unwrap();
            let raw = std::fs::read(&path).unwrap();
            assert!(raw.starts_with(MAGIC));
            if len >= 64 {
                let probe = &plain[len / 2..len / 2 + 32];
                assert!(!raw.windows(32).any(|w| w == probe), "plaintext on disk");
            }
            let mut source = store
                .content_source(std::fs::File::open(&path).unwrap())
                .unwrap();
            let mut back = Vec::new();
            source.read_to_end(&mut back).unwrap();
            assert_eq!(back, plain, "length {len}");
            if len > 10 {
                source.seek(SeekFrom::Start(len as u64 - 10)).unwrap();
                let mut tail = Vec::new();
                source.read_to_end(&mut tail).unwrap();
                assert_eq!(tail, plain[len - 10..]);
            }
            let mut reader = store.open_content(&path).await.unwrap();
            assert_eq!(reader.remaining(), len as u64);
            let mut streamed = Vec::new();
            while let Some(chunk) = reader.next_chunk().await.unwrap() {
                streamed.extend(chunk);
            }
            assert_eq!(streamed, plain);
        }
    }

    #[test]
    fn scratch_files_of_an_encrypted_store_are_sealed_anonymous_and_read_back() {
        use cahier_eln::ScratchFile;
        let dir = tempfile::tempdir().unwrap();
        let plain = content(3 * SEGMENT + 5);
        for store in [
            BlobStore::new(dir.path().join("blobs"), 1 << 24).encrypted([5; 32]),
            BlobStore::new(dir.path().join("plain"), 1 << 24),
        ] {
            let mut file = store.scratch().create_file().unwrap();
            assert_eq!(
                matches!(file.sink, ContentSink::Sealed(_)),
                store.key.is_some(),
                "sealed exactly when the store is encrypted"
            );
            file.write_all(&plain).unwrap();
            let mut reader = Box::new(file).into_reader().unwrap();
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert_eq!(back, plain);
            reader.seek(SeekFrom::Start(SEGMENT as u64 + 3)).unwrap();
            let mut one = [0u8; 1];
            reader.read_exact(&mut one).unwrap();
            assert_eq!(one[0], plain[SEGMENT + 3]);
            // Anonymous: nothing named is left in `tmp/`.
            let named = std::fs::read_dir(store.root().join("tmp")).unwrap().count();
            assert_eq!(named, 0);
        }
    }

    #[test]
    fn unfinished_or_foreign_sealed_content_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs"), 1 << 24).encrypted([5; 32]);
        let path = dir.path().join("cut");
        let mut sink = store
            .content_sink(std::fs::File::create(&path).unwrap())
            .unwrap();
        sink.write_all(&content(3 * SEGMENT)).unwrap();
        drop(sink);
        let mut back = Vec::new();
        let outcome = store
            .content_source(std::fs::File::open(&path).unwrap())
            .and_then(|mut source| source.read_to_end(&mut back));
        assert_eq!(
            outcome.unwrap_err().kind(),
            io::ErrorKind::InvalidData,
            "a writer dropped before finish leaves nothing readable"
        );
        let whole = dir.path().join("whole");
        let mut sink = store
            .content_sink(std::fs::File::create(&whole).unwrap())
            .unwrap();
        sink.write_all(b"secret").unwrap();
        sink.finish().unwrap();
        let other = BlobStore::new(dir.path().join("blobs"), 1 << 24).encrypted([6; 32]);
        let outcome = other
            .content_source(std::fs::File::open(&whole).unwrap())
            .and_then(|mut source| source.read_to_end(&mut back));
        assert_eq!(outcome.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
