//! A network that hangs rather than refusing (a captive portal, a dying 4G link, a firewall
//! that drops packets): every request of the sync transport gives up when the server sends
//! nothing for the stall timeout — the answer's headers (after an allowance for sending the
//! request's body over a slow link), each chunk of its body, a file upload the connection stops
//! taking — with "the server sent nothing for N s", while a slow but alive link is never cut
//! off. A sync cut that way leaves nothing half-written, and the next one converges with
//! nothing lost. A lab server from the test kit behind the loopback fault proxy, the production
//! transport, and raw TCP servers that accept and then fall silent, read slowly, or answer
//! slowly; a short stall timeout (`HttpTransport::with_stall_timeout`).

use super::fault_proxy::{Fault, FaultProxy};
use super::sync_blobs::Replica;
use super::sync_faults::{
    BLOB_PUT, PUSH, assert_converged, assert_lines, attach_on_replica, blob_bytes,
    create_on_replica, edit_at_lab, edit_on_replica, pattern, replica_via,
};
use super::uploads::sha256;
use cahier_store::Store;
use cahier_store::replica::checkpoint;
use cahier_sync::http::{HttpTransport, TlsOptions};
use cahier_sync::{SyncError, Transport, sync_once};
use cahier_testkit::TestApp;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REFERENCE: &str = "GET /api/sync/v1/reference";
const FEED: &str = "GET /api/sync/v1/feed";
const PULL: &str = "POST /api/sync/v1/pull";
const BLOB_HEAD: &str = "HEAD /api/sync/v1/blobs/";

/// The stall timeout of these tests.
const STALL: Duration = Duration::from_secs(1);

/// The message of an error that must be a stall ("the server sent nothing for N s").
fn stall_message(error: &SyncError) -> &str {
    match error {
        SyncError::Unreachable(message)
            if message.contains("the server sent nothing for")
                && message.ends_with("(the network seems to hang)") =>
        {
            message
        }
        other => panic!("not a stall: {other:?}"),
    }
}

/// A sync that must give up as over a hanging network, within a few seconds; its message.
async fn hanging_sync(laptop: &Replica) -> String {
    let started = Instant::now();
    let error = sync_once(&laptop.store, &laptop.transport)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= STALL && waited < Duration::from_secs(15),
        "gave up after {waited:?}"
    );
    // Seen by `replica serve` and `replica sync` as an unreachable server.
    assert!(
        error.to_string().starts_with("cannot reach the server: "),
        "{error}"
    );
    stall_message(&error).to_owned()
}

#[tokio::test]
async fn a_sync_over_a_network_that_hangs_gives_up_within_the_stall_and_the_next_one_loses_nothing()
{
    let app = TestApp::spawn().await;
    let ada = app.user("ada@lab.fr", "Geology", false).await;
    let lab = app.api(&app.api_key(&ada, true).await);
    let id = lab
        .create("/experiments", json!({"title": "Dunes", "body": "lab 0\n"}))
        .await;
    let proxy = FaultProxy::start(&app.url).await;
    let mut laptop = replica_via(&proxy, &ada).await;
    laptop.transport = laptop.transport.clone().with_stall_timeout(STALL);
    let subject = app.store.subject(ada.id).await.unwrap();
    let uuid = app.store.entity(&subject, id).await.unwrap().uuid;

    // The network stops answering: the first request (the reference records) gets nothing.
    proxy.arm(Fault::Hang(REFERENCE));
    let message = hanging_sync(&laptop).await;
    assert!(message.contains("sent nothing for 1 s"), "{message}");

    // Offline work: a new entry with a file, an edit of the lab's entry.
    let field = create_on_replica(&laptop, &ada, "Field", "field 0\n").await;
    edit_on_replica(&laptop, &ada, &uuid, "field 1").await;
    let notes = pattern(40_000, 11);
    attach_on_replica(&laptop, &ada, &field, "notes.raw", &notes).await;
    let waiting = laptop.store.pending_count().await.unwrap();
    assert_eq!(waiting, 2);

    // Asking whether the lab holds the file gets nothing back.
    proxy.arm(Fault::Hang(BLOB_HEAD));
    hanging_sync(&laptop).await;
    // The file goes out whole and the lab stores it, but its answer never comes: given up
    // after the stall plus the time a slow link takes to send 40 kB (3 s).
    proxy.arm(Fault::Hang(BLOB_PUT));
    let message = hanging_sync(&laptop).await;
    assert!(message.contains("sent nothing for 4 s"), "{message}");
    assert_eq!(blob_bytes(&app.store, &sha256(&notes)).await, notes);
    // The push reaches the lab, which accepts it; its answer never comes. The replica still
    // counts both entries as waiting.
    proxy.arm(Fault::Hang(PUSH));
    let message = hanging_sync(&laptop).await;
    assert!(message.contains("sent nothing for 2 s"), "{message}");
    assert_eq!(laptop.store.pending_count().await.unwrap(), waiting);
    assert_eq!(lab.json("/experiments").await.as_array().unwrap().len(), 2);

    // The lab edits its entry; the feed's answer stops after a few bytes.
    edit_at_lab(&lab, id, "lab 1").await;
    proxy.arm(Fault::HangAfter(FEED, 10));
    let message = hanging_sync(&laptop).await;
    assert!(message.contains("sent nothing for 1 s"), "{message}");

    // The pull's answer stops midway: nothing of it is written, the checkpoint stays.
    let since = laptop
        .store
        .replica_get(checkpoint::FEED_SINCE)
        .await
        .unwrap();
    let before = body_on(&laptop.store, ada.id, &uuid).await;
    proxy.arm(Fault::HangAfter(PULL, 100));
    let message = hanging_sync(&laptop).await;
    assert!(message.contains("sent nothing for 1 s"), "{message}");
    assert_eq!(body_on(&laptop.store, ada.id, &uuid).await, before);
    assert!(!before.contains("lab 1"), "{before}");
    assert_eq!(
        laptop
            .store
            .replica_get(checkpoint::FEED_SINCE)
            .await
            .unwrap(),
        since
    );
    assert!(
        proxy.fired().iter().all(|fault| fault.starts_with("Hang")),
        "{:?}",
        proxy.fired()
    );

    // The network comes back, slow: the pull's answer trickles in over several stall
    // timeouts, each piece within one, and is not cut off.
    proxy.arm(Fault::Trickle(PULL, 150, Duration::from_millis(300)));
    let started = Instant::now();
    let report = laptop.sync().await;
    assert!(started.elapsed() > 2 * STALL, "{:?}", started.elapsed());
    assert_eq!(proxy.armed(), 0, "{:?}", proxy.fired());
    assert!(report.pulled >= 1, "{report}");
    assert_eq!((report.rejected, report.waiting), (0, 0), "{report}");

    // Nothing lost, nothing twice.
    laptop.sync().await;
    assert_converged(&app.store, &laptop, &ada).await;
    assert_lines(
        &app.store,
        &laptop,
        &ada,
        &uuid,
        &["lab 0", "field 1", "lab 1"],
    )
    .await;
    assert_lines(&app.store, &laptop, &ada, &field, &["field 0"]).await;
    assert_eq!(lab.json("/experiments").await.as_array().unwrap().len(), 2);
    let field_id = app.store.entity_by_uuid(&subject, &field).await.unwrap().id;
    let uploads = lab.json(&format!("/experiments/{field_id}/uploads")).await;
    assert_eq!(uploads.as_array().unwrap().len(), 1, "{uploads}");
    assert_eq!(uploads[0]["hash"], sha256(&notes));
    // The file the lab stored without its answer coming back was found there, not sent again.
    let puts = proxy
        .log()
        .iter()
        .filter(|request| request.key().starts_with(BLOB_PUT))
        .count();
    assert_eq!(puts, 1);
    app.stop().await;
}

async fn body_on(store: &Store, user: i64, uuid: &str) -> String {
    let subject = store.subject(user).await.unwrap();
    store.entity_by_uuid(&subject, uuid).await.unwrap().body
}

/// A loopback server that accepts connections and reads nothing, ever (with a small receive
/// buffer, so a client's upload stops being taken after a few MB); its address.
async fn silent_server() -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}")
}

/// How a [`scripted_server`] treats each request.
#[derive(Clone)]
struct Script {
    /// Bytes of the request's body read every 50 ms (all at once when `None`).
    read_per_tick: Option<usize>,
    /// The answer's status and body; `None`: silence once the request is read.
    answer: Option<(u16, Vec<u8>)>,
    /// The answer's body goes out in pieces of this many bytes, each after `pause`.
    piece: usize,
    pause: Duration,
    /// Bytes of the answer's body sent before falling silent (the connection left open).
    sent: usize,
}

impl Script {
    fn answering(status: u16, body: &[u8]) -> Self {
        Self {
            read_per_tick: None,
            answer: Some((status, body.to_vec())),
            piece: usize::MAX,
            pause: Duration::ZERO,
            sent: usize::MAX,
        }
    }
}

/// A loopback HTTP/1.1 server (with a small receive buffer) that reads each request whole,
/// at the script's pace, then answers as scripted; its address.
async fn scripted_server(script: Script) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = vec![0u8; 256 * 1024];
                let end = loop {
                    if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse().unwrap());
                let mut received = request.len() - end;
                while received < length {
                    let want = script
                        .read_per_tick
                        .unwrap_or(buffer.len())
                        .min(buffer.len());
                    match socket.read(&mut buffer[..want]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received += n,
                    }
                    if script.read_per_tick.is_some() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                let Some((status, body)) = script.answer else {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                };
                let head = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for chunk in body[..script.sent.min(body.len())].chunks(script.piece) {
                    tokio::time::sleep(script.pause).await;
                    if socket.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                // Then silence, the connection open (unless all was sent).
                if script.sent < body.len() {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    format!("http://{address}")
}

fn transport(server: &str) -> HttpTransport {
    HttpTransport::new(server, &TlsOptions::default(), "device.secret")
        .unwrap()
        .with_stall_timeout(STALL)
}

/// `n` entity UUIDs to ask about (`POST /check`): 36 bytes each in the request.
fn uuids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("00000000-0000-7000-8000-{i:012}"))
        .collect()
}

#[tokio::test]
async fn a_request_gives_up_when_the_server_falls_silent_but_never_while_a_slow_link_moves() {
    // Nothing comes back: the answer's headers are awaited for the stall, plus, for a request
    // with a body, the time a 16 KiB/s link takes to send it (1 s here).
    let silent = silent_server().await;
    let started = Instant::now();
    let error = transport(&silent).reference().await.unwrap_err();
    assert!(
        started.elapsed() >= STALL && started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stall_message(&error).contains("sent nothing for 1 s"),
        "{error}"
    );
    let started = Instant::now();
    let error = transport(&silent).revoked(uuids(3)).await.unwrap_err();
    assert!(
        started.elapsed() >= 2 * STALL && started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stall_message(&error).contains("sent nothing for 2 s"),
        "{error}"
    );

    // A large request body read slowly by the server (about 2 s for 800 kB, twice the stall):
    // it is still being sent, so the answer is awaited.
    let answer = json!({"revoked": ["00000000-0000-7000-8000-000000000007"]}).to_string();
    let slow_reader = scripted_server(Script {
        read_per_tick: Some(24 * 1024),
        ..Script::answering(200, answer.as_bytes())
    })
    .await;
    let started = Instant::now();
    let revoked = transport(&slow_reader)
        .revoked(uuids(20_000))
        .await
        .unwrap();
    assert!(started.elapsed() > STALL, "{:?}", started.elapsed());
    assert_eq!(revoked, ["00000000-0000-7000-8000-000000000007"]);

    // An answer trickling in, each piece within the stall, the whole over several: whole.
    let trickling = scripted_server(Script {
        piece: 10,
        pause: Duration::from_millis(400),
        ..Script::answering(200, answer.as_bytes())
    })
    .await;
    let started = Instant::now();
    let revoked = transport(&trickling).revoked(uuids(2)).await.unwrap();
    assert!(started.elapsed() > 2 * STALL, "{:?}", started.elapsed());
    assert_eq!(revoked, ["00000000-0000-7000-8000-000000000007"]);

    // The same answer stopping after 20 bytes: given up one stall after the last piece.
    let halting = scripted_server(Script {
        piece: 10,
        pause: Duration::from_millis(100),
        sent: 20,
        ..Script::answering(200, answer.as_bytes())
    })
    .await;
    let started = Instant::now();
    let error = transport(&halting).revoked(uuids(2)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stall_message(&error).contains("sent nothing for 1 s"),
        "{error}"
    );

    // Answers read this way keep their meaning: 403 is a refusal, another error a protocol
    // error, both with the server's message; a body that is not the expected JSON too.
    let refusing = scripted_server(Script::answering(
        403,
        br#"{"description": "this device has been revoked"}"#,
    ))
    .await;
    let error = transport(&refusing).reference().await.unwrap_err();
    assert!(
        matches!(&error, SyncError::Refused(m) if m == "this device has been revoked"),
        "{error:?}"
    );
    let failing = scripted_server(Script::answering(
        500,
        br#"{"description": "the database is locked"}"#,
    ))
    .await;
    let error = transport(&failing).revoked(uuids(1)).await.unwrap_err();
    assert!(
        matches!(&error, SyncError::Protocol(m) if m.ends_with(": the database is locked")),
        "{error:?}"
    );
    let garbled = scripted_server(Script::answering(200, b"<html>portal</html>")).await;
    let error = transport(&garbled).revoked(uuids(1)).await.unwrap_err();
    assert!(matches!(&error, SyncError::Protocol(_)), "{error:?}");
}

/// A replica's store with an encrypted file store and nothing else.
async fn file_store(dir: &Path) -> Store {
    Store::open_sqlite(&dir.join("cahier.db"), Arc::new(cahier_core::SystemClock))
        .await
        .unwrap()
        .with_encrypted_blobs(dir.join("blobs"), 64 * 1024 * 1024, [5; 32])
}

#[tokio::test]
async fn an_upload_gives_up_when_the_connection_stops_taking_it_but_never_while_it_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path()).await;
    store.init_replica().await.unwrap();
    let blobs = store.blob_store().unwrap();
    let large = pattern(12 * 1024 * 1024, 3);
    let (large_hash, _) = blobs.put_stream(large.as_slice()).await.unwrap();
    let small = pattern(20_000, 5);
    let (small_hash, _) = blobs.put_stream(small.as_slice()).await.unwrap();

    // A server that takes nothing: once the connection's buffers are full, the file stops
    // being taken, and the upload gives up one stall later.
    let silent = silent_server().await;
    let started = Instant::now();
    let error = transport(&silent)
        .upload_blob(&large_hash, blobs)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= STALL && started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stall_message(&error).contains("sent nothing for 1 s"),
        "{error}"
    );

    // A server that takes the whole file and never answers: given up after the stall plus
    // the time a slow link takes to send what may still be in the buffers (20 kB: 2 s).
    let mute = scripted_server(Script {
        answer: None,
        ..Script::answering(201, b"")
    })
    .await;
    let started = Instant::now();
    let error = transport(&mute)
        .upload_blob(&small_hash, blobs)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= 3 * STALL && started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stall_message(&error).contains("sent nothing for 3 s"),
        "{error}"
    );

    // A server that reads the file slowly (about 5 s for 12 MiB; the connection takes more
    // whenever a third of its send buffer, up to 4 MiB on loopback, was read: within the
    // stall): the upload goes through.
    let slow_reader = scripted_server(Script {
        read_per_tick: Some(128 * 1024),
        ..Script::answering(201, b"")
    })
    .await;
    let stall = 2 * STALL;
    let started = Instant::now();
    transport(&slow_reader)
        .with_stall_timeout(stall)
        .upload_blob(&large_hash, blobs)
        .await
        .unwrap();
    assert!(started.elapsed() > stall, "{:?}", started.elapsed());
}
