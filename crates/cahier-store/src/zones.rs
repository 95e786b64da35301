//! Time zones: the instance's (chosen by a sysadmin, else the configuration's or the server's,
//! given at startup with [`Store::with_default_zone`]) and each user's preference (else the
//! instance's). The booking calendar shows and reads times in the user's zone; booking rules
//! that count days count them in the instance's.

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

    /// Sets (or, with `None`, clears) a user's own zone.
    pub async fn set_user_zone(&self, user_id: i64, name: Option<&str>) -> Result<()> {
        let zone = checked(name)?;
        sqlx::query("UPDATE users SET time_zone = ? WHERE id = ?")
            .bind(zone.as_ref().map(Zone::name))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
