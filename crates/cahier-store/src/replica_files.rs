//! Which attachment files a field replica keeps (issue #5, docs/SYNC.md "Files kept on the
//! laptop"). Documents always sync whole; this module decides only which file contents are
//! held: all of them (the default), those of chosen teams, or those of entries pinned
//! "available offline" on this device. It lists the files to fetch and the files that may be
//! dropped, and never lets a file go that a local change still needs: a file attached offline
//! stays until the server has acknowledged the change that attaches it.
//!
//! It must not talk to the server (the sync engine does) nor decide who may read an entry (the
//! replica only holds what its user may read; pinning goes through the access policy).

use crate::{Result, Store, StoreError, invalid};
use std::collections::BTreeSet;

/// Replica setting holding the file policy.
const POLICY_KEY: &str = "files";
/// How long a file fetched on demand is kept although the policy does not select it, ms.
pub const FETCHED_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// Which attachment files a replica keeps on the laptop.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FilePolicy {
    /// Every file the user may read (the default).
    #[default]
    All,
    /// Only the files of entries pinned "available offline".
    Pinned,
    /// Only the files of these teams' entries (names or ids as given), plus pinned entries.
    Teams(Vec<String>),
}

impl FilePolicy {
    /// Parses `all`, `pinned` or `teams=Ecology,Botany` (names or ids, comma-separated).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if lower == "all" {
            return Ok(Self::All);
        }
        if lower == "pinned" {
            return Ok(Self::Pinned);
        }
        if let Some(list) = lower
            .strip_prefix("teams=")
            .or_else(|| lower.strip_prefix("teams:"))
            .map(|_| &text[6..])
        {
            let teams: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if teams.is_empty() {
                return Err(invalid(
                    "files",
                    "name at least one team after teams=, e.g. teams=Ecology,Botany",
                ));
            }
            return Ok(Self::Teams(teams));
        }
        Err(invalid(
            "files",
            format!("`{text}` is not a file policy: use all, pinned or teams=Team1,Team2"),
        ))
    }

    /// The stored and printed form (`all`, `pinned`, `teams=A,B`).
    pub fn as_setting(&self) -> String {
        match self {
            Self::All => "all".to_owned(),
            Self::Pinned => "pinned".to_owned(),
            Self::Teams(teams) => format!("teams={}", teams.join(",")),
        }
    }
}

impl std::fmt::Display for FilePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_setting())
    }
}

/// How many distinct files the replica's entries reference, and how many are on the laptop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Files on this laptop.
    pub held: usize,
    /// Files referenced but not on this laptop (fetched on demand when online).
    pub not_held: usize,
}

impl Store {
    /// The replica's file policy (`all` when never set).
    pub async fn file_policy(&self) -> Result<FilePolicy> {
        match self.replica_get(POLICY_KEY).await? {
            Some(text) => FilePolicy::parse(&text),
            None => Ok(FilePolicy::All),
        }
    }

    /// Sets the file policy. Teams must be known to the replica (its user's teams, by name or
    /// id); they are stored by name. Files are fetched or dropped at the next sync.
    pub async fn set_file_policy(&self, policy: &FilePolicy) -> Result<FilePolicy> {
        let policy = match policy {
            FilePolicy::Teams(given) => {
                let known: Vec<(i64, String)> =
                    sqlx::query_as("SELECT id, name FROM teams ORDER BY name")
                        .fetch_all(&self.pool)
                        .await?;
                let mut names = Vec::new();
                for team in given {
                    let found = known.iter().find(|(id, name)| {
                        name.eq_ignore_ascii_case(team) || id.to_string() == *team
                    });
                    match found {
                        Some((_, name)) if !names.contains(name) => names.push(name.clone()),
                        Some(_) => {}
                        None => {
                            let list: Vec<&str> = known.iter().map(|(_, n)| n.as_str()).collect();
                            return Err(invalid(
                                "files",
                                format!(
                                    "no team `{team}` on this field copy; its teams are: {}",
                                    list.join(", ")
                                ),
                            ));
                        }
                    }
                }
                FilePolicy::Teams(names)
            }
            other => other.clone(),
        };
        self.replica_set(POLICY_KEY, &policy.as_setting()).await?;
        Ok(policy)
    }

    /// Pins an entry "available offline" on this device (idempotent).
    pub async fn pin_entity(&self, uuid: &str) -> Result<()> {
        sqlx::query("INSERT INTO replica_pins (entity_uuid, pinned_at) VALUES (?, ?) ON CONFLICT (entity_uuid) DO NOTHING")
            .bind(uuid)
            .bind(self.now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Unpins an entry; its files are dropped at the next sync unless the policy keeps them or
    /// a local change still needs them.
    pub async fn unpin_entity(&self, uuid: &str) -> Result<()> {
        sqlx::query("DELETE FROM replica_pins WHERE entity_uuid = ?")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether an entry is pinned on this device.
    pub async fn is_pinned(&self, uuid: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM replica_pins WHERE entity_uuid = ?")
            .bind(uuid)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// UUIDs of the pinned entries.
    pub async fn pinned_uuids(&self) -> Result<BTreeSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT entity_uuid FROM replica_pins")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// The pinned entries held here: (id, kind, title), by title.
    pub async fn pinned_entries(&self) -> Result<Vec<(i64, cahier_core::EntityKind, String)>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT e.id, e.kind, e.title FROM entities e JOIN replica_pins p ON p.entity_uuid = e.uuid ORDER BY e.title",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, kind, title)| {
                cahier_core::EntityKind::parse(&kind).map(|kind| (id, kind, title))
            })
            .collect())
    }

    /// Records a file fetched on demand: it is kept for [`FETCHED_KEEP_MS`].
    pub async fn record_fetched(&self, sha256: &str) -> Result<()> {
        sqlx::query("INSERT INTO replica_fetched (sha256, fetched_at) VALUES (?, ?) ON CONFLICT (sha256) DO UPDATE SET fetched_at = excluded.fetched_at")
            .bind(sha256)
            .bind(self.now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every distinct file hash the replica's entries reference.
    async fn referenced_hashes(&self) -> Result<BTreeSet<String>> {
        let rows: Vec<String> = sqlx::query_scalar("SELECT DISTINCT sha256 FROM uploads")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// The files the policy selects: every referenced file under `all`; otherwise those of
    /// pinned entries and, under `teams=`, of those teams' entries.
    pub async fn wanted_blobs(&self) -> Result<BTreeSet<String>> {
        let policy = self.file_policy().await?;
        if policy == FilePolicy::All {
            return self.referenced_hashes().await;
        }
        let mut wanted: BTreeSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT u.sha256 FROM uploads u JOIN entities e ON e.id = u.entity_id \
             JOIN replica_pins p ON p.entity_uuid = e.uuid",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        if let FilePolicy::Teams(teams) = &policy {
            let names = serde_json::to_string(teams)
                .map_err(|e| StoreError::Conflict(format!("file policy: {e}")))?;
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT u.sha256 FROM uploads u JOIN entities e ON e.id = u.entity_id \
                 JOIN teams t ON t.id = e.team_id WHERE t.name IN (SELECT value FROM json_each(?))",
            )
            .bind(names)
            .fetch_all(&self.pool)
            .await?;
            wanted.extend(rows);
        }
        Ok(wanted)
    }

    /// Files that must stay whatever the policy: those of entities with local changes the
    /// server has not acknowledged (a file attached offline lives only here until then), and
    /// files fetched on demand within [`FETCHED_KEEP_MS`].
    async fn protected_blobs(&self) -> Result<BTreeSet<String>> {
        let mut protected: BTreeSet<String> = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT u.sha256 FROM uploads u JOIN entities e ON e.id = u.entity_id \
             JOIN entity_docs d ON d.entity_id = e.id LEFT JOIN replica_entities r ON r.entity_id = e.id \
             WHERE r.acked_heads IS NULL OR r.acked_heads != d.heads OR r.server_id IS NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let recent: Vec<String> =
            sqlx::query_scalar("SELECT sha256 FROM replica_fetched WHERE fetched_at >= ?")
                .bind(self.now_ms().saturating_sub(FETCHED_KEEP_MS))
                .fetch_all(&self.pool)
                .await?;
        protected.extend(recent);
        Ok(protected)
    }

    /// Drops the files the policy no longer selects (an entry unpinned, a team removed from
    /// the list), except those a local unacknowledged change references or that were fetched
    /// on demand recently, and those written (or found present by a write) since this step
    /// last saw them kept: their row or fetch record may still be on its way. Only files some entry references are considered: an unreferenced
    /// file (a refused push's) is never taken here. Returns how many were removed.
    pub async fn drop_unwanted_blobs(&self) -> Result<usize> {
        let Some(blobs) = self.blobs() else {
            return Ok(0);
        };
        // Under `all` every referenced file is wanted: nothing to read or write (a sync with
        // nothing to do stays free of local writes).
        if self.file_policy().await? == FilePolicy::All {
            blobs.settle_all().await;
            return Ok(0);
        }
        let wanted = self.wanted_blobs().await?;
        let protected = self.protected_blobs().await?;
        sqlx::query("DELETE FROM replica_fetched WHERE fetched_at < ?")
            .bind(self.now_ms().saturating_sub(FETCHED_KEEP_MS))
            .execute(&self.pool)
            .await?;
        let mut dropped = 0;
        for hash in self.referenced_hashes().await? {
            if wanted.contains(&hash) || protected.contains(&hash) {
                // Kept by a record from now on; a later write need not be remembered.
                blobs.settle(&hash).await;
                continue;
            }
            if !blobs.exists(&hash).await {
                continue;
            }
            // The sets above were read before this moment: a file written since (attached
            // offline, fetched on demand) whose row or fetch record is not yet written is
            // "fresh" and stays; the check and the removal hold the lock a write names under.
            match blobs.remove_unless_fresh(&hash).await {
                Ok(true) => dropped += 1,
                Ok(false) => {}
                Err(error) => {
                    return Err(StoreError::Conflict(format!(
                        "removing the file {hash}: {error}"
                    )));
                }
            }
        }
        Ok(dropped)
    }

    /// How many referenced files are on the laptop and how many are not.
    pub async fn file_counts(&self) -> Result<FileCounts> {
        let mut counts = FileCounts::default();
        let Some(blobs) = self.blobs() else {
            return Ok(counts);
        };
        for hash in self.referenced_hashes().await? {
            if blobs.exists(&hash).await {
                counts.held += 1;
            } else {
                counts.not_held += 1;
            }
        }
        Ok(counts)
    }

    /// The UUID of a readable entity given as `experiments/12`, `resources/12` (also `items/`),
    /// or a UUID, for `cahier replica pin`.
    pub async fn entity_uuid_by_ref(
        &self,
        subject: &cahier_core::access::Subject,
        reference: &str,
    ) -> Result<String> {
        use cahier_core::EntityKind;
        let reference = reference.trim().trim_matches('/');
        let (kind, id) = match reference.split_once('/') {
            Some((section, id)) => {
                let kind = match section {
                    "experiments" => EntityKind::Experiment,
                    "resources" | "items" => EntityKind::Resource,
                    "templates" | "experiments_templates" => EntityKind::ExperimentTemplate,
                    "resource-templates" | "items_types" => EntityKind::ResourceTemplate,
                    _ => {
                        return Err(invalid(
                            "entry",
                            format!(
                                "`{section}` is not a section: use experiments/ID or resources/ID"
                            ),
                        ));
                    }
                };
                let id: i64 = id
                    .parse()
                    .map_err(|_| invalid("entry", format!("`{id}` is not an entry id")))?;
                (kind, id)
            }
            None => {
                let id: Option<i64> = sqlx::query_scalar("SELECT id FROM entities WHERE uuid = ?")
                    .bind(reference)
                    .fetch_optional(&self.pool)
                    .await?;
                let id = id.ok_or(StoreError::NotFound("entry"))?;
                let kind: String = sqlx::query_scalar("SELECT kind FROM entities WHERE id = ?")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?;
                let kind = EntityKind::parse(&kind).ok_or(StoreError::NotFound("entry"))?;
                (kind, id)
            }
        };
        Ok(self.entity_of_kind(subject, kind, id).await?.uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::FilePolicy;

    #[test]
    fn policies_parse_and_print_back() {
        assert_eq!(FilePolicy::parse("all").unwrap(), FilePolicy::All);
        assert_eq!(FilePolicy::parse(" Pinned ").unwrap(), FilePolicy::Pinned);
        let teams = FilePolicy::parse("teams=Ecology, Botany").unwrap();
        assert_eq!(
            teams,
            FilePolicy::Teams(vec!["Ecology".into(), "Botany".into()])
        );
        assert_eq!(teams.as_setting(), "teams=Ecology,Botany");
        assert_eq!(
            FilePolicy::parse(&teams.as_setting()).unwrap(),
            teams,
            "the stored form reads back"
        );
    }

    #[test]
    fn bad_policies_are_refused_with_the_accepted_forms() {
        for bad in ["", "some", "teams=", "teams= , "] {
            let error = FilePolicy::parse(bad).unwrap_err().to_string();
            assert!(
                error.contains("teams=") || error.contains("all, pinned"),
                "{bad}: {error}"
            );
        }
    }
}
