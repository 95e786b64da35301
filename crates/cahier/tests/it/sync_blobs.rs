//! Attachments travel with sync, over real HTTP and HTTPS: a lab server from the test kit, a
//! field replica (its own SQLite file and blob folder) served by the production router, and
//! the production transport. Files cross in both directions, their metadata merges, a cut or
//! corrupted transfer leaves nothing, and the blob endpoints follow the access policy.

use super::uploads::{blob_files, form, sha256, upload};
use cahier_store::Store;
use cahier_sync::http::{HttpTransport, TlsOptions};
use cahier_sync::{SyncError, SyncReport, sync_once};
use cahier_testkit::{Api, TestApp, TestUser};
use serde_json::{Value, json};
use std::sync::Arc;

/// A field replica of one user.
pub(super) struct Replica {
    pub(super) store: Store,
    pub(super) transport: HttpTransport,
    /// The device credential (`<uuid>.<secret>`).
    pub(super) token: String,
    pub(super) user_id: i64,
    pub(super) dir: tempfile::TempDir,
}

impl Replica {
    /// A replica made by another test module (with its own first copy).
    pub(super) fn new(
        store: Store,
        transport: HttpTransport,
        token: String,
        user_id: i64,
        dir: tempfile::TempDir,
    ) -> Self {
        Self {
            store,
            transport,
            token,
            user_id,
            dir,
        }
    }

    pub(super) async fn sync(&self) -> SyncReport {
        sync_once(&self.store, &self.transport).await.unwrap()
    }
}

/// Registers a device for `user` at `server` and takes the first copy.
pub(super) async fn replica_at(
    server: &str,
    tls: &TlsOptions,
    user: &TestUser,
) -> Result<(Replica, SyncReport), SyncError> {
    let replica = empty_replica_at(server, tls, user).await?;
    let report = sync_once(&replica.store, &replica.transport).await?;
    Ok((replica, report))
}

/// Registers a device for `user` at `server`, with a replica that holds nothing yet.
pub(super) async fn empty_replica_at(
    server: &str,
    tls: &TlsOptions,
    user: &TestUser,
) -> Result<Replica, SyncError> {
    let dir = tempfile::tempdir().unwrap();
    let (transport, registered) =
        HttpTransport::register(server, tls, &user.email, &user.password, "laptop").await?;
    let store = Store::open_sqlite(
        &dir.path().join("cahier.db"),
        Arc::new(cahier_core::SystemClock),
    )
    .await
    .unwrap()
    .with_device(&registered.device)
    .with_encrypted_blobs(dir.path().join("blobs"), 64 * 1024 * 1024, [9; 32]);
    store.init_replica().await.unwrap();
    // As `replica init` records it (the lab's address names the events of the replica's feeds).
    store
        .replica_set("server", server.trim_end_matches('/'))
        .await
        .unwrap();
    Ok(Replica {
        store,
        transport,
        token: registered.token,
        user_id: registered.user_id,
        dir,
    })
}

pub(super) async fn replica(app: &TestApp, user: &TestUser) -> (Replica, SyncReport) {
    replica_at(&app.url, &TlsOptions::default(), user)
        .await
        .unwrap()
}

/// Serves the replica's store with the production router, as `cahier replica serve` does
/// once unlocked; returns the server and an API v2 client with a key made on the replica.
pub(super) async fn serve_replica(replica: &Replica) -> (cahier::Running, Api) {
    serve_replica_fetching(replica, replica.transport.clone()).await
}

/// [`serve_replica`], fetching the files it lacks through `transport` (another server than
/// the one it syncs with, such as one that never answers).
pub(super) async fn serve_replica_fetching(
    replica: &Replica,
    transport: HttpTransport,
) -> (cahier::Running, Api) {
    let settings = cahier::settings::Settings {
        data: replica.dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        public_url: None,
        max_body_mb: 4,
        max_upload_mb: 64,
        tsa: None,
        audit_anchor_hours: 0,
        sqlite: Default::default(),
        time_zone: cahier_core::zone::Zone::utc(),
    };
    let handle = Arc::new(cahier_web::ReplicaHandle {
        user_id: replica.user_id,
        status: std::sync::Mutex::new(cahier_web::ReplicaStatus {
            online: true,
            last_sync_ms: None,
            last_error: None,
        }),
        sync_now: tokio::sync::Notify::new(),
        fetcher: Some(Arc::new(cahier::replica::ServerFiles::new(
            replica.store.clone(),
            transport,
        ))),
    });
    let running = cahier::serve_store(&settings, replica.store.clone(), Some(handle))
        .await
        .unwrap();
    let team = replica
        .store
        .user(replica.user_id)
        .await
        .unwrap()
        .current_team
        .unwrap();
    let (_, key) = replica
        .store
        .create_api_key(replica.user_id, team, "scripts", true)
        .await
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, key.parse().unwrap());
    let api = Api {
        client: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap(),
        base: format!("{}/api/v2", running.url),
    };
    (running, api)
}

pub(super) async fn file_bytes(api: &Api, path: &str) -> (u16, Vec<u8>) {
    let response = api
        .client
        .get(format!("{}{path}?format=binary", api.base))
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.bytes().await.unwrap().to_vec(),
    )
}

fn by_hash<'a>(list: &'a Value, hash: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|u| u["hash"] == hash)
        .unwrap_or_else(|| panic!("no upload with hash {hash} in {list}"))
}

fn blob_url(app: &TestApp, hash: &str) -> String {
    format!("{}/api/sync/v1/blobs/{hash}", app.url)
}

#[tokio::test]
async fn files_attached_on_either_side_travel_with_sync_and_their_edits_merge() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let id = lab.create("/experiments", json!({"title": "Gels"})).await;
    // A resource in a resource category travels like an experiment.
    app.store
        .create_term(
            cahier_store::catalog::Vocabulary::Category,
            alice.team_id,
            cahier_store::catalog::Family::Resource,
            "Instruments",
            "29aeb9",
            true,
        )
        .await
        .unwrap();
    let imager = lab.create("/items", json!({"title": "Gel imager"})).await;
    let gel: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let response = lab
        .client
        .post(format!("{}/experiments/{id}/uploads", lab.base))
        .multipart(form("gel.png", gel.clone(), Some("lane 3")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The first copy brings the file, with the same bytes and hash, served by the replica.
    let (laptop, first) = replica(&app, &alice).await;
    assert_eq!(first.files_received, 1, "{first}");
    assert_eq!(first.files_missing, 0, "{first}");
    let (local_server, local) = serve_replica(&laptop).await;
    let resource = local.json(&format!("/items/{imager}")).await;
    assert_eq!(resource["title"], "Gel imager");
    assert_eq!(resource["category_title"], "Instruments");
    let listed = local.json(&format!("/experiments/{id}/uploads")).await;
    let copy = by_hash(&listed, &sha256(&gel));
    assert_eq!(copy["real_name"], "gel.png");
    assert_eq!(copy["comment"], "lane 3");
    let (status, bytes) =
        file_bytes(&local, &format!("/experiments/{id}/uploads/{}", copy["id"])).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, gel, "the replica serves the same bytes");
    let on_disk = std::fs::read(
        laptop
            .store
            .blob_store()
            .unwrap()
            .path_of(&sha256(&gel))
            .unwrap(),
    )
    .unwrap();
    assert!(
        !on_disk.windows(64).any(|w| w == &gel[1000..1064]),
        "the replica keeps its files encrypted"
    );

    // Offline on the laptop: attach a file through the replica's API v2 and comment on the
    // gel; meanwhile the gel is renamed at the lab.
    let counts = b"plot,count\n4,17\n".to_vec();
    upload(
        &local,
        &format!("/experiments/{id}/uploads"),
        "counts.csv",
        counts.clone(),
    )
    .await;
    let commented = local
        .patch(
            &format!("/experiments/{id}/uploads/{}", copy["id"]),
            json!({"comment": "lane 3, 2 min exposure"}),
        )
        .await;
    assert_eq!(commented.status(), 200);
    let lab_gel = by_hash(
        &lab.json(&format!("/experiments/{id}/uploads")).await,
        &sha256(&gel),
    )
    .clone();
    let renamed = lab
        .patch(
            &format!("/experiments/{id}/uploads/{}", lab_gel["id"]),
            json!({"real_name": "gel-final.png"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);

    let report = laptop.sync().await;
    assert_eq!(
        (report.files_sent, report.pushed, report.rejected),
        (1, 1, 0),
        "{report}"
    );
    // The lab has the new file (row and bytes) and both edits of the gel.
    let at_lab = lab.json(&format!("/experiments/{id}/uploads")).await;
    let lab_counts = by_hash(&at_lab, &sha256(&counts));
    assert_eq!(lab_counts["real_name"], "counts.csv");
    assert_eq!(lab_counts["userid"], alice.id);
    let (status, bytes) = file_bytes(
        &lab,
        &format!("/experiments/{id}/uploads/{}", lab_counts["id"]),
    )
    .await;
    assert_eq!((status, bytes), (200, counts.clone()));
    let merged = by_hash(&at_lab, &sha256(&gel));
    assert_eq!(merged["id"], lab_gel["id"], "row ids stay stable");
    assert_eq!(merged["real_name"], "gel-final.png");
    assert_eq!(merged["comment"], "lane 3, 2 min exposure");
    // And so does the laptop.
    let on_laptop = local.json(&format!("/experiments/{id}/uploads")).await;
    let merged = by_hash(&on_laptop, &sha256(&gel));
    assert_eq!(merged["real_name"], "gel-final.png");
    assert_eq!(merged["comment"], "lane 3, 2 min exposure");

    // Replacing a file offline: the new version and the archived old one reach the lab.
    let local_counts = by_hash(&on_laptop, &sha256(&counts)).clone();
    let counts_v2 = b"plot,count\n4,18\n".to_vec();
    upload(
        &local,
        &format!("/experiments/{id}/uploads/{}", local_counts["id"]),
        "counts.csv",
        counts_v2.clone(),
    )
    .await;
    let report = laptop.sync().await;
    assert_eq!((report.files_sent, report.pushed), (1, 1), "{report}");
    let live = lab.json(&format!("/experiments/{id}/uploads")).await;
    let v2 = by_hash(&live, &sha256(&counts_v2));
    assert_eq!(v2["replaces_id"], lab_counts["id"]);
    assert_eq!(
        lab.json(&format!("/experiments/{id}/uploads/{}", lab_counts["id"]))
            .await["state"],
        2,
        "the replaced version is archived"
    );

    // Nothing left to move: files the server has are not sent again.
    let again = laptop.sync().await;
    assert_eq!(
        (again.pushed, again.files_sent, again.files_received),
        (0, 0, 0),
        "{again}"
    );
    local_server.stop().await.unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_cut_or_corrupted_upload_leaves_nothing_and_the_next_sync_completes() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let id = lab.create("/experiments", json!({"title": "Cores"})).await;
    let (laptop, _) = replica(&app, &alice).await;
    let subject = laptop.store.subject(alice.id).await.unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let hash = sha256(&content);
    let (stored, size) = laptop
        .store
        .blob_store()
        .unwrap()
        .put_stream(&content[..])
        .await
        .unwrap();
    assert_eq!(stored, hash);
    laptop
        .store
        .attach(
            &subject,
            id,
            cahier_store::uploads::NewUpload {
                sha256: hash.clone(),
                size,
                real_name: "core.bin".into(),
                comment: String::new(),
                media_type: "application/octet-stream".into(),
            },
            None,
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let device = format!("Device {}", laptop.token);

    // The connection breaks after half the file.
    let half = content[..content.len() / 2].to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(half), Err(std::io::Error::other("cable pulled"))];
    let cut = client
        .put(blob_url(&app, &hash))
        .header("Authorization", &device)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    if let Ok(response) = cut {
        assert!(!response.status().is_success(), "{}", response.status());
    }
    // Bytes that are not the named file are refused whole.
    let wrong = client
        .put(blob_url(&app, &hash))
        .header("Authorization", &device)
        .body(content[1..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);
    assert!(
        wrong.text().await.unwrap().contains("nothing was kept"),
        "the refusal says why"
    );
    // Give the server a moment to see the broken connection and drop the partial file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (blobs, tmp) = blob_files(app.dir.path());
        if tmp == 0 {
            assert!(!blobs.contains(&hash), "no blob named by a partial upload");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "partial upload left");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let head = client
        .head(blob_url(&app, &hash))
        .header("Authorization", &device)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    // A document naming a file the server lacks is refused with a clear reason.
    let pending = laptop.store.pending_pushes().await.unwrap();
    let docs = pending.iter().map(|(_, doc, _)| doc.clone()).collect();
    let results = cahier_sync::Transport::push(&laptop.transport, docs)
        .await
        .unwrap();
    assert_eq!(
        results[0].status,
        cahier_store::sync::proto::PushStatus::Rejected
    );
    let reason = results[0].reason.clone().unwrap();
    assert!(reason.contains("was not uploaded"), "{reason}");
    assert!(
        lab.json(&format!("/experiments/{id}/uploads"))
            .await
            .as_array()
            .unwrap()
            .is_empty(),
        "no row points at a missing file"
    );

    // The next sync sends the file first, then the document.
    let report = laptop.sync().await;
    assert_eq!(
        (report.files_sent, report.pushed, report.rejected),
        (1, 1, 0),
        "{report}"
    );
    let rows = lab.json(&format!("/experiments/{id}/uploads")).await;
    let row = by_hash(&rows, &hash);
    let back = lab
        .client
        .get(format!(
            "{}/experiments/{id}/uploads/{}?format=binary",
            lab.base, row["id"]
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(back.to_vec(), content);
    app.stop().await;
}

#[tokio::test]
async fn a_corrupted_download_is_discarded_and_fetched_again_next_sync() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let id = lab.create("/experiments", json!({"title": "Tapes"})).await;
    let content = b"field recording".to_vec();
    let hash = sha256(&content);
    upload(
        &lab,
        &format!("/experiments/{id}/uploads"),
        "tape.wav",
        content.clone(),
    )
    .await;
    // Damage the lab's copy: the replica must refuse it and name nothing by its hash.
    let path = app.store.blob_store().unwrap().path_of(&hash).unwrap();
    std::fs::write(&path, b"field recordinG").unwrap();
    let (laptop, first) = replica(&app, &alice).await;
    assert_eq!(
        (first.files_received, first.files_missing),
        (0, 1),
        "{first}"
    );
    let blobs = laptop.store.blob_store().unwrap();
    assert!(!blobs.exists(&hash).await);
    assert_eq!(
        laptop.store.missing_blobs().await.unwrap(),
        vec![hash.clone()]
    );
    // Repaired at the lab: the next sync fetches it.
    std::fs::write(&path, &content).unwrap();
    let report = laptop.sync().await;
    assert_eq!(
        (report.files_received, report.files_missing),
        (1, 0),
        "{report}"
    );
    let mut reader = blobs.open(&hash).await.unwrap();
    let mut read = Vec::new();
    while let Some(chunk) = reader.next_chunk().await.unwrap() {
        read.extend(chunk);
    }
    assert_eq!(read, content);
    app.stop().await;
}

#[tokio::test]
async fn blob_endpoints_follow_the_access_policy_and_refuse_revoked_devices() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let bob = app.user("bob@lab.fr", "Botany", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let id = lab
        .create("/experiments", json!({"title": "Private"}))
        .await;
    let content = b"alice's data".to_vec();
    let hash = sha256(&content);
    upload(
        &lab,
        &format!("/experiments/{id}/uploads"),
        "data.txt",
        content.clone(),
    )
    .await;
    let (alice_laptop, _) = replica(&app, &alice).await;
    let (bob_laptop, bob_first) = replica(&app, &bob).await;
    assert_eq!(bob_first.files_received, 0);
    let client = reqwest::Client::new();
    let get = |token: &str| {
        client
            .get(blob_url(&app, &hash))
            .header("Authorization", format!("Device {token}"))
            .send()
    };
    let head = |token: &str| {
        client
            .head(blob_url(&app, &hash))
            .header("Authorization", format!("Device {token}"))
            .send()
    };

    // Bob may not read the experiment: the file is "not found" to him, like a missing one.
    assert_eq!(get(&bob_laptop.token).await.unwrap().status(), 404);
    assert_eq!(head(&bob_laptop.token).await.unwrap().status(), 404);
    let unknown = client
        .get(blob_url(&app, &"0".repeat(64)))
        .header("Authorization", format!("Device {}", bob_laptop.token))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let alice_get = get(&alice_laptop.token).await.unwrap();
    assert_eq!(alice_get.status(), 200);
    assert_eq!(alice_get.bytes().await.unwrap().to_vec(), content);
    assert_eq!(head(&alice_laptop.token).await.unwrap().status(), 200);
    // Knowing the hash is not enough: Bob attaches it offline to his own entry, but the push is
    // refused (he never sent the bytes) and the file stays out of his reach.
    let bob_subject = bob_laptop.store.subject(bob.id).await.unwrap();
    let mine = bob_laptop
        .store
        .create_entity(
            &bob_subject,
            cahier_store::NewEntity {
                kind: cahier_core::EntityKind::Experiment,
                team_id: bob.team_id,
                canread: None,
                canwrite: None,
                patch: cahier_core::EntityPatch {
                    title: Some("Borrowed".into()),
                    ops: vec![cahier_core::document::EntityOp::AddAttachment {
                        sha256: hash.clone(),
                        name: "data.txt".into(),
                        media_type: "text/plain".into(),
                        size: 12,
                        at_ms: 1,
                        by: bob.id,
                        comment: String::new(),
                        replaces: None,
                    }],
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .unwrap();
    assert!(mine > 0);
    let report = bob_laptop.sync().await;
    assert_eq!((report.pushed, report.rejected), (0, 1), "{report}");
    let rejected = bob_laptop.store.rejected_edits().await.unwrap();
    assert!(
        rejected[0]
            .reason
            .contains("not uploaded to the server by this device"),
        "{rejected:?}"
    );
    assert_eq!(get(&bob_laptop.token).await.unwrap().status(), 404);
    // With the bytes in hand, the same file attaches: it is sent (the server keeps one copy),
    // and from then on Bob may fetch it through his own entry.
    let (_, size) = bob_laptop
        .store
        .blob_store()
        .unwrap()
        .put_stream(&content[..])
        .await
        .unwrap();
    let own = bob_laptop
        .store
        .create_entity(
            &bob_subject,
            cahier_store::NewEntity {
                kind: cahier_core::EntityKind::Experiment,
                team_id: bob.team_id,
                canread: None,
                canwrite: None,
                patch: cahier_core::EntityPatch {
                    title: Some("Same bytes".into()),
                    ..Default::default()
                },
                template: None,
            },
        )
        .await
        .unwrap();
    bob_laptop
        .store
        .attach(
            &bob_subject,
            own,
            cahier_store::uploads::NewUpload {
                sha256: hash.clone(),
                size,
                real_name: "mine.txt".into(),
                comment: String::new(),
                media_type: "text/plain".into(),
            },
            None,
        )
        .await
        .unwrap();
    let report = bob_laptop.sync().await;
    assert_eq!(
        (report.files_sent, report.pushed, report.rejected),
        (1, 1, 0),
        "{report}"
    );
    assert_eq!(get(&bob_laptop.token).await.unwrap().status(), 200);

    // No credential, or a wrong one: 401.
    let anonymous = client.get(blob_url(&app, &hash)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Over the server's upload limit (6 MiB in the test kit): 413 before the body is read.
    let limit = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = app.url.trim_start_matches("http://").to_owned();
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "PUT /api/sync/v1/blobs/{} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Device {}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            "1".repeat(64),
            alice_laptop.token,
            7 * 1024 * 1024
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(limit.starts_with("HTTP/1.1 413"), "{limit}");
    assert!(limit.contains("6.0 MiB"), "{limit}");

    // Revoked: every blob request is refused at once, and so is the sync.
    let subject = app.subject(&alice).await;
    let device = app.store.devices(Some(alice.id)).await.unwrap().remove(0);
    app.store.revoke_device(&subject, device.id).await.unwrap();
    assert_eq!(get(&alice_laptop.token).await.unwrap().status(), 401);
    assert_eq!(head(&alice_laptop.token).await.unwrap().status(), 401);
    let put = client
        .put(blob_url(&app, &hash))
        .header("Authorization", format!("Device {}", alice_laptop.token))
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 401);
    let refused = sync_once(&alice_laptop.store, &alice_laptop.transport).await;
    assert!(matches!(refused, Err(SyncError::Refused(_))), "{refused:?}");
    app.stop().await;
}

/// A TLS front on 127.0.0.1 for `backend` (the test server), as a lab's reverse proxy would be.
async fn tls_front(backend: &str, leaf_der: Vec<u8>, key_der: Vec<u8>) -> String {
    use tokio_rustls::rustls;
    let chain = vec![rustls::pki_types::CertificateDer::from(leaf_der)];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = backend.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                // A refused handshake (untrusted certificate) just ends this connection.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

/// A CA and a certificate it signed for 127.0.0.1 and localhost: (CA PEM, leaf DER, leaf key).
fn lab_certificates(name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.der().to_vec(), leaf_key.serialize_der())
}

#[tokio::test]
async fn replicas_sync_over_https_with_the_lab_ca_and_refuse_other_certificates_and_plain_http() {
    let app = TestApp::spawn().await;
    let alice = app.user("alice@lab.fr", "Ecology", false).await;
    let lab = app.api(&app.api_key(&alice, true).await);
    let id = lab
        .create("/experiments", json!({"title": "Over TLS"}))
        .await;
    let content = b"sent over https".to_vec();
    upload(
        &lab,
        &format!("/experiments/{id}/uploads"),
        "tls.txt",
        content.clone(),
    )
    .await;
    let (ca_pem, leaf_der, leaf_key) = lab_certificates("Lab CA");
    let https = tls_front(&app.url, leaf_der, leaf_key).await;

    // With the lab's CA: registration, the first copy and its file, then a push.
    let tls = TlsOptions::with_ca_pem(ca_pem.into_bytes()).unwrap();
    let (laptop, first) = replica_at(&https, &tls, &alice).await.unwrap();
    assert_eq!((first.added, first.files_received), (1, 1), "{first}");
    let subject = laptop.store.subject(alice.id).await.unwrap();
    laptop
        .store
        .update_entity(
            &subject,
            id,
            None,
            &cahier_core::EntityPatch {
                body: Some("Written in the field".into()),
                ..Default::default()
            },
            "save",
        )
        .await
        .unwrap();
    let report = laptop.sync().await;
    assert_eq!(report.pushed, 1, "{report}");
    assert_eq!(
        lab.json(&format!("/experiments/{id}")).await["body"],
        "Written in the field"
    );

    // Another CA, or the public roots: the certificate is refused, and the error says how to
    // fix it.
    let (other_ca, _, _) = lab_certificates("Some other CA");
    let wrong = TlsOptions::with_ca_pem(other_ca.into_bytes()).unwrap();
    for options in [wrong, TlsOptions::default()] {
        let error = replica_at(&https, &options, &alice).await.err().unwrap();
        assert!(matches!(error, SyncError::Untrusted(_)), "{error:?}");
        assert!(error.to_string().contains("--ca-file"), "{error}");
    }

    // Plain http is only for loopback; elsewhere it is refused before any connection.
    let error = HttpTransport::new("http://cahier.lab.example", &TlsOptions::default(), "x.y")
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message.contains("https://cahier.lab.example") && message.contains("unencrypted"),
        "{message}"
    );
    assert!(HttpTransport::new("http://localhost:8080", &TlsOptions::default(), "x.y").is_ok());
    assert!(HttpTransport::new("http://[::1]:8080", &TlsOptions::default(), "x.y").is_ok());
    assert!(
        TlsOptions::with_ca_pem(b"not a certificate".to_vec()).is_err(),
        "a CA file without certificates is refused"
    );
    app.stop().await;
}
