//! The stock section of a document: unit, threshold, an Automerge counter holding the quantity
//! in thousandths, and the events that moved it.
//!
//! Shape (added without a schema bump: a document without `stock` does not track stock):
//!
//! ```text
//! stock: Map {
//!   unit: Str, threshold: Int (thousandths) | Null,
//!   quantity: Counter (thousandths; every event increments it by its delta),
//!   events: Map<event id, {kind: Str (consume|restock|adjust), delta: Int (thousandths, signed),
//!                          unit: Str, by: Int (user), at: Timestamp (device clock),
//!                          experiment: Str (entity UUID) | Null, note: Str}>
//! }
//! ```
//!
//! Why a counter: increments made on two replicas add up when they merge, where a plain value
//! would keep only one of them. The section is created when tracking is first enabled, so two
//! replicas enabling it offline each create one: the reader then sums the counters and joins
//! the events of every concurrent `stock` map, so nothing recorded on either is lost; new
//! writes go to the map Automerge shows as current.

use super::{DocError, invalid, read_i64, read_str};
use crate::entity::EntityId;
use crate::stock::{MAX_STOCK_NOTE_CHARS, Stock, StockEvent, StockKind, clean_unit};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

/// Enables tracking (creating the section when absent) or changes its unit or threshold.
pub(super) fn set_stock(
    doc: &mut AutoCommit,
    unit: Option<&str>,
    threshold_milli: Option<Option<i64>>,
) -> Result<(), DocError> {
    let unit = unit
        .map(clean_unit)
        .transpose()
        .map_err(|m| invalid("unit", m))?;
    if let Some(Some(threshold)) = threshold_milli
        && threshold < 0
    {
        return Err(invalid("threshold", "a threshold cannot be below zero"));
    }
    let stock = match current_stock_obj(doc)? {
        Some(obj) => obj,
        None => {
            let Some(unit) = &unit else {
                return Err(invalid(
                    "unit",
                    "give the unit the quantity is counted in, like mL, g or units",
                ));
            };
            let obj = doc.put_object(ROOT, "stock", ObjType::Map)?;
            doc.put(&obj, "unit", unit.as_str())?;
            doc.put(&obj, "threshold", ScalarValue::Null)?;
            doc.put(&obj, "quantity", ScalarValue::counter(0))?;
            doc.put_object(&obj, "events", ObjType::Map)?;
            obj
        }
    };
    if let Some(unit) = unit
        && read_str(doc, &stock, "unit").as_deref() != Some(unit.as_str())
    {
        doc.put(&stock, "unit", unit.as_str())?;
    }
    if let Some(threshold) = threshold_milli
        && read_i64(doc, &stock, "threshold") != threshold
    {
        match threshold {
            Some(t) => doc.put(&stock, "threshold", t)?,
            None => doc.put(&stock, "threshold", ScalarValue::Null)?,
        }
    }
    Ok(())
}

/// Records one event: adds it to the list and increments the counter by its delta. The unit
/// must be the stock's unit (no conversion is guessed).
pub(super) fn record_stock(doc: &mut AutoCommit, event: &StockEvent) -> Result<(), DocError> {
    let Some(stock) = current_stock_obj(doc)? else {
        return Err(invalid(
            "stock",
            "this resource does not track stock yet; enable tracking with a unit first",
        ));
    };
    let unit = read_str(doc, &stock, "unit").unwrap_or_default();
    if event.unit.trim() != unit {
        return Err(invalid(
            "unit",
            format!(
                "this resource counts its stock in {unit}, not in {}; give the amount in {unit}",
                event.unit.trim()
            ),
        ));
    }
    let expected_sign_ok = match event.kind {
        StockKind::Consume => event.delta_milli < 0,
        StockKind::Restock => event.delta_milli > 0,
        StockKind::Adjust => event.delta_milli != 0,
    };
    if !expected_sign_ok {
        return Err(invalid("amount", "the amount does not match the action"));
    }
    let note = event.note.trim();
    if note.chars().count() > MAX_STOCK_NOTE_CHARS {
        return Err(invalid(
            "note",
            format!("at most {MAX_STOCK_NOTE_CHARS} characters"),
        ));
    }
    let events = match doc.get(&stock, "events")? {
        Some((Value::Object(ObjType::Map), obj)) => obj,
        _ => return Err(DocError::Damaged("missing stock events".into())),
    };
    if doc.get(&events, event.id.as_str())?.is_some() {
        return Err(invalid("id", "this stock event is already recorded"));
    }
    let entry = doc.put_object(&events, event.id.as_str(), ObjType::Map)?;
    doc.put(&entry, "kind", event.kind.as_str())?;
    doc.put(&entry, "delta", event.delta_milli)?;
    doc.put(&entry, "unit", unit.as_str())?;
    doc.put(&entry, "by", event.by)?;
    doc.put(&entry, "at", ScalarValue::Timestamp(event.at_ms))?;
    match event.experiment {
        Some(experiment) => doc.put(&entry, "experiment", experiment.to_string())?,
        None => doc.put(&entry, "experiment", ScalarValue::Null)?,
    }
    doc.put(&entry, "note", note)?;
    doc.increment(&stock, "quantity", event.delta_milli)?;
    Ok(())
}

/// The `stock` map new writes go to, if tracking is enabled.
fn current_stock_obj(doc: &AutoCommit) -> Result<Option<ObjId>, DocError> {
    Ok(match doc.get(ROOT, "stock")? {
        Some((Value::Object(ObjType::Map), obj)) => Some(obj),
        _ => None,
    })
}

/// Reads the stock, joining every concurrent `stock` map (see the module comment).
pub(super) fn read_stock<D: ReadDoc>(doc: &D) -> Result<Option<Stock>, DocError> {
    let all = doc.get_all(ROOT, "stock")?;
    let maps: Vec<ObjId> = all
        .into_iter()
        .filter_map(|(value, obj)| matches!(value, Value::Object(ObjType::Map)).then_some(obj))
        .collect();
    // `get` answers the winning value, which `get_all` lists last.
    let Some(current) = maps.last() else {
        return Ok(None);
    };
    let mut quantity_milli: i64 = 0;
    let mut events = Vec::new();
    for stock in &maps {
        if let Some((Value::Scalar(value), _)) = doc.get(stock, "quantity")?
            && let ScalarValue::Counter(counter) = value.as_ref()
        {
            quantity_milli = quantity_milli.saturating_add(i64::from(counter));
        }
        if let Some((Value::Object(ObjType::Map), list)) = doc.get(stock, "events")? {
            for id in doc.keys(&list) {
                let Some((Value::Object(ObjType::Map), entry)) = doc.get(&list, id.as_str())?
                else {
                    continue;
                };
                let Some(kind) = read_str(doc, &entry, "kind").and_then(|k| StockKind::parse(&k))
                else {
                    continue;
                };
                events.push(StockEvent {
                    kind,
                    delta_milli: read_i64(doc, &entry, "delta").unwrap_or_default(),
                    unit: read_str(doc, &entry, "unit").unwrap_or_default(),
                    by: read_i64(doc, &entry, "by").unwrap_or_default(),
                    at_ms: read_i64(doc, &entry, "at").unwrap_or_default(),
                    experiment: read_str(doc, &entry, "experiment")
                        .and_then(|s| s.parse::<EntityId>().ok()),
                    note: read_str(doc, &entry, "note").unwrap_or_default(),
                    id,
                });
            }
        }
    }
    events.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.id.cmp(&b.id)));
    Ok(Some(Stock {
        unit: read_str(doc, current, "unit").unwrap_or_default(),
        threshold_milli: read_i64(doc, current, "threshold"),
        quantity_milli,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use crate::document::{CommitMeta, EntityDoc, EntityOp, EntityPatch, NewContent};
    use crate::entity::{EntityId, EntityKind};
    use crate::stock::{StockEvent, StockKind};
    use automerge::ActorId;

    fn meta(n: u8) -> CommitMeta {
        CommitMeta {
            actor: ActorId::from([n; 16]),
            time_ms: 1_700_000_000_000,
            message: "stock".into(),
        }
    }

    fn resource() -> EntityDoc {
        let content = NewContent {
            id: EntityId::new(1_700_000_000_000, [3; 10]),
            kind: EntityKind::Resource,
            created_by: 1,
            created_at_ms: 1_700_000_000_000,
            template: None,
            patch: EntityPatch {
                title: Some("Ethanol 70 %".into()),
                ..Default::default()
            },
            default_date: "2026-11-29".into(),
        };
        EntityDoc::create(&content, &meta(1)).expect("create")
    }

    fn apply(doc: &mut EntityDoc, actor: u8, ops: Vec<EntityOp>) {
        let patch = EntityPatch {
            ops,
            ..Default::default()
        };
        doc.apply(None, &patch, &meta(actor), || ActorId::from([200; 16]))
            .expect("apply");
    }

    fn enable(unit: &str) -> EntityOp {
        EntityOp::SetStock {
            unit: Some(unit.into()),
            threshold_milli: Some(Some(20_000)),
        }
    }

    fn event(id: &str, kind: StockKind, delta_milli: i64, by: i64) -> EntityOp {
        EntityOp::RecordStock(StockEvent {
            id: id.into(),
            kind,
            delta_milli,
            unit: "mL".into(),
            by,
            at_ms: 1_700_000_100_000,
            experiment: None,
            note: String::new(),
        })
    }

    fn merged(a: &mut EntityDoc, b: &mut EntityDoc) {
        a.load_changes(&b.save()).expect("merge");
    }

    #[test]
    fn consumption_on_two_diverged_documents_sums_when_merged() {
        let mut base = resource();
        apply(
            &mut base,
            1,
            vec![enable("mL"), event("e0", StockKind::Adjust, 100_000, 1)],
        );
        let bytes = base.save();
        let mut lab = EntityDoc::load(&bytes).expect("load");
        let mut field = EntityDoc::load(&bytes).expect("load");
        apply(
            &mut lab,
            2,
            vec![event("e1", StockKind::Consume, -2_500, 2)],
        );
        apply(
            &mut field,
            3,
            vec![event("e2", StockKind::Consume, -10_000, 3)],
        );
        apply(&mut field, 3, vec![event("e3", StockKind::Restock, 500, 3)]);

        merged(&mut lab, &mut field);
        let stock = lab.content().expect("content").stock.expect("tracked");
        assert_eq!(stock.quantity_milli, 100_000 - 2_500 - 10_000 + 500);
        let ids: Vec<&str> = stock.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3"]);
        assert!(stock.is_consistent());

        // Merging the other way gives the same quantity.
        merged(&mut field, &mut lab);
        let other = field.content().expect("content").stock.expect("tracked");
        assert_eq!(other.quantity_milli, stock.quantity_milli);
        assert_eq!(other.events, stock.events);
    }

    #[test]
    fn tracking_enabled_on_two_replicas_keeps_both_sides_events() {
        let mut base = resource();
        let bytes = base.save();
        let mut lab = EntityDoc::load(&bytes).expect("load");
        let mut field = EntityDoc::load(&bytes).expect("load");
        apply(
            &mut lab,
            2,
            vec![enable("mL"), event("a", StockKind::Adjust, 50_000, 2)],
        );
        apply(
            &mut field,
            3,
            vec![enable("mL"), event("b", StockKind::Consume, -1_000, 3)],
        );
        merged(&mut lab, &mut field);
        let stock = lab.content().expect("content").stock.expect("tracked");
        assert_eq!(stock.quantity_milli, 49_000);
        assert_eq!(stock.events.len(), 2);
        // Later events still count once.
        apply(&mut lab, 2, vec![event("c", StockKind::Consume, -9_000, 2)]);
        let stock = lab.content().expect("content").stock.expect("tracked");
        assert_eq!(stock.quantity_milli, 40_000);
        assert!(stock.is_consistent());
    }

    #[test]
    fn going_below_zero_is_kept_and_flagged() {
        let mut doc = resource();
        apply(&mut doc, 1, vec![enable("g")]);
        let wrong_unit = EntityPatch {
            ops: vec![event("b", StockKind::Consume, -3_000, 1)],
            ..Default::default()
        };
        let error = doc
            .apply(None, &wrong_unit, &meta(1), || ActorId::from([9; 16]))
            .expect_err("unit mismatch");
        assert!(
            error.to_string().contains("counts its stock in g"),
            "{error}"
        );

        let mut doc = resource();
        apply(
            &mut doc,
            1,
            vec![enable("mL"), event("a", StockKind::Adjust, 1_000, 1)],
        );
        apply(&mut doc, 1, vec![event("b", StockKind::Consume, -3_000, 1)]);
        let stock = doc.content().expect("content").stock.expect("tracked");
        assert_eq!(stock.quantity_milli, -2_000);
        assert!(stock.is_negative());
        assert!(stock.is_low());
    }

    #[test]
    fn recording_without_tracking_is_refused() {
        let mut doc = resource();
        let patch = EntityPatch {
            ops: vec![event("a", StockKind::Consume, -1_000, 1)],
            ..Default::default()
        };
        let error = doc
            .apply(None, &patch, &meta(1), || ActorId::from([9; 16]))
            .expect_err("not tracked");
        assert!(
            error.to_string().contains("does not track stock"),
            "{error}"
        );
        assert!(doc.content().expect("content").stock.is_none());
    }
}
