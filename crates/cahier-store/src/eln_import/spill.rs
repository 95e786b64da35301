//! The import's prepared entities on disk: each [`PreparedRecord`] is appended to a temporary
//! file as soon as it is built (outside the write lock), then read back one at a time by the
//! short transaction that inserts them. Memory holds one record at a time, whatever the
//! number of entries.
//!
//! Format (private to one import, never kept): per record, its length as 8 bytes
//! little-endian, then its JSON. The file is a scratch file of the store
//! ([`crate::blobs::BlobStore::scratch`]: anonymous, in the blob store's `tmp/` folder on the
//! data disk, sealed with the replica's key on a field replica), gone when the spill is
//! dropped, whether the import committed, failed or was cancelled.

use crate::entities::PreparedRecord;
use crate::{Result, StoreError};
use cahier_eln::{ReadSeek, Scratch, ScratchFile};
use std::io::{BufReader, BufWriter, Read, Write};

/// A record larger than this is refused when read back (a damaged file, not a real entry:
/// bodies are bounded by `MAX_BODY_CHARS`).
const MAX_RECORD_BYTES: u64 = 1 << 30;

fn io_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Conflict(format!(
        "keeping the import's prepared entries on disk failed: {error}"
    ))
}

/// Records being written.
pub(super) struct SpillWriter {
    file: BufWriter<Box<dyn ScratchFile>>,
    n_records: usize,
}

impl SpillWriter {
    /// A new, empty spill file of `scratch`.
    pub(super) fn create(scratch: &dyn Scratch) -> Result<Self> {
        let file = scratch.create().map_err(io_error)?;
        Ok(Self {
            file: BufWriter::with_capacity(256 * 1024, file),
            n_records: 0,
        })
    }

    /// Appends one record.
    pub(super) fn push(&mut self, record: &PreparedRecord) -> Result<()> {
        let json = serde_json::to_vec(record).map_err(io_error)?;
        let len = u64::try_from(json.len()).map_err(io_error)?;
        self.file.write_all(&len.to_le_bytes()).map_err(io_error)?;
        self.file.write_all(&json).map_err(io_error)?;
        self.n_records += 1;
        Ok(())
    }

    /// How many records were written.
    pub(super) fn len(&self) -> usize {
        self.n_records
    }

    /// Ends writing; the records are then read back in order.
    pub(super) fn into_reader(self) -> Result<SpillReader> {
        let n_records = self.n_records;
        let file = self
            .file
            .into_inner()
            .map_err(io_error)?
            .into_reader()
            .map_err(io_error)?;
        Ok(SpillReader {
            file: BufReader::with_capacity(256 * 1024, file),
            remaining: n_records,
        })
    }
}

/// Records being read back, in the order written.
pub(super) struct SpillReader {
    file: BufReader<Box<dyn ReadSeek>>,
    remaining: usize,
}

impl SpillReader {
    /// The next record, `None` after the last.
    pub(super) fn next_record(&mut self) -> Result<Option<PreparedRecord>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut len = [0u8; 8];
        self.file.read_exact(&mut len).map_err(io_error)?;
        let len = u64::from_le_bytes(len);
        if len > MAX_RECORD_BYTES {
            return Err(io_error(format!("a record of {len} bytes")));
        }
        let mut json = vec![0u8; usize::try_from(len).map_err(io_error)?];
        self.file.read_exact(&mut json).map_err(io_error)?;
        self.remaining -= 1;
        serde_json::from_slice(&json).map(Some).map_err(io_error)
    }
}
