//! Scratch files: where the reader keeps its copy of `ro-crate-metadata.json` and the writer
//! its graph until the archive ends. By default they are anonymous files of a folder (gone
//! when closed, even if the process dies); a store that keeps user content encrypted at rest
//! (a field replica) supplies its own, so that no metadata lands on its disk in clear.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Content read back with seeking.
pub trait ReadSeek: Read + Seek + Send {}

impl<T: Read + Seek + Send + ?Sized> ReadSeek for T {}

/// A scratch file being written; [`ScratchFile::into_reader`] ends writing and reads it back
/// from its start.
pub trait ScratchFile: Write + Send {
    /// Ends writing; the content is then read from its start.
    fn into_reader(self: Box<Self>) -> io::Result<Box<dyn ReadSeek>>;
}

/// Makes scratch files.
pub trait Scratch: Send + Sync {
    /// A new, empty scratch file.
    fn create(&self) -> io::Result<Box<dyn ScratchFile>>;
}

/// Anonymous files in a folder, as they are (created if needed).
#[derive(Debug, Clone)]
pub struct PlainScratch(pub PathBuf);

impl PlainScratch {
    /// Anonymous files of the system's temporary folder.
    pub fn system() -> Self {
        Self(std::env::temp_dir())
    }
}

impl Scratch for PlainScratch {
    fn create(&self) -> io::Result<Box<dyn ScratchFile>> {
        std::fs::create_dir_all(&self.0)?;
        Ok(Box::new(tempfile::tempfile_in(&self.0)?))
    }
}

impl ScratchFile for std::fs::File {
    fn into_reader(mut self: Box<Self>) -> io::Result<Box<dyn ReadSeek>> {
        self.flush()?;
        self.seek(SeekFrom::Start(0))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_scratch_file_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = PlainScratch(dir.path().join("nested"));
        let mut file = scratch.create().unwrap();
        file.write_all(b"hello, scratch").unwrap();
        let mut reader = file.into_reader().unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello, scratch");
        // Anonymous: nothing named is left in the folder.
        assert_eq!(
            std::fs::read_dir(dir.path().join("nested"))
                .unwrap()
                .count(),
            0
        );
    }
}
