//! The audit log: one hash-chained, append-only record of every server-side action (sign-in,
//! access rules, locks, timestamps, deletions, admin actions, devices, sync). [`append`] is the
//! only way in; callers that write the database call it inside the transaction of the action,
//! so an action never lands without its entry. Reading (the admin page) and checking the chain
//! (`cahier verify`) live here too. This module never decides who may do what.
//!
//! The hash of an entry — frozen, `docs/TRACEABILITY.md` describes it for outside checkers — is
//! the SHA-256 (lowercase hex) of the canonical JSON ([`cahier_core::trace::canonical_json`]) of
//! `{"action", "actor", "at", "details", "device", "ip", "prev", "seq", "target_id",
//! "target_type"}`, where `details` is the stored details text as a JSON string, `prev` is the
//! previous entry's hash (64 zeros for entry 1) and absent values are `null`.

use crate::{Result, Store};
use cahier_core::trace::canonical_json;
use serde_json::{Value, json};
use sha2::Digest;
use sqlx::{Row, SqliteConnection};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The actions the log records (the `action` column).
pub mod action {
    /// A user signed in to the web interface.
    pub const SIGN_IN: &str = "auth.sign_in";
    /// A sign-in (or device registration) was refused.
    pub const SIGN_IN_FAILED: &str = "auth.sign_in_failed";
    /// A user signed out.
    pub const SIGN_OUT: &str = "auth.sign_out";
    /// An entity's access rules changed.
    pub const ACCESS: &str = "entity.access";
    /// An entity was locked.
    pub const LOCK: &str = "entity.lock";
    /// An entity was unlocked.
    pub const UNLOCK: &str = "entity.unlock";
    /// An entity was deleted (soft).
    pub const DELETE: &str = "entity.delete";
    /// An entity was restored, archived or unarchived (`details.state`).
    pub const STATE: &str = "entity.state";
    /// An entity was given to another owner, or moved to another team (`details`).
    pub const OWNER: &str = "entity.owner";
    /// A trusted timestamp of an entity version was recorded.
    pub const TIMESTAMP: &str = "entity.timestamp";
    /// An entity version was signed.
    pub const SIGN: &str = "entity.sign";
    /// A user made (or replaced) their signing key.
    pub const SIGN_KEY: &str = "user.signing_key";
    /// An entity was exported.
    pub const EXPORT: &str = "entity.export";
    /// A replica device was registered.
    pub const DEVICE_REGISTER: &str = "device.register";
    /// A replica device was revoked.
    pub const DEVICE_REVOKE: &str = "device.revoke";
    /// Pushed changes were accepted.
    pub const SYNC_ACCEPT: &str = "sync.accept";
    /// Pushed changes were refused and quarantined.
    pub const SYNC_REJECT: &str = "sync.reject";
    /// An API key was made.
    pub const KEY_CREATE: &str = "apikey.create";
    /// An API key was revoked.
    pub const KEY_DELETE: &str = "apikey.delete";
    /// A password was changed or reset (every other session of the account ends).
    pub const PASSWORD: &str = "user.password";
    /// An administrator's action on users, teams or settings (`details.what`).
    pub const ADMIN: &str = "admin";
    /// The chain's head was timestamped by the TSA.
    pub const ANCHOR: &str = "audit.anchor";
    /// A sysadmin set, changed or removed the timestamping authority (never the password).
    pub const TSA_CONFIGURE: &str = "tsa.configure";

    /// Every action, for the filter of the admin page.
    pub const ALL: &[&str] = &[
        SIGN_IN,
        SIGN_IN_FAILED,
        SIGN_OUT,
        ACCESS,
        LOCK,
        UNLOCK,
        DELETE,
        STATE,
        OWNER,
        TIMESTAMP,
        SIGN,
        SIGN_KEY,
        EXPORT,
        KEY_CREATE,
        KEY_DELETE,
        PASSWORD,
        DEVICE_REGISTER,
        DEVICE_REVOKE,
        SYNC_ACCEPT,
        SYNC_REJECT,
        ADMIN,
        ANCHOR,
        TSA_CONFIGURE,
    ];
}

/// An action to record.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who acted (`None`: the system or an unknown account).
    pub actor: Option<i64>,
    /// The sync device that acted.
    pub device: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// One of [`action`].
    pub action: &'static str,
    /// What it happened to: `entity`, `user`, `team`, `device`, `audit` …
    pub target_type: &'static str,
    /// Its id.
    pub target_id: String,
    /// Particulars (an object; never a secret).
    pub details: Value,
}

impl AuditEvent {
    /// An action by `actor` on `target_type` `target_id`, without details.
    pub fn new(
        actor: Option<i64>,
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
    ) -> Self {
        Self {
            actor,
            device: None,
            ip: None,
            action,
            target_type,
            target_id: target_id.to_string(),
            details: json!({}),
        }
    }

    /// With these particulars.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// With the client's address (`direct`, the web layer's word for "no proxy told us", and
    /// empty strings are left out).
    pub fn ip(mut self, ip: Option<&str>) -> Self {
        self.ip = ip
            .filter(|ip| !ip.is_empty() && *ip != "direct")
            .map(str::to_owned);
        self
    }

    /// With the acting device.
    pub fn device(mut self, device: &str) -> Self {
        self.device = Some(device.to_owned());
        self
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Server time, ms.
    pub at: i64,
    /// Who acted.
    pub actor_id: Option<i64>,
    /// The acting device.
    pub device: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// What happened.
    pub action: String,
    /// Target type.
    pub target_type: String,
    /// Target id.
    pub target_id: String,
    /// Canonical JSON particulars.
    pub details: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl AuditEntry {
    /// The hash this entry should have (module docs), whatever its stored `hash` says.
    pub fn computed_hash(&self) -> String {
        let value = json!({
            "action": self.action,
            "actor": self.actor_id,
            "at": self.at,
            "details": self.details,
            "device": self.device,
            "ip": self.ip,
            "prev": self.prev_hash,
            "seq": self.seq,
            "target_id": self.target_id,
            "target_type": self.target_type,
        });
        hex::encode(sha2::Sha256::digest(canonical_json(&value)))
    }
}

/// Appends one entry after the current head, on `conn`, which must be inside a write
/// transaction (`BEGIN IMMEDIATE`): SQLite's single writer then keeps the chain linear.
pub(crate) async fn append(
    conn: &mut SqliteConnection,
    at: i64,
    event: &AuditEvent,
) -> Result<AuditEntry> {
    let head = head(conn).await?;
    let entry = chained(head, at, event);
    insert(conn, std::slice::from_ref(&entry)).await?;
    Ok(entry)
}

/// Appends `events`, in order, after the current head: exactly the entries (and hashes) that
/// as many calls of [`append`] would write, in one read and a few multi-row inserts. Same
/// transaction rule as [`append`].
pub(crate) async fn append_all(
    conn: &mut SqliteConnection,
    at: i64,
    events: &[AuditEvent],
) -> Result<Vec<AuditEntry>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut last = head(conn).await?;
    let mut entries = Vec::with_capacity(events.len());
    for event in events {
        let entry = chained(last, at, event);
        last = Some((entry.seq, entry.hash.clone()));
        entries.push(entry);
    }
    // 11 parameters a row: well under SQLite's limit of 32,766 per statement.
    for chunk in entries.chunks(500) {
        insert(conn, chunk).await?;
    }
    Ok(entries)
}

/// The chain's last entry: seq and hash.
async fn head(conn: &mut SqliteConnection) -> Result<Option<(i64, String)>> {
    Ok(
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// The entry recording `event` after `head` (`None`: the chain is empty).
fn chained(head: Option<(i64, String)>, at: i64, event: &AuditEvent) -> AuditEntry {
    let (seq, prev_hash) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_owned()),
    };
    let details = match &event.details {
        Value::Null => "{}".to_owned(),
        other => String::from_utf8_lossy(&canonical_json(other)).into_owned(),
    };
    let mut entry = AuditEntry {
        seq,
        at,
        actor_id: event.actor,
        device: event.device.clone(),
        ip: event.ip.clone(),
        action: event.action.to_owned(),
        target_type: event.target_type.to_owned(),
        target_id: event.target_id.clone(),
        details,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.computed_hash();
    entry
}

/// Inserts computed entries, in one statement.
async fn insert(conn: &mut SqliteConnection, entries: &[AuditEntry]) -> Result<()> {
    let mut query = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO audit_log (seq, at, actor_id, device, ip, action, target_type, target_id, \
         details, prev_hash, hash) ",
    );
    query.push_values(entries, |mut row, entry| {
        row.push_bind(entry.seq)
            .push_bind(entry.at)
            .push_bind(entry.actor_id)
            .push_bind(entry.device.clone())
            .push_bind(entry.ip.clone())
            .push_bind(entry.action.clone())
            .push_bind(entry.target_type.clone())
            .push_bind(entry.target_id.clone())
            .push_bind(entry.details.clone())
            .push_bind(entry.prev_hash.clone())
            .push_bind(entry.hash.clone());
    });
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// What the admin page asks for; every part optional. Newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exactly this action.
    pub action: Option<String>,
    /// By this user.
    pub actor_id: Option<i64>,
    /// On this target type …
    pub target_type: Option<String>,
    /// … and this id.
    pub target_id: Option<String>,
    /// At or after, ms.
    pub from_ms: Option<i64>,
    /// Before, ms.
    pub to_ms: Option<i64>,
    /// Entries before this seq (the next page).
    pub before_seq: Option<i64>,
}

/// The result of walking the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries checked.
    pub checked: i64,
    /// The last entry's seq and hash.
    pub head: Option<(i64, String)>,
    /// `(seq, reason)` of every entry that breaks the chain.
    pub broken: Vec<(i64, String)>,
    /// When the walk started from a checkpoint ([`Store::verify_audit_chain_since_checkpoint`]):
    /// the seq of the last entry verified earlier (entries up to it were not re-read).
    pub from_checkpoint: Option<i64>,
}

impl ChainReport {
    /// Whether the chain holds.
    pub fn is_ok(&self) -> bool {
        self.broken.is_empty()
    }
}

/// A stored anchor: a trusted timestamp of the chain's head.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditAnchor {
    /// Id.
    pub id: i64,
    /// The head's seq when stamped.
    pub seq: i64,
    /// The head's hash (the stamped bytes, as ASCII hex).
    pub head_hash: String,
    /// `sha256` or `sha512`.
    pub hash_alg: String,
    /// The token's genTime, ms.
    pub gen_time_ms: i64,
    /// The TSA's name.
    pub tsa_name: String,
    /// DER TimeStampResp.
    pub token: Vec<u8>,
    /// PEM certificates from the token.
    pub chain: Vec<u8>,
    /// When stored, ms.
    pub created_at: i64,
}

/// An anchor to store.
#[derive(Debug, Clone)]
pub struct NewAnchor {
    /// The stamped head's seq.
    pub seq: i64,
    /// The stamped head's hash.
    pub head_hash: String,
    /// `sha256` or `sha512`.
    pub hash_alg: String,
    /// genTime, ms.
    pub gen_time_ms: i64,
    /// The TSA's name.
    pub tsa_name: String,
    /// DER TimeStampResp.
    pub token: Vec<u8>,
    /// PEM chain.
    pub chain: Vec<u8>,
}

const PAGE: i64 = 50;
const COLUMNS: &str =
    "seq, at, actor_id, device, ip, action, target_type, target_id, details, prev_hash, hash";

impl Store {
    /// Records an action that has no transaction of its own to join (or whose caller is
    /// outside the store): one short write transaction.
    pub async fn audit(&self, event: AuditEvent) -> Result<AuditEntry> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let entry = append(&mut tx, self.now_ms(), &event).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// One page of entries matching `filter`, newest first, and whether older ones follow.
    /// Sysadmins only: the caller checks.
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<(Vec<AuditEntry>, bool)> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1");
        if filter.action.is_some() {
            sql.push_str(" AND action = ?");
        }
        if filter.actor_id.is_some() {
            sql.push_str(" AND actor_id = ?");
        }
        if filter.target_type.is_some() {
            sql.push_str(" AND target_type = ?");
        }
        if filter.target_id.is_some() {
            sql.push_str(" AND target_id = ?");
        }
        if filter.from_ms.is_some() {
            sql.push_str(" AND at >= ?");
        }
        if filter.to_ms.is_some() {
            sql.push_str(" AND at < ?");
        }
        if filter.before_seq.is_some() {
            sql.push_str(" AND seq < ?");
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        let mut query = sqlx::query_as::<_, AuditEntry>(sqlx::AssertSqlSafe(sql));
        if let Some(action) = &filter.action {
            query = query.bind(action);
        }
        if let Some(actor) = filter.actor_id {
            query = query.bind(actor);
        }
        if let Some(target_type) = &filter.target_type {
            query = query.bind(target_type);
        }
        if let Some(target_id) = &filter.target_id {
            query = query.bind(target_id);
        }
        if let Some(from) = filter.from_ms {
            query = query.bind(from);
        }
        if let Some(to) = filter.to_ms {
            query = query.bind(to);
        }
        if let Some(before) = filter.before_seq {
            query = query.bind(before);
        }
        let mut rows = query.bind(PAGE + 1).fetch_all(&self.pool).await?;
        let more = rows.len() as i64 > PAGE;
        rows.truncate(PAGE as usize);
        Ok((rows, more))
    }

    /// The chain's last entry.
    pub async fn audit_head(&self) -> Result<Option<AuditEntry>> {
        Ok(sqlx::query_as::<_, AuditEntry>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Walks the whole chain in order: seqs run 1, 2, 3 …, each `prev_hash` is the previous
    /// hash, and each hash is the recomputed one. Reads in batches, so memory stays flat.
    /// (`cahier verify` runs this.)
    pub async fn verify_audit_chain(&self) -> Result<ChainReport> {
        self.walk_chain(ChainReport::default(), 1, GENESIS.to_owned(), 0)
            .await
    }

    /// What the admin page runs on each load: checks only the entries after the last verified
    /// checkpoint (seq and hash, kept in `instance_settings` as `audit_verified`), after
    /// checking that the checkpoint entry is still there, still hashes to its hash, and that no
    /// entry before it went missing; then moves the checkpoint to the head when all holds.
    /// A change to an entry *before* the checkpoint is not seen here: the full walk
    /// ([`Store::verify_audit_chain`], `cahier verify`) finds it.
    pub async fn verify_audit_chain_since_checkpoint(&self) -> Result<ChainReport> {
        let checkpoint: Option<String> =
            sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = 'audit_verified'")
                .fetch_optional(&self.pool)
                .await?;
        let parsed = checkpoint.as_deref().and_then(|value| {
            let (seq, hash) = value.split_once(':')?;
            Some((seq.parse::<i64>().ok()?, hash.to_owned()))
        });
        let report = match parsed {
            None => self.verify_audit_chain().await?,
            Some((seq, hash)) => {
                let mut report = ChainReport {
                    from_checkpoint: Some(seq),
                    ..ChainReport::default()
                };
                let entry = self.audit_entry(seq).await?;
                let below: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE seq <= ?")
                        .bind(seq)
                        .fetch_one(&self.pool)
                        .await?;
                match entry {
                    Some(entry) if entry.hash == hash && entry.computed_hash() == hash => {}
                    _ => report.broken.push((
                        seq,
                        "the last verified entry was changed or removed since it was verified"
                            .into(),
                    )),
                }
                if below != seq {
                    report.broken.push((
                        seq,
                        format!(
                            "{} entries up to here went missing since they were verified",
                            seq - below
                        ),
                    ));
                }
                report.head = Some((seq, hash.clone()));
                self.walk_chain(report, seq + 1, hash, seq).await?
            }
        };
        if report.is_ok()
            && let Some((seq, hash)) = &report.head
        {
            sqlx::query(
                "INSERT INTO instance_settings (key, value) VALUES ('audit_verified', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(format!("{seq}:{hash}"))
            .execute(&self.pool)
            .await?;
        }
        Ok(report)
    }

    async fn walk_chain(
        &self,
        mut report: ChainReport,
        mut expected_seq: i64,
        mut prev: String,
        mut after: i64,
    ) -> Result<ChainReport> {
        loop {
            let rows = sqlx::query_as::<_, AuditEntry>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT 1000"
            )))
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            for entry in rows {
                report.checked += 1;
                if entry.seq != expected_seq {
                    report.broken.push((
                        entry.seq,
                        format!("expected entry {expected_seq} here: entries are missing"),
                    ));
                }
                if entry.prev_hash != prev {
                    report.broken.push((
                        entry.seq,
                        "does not follow the previous entry (prev_hash differs)".into(),
                    ));
                }
                if entry.computed_hash() != entry.hash {
                    report.broken.push((
                        entry.seq,
                        "its content does not match its hash (changed after it was written)".into(),
                    ));
                }
                expected_seq = entry.seq + 1;
                prev = entry.hash.clone();
                report.head = Some((entry.seq, entry.hash));
            }
        }
        Ok(report)
    }

    /// The entry at `seq`.
    pub async fn audit_entry(&self, seq: i64) -> Result<Option<AuditEntry>> {
        Ok(sqlx::query_as::<_, AuditEntry>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq = ?"
        )))
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores an anchor and records it in the log, in one transaction.
    pub async fn record_audit_anchor(&self, new: NewAnchor) -> Result<i64> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_anchors (seq, head_hash, hash_alg, gen_time_ms, tsa_name, token, \
             chain, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.seq)
        .bind(&new.head_hash)
        .bind(&new.hash_alg)
        .bind(new.gen_time_ms)
        .bind(&new.tsa_name)
        .bind(&new.token)
        .bind(&new.chain)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        append(
            &mut tx,
            now,
            &AuditEvent::new(None, action::ANCHOR, "audit", new.seq).details(json!({
                "anchor": id,
                "head_hash": new.head_hash,
                "gen_time_ms": new.gen_time_ms,
                "tsa": new.tsa_name,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every anchor, oldest first.
    pub async fn audit_anchors(&self) -> Result<Vec<AuditAnchor>> {
        Ok(sqlx::query_as::<_, AuditAnchor>(
            "SELECT id, seq, head_hash, hash_alg, gen_time_ms, tsa_name, token, chain, created_at \
             FROM audit_anchors ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// When the last anchor was stored, ms.
    pub async fn last_audit_anchor_at(&self) -> Result<Option<i64>> {
        let at: Option<i64> = sqlx::query("SELECT max(created_at) FROM audit_anchors")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(at)
    }
}
