//! Bookings of resources (instruments, rooms): their rules, the bookings themselves, and the
//! secret tokens of calendar feeds. Bookings are authoritative records, not documents.
//!
//! Every decision that depends on other bookings (overlap, the per-user limit) is taken inside
//! one `BEGIN IMMEDIATE` transaction, which holds SQLite's write lock from its first statement:
//! two requests for one slot are serialised, the second sees the first's row and gets a
//! conflict. Rules that need no other booking live in [`cahier_core::booking`].
//!
//! Access: whoever may read a bookable resource may book it (eLabFTW's default); its owner
//! and its team's admins ("managers") may also book in the past and beyond the window, approve
//! or refuse, and cancel anyone's booking. A booking of a resource one may not read is not
//! found.

use crate::entities::state;
use crate::{Result, Store, StoreError, access_sql, invalid};
use cahier_core::booking::{BookingError, BookingRules};
use cahier_core::{AccessRule, EntityKind, Subject};
use serde::{Deserialize, Serialize};
use sqlx::{Row, SqliteConnection};

/// Where a booking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    /// Holds the slot.
    Confirmed,
    /// Holds the slot while it waits for the owner's or a team admin's approval.
    Pending,
    /// Cancelled; the slot is free.
    Cancelled,
    /// Refused by the owner or a team admin; the slot is free.
    Refused,
    /// A request made on a field replica, waiting for the lab server to confirm it at sync
    /// ("pending confirmation"). Holds the slot on this replica only.
    Requested,
    /// A request the lab server refused (the reason is kept); shown until dismissed.
    RequestRefused,
}

impl BookingState {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Pending => "pending",
            Self::Cancelled => "cancelled",
            Self::Refused => "refused",
            Self::Requested => "requested",
            Self::RequestRefused => "request_refused",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "cancelled" => Self::Cancelled,
            "refused" => Self::Refused,
            _ => Self::Confirmed,
        }
    }

    /// Whether it holds its slot.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Confirmed | Self::Pending | Self::Requested)
    }
}

/// What a row that is a booking request made on this field replica adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// The request's random id (sent to the server).
    pub uuid: String,
    /// The server's reason, when it refused.
    pub reason: Option<String>,
    /// Its code: `overlap`, `forbidden`, `invalid`, `not_found` or `conflict`.
    pub reason_code: Option<String>,
    /// What was asked for: `None` a new booking, else the change of a lab booking (`cancel`,
    /// `move`, `approve` or `refuse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A change of one of the lab's bookings asked for on this field replica and not yet
/// answered: the mirrored booking is shown with it, clearly marked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    /// The request's local id (API v2 `event` id: withdrawn with `DELETE /event/{id}`).
    pub request_id: i64,
    /// The request's random id (sent to the server).
    pub uuid: String,
    /// `cancel`, `move`, `approve` or `refuse`.
    pub action: String,
    /// The times asked for (a move), else the booking's.
    pub start_ms: i64,
    /// End asked for.
    pub end_ms: i64,
}

/// A change of a booking: what the calendar's buttons and API v2 do online, and what a field
/// replica asks the lab server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingAction {
    /// Its booker (within the rules) or a manager cancels it.
    Cancel,
    /// Its booker or a manager changes its times.
    Move {
        /// New start, UTC ms.
        start_ms: i64,
        /// New end, UTC ms.
        end_ms: i64,
    },
    /// A manager approves it (it waits for approval).
    Approve,
    /// A manager refuses it.
    Refuse,
}

impl BookingAction {
    /// The stored and protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Move { .. } => "move",
            Self::Approve => "approve",
            Self::Refuse => "refuse",
        }
    }

    /// From its name (and the times of a move).
    pub fn parse(action: &str, start_ms: Option<i64>, end_ms: Option<i64>) -> Option<Self> {
        match (action, start_ms, end_ms) {
            ("cancel", _, _) => Some(Self::Cancel),
            ("move", Some(start_ms), Some(end_ms)) => Some(Self::Move { start_ms, end_ms }),
            ("approve", _, _) => Some(Self::Approve),
            ("refuse", _, _) => Some(Self::Refuse),
            _ => None,
        }
    }

    /// The state a cancellation, approval or refusal leaves the booking in.
    pub(crate) fn closes_to(self) -> BookingState {
        match self {
            Self::Cancel => BookingState::Cancelled,
            Self::Refuse => BookingState::Refused,
            Self::Approve | Self::Move { .. } => BookingState::Confirmed,
        }
    }
}

/// A booking as readers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRow {
    /// Integer id (API v2 `event` id).
    pub id: i64,
    /// The booked resource.
    pub entity_id: i64,
    /// Its title.
    pub item_title: String,
    /// Its team.
    pub team_id: i64,
    /// Who booked.
    pub user_id: i64,
    /// Their full name.
    pub fullname: String,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End (excluded), UTC ms.
    pub end_ms: i64,
    /// What it is for.
    pub title: String,
    /// The linked experiment, if any.
    pub experiment_id: Option<i64>,
    /// Its title, only if the reader may read it.
    pub experiment_title: Option<String>,
    /// State.
    pub state: BookingState,
    /// Created, ms.
    pub created_at: i64,
    /// Last change, ms.
    pub modified_at: i64,
    /// Set when this is a booking request made on this field replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestInfo>,
    /// On a field replica: a change of this (lab) booking asked for here, not yet answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<PendingChange>,
}

/// A booking request.
#[derive(Debug, Clone)]
pub struct NewBooking {
    /// The resource.
    pub entity_id: i64,
    /// Start, UTC ms.
    pub start_ms: i64,
    /// End, UTC ms.
    pub end_ms: i64,
    /// What it is for.
    pub title: String,
    /// An experiment the booking serves.
    pub experiment_id: Option<i64>,
}

/// Changes to a booking; `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct BookingChange {
    /// New start.
    pub start_ms: Option<i64>,
    /// New end.
    pub end_ms: Option<i64>,
    /// New title.
    pub title: Option<String>,
    /// New experiment (`Some(None)` unlinks).
    pub experiment_id: Option<Option<i64>>,
}

/// Which bookings to list. Only active ones (confirmed, pending) are listed.
#[derive(Debug, Clone, Default)]
pub struct BookingQuery {
    /// Bookings ending after this, UTC ms.
    pub from_ms: Option<i64>,
    /// Bookings starting before this, UTC ms.
    pub to_ms: Option<i64>,
    /// Only these resources (empty: all readable ones).
    pub entity_ids: Vec<i64>,
    /// Only resources of this team.
    pub team_id: Option<i64>,
    /// Only this booker's.
    pub user_id: Option<i64>,
}

/// A resource that can be booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookableResource {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Team.
    pub team_id: i64,
}

impl From<BookingError> for StoreError {
    fn from(error: BookingError) -> Self {
        match error {
            BookingError::Invalid { field, message } => invalid(field, message),
            BookingError::Refused(message) => StoreError::Conflict(message),
        }
    }
}

const MAX_TITLE_CHARS: usize = 255;

/// Ids of booking requests made on a field replica start here (migration 0019), so API v2 event
/// ids never collide with the server's bookings mirrored on the replica.
pub const REQUEST_ID_START: i64 = 1_000_000_000;

pub(crate) fn check_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() {
        return Err(invalid("title", "give the booking a title"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid(
            "title",
            format!("the title is longer than {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(title.to_owned())
}

fn row_from_sql(row: &sqlx::sqlite::SqliteRow) -> Result<BookingRow> {
    let state: String = row.try_get("state")?;
    row_with(row, BookingState::parse(&state), None)
}

/// A [`BookingRow`] from a row of the select list shared by bookings and a replica's
/// requests, with its state (read differently by each) and request details.
pub(crate) fn row_with(
    row: &sqlx::sqlite::SqliteRow,
    state: BookingState,
    request: Option<RequestInfo>,
) -> Result<BookingRow> {
    Ok(BookingRow {
        id: row.try_get("id")?,
        entity_id: row.try_get("entity_id")?,
        item_title: row.try_get("item_title")?,
        team_id: row.try_get("team_id")?,
        user_id: row.try_get("user_id")?,
        fullname: row.try_get("fullname")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
        title: row.try_get("title")?,
        experiment_id: row.try_get("experiment_id")?,
        experiment_title: row.try_get("experiment_title")?,
        state,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
        request,
        change: None,
    })
}

/// The select list of [`BookingRow`] over `bookings b` joined with the resource `e` and the
/// booker `u`. The experiment's title is read only if `subject` may read it.
fn booking_select(subject: &Subject) -> String {
    let readable = access_sql::readable_by(subject);
    format!(
        "SELECT b.id, b.entity_id, e.title AS item_title, e.team_id, b.user_id, \
         trim(u.firstname || ' ' || u.lastname) AS fullname, b.start_ms, b.end_ms, b.title, \
         b.experiment_id, \
         (SELECT e.title FROM entities e WHERE e.id = b.experiment_id AND e.state != 3 AND {readable}) AS experiment_title, \
         b.state, b.created_at, b.modified_at \
         FROM bookings b JOIN entities e ON e.id = b.entity_id JOIN users u ON u.id = b.user_id \
         WHERE {readable}"
    )
}

/// A booking as the database holds it, without access checks (inside transactions).
struct RawBooking {
    entity_id: i64,
    user_id: i64,
    start_ms: i64,
    end_ms: i64,
    state: BookingState,
}

async fn raw_booking(conn: &mut SqliteConnection, id: i64) -> Result<Option<RawBooking>> {
    let row = sqlx::query(
        "SELECT entity_id, user_id, start_ms, end_ms, state FROM bookings WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get(4)?;
    Ok(Some(RawBooking {
        entity_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        start_ms: row.try_get(2)?,
        end_ms: row.try_get(3)?,
        state: BookingState::parse(&state),
    }))
}

pub(crate) async fn load_rules(
    conn: &mut SqliteConnection,
    entity_id: i64,
) -> Result<BookingRules> {
    let row = sqlx::query(
        "SELECT is_bookable, can_overlap, max_minutes, max_slots, window_days, is_cancellable, \
         cancel_minutes, needs_approval FROM booking_rules WHERE entity_id = ?",
    )
    .bind(entity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(BookingRules::default());
    };
    Ok(BookingRules {
        is_bookable: row.try_get(0)?,
        can_overlap: row.try_get(1)?,
        max_minutes: row.try_get(2)?,
        max_slots: row.try_get(3)?,
        window_days: row.try_get(4)?,
        is_cancellable: row.try_get(5)?,
        cancel_minutes: row.try_get(6)?,
        needs_approval: row.try_get(7)?,
    })
}

/// The resource's canbook rule, or its category's default; `None`: the same as canread.
pub(crate) async fn load_canbook(
    conn: &mut SqliteConnection,
    entity_id: i64,
) -> Result<Option<AccessRule>> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT coalesce(r.canbook, c.default_canbook) FROM entities e \
         LEFT JOIN booking_rules r ON r.entity_id = e.id \
         LEFT JOIN categories c ON c.id = e.category_id WHERE e.id = ?",
    )
    .bind(entity_id)
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    Ok(text.and_then(|t| serde_json::from_str::<AccessRule>(&t).ok()))
}

pub(crate) fn refuse_booking() -> StoreError {
    StoreError::Forbidden(
        "you may see this resource but not book it: its booking permission (canbook) leaves you out; ask its owner or a team admin"
            .into(),
    )
}

/// Refuses a slot that overlaps an active booking (unless the rules allow overlaps).
async fn check_overlap(
    conn: &mut SqliteConnection,
    rules: &BookingRules,
    entity_id: i64,
    start_ms: i64,
    end_ms: i64,
    except: Option<i64>,
    zone: &cahier_core::zone::Zone,
) -> Result<()> {
    if rules.can_overlap {
        return Ok(());
    }
    let clash = sqlx::query(
        "SELECT b.title, b.start_ms, b.end_ms, trim(u.firstname || ' ' || u.lastname) \
         FROM bookings b JOIN users u ON u.id = b.user_id \
         WHERE b.entity_id = ? AND b.state IN ('confirmed', 'pending') \
           AND b.start_ms < ? AND b.end_ms > ? AND b.id != ? \
         ORDER BY b.start_ms LIMIT 1",
    )
    .bind(entity_id)
    .bind(end_ms)
    .bind(start_ms)
    .bind(except.unwrap_or(0))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = clash {
        let title: String = row.try_get(0)?;
        let (start, end): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        let who: String = row.try_get(3)?;
        return Err(StoreError::Conflict(format!(
            "this slot is already booked: \"{title}\" by {who}, {} to {} ({}); choose another time",
            zone.display(start),
            zone.display(end),
            zone.name()
        )));
    }
    // On a field replica, the requests made here and not yet answered hold their slot too,
    // and so do the times a move asked for here (the table is empty on a lab server). A
    // booking with a cancellation asked for still holds its slot until the lab decides.
    let asked = sqlx::query(
        "SELECT r.title, r.start_ms, r.end_ms FROM booking_requests r \
         WHERE r.resource_uuid = (SELECT uuid FROM entities WHERE id = ?) AND r.state = 'pending' \
           AND r.kind IN ('new', 'move') AND r.start_ms < ? AND r.end_ms > ? AND r.id != ?4 \
           AND coalesce(r.target_booking_id, -1) != ?4 ORDER BY r.start_ms LIMIT 1",
    )
    .bind(entity_id)
    .bind(end_ms)
    .bind(start_ms)
    .bind(except.unwrap_or(0))
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = asked {
        let title: String = row.try_get(0)?;
        let (start, end): (i64, i64) = (row.try_get(1)?, row.try_get(2)?);
        return Err(StoreError::Conflict(format!(
            "this slot is already asked for on this device: \"{title}\", {} to {} ({}), pending confirmation; choose another time",
            zone.display(start),
            zone.display(end),
            zone.name()
        )));
    }
    Ok(())
}

fn rules_on_replica() -> StoreError {
    StoreError::Conflict(
        "booking rules are set on the lab server; a field copy shows them as last synced".into(),
    )
}

/// Refuses a change of a booking on a field replica: its bookings are copies of the lab
/// server's, which alone decides them (a change made here could never be sent).
pub(crate) fn refuse_on_replica() -> StoreError {
    StoreError::Conflict(
        "this booking is held by the lab server: change it there (a field copy asks for new bookings, moves, cancellations, approvals and refusals, decided at sync)".into(),
    )
}

/// Writes a cancellation, approval or refusal checked by [`Store::check_close`].
async fn write_close(
    tx: &mut SqliteConnection,
    subject: &Subject,
    id: i64,
    target: BookingState,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE bookings SET state = ?, decided_by = ?, decided_at = ?, modified_at = ? WHERE id = ?",
    )
    .bind(target.as_str())
    .bind(subject.user_id)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// The resource behind a booking operation: readable, a resource, not deleted.
    async fn bookable_row(
        &self,
        conn: &mut SqliteConnection,
        subject: &Subject,
        entity_id: i64,
    ) -> Result<crate::EntityRow> {
        let row = self
            .fetch_row(conn, entity_id)
            .await?
            .filter(|row| {
                row.kind == EntityKind::Resource
                    && row.state != state::DELETED
                    && row.access().may_read(subject)
            })
            .ok_or(StoreError::NotFound("resource"))?;
        Ok(row)
    }

    /// The booking rules of a resource the subject may read.
    pub async fn booking_rules(&self, subject: &Subject, entity_id: i64) -> Result<BookingRules> {
        let mut conn = self.pool.acquire().await?;
        self.bookable_row(&mut conn, subject, entity_id).await?;
        load_rules(&mut conn, entity_id).await
    }

    /// Whether the subject manages bookings of a resource (its owner or a team admin).
    pub async fn manages_bookings(&self, subject: &Subject, entity_id: i64) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let row = self.bookable_row(&mut conn, subject, entity_id).await?;
        Ok(row.access().may_admin(subject))
    }

    /// Experiments the subject may read whose title contains `text` or whose id it is, the
    /// subject's own and the latest changed first (the experiment picker of the booking and
    /// stock forms; an empty `text` gives the recent ones). Filtered by the access policy.
    pub async fn experiment_choices(
        &self,
        subject: &Subject,
        text: &str,
        limit: i64,
    ) -> Result<Vec<(i64, String)>> {
        let readable = access_sql::readable_by(subject);
        let text = text.trim().trim_start_matches('#');
        let id: Option<i64> = text.parse().ok();
        let pattern = format!(
            "%{}%",
            text.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT e.id, e.title FROM entities e WHERE e.kind = 'experiment' AND e.state = 1 \
             AND (e.id = ? OR e.title LIKE ? ESCAPE '\\') AND {readable} \
             ORDER BY (e.id = ?) DESC, (e.owner_id = ?) DESC, e.modified_at DESC, e.id DESC LIMIT ?"
        )))
        .bind(id)
        .bind(&pattern)
        .bind(id)
        .bind(subject.user_id)
        .bind(limit.clamp(1, 50))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Whether the subject may book a resource (its canbook rule, see
    /// [`cahier_core::access::EntityAccess::may_book`]).
    pub async fn may_book(&self, subject: &Subject, entity_id: i64) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let row = self.bookable_row(&mut conn, subject, entity_id).await?;
        let canbook = load_canbook(&mut conn, entity_id).await?;
        Ok(row.access().may_book(subject, canbook.as_ref()))
    }

    /// Who may book a resource the subject may read: its own canbook rule, else its category's
    /// default, else its canread rule (eLabFTW's default). The flag tells whether the rule is
    /// the resource's own.
    pub async fn canbook(&self, subject: &Subject, entity_id: i64) -> Result<(AccessRule, bool)> {
        let mut conn = self.pool.acquire().await?;
        let row = self.bookable_row(&mut conn, subject, entity_id).await?;
        let own: Option<String> =
            sqlx::query_scalar("SELECT canbook FROM booking_rules WHERE entity_id = ?")
                .bind(entity_id)
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
        let rule = load_canbook(&mut conn, entity_id).await?;
        Ok((
            rule.unwrap_or_else(|| row.access().canread.clone()),
            own.is_some(),
        ))
    }

    /// The canbook rules of those of `ids` that have one of their own or from their category
    /// (for API list rows; the others book as they read). The caller has checked readability.
    pub async fn canbook_among(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, AccessRule>> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let sql = format!(
            "SELECT e.id, coalesce(r.canbook, c.default_canbook) FROM entities e \
             LEFT JOIN booking_rules r ON r.entity_id = e.id \
             LEFT JOIN categories c ON c.id = e.category_id \
             WHERE e.id IN ({}) AND coalesce(r.canbook, c.default_canbook) IS NOT NULL",
            list.join(",")
        );
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, text)| Some((id, serde_json::from_str(&text).ok()?)))
            .collect())
    }

    /// Sets (or, with `None`, clears back to the default) who may book a resource. Its owner
    /// or a team admin, as for its other access rules.
    pub async fn set_canbook(
        &self,
        subject: &Subject,
        entity_id: i64,
        rule: Option<&AccessRule>,
    ) -> Result<()> {
        if self.is_replica() {
            return Err(rules_on_replica());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = self.bookable_row(&mut tx, subject, entity_id).await?;
        if !row.access().may_admin(subject) {
            return Err(StoreError::Forbidden(
                "only the resource's owner or a team admin can change who may book it".into(),
            ));
        }
        let json = rule
            .map(|r| serde_json::to_string(&r.clone().normalized()))
            .transpose()
            .map_err(|e| invalid("canbook", e.to_string()))?;
        sqlx::query(
            "INSERT INTO booking_rules (entity_id, canbook, updated_at, updated_by) VALUES (?, ?, ?, ?) \
             ON CONFLICT (entity_id) DO UPDATE SET canbook = excluded.canbook, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(entity_id)
        .bind(json)
        .bind(self.now_ms())
        .bind(subject.user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a resource's booking rules (its owner or a team admin). Existing bookings stay.
    pub async fn set_booking_rules(
        &self,
        subject: &Subject,
        entity_id: i64,
        rules: &BookingRules,
    ) -> Result<()> {
        rules.validate()?;
        if self.is_replica() {
            return Err(rules_on_replica());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = self.bookable_row(&mut tx, subject, entity_id).await?;
        if !row.access().may_admin(subject) {
            return Err(StoreError::Forbidden(
                "only the resource's owner or a team admin can change its booking rules".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO booking_rules (entity_id, is_bookable, can_overlap, max_minutes, max_slots, \
             window_days, is_cancellable, cancel_minutes, needs_approval, updated_at, updated_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (entity_id) DO UPDATE SET is_bookable = excluded.is_bookable, \
             can_overlap = excluded.can_overlap, max_minutes = excluded.max_minutes, \
             max_slots = excluded.max_slots, window_days = excluded.window_days, \
             is_cancellable = excluded.is_cancellable, cancel_minutes = excluded.cancel_minutes, \
             needs_approval = excluded.needs_approval, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by",
        )
        .bind(entity_id)
        .bind(rules.is_bookable)
        .bind(rules.can_overlap)
        .bind(rules.max_minutes)
        .bind(rules.max_slots)
        .bind(rules.window_days)
        .bind(rules.is_cancellable)
        .bind(rules.cancel_minutes)
        .bind(rules.needs_approval)
        .bind(self.now_ms())
        .bind(subject.user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks that an experiment to link exists and is readable.
    pub(crate) async fn check_experiment(
        &self,
        subject: &Subject,
        experiment_id: i64,
    ) -> Result<()> {
        match self.entity(subject, experiment_id).await {
            Ok(row) if row.kind == EntityKind::Experiment => Ok(()),
            Ok(_) | Err(StoreError::NotFound(_)) => Err(invalid(
                "experiment",
                format!("there is no experiment {experiment_id} that you can read"),
            )),
            Err(other) => Err(other),
        }
    }

    /// Books a resource. Every rule is checked in one write transaction, so of two requests
    /// for one slot exactly one succeeds; the other gets [`StoreError::Conflict`] naming the
    /// booking it clashes with. On a field replica, use [`Store::request_booking`].
    pub async fn create_booking(&self, subject: &Subject, new: NewBooking) -> Result<BookingRow> {
        if self.is_replica() {
            return Err(refuse_on_replica());
        }
        let title = check_title(&new.title)?;
        if let Some(experiment) = new.experiment_id {
            self.check_experiment(subject, experiment).await?;
        }
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let (id, state) = self
            .insert_booking(&mut tx, subject, &new, &title, &zone)
            .await?;
        tx.commit().await?;
        tracing::info!(
            booking = id,
            resource = new.entity_id,
            user = subject.user_id,
            state = state.as_str(),
            "booked"
        );
        self.booking(subject, id).await
    }

    /// Checks and writes a booking inside the caller's write transaction (`BEGIN IMMEDIATE`);
    /// returns its id and state. `title` has passed [`check_title`] and the experiment, if
    /// any, has been checked readable.
    pub(crate) async fn insert_booking(
        &self,
        tx: &mut SqliteConnection,
        subject: &Subject,
        new: &NewBooking,
        title: &str,
        zone: &cahier_core::zone::Zone,
    ) -> Result<(i64, BookingState)> {
        let now = self.now_ms();
        let state = self
            .check_new_booking(tx, subject, new, now, zone, None)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO bookings (entity_id, user_id, start_ms, end_ms, title, experiment_id, \
             state, created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.entity_id)
        .bind(subject.user_id)
        .bind(new.start_ms)
        .bind(new.end_ms)
        .bind(title)
        .bind(new.experiment_id)
        .bind(state.as_str())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        Ok((id, state))
    }

    /// The checks of a new (or re-asked) booking that need the database, inside the caller's
    /// write transaction: the resource, who may book it, the slot rules, overlaps and the
    /// per-user limit (requests not yet answered on this replica count). `except` names the
    /// booking or request being changed. Returns the state a booking gets: pending when it
    /// waits for approval.
    pub(crate) async fn check_new_booking(
        &self,
        tx: &mut SqliteConnection,
        subject: &Subject,
        new: &NewBooking,
        now: i64,
        zone: &cahier_core::zone::Zone,
        except: Option<i64>,
    ) -> Result<BookingState> {
        let resource = self.bookable_row(tx, subject, new.entity_id).await?;
        let rules = load_rules(tx, new.entity_id).await?;
        let canbook = load_canbook(tx, new.entity_id).await?;
        if !resource.access().may_book(subject, canbook.as_ref()) {
            return Err(refuse_booking());
        }
        let is_manager = resource.access().may_admin(subject);
        rules.check_slot(new.start_ms, new.end_ms, now, is_manager, zone)?;
        check_overlap(
            tx,
            &rules,
            new.entity_id,
            new.start_ms,
            new.end_ms,
            except,
            zone,
        )
        .await?;
        if let Some(max) = rules.max_slots
            && !is_manager
        {
            let held: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM bookings WHERE entity_id = ?1 AND user_id = ?2 \
                   AND state IN ('confirmed', 'pending') AND end_ms > ?3 AND id != ?4) \
                 + (SELECT count(*) FROM booking_requests WHERE user_id = ?2 AND state = 'pending' \
                   AND kind = 'new' AND end_ms > ?3 AND id != ?4 \
                   AND resource_uuid = (SELECT uuid FROM entities WHERE id = ?1))",
            )
            .bind(new.entity_id)
            .bind(subject.user_id)
            .bind(now)
            .bind(except.unwrap_or(0))
            .fetch_one(&mut *tx)
            .await?;
            if held >= max {
                return Err(StoreError::Conflict(format!(
                    "you already hold {held} upcoming bookings of this resource, the most allowed is {max}; cancel one first"
                )));
            }
        }
        Ok(if rules.needs_approval && !is_manager {
            BookingState::Pending
        } else {
            BookingState::Confirmed
        })
    }

    /// A booking of a resource the subject may read.
    pub async fn booking(&self, subject: &Subject, id: i64) -> Result<BookingRow> {
        if id >= REQUEST_ID_START {
            return self.booking_request(subject, id).await;
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} AND b.id = ?",
            booking_select(subject)
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("booking"))?;
        let mut row = row_from_sql(&row)?;
        if self.is_replica() {
            self.attach_booking_changes(subject, std::slice::from_mut(&mut row))
                .await?;
        }
        Ok(row)
    }

    /// Active bookings (confirmed, pending) of resources the subject may read, by start. On a
    /// field replica, also the subject's requests not yet confirmed, and the lab's bookings a
    /// move asked for here brings into the range (they keep the lab's times, and carry the
    /// move in [`BookingRow::change`]).
    pub async fn bookings(
        &self,
        subject: &Subject,
        query: &BookingQuery,
    ) -> Result<Vec<BookingRow>> {
        let mut list = self.listed_bookings(subject, query, None).await?;
        if self.is_replica() {
            let moved = self.moved_here_into(subject, query).await?;
            let missing: Vec<i64> = moved
                .into_iter()
                .filter(|id| !list.iter().any(|row| row.id == *id))
                .collect();
            if !missing.is_empty() {
                list.extend(self.listed_bookings(subject, query, Some(&missing)).await?);
            }
            self.attach_booking_changes(subject, &mut list).await?;
            list.extend(self.booking_requests(subject, query).await?);
            list.sort_by_key(|row| (row.start_ms, row.id));
        }
        Ok(list)
    }

    /// The active bookings of readable resources that match `query`: by their times, or, with
    /// `only`, those of these ids whatever their times.
    async fn listed_bookings(
        &self,
        subject: &Subject,
        query: &BookingQuery,
        only: Option<&[i64]>,
    ) -> Result<Vec<BookingRow>> {
        let mut sql = format!(
            "{} AND b.state IN ('confirmed', 'pending') AND e.state != 3",
            booking_select(subject)
        );
        let (from_ms, to_ms) = match only {
            Some(ids) => {
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                sql.push_str(&format!(" AND b.id IN ({})", ids.join(",")));
                (None, None)
            }
            None => (query.from_ms, query.to_ms),
        };
        if from_ms.is_some() {
            sql.push_str(" AND b.end_ms > ?");
        }
        if to_ms.is_some() {
            sql.push_str(" AND b.start_ms < ?");
        }
        if query.team_id.is_some() {
            sql.push_str(" AND e.team_id = ?");
        }
        if query.user_id.is_some() {
            sql.push_str(" AND b.user_id = ?");
        }
        if !query.entity_ids.is_empty() {
            let ids: Vec<String> = query.entity_ids.iter().map(i64::to_string).collect();
            sql.push_str(&format!(" AND b.entity_id IN ({})", ids.join(",")));
        }
        sql.push_str(" ORDER BY b.start_ms, b.id LIMIT 5000");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in [from_ms, to_ms, query.team_id, query.user_id]
            .into_iter()
            .flatten()
        {
            q = q.bind(value);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(row_from_sql).collect()
    }

    /// On a field replica: the lab bookings whose move, asked for here by the subject and not
    /// yet answered, is to times within the query's range (a move to another week is drawn
    /// there too, not only in the week of the lab's times).
    async fn moved_here_into(&self, subject: &Subject, query: &BookingQuery) -> Result<Vec<i64>> {
        if query.from_ms.is_none() && query.to_ms.is_none() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT target_booking_id FROM booking_requests WHERE state = 'pending' \
             AND kind = 'move' AND user_id = ? AND target_booking_id IS NOT NULL \
             AND (? IS NULL OR end_ms > ?) AND (? IS NULL OR start_ms < ?)",
        )
        .bind(subject.user_id)
        .bind(query.from_ms)
        .bind(query.from_ms)
        .bind(query.to_ms)
        .bind(query.to_ms)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Bookable resources the subject may read, in a team or everywhere, by title.
    pub async fn bookable_resources(
        &self,
        subject: &Subject,
        team_id: Option<i64>,
    ) -> Result<Vec<BookableResource>> {
        let readable = access_sql::readable_by(subject);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.id, e.title, e.team_id FROM entities e \
             JOIN booking_rules r ON r.entity_id = e.id AND r.is_bookable = 1 \
             WHERE e.kind = 'resource' AND e.state = 1 AND (? IS NULL OR e.team_id = ?) AND {readable} \
             ORDER BY e.title COLLATE NOCASE, e.id"
        )))
        .bind(team_id)
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BookableResource {
                    id: row.try_get(0)?,
                    title: row.try_get(1)?,
                    team_id: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Changes a booking's time, title or experiment (its booker or a manager), with the same
    /// rules as a new booking, in one write transaction. On a field replica, a change of the
    /// lab's booking is asked for: only its time (a move), decided by the lab at sync.
    pub async fn update_booking(
        &self,
        subject: &Subject,
        id: i64,
        change: BookingChange,
    ) -> Result<BookingRow> {
        if id >= REQUEST_ID_START {
            return self.update_booking_request(subject, id, change).await;
        }
        if self.is_replica() {
            if change.title.is_some() || change.experiment_id.is_some() {
                return Err(StoreError::Conflict(
                    "a field copy can ask the lab server to move or cancel this booking, \
                     not to change its title or experiment: change those on the lab server"
                        .into(),
                ));
            }
            let current = self.booking(subject, id).await?;
            let start_ms = change.start_ms.unwrap_or(current.start_ms);
            let end_ms = change.end_ms.unwrap_or(current.end_ms);
            return self
                .request_booking_change(subject, id, BookingAction::Move { start_ms, end_ms })
                .await;
        }
        let title = change.title.as_deref().map(check_title).transpose()?;
        if let Some(Some(experiment)) = change.experiment_id {
            self.check_experiment(subject, experiment).await?;
        }
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.now_ms();
        let (start, end) = self
            .check_move(
                &mut tx,
                subject,
                id,
                change.start_ms,
                change.end_ms,
                now,
                &zone,
            )
            .await?;
        sqlx::query(
            "UPDATE bookings SET start_ms = ?, end_ms = ?, title = coalesce(?, title), \
             experiment_id = CASE WHEN ? THEN ? ELSE experiment_id END, modified_at = ? WHERE id = ?",
        )
        .bind(start)
        .bind(end)
        .bind(title)
        .bind(change.experiment_id.is_some())
        .bind(change.experiment_id.flatten())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.booking(subject, id).await
    }

    /// The checks of a change of a booking's time (or of its title alone, with no time
    /// given), inside the caller's write transaction: its booker or a manager, still active,
    /// and a new slot by the rules of a new booking. Returns the start and end it gets.
    #[expect(
        clippy::too_many_arguments,
        reason = "the transaction, who, which booking, the times and the time context"
    )]
    pub(crate) async fn check_move(
        &self,
        tx: &mut SqliteConnection,
        subject: &Subject,
        id: i64,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        now: i64,
        zone: &cahier_core::zone::Zone,
    ) -> Result<(i64, i64)> {
        let booking = raw_booking(tx, id)
            .await?
            .ok_or(StoreError::NotFound("booking"))?;
        let resource = self
            .bookable_row(tx, subject, booking.entity_id)
            .await
            .map_err(|_| StoreError::NotFound("booking"))?;
        let is_manager = resource.access().may_admin(subject);
        if booking.user_id != subject.user_id && !is_manager {
            return Err(StoreError::Forbidden(
                "only the booker, the resource's owner or a team admin can change this booking"
                    .into(),
            ));
        }
        if !booking.state.is_active() {
            return Err(StoreError::Conflict(format!(
                "this booking is {}; book again instead",
                booking.state.as_str()
            )));
        }
        let start = start_ms.unwrap_or(booking.start_ms);
        let end = end_ms.unwrap_or(booking.end_ms);
        if (start, end) != (booking.start_ms, booking.end_ms) {
            let rules = load_rules(tx, booking.entity_id).await?;
            let canbook = load_canbook(tx, booking.entity_id).await?;
            if !resource.access().may_book(subject, canbook.as_ref()) {
                return Err(refuse_booking());
            }
            rules.check_slot(start, end, now, is_manager, zone)?;
            check_overlap(tx, &rules, booking.entity_id, start, end, Some(id), zone).await?;
        }
        Ok((start, end))
    }

    /// Cancels a booking: its booker within the resource's rules, or a manager at any time.
    /// On a field replica, a cancellation of the lab's booking is asked for, decided at sync.
    pub async fn cancel_booking(&self, subject: &Subject, id: i64) -> Result<BookingRow> {
        if id >= REQUEST_ID_START {
            return self.withdraw_booking_request(subject, id).await;
        }
        if self.is_replica() {
            return self
                .request_booking_change(subject, id, BookingAction::Cancel)
                .await;
        }
        self.close_booking(subject, id, BookingState::Cancelled)
            .await
    }

    /// Approves or refuses a pending booking (the resource's owner or a team admin). On a
    /// field replica, the decision is asked for, and made by the lab server at sync.
    pub async fn decide_booking(
        &self,
        subject: &Subject,
        id: i64,
        approve: bool,
    ) -> Result<BookingRow> {
        if self.is_replica() && id < REQUEST_ID_START {
            let action = if approve {
                BookingAction::Approve
            } else {
                BookingAction::Refuse
            };
            return self.request_booking_change(subject, id, action).await;
        }
        let target = if approve {
            BookingState::Confirmed
        } else {
            BookingState::Refused
        };
        self.close_booking(subject, id, target).await
    }

    async fn close_booking(
        &self,
        subject: &Subject,
        id: i64,
        target: BookingState,
    ) -> Result<BookingRow> {
        if self.is_replica() || id >= REQUEST_ID_START {
            return Err(refuse_on_replica());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.now_ms();
        let end_ms = self.check_close(&mut tx, subject, id, target, now).await?;
        write_close(&mut tx, subject, id, target, now).await?;
        tx.commit().await?;
        tracing::info!(
            booking = id,
            by = subject.user_id,
            state = target.as_str(),
            end_ms,
            "booking changed"
        );
        self.booking(subject, id).await
    }

    /// The checks of a cancellation (`target` cancelled) or of an approval or refusal
    /// (`target` confirmed or refused), inside the caller's write transaction. Returns the
    /// booking's end.
    pub(crate) async fn check_close(
        &self,
        tx: &mut SqliteConnection,
        subject: &Subject,
        id: i64,
        target: BookingState,
        now: i64,
    ) -> Result<i64> {
        let booking = raw_booking(tx, id)
            .await?
            .ok_or(StoreError::NotFound("booking"))?;
        let resource = self
            .bookable_row(tx, subject, booking.entity_id)
            .await
            .map_err(|_| StoreError::NotFound("booking"))?;
        let is_manager = resource.access().may_admin(subject);
        if target == BookingState::Cancelled {
            if !booking.state.is_active() {
                return Err(StoreError::Conflict(format!(
                    "this booking is already {}",
                    booking.state.as_str()
                )));
            }
            if !is_manager {
                if booking.user_id != subject.user_id {
                    return Err(StoreError::Forbidden(
                        "only the booker, the resource's owner or a team admin can cancel this booking"
                            .into(),
                    ));
                }
                load_rules(tx, booking.entity_id)
                    .await?
                    .check_cancel(booking.start_ms, now)?;
            }
        } else {
            if !is_manager {
                return Err(StoreError::Forbidden(
                    "only the resource's owner or a team admin can approve or refuse bookings"
                        .into(),
                ));
            }
            if booking.state != BookingState::Pending {
                return Err(StoreError::Conflict(format!(
                    "this booking is {}, not waiting for approval",
                    booking.state.as_str()
                )));
            }
        }
        Ok(booking.end_ms)
    }

    /// Checks and makes a change of a booking inside the caller's write transaction (`BEGIN
    /// IMMEDIATE`), with exactly the rules of the buttons and API online: what deciding a
    /// change asked for on a field replica calls.
    pub(crate) async fn apply_booking_action(
        &self,
        tx: &mut SqliteConnection,
        subject: &Subject,
        id: i64,
        action: BookingAction,
        zone: &cahier_core::zone::Zone,
    ) -> Result<()> {
        let now = self.now_ms();
        match action {
            BookingAction::Move { start_ms, end_ms } => {
                let (start, end) = self
                    .check_move(tx, subject, id, Some(start_ms), Some(end_ms), now, zone)
                    .await?;
                sqlx::query(
                    "UPDATE bookings SET start_ms = ?, end_ms = ?, modified_at = ? WHERE id = ?",
                )
                .bind(start)
                .bind(end)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            other => {
                let target = other.closes_to();
                self.check_close(tx, subject, id, target, now).await?;
                write_close(tx, subject, id, target, now).await?;
            }
        }
        Ok(())
    }

    /// The user's calendar feed token, if they have one.
    pub async fn calendar_token(&self, user_id: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT token FROM calendar_tokens WHERE user_id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Makes a new calendar feed token for the user; the old one stops working.
    pub async fn renew_calendar_token(&self, user_id: i64) -> Result<String> {
        let token = crate::random_hex(24);
        sqlx::query(
            "INSERT INTO calendar_tokens (user_id, token, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET token = excluded.token, created_at = excluded.created_at",
        )
        .bind(user_id)
        .bind(&token)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// Deletes the user's calendar feed token: their feed URLs stop working.
    pub async fn revoke_calendar_token(&self, user_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM calendar_tokens WHERE user_id = ?")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user a calendar feed token belongs to.
    pub async fn calendar_token_user(&self, token: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM calendar_tokens WHERE token = ?")
                .bind(token)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
