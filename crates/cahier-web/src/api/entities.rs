//! `/api/v2/{experiments|items|experiments_templates|items_types}`: list, create, read, update,
//! duplicate and delete entities, in eLabFTW's shapes; one code path for every kind.

use super::json::JsonBody;
use crate::AppState;
use crate::auth::{ApiCaller, UncheckedApiCaller};
use crate::error::AppError;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cahier_core::clock::format_sql_datetime;
use cahier_core::document::EntityOp;
use cahier_core::fields::Metadata;
use cahier_core::markdown::ContentType;
use cahier_core::{EntityKind, EntityPatch};
use cahier_store::catalog::Vocabulary;
use cahier_store::entities::{EntityRow, state};
use cahier_store::entity_sheet::EntitySheet;
use cahier_store::listing::{ListQuery, Order};
use cahier_store::{NewEntity, Store};
use serde_json::{Value, json};
use std::collections::HashMap;

use super::openapi::{
    Documented, Op, entity_fields, integer, list_of, list_params, one_of, schema, string,
    with_property,
};

pub(super) fn routes() -> Documented {
    Documented::new()
        .route(
            "entities",
            "/{entity_type}",
            get(list).post(create),
            vec![
                Op::get("List entries the caller may read", list_of("Entity"))
                    .query(&list_params())
                    .query(&[("format", one_of(&["json", "csv"]))])
                    .also("text/csv"),
                Op::post("Create an entry").body(with_property(
                    entity_fields(&[]),
                    "template",
                    integer(),
                )),
            ],
        )
        .route(
            "entities",
            "/{entity_type}/{id}",
            get(read).patch(update).delete(destroy).post(duplicate),
            vec![
                Op::get("Read an entry", schema("Entity"))
                    .query(&[(
                        "format",
                        one_of(&["json", "csv", "eln", "pdf", "pdfa", "zip", "zipa"]),
                    )])
                    .also(cahier_eln::MEDIA_TYPE)
                    .also("application/pdf")
                    .also("application/zip")
                    .also("text/csv"),
                Op::patch("Change an entry, or act on it", schema("Entity")).body(
                    [
                        ("passphrase", string()),
                        ("meaning", integer()),
                        ("userid", integer()),
                        ("team", integer()),
                        (
                            "metadatamerge",
                            json!({"oneOf": [string(), {"type": "object"}]}),
                        ),
                    ]
                    .into_iter()
                    .fold(
                        entity_fields(&[
                            "lock",
                            "forcelock",
                            "forceunlock",
                            "archive",
                            "unarchive",
                            "restore",
                            "destroy",
                            "updatemetadatafield",
                            "timestamp",
                            "sign",
                            "updateowner",
                        ]),
                        |body, (name, schema)| with_property(body, name, schema),
                    ),
                ),
                Op::delete("Delete an entry (it can be restored)"),
                Op::post("Duplicate an entry"),
            ],
        )
}

/// The kind behind an API path segment.
pub(super) fn kind(entity_type: &str) -> Result<EntityKind, AppError> {
    match entity_type {
        "experiments" => Ok(EntityKind::Experiment),
        "experiments_templates" => Ok(EntityKind::ExperimentTemplate),
        "items" => Ok(EntityKind::Resource),
        "items_types" => Ok(EntityKind::ResourceTemplate),
        _ => Err(AppError::NotFound("endpoint".into())),
    }
}

pub(super) fn parse_id(id: &str) -> Result<i64, AppError> {
    id.parse().map_err(|_| AppError::NotFound("entity".into()))
}

/// Lookups shared by the rows of one response.
struct Names {
    users: HashMap<i64, String>,
    statuses: HashMap<i64, cahier_store::catalog::Term>,
    categories: HashMap<i64, cahier_store::catalog::Term>,
    /// The rows that have a trusted timestamp.
    timestamped: std::collections::HashSet<i64>,
    /// Stock of the resources that track one.
    stock: HashMap<i64, cahier_store::stock::StockRow>,
    /// Who may book the resources that say so (others: as canread).
    canbook: HashMap<i64, cahier_core::AccessRule>,
}

impl Names {
    async fn load(store: &Store, rows: &[EntityRow]) -> Result<Self, AppError> {
        Self::load_with(store, rows, true).await
    }

    /// `timestamped`: whether to look up which rows have a timestamp (a single entity reads
    /// its proofs anyway and sets the column from them).
    async fn load_with(
        store: &Store,
        rows: &[EntityRow],
        timestamped: bool,
    ) -> Result<Self, AppError> {
        let mut users: Vec<i64> = rows
            .iter()
            .flat_map(|r| [r.owner_id, r.lastchangeby])
            .chain(rows.iter().filter_map(|r| r.locked_by))
            .collect();
        users.sort_unstable();
        users.dedup();
        let ids = |f: fn(&EntityRow) -> Option<i64>| {
            let mut v: Vec<i64> = rows.iter().filter_map(f).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let resources: Vec<i64> = rows
            .iter()
            .filter(|r| r.kind == EntityKind::Resource)
            .map(|r| r.id)
            .collect();
        Ok(Self {
            users: store
                .users_by_ids(&users)
                .await?
                .into_iter()
                .map(|u| (u.id, u.fullname()))
                .collect(),
            statuses: store
                .terms_by_ids(Vocabulary::Status, &ids(|r| r.status_id))
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect(),
            categories: store
                .terms_by_ids(Vocabulary::Category, &ids(|r| r.category_id))
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect(),
            timestamped: if timestamped {
                store
                    .timestamped_among(&rows.iter().map(|r| r.id).collect::<Vec<_>>())
                    .await?
            } else {
                std::collections::HashSet::new()
            },
            stock: store.stock_among(&resources).await?,
            canbook: store.canbook_among(&resources).await?,
        })
    }
}

/// An entity in eLabFTW's JSON shape, as a `Value`: the reference the rows and sheets written
/// straight to bytes are checked against.
#[cfg(test)]
fn entity_json(row: &EntityRow, names: &Names) -> serde_json::Map<String, Value> {
    let status = row.status_id.and_then(|id| names.statuses.get(&id));
    let category = row.category_id.and_then(|id| names.categories.get(&id));
    let json = json!({
        "id": row.id,
        "uuid": row.uuid,
        "elabid": row.elabid,
        "title": row.title,
        "date": row.date,
        "body": row.body,
        "body_html": row.body_html,
        "content_type": row.content_type,
        "category": row.category_id,
        "category_title": category.map(|c| c.title.clone()),
        "category_color": category.map(|c| c.color.clone()),
        "status": row.status_id,
        "status_title": status.map(|s| s.title.clone()),
        "status_color": status.map(|s| s.color.clone()),
        "rating": row.rating,
        "userid": row.owner_id,
        "team": row.team_id,
        "fullname": names.users.get(&row.owner_id).cloned().unwrap_or_default(),
        "created_at": format_sql_datetime(row.created_at),
        "modified_at": format_sql_datetime(row.modified_at),
        "lastchangeby": row.lastchangeby,
        "locked": i64::from(row.locked_by.is_some()),
        "lockedby": row.locked_by,
        "locked_at": row.locked_at.map(format_sql_datetime),
        "canread_base": row.canread.base.code(),
        "canwrite_base": row.canwrite.base.code(),
        "canread": row.canread.extras_json().to_string(),
        "canwrite": row.canwrite.extras_json().to_string(),
        "metadata": row.metadata,
        "state": row.state,
        "tags": if row.tags.is_empty() { Value::Null } else { Value::String(row.tags.join("|")) },
        "timestamped": i64::from(names.timestamped.contains(&row.id)),
        "custom_id": Value::Null,
        "has_conflicts": row.n_conflicts > 0,
        "heads": row.heads,
        "page": row.kind.api_name(),
        "type": row.kind.api_name(),
    });
    let mut map = match json {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    if row.kind == EntityKind::Resource {
        let canbook = names.canbook.get(&row.id).unwrap_or(&row.canread);
        map.insert("canbook_base".into(), json!(canbook.base.code()));
        map.insert("canbook".into(), json!(canbook.extras_json().to_string()));
        // Cahier's stock extension, in list rows without the events (the single item adds
        // them): present only on resources that track stock.
        if let Some(stock) = names.stock.get(&row.id) {
            map.insert("stock".into(), super::stock::stock_state_json(stock));
        }
    }
    map
}

/// One entry of a list, written straight to the response bytes: the same JSON as
/// [`list_row_json`] (whose `Map` keeps its keys sorted, hence the order of these fields),
/// without copying each 5 KB body and its HTML into `Value`s first (BENCHMARKS.md).
/// `body` and `body_html`, which sort first, are written before it by [`write_rows`].
#[derive(serde::Serialize)]
struct ListRow<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    canbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canbook_base: Option<i64>,
    canread: String,
    canread_base: i64,
    canwrite: String,
    canwrite_base: i64,
    category: Option<i64>,
    category_color: Option<&'a str>,
    category_title: Option<&'a str>,
    content_type: i64,
    created_at: String,
    custom_id: Option<()>,
    date: &'a str,
    elabid: &'a str,
    fullname: &'a str,
    has_conflicts: bool,
    heads: &'a str,
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_default: Option<i64>,
    lastchangeby: i64,
    locked: i64,
    locked_at: Option<String>,
    lockedby: Option<i64>,
    metadata: Option<&'a str>,
    modified_at: String,
    page: &'static str,
    rating: i64,
    state: i64,
    status: Option<i64>,
    status_color: Option<&'a str>,
    status_title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<Value>,
    tags: Option<String>,
    team: i64,
    timestamped: i64,
    title: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    userid: i64,
    uuid: &'a str,
}

impl<'a> ListRow<'a> {
    fn new(row: &'a EntityRow, names: &'a Names, default: Option<Option<i64>>) -> Self {
        let status = row.status_id.and_then(|id| names.statuses.get(&id));
        let category = row.category_id.and_then(|id| names.categories.get(&id));
        // Resources only: who may book (defaulting to who may read) and the stock state.
        let canbook = (row.kind == EntityKind::Resource)
            .then(|| names.canbook.get(&row.id).unwrap_or(&row.canread));
        Self {
            canbook: canbook.map(|rule| rule.extras_json().to_string()),
            canbook_base: canbook.map(|rule| rule.base.code()),
            canread: row.canread.extras_json().to_string(),
            canread_base: row.canread.base.code(),
            canwrite: row.canwrite.extras_json().to_string(),
            canwrite_base: row.canwrite.base.code(),
            category: row.category_id,
            category_color: category.map(|c| c.color.as_str()),
            category_title: category.map(|c| c.title.as_str()),
            content_type: row.content_type,
            created_at: format_sql_datetime(row.created_at),
            custom_id: None,
            date: &row.date,
            elabid: &row.elabid,
            fullname: names
                .users
                .get(&row.owner_id)
                .map(String::as_str)
                .unwrap_or_default(),
            has_conflicts: row.n_conflicts > 0,
            heads: &row.heads,
            id: row.id,
            is_default: default.map(|default| i64::from(default == Some(row.id))),
            lastchangeby: row.lastchangeby,
            locked: i64::from(row.locked_by.is_some()),
            locked_at: row.locked_at.map(format_sql_datetime),
            lockedby: row.locked_by,
            metadata: row.metadata.as_deref(),
            modified_at: format_sql_datetime(row.modified_at),
            page: row.kind.api_name(),
            rating: row.rating,
            state: row.state,
            status: row.status_id,
            status_color: status.map(|s| s.color.as_str()),
            status_title: status.map(|s| s.title.as_str()),
            stock: (row.kind == EntityKind::Resource)
                .then(|| names.stock.get(&row.id))
                .flatten()
                .map(super::stock::stock_state_json),
            tags: (!row.tags.is_empty()).then(|| row.tags.join("|")),
            team: row.team_id,
            timestamped: i64::from(names.timestamped.contains(&row.id)),
            title: &row.title,
            kind: row.kind.api_name(),
            userid: row.owner_id,
            uuid: &row.uuid,
        }
    }
}

/// Appends the JSON of some list rows to `out`, comma-separated, with a leading comma unless
/// they come first.
fn write_rows(
    out: &mut Vec<u8>,
    rows: &[EntityRow],
    names: &Names,
    first: bool,
    default: Option<Option<i64>>,
) -> Result<(), AppError> {
    for (i, row) in rows.iter().enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        // `body` and `body_html` (nearly all of a row's bytes) sort first: they are written
        // by `write_json_str`, then the other fields by serde, whose opening brace becomes the
        // comma after `body_html` (BENCHMARKS.md: escaping was a sixth of `limit=5000`).
        out.extend_from_slice(b"{\"body\":");
        write_json_str(out, &row.body);
        out.extend_from_slice(b",\"body_html\":");
        write_json_str(out, &row.body_html);
        let rest = out.len();
        serde_json::to_writer(&mut *out, &ListRow::new(row, names, default))
            .map_err(|e| AppError::internal(&e))?;
        if let Some(brace) = out.get_mut(rest) {
            *brace = b',';
        }
    }
    Ok(())
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it (`\"`, `\\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx`), but skipping eight
/// bytes at a time over text that needs none, which is nearly all of an entry's body.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `word` is below 0x20, a quote or a backslash (exact, not a guess).
    let needs_escape = |word: u64| {
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES)
            & !(word ^ (ONES * u64::from(b'"')));
        let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES)
            & !(word ^ (ONES * u64::from(b'\\')));
        (control | quote | backslash) & HIGHS != 0
    };
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8)
            && let Ok(word) = <[u8; 8]>::try_from(chunk)
            && !needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let byte = bytes[i];
        let short: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run_start..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        i += 1;
        run_start = i;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

/// Query parameters, allowing repeats (`tags[]=a&tags[]=b`).
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, AppError> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|_| AppError::BadRequest("the query string could not be read".into()))
}

fn csv_ints(field: &str, value: &str) -> Result<Vec<i64>, AppError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "null")
        .map(|v| {
            v.parse()
                .map_err(|_| AppError::invalid(field, "expected numbers separated by commas"))
        })
        .collect()
}

async fn list(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(entity_type): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let kind = kind(&entity_type)?;
    let mut query = ListQuery::new(kind);
    query.limit = 15;
    let mut format = None;
    for (key, value) in query_pairs(raw.as_deref())? {
        match key.as_str() {
            "format" => format = Some(value),
            "q" => cahier_store::extended::apply_q(&mut query, &value)?,
            "limit" => {
                query.limit = value
                    .parse()
                    .map_err(|_| AppError::invalid("limit", "expected a whole number"))?
            }
            "offset" => {
                query.offset = value
                    .parse()
                    .map_err(|_| AppError::invalid("offset", "expected a whole number"))?
            }
            "order" => query.order = Order::parse(&value)?,
            "sort" => {
                query.descending = match value.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(AppError::invalid("sort", "expected asc or desc")),
                }
            }
            "cat" | "category" => query.categories.extend(csv_ints("category", &value)?),
            "status" => query.statuses.extend(csv_ints("status", &value)?),
            "owner" => query.owners.extend(csv_ints("owner", &value)?),
            "state" => query.states = csv_ints("state", &value)?,
            "tags[]" | "tags" => query.tags.push(value),
            "extended" => {
                if let Some(expr) = cahier_store::extended::parse(&value)? {
                    cahier_store::extended::add(&mut query, expr);
                }
            }
            _ => {}
        }
    }
    if query.limit < 1 {
        return Err(AppError::invalid("limit", "must be at least 1"));
    }
    if query.offset < 0 {
        return Err(AppError::invalid("offset", "must not be negative"));
    }
    // Templates say which one is the team's default.
    let default = if cahier_core::template::is_template(kind) {
        Some(default_template(&app, &caller, kind).await?)
    } else {
        None
    };
    let wanted = query.limit.min(cahier_store::listing::MAX_LIMIT);
    match format.as_deref() {
        None | Some("json") => {}
        Some("csv") => {
            query.limit = wanted;
            return super::exports::list_csv(&app, &caller, &query).await;
        }
        Some(other) => {
            return Err(AppError::invalid(
                "format",
                format!("lists are available as json or csv, not {other:?}"),
            ));
        }
    }
    if wanted <= STREAM_CHUNK {
        let page = app.store.list_entities(&caller.subject, &query).await?;
        let names = Names::load(&app.store, &page.rows).await?;
        // About 11 KB a row: one allocation for the whole answer.
        let mut out = Vec::with_capacity(2 + page.rows.len() * 12 * 1024);
        out.push(b'[');
        write_rows(&mut out, &page.rows, &names, true, default)?;
        out.push(b']');
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            out,
        )
            .into_response());
    }
    stream_list(app, caller, query, wanted, default).await
}

/// One entry of a list as a `Value`; `default` is `Some` for templates (the team's default, if
/// any). The reference [`ListRow`] is checked against.
#[cfg(test)]
fn list_row_json(row: &EntityRow, names: &Names, default: Option<Option<i64>>) -> Value {
    let mut map = entity_json(row, names);
    if let Some(default) = default {
        map.insert(
            "is_default".into(),
            json!(i64::from(default == Some(row.id))),
        );
    }
    Value::Object(map)
}

/// Rows read from the database at a time when a list is long.
const STREAM_CHUNK: i64 = 200;

/// A long list (`limit` above [`STREAM_CHUNK`]) is read and sent chunk by chunk, each chunk
/// after the last row of the previous one (keyset), so the server holds two chunks at a time
/// instead of the whole answer (57 MB of JSON for 5,000 entries took the server to 1 GB,
/// BENCHMARKS.md). The first chunk is read before answering, so bad queries still get a 4xx;
/// a failure later cuts the connection, so a client never takes a truncated list for whole.
/// While one chunk is written as JSON, SQLite already reads the next one on its connection's
/// thread: the two halves of the work run on both cores at once (issue #7).
async fn stream_list(
    app: AppState,
    caller: ApiCaller,
    mut query: ListQuery,
    wanted: i64,
    default: Option<Option<i64>>,
) -> Result<Response, AppError> {
    query.limit = STREAM_CHUNK;
    let first = app.store.list_entities(&caller.subject, &query).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tokio::spawn(async move {
        let fail = |tx: tokio::sync::mpsc::Sender<_>| async move {
            let _ = tx.send(Err(std::io::Error::other("list failed"))).await;
        };
        let mut chunk = first;
        let mut sent = 0;
        loop {
            let rows = i64::try_from(chunk.rows.len()).unwrap_or(i64::MAX);
            // The query of the chunk after this one, if the list goes on.
            let next = chunk
                .next
                .take()
                .filter(|_| sent + rows < wanted)
                .map(|cursor| {
                    let mut next = query.clone();
                    next.after = Some(cursor);
                    next.limit = STREAM_CHUNK.min(wanted - sent - rows);
                    next
                });
            let read_next = async {
                match &next {
                    Some(next) => Some(app.store.list_entities(&caller.subject, next).await),
                    None => None,
                }
            };
            let (bytes, following) = tokio::join!(
                chunk_json(&app.store, &chunk.rows, sent == 0, default),
                read_next
            );
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(error) => {
                    tracing::warn!(error = %error.public_message(), "a streamed list failed part-way");
                    return fail(tx).await;
                }
            };
            sent += rows;
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
            chunk = match following {
                None => break,
                Some(Ok(page)) => page,
                Some(Err(error)) => {
                    tracing::warn!(%error, "a streamed list failed part-way");
                    return fail(tx).await;
                }
            };
        }
        let _ = tx.send(Ok(b"]".to_vec())).await;
    });
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The JSON of some rows, comma-separated, after the list's opening bracket if they come
/// first and a comma otherwise.
async fn chunk_json(
    store: &Store,
    rows: &[EntityRow],
    first: bool,
    default: Option<Option<i64>>,
) -> Result<Vec<u8>, AppError> {
    let names = Names::load(store, rows).await?;
    let mut out = Vec::with_capacity(1 + rows.len() * 12 * 1024);
    if first {
        out.push(b'[');
    }
    write_rows(&mut out, rows, &names, first, default)?;
    Ok(out)
}

/// The id of the caller's team's default template of `kind` (`None` for other kinds).
async fn default_template(
    app: &AppState,
    caller: &ApiCaller,
    kind: EntityKind,
) -> Result<Option<i64>, AppError> {
    if !cahier_core::template::is_template(kind) {
        return Ok(None);
    }
    match caller.team() {
        Ok(team) => Ok(app.store.default_template(team, kind).await?),
        Err(_) => Ok(None),
    }
}

/// An entity with everything eLabFTW's single-entity `GET` shows (the caller is confirmed),
/// as JSON bytes.
pub(crate) async fn full_entity(
    app: &AppState,
    caller: &ApiCaller,
    kind: EntityKind,
    id: i64,
) -> Result<Vec<u8>, AppError> {
    let sheet = app
        .store
        .entity_sheet(&caller.subject, kind, id, None)
        .await?
        .ok_or_else(|| AppError::Internal("a confirmed caller's epoch was refused".into()))?;
    sheet_json(app, caller, kind, sheet).await
}

/// [`full_entity`] for a caller whose cached grant is not confirmed yet: the sheet's own
/// statement confirms it, and when accounts changed meanwhile the key is checked again and
/// the entity read again with the fresh grant (so a revoked key fails on its next request).
async fn full_entity_unchecked(
    app: &AppState,
    caller: UncheckedApiCaller,
    kind: EntityKind,
    id: i64,
) -> Result<Vec<u8>, AppError> {
    let sheet = app
        .store
        .entity_sheet(&caller.caller.subject, kind, id, caller.unconfirmed_epoch)
        .await?;
    match sheet {
        Some(sheet) => sheet_json(app, &caller.caller, kind, sheet).await,
        None => {
            let caller = caller.confirm(app).await?;
            full_entity(app, &caller, kind, id).await
        }
    }
}

/// What a single entity's JSON shows beyond its [`EntitySheet`], read by [`sheet_json`].
struct SheetExtras {
    /// For templates: whether it is the team's default (0 or 1).
    is_default: Option<i64>,
    /// The readable template it was made from: id and eLabFTW's type code.
    created_from: Option<(i64, i64)>,
    /// A resource's stock with its events.
    stock: Option<Value>,
    /// Who may book a resource that says so.
    canbook: Option<cahier_core::AccessRule>,
    /// Where the entity is seen in the UI.
    sharelink: String,
}

/// The JSON of an entity read with [`cahier_store::Store::entity_sheet`].
async fn sheet_json(
    app: &AppState,
    caller: &ApiCaller,
    kind: EntityKind,
    sheet: EntitySheet,
) -> Result<Vec<u8>, AppError> {
    let id = sheet.row.id;
    let is_resource = sheet.row.kind == EntityKind::Resource;
    let is_default = if cahier_core::template::is_template(kind) {
        let default = default_template(app, caller, kind).await?;
        Some(i64::from(default == Some(id)))
    } else {
        None
    };
    let mut created_from = None;
    if let Some(uuid) = &sheet.row.template_uuid {
        // eLabFTW's provenance columns; only a template the caller may read is named.
        if let Ok(source) = app.store.entity_by_uuid(&caller.subject, uuid).await {
            created_from = Some((source.id, source.kind.elab_code()));
        }
    }
    let (stock, canbook) = if is_resource {
        // Cahier's stock extension: present only on resources that track stock.
        let stock = if kind == EntityKind::Resource {
            super::stock::stock_json(app, caller, id).await?
        } else {
            None
        };
        let stock = match stock {
            Some(stock) => Some(stock),
            None => app
                .store
                .stock_among(&[id])
                .await?
                .get(&id)
                .map(super::stock::stock_state_json),
        };
        (stock, app.store.canbook_among(&[id]).await?.remove(&id))
    } else {
        (None, None)
    };
    let extras = SheetExtras {
        is_default,
        created_from,
        stock,
        canbook,
        sharelink: format!(
            "{}/{}",
            app.config.public_url.trim_end_matches('/'),
            section(kind, id)
        ),
    };
    write_sheet(&sheet, &extras)
}

/// The JSON object of one step of a single entity (keys in the order a `Map` sorts them).
#[derive(serde::Serialize)]
struct StepJson<'a> {
    body: &'a str,
    deadline: Option<()>,
    finished: i64,
    finished_by: Option<i64>,
    finished_time: Option<String>,
    id: &'a str,
    is_immutable: i64,
    item_id: i64,
    ordering: i64,
}

/// One comment of a single entity.
#[derive(serde::Serialize)]
struct CommentJson<'a> {
    comment: &'a str,
    created_at: String,
    fullname: Option<&'a str>,
    id: &'a str,
    immutable: i64,
    item_id: i64,
    modified_at: String,
    userid: i64,
}

/// An entity this one links to.
#[derive(serde::Serialize)]
struct LinkJson<'a> {
    entityid: i64,
    link_state: i64,
    title: &'a str,
    uuid: &'a str,
}

/// An entity that links to this one.
#[derive(serde::Serialize)]
struct BacklinkJson<'a> {
    entityid: i64,
    page: &'static str,
    title: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A trusted timestamp of a single entity.
#[derive(serde::Serialize)]
struct StampJson<'a> {
    export_sha256: &'a str,
    gen_time: String,
    hash_alg: &'a str,
    heads: &'a str,
    id: i64,
    tsa_name: &'a str,
    upload_id: i64,
    userid: i64,
}

/// A single entity's JSON after `body` and `body_html`: the fields of [`ListRow`] plus the
/// parts only the full view shows, in the order a `serde_json::Map` sorts keys (the order the
/// `Value` this replaced was written in; test `sheets_written_directly_match_the_value_json`).
#[derive(serde::Serialize)]
struct SheetFields<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    canbook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canbook_base: Option<i64>,
    canread: String,
    canread_base: i64,
    canwrite: String,
    canwrite_base: i64,
    category: Option<i64>,
    category_color: Option<&'a str>,
    category_title: Option<&'a str>,
    comments: Vec<CommentJson<'a>>,
    content_type: i64,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_from_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_from_type: Option<i64>,
    custom_id: Option<()>,
    date: &'a str,
    elabid: &'a str,
    experiments_links: Vec<LinkJson<'a>>,
    fullname: &'a str,
    has_conflicts: bool,
    heads: &'a str,
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_default: Option<i64>,
    items_links: Vec<LinkJson<'a>>,
    lastchangeby: i64,
    locked: i64,
    locked_at: Option<String>,
    lockedby: Option<i64>,
    metadata: Option<&'a str>,
    metadata_decoded: Value,
    modified_at: String,
    page: &'static str,
    rating: i64,
    related_experiments_links: Vec<BacklinkJson<'a>>,
    related_items_links: Vec<BacklinkJson<'a>>,
    sharelink: &'a str,
    state: i64,
    status: Option<i64>,
    status_color: Option<&'a str>,
    status_title: Option<&'a str>,
    steps: Vec<StepJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<&'a Value>,
    tags: Option<String>,
    team: i64,
    timestamped: i64,
    timestamped_at: Option<String>,
    timestampedby: Option<i64>,
    timestamps: Vec<StampJson<'a>>,
    title: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    uploads: [(); 0],
    userid: i64,
    uuid: &'a str,
}

/// Writes a single entity's JSON straight to bytes, without building a `Value` of it first
/// (its allocations were a fifth of a `GET`'s CPU, BENCHMARKS.md, issue #7).
fn write_sheet(sheet: &EntitySheet, extras: &SheetExtras) -> Result<Vec<u8>, AppError> {
    let row = &sheet.row;
    let id = row.id;
    let status = sheet.status.as_ref().filter(|_| row.status_id.is_some());
    let category = sheet
        .category
        .as_ref()
        .filter(|_| row.category_id.is_some());
    let canbook =
        (row.kind == EntityKind::Resource).then(|| extras.canbook.as_ref().unwrap_or(&row.canread));
    let links = |kind: &str| -> Vec<LinkJson<'_>> {
        sheet
            .links
            .iter()
            .filter(|l| l.kind == kind)
            .map(|l| LinkJson {
                entityid: l.id,
                link_state: l.state,
                title: &l.title,
                uuid: &l.uuid,
            })
            .collect()
    };
    let backlinks = |kind: EntityKind| -> Vec<BacklinkJson<'_>> {
        sheet
            .backlinks
            .iter()
            .filter(|l| l.kind == kind.as_str())
            .map(|l| BacklinkJson {
                entityid: l.id,
                page: kind.api_name(),
                title: &l.title,
                kind: kind.api_name(),
            })
            .collect()
    };
    let latest = sheet.timestamps.first();
    let fields = SheetFields {
        canbook: canbook.map(|rule| rule.extras_json().to_string()),
        canbook_base: canbook.map(|rule| rule.base.code()),
        canread: row.canread.extras_json().to_string(),
        canread_base: row.canread.base.code(),
        canwrite: row.canwrite.extras_json().to_string(),
        canwrite_base: row.canwrite.base.code(),
        category: row.category_id,
        category_color: category.map(|c| c.color.as_str()),
        category_title: category.map(|c| c.title.as_str()),
        comments: sheet
            .comments
            .iter()
            .map(|(c, fullname)| CommentJson {
                comment: &c.body,
                created_at: format_sql_datetime(c.created_at),
                fullname: fullname.as_deref(),
                id: &c.comment_id,
                immutable: 0,
                item_id: id,
                modified_at: format_sql_datetime(c.edited_at.unwrap_or(c.created_at)),
                userid: c.author,
            })
            .collect(),
        content_type: row.content_type,
        created_at: format_sql_datetime(row.created_at),
        created_from_id: extras.created_from.map(|(id, _)| id),
        created_from_type: extras.created_from.map(|(_, code)| code),
        custom_id: None,
        date: &row.date,
        elabid: &row.elabid,
        experiments_links: links("experiment"),
        fullname: &sheet.owner_name,
        has_conflicts: row.n_conflicts > 0,
        heads: &row.heads,
        id,
        is_default: extras.is_default,
        items_links: links("resource"),
        lastchangeby: row.lastchangeby,
        locked: i64::from(row.locked_by.is_some()),
        locked_at: row.locked_at.map(format_sql_datetime),
        lockedby: row.locked_by,
        metadata: row.metadata.as_deref(),
        metadata_decoded: row
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
            .unwrap_or(Value::Null),
        modified_at: format_sql_datetime(row.modified_at),
        page: row.kind.api_name(),
        rating: row.rating,
        related_experiments_links: backlinks(EntityKind::Experiment),
        related_items_links: backlinks(EntityKind::Resource),
        sharelink: &extras.sharelink,
        state: row.state,
        status: row.status_id,
        status_color: status.map(|s| s.color.as_str()),
        status_title: status.map(|s| s.title.as_str()),
        steps: sheet
            .steps
            .iter()
            .map(|s| StepJson {
                body: &s.body,
                deadline: None,
                finished: i64::from(s.done),
                finished_by: s.done_by,
                finished_time: s.done_at.map(format_sql_datetime),
                id: &s.step_id,
                is_immutable: 0,
                item_id: id,
                ordering: s.ordering,
            })
            .collect(),
        stock: extras.stock.as_ref(),
        tags: (!row.tags.is_empty()).then(|| row.tags.join("|")),
        team: row.team_id,
        timestamped: i64::from(latest.is_some()),
        timestamped_at: latest.map(|t| format_sql_datetime(t.gen_time_ms)),
        timestampedby: latest.map(|t| t.user_id),
        timestamps: sheet
            .timestamps
            .iter()
            .map(|t| StampJson {
                export_sha256: &t.export_sha256,
                gen_time: format_sql_datetime(t.gen_time_ms),
                hash_alg: &t.hash_alg,
                heads: &t.heads,
                id: t.id,
                tsa_name: &t.tsa_name,
                upload_id: t.upload_id,
                userid: t.user_id,
            })
            .collect(),
        title: &row.title,
        kind: row.kind.api_name(),
        uploads: [],
        userid: row.owner_id,
        uuid: &row.uuid,
    };
    // `body` and `body_html` sort first and are most of the bytes (as in `write_rows`).
    let mut out = Vec::with_capacity(row.body.len() + row.body_html.len() + 4096);
    out.extend_from_slice(b"{\"body\":");
    write_json_str(&mut out, &row.body);
    out.extend_from_slice(b",\"body_html\":");
    write_json_str(&mut out, &row.body_html);
    let rest = out.len();
    serde_json::to_writer(&mut out, &fields).map_err(|e| AppError::internal(&e))?;
    if let Some(brace) = out.get_mut(rest) {
        *brace = b',';
    }
    Ok(out)
}

/// The `Value` the single entity's JSON was built as before [`write_sheet`], kept as the
/// reference the direct writer is checked against.
#[cfg(test)]
fn sheet_value(kind: EntityKind, sheet: &EntitySheet, extras: &SheetExtras) -> Value {
    let row = &sheet.row;
    let id = row.id;
    let names = Names {
        users: HashMap::from([(row.owner_id, sheet.owner_name.clone())]),
        statuses: sheet.status.iter().map(|t| (t.id, t.clone())).collect(),
        categories: sheet.category.iter().map(|t| (t.id, t.clone())).collect(),
        timestamped: std::collections::HashSet::new(),
        stock: HashMap::new(),
        canbook: extras.canbook.iter().map(|r| (id, r.clone())).collect(),
    };
    let mut map = entity_json(row, &names);
    let decoded = row
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
        .unwrap_or(Value::Null);
    map.insert("metadata_decoded".into(), decoded);
    if let Some(default) = extras.is_default {
        map.insert("is_default".into(), json!(default));
    }
    if let Some((source, code)) = extras.created_from {
        map.insert("created_from_id".into(), json!(source));
        map.insert("created_from_type".into(), json!(code));
    }
    map.insert(
        "steps".into(),
        sheet
            .steps
            .iter()
            .map(|s| {
                json!({
                    "id": s.step_id, "item_id": id, "body": s.body, "ordering": s.ordering,
                    "finished": i64::from(s.done), "finished_time": s.done_at.map(format_sql_datetime),
                    "finished_by": s.done_by, "deadline": Value::Null, "is_immutable": 0,
                })
            })
            .collect(),
    );
    map.insert(
        "comments".into(),
        sheet
            .comments
            .iter()
            .map(|(c, fullname)| {
                json!({
                    "id": c.comment_id, "item_id": id, "comment": c.body, "userid": c.author,
                    "fullname": fullname, "created_at": format_sql_datetime(c.created_at),
                    "modified_at": format_sql_datetime(c.edited_at.unwrap_or(c.created_at)), "immutable": 0,
                })
            })
            .collect(),
    );
    let link_json = |k: &str| -> Vec<Value> {
        sheet
            .links
            .iter()
            .filter(|l| l.kind == k)
            .map(|l| json!({"entityid": l.id, "uuid": l.uuid, "title": l.title, "link_state": l.state}))
            .collect()
    };
    map.insert(
        "experiments_links".into(),
        Value::Array(link_json("experiment")),
    );
    map.insert("items_links".into(), Value::Array(link_json("resource")));
    let backlink_json = |k: EntityKind| -> Value {
        sheet
            .backlinks
            .iter()
            .filter(|l| l.kind == k.as_str())
            .map(|l| json!({"entityid": l.id, "title": l.title, "page": k.api_name(), "type": k.api_name()}))
            .collect()
    };
    map.insert(
        "related_experiments_links".into(),
        backlink_json(EntityKind::Experiment),
    );
    map.insert(
        "related_items_links".into(),
        backlink_json(EntityKind::Resource),
    );
    map.insert("uploads".into(), Value::Array(Vec::new()));
    if kind == EntityKind::Resource
        && let Some(stock) = &extras.stock
    {
        map.insert("stock".into(), stock.clone());
    }
    let latest = sheet.timestamps.first();
    map.insert("timestamped".into(), json!(i64::from(latest.is_some())));
    map.insert("timestampedby".into(), json!(latest.map(|t| t.user_id)));
    map.insert(
        "timestamped_at".into(),
        json!(latest.map(|t| format_sql_datetime(t.gen_time_ms))),
    );
    map.insert(
        "timestamps".into(),
        sheet
            .timestamps
            .iter()
            .map(|t| {
                json!({
                    "id": t.id, "heads": t.heads, "gen_time": format_sql_datetime(t.gen_time_ms),
                    "tsa_name": t.tsa_name, "hash_alg": t.hash_alg, "export_sha256": t.export_sha256,
                    "upload_id": t.upload_id, "userid": t.user_id,
                })
            })
            .collect(),
    );
    map.insert("sharelink".into(), Value::String(extras.sharelink.clone()));
    Value::Object(map)
}

/// JSON bytes as an answer, with the content type `axum::Json` gives.
fn json_response(json: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json,
    )
        .into_response()
}

fn section(kind: EntityKind, id: i64) -> String {
    match kind {
        EntityKind::Experiment => format!("experiments/{id}"),
        EntityKind::Resource => format!("resources/{id}"),
        EntityKind::ExperimentTemplate => format!("templates/{id}"),
        EntityKind::ResourceTemplate => format!("resource-templates/{id}"),
    }
}

async fn read(
    State(app): State<AppState>,
    caller: UncheckedApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let parsed = kind(&entity_type).and_then(|kind| {
        let id = parse_id(&id)?;
        let format = query_pairs(raw.as_deref())?
            .into_iter()
            .find(|(k, _)| k == "format")
            .map(|(_, format)| format)
            .filter(|format| format != "json");
        Ok((kind, id, format))
    });
    let (kind, id, format) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            // A revoked key gets 401, not a remark on its request.
            caller.confirm(&app).await?;
            return Err(error);
        }
    };
    let Some(format) = format else {
        // The common case, in one statement when the key's grant is in memory.
        let json = full_entity_unchecked(&app, caller, kind, id).await?;
        return Ok(json_response(json));
    };
    let caller = caller.confirm(&app).await?;
    if format == "eln" {
        return super::exports::entity_eln(&app, &caller, kind, id).await;
    }
    if let Some(standard) = super::pdf::standard_of(&format) {
        let lang = crate::i18n::Lang::En;
        return super::pdf::entity_pdf(&app, &caller.subject, kind, id, standard, lang).await;
    }
    match format.as_str() {
        "zip" | "zipa" => {
            return super::archive::entity_zip(&app, &caller, kind, id, format == "zipa").await;
        }
        "csv" => return super::exports::entity_csv(&app, &caller, kind, id).await,
        _ => {}
    }
    // eLabFTW's export formats that have not landed yet answer 501; anything else is a
    // mistake.
    const LATER: [&str; 3] = ["elnhtml", "qrpdf", "qrpng"];
    if LATER.contains(&format.as_str()) {
        return Err(AppError::NotImplemented(format!(
            "export as {format} is not available yet"
        )));
    }
    Err(AppError::invalid(
        "format",
        format!("unknown format {format:?}; expected json, csv, eln, pdf, pdfa, zip or zipa"),
    ))
}

/// The fields of a create or update request, as a document patch. `metadata` (a JSON string
/// or object) replaces the extra fields; on experiments required fields must be filled.
/// `current` is the entry's metadata before the change (`None` on create): `metadatamerge`
/// merges into it as a JSON merge patch (RFC 7396, what eLabFTW's `JSON_MERGE_PATCH` does), so a
/// script can change one field's value or add a field without resending the others.
fn patch_from(
    body: &JsonBody,
    kind: EntityKind,
    current: Option<&str>,
) -> Result<EntityPatch, AppError> {
    let mut ops = Vec::new();
    let merged = match body.0.get("metadatamerge") {
        None => None,
        Some(_) if body.has("metadata") => {
            return Err(AppError::invalid(
                "metadatamerge",
                "send either metadata (the whole) or metadatamerge (a merge patch), not both",
            ));
        }
        Some(patch) => {
            let patch = json_object_or_string("metadatamerge", patch)?;
            let mut target = match current {
                Some(text) if !text.trim().is_empty() => serde_json::from_str(text)
                    .map_err(|e| AppError::Internal(format!("stored metadata is not JSON: {e}")))?,
                _ => Value::Object(Default::default()),
            };
            merge_patch(&mut target, &patch);
            Some(target)
        }
    };
    if let Some(metadata) = merged.as_ref().or_else(|| body.0.get("metadata")) {
        let metadata = Metadata::from_json(metadata).map_err(field_error)?;
        ops.push(EntityOp::SetMetadata {
            metadata,
            require: !cahier_core::template::is_template(kind),
        });
    }
    let content_type = match body.int("content_type")? {
        None => None,
        Some(1) => Some(ContentType::Html),
        Some(2) => Some(ContentType::Markdown),
        Some(_) => {
            return Err(AppError::invalid(
                "content_type",
                "expected 1 (HTML) or 2 (Markdown)",
            ));
        }
    };
    let date = body
        .string("date")?
        .map(|d| d.get(..10).unwrap_or(&d).to_owned());
    Ok(EntityPatch {
        title: body.string("title")?,
        date,
        body: body.string("body")?,
        content_type,
        status: body.nullable_int("status")?,
        category: body.nullable_int("category")?,
        rating: body.int("rating")?,
        tags: body.strings("tags")?,
        ops,
    })
}

/// A JSON object sent as itself or as a JSON string (eLabFTW accepts both).
fn json_object_or_string(field: &str, value: &Value) -> Result<Value, AppError> {
    let value = match value {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| AppError::invalid(field, format!("not JSON: {e}")))?,
        other => other.clone(),
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(AppError::invalid(field, "expected a JSON object"))
    }
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes a key, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(fields) = target {
        for (key, change) in changes {
            if change.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

fn field_error(error: cahier_core::fields::FieldError) -> AppError {
    AppError::invalid(&error.name, error.message)
}

/// eLabFTW's `{"action": "updatemetadatafield", "<field name>": <value>, …}`: sets the value
/// of each named field (which must exist), checked against its definition.
fn field_values_from(body: &JsonBody) -> Result<EntityPatch, AppError> {
    let ops: Vec<EntityOp> = body
        .0
        .iter()
        .filter(|(key, _)| key.as_str() != "action")
        .map(|(name, value)| EntityOp::SetFieldValue {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    if ops.is_empty() {
        return Err(AppError::invalid(
            "updatemetadatafield",
            "name the field and its value, like {\"action\": \"updatemetadatafield\", \"Temperature\": \"20\"}",
        ));
    }
    Ok(EntityPatch {
        ops,
        ..Default::default()
    })
}

fn created(app: &AppState, entity_type: &str, id: i64) -> Response {
    created_at_path(app, &format!("{entity_type}/{id}"))
}

/// 201 with `Location: <public url>/api/v2/<path>` (eLabFTW: the last segment is the new id).
pub(super) fn created_at_path(app: &AppState, path: &str) -> Response {
    let location = format!(
        "{}/api/v2/{path}",
        app.config.public_url.trim_end_matches('/')
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn create(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path(entity_type): Path<String>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let kind = kind(&entity_type)?;
    caller.require_write()?;
    let template = match body.0.get("template") {
        None | Some(Value::Null) => None,
        Some(value) => match value {
            Value::Number(_) | Value::String(_) => {
                Some(body.int("template")?.ok_or_else(|| {
                    AppError::invalid("template", "expected the id of a template")
                })?)
            }
            _ => {
                return Err(AppError::invalid(
                    "template",
                    "expected the id of a template",
                ));
            }
        },
    };
    let patch = patch_from(&body, kind, None)?;
    let canread = body.access_rule("canread", None)?;
    let canwrite = body.access_rule("canwrite", None)?;
    // A resource sent without `template` starts from its category's default template, if any.
    let template = match (kind, template) {
        (EntityKind::Resource, None) => {
            let category = match patch.category {
                Some(Some(category)) => Some(category),
                _ => {
                    app.store
                        .default_term(
                            Vocabulary::Category,
                            caller.team()?,
                            cahier_store::catalog::Family::Resource,
                        )
                        .await?
                }
            };
            match category {
                Some(category) => app.store.category_defaults(category).await?.template,
                None => None,
            }
        }
        (_, template) => template,
    };
    let new = NewEntity {
        kind,
        team_id: caller.team()?,
        canread,
        canwrite,
        patch,
        template: None,
    };
    let id = match template {
        // eLabFTW treats template 0 (and a missing one) as "blank".
        None | Some(0) => app.store.create_entity(&caller.subject, new).await?,
        Some(template) => {
            if cahier_core::template::template_kind(kind).is_none() {
                return Err(AppError::invalid(
                    "template",
                    "a template cannot be made from a template; duplicate it instead",
                ));
            }
            match app
                .store
                .create_from_template(&caller.subject, template, new)
                .await
            {
                Err(cahier_store::StoreError::NotFound("template")) => {
                    return Err(AppError::NotFound(format!(
                        "template {template} (it does not exist, or you cannot read it)"
                    )));
                }
                other => other?,
            }
        }
    };
    Ok(created(&app, &entity_type, id))
}

async fn update(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, AppError> {
    let kind = kind(&entity_type)?;
    let id = parse_id(&id)?;
    caller.require_write()?;
    let store = &app.store;
    let subject = &caller.subject;
    let row = store.entity_of_kind(subject, kind, id).await?;
    match body.string("action")?.as_deref() {
        None | Some("update") => {
            let patch = patch_from(&body, kind, row.metadata.as_deref())?;
            let canread = body.access_rule("canread", Some(&row.canread))?;
            let canwrite = body.access_rule("canwrite", Some(&row.canwrite))?;
            if kind == EntityKind::Resource && (body.has("canbook") || body.has("canbook_base")) {
                let current = store.canbook(subject, id).await?.0;
                if let Some(canbook) = body.access_rule("canbook", Some(&current))? {
                    store.set_canbook(subject, id, Some(&canbook)).await?;
                }
            }
            if canread.is_some() || canwrite.is_some() {
                store
                    .set_access(
                        subject,
                        id,
                        canread.unwrap_or(row.canread.clone()),
                        canwrite.unwrap_or(row.canwrite.clone()),
                    )
                    .await?;
            }
            if patch != EntityPatch::default() {
                store
                    .update_entity(subject, id, None, &patch, "save")
                    .await?;
            }
        }
        Some("lock") => {
            store.set_lock(subject, id, row.locked_by.is_none()).await?;
        }
        Some("forcelock") => {
            store.set_lock(subject, id, true).await?;
        }
        Some("forceunlock") => {
            store.set_lock(subject, id, false).await?;
        }
        Some("archive") => {
            store.set_state(subject, id, state::ARCHIVED).await?;
        }
        Some("unarchive") | Some("restore") => {
            store.set_state(subject, id, state::NORMAL).await?;
        }
        Some("destroy") => {
            store.set_state(subject, id, state::DELETED).await?;
        }
        Some("updatemetadatafield") => {
            let patch = field_values_from(&body)?;
            store
                .update_entity(subject, id, None, &patch, "save fields")
                .await?;
        }
        Some("timestamp") => {
            cahier_trace::stamp_entity(store, app.tsa().as_deref(), subject, id, rand::random())
                .await?;
        }
        Some("sign") => {
            let passphrase = body.string("passphrase")?.ok_or_else(|| {
                AppError::invalid("passphrase", "required: your key's passphrase")
            })?;
            let meaning = match body.0.get("meaning") {
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let meaning = cahier_core::signature::Meaning::parse(&meaning).ok_or_else(|| {
                AppError::invalid(
                    "meaning",
                    "required: 10 approval, 11 disapproval, 20 authorship, 30 responsibility, \
                     40 review, 50 safety or 60 witness",
                )
            })?;
            cahier_trace::signature::sign_entity(store, subject, id, &passphrase, meaning).await?;
        }
        Some("updateowner") => {
            let owner = body
                .int("userid")?
                .or(body.int("users_id")?)
                .ok_or_else(|| AppError::invalid("userid", "required: the new owner's id"))?;
            let team = body.int("team")?;
            store.transfer_entity(subject, id, owner, team).await?;
        }
        Some(action @ ("bloxberg" | "pin" | "accesskey" | "setnextcustomid" | "review")) => {
            return Err(AppError::NotImplemented(format!(
                "the {action} action is not available yet in Cahier"
            )));
        }
        Some(other) => {
            return Err(AppError::invalid(
                "action",
                format!("unknown action {other}"),
            ));
        }
    }
    Ok(json_response(full_entity(&app, &caller, kind, id).await?))
}

async fn duplicate(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    _body: JsonBody,
) -> Result<Response, AppError> {
    let kind = kind(&entity_type)?;
    let id = parse_id(&id)?;
    caller.require_write()?;
    app.store.entity_of_kind(&caller.subject, kind, id).await?;
    let new_id = app.store.duplicate_entity(&caller.subject, id).await?;
    Ok(created(&app, &entity_type, new_id))
}

async fn destroy(
    State(app): State<AppState>,
    caller: ApiCaller,
    Path((entity_type, id)): Path<(String, String)>,
    _headers: HeaderMap,
) -> Result<Response, AppError> {
    let kind = kind(&entity_type)?;
    let id = parse_id(&id)?;
    caller.require_write()?;
    app.store.entity_of_kind(&caller.subject, kind, id).await?;
    app.store
        .set_state(&caller.subject, id, state::DELETED)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cahier_core::access::{AccessRule, BaseLevel};
    use cahier_store::catalog::Term;

    fn row(id: i64, full: bool) -> EntityRow {
        EntityRow {
            id,
            uuid: format!("0190-{id}"),
            kind: if full {
                EntityKind::ExperimentTemplate
            } else {
                EntityKind::Experiment
            },
            team_id: 1,
            owner_id: 7,
            canread: AccessRule {
                base: BaseLevel::Team,
                teams: if full { vec![2, 3] } else { Vec::new() },
                teamgroups: Vec::new(),
                users: if full { vec![9] } else { Vec::new() },
            },
            canwrite: AccessRule {
                base: BaseLevel::OwnerOnly,
                teams: Vec::new(),
                teamgroups: Vec::new(),
                users: Vec::new(),
            },
            locked_by: full.then_some(7),
            locked_at: full.then_some(1_700_000_000_123),
            state: 1,
            elabid: "20261129-abc".into(),
            created_at: 1_700_000_000_000,
            modified_at: 1_700_000_100_000,
            lastchangeby: 7,
            title: "Quote \" and \\ and é \u{1} <b>".into(),
            date: "2026-11-29".into(),
            body: "# Heading\n\n| a | b |\n\ttab \u{7f}".into(),
            body_html: "<h1>Heading</h1>\n<p>&amp; é</p>".into(),
            content_type: 2,
            status_id: full.then_some(4),
            category_id: full.then_some(5),
            rating: 3,
            tags: if full {
                vec!["a".into(), "b c".into()]
            } else {
                Vec::new()
            },
            template_uuid: None,
            metadata: full.then(|| r#"{"extra_fields":{}}"#.to_owned()),
            heads: "abc123".into(),
            n_conflicts: i64::from(full),
        }
    }

    fn term(id: i64, title: &str) -> Term {
        Term {
            id,
            team_id: 1,
            title: title.into(),
            color: "29aeb9".into(),
            is_default: false,
            ordering: 0,
        }
    }

    /// The list rows written straight to bytes are the bytes the `Value` path gave.
    #[test]
    fn json_strings_are_escaped_byte_for_byte_as_serde_json_does() {
        let every_ascii: String = (0u8..=127).map(char::from).collect();
        let mut cases = vec![
            String::new(),
            "a".into(),
            "plain text longer than eight bytes".into(),
            "é漢字🙂 and \"quotes\" \\ back\\slashes".into(),
            "\n\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}".into(),
            every_ascii.clone(),
        ];
        // Every offset of every character against the eight-byte chunks.
        for shift in 0..9 {
            cases.push(format!("{}{every_ascii}", "x".repeat(shift)));
            cases.push(format!("{}\"{}", "y".repeat(shift), "z".repeat(17)));
        }
        for case in cases {
            let mut ours = Vec::new();
            write_json_str(&mut ours, &case);
            let reference = serde_json::to_vec(&case).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&reference),
                "{case:?}"
            );
        }
    }

    #[test]
    fn list_rows_written_directly_match_the_value_json() {
        let names = Names {
            users: HashMap::from([(7, "Ada \"Lovelace\"".to_owned())]),
            statuses: HashMap::from([(4, term(4, "Running"))]),
            categories: HashMap::from([(5, term(5, "Soil"))]),
            timestamped: std::collections::HashSet::from([2]),
            stock: HashMap::from([(
                3,
                cahier_store::stock::StockRow {
                    unit: "mL".into(),
                    quantity_milli: -1_500,
                    threshold_milli: Some(200),
                },
            )]),
            canbook: HashMap::from([(4, AccessRule::base(BaseLevel::OwnerAndAdmins))]),
        };
        // Two experiments, then two resources: one tracking stock, one with its own canbook.
        let mut rows = [row(1, false), row(2, true), row(3, true), row(4, false)];
        for resource in &mut rows[2..] {
            resource.kind = EntityKind::Resource;
        }
        for default in [None, Some(None), Some(Some(2))] {
            let mut direct = vec![b'['];
            write_rows(&mut direct, &rows, &names, true, default).expect("rows");
            direct.push(b']');
            let values: Vec<Value> = rows
                .iter()
                .map(|r| list_row_json(r, &names, default))
                .collect();
            let reference = serde_json::to_vec(&values).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&reference)
            );
        }
        // A row whose owner has no name gets an empty one, as before.
        let unnamed = Names {
            users: HashMap::new(),
            statuses: HashMap::new(),
            categories: HashMap::new(),
            timestamped: std::collections::HashSet::new(),
            stock: HashMap::new(),
            canbook: HashMap::new(),
        };
        let mut direct = Vec::new();
        write_rows(&mut direct, &rows[1..2], &unnamed, false, None).expect("rows");
        let reference = serde_json::to_vec(&list_row_json(&rows[1], &unnamed, None)).expect("json");
        assert_eq!(direct[0], b',');
        assert_eq!(direct[1..], reference[..]);
    }

    /// A single entity written straight to bytes is, byte for byte, the `Value` it was built
    /// as before: with steps, comments, links both ways, metadata, tags, proofs, a status and
    /// a category, for each kind, and bare.
    #[test]
    fn sheets_written_directly_match_the_value_json() {
        use cahier_store::entities::{CommentRow, LinkRow, StepRow};
        use cahier_store::timestamps::TimestampRow;
        let link = |id: i64, kind: &str| LinkRow {
            id,
            uuid: format!("0190-link-{id}"),
            kind: kind.into(),
            title: format!("Linked \"{id}\" é"),
            state: 1 + id % 2,
        };
        let stamp = |id: i64| TimestampRow {
            id,
            entity_id: 1,
            heads: format!("head{id}"),
            export_sha256: "ab".repeat(32),
            hash_alg: "sha256".into(),
            gen_time_ms: 1_700_000_000_000 + id * 1_000,
            tsa_name: "TSA \\ test".into(),
            upload_id: 40 + id,
            upload_sha256: "cd".repeat(32),
            user_id: 7,
        };
        let full = |kind: EntityKind| {
            let mut row = row(1, true);
            row.kind = kind;
            row.metadata = Some(
                r#"{"zeta": 1.5, "extra_fields": {"b": {"type": "text", "value": "x\ny"}, "a": {"value": 2e3}}, "list": [3, "é", null, true]}"#
                    .into(),
            );
            EntitySheet {
                row,
                owner_name: "Ada \"Lovelace\"".into(),
                status: Some(term(4, "Running")),
                category: Some(term(5, "Soil")),
                steps: vec![
                    StepRow {
                        step_id: "s1".into(),
                        ordering: 0,
                        body: "Weigh \"it\"".into(),
                        done: true,
                        done_by: Some(7),
                        done_at: Some(1_700_000_050_000),
                    },
                    StepRow {
                        step_id: "s2".into(),
                        ordering: 1,
                        body: "Mix\tit".into(),
                        done: false,
                        done_by: None,
                        done_at: None,
                    },
                ],
                comments: vec![
                    (
                        CommentRow {
                            comment_id: "c1".into(),
                            author: 7,
                            created_at: 1_700_000_060_000,
                            edited_at: Some(1_700_000_070_000),
                            body: "<p>Looks <b>fine</b></p>".into(),
                        },
                        Some("Ada Lovelace".into()),
                    ),
                    (
                        CommentRow {
                            comment_id: "c2".into(),
                            author: 99,
                            created_at: 1_700_000_080_000,
                            edited_at: None,
                            body: "gone author".into(),
                        },
                        None,
                    ),
                ],
                links: vec![
                    link(10, "experiment"),
                    link(11, "resource"),
                    link(12, "experiment"),
                ],
                backlinks: vec![link(20, "resource"), link(21, "experiment")],
                timestamps: vec![stamp(2), stamp(1)],
            }
        };
        let bare = EntitySheet {
            row: row(2, false),
            owner_name: String::new(),
            status: None,
            category: None,
            steps: Vec::new(),
            comments: Vec::new(),
            links: Vec::new(),
            backlinks: Vec::new(),
            timestamps: Vec::new(),
        };
        let stock = super::super::stock::stock_state_json(&cahier_store::stock::StockRow {
            unit: "mL".into(),
            quantity_milli: 1_250,
            threshold_milli: Some(200),
        });
        let extras = |is_default, created_from, stock: Option<Value>, canbook| SheetExtras {
            is_default,
            created_from,
            stock,
            canbook,
            sharelink: "http://127.0.0.1:8080/experiments/1".into(),
        };
        let cases = [
            (
                EntityKind::Experiment,
                full(EntityKind::Experiment),
                extras(None, None, None, None),
            ),
            (
                EntityKind::Experiment,
                full(EntityKind::Experiment),
                extras(None, Some((3, 4)), None, None),
            ),
            (
                EntityKind::ExperimentTemplate,
                full(EntityKind::ExperimentTemplate),
                extras(Some(1), None, None, None),
            ),
            (
                EntityKind::Resource,
                full(EntityKind::Resource),
                extras(
                    None,
                    None,
                    Some(stock),
                    Some(AccessRule::base(BaseLevel::OwnerAndAdmins)),
                ),
            ),
            (
                EntityKind::Resource,
                full(EntityKind::Resource),
                extras(None, None, None, None),
            ),
            (EntityKind::Experiment, bare, extras(None, None, None, None)),
        ];
        for (kind, sheet, extras) in cases {
            let direct = write_sheet(&sheet, &extras).expect("sheet");
            let reference = serde_json::to_vec(&sheet_value(kind, &sheet, &extras)).expect("json");
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&reference),
                "{kind:?}"
            );
        }
    }
}
