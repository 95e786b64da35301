//! The field replica's sync engine (docs/SYNC.md). One [`sync_once`] pushes local changes,
//! follows the server's feed from the replica's checkpoint, pulls what changed, and removes
//! what the user may no longer read — a handful of requests whatever the number of documents.
//! Attachment files travel too: files of local entities are uploaded before the documents that
//! reference them are pushed (asked about only when the server is not known to hold them), and
//! the files the replica's file policy selects (all, chosen teams', or pinned entries') are
//! downloaded after the pull (checked against their hash; a failed download is tried again
//! next time); those it no longer selects are dropped, never one a local change still needs. [`fetch_file`] brings one file on demand.
//! Booking requests made on the replica are sent in one request after the pull; the server's
//! answer decides each and brings its bookings for the replica's calendar.
//! Every step is idempotent, so a sync cut off anywhere is simply run again.

pub mod http;

use cahier_store::Store;
use cahier_store::blobs::{BlobError, BlobStore};
use cahier_store::replica::{PullPart, checkpoint};
use cahier_store::sync::proto::{
    BookingAnswer, BookingChangeItem, BookingOutcome, BookingRequestItem, BookingRequests,
    FeedResponse, Preferences, PullDoc, PullEntry, PushDoc, PushResult, PushStatus, Reference, b64,
};
use std::collections::{HashMap, HashSet};

/// Documents per push or pull request.
pub const BATCH: usize = 200;
/// Documents per pull request after the first of a sync (at most the server's `MAX_DOCS`,
/// 1,000 since the first version of the protocol).
pub const LARGE_BATCH: usize = 1000;
/// Feed items per request.
pub const FEED_PAGE: i64 = 2000;
/// Files downloaded at the same time by a sync.
pub const PARALLEL_DOWNLOADS: usize = 4;
/// Booking requests per request (the server takes at most 1000).
pub const BOOKING_BATCH: usize = 500;

/// Errors of a sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The server refused the device (revoked, or wrong credential).
    #[error("the server refused this device: {0}")]
    Refused(String),
    /// The server answered something unexpected.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The server's TLS certificate is not trusted.
    #[error(
        "the server's certificate is not trusted ({0}); if the lab uses its own certificate authority, give its certificate with --ca-file (PEM)"
    )]
    Untrusted(String),
    /// The server address or the TLS settings cannot be used.
    #[error("{0}")]
    Config(String),
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] cahier_store::StoreError),
    /// The local file store failed, or a file did not match its hash.
    #[error("attachment files: {0}")]
    Blob(#[from] BlobError),
}

fn no_files<T>() -> Result<T, SyncError> {
    Err(SyncError::Protocol(
        "this transport does not carry attachment files".into(),
    ))
}

/// What a pull's transport hands on while the answer arrives.
enum Arrived {
    Entries(Vec<PullEntry>),
    /// The answer to one request ended whole.
    End,
}

/// Where a transport hands on the entries of a pull answer as they arrive
/// ([`Transport::pull_parts`]).
pub struct PullSink(tokio::sync::mpsc::Sender<Arrived>);

impl PullSink {
    /// Hands on entries; `false` when nobody takes them any more (the writer stopped).
    pub async fn send(&self, entries: Vec<PullEntry>) -> bool {
        entries.is_empty() || self.0.send(Arrived::Entries(entries)).await.is_ok()
    }
}

/// How a replica talks to its server. Production uses [`http::HttpTransport`]; tests may call a
/// server store directly.
pub trait Transport {
    /// `GET /reference`.
    fn reference(&self) -> impl Future<Output = Result<Reference, SyncError>> + Send;
    /// `GET /reference` with `If-None-Match: held`: `Ok(None)` when the records of that
    /// version are still current (`304`). Transports (and servers) that cannot tell always
    /// answer the records.
    fn reference_if_changed(
        &self,
        held: Option<&str>,
    ) -> impl Future<Output = Result<Option<Reference>, SyncError>> + Send {
        let _ = held;
        futures_util::FutureExt::map(self.reference(), |answer| answer.map(Some))
    }
    /// `POST /push`.
    fn push(
        &self,
        docs: Vec<PushDoc>,
    ) -> impl Future<Output = Result<Vec<PushResult>, SyncError>> + Send;
    /// `POST /push` naming the mark of the replica's last acknowledged push that no feed read
    /// covered yet (`after`; docs/SYNC.md, "A restored server"). Transports that cannot name
    /// it ask [`Transport::push`].
    fn push_after(
        &self,
        docs: Vec<PushDoc>,
        after: Option<&str>,
    ) -> impl Future<Output = Result<Vec<PushResult>, SyncError>> + Send {
        let _ = after;
        self.push(docs)
    }
    /// `GET /feed`.
    fn feed(
        &self,
        since: i64,
        limit: i64,
    ) -> impl Future<Output = Result<FeedResponse, SyncError>> + Send;
    /// `GET /feed` naming the history the replica read `since` under and the mark of its last
    /// acknowledged push that no feed read covered yet (`pushed`; docs/SYNC.md, "A restored
    /// server"). Transports that cannot name them ask [`Transport::feed`].
    fn feed_in_history(
        &self,
        since: i64,
        limit: i64,
        history: Option<&str>,
        pushed: Option<&str>,
    ) -> impl Future<Output = Result<FeedResponse, SyncError>> + Send {
        let _ = (history, pushed);
        self.feed(since, limit)
    }
    /// `POST /preferences`: the user's preferences chosen on the replica. `Ok(false)` when
    /// the server does not take them (older than them): they then wait on the device.
    fn preferences(
        &self,
        preferences: Preferences,
    ) -> impl Future<Output = Result<bool, SyncError>> + Send {
        let _ = preferences;
        async { Ok(false) }
    }
    /// `POST /pull`.
    fn pull(
        &self,
        docs: Vec<PullDoc>,
    ) -> impl Future<Output = Result<Vec<PullEntry>, SyncError>> + Send;
    /// `POST /pull`, its entries handed on to `sink` as they arrive, so the replica writes the
    /// first while the server reads the next. Transports that cannot stream hand on the whole
    /// answer at once. Stops early, without error, when the sink is closed (the writer
    /// stopped, and reports why).
    fn pull_parts<'a>(
        &'a self,
        docs: Vec<PullDoc>,
        sink: &'a PullSink,
    ) -> impl Future<Output = Result<(), SyncError>> + Send + 'a {
        let pull = self.pull(docs);
        async move {
            let entries = pull.await?;
            sink.send(entries).await;
            Ok(())
        }
    }
    /// `POST /check`.
    fn revoked(
        &self,
        uuids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<String>, SyncError>> + Send;
    /// `POST /bookings`: sends the booking requests (and changes of the lab's bookings) made
    /// on the replica, all at once; answers each one's outcome and the server's bookings and
    /// rules. `Ok(None)` when the server does not take booking requests (older than them):
    /// they then wait on the device.
    fn bookings(
        &self,
        body: BookingRequests,
    ) -> impl Future<Output = Result<Option<BookingAnswer>, SyncError>> + Send {
        let _ = body;
        async { Ok(None) }
    }
    /// `HEAD /blobs/{sha256}`: whether the server already has this file.
    fn has_blob(&self, sha256: &str) -> impl Future<Output = Result<bool, SyncError>> + Send {
        let _ = sha256;
        async { no_files() }
    }
    /// `PUT /blobs/{sha256}`: sends a file from the local blob store.
    fn upload_blob(
        &self,
        sha256: &str,
        blobs: &BlobStore,
    ) -> impl Future<Output = Result<(), SyncError>> + Send {
        let _ = (sha256, blobs);
        async { no_files() }
    }
    /// `GET /blobs/{sha256}` into the local blob store, checked against the hash. `Ok(false)`
    /// when the server has no such file for this device.
    fn download_blob(
        &self,
        sha256: &str,
        blobs: &BlobStore,
    ) -> impl Future<Output = Result<bool, SyncError>> + Send {
        let _ = (sha256, blobs);
        async { no_files() }
    }
}

/// What one sync moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Documents pushed and accepted.
    pub pushed: usize,
    /// Documents refused by the server (kept as rejected edits).
    pub rejected: usize,
    /// Documents pulled.
    pub pulled: usize,
    /// Of those, new to this replica.
    pub added: usize,
    /// Of those, merged with local changes.
    pub merged: usize,
    /// Documents removed because access was withdrawn.
    pub removed: usize,
    /// Local changes still waiting after the sync (0 when both sides agree).
    pub waiting: i64,
    /// Attachment files sent to the server.
    pub files_sent: usize,
    /// Attachment files received.
    pub files_received: usize,
    /// Attachment files referenced here but still missing (tried again next sync).
    pub files_missing: usize,
    /// Entities the server no longer had (restored from an older backup), pushed again.
    pub restored: usize,
    /// Booking requests sent to the server.
    pub bookings_sent: usize,
    /// Of those, confirmed (booked).
    pub bookings_confirmed: usize,
    /// Of those, refused (kept with the reason until dismissed).
    pub bookings_refused: usize,
    /// Booking requests still waiting after the sync (made meanwhile, or the server does not
    /// take them).
    pub bookings_waiting: i64,
    /// Attachment files removed from the laptop because the file policy no longer selects
    /// them (never one a local change still needs).
    pub files_dropped: usize,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed {} (rejected {}), pulled {} ({} new, {} merged), removed {}, waiting {}, \
             files sent {}, received {}, missing {}, dropped {}, booking requests sent {} \
             (confirmed {}, refused {}, waiting {})",
            self.pushed,
            self.rejected,
            self.pulled,
            self.added,
            self.merged,
            self.removed,
            self.waiting,
            self.files_sent,
            self.files_received,
            self.files_missing,
            self.files_dropped,
            self.bookings_sent,
            self.bookings_confirmed,
            self.bookings_refused,
            self.bookings_waiting
        )
    }
}

/// Runs one full sync.
pub async fn sync_once(store: &Store, transport: &impl Transport) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let mut steps = Steps::start();
    // The checkpoints and digests below, read at once. Each is written only by a sync, after
    // it is read here; a value older than the stored one can only make this sync do more (a
    // check asked again, records fetched whole), never skip something.
    let settings = store.replica_settings().await?;
    // Preferences chosen here go first, so the reference records below carry them back.
    send_preferences(store, transport).await?;
    let (mut reference, reference_digest) = reference_step(store, transport, &settings).await?;
    steps.mark("reference");

    let mut since: i64 = settings
        .get(checkpoint::FEED_SINCE)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // A whole reading of the feed after a restore that a cut sync left unfinished starts again
    // (it must see every page to know what the server no longer lists).
    let resume_rescan = settings.contains_key(checkpoint::FEED_RESCAN);
    if resume_rescan {
        since = 0;
    }

    // A first copy: the replica holds nothing the server knows yet. Nothing can have been
    // withdrawn from it, and the search index is built in bulk, merged once after the copy
    // (`Store::finish_search_bulk`, called by `replica serve` in the background, by
    // `replica init` and `replica sync` before they exit).
    let first_copy = since == 0 && store.synced_count().await? == 0;
    if first_copy && !settings.contains_key(cahier_store::listing::SEARCH_BULK) {
        store.search_index_bulk(true).await?;
    }

    // 1. Push local changes.
    let mut refetch = Vec::new();
    push_pending(store, transport, &mut report, &mut refetch, Some(since)).await?;
    steps.mark("push");

    // 2. Follow the feed from our checkpoint and pull what changed. Entries the feed lists
    // only because of our own push just now (an "echo") hold nothing new: not pulled back.
    let echoes = store.echoes().await?;
    // Set when the server's sequence went back: it was restored from a backup older than what
    // it acknowledged. The whole feed is then read again, and what it no longer lists is pushed.
    let mut rescan: Option<std::collections::HashSet<String>> =
        resume_rescan.then(std::collections::HashSet::new);
    // Whether every page of the feed listed the entries it may no longer read (servers of
    // session 7 on, after a first copy): only then can the check of step 5 be skipped.
    let mut unreadable_listed = true;
    // The history our checkpoint was read under: a server restored from a backup says it
    // lost it, even once its sequence has grown past our checkpoint again. Each page names
    // the mark the page before it answered (read after the pushes above, it covers them).
    let mut history = settings.get(checkpoint::FEED_HISTORY).cloned();
    let mut named_history = history.clone();
    // The mark of our last acknowledged push that no feed read covered yet (the pushes above
    // may have moved it): a server that no longer holds it lost that push.
    let pushed = store.replica_get(checkpoint::FEED_PUSHED).await?;
    // Every page of the feed is read first (a few small requests), then what they list is
    // pulled in one stream of batches: the fetch of the next batch overlaps the writing of the
    // current one across page ends too. The checkpoint still moves page by page, once all of
    // a page's entries are written.
    let mut wanted: Vec<PullDoc> = Vec::new();
    let mut page_ends: Vec<PageEnd> = Vec::new();
    let mut read_to = since;
    let mut listed: std::collections::HashSet<String> = std::collections::HashSet::new();
    loop {
        let named = if rescan.is_none() && read_to > 0 {
            named_history.as_deref()
        } else {
            None
        };
        let named_pushed = pushed.as_deref().filter(|_| rescan.is_none());
        let page_since = read_to;
        let feed = transport
            .feed_in_history(read_to, FEED_PAGE, named, named_pushed)
            .await?;
        if (feed.next < read_to || feed.lost == Some(true)) && rescan.is_none() {
            tracing::warn!(
                since = read_to,
                next = feed.next,
                lost = feed.lost,
                "the server lost part of its history (restored from a backup?); reading its whole feed again"
            );
            rescan = Some(std::collections::HashSet::new());
            since = 0;
            read_to = 0;
            wanted.clear();
            page_ends.clear();
            listed.clear();
            // The files it was known to hold may be gone with the rest: each is asked about
            // again before a push names it. Forgotten with the checkpoint going back, and the
            // reading is marked as under way, so a sync cut before its end reads it all again.
            store.begin_rescan().await?;
            history = None;
            continue;
        }
        if feed.history.is_some() {
            named_history.clone_from(&feed.history);
        }
        if let Some(seen) = rescan.as_mut() {
            seen.extend(feed.items.iter().map(|item| item.uuid.clone()));
        }
        match &feed.unreadable {
            Some(gone) if rescan.is_none() => {
                report.removed += store.remove_revoked(gone).await?;
            }
            // The first page of a first copy: there was nothing to withdraw.
            None if first_copy && rescan.is_none() && page_since == 0 => {}
            _ => unreadable_listed = false,
        }
        // A sync with nothing to do reads and writes nothing here.
        // An entry changed while the pages were read is listed twice: pulled once (the pull
        // brings what the server holds when it is asked).
        let items: Vec<&cahier_store::sync::proto::FeedItem> = feed
            .items
            .iter()
            .filter(|item| rescan.is_some() || !is_echo(&echoes, item))
            .filter(|item| listed.insert(item.uuid.clone()))
            .collect();
        if !items.is_empty() {
            let uuids: Vec<&str> = items.iter().map(|item| item.uuid.as_str()).collect();
            let acked = store.acked_heads_of(&uuids).await?;
            wanted.extend(items.iter().map(|item| PullDoc {
                uuid: item.uuid.clone(),
                have: acked.get(&item.uuid).cloned().unwrap_or_default(),
                // Rendered here from the body when first read (docs/SYNC.md).
                lazy_html: true,
            }));
        }
        page_ends.push(PageEnd {
            pulled: wanted.len(),
            next: feed.next,
            history: feed.history.clone(),
            // Checked by the server in the state this page was read in, which `history` marks.
            covers: named_pushed
                .filter(|_| feed.history.is_some())
                .map(str::to_owned),
        });
        read_to = feed.next;
        if !feed.more {
            break;
        }
    }
    steps.mark("feed");
    let mut checkpoint = Checkpoint {
        since: &mut since,
        history: &mut history,
    };
    // A first copy starts with a small request, so one cut short early keeps its first pages;
    // any other pull asks for as much as the server takes at once (one answer, one commit).
    let first_request = if first_copy { BATCH } else { LARGE_BATCH };
    pull_and_apply(
        store,
        transport,
        (wanted, first_request),
        (&page_ends, &mut checkpoint),
        &mut report,
    )
    .await?;
    steps.mark("pull");
    if !echoes.is_empty() {
        store.clear_echoes().await?;
    }
    // After a restore: entities the server no longer lists are pushed whole, and so are the
    // changes it lost on those it kept (their pull above recorded its older heads).
    if let Some(seen) = rescan {
        report.restored = store.forget_unseen(&seen).await?;
        push_pending(store, transport, &mut report, &mut refetch, None).await?;
    }
    // Records the reference names that arrived with this pull (a category's template), when
    // one was missing at the last import. The records themselves are asked for again only if
    // the server said they had not changed.
    if report.pulled > 0 && store.category_templates_pending().await? {
        if reference.is_none() {
            reference = Some(transport.reference().await?);
        }
        if let Some(reference) = &reference {
            store.import_reference(reference).await?;
        }
    }
    // Entities whose local edits were refused come back as the server has them.
    if !refetch.is_empty() {
        let docs = refetch
            .into_iter()
            .map(|uuid| PullDoc {
                uuid,
                have: String::new(),
                lazy_html: true,
            })
            .collect();
        let mut since = since;
        let mut history = history.clone();
        let mut checkpoint = Checkpoint {
            since: &mut since,
            history: &mut history,
        };
        pull_and_apply(
            store,
            transport,
            (docs, LARGE_BATCH),
            (&[], &mut checkpoint),
            &mut report,
        )
        .await?;
    }
    steps.mark("after the pull");

    // 3. Booking requests made here, all in one request, decided by the server; its answer
    // also carries its bookings and rules of the resources we hold, for the calendar.
    // (In batches only beyond what the server takes at once, which sync rarely meets.)
    let requests = store.pending_booking_requests().await?;
    let changes = store.pending_booking_changes().await?;
    for batch in booking_batches(requests, changes) {
        // From here until the answer arrives, the request cannot be changed on the replica:
        // the lab may book it even if its answer is lost on the way back.
        // (Nothing to note for an empty batch: a sync with no request takes no write lock.)
        if !batch.requests.is_empty() {
            store
                .mark_booking_requests_sent(&batch.requests, true)
                .await?;
        }
        if !batch.changes.is_empty() {
            store
                .mark_booking_changes_sent(&batch.changes, true)
                .await?;
        }
        let Some(answer) = transport.bookings(batch.clone()).await? else {
            if !batch.requests.is_empty() {
                store
                    .mark_booking_requests_sent(&batch.requests, false)
                    .await?;
            }
            if !batch.changes.is_empty() {
                store
                    .mark_booking_changes_sent(&batch.changes, false)
                    .await?;
            }
            break;
        };
        // A server older than changes of its bookings answers none: they wait on the device.
        let changes_taken = batch.changes.is_empty() || !answer.change_outcomes.is_empty();
        if !changes_taken {
            store
                .mark_booking_changes_sent(&batch.changes, false)
                .await?;
        }
        let in_order = same_ids(&answer.outcomes, batch.requests.iter().map(|r| &r.id))
            && (!changes_taken
                || same_ids(&answer.change_outcomes, batch.changes.iter().map(|c| &c.id)));
        if !in_order {
            return Err(SyncError::Protocol(
                "booking outcomes do not match the requests sent".into(),
            ));
        }
        let sent = batch.requests.len()
            + if changes_taken {
                batch.changes.len()
            } else {
                0
            };
        // The lab's bookings, rules and bookers usually have not changed since the last sync:
        // then, with no outcome to record, nothing is written (a sync with nothing to do stays
        // free of local writes).
        let mirror_digest = digest(&(&answer.bookings, &answer.rules, &answer.users))?;
        if sent == 0
            && settings.get(BOOKINGS_DIGEST).map(String::as_str) == Some(mirror_digest.as_str())
        {
            continue;
        }
        let user_id = match &reference {
            Some(reference) => reference.user_id,
            None => replica_user(store, transport).await?,
        };
        let tally = store.apply_booking_answer(user_id, &answer).await?;
        store.replica_set(BOOKINGS_DIGEST, &mirror_digest).await?;
        report.bookings_sent += sent;
        report.bookings_confirmed += tally.confirmed;
        report.bookings_refused += tally.refused;
    }
    report.bookings_waiting = store.booking_request_counts().await?.0;
    steps.mark("bookings");

    // 4. Fetch the files of what we hold. A file that fails is left missing (nothing is named
    // by its hash until it arrives whole) and tried again next sync.
    // Two at a time: one file's last bytes, `fsync` and rename overlap the next one's transfer.
    if let Some(blobs) = store.blobs() {
        use futures_util::StreamExt;
        let missing = store.missing_blobs().await?;
        let mut downloads = futures_util::stream::iter(missing)
            .map(|sha256: String| async move {
                let downloaded = transport.download_blob(&sha256, blobs).await;
                (sha256, downloaded)
            })
            .buffer_unordered(PARALLEL_DOWNLOADS);
        let mut received = Vec::new();
        while let Some((sha256, downloaded)) = downloads.next().await {
            match downloaded {
                Ok(true) => {
                    report.files_received += 1;
                    received.push(sha256);
                }
                Ok(false) => {
                    tracing::warn!(%sha256, "the server has no such file for this device");
                    report.files_missing += 1;
                }
                Err(error @ SyncError::Refused(_)) => return Err(error),
                Err(error) => {
                    tracing::warn!(%sha256, %error, "file download failed; will retry");
                    report.files_missing += 1;
                }
            }
        }
        // The server sent them: it holds them.
        store.record_blobs_on_server(&received).await?;
    }

    // 4b. Drop the files the policy no longer selects (an entry unpinned, a team taken off
    // the list). After the pushes above, so a file attached offline is only dropped once the
    // server has acknowledged it; one still waiting is kept.
    report.files_dropped = store.drop_unwanted_blobs().await?;
    steps.mark("files");

    // 5. Remove what the user may no longer read. Whatever can withdraw a right moves the
    // server's sequence (a change of an entry's rules, team, lock or state) or changes the
    // reference records (the user's teams, roles and groups): when neither moved since the
    // last check, and the replica holds the same entries, the answer cannot differ and the
    // check is not asked again (a sync with nothing to do stays a few small requests).
    // When the feed listed, page by page, what changed and may no longer be read, only a
    // change of the reference records (teams, roles, groups) calls for the whole check.
    let previous = settings.get(LAST_CHECK).cloned();
    let check_key = format!("{since}/{reference_digest}/{}", store.synced_count().await?);
    let same_reference = previous
        .as_deref()
        .and_then(|key| key.split('/').nth(1))
        .is_some_and(|digest| digest == reference_digest);
    // After a first copy, everything held was read under this sync's reference records: the
    // key recorded below lets the next sync see a change of them.
    let needed = if unreadable_listed {
        !same_reference && !first_copy
    } else {
        previous.as_deref() != Some(check_key.as_str())
    };
    if needed {
        let held = store.synced_uuids().await?;
        for chunk in held.chunks(5000) {
            let revoked = transport.revoked(chunk.to_vec()).await?;
            report.removed += store.remove_revoked(&revoked).await?;
        }
    }
    if previous.as_deref() != Some(check_key.as_str()) {
        store.replica_set(LAST_CHECK, &check_key).await?;
    }
    steps.mark("access check");
    report.waiting = store.pending_count().await?;
    // The time of the last sync is shown to the minute: a sync with nothing to do within a
    // minute of the last one recorded writes nothing to the replica.
    let now = store.now_ms();
    let recorded = settings
        .get("last_sync_ms")
        .and_then(|ms| ms.parse::<i64>().ok());
    if report != SyncReport::default()
        || recorded.is_none_or(|ms| now - ms >= LAST_SYNC_STEP_MS || now < ms)
    {
        store.replica_set("last_sync_ms", &now.to_string()).await?;
    }
    steps.mark("wrap-up");
    tracing::debug!(%steps, "sync steps");
    Ok(report)
}

/// How long each step of a sync took, for `CAHIER_LOG=cahier_sync=debug` (BENCHMARKS.md).
struct Steps {
    last: std::time::Instant,
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Steps {
    fn start() -> Self {
        Steps {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((step, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, took)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{step} {:.2} ms", took.as_secs_f64() * 1000.0)?;
        }
        Ok(())
    }
}

/// Fetches one attachment file the replica lacks, on demand (the user opened it): through
/// the same verified download as a sync, stored encrypted like the others, and recorded so the
/// next sync does not drop it at once although the file policy does not select it. `Ok(false)`
/// when the server has no such file for this device.
pub async fn fetch_file(
    store: &Store,
    transport: &impl Transport,
    sha256: &str,
) -> Result<bool, SyncError> {
    let Some(blobs) = store.blobs() else {
        return Ok(false);
    };
    if !blobs.exists(sha256).await {
        if !transport.download_blob(sha256, blobs).await? {
            return Ok(false);
        }
        store.record_blobs_on_server(&[sha256.to_owned()]).await?;
        tracing::info!(%sha256, "file fetched on demand");
    }
    store.record_fetched(sha256).await?;
    Ok(true)
}

/// How stale the recorded time of the last sync may get before a sync with nothing to do
/// rewrites it, ms.
const LAST_SYNC_STEP_MS: i64 = 60_000;
/// Replica setting: digest of the lab's bookings, rules and bookers last mirrored.
const BOOKINGS_DIGEST: &str = "bookings_digest";

/// The `POST /bookings` bodies of one sync: new requests and changes of the lab's bookings, at
/// most [`BOOKING_BATCH`] of each per body; one empty body when there is nothing to send (the
/// answer still refreshes the mirrored bookings).
fn booking_batches(
    requests: Vec<BookingRequestItem>,
    changes: Vec<BookingChangeItem>,
) -> Vec<BookingRequests> {
    let count = requests
        .len()
        .div_ceil(BOOKING_BATCH)
        .max(changes.len().div_ceil(BOOKING_BATCH))
        .max(1);
    let mut requests = requests.into_iter();
    let mut changes = changes.into_iter();
    (0..count)
        .map(|_| BookingRequests {
            requests: requests.by_ref().take(BOOKING_BATCH).collect(),
            changes: changes.by_ref().take(BOOKING_BATCH).collect(),
        })
        .collect()
}

/// Whether the outcomes answer exactly these request ids, in order.
fn same_ids<'a>(
    outcomes: &[BookingOutcome],
    ids: impl ExactSizeIterator<Item = &'a String>,
) -> bool {
    outcomes.len() == ids.len() && outcomes.iter().zip(ids).all(|(o, id)| &o.id == id)
}
/// Replica setting: digest of the last reference records imported.
const REFERENCE_DIGEST: &str = "reference_digest";
/// Sends the user's preferences chosen on the replica (their time zone), if any wait; they are
/// forgotten here once the lab has taken them (docs/SYNC.md, "Time zones").
async fn send_preferences(store: &Store, transport: &impl Transport) -> Result<(), SyncError> {
    if let Some(pending) = store.pending_preferences().await?
        && transport.preferences(pending.clone()).await?
    {
        store.preferences_sent(&pending).await?;
    }
    Ok(())
}

/// Replica setting: the feed checkpoint, reference digest and entry count of the last
/// revocation check.
const LAST_CHECK: &str = "revocation_checked";

/// Replica setting: the server's version of the reference records last imported (its `ETag`).
const REFERENCE_VERSION: &str = "reference_version";

/// Brings the reference records up to date: asks for them unless the server says the version
/// held is current, and writes them only if they differ from those held (a digest). Returns
/// the records when they came, and their digest (the held one when they did not).
async fn reference_step(
    store: &Store,
    transport: &impl Transport,
    settings: &HashMap<String, String>,
) -> Result<(Option<Reference>, String), SyncError> {
    let held_digest = settings.get(REFERENCE_DIGEST).cloned();
    // A version counts only with the digest of what was imported under it.
    let held_version = match &held_digest {
        Some(_) => settings
            .get(REFERENCE_VERSION)
            .filter(|version| !version.is_empty())
            .cloned(),
        None => None,
    };
    let Some(reference) = transport
        .reference_if_changed(held_version.as_deref())
        .await?
    else {
        if let Some(held_digest) = held_digest {
            return Ok((None, held_digest));
        }
        // Unreachable with a conforming server (no version was sent); ask plainly.
        let reference = transport.reference().await?;
        return imported(store, reference, None).await;
    };
    let version = reference.version.clone();
    let mut compared = reference.clone();
    compared.version = None;
    let reference_digest = digest(&compared)?;
    if held_digest.as_deref() != Some(reference_digest.as_str()) {
        return imported(store, reference, version.as_deref()).await;
    }
    if let Some(version) = version
        && held_version.as_deref() != Some(version.as_str())
    {
        store.replica_set(REFERENCE_VERSION, &version).await?;
    }
    Ok((Some(reference), reference_digest))
}

/// Imports reference records and records their digest and version.
async fn imported(
    store: &Store,
    reference: Reference,
    version: Option<&str>,
) -> Result<(Option<Reference>, String), SyncError> {
    let mut compared = reference.clone();
    compared.version = None;
    let reference_digest = digest(&compared)?;
    store.import_reference(&reference).await?;
    store
        .replica_set(REFERENCE_DIGEST, &reference_digest)
        .await?;
    match version {
        Some(version) => store.replica_set(REFERENCE_VERSION, version).await?,
        // An older server: no version, so none is sent next time.
        None => store.replica_set(REFERENCE_VERSION, "").await?,
    }
    Ok((Some(reference), reference_digest))
}

/// The replica's user, as recorded at registration (else as the server says).
async fn replica_user(store: &Store, transport: &impl Transport) -> Result<i64, SyncError> {
    match store
        .replica_get("user_id")
        .await?
        .and_then(|id| id.parse().ok())
    {
        Some(user_id) => Ok(user_id),
        None => Ok(transport.reference().await?.user_id),
    }
}

/// A digest of the reference records, to notice when they change (not a security measure).
fn digest(records: &impl serde::Serialize) -> Result<String, SyncError> {
    use std::hash::{Hash, Hasher};
    let text = serde_json::to_string(records)
        .map_err(|e| SyncError::Protocol(format!("reference records: {e}")))?;
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    Ok(format!("{:016x}-{}", hasher.finish(), text.len()))
}

/// Whether a feed item lists nothing but this replica's own push (see
/// [`Store::echoes`]): the same sequence and heads as right after it.
fn is_echo(
    echoes: &HashMap<String, (i64, String)>,
    item: &cahier_store::sync::proto::FeedItem,
) -> bool {
    echoes
        .get(&item.uuid)
        .is_some_and(|(seq, heads)| *seq == item.seq && *heads == item.heads)
}

/// Pushes local changes, in batches, each after the files its documents reference: the server
/// refuses a document naming a file it does not have. Entities whose edits were refused are
/// added to `refetch`. `since` is the feed checkpoint (`None` after a restore): an accepted
/// push of an entry the server had not changed after it is recorded as an echo, not pulled
/// back.
async fn push_pending(
    store: &Store,
    transport: &impl Transport,
    report: &mut SyncReport,
    refetch: &mut Vec<String>,
    since: Option<i64>,
) -> Result<(), SyncError> {
    let pending = store.pushes_to_send().await?;
    // The mark of the last acknowledged push (docs/SYNC.md, "A restored server"): each push
    // names it, the server gives new marks only while it holds it, and the last one received
    // is kept with the acknowledgements.
    let mut chain = Chain {
        mark: if pending.is_empty() {
            None
        } else {
            store.replica_get(checkpoint::FEED_PUSHED).await?
        },
    };
    for batch in pending.chunks(BATCH) {
        let ids: Vec<i64> = batch.iter().map(|p| p.id).collect();
        let files = send_files(store, transport, &ids).await?;
        report.files_sent += files.uploaded.len();
        let docs: Vec<PushDoc> = batch.iter().map(|p| p.doc.clone()).collect();
        let mut results = chain.push(transport, docs).await?;
        // What was last sent of each document sent whole (below), should it go again.
        let mut sent_whole: HashMap<usize, PushDoc> = HashMap::new();
        // The server lacks what some changes build on (restored from a backup): send them whole.
        let need_full: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == PushStatus::NeedFull)
            .map(|(i, _)| i)
            .collect();
        if !need_full.is_empty() {
            let mut full_docs = Vec::new();
            for &i in &need_full {
                let (local_id, doc) = (&batch[i].id, &batch[i].doc);
                let bytes = store.saved_document(*local_id).await?;
                // With what the server needs to create the entry, should it have lost it
                // entirely (ignored when it holds the entry).
                let new = match &doc.new {
                    Some(new) => Some(new.clone()),
                    None => Some(store.new_entity_info(*local_id).await?),
                };
                full_docs.push(PushDoc {
                    uuid: doc.uuid.clone(),
                    base: String::new(),
                    changes: b64(&bytes),
                    new,
                });
            }
            sent_whole.extend(need_full.iter().copied().zip(full_docs.iter().cloned()));
            let retried = chain.push(transport, full_docs).await?;
            for (&i, result) in need_full.iter().zip(retried) {
                results[i] = result;
            }
        }
        if !files.skipped.is_empty() {
            let sent = |i: usize| {
                sent_whole
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| batch[i].doc.clone())
            };
            let retry = (batch, &files.skipped, sent);
            report.files_sent +=
                push_again_with_files(store, (transport, &mut chain), retry, &mut results).await?;
        }
        // All the acknowledgements of the batch are written at once, after it.
        let mut accepted = Vec::with_capacity(batch.len());
        for (push, result) in batch.iter().zip(results) {
            let (local_id, doc, heads) = (&push.id, &push.doc, &push.heads);
            if result.uuid != doc.uuid {
                return Err(SyncError::Protocol("push results out of order".into()));
            }
            match result.status {
                PushStatus::Accepted => {
                    let server_id = result
                        .id
                        .ok_or_else(|| SyncError::Protocol("accepted without an id".into()))?;
                    // The feed will list this entry again for our own push. When nothing
                    // happened to it on the server after our checkpoint and before the push,
                    // and the server's heads are the ones pushed, that listing holds nothing
                    // new. An entry the push created is pulled back (the server gives it its
                    // own columns, such as the eLabFTW id).
                    let echo_seq = match (since, result.prev_seq, result.seq) {
                        (Some(since), Some(prev), Some(seq))
                            if prev <= since && doc.new.is_none() && result.heads == *heads =>
                        {
                            Some(seq)
                        }
                        _ => None,
                    };
                    accepted.push(cahier_store::replica::Accepted {
                        id: *local_id,
                        heads: heads.clone(),
                        server_id,
                        log_seq: push.log_seq,
                        echo_seq,
                    });
                    report.pushed += 1;
                }
                PushStatus::Rejected | PushStatus::NeedFull => {
                    let reason = result
                        .reason
                        .unwrap_or_else(|| "refused by the server".into());
                    store.record_rejection(*local_id, doc, &reason).await?;
                    if doc.new.is_none() {
                        refetch.push(doc.uuid.clone());
                    }
                    report.rejected += 1;
                }
            }
        }
        store
            .record_accepted_marked(&accepted, chain.mark.as_deref())
            .await?;
    }
    Ok(())
}

/// The marks of the server's history that push answers carry, one request after another.
struct Chain {
    /// The last one received (or kept from an earlier sync).
    mark: Option<String>,
}

impl Chain {
    /// Pushes `docs` after the last mark, and keeps the last mark the answer carries. An
    /// answer without marks (an older server, or one that no longer holds the mark named)
    /// leaves it: the feed then asks about the mark named, and a server that lost it says so.
    async fn push(
        &mut self,
        transport: &impl Transport,
        docs: Vec<PushDoc>,
    ) -> Result<Vec<PushResult>, SyncError> {
        let results = transport.push_after(docs, self.mark.as_deref()).await?;
        if let Some(mark) = results.iter().rev().find_map(|r| r.history.as_ref()) {
            self.mark = Some(mark.clone());
        }
        Ok(results)
    }
}

/// What [`send_files`] did.
#[derive(Debug, Default)]
struct FilesSent {
    /// Files uploaded (the server lacked them).
    uploaded: HashSet<String>,
    /// Files not asked about: the server is known to hold them (`Store::blobs_on_server`).
    skipped: HashSet<String>,
}

/// Uploads the files of these local entities that the server lacks. Only the files it is not
/// known to hold are asked about (`HEAD`); what it answered or took is recorded, so the next
/// push of these entities asks nothing (docs/SYNC.md, "Files known to be on the server").
async fn send_files(
    store: &Store,
    transport: &impl Transport,
    local_ids: &[i64],
) -> Result<FilesSent, SyncError> {
    let mut sent = FilesSent::default();
    let Some(blobs) = store.blobs() else {
        return Ok(sent);
    };
    let hashes = store.blobs_of(local_ids).await?;
    if hashes.is_empty() {
        return Ok(sent);
    }
    sent.skipped = store.blobs_on_server(&hashes).await?;
    let mut held = Vec::new();
    let mut outcome = Ok(());
    for sha256 in hashes.iter().filter(|h| !sent.skipped.contains(*h)) {
        let checked = async {
            if transport.has_blob(sha256).await? {
                return Ok(false);
            }
            transport.upload_blob(sha256, blobs).await?;
            Ok(true)
        };
        match checked.await {
            Ok(uploaded) => {
                if uploaded {
                    sent.uploaded.insert(sha256.clone());
                }
                held.push(sha256.clone());
            }
            Err(error) => {
                outcome = Err(error);
                break;
            }
        }
    }
    // Recorded even when a later file failed: what the server answered about these holds.
    store.record_blobs_on_server(&held).await?;
    outcome.map(|()| sent)
}

/// After a push batch: a document the server refused although some of its files were skipped
/// as known to be there may have been refused for lack of them (the server lost them: a disk
/// or a backup restored without the sync seeing it). Those files are forgotten from the record
/// and asked about again, and sent if missing; the documents that had a file sent are pushed
/// once more and their new results replace the refusals. A document whose files were all
/// there was refused for another reason: its refusal stands. Returns how many files were sent.
/// Cut anywhere, nothing is lost: the refusal is not recorded on the replica yet, and the
/// files forgotten are asked about at the next sync.
async fn push_again_with_files(
    store: &Store,
    (transport, chain): (&impl Transport, &mut Chain),
    (batch, skipped, sent): (
        &[cahier_store::replica::PendingPush],
        &HashSet<String>,
        impl Fn(usize) -> PushDoc,
    ),
    results: &mut [PushResult],
) -> Result<usize, SyncError> {
    let mut suspects: Vec<(usize, Vec<String>)> = Vec::new();
    for (i, result) in results.iter().enumerate() {
        if result.status != PushStatus::Rejected {
            continue;
        }
        let Some(push) = batch.get(i) else { continue };
        let trusted: Vec<String> = store
            .blobs_of(&[push.id])
            .await?
            .into_iter()
            .filter(|sha256| skipped.contains(sha256))
            .collect();
        if !trusted.is_empty() {
            suspects.push((i, trusted));
        }
    }
    if suspects.is_empty() {
        return Ok(0);
    }
    let forgotten: Vec<String> = suspects
        .iter()
        .flat_map(|(_, hashes)| hashes.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    store.forget_blobs_on_server(&forgotten).await?;
    let ids: Vec<i64> = suspects.iter().map(|(i, _)| batch[*i].id).collect();
    let again = send_files(store, transport, &ids).await?;
    let retry: Vec<usize> = suspects
        .iter()
        .filter(|(_, hashes)| hashes.iter().any(|h| again.uploaded.contains(h)))
        .map(|(i, _)| *i)
        .collect();
    if retry.is_empty() {
        return Ok(again.uploaded.len());
    }
    tracing::warn!(
        documents = retry.len(),
        files = again.uploaded.len(),
        "the server lacked files it was known to hold; sent them and pushing again"
    );
    let retried = chain
        .push(transport, retry.iter().map(|&i| sent(i)).collect())
        .await?;
    if retried.len() != retry.len() {
        return Err(SyncError::Protocol("push results out of order".into()));
    }
    for (&i, result) in retry.iter().zip(retried) {
        results[i] = result;
    }
    Ok(again.uploaded.len())
}

/// Where a page of the feed ends in the stream of pulled entries: once the first `pulled`
/// entries are written, the checkpoint may move to `next` (read under `history`), and the
/// push mark the page's request named (`covers`) is no longer needed.
struct PageEnd {
    pulled: usize,
    next: i64,
    history: Option<String>,
    covers: Option<String>,
}

/// The feed checkpoint and its history, as the sync moves them.
struct Checkpoint<'a> {
    since: &'a mut i64,
    history: &'a mut Option<String>,
}

impl Checkpoint<'_> {
    /// Records that every entry of a page is written.
    async fn reach(&mut self, store: &Store, end: &PageEnd) -> Result<(), SyncError> {
        let history = end
            .history
            .as_deref()
            .filter(|h| Some(*h) != self.history.as_deref());
        if history.is_none() && end.next == *self.since && end.covers.is_none() {
            return Ok(());
        }
        // The checkpoint, its history and the push mark they cover, in one transaction.
        store
            .reach_checkpoint(end.next, history, end.covers.as_deref())
            .await?;
        if history.is_some() {
            self.history.clone_from(&end.history);
        }
        *self.since = end.next;
        Ok(())
    }

    /// Moves through every page end whose entries are all written (`written` of them).
    async fn reach_all(
        &mut self,
        store: &Store,
        ends: &mut std::iter::Peekable<std::slice::Iter<'_, PageEnd>>,
        written: usize,
    ) -> Result<(), SyncError> {
        while let Some(end) = ends.next_if(|end| end.pulled <= written) {
            self.reach(store, end).await?;
        }
        Ok(())
    }
}

/// Parts of a pull answer waiting to be prepared or written (a few MiB at most).
const PARTS_QUEUE: usize = 64;

/// How long the writing of a pull answer keeps its transaction open while waiting for more of
/// it before committing what it has (a slow link never keeps the replica's other writers out
/// for long; a fast one is written in one transaction per request).
const PULL_HOLD: std::time::Duration = std::time::Duration::from_millis(250);

/// Pulls `wanted`, `first_request` in a first request and [`LARGE_BATCH`] in each next one,
/// each answer streamed (docs/SYNC.md, "A
/// streamed pull"): three stages run at once, the transport receiving and decoding the
/// answer's entries, their CPU part (documents decoded, digests) computed on a blocking
/// thread, and the replica writing them as they come, one transaction per answer on a fast
/// link ([`Store::apply_pulled_parts`], which commits earlier on a slow one). Entries are
/// written in order, each transaction whole or not at all, and the feed checkpoint moves past
/// a page (`page_ends`) only once all its entries are written. An answer cut short leaves its
/// last transaction rolled back and the error is the sync's.
async fn pull_and_apply(
    store: &Store,
    transport: &impl Transport,
    (wanted, first_request): (Vec<PullDoc>, usize),
    (page_ends, checkpoint): (&[PageEnd], &mut Checkpoint<'_>),
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let mut ends = page_ends.iter().peekable();
    checkpoint.reach_all(store, &mut ends, 0).await?;
    if wanted.is_empty() {
        return checkpoint.reach_all(store, &mut ends, usize::MAX).await;
    }
    let started = std::time::Instant::now();
    // Where each entry stands in `wanted` (its UUIDs are distinct): the server answers in the
    // order asked, leaving out what the user may no longer read.
    let position: HashMap<String, usize> = wanted
        .iter()
        .enumerate()
        .map(|(i, doc)| (doc.uuid.clone(), i))
        .collect();
    // A first request of `first_request`, the next ones of [`LARGE_BATCH`].
    let mut requests: Vec<Vec<PullDoc>> = Vec::new();
    let mut ends_of_requests: Vec<usize> = Vec::new();
    let mut rest = wanted.as_slice();
    while !rest.is_empty() {
        let size = if requests.is_empty() {
            first_request.clamp(1, LARGE_BATCH)
        } else {
            LARGE_BATCH
        };
        let (request, tail) = rest.split_at(size.min(rest.len()));
        requests.push(request.to_vec());
        ends_of_requests.push(wanted.len() - tail.len());
        rest = tail;
    }
    let (arrived_sender, mut arrived) = tokio::sync::mpsc::channel(PARTS_QUEUE);
    let (parts_sender, parts) = tokio::sync::mpsc::channel(PARTS_QUEUE);

    let receive = async move {
        let sink = PullSink(arrived_sender);
        for request in requests {
            transport.pull_parts(request, &sink).await?;
            if sink.0.send(Arrived::End).await.is_err() {
                break;
            }
        }
        Ok::<(), SyncError>(())
    };
    let prepare = async move {
        while let Some(first) = arrived.recv().await {
            let mut entries = match first {
                Arrived::End => {
                    if parts_sender.send(PullPart::End).await.is_err() {
                        break;
                    }
                    continue;
                }
                Arrived::Entries(entries) => entries,
            };
            // Whatever else arrived meanwhile is prepared with them.
            let mut end = false;
            while let Ok(more) = arrived.try_recv() {
                match more {
                    Arrived::Entries(more) => entries.extend(more),
                    Arrived::End => {
                        end = true;
                        break;
                    }
                }
            }
            let (entries, prepared) = prepared(entries).await?;
            if parts_sender
                .send(PullPart::Entries(entries, prepared))
                .await
                .is_err()
                || (end && parts_sender.send(PullPart::End).await.is_err())
            {
                break;
            }
        }
        Ok::<(), SyncError>(())
    };
    let write = async {
        // Owned here: gone when the writing stops, which stops the other two stages.
        let mut parts = parts;
        let mut written = 0;
        let mut answers = ends_of_requests.into_iter();
        let mut answer_end = answers.next();
        while let Some(end) = answer_end {
            let part = store.apply_pulled_parts(&mut parts, PULL_HOLD).await?;
            tracing::debug!(
                elapsed = ?started.elapsed(),
                entries = part.applied.len(),
                ended = part.ended,
                "pull part written"
            );
            for applied in part.applied {
                match applied {
                    cahier_store::replica::Applied::Added => report.added += 1,
                    cahier_store::replica::Applied::Merged => report.merged += 1,
                    cahier_store::replica::Applied::Updated => {}
                }
                report.pulled += 1;
            }
            if part.ended {
                written = end;
                answer_end = answers.next();
            } else if let Some(at) = part.last.as_ref().and_then(|uuid| position.get(uuid)) {
                written = written.max(at + 1);
            }
            checkpoint.reach_all(store, &mut ends, written).await?;
        }
        Ok::<(), SyncError>(())
    };
    let (received, prepared, written) = tokio::join!(receive, prepare, write);
    // The transport's error first: the others only saw the answer stop.
    received?;
    prepared?;
    written?;
    checkpoint.reach_all(store, &mut ends, usize::MAX).await
}

/// Pulled entries with their CPU part computed on a blocking thread.
async fn prepared(
    entries: Vec<PullEntry>,
) -> Result<(Vec<PullEntry>, cahier_store::replica::PreparedPull), SyncError> {
    tokio::task::spawn_blocking(move || {
        let prepared = cahier_store::replica::PreparedPull::of(&entries);
        (entries, prepared)
    })
    .await
    .map_err(|error| SyncError::Protocol(format!("preparing pulled entries: {error}")))
}

/// Heads of every entity by UUID (tests compare replicas with this).
pub async fn all_heads(
    store: &Store,
    uuids: &[String],
) -> Result<HashMap<String, Option<String>>, SyncError> {
    let mut heads = HashMap::new();
    for uuid in uuids {
        heads.insert(uuid.clone(), store.heads_of(uuid).await?);
    }
    Ok(heads)
}
