//! Time zones: the instance's (chosen by a sysadmin, else the configuration's or the server's,
//! given at startup with [`Store::with_default_zone`]) and each user's preference (else the
//! instance's). The booking calendar shows and reads times in the user's zone; booking rules
//! that count days count them in the instance's.

use crate::sync::Device;
use crate::sync::proto::Preferences;
use crate::{Result, Store, StoreError, invalid};
use cahier_core::Subject;
use cahier_core::zone::Zone;

fn checked(name: Option<&str>) -> Result<Option<Zone>> {
    match name.map(str::trim) {
        None | Some("") => Ok(None),
        Some(name) => Zone::named(name).map(Some).ok_or_else(|| {
            invalid(
                "time_zone",
                format!("{name} is not a time zone; use an IANA name such as Europe/Paris"),
            )
        }),
    }
}

impl Store {
    /// The zone the instance uses when no sysadmin chose one.
    pub fn with_default_zone(mut self, zone: Zone) -> Self {
        self.default_zone = zone;
        self
    }

    /// The instance's zone set by a sysadmin, if any.
    pub async fn chosen_instance_zone(&self) -> Result<Option<Zone>> {
        let name: Option<String> =
            sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = 'time_zone'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(name.as_deref().and_then(Zone::named))
    }

    /// The instance's zone: a sysadmin's choice, else the startup default.
    pub async fn instance_zone(&self) -> Result<Zone> {
        Ok(self
            .chosen_instance_zone()
            .await?
            .unwrap_or_else(|| self.default_zone.clone()))
    }

    /// Sets (or, with `None`, clears) the instance's zone. Sysadmins only.
    pub async fn set_instance_zone(&self, subject: &Subject, name: Option<&str>) -> Result<()> {
        if !subject.is_sysadmin {
            return Err(StoreError::Forbidden(
                "only a sysadmin can set the instance's time zone".into(),
            ));
        }
        let zone = checked(name)?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        match &zone {
            Some(zone) => {
                sqlx::query(
                    "INSERT INTO instance_settings (key, value) VALUES ('time_zone', ?) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(zone.name())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM instance_settings WHERE key = 'time_zone'")
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // The change and its audit entry commit together.
        crate::accounts::admin_entry(
            &mut tx,
            now,
            Some(subject.user_id),
            "instance.time_zone",
            ("instance", 0),
            serde_json::json!({"time_zone": zone.as_ref().map(|z| z.name().to_owned())}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The zone a user sees times in: theirs, else the instance's.
    pub async fn user_zone(&self, user_id: i64) -> Result<Zone> {
        let name: Option<String> = sqlx::query_scalar("SELECT time_zone FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .flatten();
        match name.as_deref().and_then(Zone::named) {
            Some(zone) => Ok(zone),
            None => self.instance_zone().await,
        }
    }

    /// Sets (or, with `None`, clears) a user's own zone. On a replica the choice also waits
    /// to be sent to the lab at the next sync ([`Store::pending_preferences`]).
    pub async fn set_user_zone(&self, user_id: i64, name: Option<&str>) -> Result<()> {
        let zone = checked(name)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE users SET time_zone = ? WHERE id = ?")
            .bind(zone.as_ref().map(Zone::name))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if self.is_replica() {
            // The next number of this device's choices, and the choice, in one value.
            let last: Option<String> =
                sqlx::query_scalar("SELECT value FROM replica_state WHERE key = 'prefs_seq'")
                    .fetch_optional(&mut *tx)
                    .await?;
            let seq = last.and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) + 1;
            let pending = pending_value(&Preferences {
                seq,
                time_zone: zone.as_ref().map(|z| z.name().to_owned()),
            });
            for (key, value) in [
                ("prefs_seq", seq.to_string()),
                (PENDING_PREFERENCES, pending),
            ] {
                sqlx::query(
                    "INSERT INTO replica_state (key, value) VALUES (?, ?) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// On a replica: the user's preferences chosen here and not yet applied by the lab.
    pub async fn pending_preferences(&self) -> Result<Option<Preferences>> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM replica_state WHERE key = ?")
                .bind(PENDING_PREFERENCES)
                .fetch_optional(&self.pool)
                .await?;
        Ok(value.and_then(|value| {
            let (seq, zone) = value.split_once('\t')?;
            Some(Preferences {
                seq: seq.parse().ok()?,
                time_zone: Some(zone.to_owned()).filter(|z| !z.is_empty()),
            })
        }))
    }

    /// On a replica: the lab took these preferences. Forgets them unless a newer choice was
    /// made meanwhile (that one is sent at the next sync).
    pub async fn preferences_sent(&self, sent: &Preferences) -> Result<()> {
        sqlx::query("DELETE FROM replica_state WHERE key = ? AND value = ?")
            .bind(PENDING_PREFERENCES)
            .bind(pending_value(sent))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// On the lab server: preferences a device sent for its user (`POST /preferences`).
    /// Applied only when `seq` is above the last applied for this device (a replay, or a
    /// request overtaken by a newer one, changes nothing); the zone is checked first. Returns
    /// whether they were applied.
    pub async fn apply_device_preferences(
        &self,
        device: &Device,
        subject: &Subject,
        preferences: &Preferences,
    ) -> Result<bool> {
        if subject.user_id != device.user_id {
            return Err(StoreError::Forbidden(
                "preferences are applied to the device's own user only".into(),
            ));
        }
        if preferences.seq < 1 {
            return Err(invalid("seq", "must be 1 or more"));
        }
        let zone = checked(preferences.time_zone.as_deref())?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT prefs_seq FROM devices WHERE id = ? AND revoked_at IS NULL")
                .bind(device.id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(applied) = applied else {
            return Err(StoreError::Forbidden("this device is revoked".into()));
        };
        if preferences.seq <= applied {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET time_zone = ? WHERE id = ?")
            .bind(zone.as_ref().map(Zone::name))
            .bind(device.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET prefs_seq = ? WHERE id = ?")
            .bind(preferences.seq)
            .bind(device.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// `replica_state` key of the preferences chosen on a replica and not yet sent.
const PENDING_PREFERENCES: &str = "pending_preferences";

/// How pending preferences are kept: the choice's number, a tab, the zone ('' for none).
fn pending_value(preferences: &Preferences) -> String {
    format!(
        "{}\t{}",
        preferences.seq,
        preferences.time_zone.as_deref().unwrap_or("")
    )
}
