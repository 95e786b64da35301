//! The proof archive: a ZIP holding `export.json` (the exact stamped bytes), `token.tsr` (the
//! DER TimeStampResp) and `chain.pem` (the certificates the token carries), so that
//! `openssl ts -verify -data export.json -in token.tsr -CAfile <roots>` works on its contents.
//! Entries are stored uncompressed with a fixed date, so the same proof gives the same bytes.

use crate::TraceError;
use std::io::{Cursor, Read, Write};

/// The files of an archive.
#[derive(Debug, Clone)]
pub struct ProofFiles {
    /// `export.json`.
    pub export: Vec<u8>,
    /// `token.tsr`.
    pub token: Vec<u8>,
    /// `chain.pem`.
    pub chain: String,
}

/// Builds the archive.
pub fn build(export: &[u8], token: &[u8], chain: &str) -> Result<Vec<u8>, TraceError> {
    let fail = |error: zip::result::ZipError| {
        TraceError::Internal(format!("building the proof archive: {error}"))
    };
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o644);
    for (name, bytes) in [
        ("export.json", export),
        ("token.tsr", token),
        ("chain.pem", chain.as_bytes()),
    ] {
        writer.start_file(name, options).map_err(fail)?;
        writer
            .write_all(bytes)
            .map_err(|error| fail(error.into()))?;
    }
    Ok(writer.finish().map_err(fail)?.into_inner())
}

/// Reads the archive's three files.
pub fn open(zip_bytes: &[u8]) -> Result<ProofFiles, TraceError> {
    let broken = |what: String| TraceError::Broken(format!("the proof archive is damaged: {what}"));
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip_bytes)).map_err(|error| broken(error.to_string()))?;
    let mut read = |name: &str| -> Result<Vec<u8>, TraceError> {
        let mut file = archive
            .by_name(name)
            .map_err(|error| broken(format!("{name}: {error}")))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|error| broken(format!("{name}: {error}")))?;
        Ok(bytes)
    };
    Ok(ProofFiles {
        export: read("export.json")?,
        token: read("token.tsr")?,
        chain: String::from_utf8_lossy(&read("chain.pem")?).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_reads_back_what_it_holds() {
        let zip = build(b"{}", &[0x30, 0x00], "PEM").unwrap();
        let files = open(&zip).unwrap();
        assert_eq!(files.export, b"{}");
        assert_eq!(files.token, vec![0x30, 0x00]);
        assert_eq!(files.chain, "PEM");
        assert_eq!(zip, build(b"{}", &[0x30, 0x00], "PEM").unwrap());
    }
}
