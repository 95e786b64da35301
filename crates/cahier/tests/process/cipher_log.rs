//! SQLCipher writes its own `ERROR` lines to stderr when a page does not decrypt: opening a
//! replica made before session 8 (its layout is probed after the current one) or trying a wrong
//! passphrase used to print three of them per layout tried, which read like a failure. The
//! real binary must open the older copy silently and refuse the wrong passphrase with its own
//! message only.

use super::{BIN, PASSPHRASE};
use cahier_store::{CipherLayout, Store};
use std::path::Path;
use std::process::Command;

/// A replica's data folder holding an empty copy in SQLCipher 4's default layout, keyed as
/// `cahier replica init` keys it (argon2id of the passphrase with the salt beside it).
async fn older_replica(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let salt = [5u8; 16];
    std::fs::write(data.join("replica.salt"), hex::encode(salt)).unwrap();
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(PASSPHRASE.as_bytes(), &salt, &mut key)
        .unwrap();
    let store = Store::open_encrypted_as(
        &data.join("cahier.db"),
        std::sync::Arc::new(cahier_core::SystemClock),
        &key,
        CipherLayout::Sqlcipher4Defaults,
    )
    .await
    .unwrap();
    store.init_replica().await.unwrap();
    store
        .replica_set("device", "00000000-0000-7000-8000-000000000001")
        .await
        .unwrap();
    store.close().await;
}

/// `cahier replica files --data DATA` with this passphrase: (success, stdout, stderr).
fn files(data: &Path, passphrase: &str) -> (bool, String, String) {
    let output = Command::new(BIN)
        .env("CAHIER_REPLICA_PASSPHRASE", passphrase)
        .args(["replica", "files", "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_older_copy_opens_and_a_wrong_passphrase_is_refused_without_error_lines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("laptop");
    older_replica(&data).await;

    let (ok, out, err) = files(&data, PASSPHRASE);
    assert!(ok, "the older copy must open: {err}");
    assert!(out.contains("files: all"), "{out}");
    assert!(
        !err.contains("ERROR"),
        "opening an older copy printed: {err}"
    );

    let (ok, _, err) = files(&data, "not the passphrase");
    assert!(!ok, "a wrong passphrase must be refused");
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(
        !err.contains("ERROR"),
        "a wrong passphrase printed more than its refusal: {err}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one line says what is wrong: {err}"
    );
}
