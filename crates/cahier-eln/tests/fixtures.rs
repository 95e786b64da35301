//! Every .eln fixture of the shared folder opens under the default limits and reads as the
//! datasets its producer wrote (counts measured in `fixtures/eln/SOURCES.md`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use cahier_eln::{ElnArchive, Limits};
use sha2::Digest;
use std::path::Path;

const FIXTURES: &str = "/work/shared/fixtures/eln";

fn open(relative: &str) -> ElnArchive<std::fs::File> {
    let file = std::fs::File::open(Path::new(FIXTURES).join(relative)).unwrap();
    ElnArchive::open(file, Limits::default()).unwrap()
}

#[test]
fn every_fixture_reads_with_its_dataset_count() {
    for (path, datasets) in [
        ("elabftw/export.eln", 12),
        ("elabftw/single-experiment.eln", 1),
        ("elabftw/multiple-experiments.eln", 9),
        ("elabftw/4.9.0_special_chars.eln", 2),
        ("elabftw/invalid-shasum.eln", 1),
        ("kadi4mat/records-example.eln", 1),
        (
            "RSpace/RSpace-2023-12-08-14-44-xml-SELECTION-c0bEtpHcnNe-HA.eln",
            3,
        ),
        ("SampleDB/sampledb_export.eln", 2),
        ("PASTA/PASTA.eln", 9),
        ("OpenSemanticLab/MinimalExample.osl.eln", 1),
    ] {
        let archive = open(path);
        assert_eq!(
            archive.krate().datasets().unwrap().len(),
            datasets,
            "{path}"
        );
    }
}

#[test]
fn doubled_slashes_resolve_and_hashes_match() {
    let mut archive = open("elabftw/export.eln");
    let gold = archive
        .krate()
        .datasets()
        .unwrap()
        .into_iter()
        .find(|d| d.title == "Gold master experiment")
        .unwrap();
    assert_eq!(gold.files.len(), 1);
    let file = &gold.files[0];
    let path = archive.resolve(&file.id).unwrap();
    let mut bytes = Vec::new();
    archive.copy(&path, &mut bytes).unwrap();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        file.sha256.clone().unwrap()
    );
    assert_eq!(gold.mentions.len(), 3);
    assert!(gold.elabftw_metadata.is_some());
}

#[test]
fn signed_archives_are_recognised() {
    assert!(open("SampleDB/sampledb_export.eln").is_signed());
    assert!(!open("elabftw/export.eln").is_signed());
}
