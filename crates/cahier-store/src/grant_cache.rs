//! API keys' grants kept in memory, so an API request does not read the key, its user and the
//! user's memberships again each time (three statements of the eleven a single-entity `GET`
//! ran; BENCHMARKS.md, issue #7).
//!
//! Staleness is bounded by `auth_epoch` (migration 17): SQLite triggers bump it on every
//! change to keys, users, memberships, groups and teams, whichever process writes. Every
//! cached answer carries the epoch it was read at; whoever uses one either checks the epoch
//! first ([`Check::Now`], one tiny statement) or reads it as an extra column of a statement it
//! runs anyway and retries when it moved ([`Check::Deferred`], see
//! [`Store::entity_sheet`](crate::Store::entity_sheet)). When an epoch newer than the cache's
//! is seen, the whole cache is dropped. This module never decides access: it only remembers
//! what `authenticate_api_key` and `subject` returned.

use crate::accounts::ApiKeyGrant;
use crate::{Result, Store, sha256_hex};
use cahier_core::Subject;
use std::collections::HashMap;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Keys remembered at most; beyond, the cache starts afresh (a lab has a few dozen keys).
const MAX_KEYS: usize = 4096;

/// How a cached grant is confirmed before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Read the epoch now (one statement) and reload if it moved.
    Now,
    /// Return the cached grant with its epoch: the caller must read the epoch with its own
    /// first statement and authenticate again, with [`Check::Now`], if it moved.
    Deferred,
}

/// An API key's grant and its user's memberships, as of `epoch`.
#[derive(Debug, Clone)]
pub struct ApiAuth {
    /// What the key grants.
    pub grant: ApiKeyGrant,
    /// The key user's memberships, for the policy.
    pub subject: Subject,
    /// The `auth_epoch` both were read at; `None` when confirmed by a statement of this
    /// request (nothing left to check).
    pub unconfirmed_epoch: Option<i64>,
}

#[derive(Debug, Clone)]
struct CachedKey {
    secret_hash: String,
    grant: ApiKeyGrant,
    subject: Subject,
    last_used_at: Option<i64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The newest epoch seen; every entry was read at it.
    epoch: i64,
    keys: HashMap<i64, CachedKey>,
}

/// The cache itself, shared by the clones of a [`Store`].
#[derive(Debug, Default)]
pub(crate) struct GrantCache {
    inner: Mutex<Inner>,
}

impl GrantCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records that the database is at `epoch`: drops everything read before it.
    pub(crate) fn observe(&self, epoch: i64) {
        let mut inner = self.lock();
        // Not only forward: a database restored from a backup goes back in time.
        if epoch != inner.epoch {
            inner.keys.clear();
            inner.epoch = epoch;
        }
    }

    /// Drops everything (the database was put back to an older state: its epoch may reach
    /// the cached one again with other keys).
    pub(crate) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.keys.clear();
        inner.epoch = i64::MIN;
    }

    fn get(&self, key_id: i64) -> Option<(CachedKey, i64)> {
        let inner = self.lock();
        inner.keys.get(&key_id).map(|k| (k.clone(), inner.epoch))
    }

    fn put(&self, key_id: i64, entry: CachedKey, epoch: i64) {
        let mut inner = self.lock();
        if epoch > inner.epoch {
            inner.keys.clear();
            inner.epoch = epoch;
        }
        if epoch != inner.epoch {
            // Read before a change another request has already seen: not worth keeping.
            return;
        }
        if inner.keys.len() >= MAX_KEYS {
            inner.keys.clear();
        }
        inner.keys.insert(key_id, entry);
    }

    fn touch(&self, key_id: i64, now: i64) {
        if let Some(entry) = self.lock().keys.get_mut(&key_id) {
            entry.last_used_at = Some(now);
        }
    }
}

fn split_key(key: &str) -> Option<(i64, &str)> {
    let (id, secret) = key.trim().split_once('-')?;
    Some((id.parse().ok()?, secret))
}

impl Store {
    /// Checks an API key (`<id>-<secret>`) like [`Store::authenticate_api_key`], and returns
    /// its user's memberships too, from memory when nothing changed since they were read.
    /// `None` for an unknown or wrong key, or an archived user.
    pub async fn api_auth(&self, key: &str, check: Check) -> Result<Option<ApiAuth>> {
        let Some((key_id, secret)) = split_key(key) else {
            return Ok(None);
        };
        if let Some((cached, epoch)) = self.grants.get(key_id) {
            let confirmed = match check {
                Check::Deferred => true,
                Check::Now => {
                    let now_epoch = self.auth_epoch().await?;
                    self.grants.observe(now_epoch);
                    now_epoch == epoch
                }
            };
            if confirmed {
                if !bool::from(
                    sha256_hex(secret)
                        .as_bytes()
                        .ct_eq(cached.secret_hash.as_bytes()),
                ) {
                    return Ok(None);
                }
                self.stamp_key_use(key_id, cached.last_used_at).await?;
                return Ok(Some(ApiAuth {
                    grant: cached.grant,
                    subject: cached.subject,
                    unconfirmed_epoch: (check == Check::Deferred).then_some(epoch),
                }));
            }
        }
        self.load_api_auth(key_id, secret).await
    }

    /// Reads a key, its user and their memberships, and remembers them.
    async fn load_api_auth(&self, key_id: i64, secret: &str) -> Result<Option<ApiAuth>> {
        // The epoch is read first, in the key's own statement: a change after it makes the
        // entry look older than it is (a needless reload later), never newer.
        let row: Option<(i64, i64, String, bool, Option<i64>, i64)> = sqlx::query_as(
            "SELECT user_id, team_id, secret_hash, can_write, last_used_at, \
             (SELECT value FROM auth_epoch WHERE id = 1) FROM api_keys WHERE id = ?",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((user_id, team_id, secret_hash, can_write, last_used_at, epoch)) = row else {
            return Ok(None);
        };
        if !bool::from(sha256_hex(secret).as_bytes().ct_eq(secret_hash.as_bytes())) {
            return Ok(None);
        }
        let user = self.user(user_id).await?;
        if user.is_archived {
            return Ok(None);
        }
        let subject = self.subject(user_id).await?;
        let grant = ApiKeyGrant {
            key_id,
            user,
            team_id,
            can_write,
        };
        self.stamp_key_use(key_id, last_used_at).await?;
        self.grants.put(
            key_id,
            CachedKey {
                secret_hash,
                grant: grant.clone(),
                subject: subject.clone(),
                last_used_at: Some(self.now_ms()).max(last_used_at),
            },
            epoch,
        );
        Ok(Some(ApiAuth {
            grant,
            subject,
            unconfirmed_epoch: None,
        }))
    }

    /// Notes when a key was last used, at most once a minute: an UPDATE takes the database's
    /// single write lock even when it changes nothing (BENCHMARKS.md). It does not move the
    /// epoch (the trigger ignores `last_used_at`).
    async fn stamp_key_use(&self, key_id: i64, last_used_at: Option<i64>) -> Result<()> {
        let now = self.now_ms();
        if last_used_at.is_none_or(|at| at < now - 60_000) {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? \
                 AND (last_used_at IS NULL OR last_used_at < ?)",
            )
            .bind(now)
            .bind(key_id)
            .bind(now - 60_000)
            .execute(&self.pool)
            .await?;
            self.grants.touch(key_id, now);
        }
        Ok(())
    }

    /// The current `auth_epoch` (migration 17).
    pub async fn auth_epoch(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT value FROM auth_epoch WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
