//! Wire types of the sync protocol `/api/sync/v1` (docs/SYNC.md). A contract with replicas
//! already in the field: only add optional fields; anything else needs a new version.

use crate::entities::{CommentRow, EntityRow, StepRow};
use base64::Engine;
use cahier_core::AccessRule;
use serde::{Deserialize, Serialize};

/// Encodes bytes for JSON.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes [`b64`].
pub fn unb64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(s)
}

/// `POST /devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Sign-in e-mail.
    pub email: String,
    /// Password.
    pub password: String,
    /// Device name shown in settings.
    pub name: String,
}

/// Answer to [`RegisterRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// Device public id.
    pub device: String,
    /// Credential for `Authorization: Device <token>`.
    pub token: String,
    /// The user's id on the server.
    pub user_id: i64,
}

/// One feed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// Entity UUID.
    pub uuid: String,
    /// Its sequence number.
    pub seq: i64,
    /// Its heads on the server.
    pub heads: String,
}

/// `GET /feed` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedResponse {
    /// Changed entities.
    pub items: Vec<FeedItem>,
    /// The checkpoint to send next time. Lower than the `since` asked when the server's
    /// sequence went back (restored from an older backup): the replica then asks from 0.
    pub next: i64,
    /// Whether more items wait.
    pub more: bool,
    /// Entities that changed in the same range of the sequence (after `since`, up to `next`)
    /// and that the subject may not read now: a replica holding one removes it. Absent from
    /// older servers, on a first copy (`since` 0), and when the range holds too many for one
    /// answer: the replica then asks `POST /check` about everything it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<Vec<String>>,
    /// A mark of the server's history as this page was read: the end of its feed sequence and
    /// that value's stamp (`<seq>.<stamp>`, migration 35), or, from servers of session 8 to
    /// 10, the id of the server process's history. Opaque to the replica, which sends it back
    /// as `history` with its checkpoint. Absent from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
    /// True when the server no longer holds everything up to the `since` asked, as seen under
    /// the `history` named, or no longer holds the mark named as `pushed` (restored from a
    /// backup, even if its sequence has grown past `since` again, or under the running
    /// server): the replica then reads the whole feed again, as when `next` goes back. Absent
    /// when nothing was lost, no history was named, or from older servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<bool>,
}

/// A document asked for in `POST /pull`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullDoc {
    /// Entity UUID.
    pub uuid: String,
    /// Heads the replica has from the server (empty: none).
    pub have: String,
    /// The replica renders `body_html` from the body itself: the server leaves it empty in
    /// the snapshot (two thirds of a first copy's bytes). Absent from older replicas, which
    /// get it rendered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lazy_html: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The projection rows of an entity, so a replica can list and show it without loading the
/// document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The entity row (server ids).
    pub entity: EntityRow,
    /// Steps.
    pub steps: Vec<StepRow>,
    /// Comments.
    pub comments: Vec<CommentRow>,
    /// Linked UUIDs.
    pub links: Vec<String>,
    /// Conflicts: (field, JSON list of values).
    pub conflicts: Vec<(String, String)>,
    /// The `uploads` rows (absent from servers older than attachment sync).
    #[serde(default)]
    pub uploads: Vec<SnapshotUpload>,
    /// The stock projection, when the entity tracks stock (absent from servers older than
    /// stock tracking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<SnapshotStock>,
}

/// A resource's stock as shipped on pull: the columns and every event, with the server's
/// receive time of each (which the replica then shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStock {
    /// Unit.
    pub unit: String,
    /// Quantity, thousandths.
    pub quantity_milli: i64,
    /// Threshold, thousandths.
    pub threshold_milli: Option<i64>,
    /// Events.
    pub events: Vec<SnapshotStockEvent>,
}

/// One `entity_stock_events` row as shipped on pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SnapshotStockEvent {
    /// Stable id.
    pub event_id: String,
    /// `consume`, `restock` or `adjust`.
    pub kind: String,
    /// Signed change, thousandths.
    pub delta: i64,
    /// Unit.
    pub unit: String,
    /// Who recorded it.
    pub user_id: i64,
    /// Device time, ms.
    pub at: i64,
    /// Experiment UUID.
    pub experiment_uuid: Option<String>,
    /// Note.
    pub note: String,
    /// The server's receive time, ms.
    pub received_at: i64,
}

/// One `uploads` row of an entity as shipped on pull; the replica keys it by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SnapshotUpload {
    /// SHA-256 of the content.
    pub sha256: String,
    /// File name.
    pub real_name: String,
    /// Comment.
    pub comment: String,
    /// Bytes.
    pub size: i64,
    /// Media type.
    pub media_type: String,
    /// Who attached it.
    pub user_id: i64,
    /// When, ms.
    pub created_at: i64,
    /// 1 normal, 2 archived, 3 deleted.
    pub state: i64,
    /// SHA-256 of the version it replaces.
    pub replaces: Option<String>,
}

impl SnapshotUpload {
    /// The row as a document entry, for [`crate::projection::write_uploads`].
    pub(crate) fn to_attachment(&self) -> cahier_core::document::Attachment {
        cahier_core::document::Attachment {
            sha256: self.sha256.clone(),
            name: self.real_name.clone(),
            mime: self.media_type.clone(),
            size: self.size,
            added_by: self.user_id,
            added_at_ms: self.created_at,
            comment: Some(self.comment.clone()),
            state: Some(self.state),
            replaces: self.replaces.clone(),
        }
    }
}

/// `POST /blobs/missing` and its answer: SHA-256 hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobList {
    /// Hashes, hex.
    pub hashes: Vec<String>,
}

/// One document in the `POST /pull` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PullEntry {
    /// Entity UUID.
    pub uuid: String,
    /// Server integer id.
    pub id: i64,
    /// Server heads.
    pub heads: String,
    /// Whether `changes` is the whole saved document.
    pub full: bool,
    /// Automerge bytes, base64.
    pub changes: String,
    /// Projection rows.
    pub snapshot: Snapshot,
}

/// What the server needs to create an entity first made on a replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEntityInfo {
    /// Owning team.
    pub team_id: i64,
    /// Read rule.
    pub canread: AccessRule,
    /// Write rule.
    pub canwrite: AccessRule,
}

/// One document in `POST /push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushDoc {
    /// Entity UUID.
    pub uuid: String,
    /// Heads the server last acknowledged (empty for a new entity).
    pub base: String,
    /// `save_after(base)` (or the whole document for a new entity), base64.
    pub changes: String,
    /// Present for an entity the server has never seen.
    #[serde(default)]
    pub new: Option<NewEntityInfo>,
}

/// Outcome of one pushed document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    /// Merged; `heads` are the server's new heads.
    Accepted,
    /// Refused; kept in quarantine with `reason`.
    Rejected,
    /// The server lacks the base: send the whole document.
    NeedFull,
}

/// One result of `POST /push`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResult {
    /// Entity UUID.
    pub uuid: String,
    /// Outcome.
    pub status: PushStatus,
    /// Server integer id (accepted).
    pub id: Option<i64>,
    /// Server heads after the push (accepted).
    pub heads: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Quarantine record id.
    pub quarantine: Option<i64>,
    /// The entity's feed sequence (`sync_seq`) just before this push (accepted; absent for an
    /// entity the push created, and from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_seq: Option<i64>,
    /// The entity's feed sequence right after this push (accepted; absent from older
    /// servers). With `prev_seq`, the replica knows when the feed lists nothing but its own
    /// push and need not pull it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// A mark of the server's history just after this push (accepted; absent from older
    /// servers, and when the mark the request named as `after` is one the server no longer
    /// holds): the end of its feed sequence and that value's stamp (docs/SYNC.md, "A restored
    /// server"). The replica keeps the last one it received, names it as `after` in its next
    /// push and as `pushed` on the feed until a feed read covers it; the server then says
    /// `lost` if it no longer holds it, so a push acknowledged just before a backup the
    /// server was restored from is not taken for held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
}

impl PushResult {
    pub(crate) fn empty(uuid: &str) -> Self {
        Self {
            uuid: uuid.to_owned(),
            status: PushStatus::Accepted,
            id: None,
            heads: String::new(),
            reason: None,
            quarantine: None,
            prev_seq: None,
            seq: None,
            history: None,
        }
    }
    pub(crate) fn rejected(uuid: &str, reason: String, quarantine: Option<i64>) -> Self {
        Self {
            status: PushStatus::Rejected,
            reason: Some(reason),
            quarantine,
            ..Self::empty(uuid)
        }
    }
}

/// A user as the replica needs to show them.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct RefUser {
    /// Server id.
    pub id: i64,
    /// E-mail.
    pub email: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Instance admin.
    pub is_sysadmin: bool,
}

/// A status or category with its family.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct RefTerm {
    /// Server id.
    pub id: i64,
    /// Team.
    pub team_id: i64,
    /// `experiment` or `resource`.
    pub family: String,
    /// Name.
    pub title: String,
    /// Colour.
    pub color: String,
    /// Default.
    pub is_default: bool,
    /// Order.
    pub ordering: i64,
    /// 1 live, 3 retired.
    pub state: i64,
    /// Resource categories: the base level a new resource's read rule gets (none: the
    /// author's own default). Absent from older servers and from statuses.
    #[serde(default)]
    #[sqlx(default)]
    pub default_canread_base: Option<i64>,
    /// Resource categories: the base level of its write rule.
    #[serde(default)]
    #[sqlx(default)]
    pub default_canwrite_base: Option<i64>,
    /// Resource categories: the template (its server id) a new resource starts from.
    #[serde(default)]
    #[sqlx(default)]
    pub default_template_id: Option<i64>,
}

/// `GET /reference`: the server records a replica needs, read-only on the replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// The replica's user.
    pub user_id: i64,
    /// Users to display (the user, their teammates, owners of what they may read).
    pub users: Vec<RefUser>,
    /// All teams: (id, name).
    pub teams: Vec<(i64, String)>,
    /// The user's memberships: (team id, is admin).
    pub memberships: Vec<(i64, bool)>,
    /// Groups of the user's teams and groups they belong to: (id, team id, name).
    pub groups: Vec<(i64, i64, String)>,
    /// Groups the user belongs to.
    pub my_groups: Vec<i64>,
    /// Statuses of the user's teams.
    pub statuses: Vec<RefTerm>,
    /// Categories of the user's teams.
    pub categories: Vec<RefTerm>,
    /// The lab's time zone (IANA name: a sysadmin's choice, else its configuration's), so a
    /// laptop set to another zone shows and checks times as the lab does. Absent from older
    /// servers: the replica then keeps its own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The user's own time zone, if they chose one at the lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_time_zone: Option<String>,
    /// The version of these records (also the answer's `ETag`): a replica sends it back in
    /// `If-None-Match` and gets `304 Not Modified` while nothing it would receive has changed.
    /// Opaque; absent from older servers (the replica then compares a digest of the records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One booking request made on a replica, in `POST /bookings`. Do not change the meaning of a
/// field: older replicas send it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct BookingRequestItem {
    /// The request's random id (a UUID), the server's idempotency key.
    pub id: String,
    /// The resource's UUID.
    pub resource: String,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End (excluded), UTC ms.
    pub end_ms: i64,
    /// What it is for.
    pub title: String,
    /// The linked experiment's UUID.
    #[serde(default)]
    pub experiment: Option<String>,
    /// The device's clock when it was asked (recorded, never trusted).
    pub device_at: i64,
}

/// One change of a lab booking asked for on a replica, in `POST /bookings` (`changes`): its
/// booker cancels or moves it, or a user who manages the resource approves or refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingChangeItem {
    /// The request's random id (a UUID), the server's idempotency key (shared with
    /// [`BookingRequestItem::id`]).
    pub id: String,
    /// The server's booking to change.
    pub booking: i64,
    /// `cancel`, `move`, `approve` or `refuse`.
    pub action: String,
    /// New start, UTC ms (`move`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<i64>,
    /// New end (excluded), UTC ms (`move`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
    /// The device's clock when it was asked (recorded, never trusted).
    pub device_at: i64,
}

/// `POST /bookings` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BookingRequests {
    /// The requests not yet answered.
    pub requests: Vec<BookingRequestItem>,
    /// Changes of the lab's bookings not yet answered. A server older than them ignores the
    /// field and answers no `change_outcomes`: the changes then wait on the device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<BookingChangeItem>,
}

/// What the server decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingOutcomeKind {
    /// Booked: `booking` is the server's booking (confirmed, or waiting for approval).
    Booked,
    /// Refused with `reason`.
    Refused,
}

/// One outcome in the `POST /bookings` answer, in the order of the requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingOutcome {
    /// The request's id.
    pub id: String,
    /// Booked or refused.
    pub outcome: BookingOutcomeKind,
    /// The server's booking id (booked).
    #[serde(default)]
    pub booking: Option<i64>,
    /// Why it was refused, for the user (English).
    #[serde(default)]
    pub reason: Option<String>,
    /// The reason's kind: `overlap`, `forbidden`, `invalid`, `not_found` or `conflict`.
    #[serde(default)]
    pub code: Option<String>,
}

/// A booking of the server, as a replica mirrors it (never written there: changes of it are
/// requests, see [`BookingChangeItem`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirroredBooking {
    /// Server id.
    pub id: i64,
    /// The resource's UUID.
    pub resource: String,
    /// Who booked (a user in `users`).
    pub user_id: i64,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms.
    pub end_ms: i64,
    /// Title.
    pub title: String,
    /// The linked experiment's UUID, when the user may read it.
    #[serde(default)]
    pub experiment: Option<String>,
    /// `confirmed` or `pending` (waiting for approval).
    pub state: String,
    /// Created, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub modified_at: i64,
}

/// A bookable resource's rules and who may book it, as a replica mirrors them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirroredRules {
    /// The resource's UUID.
    pub resource: String,
    /// Its rules.
    pub rules: cahier_core::booking::BookingRules,
    /// Its canbook rule, or its category's default (none: as canread).
    #[serde(default)]
    pub canbook: Option<AccessRule>,
}

/// `POST /bookings` answer: each request's outcome, then the server's bookings (active, ended
/// less than 62 days ago or later) and rules of the resources the user may read, and the
/// bookers to show.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BookingAnswer {
    /// One per request, in order.
    pub outcomes: Vec<BookingOutcome>,
    /// One per change, in order: `booked` means the change was made (`booking` is the booking
    /// changed), `refused` carries the reason. Absent from servers older than changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub change_outcomes: Vec<BookingOutcome>,
    /// The server's bookings.
    pub bookings: Vec<MirroredBooking>,
    /// Rules of the readable resources that have some.
    pub rules: Vec<MirroredRules>,
    /// The bookers.
    pub users: Vec<RefUser>,
}

/// `POST /preferences`: a user's preferences chosen on a replica (docs/SYNC.md, "Time
/// zones"). Each field present is the choice made; the last one to reach the server wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// The device's own counter of choices (from 1, growing): the server applies only a
    /// number above the last it applied for this device, so a replay changes nothing.
    pub seq: i64,
    /// The user's own time zone (IANA name); `None` clears it (the lab's zone then applies).
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// Answer to `POST /preferences`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencesAnswer {
    /// Whether this choice was applied (false: the server had applied this one or a newer
    /// one from this device already).
    pub applied: bool,
}
