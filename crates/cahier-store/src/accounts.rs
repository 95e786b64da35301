//! People and their groupings: users, teams, memberships, team groups; and how they prove who
//! they are: passwords (argon2id), sessions, API keys, sign-in throttling, first-run setup.

use crate::{Result, Store, StoreError, invalid, on_unique, random_hex, sha256_hex};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use cahier_core::access::Membership;
use cahier_core::{BaseLevel, Subject};
use serde::Serialize;
use subtle::ConstantTimeEq;

/// Shortest accepted password.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Failed sign-ins allowed per e-mail address within [`THROTTLE_WINDOW_MS`].
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
/// Failed sign-ins allowed per client address within [`THROTTLE_WINDOW_MS`].
pub const MAX_FAILURES_PER_ADDRESS: i64 = 30;
/// Window over which failures count.
pub const THROTTLE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// How long a session lives without use.
pub const SESSION_IDLE_MS: i64 = 7 * 24 * 3600 * 1000;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    /// Integer id.
    pub id: i64,
    /// E-mail, unique.
    pub email: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Administers the instance.
    pub is_sysadmin: bool,
    /// Chosen interface language (`en`, `fr`), or none to follow the browser.
    pub lang: Option<String>,
    /// Default base read level for new entries.
    pub default_read_base: i64,
    /// Default base write level for new entries.
    pub default_write_base: i64,
    /// The team currently selected.
    pub current_team: Option<i64>,
    /// Archived users cannot sign in.
    pub is_archived: bool,
    /// Creation time, ms.
    pub created_at: i64,
    /// Last sign-in, ms.
    pub last_login: Option<i64>,
    /// Chosen time zone (IANA name), or none for the instance's.
    pub time_zone: Option<String>,
}

impl User {
    /// "First Last".
    pub fn fullname(&self) -> String {
        format!("{} {}", self.firstname, self.lastname)
            .trim()
            .to_owned()
    }
}

const USER_COLUMNS: &str = "id, email, firstname, lastname, is_sysadmin, lang, default_read_base, \
    default_write_base, current_team, is_archived, created_at, last_login, time_zone";

/// A team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Team {
    /// Integer id.
    pub id: i64,
    /// Name, unique.
    pub name: String,
    /// Creation time, ms.
    pub created_at: i64,
}

/// A team seen from one of its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UserTeam {
    /// Team id.
    pub id: i64,
    /// Team name.
    pub name: String,
    /// Whether the user administers it.
    pub is_admin: bool,
}

/// A member of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct TeamMember {
    /// User id.
    pub user_id: i64,
    /// E-mail.
    pub email: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Team admin.
    pub is_admin: bool,
}

/// A team group and its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamGroup {
    /// Group id.
    pub id: i64,
    /// Owning team.
    pub team_id: i64,
    /// Name.
    pub name: String,
    /// Member user ids.
    pub members: Vec<i64>,
}

/// Input for a new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// E-mail.
    pub email: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// Password in clear (hashed here), or none for an account that cannot sign in yet.
    pub password: Option<String>,
    /// Administers the instance.
    pub is_sysadmin: bool,
}

/// What an API key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyGrant {
    /// Key id.
    pub key_id: i64,
    /// The user it acts as.
    pub user: User,
    /// The team it is bound to.
    pub team_id: i64,
    /// Whether it may change things.
    pub can_write: bool,
}

/// An API key as listed to its owner (the secret is never shown again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiKeyInfo {
    /// Key id.
    pub id: i64,
    /// Name given at creation.
    pub name: String,
    /// Team.
    pub team_id: i64,
    /// Read-write.
    pub can_write: bool,
    /// Created, ms.
    pub created_at: i64,
    /// Last used, ms.
    pub last_used_at: Option<i64>,
}

fn validate_email(email: &str) -> Result<String> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.starts_with('.')
                && !email.contains(char::is_whitespace)
        });
    if valid {
        Ok(email.to_owned())
    } else {
        Err(invalid(
            "email",
            "expected an e-mail address such as name@lab.fr",
        ))
    }
}

fn validate_name(field: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid(field, "between 1 and 100 characters"));
    }
    Ok(name.to_owned())
}

/// Checks a new password and hashes it with argon2id. CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(invalid(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(invalid("password", "at most 1024 bytes"));
    }
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| invalid("password", "could not be hashed"))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Conflict("background task failed".into()))
}

/// Appends an administrator's action (`what`, e.g. `team.add_member`) to the audit log inside
/// the change's transaction; nothing when there is no acting user (setup, seed, fixtures).
pub(crate) async fn admin_entry(
    conn: &mut sqlx::SqliteConnection,
    now: i64,
    actor: Option<i64>,
    what: &str,
    target: (&'static str, i64),
    details: serde_json::Value,
) -> Result<()> {
    let Some(actor) = actor else { return Ok(()) };
    let mut details = details;
    if let serde_json::Value::Object(map) = &mut details {
        map.insert("what".into(), serde_json::Value::String(what.to_owned()));
    }
    crate::audit::append(
        conn,
        now,
        &crate::audit::AuditEvent::new(
            Some(actor),
            crate::audit::action::ADMIN,
            target.0,
            target.1,
        )
        .details(details),
    )
    .await?;
    Ok(())
}

impl Store {
    /// Creates an account (setup, seed, command line: no audit entry; administrators use
    /// [`Store::create_user_by`]).
    pub async fn create_user(&self, new: NewUser) -> Result<i64> {
        self.create_user_as(None, new, None).await
    }

    /// An administrator (`actor`) creates an account, optionally in `team` (`(team, is_admin)`):
    /// the account, the membership and the audit entry in one transaction.
    pub async fn create_user_by(
        &self,
        actor: i64,
        new: NewUser,
        team: Option<(i64, bool)>,
    ) -> Result<i64> {
        self.create_user_as(Some(actor), new, team).await
    }

    async fn create_user_as(
        &self,
        actor: Option<i64>,
        new: NewUser,
        team: Option<(i64, bool)>,
    ) -> Result<i64> {
        let email = validate_email(&new.email)?;
        let firstname = validate_name("firstname", &new.firstname)?;
        let lastname = new.lastname.trim().to_owned();
        let hash = match new.password {
            Some(password) => Some(blocking(move || hash_password(&password)).await??),
            None => None,
        };
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id = sqlx::query_scalar(
            "INSERT INTO users (email, firstname, lastname, password_hash, is_sysadmin, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&email)
        .bind(&firstname)
        .bind(&lastname)
        .bind(hash)
        .bind(new.is_sysadmin)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| on_unique(e, "a user with this e-mail already exists"))?;
        if let Some((team_id, is_admin)) = team {
            add_member_in(&mut tx, team_id, id, is_admin).await?;
        }
        admin_entry(
            &mut tx,
            now,
            actor,
            "user.create",
            ("user", id),
            serde_json::json!({
                "team": team.map(|t| t.0),
                "is_admin": team.is_some_and(|t| t.1),
                "is_sysadmin": new.is_sysadmin,
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Number of accounts.
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// One user.
    pub async fn user(&self, id: i64) -> Result<User> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("user"))
    }

    /// A user by e-mail.
    pub async fn user_by_email(&self, email: &str) -> Result<User> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = ?"
        )))
        .bind(email.trim())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("user"))
    }

    /// All users, by name.
    pub async fn users(&self) -> Result<Vec<User>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY lastname, firstname, id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Users by id, for display.
    pub async fn users_by_ids(&self, ids: &[i64]) -> Result<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id IN ({list})"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Changes a password after checking the current one.
    pub async fn change_password(&self, user_id: i64, current: &str, new: &str) -> Result<()> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        let current = current.to_owned();
        let ok = match hash {
            Some(hash) => blocking(move || verify_password(&hash, &current)).await?,
            None => false,
        };
        if !ok {
            return Err(invalid(
                "current_password",
                "this is not your current password",
            ));
        }
        self.write_password(user_id, new, Some(user_id)).await
    }

    /// Sets a password (an administrator's reset, or the setup).
    pub async fn set_password(&self, user_id: i64, new: &str) -> Result<()> {
        self.write_password(user_id, new, None).await
    }

    /// Writes a password hash, ends the account's sessions and records it, in one transaction;
    /// `actor` is the user themselves when they changed it (`None`: an administrator or the
    /// command line, whose own entry says who).
    async fn write_password(&self, user_id: i64, new: &str, actor: Option<i64>) -> Result<()> {
        let new = new.to_owned();
        let hash = blocking(move || hash_password(&new)).await??;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        // A new password ends every other session.
        sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        crate::audit::append(
            &mut tx,
            self.now_ms(),
            &crate::audit::AuditEvent::new(actor, crate::audit::action::PASSWORD, "user", user_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets the interface language (`en`, `fr` or none).
    pub async fn set_language(&self, user_id: i64, lang: Option<&str>) -> Result<()> {
        if let Some(lang) = lang
            && !matches!(lang, "en" | "fr")
        {
            return Err(invalid("lang", "expected en or fr"));
        }
        sqlx::query("UPDATE users SET lang = ? WHERE id = ?")
            .bind(lang)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets the default access levels for the user's new entries.
    pub async fn set_default_access(
        &self,
        user_id: i64,
        read: BaseLevel,
        write: BaseLevel,
    ) -> Result<()> {
        sqlx::query("UPDATE users SET default_read_base = ?, default_write_base = ? WHERE id = ?")
            .bind(read.code())
            .bind(write.code())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Archives or restores an account; archived accounts cannot sign in (no audit entry:
    /// administrators use [`Store::set_archived_by`]).
    pub async fn set_archived(&self, user_id: i64, archived: bool) -> Result<()> {
        self.set_archived_as(None, user_id, archived).await
    }

    /// [`Store::set_archived`] by the administrator `actor`, audited in the same transaction.
    pub async fn set_archived_by(&self, actor: i64, user_id: i64, archived: bool) -> Result<()> {
        self.set_archived_as(Some(actor), user_id, archived).await
    }

    async fn set_archived_as(
        &self,
        actor: Option<i64>,
        user_id: i64,
        archived: bool,
    ) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("UPDATE users SET is_archived = ? WHERE id = ?")
            .bind(archived)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        if archived {
            sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        let what = if archived {
            "user.archive"
        } else {
            "user.unarchive"
        };
        admin_entry(
            &mut tx,
            now,
            actor,
            what,
            ("user", user_id),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Grants or removes instance administration (no audit entry: administrators use
    /// [`Store::set_sysadmin_by`]).
    pub async fn set_sysadmin(&self, user_id: i64, is_sysadmin: bool) -> Result<()> {
        self.set_sysadmin_as(None, user_id, is_sysadmin).await
    }

    /// [`Store::set_sysadmin`] by the administrator `actor`, audited in the same transaction.
    pub async fn set_sysadmin_by(&self, actor: i64, user_id: i64, is_sysadmin: bool) -> Result<()> {
        self.set_sysadmin_as(Some(actor), user_id, is_sysadmin)
            .await
    }

    async fn set_sysadmin_as(
        &self,
        actor: Option<i64>,
        user_id: i64,
        is_sysadmin: bool,
    ) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("UPDATE users SET is_sysadmin = ? WHERE id = ?")
            .bind(is_sysadmin)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("user"));
        }
        admin_entry(
            &mut tx,
            now,
            actor,
            "user.sysadmin",
            ("user", user_id),
            serde_json::json!({"is_sysadmin": is_sysadmin}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates a team with eLabFTW's four default experiment statuses (no audit entry:
    /// administrators use [`Store::create_team_by`]).
    pub async fn create_team(&self, name: &str) -> Result<i64> {
        self.create_team_as(None, name).await
    }

    /// [`Store::create_team`] by the administrator `actor`, audited in the same transaction.
    pub async fn create_team_by(&self, actor: i64, name: &str) -> Result<i64> {
        self.create_team_as(Some(actor), name).await
    }

    async fn create_team_as(&self, actor: Option<i64>, name: &str) -> Result<i64> {
        let name = validate_name("name", name)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 =
            sqlx::query_scalar("INSERT INTO teams (name, created_at) VALUES (?, ?) RETURNING id")
                .bind(&name)
                .bind(self.now_ms())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| on_unique(e, "a team with this name already exists"))?;
        for (ordering, (title, color, is_default)) in [
            ("Running", "29aeb9", true),
            ("Success", "54aa08", false),
            ("Need to be redone", "c0c0c0", false),
            ("Fail", "c24f3d", false),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query(
                "INSERT INTO statuses (team_id, family, title, color, is_default, ordering) VALUES (?, 'experiment', ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(title)
            .bind(color)
            .bind(is_default)
            .bind(i64::try_from(ordering).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        }
        admin_entry(
            &mut tx,
            self.now_ms(),
            actor,
            "team.create",
            ("team", id),
            serde_json::json!({"name": name}),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// All teams.
    pub async fn teams(&self) -> Result<Vec<Team>> {
        Ok(
            sqlx::query_as("SELECT id, name, created_at FROM teams ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One team.
    pub async fn team(&self, id: i64) -> Result<Team> {
        sqlx::query_as("SELECT id, name, created_at FROM teams WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("team"))
    }

    /// A team by name.
    pub async fn team_by_name(&self, name: &str) -> Result<Team> {
        sqlx::query_as("SELECT id, name, created_at FROM teams WHERE name = ?")
            .bind(name.trim())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("team"))
    }

    /// Renames a team (no audit entry: administrators use [`Store::rename_team_by`]).
    pub async fn rename_team(&self, id: i64, name: &str) -> Result<()> {
        self.rename_team_as(None, id, name).await
    }

    /// [`Store::rename_team`] by the administrator `actor`, audited in the same transaction.
    pub async fn rename_team_by(&self, actor: i64, id: i64, name: &str) -> Result<()> {
        self.rename_team_as(Some(actor), id, name).await
    }

    async fn rename_team_as(&self, actor: Option<i64>, id: i64, name: &str) -> Result<()> {
        let name = validate_name("name", name)?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("UPDATE teams SET name = ? WHERE id = ?")
            .bind(&name)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| on_unique(e, "a team with this name already exists"))?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("team"));
        }
        admin_entry(
            &mut tx,
            now,
            actor,
            "team.rename",
            ("team", id),
            serde_json::json!({"name": name}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Teams a user belongs to.
    pub async fn teams_of(&self, user_id: i64) -> Result<Vec<UserTeam>> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.name, m.is_admin FROM memberships m JOIN teams t ON t.id = m.team_id \
             WHERE m.user_id = ? ORDER BY t.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Members of a team.
    pub async fn team_members(&self, team_id: i64) -> Result<Vec<TeamMember>> {
        Ok(sqlx::query_as(
            "SELECT u.id AS user_id, u.email, u.firstname, u.lastname, m.is_admin FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.team_id = ? ORDER BY u.lastname, u.firstname",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds a user to a team (or changes their admin flag). The first team becomes current.
    /// No audit entry: administrators use [`Store::add_member_by`].
    pub async fn add_member(&self, team_id: i64, user_id: i64, is_admin: bool) -> Result<()> {
        self.add_member_as(None, team_id, user_id, is_admin).await
    }

    /// [`Store::add_member`] by the administrator `actor`, audited in the same transaction
    /// (`team.add_member`, or `team.set_admin` for a member already in the team).
    pub async fn add_member_by(
        &self,
        actor: i64,
        team_id: i64,
        user_id: i64,
        is_admin: bool,
    ) -> Result<()> {
        self.add_member_as(Some(actor), team_id, user_id, is_admin)
            .await
    }

    async fn add_member_as(
        &self,
        actor: Option<i64>,
        team_id: i64,
        user_id: i64,
        is_admin: bool,
    ) -> Result<()> {
        self.team(team_id).await?;
        self.user(user_id).await?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let was_member: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM memberships WHERE team_id = ? AND user_id = ?)",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        add_member_in(&mut tx, team_id, user_id, is_admin).await?;
        let what = if was_member {
            "team.set_admin"
        } else {
            "team.add_member"
        };
        admin_entry(
            &mut tx,
            now,
            actor,
            what,
            ("user", user_id),
            serde_json::json!({"team": team_id, "is_admin": is_admin}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user from a team. A team keeps at least one admin. No audit entry:
    /// administrators use [`Store::remove_member_by`].
    pub async fn remove_member(&self, team_id: i64, user_id: i64) -> Result<()> {
        self.remove_member_as(None, team_id, user_id).await
    }

    /// [`Store::remove_member`] by the administrator `actor`, audited in the same transaction.
    pub async fn remove_member_by(&self, actor: i64, team_id: i64, user_id: i64) -> Result<()> {
        self.remove_member_as(Some(actor), team_id, user_id).await
    }

    async fn remove_member_as(&self, actor: Option<i64>, team_id: i64, user_id: i64) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let admins: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM memberships WHERE team_id = ? AND is_admin AND user_id != ?",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        let was_admin: Option<bool> = sqlx::query_scalar(
            "SELECT is_admin FROM memberships WHERE team_id = ? AND user_id = ?",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        match was_admin {
            None => return Err(StoreError::NotFound("member")),
            Some(true) if admins == 0 => {
                return Err(StoreError::Conflict(
                    "a team needs at least one admin; name another admin first".into(),
                ));
            }
            _ => {}
        }
        sqlx::query("DELETE FROM memberships WHERE team_id = ? AND user_id = ?")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE users SET current_team = (SELECT team_id FROM memberships WHERE user_id = users.id LIMIT 1) \
             WHERE id = ? AND current_team = ?",
        )
        .bind(user_id)
        .bind(team_id)
        .execute(&mut *tx)
        .await?;
        admin_entry(
            &mut tx,
            now,
            actor,
            "team.remove_member",
            ("user", user_id),
            serde_json::json!({"team": team_id}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Selects the user's current team; they must belong to it.
    pub async fn set_current_team(&self, user_id: i64, team_id: i64) -> Result<()> {
        let n = sqlx::query(
            "UPDATE users SET current_team = ? WHERE id = ? AND EXISTS \
             (SELECT 1 FROM memberships WHERE user_id = ? AND team_id = ?)",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(user_id)
        .bind(team_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            Err(StoreError::NotFound("team"))
        } else {
            Ok(())
        }
    }

    /// Creates a team group (no audit entry: administrators use [`Store::create_group_by`]).
    pub async fn create_group(&self, team_id: i64, name: &str) -> Result<i64> {
        self.create_group_as(None, team_id, name).await
    }

    /// [`Store::create_group`] by the team admin `actor`, audited in the same transaction.
    pub async fn create_group_by(&self, actor: i64, team_id: i64, name: &str) -> Result<i64> {
        self.create_group_as(Some(actor), team_id, name).await
    }

    async fn create_group_as(&self, actor: Option<i64>, team_id: i64, name: &str) -> Result<i64> {
        let name = validate_name("name", name)?;
        self.team(team_id).await?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO team_groups (team_id, name) VALUES (?, ?) RETURNING id",
        )
        .bind(team_id)
        .bind(&name)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| on_unique(e, "this team already has a group with this name"))?;
        admin_entry(
            &mut tx,
            now,
            actor,
            "group.create",
            ("group", id),
            serde_json::json!({"team": team_id, "name": name}),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Groups of a team with their members.
    pub async fn groups(&self, team_id: i64) -> Result<Vec<TeamGroup>> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM team_groups WHERE team_id = ? ORDER BY name")
                .bind(team_id)
                .fetch_all(&self.pool)
                .await?;
        let members: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT gm.group_id, gm.user_id FROM group_members gm JOIN team_groups g ON g.id = gm.group_id WHERE g.team_id = ?",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| TeamGroup {
                id,
                team_id,
                name,
                members: members
                    .iter()
                    .filter(|(g, _)| *g == id)
                    .map(|(_, u)| *u)
                    .collect(),
            })
            .collect())
    }

    /// One group.
    pub async fn group(&self, group_id: i64) -> Result<TeamGroup> {
        let (team_id, _): (i64, String) =
            sqlx::query_as("SELECT team_id, name FROM team_groups WHERE id = ?")
                .bind(group_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound("team group"))?;
        self.groups(team_id)
            .await?
            .into_iter()
            .find(|g| g.id == group_id)
            .ok_or(StoreError::NotFound("team group"))
    }

    /// Renames a group (no audit entry: administrators use [`Store::rename_group_by`]).
    pub async fn rename_group(&self, group_id: i64, name: &str) -> Result<()> {
        self.rename_group_as(None, group_id, name).await
    }

    /// [`Store::rename_group`] by the team admin `actor`, audited in the same transaction.
    pub async fn rename_group_by(&self, actor: i64, group_id: i64, name: &str) -> Result<()> {
        self.rename_group_as(Some(actor), group_id, name).await
    }

    async fn rename_group_as(&self, actor: Option<i64>, group_id: i64, name: &str) -> Result<()> {
        let name = validate_name("name", name)?;
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("UPDATE team_groups SET name = ? WHERE id = ?")
            .bind(&name)
            .bind(group_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| on_unique(e, "this team already has a group with this name"))?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("team group"));
        }
        admin_entry(
            &mut tx,
            now,
            actor,
            "group.rename",
            ("group", group_id),
            serde_json::json!({"name": name}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds (`true`) or removes (`false`) a user from a group (no audit entry: administrators
    /// use [`Store::set_group_member_by`]).
    pub async fn set_group_member(&self, group_id: i64, user_id: i64, member: bool) -> Result<()> {
        self.set_group_member_as(None, group_id, user_id, member)
            .await
    }

    /// [`Store::set_group_member`] by the team admin `actor`, audited in the same transaction.
    pub async fn set_group_member_by(
        &self,
        actor: i64,
        group_id: i64,
        user_id: i64,
        member: bool,
    ) -> Result<()> {
        self.set_group_member_as(Some(actor), group_id, user_id, member)
            .await
    }

    async fn set_group_member_as(
        &self,
        actor: Option<i64>,
        group_id: i64,
        user_id: i64,
        member: bool,
    ) -> Result<()> {
        self.group(group_id).await?;
        self.user(user_id).await?;
        let sql = if member {
            "INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?, ?)"
        } else {
            "DELETE FROM group_members WHERE group_id = ? AND user_id = ?"
        };
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(sql)
            .bind(group_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let what = if member {
            "group.add_member"
        } else {
            "group.remove_member"
        };
        admin_entry(
            &mut tx,
            now,
            actor,
            what,
            ("user", user_id),
            serde_json::json!({"group": group_id}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a group (no audit entry: administrators use [`Store::delete_group_by`]).
    pub async fn delete_group(&self, group_id: i64) -> Result<()> {
        self.delete_group_as(None, group_id).await
    }

    /// [`Store::delete_group`] by the team admin `actor`, audited in the same transaction.
    pub async fn delete_group_by(&self, actor: i64, group_id: i64) -> Result<()> {
        self.delete_group_as(Some(actor), group_id).await
    }

    async fn delete_group_as(&self, actor: Option<i64>, group_id: i64) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("DELETE FROM team_groups WHERE id = ?")
            .bind(group_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("team group"));
        }
        admin_entry(
            &mut tx,
            now,
            actor,
            "group.delete",
            ("group", group_id),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Everything the access policy needs to know about a user.
    pub async fn subject(&self, user_id: i64) -> Result<Subject> {
        // One statement instead of three: this runs on every request (BENCHMARKS.md). Each
        // part keeps the order it has alone, so the first team stays the first team.
        let rows: Vec<(String, i64, bool)> = sqlx::query_as(
            "SELECT 'u', is_sysadmin, 0 FROM users WHERE id = ? \
             UNION ALL SELECT 't', team_id, is_admin FROM memberships WHERE user_id = ? \
             UNION ALL SELECT 'g', group_id, 0 FROM group_members WHERE user_id = ?",
        )
        .bind(user_id)
        .bind(user_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut is_sysadmin = None;
        let mut teams = Vec::new();
        let mut groups = Vec::new();
        for (part, id, flag) in rows {
            match part.as_str() {
                "u" => is_sysadmin = Some(id != 0),
                "t" => teams.push(Membership {
                    team_id: id,
                    is_admin: flag,
                }),
                _ => groups.push(id),
            }
        }
        Ok(Subject {
            user_id,
            is_sysadmin: is_sysadmin.ok_or(StoreError::NotFound("user"))?,
            teams,
            groups,
        })
    }

    /// Checks an e-mail and password, throttling repeated failures per address and per client.
    /// A wrong e-mail and a wrong password give the same answer.
    pub async fn verify_login(&self, email: &str, password: &str, client: &str) -> Result<User> {
        let now = self.now_ms();
        let since = now - THROTTLE_WINDOW_MS;
        let email_key = format!("email:{}", email.trim().to_lowercase());
        let client_key = format!("client:{client}");
        for (key, limit) in [
            (&email_key, MAX_FAILURES_PER_EMAIL),
            (&client_key, MAX_FAILURES_PER_ADDRESS),
        ] {
            let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
                "SELECT count(*), min(at) FROM login_failures WHERE subject = ? AND at > ?",
            )
            .bind(key)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
            if count >= limit {
                let wait_ms = oldest.unwrap_or(now) + THROTTLE_WINDOW_MS - now;
                return Err(StoreError::Throttled {
                    minutes: (wait_ms / 60_000).max(1),
                });
            }
        }
        let row: Option<(i64, Option<String>, bool)> =
            sqlx::query_as("SELECT id, password_hash, is_archived FROM users WHERE email = ?")
                .bind(email.trim())
                .fetch_optional(&self.pool)
                .await?;
        let known_id = row.as_ref().map(|(id, _, _)| *id);
        let password = password.to_owned();
        let verified = match row {
            Some((id, Some(hash), false)) => {
                let ok = blocking(move || verify_password(&hash, &password)).await?;
                ok.then_some(id)
            }
            _ => {
                // Same work for unknown accounts, so timing does not reveal which e-mails exist.
                blocking(move || verify_password(dummy_hash(), &password)).await?;
                None
            }
        };
        match verified {
            Some(id) => {
                sqlx::query("UPDATE users SET last_login = ? WHERE id = ?")
                    .bind(now)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                sqlx::query("DELETE FROM login_failures WHERE subject = ?")
                    .bind(&email_key)
                    .execute(&self.pool)
                    .await?;
                self.user(id).await
            }
            None => {
                let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                for key in [&email_key, &client_key] {
                    sqlx::query("INSERT INTO login_failures (subject, at) VALUES (?, ?)")
                        .bind(key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM login_failures WHERE at < ?")
                    .bind(since)
                    .execute(&mut *tx)
                    .await?;
                // The account when one has this e-mail; never what was typed otherwise (a
                // password typed into the e-mail field must not land in the log).
                crate::audit::append(
                    &mut tx,
                    now,
                    &crate::audit::AuditEvent::new(
                        known_id,
                        crate::audit::action::SIGN_IN_FAILED,
                        "user",
                        known_id.unwrap_or(0),
                    )
                    .ip(Some(client))
                    .details(serde_json::json!({"known_account": known_id.is_some()})),
                )
                .await?;
                tx.commit().await?;
                Err(invalid("password", "wrong e-mail or password"))
            }
        }
    }

    /// Opens a session; returns the secret token for the cookie.
    pub async fn create_session(&self, user_id: i64) -> Result<String> {
        self.create_session_from(user_id, None).await
    }

    /// [`Store::create_session`], recording the client's address in the audit log.
    pub async fn create_session_from(&self, user_id: i64, client: Option<&str>) -> Result<String> {
        let token = random_hex(32);
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, last_seen, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(sha256_hex(&token))
            .bind(user_id)
            .bind(now)
            .bind(now)
            .bind(now + SESSION_IDLE_MS)
            .execute(&mut *tx)
            .await?;
        crate::audit::append(
            &mut tx,
            now,
            &crate::audit::AuditEvent::new(
                Some(user_id),
                crate::audit::action::SIGN_IN,
                "user",
                user_id,
            )
            .ip(client),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    /// The user behind a session token, extending the session; `None` if unknown or expired.
    pub async fn session_user(&self, token: &str) -> Result<Option<User>> {
        let now = self.now_ms();
        let hash = sha256_hex(token);
        let user_id: Option<i64> = sqlx::query_scalar(
            "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = ? AND s.expires_at > ? AND NOT u.is_archived",
        )
        .bind(&hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        // Extend at most once a minute, so reads do not turn into writes.
        sqlx::query("UPDATE sessions SET last_seen = ?, expires_at = ? WHERE token_hash = ? AND last_seen < ?")
            .bind(now)
            .bind(now + SESSION_IDLE_MS)
            .bind(&hash)
            .bind(now - 60_000)
            .execute(&self.pool)
            .await?;
        Ok(Some(self.user(user_id).await?))
    }

    /// Ends a session.
    pub async fn delete_session(&self, token: &str) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let user_id: Option<i64> =
            sqlx::query_scalar("DELETE FROM sessions WHERE token_hash = ? RETURNING user_id")
                .bind(sha256_hex(token))
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(user_id) = user_id {
            crate::audit::append(
                &mut tx,
                self.now_ms(),
                &crate::audit::AuditEvent::new(
                    Some(user_id),
                    crate::audit::action::SIGN_OUT,
                    "user",
                    user_id,
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates an API key bound to a user and one of their teams; returns (id, secret). The
    /// secret is shown once: only its hash is kept.
    pub async fn create_api_key(
        &self,
        user_id: i64,
        team_id: i64,
        name: &str,
        can_write: bool,
    ) -> Result<(i64, String)> {
        let is_member: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM memberships WHERE user_id = ? AND team_id = ?")
                .bind(user_id)
                .bind(team_id)
                .fetch_optional(&self.pool)
                .await?;
        if is_member.is_none() {
            return Err(invalid("team", "the key's user must belong to its team"));
        }
        let name = if name.trim().is_empty() {
            "API key"
        } else {
            name.trim()
        };
        let secret = random_hex(32);
        let now = self.now_ms();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_keys (user_id, team_id, name, secret_hash, can_write, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(user_id)
        .bind(team_id)
        .bind(name)
        .bind(sha256_hex(&secret))
        .bind(can_write)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // Never the secret: the key's id, team and rights.
        crate::audit::append(
            &mut tx,
            now,
            &crate::audit::AuditEvent::new(
                Some(user_id),
                crate::audit::action::KEY_CREATE,
                "apikey",
                id,
            )
            .details(serde_json::json!({"team": team_id, "can_write": can_write, "name": name})),
        )
        .await?;
        tx.commit().await?;
        Ok((id, format!("{id}-{secret}")))
    }

    /// Checks an API key (`<id>-<secret>`).
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Option<ApiKeyGrant>> {
        let Some((id, secret)) = key.trim().split_once('-') else {
            return Ok(None);
        };
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let row: Option<(i64, i64, String, bool, Option<i64>)> = sqlx::query_as(
            "SELECT user_id, team_id, secret_hash, can_write, last_used_at FROM api_keys WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((user_id, team_id, hash, can_write, last_used_at)) = row else {
            return Ok(None);
        };
        if !bool::from(sha256_hex(secret).as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(None);
        }
        let user = self.user(user_id).await?;
        if user.is_archived {
            return Ok(None);
        }
        // At most once a minute: an UPDATE takes the database's single write lock even when it
        // changes nothing, and queued behind writers it slowed every API request (BENCHMARKS.md).
        let now = self.now_ms();
        if last_used_at.is_none_or(|at| at < now - 60_000) {
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)")
                .bind(now)
                .bind(id)
                .bind(now - 60_000)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(ApiKeyGrant {
            key_id: id,
            user,
            team_id,
            can_write,
        }))
    }

    /// A user's keys.
    pub async fn api_keys(&self, user_id: i64) -> Result<Vec<ApiKeyInfo>> {
        Ok(sqlx::query_as(
            "SELECT id, name, team_id, can_write, created_at, last_used_at FROM api_keys WHERE user_id = ? ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes one of a user's keys.
    pub async fn delete_api_key(&self, user_id: i64, key_id: i64) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("DELETE FROM api_keys WHERE id = ? AND user_id = ?")
            .bind(key_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound("api key"));
        }
        crate::audit::append(
            &mut tx,
            self.now_ms(),
            &crate::audit::AuditEvent::new(
                Some(user_id),
                crate::audit::action::KEY_DELETE,
                "apikey",
                key_id,
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// On an instance without users, makes a one-time setup token (replacing any earlier one)
    /// and returns it; `None` once someone has an account.
    pub async fn issue_setup_token(&self) -> Result<Option<String>> {
        if self.count_users().await? > 0 {
            return Ok(None);
        }
        let token = random_hex(24);
        sqlx::query("INSERT INTO instance_settings (key, value) VALUES ('setup_token', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(sha256_hex(&token))
            .execute(&self.pool)
            .await?;
        Ok(Some(token))
    }

    /// Whether `token` is the current setup token and no account exists yet.
    pub async fn check_setup_token(&self, token: &str) -> Result<bool> {
        if self.count_users().await? > 0 {
            return Ok(false);
        }
        let stored: Option<String> =
            sqlx::query_scalar("SELECT value FROM instance_settings WHERE key = 'setup_token'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(stored
            .is_some_and(|hash| bool::from(hash.as_bytes().ct_eq(sha256_hex(token).as_bytes()))))
    }

    /// Completes first-run setup: the first sysadmin and their team; the token is spent.
    pub async fn complete_setup(&self, token: &str, new: NewUser, team_name: &str) -> Result<i64> {
        if !self.check_setup_token(token).await? {
            return Err(StoreError::Forbidden(
                "this setup link has been used or replaced".into(),
            ));
        }
        // Checked before the account is made: a refused team name must not spend the link.
        let team_name = validate_name("team", team_name)?;
        let user_id = self
            .create_user(NewUser {
                is_sysadmin: true,
                ..new
            })
            .await?;
        let team_id = match self.team_by_name(&team_name).await {
            Ok(team) => team.id,
            Err(StoreError::NotFound(_)) => self.create_team(&team_name).await?,
            Err(e) => return Err(e),
        };
        self.add_member(team_id, user_id, true).await?;
        sqlx::query("DELETE FROM instance_settings WHERE key = 'setup_token'")
            .execute(&self.pool)
            .await?;
        Ok(user_id)
    }
}

/// An argon2id hash of a random string, checked against when the e-mail is unknown so that
/// both answers cost the same.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default())
}

/// Adds `user_id` to `team_id` (or sets their admin flag) on `conn`; the first team becomes
/// their current one.
async fn add_member_in(
    conn: &mut sqlx::SqliteConnection,
    team_id: i64,
    user_id: i64,
    is_admin: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO memberships (user_id, team_id, is_admin) VALUES (?, ?, ?) \
         ON CONFLICT (user_id, team_id) DO UPDATE SET is_admin = excluded.is_admin",
    )
    .bind(user_id)
    .bind(team_id)
    .bind(is_admin)
    .execute(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound("team"),
        _ => e.into(),
    })?;
    sqlx::query("UPDATE users SET current_team = ? WHERE id = ? AND current_team IS NULL")
        .bind(team_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
