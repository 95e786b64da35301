//! Bookings asked for on a field replica (issue #5, docs/SYNC.md "Booking requests").
//!
//! A slot is exclusive in real time, so only the lab server holds bookings. On a replica a new
//! booking is a *request*: kept in `booking_requests` with a random id, checked against the
//! rules and the bookings as last synced (so a clash is told at once), shown "pending
//! confirmation", and changed or withdrawn freely until it is sent. At sync the replica posts
//! every pending request at once; the server decides each one in its own write transaction
//! with the same rules as online, and records the request id with the outcome in that same
//! transaction, so a request sent again gets the same answer and never books twice. The
//! replica then marks it confirmed (the server's booking arrives in the mirror) or refused with
//! the reason, shown until the user dismisses it. Nothing is dropped silently.
//!
//! Changes of the lab's bookings (cancel, move, approve, refuse) are requests of the same
//! model: a row of kind `cancel`, `move`, `approve` or `refuse` naming the server's booking,
//! shown on the mirrored booking while pending, sent in `changes` of the same exchange.
//!
//! This module must not decide anything the booking rules decide: it calls
//! [`Store::check_new_booking`] and [`Store::insert_booking`], and for changes
//! [`Store::check_move`], [`Store::check_close`] and [`Store::apply_booking_action`]
//! (`bookings.rs`).

use crate::bookings::{
    BookingAction, BookingChange, BookingQuery, BookingRow, BookingState, NewBooking,
    PendingChange, REQUEST_ID_START, RequestInfo, check_title, refuse_on_replica,
};
use crate::sync::Device;
use crate::sync::proto::{
    BookingAnswer, BookingChangeItem, BookingOutcome, BookingOutcomeKind, BookingRequestItem,
    MirroredBooking, MirroredRules, RefUser,
};
use crate::{Result, Store, StoreError, access_sql, invalid};
use cahier_core::booking::BookingRules;
use cahier_core::{AccessRule, EntityKind, Subject};
use sqlx::{Row, SqliteConnection};

/// How far back the server's bookings are mirrored on replicas (the month view of last month).
const MIRROR_PAST_MS: i64 = 62 * 24 * 3_600_000;

/// What one sync did with booking requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTally {
    /// Confirmed by the server.
    pub confirmed: usize,
    /// Refused by the server.
    pub refused: usize,
}

fn request_state(state: &str, kind: &str) -> BookingState {
    match (state, kind) {
        ("pending", _) => BookingState::Requested,
        ("refused", _) => BookingState::RequestRefused,
        ("confirmed", "cancel") => BookingState::Cancelled,
        ("confirmed", "refuse") => BookingState::Refused,
        ("confirmed", _) => BookingState::Confirmed,
        _ => BookingState::Cancelled,
    }
}

const REQUEST_SELECT: &str = "SELECT r.id, coalesce(e.id, 0) AS entity_id, \
     coalesce(e.title, '') AS item_title, coalesce(e.team_id, 0) AS team_id, r.user_id, \
     coalesce(trim(u.firstname || ' ' || u.lastname), '') AS fullname, r.start_ms, r.end_ms, \
     r.title, x.id AS experiment_id, x.title AS experiment_title, r.state, \
     r.device_at AS created_at, coalesce(r.decided_at, r.device_at) AS modified_at, \
     r.uuid, r.reason, r.reason_code, r.booking_id, r.kind \
     FROM booking_requests r LEFT JOIN entities e ON e.uuid = r.resource_uuid \
     LEFT JOIN users u ON u.id = r.user_id LEFT JOIN entities x ON x.uuid = r.experiment_uuid";

fn request_row(row: &sqlx::sqlite::SqliteRow) -> Result<BookingRow> {
    let state: String = row.try_get("state")?;
    let kind: String = row.try_get("kind")?;
    let request = RequestInfo {
        uuid: row.try_get("uuid")?,
        reason: row.try_get("reason")?,
        reason_code: row.try_get("reason_code")?,
        action: (kind != "new").then(|| kind.clone()),
    };
    crate::bookings::row_with(row, request_state(&state, &kind), Some(request))
}

/// A request as stored, inside transactions.
struct RawRequest {
    uuid: String,
    sent_at: Option<i64>,
    resource_uuid: String,
    state: String,
    start_ms: i64,
    end_ms: i64,
    experiment_uuid: Option<String>,
    booking_id: Option<i64>,
    kind: String,
}

async fn raw_request(
    conn: &mut SqliteConnection,
    subject: &Subject,
    id: i64,
) -> Result<RawRequest> {
    let row = sqlx::query(
        "SELECT uuid, resource_uuid, state, start_ms, end_ms, experiment_uuid, booking_id, sent_at, \
         kind FROM booking_requests WHERE id = ? AND user_id = ?",
    )
    .bind(id)
    .bind(subject.user_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("booking"))?;
    Ok(RawRequest {
        uuid: row.try_get(0)?,
        resource_uuid: row.try_get(1)?,
        state: row.try_get(2)?,
        start_ms: row.try_get(3)?,
        end_ms: row.try_get(4)?,
        experiment_uuid: row.try_get(5)?,
        booking_id: row.try_get(6)?,
        sent_at: row.try_get(7)?,
        kind: row.try_get(8)?,
    })
}

/// Refuses to change or withdraw a request whose answer has not arrived although it was sent:
/// the lab may have booked it already, and its recorded answer would win over the change.
fn check_unsent(request: &RawRequest) -> Result<()> {
    if request.sent_at.is_some() {
        return Err(StoreError::Conflict(
            "this request was sent to the lab server and its answer has not arrived yet; \
             it can be changed or withdrawn once the next sync brings the answer"
                .into(),
        ));
    }
    Ok(())
}

fn already_answered(state: &str) -> StoreError {
    StoreError::Conflict(format!(
        "the lab server has already answered this request ({state}); book again instead"
    ))
}

/// The code and message of a refusal the server sends back; `None` for failures that are
/// not the request's fault (the whole sync request then fails and is tried again).
fn refusal(error: &StoreError) -> Option<(&'static str, String)> {
    match error {
        StoreError::Conflict(message) if message.starts_with("this slot is already booked") => {
            Some(("overlap", message.clone()))
        }
        StoreError::Conflict(message) => Some(("conflict", message.clone())),
        StoreError::Forbidden(message) => Some(("forbidden", message.clone())),
        StoreError::Invalid { .. } => Some(("invalid", error.to_string())),
        StoreError::NotFound(what) => Some((
            "not_found",
            format!("{what} not found on the lab server, or you may no longer read it"),
        )),
        _ => None,
    }
}

fn refused(id: &str, code: &str, reason: String) -> BookingOutcome {
    BookingOutcome {
        id: id.to_owned(),
        outcome: BookingOutcomeKind::Refused,
        booking: None,
        reason: Some(reason),
        code: Some(code.to_owned()),
    }
}

impl Store {
    /// The UUID of an experiment the subject may read, to name it in a request.
    async fn experiment_uuid(&self, subject: &Subject, experiment_id: i64) -> Result<String> {
        self.check_experiment(subject, experiment_id).await?;
        Ok(self.entity(subject, experiment_id).await?.uuid)
    }

    /// Books a resource (on a lab server) or asks for a booking (on a field replica): what the
    /// booking form and `POST /api/v2/events/{item}` call.
    pub async fn book(&self, subject: &Subject, new: NewBooking) -> Result<BookingRow> {
        if self.is_replica() {
            self.request_booking(subject, new).await
        } else {
            self.create_booking(subject, new).await
        }
    }

    /// On a field replica: asks for a booking. Checked now against the resource's rules and
    /// the bookings as last synced (a clash is told at once), then kept as a request, pending
    /// confirmation by the lab server at the next sync. On a lab server this books directly.
    pub async fn request_booking(&self, subject: &Subject, new: NewBooking) -> Result<BookingRow> {
        if !self.is_replica() {
            return self.create_booking(subject, new).await;
        }
        let title = check_title(&new.title)?;
        let experiment_uuid = match new.experiment_id {
            Some(id) => Some(self.experiment_uuid(subject, id).await?),
            None => None,
        };
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.now_ms();
        self.check_new_booking(&mut tx, subject, &new, now, &zone, None)
            .await?;
        let resource_uuid: String = sqlx::query_scalar("SELECT uuid FROM entities WHERE id = ?")
            .bind(new.entity_id)
            .fetch_one(&mut *tx)
            .await?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO booking_requests (uuid, resource_uuid, user_id, start_ms, end_ms, title, \
             experiment_uuid, device_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending') RETURNING id",
        )
        .bind(&uuid)
        .bind(&resource_uuid)
        .bind(subject.user_id)
        .bind(new.start_ms)
        .bind(new.end_ms)
        .bind(&title)
        .bind(&experiment_uuid)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(request = %uuid, resource = new.entity_id, "booking requested");
        self.booking_request(subject, id).await
    }

    /// One of the subject's booking requests (API v2 `event` ids from [`REQUEST_ID_START`]).
    /// A confirmed one answers the server's booking once it has arrived.
    pub async fn booking_request(&self, subject: &Subject, id: i64) -> Result<BookingRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.id = ? AND r.user_id = ?"
        )))
        .bind(id)
        .bind(subject.user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("booking"))?;
        let booking: Option<i64> = row.try_get("booking_id")?;
        if let Some(booking) = booking.filter(|b| *b < REQUEST_ID_START)
            && let Ok(found) = Box::pin(self.booking(subject, booking)).await
        {
            return Ok(found);
        }
        request_row(&row)
    }

    /// The subject's requests not yet confirmed (pending, or refused and not dismissed) that
    /// match a calendar query, by start. A pending change of a lab booking is shown on the
    /// booking itself ([`BookingRow::change`]), and here only when the booking has left the
    /// mirror.
    pub async fn booking_requests(
        &self,
        subject: &Subject,
        query: &BookingQuery,
    ) -> Result<Vec<BookingRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.user_id = ? AND e.id IS NOT NULL \
             AND (r.state = 'refused' OR (r.state = 'pending' AND (r.kind = 'new' \
               OR NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = r.target_booking_id \
                 AND b.state IN ('confirmed', 'pending'))))) \
             ORDER BY r.start_ms, r.id"
        )))
        .bind(subject.user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut list = Vec::new();
        for row in &rows {
            let row = request_row(row)?;
            let keep = query.from_ms.is_none_or(|from| row.end_ms > from)
                && query.to_ms.is_none_or(|to| row.start_ms < to)
                && query.team_id.is_none_or(|team| row.team_id == team)
                && query.user_id.is_none_or(|user| row.user_id == user)
                && (query.entity_ids.is_empty() || query.entity_ids.contains(&row.entity_id));
            if keep {
                list.push(row);
            }
        }
        Ok(list)
    }

    /// Every request of the subject the server refused and that is not dismissed, newest
    /// first (the replica's status page).
    pub async fn refused_booking_requests(&self, subject: &Subject) -> Result<Vec<BookingRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.user_id = ? AND r.state = 'refused' ORDER BY r.decided_at DESC, r.id DESC"
        )))
        .bind(subject.user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_row).collect()
    }

    /// How many requests wait to be sent, and how many refusals wait to be read.
    pub async fn booking_request_counts(&self) -> Result<(i64, i64)> {
        let (pending, refused): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'refused'), 0) \
             FROM booking_requests",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((pending, refused))
    }

    /// Changes a request not yet sent (its time, title or experiment), with the same checks
    /// as a new one.
    pub(crate) async fn update_booking_request(
        &self,
        subject: &Subject,
        id: i64,
        change: BookingChange,
    ) -> Result<BookingRow> {
        let title = change.title.as_deref().map(check_title).transpose()?;
        let experiment_uuid = match change.experiment_id {
            Some(Some(experiment)) => Some(Some(self.experiment_uuid(subject, experiment).await?)),
            Some(None) => Some(None),
            None => None,
        };
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.now_ms();
        let request = raw_request(&mut tx, subject, id).await?;
        if request.state != "pending" {
            return Err(already_answered(&request.state));
        }
        if request.kind != "new" {
            return Err(StoreError::Conflict(
                "this is a change of a lab booking asked for here: change the booking itself, \
                 or withdraw the request"
                    .into(),
            ));
        }
        check_unsent(&request)?;
        let start = change.start_ms.unwrap_or(request.start_ms);
        let end = change.end_ms.unwrap_or(request.end_ms);
        if (start, end) != (request.start_ms, request.end_ms) {
            let entity_id: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
                .bind(&request.resource_uuid)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("resource"))?;
            let asked = NewBooking {
                entity_id,
                start_ms: start,
                end_ms: end,
                title: String::new(),
                experiment_id: None,
            };
            self.check_new_booking(&mut tx, subject, &asked, now, &zone, Some(id))
                .await?;
        }
        sqlx::query(
            "UPDATE booking_requests SET start_ms = ?, end_ms = ?, title = coalesce(?, title), \
             experiment_uuid = ?, device_at = ? WHERE id = ?",
        )
        .bind(start)
        .bind(end)
        .bind(title)
        .bind(experiment_uuid.unwrap_or(request.experiment_uuid))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.booking_request(subject, id).await
    }

    /// Withdraws a request not yet sent (it is deleted: it never left this device), or
    /// dismisses a refusal the user has read. A confirmed request is the server's booking now.
    pub(crate) async fn withdraw_booking_request(
        &self,
        subject: &Subject,
        id: i64,
    ) -> Result<BookingRow> {
        let mut row = self.booking_request(subject, id).await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let request = raw_request(&mut tx, subject, id).await?;
        match request.state.as_str() {
            "pending" => {
                check_unsent(&request)?;
                sqlx::query("DELETE FROM booking_requests WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(request = %request.uuid, "booking request withdrawn before sync");
            }
            "refused" => {
                sqlx::query("UPDATE booking_requests SET state = 'dismissed' WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            "confirmed" if request.booking_id.is_some() => return Err(refuse_on_replica()),
            other => return Err(already_answered(other)),
        }
        tx.commit().await?;
        row.state = BookingState::Cancelled;
        Ok(row)
    }

    /// The requests to send at sync.
    pub async fn pending_booking_requests(&self) -> Result<Vec<BookingRequestItem>> {
        Ok(sqlx::query_as(
            "SELECT uuid AS id, resource_uuid AS resource, start_ms, end_ms, title, \
             experiment_uuid AS experiment, device_at \
             FROM booking_requests WHERE state = 'pending' AND kind = 'new' ORDER BY booking_requests.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The changes of lab bookings to send at sync.
    pub async fn pending_booking_changes(&self) -> Result<Vec<BookingChangeItem>> {
        let rows: Vec<(String, i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT uuid, target_booking_id, kind, start_ms, end_ms, device_at \
             FROM booking_requests WHERE state = 'pending' AND kind != 'new' \
             AND target_booking_id IS NOT NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, booking, action, start_ms, end_ms, device_at)| {
                let is_move = action == "move";
                BookingChangeItem {
                    id,
                    booking,
                    action,
                    start_ms: is_move.then_some(start_ms),
                    end_ms: is_move.then_some(end_ms),
                    device_at,
                }
            })
            .collect())
    }

    /// Like [`Store::mark_booking_requests_sent`], for changes of lab bookings.
    pub async fn mark_booking_changes_sent(
        &self,
        changes: &[BookingChangeItem],
        sent: bool,
    ) -> Result<()> {
        self.mark_sent(changes.iter().map(|c| c.id.as_str()), sent)
            .await
    }

    /// On a field replica: asks the lab server to cancel, move, approve or refuse one of its
    /// bookings. Checked now with the rules of the change made online, against the bookings
    /// and rules as last synced (a clash or a missing right is told at once), then kept as a
    /// request, sent at the next sync. A change asked for again before it is sent replaces the
    /// previous one (a move then a cancellation leaves the cancellation). Answers the
    /// booking, shown with the change pending.
    pub(crate) async fn request_booking_change(
        &self,
        subject: &Subject,
        booking_id: i64,
        action: BookingAction,
    ) -> Result<BookingRow> {
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.now_ms();
        let (start, end) = match action {
            BookingAction::Move { start_ms, end_ms } => {
                self.check_move(
                    &mut tx,
                    subject,
                    booking_id,
                    Some(start_ms),
                    Some(end_ms),
                    now,
                    &zone,
                )
                .await?
            }
            other => {
                self.check_close(&mut tx, subject, booking_id, other.closes_to(), now)
                    .await?;
                sqlx::query_as("SELECT start_ms, end_ms FROM bookings WHERE id = ?")
                    .bind(booking_id)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        let earlier: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, sent_at FROM booking_requests WHERE target_booking_id = ? \
             AND user_id = ? AND state = 'pending'",
        )
        .bind(booking_id)
        .bind(subject.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        match earlier {
            Some((_, Some(_))) => {
                return Err(StoreError::Conflict(
                    "a change of this booking was sent to the lab server and its answer has not \
                     arrived yet; ask again once the next sync brings the answer"
                        .into(),
                ));
            }
            Some((id, None)) => {
                sqlx::query(
                    "UPDATE booking_requests SET kind = ?, start_ms = ?, end_ms = ?, device_at = ? \
                     WHERE id = ?",
                )
                .bind(action.as_str())
                .bind(start)
                .bind(end)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO booking_requests (uuid, resource_uuid, user_id, start_ms, end_ms, \
                     title, device_at, state, kind, target_booking_id) \
                     SELECT ?, e.uuid, ?, ?, ?, b.title, ?, 'pending', ?, b.id \
                     FROM bookings b JOIN entities e ON e.id = b.entity_id WHERE b.id = ?",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(subject.user_id)
                .bind(start)
                .bind(end)
                .bind(now)
                .bind(action.as_str())
                .bind(booking_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        tracing::info!(
            booking = booking_id,
            action = action.as_str(),
            "change of a lab booking requested"
        );
        self.booking(subject, booking_id).await
    }

    /// On a field replica: marks the lab's bookings that have a change asked for here and not
    /// yet answered (by the subject).
    pub(crate) async fn attach_booking_changes(
        &self,
        subject: &Subject,
        rows: &mut [BookingRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let changes: Vec<(i64, i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT target_booking_id, id, uuid, kind, start_ms, end_ms FROM booking_requests \
             WHERE state = 'pending' AND kind != 'new' AND user_id = ? \
             AND target_booking_id IS NOT NULL",
        )
        .bind(subject.user_id)
        .fetch_all(&self.pool)
        .await?;
        for (target, request_id, uuid, action, start_ms, end_ms) in changes {
            for row in rows
                .iter_mut()
                .filter(|r| r.id == target && r.request.is_none())
            {
                row.change = Some(PendingChange {
                    request_id,
                    uuid: uuid.clone(),
                    action: action.clone(),
                    start_ms,
                    end_ms,
                });
            }
        }
        Ok(())
    }

    /// Notes that a sync is sending these requests (see [`check_unsent`]), or, with
    /// `sent: false`, that the server did not take them (it is older than booking requests).
    pub async fn mark_booking_requests_sent(
        &self,
        requests: &[BookingRequestItem],
        sent: bool,
    ) -> Result<()> {
        self.mark_sent(requests.iter().map(|r| r.id.as_str()), sent)
            .await
    }

    /// Stamps (or, with `sent: false`, clears) `sent_at` of the pending rows of
    /// `booking_requests` with these ids, new bookings and changes alike, in one transaction.
    async fn mark_sent(&self, ids: impl Iterator<Item = &str>, sent: bool) -> Result<()> {
        let now = sent.then(|| self.now_ms());
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for id in ids {
            sqlx::query(
                "UPDATE booking_requests SET sent_at = ? WHERE uuid = ? AND state = 'pending'",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the server's answer on the replica, in one transaction: each request sent is
    /// marked confirmed or refused (with the reason), and the server's bookings and rules of
    /// the resources held here replace the mirrored ones. `user_id` is the replica's user.
    pub async fn apply_booking_answer(
        &self,
        user_id: i64,
        answer: &BookingAnswer,
    ) -> Result<RequestTally> {
        let now = self.now_ms();
        let mut tally = RequestTally::default();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for outcome in answer.outcomes.iter().chain(&answer.change_outcomes) {
            let (state, reason) = match outcome.outcome {
                BookingOutcomeKind::Booked => ("confirmed", None),
                BookingOutcomeKind::Refused => (
                    "refused",
                    Some(
                        outcome
                            .reason
                            .clone()
                            .unwrap_or_else(|| "refused by the lab server".into()),
                    ),
                ),
            };
            let done = sqlx::query(
                "UPDATE booking_requests SET state = ?, booking_id = ?, reason = ?, reason_code = ?, \
                 decided_at = ? WHERE uuid = ? AND state = 'pending'",
            )
            .bind(state)
            .bind(outcome.booking)
            .bind(reason)
            .bind(&outcome.code)
            .bind(now)
            .bind(&outcome.id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                match outcome.outcome {
                    BookingOutcomeKind::Booked => tally.confirmed += 1,
                    BookingOutcomeKind::Refused => tally.refused += 1,
                }
            }
        }
        for user in &answer.users {
            sqlx::query(
                "INSERT INTO users (id, email, firstname, lastname, is_sysadmin, created_at) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET firstname = excluded.firstname, lastname = excluded.lastname",
            )
            .bind(user.id)
            .bind(&user.email)
            .bind(&user.firstname)
            .bind(&user.lastname)
            .bind(user.is_sysadmin)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for mirrored in &answer.rules {
            let Some(entity_id) = local_id(&mut tx, &mirrored.resource).await? else {
                continue;
            };
            let rules = &mirrored.rules;
            let canbook = mirrored
                .canbook
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| invalid("canbook", e.to_string()))?;
            sqlx::query(
                "INSERT INTO booking_rules (entity_id, is_bookable, can_overlap, max_minutes, max_slots, \
                 window_days, is_cancellable, cancel_minutes, needs_approval, canbook, updated_at, updated_by) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (entity_id) DO UPDATE SET is_bookable = excluded.is_bookable, \
                 can_overlap = excluded.can_overlap, max_minutes = excluded.max_minutes, \
                 max_slots = excluded.max_slots, window_days = excluded.window_days, \
                 is_cancellable = excluded.is_cancellable, cancel_minutes = excluded.cancel_minutes, \
                 needs_approval = excluded.needs_approval, canbook = excluded.canbook, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
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
            .bind(canbook)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        // Every row of `bookings` on a replica is a copy of the server's (requests live in
        // `booking_requests`), so the copy is replaced whole.
        sqlx::query("DELETE FROM bookings")
            .execute(&mut *tx)
            .await?;
        for booking in &answer.bookings {
            let Some(entity_id) = local_id(&mut tx, &booking.resource).await? else {
                continue;
            };
            let experiment_id = match &booking.experiment {
                Some(uuid) => local_id(&mut tx, uuid).await?,
                None => None,
            };
            let state = if booking.state == "pending" {
                "pending"
            } else {
                "confirmed"
            };
            sqlx::query(
                "INSERT INTO bookings (id, entity_id, user_id, start_ms, end_ms, title, experiment_id, \
                 state, created_at, modified_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                 WHERE EXISTS (SELECT 1 FROM users WHERE id = ?) AND ? > ?",
            )
            .bind(booking.id)
            .bind(entity_id)
            .bind(booking.user_id)
            .bind(booking.start_ms)
            .bind(booking.end_ms)
            .bind(&booking.title)
            .bind(experiment_id)
            .bind(state)
            .bind(booking.created_at)
            .bind(booking.modified_at)
            .bind(booking.user_id)
            .bind(booking.end_ms)
            .bind(booking.start_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(tally)
    }
}

/// The outcome already recorded for a request id sent by this device, if any; the same id from
/// another device is refused without revealing anything.
async fn recorded_outcome(
    conn: &mut SqliteConnection,
    id: &str,
    device: &Device,
) -> Result<Option<BookingOutcome>> {
    let Some(row) = sqlx::query(
        "SELECT device_id, outcome, booking_id, reason, reason_code \
         FROM booking_request_outcomes WHERE request_uuid = ?",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let device_id: i64 = row.try_get(0)?;
    if device_id != device.id {
        return Ok(Some(refused(
            id,
            "conflict",
            "this request id was already used by another device; ask again".into(),
        )));
    }
    let outcome: String = row.try_get(1)?;
    Ok(Some(BookingOutcome {
        id: id.to_owned(),
        outcome: if outcome == "booked" {
            BookingOutcomeKind::Booked
        } else {
            BookingOutcomeKind::Refused
        },
        booking: row.try_get(2)?,
        reason: row.try_get(3)?,
        code: row.try_get(4)?,
    }))
}

/// Records a decided request in the deciding transaction. `times`: the device's clock when
/// asked, the server's when received. `action`: the change decided (`None`: a new booking).
async fn record_outcome(
    conn: &mut SqliteConnection,
    subject: &Subject,
    device: &Device,
    outcome: &BookingOutcome,
    (device_at, received_at): (i64, i64),
    action: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO booking_request_outcomes (request_uuid, device_id, user_id, outcome, \
         booking_id, reason, reason_code, device_at, received_at, action) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&outcome.id)
    .bind(device.id)
    .bind(subject.user_id)
    .bind(match outcome.outcome {
        BookingOutcomeKind::Booked => "booked",
        BookingOutcomeKind::Refused => "refused",
    })
    .bind(outcome.booking)
    .bind(&outcome.reason)
    .bind(&outcome.code)
    .bind(device_at)
    .bind(received_at)
    .bind(action)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn local_id(conn: &mut SqliteConnection, uuid: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
        .bind(uuid)
        .fetch_optional(&mut *conn)
        .await?)
}

/// Removes the mirrored bookings that name a local entity about to be deleted on a replica
/// (their foreign keys would forbid the deletion); the next sync brings back what remains.
pub(crate) async fn forget_mirrored(conn: &mut SqliteConnection, entity_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM bookings WHERE entity_id = ?")
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE bookings SET experiment_id = NULL WHERE experiment_id = ?")
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// On the lab server: decides the requests a device sent, each in its own write
    /// transaction with the same rules as a booking made online, and records each outcome
    /// with the request id in that transaction. A request id already decided for this device
    /// answers the recorded outcome (nothing is booked twice).
    pub async fn decide_booking_requests(
        &self,
        subject: &Subject,
        device: &Device,
        requests: &[BookingRequestItem],
    ) -> Result<Vec<BookingOutcome>> {
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(
                self.decide_booking_request(subject, device, request)
                    .await?,
            );
        }
        Ok(outcomes)
    }

    /// What a request names, resolved on the server: the resource and experiment by UUID.
    async fn resolve_request(
        &self,
        subject: &Subject,
        request: &BookingRequestItem,
    ) -> Result<(NewBooking, String)> {
        let title = check_title(&request.title)?;
        let entity_id: i64 = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
            .bind(&request.resource)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("resource"))?;
        let experiment_id = match &request.experiment {
            None => None,
            Some(uuid) => match self.entity_by_uuid(subject, uuid).await {
                Ok(row) if row.kind == EntityKind::Experiment => Some(row.id),
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    return Err(invalid(
                        "experiment",
                        "the linked experiment is not on the lab server, or you may not read it",
                    ));
                }
                Err(other) => return Err(other),
            },
        };
        Ok((
            NewBooking {
                entity_id,
                start_ms: request.start_ms,
                end_ms: request.end_ms,
                title: title.clone(),
                experiment_id,
            },
            title,
        ))
    }

    async fn decide_booking_request(
        &self,
        subject: &Subject,
        device: &Device,
        request: &BookingRequestItem,
    ) -> Result<BookingOutcome> {
        if uuid::Uuid::parse_str(&request.id).is_err() {
            return Ok(refused(
                &request.id,
                "invalid",
                "id: a booking request needs a UUID".into(),
            ));
        }
        // Reads only; their refusal is recorded below like any other.
        let resolved = self.resolve_request(subject, request).await;
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(recorded) = recorded_outcome(&mut tx, &request.id, device).await? {
            return Ok(recorded);
        }
        let attempt = match resolved {
            Ok((new, title)) => {
                self.insert_booking(&mut tx, subject, &new, &title, &zone)
                    .await
            }
            Err(error) => Err(error),
        };
        let outcome = match attempt {
            Ok((booking, _)) => BookingOutcome {
                id: request.id.clone(),
                outcome: BookingOutcomeKind::Booked,
                booking: Some(booking),
                reason: None,
                code: None,
            },
            Err(error) => match refusal(&error) {
                Some((code, reason)) => refused(&request.id, code, reason),
                None => return Err(error),
            },
        };
        let received_at = self.now_ms();
        record_outcome(
            &mut tx,
            subject,
            device,
            &outcome,
            (request.device_at, received_at),
            None,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            request = %request.id,
            device = %device.uuid,
            user = subject.user_id,
            booking = outcome.booking,
            code = outcome.code.as_deref().unwrap_or(""),
            "booking request decided"
        );
        Ok(outcome)
    }

    /// On the lab server: decides the changes of its bookings a device sent (cancel, move,
    /// approve, refuse), each in its own write transaction with exactly the checks and
    /// permission rules of the same change made online, and records each outcome with the
    /// request id in that transaction. A request id already decided for this device answers
    /// the recorded outcome (nothing is changed twice).
    pub async fn decide_booking_changes(
        &self,
        subject: &Subject,
        device: &Device,
        changes: &[BookingChangeItem],
    ) -> Result<Vec<BookingOutcome>> {
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            outcomes.push(self.decide_booking_change(subject, device, change).await?);
        }
        Ok(outcomes)
    }

    async fn decide_booking_change(
        &self,
        subject: &Subject,
        device: &Device,
        change: &BookingChangeItem,
    ) -> Result<BookingOutcome> {
        if uuid::Uuid::parse_str(&change.id).is_err() {
            return Ok(refused(
                &change.id,
                "invalid",
                "id: a booking request needs a UUID".into(),
            ));
        }
        let action = BookingAction::parse(&change.action, change.start_ms, change.end_ms);
        let zone = self.instance_zone().await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(recorded) = recorded_outcome(&mut tx, &change.id, device).await? {
            return Ok(recorded);
        }
        let attempt = match action {
            Some(action) => {
                self.apply_booking_action(&mut tx, subject, change.booking, action, &zone)
                    .await
            }
            None => Err(invalid(
                "action",
                format!(
                    "unknown change {:?}: expected cancel, move (with start_ms and end_ms), approve or refuse",
                    change.action
                ),
            )),
        };
        let outcome = match attempt {
            Ok(()) => BookingOutcome {
                id: change.id.clone(),
                outcome: BookingOutcomeKind::Booked,
                booking: Some(change.booking),
                reason: None,
                code: None,
            },
            Err(error) => match refusal(&error) {
                Some((code, reason)) => refused(&change.id, code, reason),
                None => return Err(error),
            },
        };
        let received_at = self.now_ms();
        record_outcome(
            &mut tx,
            subject,
            device,
            &outcome,
            (change.device_at, received_at),
            Some(&change.action),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            request = %change.id,
            device = %device.uuid,
            user = subject.user_id,
            booking = change.booking,
            action = %change.action,
            code = outcome.code.as_deref().unwrap_or(""),
            "booking change decided"
        );
        Ok(outcome)
    }

    /// On the lab server: the bookings (active, ended less than 62 days ago or later) and
    /// booking rules of the resources the subject may read, and the bookers, for a replica's
    /// mirror. Experiments are named only when the subject may read them.
    pub async fn booking_mirror(&self, subject: &Subject) -> Result<BookingAnswer> {
        let readable = access_sql::readable_by(subject);
        let since = self.now_ms() - MIRROR_PAST_MS;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT b.id, e.uuid, b.user_id, b.start_ms, b.end_ms, b.title, \
             (SELECT e.uuid FROM entities e WHERE e.id = b.experiment_id AND e.state != 3 AND {readable}), \
             b.state, b.created_at, b.modified_at \
             FROM bookings b CROSS JOIN entities e ON e.id = b.entity_id \
             WHERE {readable} AND e.state != 3 AND b.state IN ('confirmed', 'pending') AND b.end_ms > ? \
             ORDER BY b.start_ms, b.id LIMIT 20000"
        )))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut bookings = Vec::with_capacity(rows.len());
        for row in &rows {
            bookings.push(MirroredBooking {
                id: row.try_get(0)?,
                resource: row.try_get(1)?,
                user_id: row.try_get(2)?,
                start_ms: row.try_get(3)?,
                end_ms: row.try_get(4)?,
                title: row.try_get(5)?,
                experiment: row.try_get(6)?,
                state: row.try_get(7)?,
                created_at: row.try_get(8)?,
                modified_at: row.try_get(9)?,
            });
        }
        // The rules first, then their entries (`CROSS JOIN` keeps that order): without table
        // statistics SQLite would otherwise read every entry of the lab to find the few with
        // rules, ~10 ms on 10,000 entries at every sync (issue #5: a sync with nothing to do).
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.uuid, r.is_bookable, r.can_overlap, r.max_minutes, r.max_slots, r.window_days, \
             r.is_cancellable, r.cancel_minutes, r.needs_approval, coalesce(r.canbook, c.default_canbook) \
             FROM booking_rules r CROSS JOIN entities e ON e.id = r.entity_id \
             LEFT JOIN categories c ON c.id = e.category_id WHERE {readable} AND e.state != 3"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut rules = Vec::with_capacity(rows.len());
        for row in &rows {
            let canbook: Option<String> = row.try_get(9)?;
            rules.push(MirroredRules {
                resource: row.try_get(0)?,
                rules: BookingRules {
                    is_bookable: row.try_get(1)?,
                    can_overlap: row.try_get(2)?,
                    max_minutes: row.try_get(3)?,
                    max_slots: row.try_get(4)?,
                    window_days: row.try_get(5)?,
                    is_cancellable: row.try_get(6)?,
                    cancel_minutes: row.try_get(7)?,
                    needs_approval: row.try_get(8)?,
                },
                canbook: canbook.and_then(|t| serde_json::from_str::<AccessRule>(&t).ok()),
            });
        }
        let mut bookers: Vec<i64> = bookings.iter().map(|b| b.user_id).collect();
        bookers.sort_unstable();
        bookers.dedup();
        let users: Vec<RefUser> = if bookers.is_empty() {
            Vec::new()
        } else {
            let list: Vec<String> = bookers.iter().map(i64::to_string).collect();
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, email, firstname, lastname, is_sysadmin FROM users WHERE id IN ({})",
                list.join(",")
            )))
            .fetch_all(&self.pool)
            .await?
        };
        Ok(BookingAnswer {
            outcomes: Vec::new(),
            change_outcomes: Vec::new(),
            bookings,
            rules,
            users,
        })
    }
}
