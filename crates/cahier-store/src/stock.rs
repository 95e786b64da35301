//! Stock of resources: enabling tracking, recording consumption, restocking and corrections
//! (all document changes through [`Store::update_entity`], so they sync, merge by summing and
//! obey the access policy and locks), the projection rows that lists and the "to reorder" page
//! read, and the queries over them. Never loads a document to answer a list.

use crate::sync::proto::SnapshotStock;
use crate::{Result, Store, StoreError};
use cahier_core::document::EntityOp;
use cahier_core::stock::{Stock, StockEvent, StockKind};
use cahier_core::{EntityKind, EntityPatch, Subject};
use serde::Serialize;
use sqlx::SqliteConnection;
use std::collections::HashSet;

/// A resource's stock as projected (`entities.stock_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StockRow {
    /// Unit of the quantity.
    pub unit: String,
    /// Current quantity, thousandths (may be below zero).
    pub quantity_milli: i64,
    /// Reorder threshold, thousandths.
    pub threshold_milli: Option<i64>,
}

impl StockRow {
    /// Whether the quantity is at or below the threshold.
    pub fn is_low(&self) -> bool {
        self.threshold_milli
            .is_some_and(|threshold| self.quantity_milli <= threshold)
    }

    /// Whether more was recorded as used than there was.
    pub fn is_negative(&self) -> bool {
        self.quantity_milli < 0
    }
}

/// One stock event as projected, with names resolved for pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct StockEventRow {
    /// Stable id.
    pub event_id: String,
    /// `consume`, `restock` or `adjust`.
    pub kind: String,
    /// Signed change, thousandths.
    pub delta_milli: i64,
    /// Unit the event was recorded in.
    pub unit: String,
    /// Who recorded it.
    pub user_id: i64,
    /// Their name, when this database knows the user.
    pub user_name: Option<String>,
    /// Device time, ms.
    pub at: i64,
    /// When this database first stored it, ms (on the lab instance: server receive time).
    pub received_at: i64,
    /// UUID of the experiment it was used for.
    pub experiment_uuid: Option<String>,
    /// That experiment's id, when the reader may read it.
    pub experiment_id: Option<i64>,
    /// Its title, when the reader may read it.
    pub experiment_title: Option<String>,
    /// Note.
    pub note: String,
}

/// A resource at or below its threshold, for the "to reorder" page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReorderRow {
    /// Resource id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Unit.
    pub unit: String,
    /// Quantity, thousandths.
    pub quantity_milli: i64,
    /// Threshold, thousandths.
    pub threshold_milli: i64,
    /// Category name.
    pub category_title: Option<String>,
}

/// What to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStockEvent {
    /// The action.
    pub kind: StockKind,
    /// The amount as written (positive for consume and restock, signed for adjust), thousandths.
    pub amount_milli: i64,
    /// Unit it is written in; must be the resource's unit. `None`: the resource's unit.
    pub unit: Option<String>,
    /// Integer id of the experiment it was used for.
    pub experiment: Option<i64>,
    /// Free note.
    pub note: String,
}

fn invalid(field: &str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl Store {
    /// The resource's stock, if it tracks one (`Ok(None)` otherwise). Readers may see it.
    pub async fn stock(&self, subject: &Subject, id: i64) -> Result<Option<StockRow>> {
        self.entity(subject, id).await?;
        Ok(sqlx::query_as(
            "SELECT stock_unit AS unit, stock_quantity AS quantity_milli, stock_threshold AS threshold_milli \
             FROM entities WHERE id = ? AND stock_unit IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The resource's stock events, newest first (device time).
    pub async fn stock_events(&self, subject: &Subject, id: i64) -> Result<Vec<StockEventRow>> {
        self.entity(subject, id).await?;
        let sql = format!(
            "SELECT s.event_id, s.kind, s.delta AS delta_milli, s.unit, s.user_id, \
             (SELECT u.firstname || ' ' || u.lastname FROM users u WHERE u.id = s.user_id) AS user_name, \
             s.at, s.received_at, s.experiment_uuid, e.id AS experiment_id, e.title AS experiment_title, s.note \
             FROM entity_stock_events s \
             LEFT JOIN entities e ON e.uuid = s.experiment_uuid AND e.state != 3 AND {} \
             WHERE s.entity_id = ? ORDER BY s.at DESC, s.event_id DESC",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Enables stock tracking on a resource or changes its unit or threshold (thousandths;
    /// `Some(None)` clears it). With `initial`, also records that quantity as an adjustment
    /// (in the same version). Needs write access.
    pub async fn set_stock(
        &self,
        subject: &Subject,
        id: i64,
        unit: Option<String>,
        threshold_milli: Option<Option<i64>>,
        initial_milli: Option<i64>,
    ) -> Result<()> {
        let row = self.entity(subject, id).await?;
        if row.kind != EntityKind::Resource {
            return Err(invalid("stock", "only resources track stock"));
        }
        let mut ops = vec![EntityOp::SetStock {
            unit: unit.clone(),
            threshold_milli,
        }];
        if let Some(initial) = initial_milli.filter(|q| *q != 0) {
            let unit = match unit {
                Some(unit) => unit,
                None => self
                    .stock(subject, id)
                    .await?
                    .map(|s| s.unit)
                    .unwrap_or_default(),
            };
            ops.push(EntityOp::RecordStock(StockEvent {
                id: self.new_event_id(),
                kind: StockKind::Adjust,
                delta_milli: initial,
                unit,
                by: subject.user_id,
                at_ms: self.now_ms(),
                experiment: None,
                note: String::new(),
            }));
        }
        let patch = EntityPatch {
            ops,
            ..Default::default()
        };
        self.update_entity(subject, id, None, &patch, "stock settings")
            .await?;
        Ok(())
    }

    /// Records consumption, restocking or a correction. Needs write access; the resource must
    /// track stock, the unit must be its unit, and the experiment (if any) one the subject may
    /// read. Returns the event's id.
    pub async fn record_stock(
        &self,
        subject: &Subject,
        id: i64,
        new: NewStockEvent,
    ) -> Result<String> {
        let row = self.entity(subject, id).await?;
        if row.kind != EntityKind::Resource {
            return Err(invalid("stock", "only resources track stock"));
        }
        let Some(stock) = self.stock(subject, id).await? else {
            return Err(invalid(
                "stock",
                "this resource does not track stock yet; enable tracking with a unit first",
            ));
        };
        let delta_milli = new
            .kind
            .delta(new.amount_milli)
            .map_err(|m| invalid("amount", m))?;
        let experiment = match new.experiment {
            Some(experiment_id) => {
                let experiment = self
                    .entity_of_kind(subject, EntityKind::Experiment, experiment_id)
                    .await
                    .map_err(|error| match error {
                        StoreError::NotFound(_) => invalid(
                            "experiment",
                            format!(
                                "experiment {experiment_id} does not exist, or you cannot read it"
                            ),
                        ),
                        other => other,
                    })?;
                Some(experiment.uuid.parse().map_err(|_| {
                    StoreError::Document(cahier_core::DocError::Damaged("entity uuid".into()))
                })?)
            }
            None => None,
        };
        let event_id = self.new_event_id();
        let event = StockEvent {
            id: event_id.clone(),
            kind: new.kind,
            delta_milli,
            unit: new.unit.unwrap_or(stock.unit),
            by: subject.user_id,
            at_ms: self.now_ms(),
            experiment,
            note: new.note,
        };
        let patch = EntityPatch {
            ops: vec![EntityOp::RecordStock(event)],
            ..Default::default()
        };
        self.update_entity(subject, id, None, &patch, new.kind.as_str())
            .await?;
        Ok(event_id)
    }

    /// Resources of `team_id` the subject may read whose quantity is at or below their
    /// threshold, lowest first relative to it.
    pub async fn to_reorder(&self, subject: &Subject, team_id: i64) -> Result<Vec<ReorderRow>> {
        // The WHERE repeats the partial index's condition (migration 11).
        let sql = format!(
            "SELECT e.id, e.title, e.stock_unit AS unit, e.stock_quantity AS quantity_milli, \
             e.stock_threshold AS threshold_milli, c.title AS category_title \
             FROM entities e LEFT JOIN categories c ON c.id = e.category_id \
             WHERE e.team_id = ? AND e.stock_threshold IS NOT NULL AND e.stock_quantity <= e.stock_threshold \
             AND e.kind = 'resource' AND e.state = 1 AND {} \
             ORDER BY e.stock_quantity - e.stock_threshold, e.title",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(team_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The stock of those of `ids` that track one (for API list rows; the caller has already
    /// checked that the rows are readable).
    pub async fn stock_among(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, StockRow>> {
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let sql = format!(
            "SELECT id, stock_unit, stock_quantity, stock_threshold FROM entities \
             WHERE id IN ({}) AND stock_unit IS NOT NULL",
            list.join(",")
        );
        let rows: Vec<(i64, String, i64, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, unit, quantity_milli, threshold_milli)| {
                (
                    id,
                    StockRow {
                        unit,
                        quantity_milli,
                        threshold_milli,
                    },
                )
            })
            .collect())
    }

    /// Among `ids`, those whose stock is at or below its threshold (for list badges).
    pub async fn low_stock_among(&self, ids: &[i64]) -> Result<HashSet<i64>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let list: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let sql = format!(
            "SELECT id FROM entities WHERE id IN ({}) AND stock_threshold IS NOT NULL \
             AND stock_quantity <= stock_threshold",
            list.join(",")
        );
        let rows: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    fn new_event_id(&self) -> String {
        // Time first, so ids sort roughly by creation; random so replicas never collide.
        format!(
            "{:012x}{:020x}",
            self.now_ms(),
            rand::random::<u128>() >> 48
        )
    }
}

/// Writes the stock columns and adds the events not yet projected. Part of
/// [`crate::projection::write`]; `now` becomes the new events' `received_at`.
pub(crate) async fn write_projection(
    conn: &mut SqliteConnection,
    entity_id: i64,
    stock: Option<&Stock>,
    now: i64,
) -> std::result::Result<(), sqlx::Error> {
    let Some(stock) = stock else {
        sqlx::query(
            "UPDATE entities SET stock_unit = NULL, stock_quantity = NULL, stock_threshold = NULL \
             WHERE id = ? AND stock_unit IS NOT NULL",
        )
        .bind(entity_id)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    };
    sqlx::query(
        "UPDATE entities SET stock_unit = ?, stock_quantity = ?, stock_threshold = ? WHERE id = ?",
    )
    .bind(&stock.unit)
    .bind(stock.quantity_milli)
    .bind(stock.threshold_milli)
    .bind(entity_id)
    .execute(&mut *conn)
    .await?;
    // Events are only ever added: the same count means the same set, nothing to write.
    let projected: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM entity_stock_events WHERE entity_id = ?")
            .bind(entity_id)
            .fetch_one(&mut *conn)
            .await?;
    if usize::try_from(projected).ok() == Some(stock.events.len()) {
        return Ok(());
    }
    for event in &stock.events {
        insert_event(conn, entity_id, event, now).await?;
    }
    Ok(())
}

async fn insert_event(
    conn: &mut SqliteConnection,
    entity_id: i64,
    event: &StockEvent,
    received_at: i64,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO entity_stock_events (entity_id, event_id, kind, delta, unit, user_id, at, \
         experiment_uuid, note, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (entity_id, event_id) DO NOTHING",
    )
    .bind(entity_id)
    .bind(&event.id)
    .bind(event.kind.as_str())
    .bind(event.delta_milli)
    .bind(&event.unit)
    .bind(event.by)
    .bind(event.at_ms)
    .bind(event.experiment.map(|e| e.to_string()))
    .bind(&event.note)
    .bind(received_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The stock rows of an entity for a pull snapshot (`None` when it does not track stock).
pub(crate) async fn snapshot(
    conn: &mut SqliteConnection,
    entity_id: i64,
) -> std::result::Result<Option<SnapshotStock>, sqlx::Error> {
    let columns: Option<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT stock_unit, stock_quantity, stock_threshold FROM entities \
         WHERE id = ? AND stock_unit IS NOT NULL",
    )
    .bind(entity_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((unit, quantity_milli, threshold_milli)) = columns else {
        return Ok(None);
    };
    let events = sqlx::query_as(
        "SELECT event_id, kind, delta, unit, user_id, at, experiment_uuid, note, received_at \
         FROM entity_stock_events WHERE entity_id = ? ORDER BY at, event_id",
    )
    .bind(entity_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(SnapshotStock {
        unit,
        quantity_milli,
        threshold_milli,
        events,
    }))
}

/// A replica writes the server's stock rows; the server's receive time replaces the local one
/// of events the replica recorded itself.
pub(crate) async fn write_snapshot(
    conn: &mut SqliteConnection,
    entity_id: i64,
    stock: Option<&SnapshotStock>,
) -> std::result::Result<(), sqlx::Error> {
    let (unit, quantity, threshold) = match stock {
        Some(s) => (
            Some(s.unit.as_str()),
            Some(s.quantity_milli),
            s.threshold_milli,
        ),
        None => (None, None, None),
    };
    sqlx::query(
        "UPDATE entities SET stock_unit = ?, stock_quantity = ?, stock_threshold = ? WHERE id = ?",
    )
    .bind(unit)
    .bind(quantity)
    .bind(threshold)
    .bind(entity_id)
    .execute(&mut *conn)
    .await?;
    write_snapshot_events(conn, entity_id, stock).await
}

/// The stock events of a pull snapshot (the stock columns are written by the caller).
pub(crate) async fn write_snapshot_events(
    conn: &mut SqliteConnection,
    entity_id: i64,
    stock: Option<&SnapshotStock>,
) -> std::result::Result<(), sqlx::Error> {
    for event in stock.map(|s| s.events.as_slice()).unwrap_or_default() {
        sqlx::query(
            "INSERT INTO entity_stock_events (entity_id, event_id, kind, delta, unit, user_id, at, \
             experiment_uuid, note, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (entity_id, event_id) DO UPDATE SET received_at = excluded.received_at",
        )
        .bind(entity_id)
        .bind(&event.event_id)
        .bind(&event.kind)
        .bind(event.delta)
        .bind(&event.unit)
        .bind(event.user_id)
        .bind(event.at)
        .bind(&event.experiment_uuid)
        .bind(&event.note)
        .bind(event.received_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Checks the stock part of a pushed document: events are only added, each new one names the
/// pushing user, and the counter still equals the sum of the events (a change that moves the
/// counter without an event, or the reverse, is refused).
pub(crate) fn check_pushed(
    before: Option<&Stock>,
    after: Option<&Stock>,
    user_id: i64,
) -> Result<()> {
    let Some(after) = after else {
        return match before {
            Some(_) => Err(invalid(
                "stock",
                "the stock of a resource cannot be removed",
            )),
            None => Ok(()),
        };
    };
    if !after.is_consistent() {
        return Err(invalid(
            "stock",
            "the stock quantity does not match its events",
        ));
    }
    let known: HashSet<&str> = before
        .map(|b| b.events.iter().map(|e| e.id.as_str()).collect())
        .unwrap_or_default();
    if known.len() > after.events.len()
        || before.is_some_and(|b| {
            b.events
                .iter()
                .any(|e| !after.events.iter().any(|a| a.id == e.id && a == e))
        })
    {
        return Err(invalid("stock", "recorded stock events cannot be changed"));
    }
    if after
        .events
        .iter()
        .any(|e| !known.contains(e.id.as_str()) && e.by != user_id)
    {
        return Err(StoreError::Forbidden(
            "stock events must be recorded by the pushing user".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, delta_milli: i64, by: i64) -> StockEvent {
        StockEvent {
            id: id.into(),
            kind: if delta_milli < 0 {
                StockKind::Consume
            } else {
                StockKind::Restock
            },
            delta_milli,
            unit: "mL".into(),
            by,
            at_ms: 1,
            experiment: None,
            note: String::new(),
        }
    }

    fn stock(events: Vec<StockEvent>, quantity_milli: i64) -> Stock {
        Stock {
            unit: "mL".into(),
            threshold_milli: None,
            quantity_milli,
            events,
        }
    }

    #[test]
    fn a_push_may_only_add_its_own_events_with_the_counter_in_step() {
        let before = stock(vec![event("a", 5_000, 1)], 5_000);
        // Adding one's own event, counter in step: accepted.
        let after = stock(vec![event("a", 5_000, 1), event("b", -1_000, 2)], 4_000);
        assert!(check_pushed(Some(&before), Some(&after), 2).is_ok());
        // Enabling tracking in the push itself: accepted, with the pusher's own events only.
        let own = stock(vec![event("b", 2_000, 2)], 2_000);
        assert!(check_pushed(None, Some(&own), 2).is_ok());
        assert!(check_pushed(None, Some(&after), 2).is_err());
        // The counter moved without an event.
        let moved = stock(vec![event("a", 5_000, 1)], 9_000);
        assert!(matches!(
            check_pushed(Some(&before), Some(&moved), 2),
            Err(StoreError::Invalid { .. })
        ));
        // An event in someone else's name.
        let forged = stock(vec![event("a", 5_000, 1), event("b", -1_000, 3)], 4_000);
        assert!(matches!(
            check_pushed(Some(&before), Some(&forged), 2),
            Err(StoreError::Forbidden(_))
        ));
        // A recorded event rewritten (counter kept in step), or dropped, or the stock removed.
        let rewritten = stock(vec![event("a", 9_000, 1)], 9_000);
        assert!(check_pushed(Some(&before), Some(&rewritten), 1).is_err());
        let dropped = stock(vec![], 0);
        assert!(check_pushed(Some(&before), Some(&dropped), 1).is_err());
        assert!(check_pushed(Some(&before), None, 1).is_err());
    }
}
