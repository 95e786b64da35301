//! Lists and search over the projection: filters, sort, keyset or offset pagination, and
//! full-text search (SQLite FTS5). Never loads a document. Every query is filtered by
//! [`access_sql::readable_by`](crate::access_sql::readable_by).

use crate::entities::{EntityRow, row_from_sql};
use crate::field_filter::FieldPlan;
use crate::{Result, Store, invalid};
use cahier_core::{EntityKind, Subject};
use sqlx::{QueryBuilder, Sqlite};

/// Sort keys (eLabFTW's `order` values that apply here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Last change (default).
    #[default]
    LastChange,
    /// The entry's date.
    Date,
    /// Title.
    Title,
    /// Integer id (creation order).
    Id,
}

impl Order {
    /// Parses eLabFTW's names; unknown names are an error naming the parameter.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "lastchange" | "modified_at" => Ok(Self::LastChange),
            "date" => Ok(Self::Date),
            "title" => Ok(Self::Title),
            "id" | "created_at" => Ok(Self::Id),
            _ => Err(invalid("order", "expected lastchange, date, title or id")),
        }
    }
    fn column(self) -> &'static str {
        match self {
            Self::LastChange => "e.modified_at",
            Self::Date => "e.date",
            Self::Title => "e.title",
            Self::Id => "e.id",
        }
    }
    /// Name used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastChange => "lastchange",
            Self::Date => "date",
            Self::Title => "title",
            Self::Id => "id",
        }
    }
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Kind of entity.
    pub kind: EntityKind,
    /// Full-text search words.
    pub q: Option<String>,
    /// States to include (default: normal only).
    pub states: Vec<i64>,
    /// Status ids (any of).
    pub statuses: Vec<i64>,
    /// Category ids (any of).
    pub categories: Vec<i64>,
    /// Tags (all of).
    pub tags: Vec<String>,
    /// Owner ids (any of).
    pub owners: Vec<i64>,
    /// Only entries of this team.
    pub team: Option<i64>,
    /// Sort key.
    pub order: Order,
    /// Descending?
    pub descending: bool,
    /// Page size.
    pub limit: i64,
    /// Offset (API) — ignored when `after` is set.
    pub offset: i64,
    /// Keyset cursor from a previous page (UI).
    pub after: Option<String>,
    /// Metadata field filters (all of), parsed from `field:` terms by
    /// [`field_filter::parse`](crate::field_filter::parse).
    pub fields: Vec<crate::field_filter::FieldFilter>,
    /// The rest of an advanced query ([`crate::extended`]), if any.
    pub extended: Option<crate::extended::Expr>,
}

impl ListQuery {
    /// Defaults: normal entries, newest change first, 20 per page.
    pub fn new(kind: EntityKind) -> Self {
        Self {
            kind,
            q: None,
            states: vec![crate::entities::state::NORMAL],
            statuses: Vec::new(),
            categories: Vec::new(),
            tags: Vec::new(),
            owners: Vec::new(),
            team: None,
            order: Order::LastChange,
            descending: true,
            limit: 20,
            offset: 0,
            after: None,
            fields: Vec::new(),
            extended: None,
        }
    }
}

/// A page of results.
#[derive(Debug, Clone)]
pub struct Page {
    /// Rows.
    pub rows: Vec<EntityRow>,
    /// Cursor for the next page, if there is one.
    pub next: Option<String>,
}

/// Largest page served.
pub const MAX_LIMIT: i64 = 10_000;

/// The `replica_state` key set while the full-text index is in bulk mode
/// ([`Store::search_index_bulk`]).
pub const SEARCH_BULK: &str = "search_bulk";

/// Most segments of one level of a replica's full-text index before a write merges them
/// ([`Store::defer_search_merges`]).
pub const DEFERRED_CRISISMERGE: i64 = 16;

/// Index pages rewritten per step of [`Store::merge_search_segments`].
pub const MERGE_STEP_PAGES: i64 = 200;

/// Index pages rewritten per step when bulk mode ends (about 8 MiB of 16 KiB pages).
pub const BULK_MERGE_PAGES: i64 = 500;

/// How many of the most recently changed entries [`Store::tags_in_use`] counts tags on.
pub const TAGS_WINDOW: i64 = 200;

/// The match counts that choose how a search finds its rows. Below `small` matches, the
/// search is driven from the full-text index: the matches are read, their rows looked up and
/// sorted. From `large` matches on, the list index is walked in page order and each readable
/// row is looked up in the full-text index, which stops as soon as the page is full. In
/// between, the matches are read into a set first and the walk checks the set. Each plan is
/// the fastest in its range (figures in BENCHMARKS.md): a lookup costs tens of microseconds, so
/// it pays only when most rows match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// Fewer matches: driven by the matches.
    pub small: i64,
    /// At least this many: one lookup per walked row.
    pub large: i64,
}

impl Default for SearchLimits {
    fn default() -> Self {
        Self {
            small: 1_000,
            large: 20_000,
        }
    }
}

/// How a search query finds its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SearchPlan {
    /// Matches drive, rows are looked up (few matches).
    Driven,
    /// Matches are collected, the list walk checks them.
    InSet,
    /// The list walk looks each readable row up (many matches).
    Lookup,
}

/// Turns what a user typed into a safe FTS5 query: every word must appear as a whole word
/// (case and accents ignored); a word typed with a trailing `*` matches every word starting
/// with it; `soil-water` matches that joined word (indexed as one term, see
/// [`cahier_core::search_terms`]). Quotes keep FTS5 syntax out of user hands.
///
/// Whole words are the default because a prefix makes FTS5 merge the entries of every word
/// with that prefix before it can answer (7 ms for `sédiment*` at 100,000 entries against
/// 0.1 ms for `sédiment`); the list page offers the prefix search when whole words find nothing.
pub fn fts_query(input: &str) -> Option<String> {
    let words: Vec<String> = input
        .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '-' && c != '*')
        .filter_map(|w| {
            let prefix = w.ends_with('*');
            let word: String = w.chars().filter(|c| *c != '*').collect();
            let word = word.trim_matches(|c| c == '-' || c == '_');
            if !word.chars().any(char::is_alphanumeric) {
                return None;
            }
            let term =
                cahier_core::search_terms::joined_term(word).unwrap_or_else(|| word.to_owned());
            Some(format!("\"{term}\"{}", if prefix { "*" } else { "" }))
        })
        .take(16)
        .collect();
    if words.is_empty() {
        return None;
    }
    Some(words.join(" "))
}

/// Whether a search typed by a user asks for prefixes (a word ending in `*`).
pub fn has_prefix(input: &str) -> bool {
    input.contains('*')
}

fn cursor_value(row: &EntityRow, order: Order) -> String {
    match order {
        Order::LastChange => row.modified_at.to_string(),
        Order::Date => row.date.clone(),
        Order::Title => row.title.clone(),
        Order::Id => row.id.to_string(),
    }
}

fn encode_cursor(value: &str, id: i64) -> String {
    let mut s = format!("{id}:");
    s.push_str(&hex::encode(value.as_bytes()));
    s
}

fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let bad = || {
        invalid(
            "after",
            "this page link is no longer valid; start from the first page",
        )
    };
    let (id, value) = cursor.split_once(':').ok_or_else(bad)?;
    let id = id.parse().map_err(|_| bad())?;
    let value = String::from_utf8(hex::decode(value).map_err(|_| bad())?).map_err(|_| bad())?;
    Ok((id, value))
}

fn push_ids(builder: &mut QueryBuilder<Sqlite>, column: &str, ids: &[i64]) {
    builder.push(format!(" AND {column} IN ("));
    let mut separated = builder.separated(", ");
    for id in ids {
        separated.push_bind(*id);
    }
    builder.push(")");
}

impl Store {
    /// Lists entities the subject may read.
    pub async fn list_entities(&self, subject: &Subject, query: &ListQuery) -> Result<Page> {
        let limit = query.limit.clamp(1, MAX_LIMIT);
        let fts = query.q.as_deref().and_then(fts_query);
        if fts.is_some() || query.extended.is_some() {
            // Rows a pull left for later are written first (`search_pending`).
            self.search_current().await?;
        }
        let mut plan = SearchPlan::InSet;
        if let Some(fts) = &fts {
            // Bounded counts decide the plan: reading a few matches is cheap, reading 100,000
            // is not, and walking the whole list index to find 1 match is not either.
            let count = |limit: i64| {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM (SELECT rowid FROM entity_fts WHERE entity_fts MATCH ? LIMIT ?)",
                )
                .bind(fts.clone())
                .bind(limit)
                .fetch_one(&self.pool)
            };
            let limits = self.search_limits;
            let matches = count(limits.small).await?;
            if matches == 0 {
                return Ok(Page {
                    rows: Vec::new(),
                    next: None,
                });
            }
            plan = if matches < limits.small {
                SearchPlan::Driven
            } else if count(limits.large).await? < limits.large {
                SearchPlan::InSet
            } else {
                SearchPlan::Lookup
            };
        }
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT e.id, e.uuid, e.kind, e.team_id, e.owner_id, e.canread_base, e.canwrite_base, e.locked_by, \
             e.locked_at, e.state, e.elabid, e.created_at, e.modified_at, e.lastchangeby, e.title, e.date, e.body, \
             e.body_html, e.content_type, e.status_id, e.category_id, e.rating, e.tags_text, e.template_uuid, \
             e.metadata, e.heads, e.n_conflicts FROM ",
        );
        if let (SearchPlan::Driven, Some(fts)) = (plan, &fts) {
            // CROSS JOIN keeps SQLite from reordering: the matches drive, rows are looked up.
            builder.push("(SELECT rowid AS id FROM entity_fts WHERE entity_fts MATCH ");
            builder.push_bind(fts.clone());
            builder.push(") f CROSS JOIN entities e ON e.id = f.id");
        } else {
            builder.push("entities e");
        }
        builder.push(" WHERE e.kind = ");
        builder.push_bind(query.kind.as_str());
        // An advanced query that names states replaces the default (normal entries only).
        let states_in_query = query
            .extended
            .as_ref()
            .is_some_and(crate::extended::mentions_state);
        if !states_in_query {
            if query.states.is_empty() {
                builder.push(" AND e.state = 1");
            } else {
                push_ids(&mut builder, "e.state", &query.states);
            }
        }
        if let Some(expr) = &query.extended {
            builder.push(" AND ");
            crate::extended::push(&mut builder, expr);
        }
        if !query.statuses.is_empty() {
            push_ids(&mut builder, "e.status_id", &query.statuses);
        }
        if !query.categories.is_empty() {
            push_ids(&mut builder, "e.category_id", &query.categories);
        }
        if !query.owners.is_empty() {
            push_ids(&mut builder, "e.owner_id", &query.owners);
        }
        if let Some(team) = query.team {
            builder.push(" AND e.team_id = ").push_bind(team);
        }
        for tag in &query.tags {
            builder.push(
                " AND EXISTS (SELECT 1 FROM entity_tags t WHERE t.entity_id = e.id AND t.tag = ",
            );
            builder.push_bind(tag.clone()).push(")");
        }
        let mut field_plans = Vec::with_capacity(query.fields.len());
        for filter in &query.fields {
            let Some(plan) = self.field_plan(filter).await? else {
                return Ok(Page {
                    rows: Vec::new(),
                    next: None,
                });
            };
            if plan == FieldPlan::Few {
                crate::field_filter::push_planned(&mut builder, filter, plan);
            }
            field_plans.push(plan);
        }
        builder
            .push(" AND ")
            .push(crate::access_sql::readable_by(subject))
            .push(" AND ")
            .push(crate::access_sql::deleted_visible_to(subject));
        // Lookups per walked row come last, so only rows the subject may read pay for them.
        for (filter, plan) in query.fields.iter().zip(&field_plans) {
            if *plan == FieldPlan::Many {
                crate::field_filter::push_planned(&mut builder, filter, FieldPlan::Many);
            }
        }
        match (plan, &fts) {
            (SearchPlan::InSet, Some(fts)) => {
                builder.push(" AND e.id IN (SELECT rowid FROM entity_fts WHERE entity_fts MATCH ");
                builder.push_bind(fts.clone()).push(")");
            }
            (SearchPlan::Lookup, Some(fts)) => {
                // Last, so that only rows the subject may read are looked up in the index.
                builder.push(" AND EXISTS (SELECT 1 FROM entity_fts WHERE entity_fts MATCH ");
                builder.push_bind(fts.clone()).push(" AND rowid = e.id)");
            }
            _ => {}
        }
        let column = query.order.column();
        let direction = if query.descending { "DESC" } else { "ASC" };
        if let Some(after) = &query.after {
            let (id, value) = decode_cursor(after)?;
            let cmp = if query.descending { "<" } else { ">" };
            builder.push(format!(" AND ({column}, e.id) {cmp} ("));
            match query.order {
                Order::LastChange | Order::Id => {
                    let value: i64 = value
                        .parse()
                        .map_err(|_| invalid("after", "bad page link"))?;
                    builder.push_bind(value);
                }
                Order::Date | Order::Title => {
                    builder.push_bind(value);
                }
            }
            builder.push(", ").push_bind(id).push(")");
        }
        builder.push(format!(
            " ORDER BY {column} {direction}, e.id {direction} LIMIT "
        ));
        builder.push_bind(limit + 1);
        if query.after.is_none() && query.offset > 0 {
            builder.push(" OFFSET ").push_bind(query.offset);
        }
        let rows = builder.build().fetch_all(&self.pool).await?;
        let mut rows: Vec<EntityRow> = rows.iter().map(row_from_sql).collect::<Result<_>>()?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = if more {
            rows.last()
                .map(|row| encode_cursor(&cursor_value(row, query.order), row.id))
        } else {
            None
        };
        Ok(Page { rows, next })
    }

    /// Chooses how a field filter runs from a bounded count of its matches ([`SearchLimits`]):
    /// `None` when nothing matches.
    async fn field_plan(
        &self,
        filter: &crate::field_filter::FieldFilter,
    ) -> Result<Option<FieldPlan>> {
        let small = self.search_limits.small;
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new("");
        crate::field_filter::push_count(&mut builder, filter, small);
        let matches: i64 = builder.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(match matches {
            0 => None,
            n if n < small => Some(FieldPlan::Few),
            _ => Some(FieldPlan::Many),
        })
    }

    /// The subject's unfinished steps across entries they may read (dashboard).
    pub async fn unfinished_steps(
        &self,
        subject: &Subject,
        limit: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        let sql = format!(
            "SELECT e.id, e.title, s.body FROM entity_steps s JOIN entities e ON e.id = s.entity_id \
             WHERE NOT s.done AND e.state = 1 AND e.owner_id = ? AND {} ORDER BY e.modified_at DESC, s.ordering LIMIT ?",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(subject.user_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Tags in use on the [`TAGS_WINDOW`] most recently changed entries the subject may read,
    /// most used first (for the list page's filter). Counting over every readable entry cost a
    /// scan of the whole table on each list page (0.3 s at 100,000 entries, BENCHMARKS.md).
    pub async fn tags_in_use(
        &self,
        subject: &Subject,
        kind: EntityKind,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        let sql = format!(
            "SELECT t.tag, count(*) AS n FROM entity_tags t JOIN ( \
               SELECT e.id FROM entities e WHERE e.kind = ? AND e.state = 1 AND {} \
               ORDER BY e.modified_at DESC, e.id DESC LIMIT ?) r ON r.id = t.entity_id \
             GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT ?",
            crate::access_sql::readable_by(subject)
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(kind.as_str())
            .bind(TAGS_WINDOW)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// One bounded step of merging the full-text index towards a single segment, in its own
    /// short write transaction (about `pages` × 4 KB of index rewritten), so writers wait at
    /// most a few milliseconds. Returns whether there was work; call again until `false`.
    /// New entries land in small segments that SQLite merges among themselves; every lookup
    /// visits each segment, which is what this keeps few.
    pub async fn tidy_search_index(&self, pages: i64) -> Result<bool> {
        // A negative page count merges segments of every level (an incremental 'optimize').
        self.merge_search_step(-pages.max(1)).await
    }

    /// Starts or ends the full-text index's bulk mode, for a replica's first copy: in bulk
    /// mode each pull batch's new segment is kept as written instead of being merged into the
    /// others as it comes (SQLite's `automerge`, which rewrote the growing index again and
    /// again during a copy, and left a large merge to the first write after it). Ending it
    /// merges the whole index, in steps of [`BULK_MERGE_PAGES`] pages each in its own short
    /// write transaction (writers go on in between), then restores the usual merging. The
    /// setting is kept in the database, and `replica_state` notes that bulk mode is on until
    /// it ends: `replica serve` ends it in the background after a sync, `replica init` and
    /// `replica sync` before they exit (the search finds everything meanwhile; each lookup
    /// visits every segment).
    pub async fn search_index_bulk(&self, on: bool) -> Result<()> {
        if !on {
            self.index_pending_search().await?;
            while self.tidy_search_index(BULK_MERGE_PAGES).await? {}
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Beyond this many segments on one level SQLite merges that level at once: high
        // enough for a copy of 100,000 entries in pull batches of 1,000. Once the copy is
        // merged, a replica keeps merging for later ([`Store::defer_search_merges`]).
        let (automerge, crisismerge) = if on {
            (0, 400)
        } else {
            self.usual_search_merging()
        };
        set_search_merging(&mut tx, automerge, crisismerge).await?;
        crate::replica::set_state_flag(&mut tx, SEARCH_BULK, on).await?;
        tx.commit().await?;
        Ok(())
    }

    /// SQLite's merging of the full-text index as this store keeps it outside bulk mode
    /// (`automerge`, `crisismerge`): a lab server merges as it writes (SQLite's default); a
    /// replica never does, and merges afterwards instead ([`Store::defer_search_merges`]).
    fn usual_search_merging(&self) -> (i64, i64) {
        if self.is_replica() {
            (0, DEFERRED_CRISISMERGE)
        } else {
            (4, 16)
        }
    }

    /// Makes a replica's writes leave the merging of the full-text index's segments for later
    /// ([`Store::merge_search_segments`]), unless bulk mode is on; nothing to do on a lab
    /// server, or when already so (a read, no write).
    ///
    /// With SQLite's `automerge`, a write transaction that adds a segment to a level holding
    /// four also merges part of that level, the cost growing with the index: measured on the
    /// replica of `cahier bench-sync` (10,000 entries), one pull batch of 500 edits in two or
    /// three took 100–250 ms more for that merging, inside the sync. Without it each write adds
    /// its segment; past [`DEFERRED_CRISISMERGE`] segments on one level SQLite still merges
    /// them at once, so lookups never visit more than that many per level.
    pub async fn defer_search_merges(&self) -> Result<()> {
        if !self.is_replica() {
            return Ok(());
        }
        let bulk: Option<String> =
            sqlx::query_scalar("SELECT value FROM replica_state WHERE key = ?")
                .bind(SEARCH_BULK)
                .fetch_optional(&self.pool)
                .await?;
        if bulk.is_some() {
            return Ok(());
        }
        let (automerge, crisismerge) = self.usual_search_merging();
        let stored: Vec<(String, i64)> = sqlx::query_as(
            "SELECT k, v FROM entity_fts_config WHERE k IN ('automerge', 'crisismerge')",
        )
        .fetch_all(&self.pool)
        .await?;
        let value = |key: &str| stored.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
        if value("automerge") == Some(automerge) && value("crisismerge") == Some(crisismerge) {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        set_search_merging(&mut tx, automerge, crisismerge).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Merges the full-text index's segments as SQLite's `automerge` would have while writing
    /// (a level holding four or more segments is merged into one of the next level), in steps
    /// of [`MERGE_STEP_PAGES`] pages each in its own short write transaction, until no level
    /// needs it. What a replica runs once a sync or a series of saves is over
    /// ([`Store::defer_search_merges`]). Returns the number of steps that merged something.
    pub async fn merge_search_segments(&self) -> Result<usize> {
        // First the rows pulls left for later (`search_pending`), then their segments merged.
        self.index_pending_search().await?;
        let mut steps = 0;
        // A positive page count merges only a level with `usermerge` (4) segments or more,
        // or carries on a merge already begun.
        while self.merge_search_step(MERGE_STEP_PAGES).await? {
            steps += 1;
        }
        Ok(steps)
    }

    /// One step of FTS5's `merge` command with `rank` (pages to write: positive, only levels
    /// that need it, as `automerge` would; negative, every level) in its own short write
    /// transaction: whether it merged something.
    async fn merge_search_step(&self, rank: i64) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let before: i64 = sqlx::query_scalar("SELECT total_changes()")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO entity_fts (entity_fts, rank) VALUES ('merge', ?)")
            .bind(rank)
            .execute(&mut *tx)
            .await?;
        let after: i64 = sqlx::query_scalar("SELECT total_changes()")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        // SQLite documents fewer than 2 changes as "nothing was merged".
        Ok(after - before >= 2)
    }

    /// Ends the search index's bulk mode if it is on ([`Store::search_index_bulk`]); whether
    /// it was.
    pub async fn finish_search_bulk(&self) -> Result<bool> {
        let on: Option<String> =
            sqlx::query_scalar("SELECT value FROM replica_state WHERE key = ?")
                .bind(SEARCH_BULK)
                .fetch_optional(&self.pool)
                .await?;
        if on.is_none() {
            return Ok(false);
        }
        self.search_index_bulk(false).await?;
        Ok(true)
    }

    /// A number that changes whenever an entity does (to tell whether the search index needs
    /// tidying since last time).
    pub async fn change_counter(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT value FROM sync_counter WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Counts for `GET /info`.
    pub async fn instance_counts(&self) -> Result<(i64, i64, i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM teams), \
             (SELECT count(*) FROM entities WHERE kind = 'experiment'), (SELECT count(*) FROM entities WHERE kind = 'resource')",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

/// Sets SQLite's merging of the full-text index (`automerge`, `crisismerge`).
pub(crate) async fn set_search_merging(
    tx: &mut sqlx::SqliteConnection,
    automerge: i64,
    crisismerge: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO entity_fts (entity_fts, rank) VALUES ('automerge', ?)")
        .bind(automerge)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO entity_fts (entity_fts, rank) VALUES ('crisismerge', ?)")
        .bind(crisismerge)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_are_quoted_words() {
        assert_eq!(fts_query("soil  pH"), Some("\"soil\" \"pH\"".into()));
        assert_eq!(fts_query("sédim*"), Some("\"sédim\"*".into()));
        assert_eq!(fts_query("batch-8 *"), Some("\"batch\u{E000}8\"".into()));
        assert_eq!(
            fts_query("\"); DROP TABLE x; --"),
            Some("\"DROP\" \"TABLE\" \"x\"".into())
        );
        assert_eq!(fts_query("  -- * "), None);
    }

    #[test]
    fn cursors_round_trip() {
        let c = encode_cursor("2026-11-29", 42);
        assert_eq!(decode_cursor(&c).ok(), Some((42, "2026-11-29".into())));
        assert!(decode_cursor("garbage").is_err());
    }
}
