//! A team's vocabularies: experiment and resource statuses and categories (name, colour,
//! default). Team admins manage them; entity documents refer to them by integer id.

use crate::{Result, Store, StoreError, invalid};
use serde::Serialize;

/// Which vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// Statuses.
    Status,
    /// Categories.
    Category,
}

impl Vocabulary {
    fn table(self) -> &'static str {
        match self {
            Self::Status => "statuses",
            Self::Category => "categories",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Category => "category",
        }
    }
}

/// Which family of entities a term applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Experiments and their templates.
    Experiment,
    /// Resources and their templates.
    Resource,
}

impl Family {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::Resource => "resource",
        }
    }
    /// The family of an entity kind.
    pub fn of(kind: cahier_core::EntityKind) -> Self {
        match kind {
            cahier_core::EntityKind::Experiment | cahier_core::EntityKind::ExperimentTemplate => {
                Self::Experiment
            }
            cahier_core::EntityKind::Resource | cahier_core::EntityKind::ResourceTemplate => {
                Self::Resource
            }
        }
    }
}

/// A status or category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Term {
    /// Id.
    pub id: i64,
    /// Team.
    pub team_id: i64,
    /// Name shown to users.
    pub title: String,
    /// Colour, six hex digits without `#`.
    pub color: String,
    /// Preselected for new entries.
    pub is_default: bool,
    /// Sort order.
    pub ordering: i64,
}

/// What a resource category gives a new resource filed in it (team admins set it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CategoryDefaults {
    /// Base level of the read rule (`None`: the author's own default).
    pub canread: Option<cahier_core::BaseLevel>,
    /// Base level of the write rule (`None`: the author's own default).
    pub canwrite: Option<cahier_core::BaseLevel>,
    /// The resource template a new resource starts from (`None`: blank).
    pub template: Option<i64>,
}

/// Checks and normalises a colour (`#29aeb9` or `29AEB9` → `29aeb9`).
pub fn parse_color(color: &str) -> Result<String> {
    let hex = color.trim().trim_start_matches('#').to_lowercase();
    if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(invalid(
            "color",
            "expected a colour as six hexadecimal digits, such as 29aeb9",
        ))
    }
}

fn parse_title(title: &str) -> Result<String> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 100 {
        return Err(invalid("title", "between 1 and 100 characters"));
    }
    Ok(title.to_owned())
}

impl Store {
    /// The live terms of a vocabulary for a team and family, in order.
    pub async fn terms(
        &self,
        vocabulary: Vocabulary,
        team_id: i64,
        family: Family,
    ) -> Result<Vec<Term>> {
        let sql = format!(
            "SELECT id, team_id, title, color, is_default, ordering FROM {} \
             WHERE team_id = ? AND family = ? AND state = 1 ORDER BY ordering, id",
            vocabulary.table()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(team_id)
            .bind(family.as_str())
            .fetch_all(&self.pool)
            .await?)
    }

    /// One term (also a deleted one, so old entries still show their status).
    pub async fn term(&self, vocabulary: Vocabulary, id: i64) -> Result<Term> {
        let sql = format!(
            "SELECT id, team_id, title, color, is_default, ordering FROM {} WHERE id = ?",
            vocabulary.table()
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound(vocabulary.what()))
    }

    /// Terms by id, for display in lists.
    pub async fn terms_by_ids(&self, vocabulary: Vocabulary, ids: &[i64]) -> Result<Vec<Term>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT id, team_id, title, color, is_default, ordering FROM {} WHERE id IN ({list})",
            vocabulary.table()
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Adds a term. Making it the default clears the previous default.
    pub async fn create_term(
        &self,
        vocabulary: Vocabulary,
        team_id: i64,
        family: Family,
        title: &str,
        color: &str,
        is_default: bool,
    ) -> Result<i64> {
        let title = parse_title(title)?;
        let color = parse_color(color)?;
        self.team(team_id).await?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if is_default {
            let sql = format!(
                "UPDATE {} SET is_default = 0 WHERE team_id = ? AND family = ?",
                vocabulary.table()
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(team_id)
                .bind(family.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let sql = format!(
            "INSERT INTO {} (team_id, family, title, color, is_default, ordering) VALUES (?, ?, ?, ?, ?, \
             (SELECT coalesce(max(ordering), 0) + 1 FROM {} WHERE team_id = ? AND family = ?)) RETURNING id",
            vocabulary.table(),
            vocabulary.table()
        );
        let id = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(team_id)
            .bind(family.as_str())
            .bind(title)
            .bind(color)
            .bind(is_default)
            .bind(team_id)
            .bind(family.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Changes a term's name, colour or default flag.
    pub async fn update_term(
        &self,
        vocabulary: Vocabulary,
        id: i64,
        title: Option<&str>,
        color: Option<&str>,
        is_default: Option<bool>,
    ) -> Result<Term> {
        let term = self.term(vocabulary, id).await?;
        let title = title.map(parse_title).transpose()?.unwrap_or(term.title);
        let color = color.map(parse_color).transpose()?.unwrap_or(term.color);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if is_default == Some(true) {
            let sql = format!(
                "UPDATE {t} SET is_default = 0 WHERE team_id = ? AND family = (SELECT family FROM {t} WHERE id = ?)",
                t = vocabulary.table()
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(term.team_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let sql = format!(
            "UPDATE {} SET title = ?, color = ?, is_default = ? WHERE id = ?",
            vocabulary.table()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(title)
            .bind(color)
            .bind(is_default.unwrap_or(term.is_default))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.term(vocabulary, id).await
    }

    /// Retires a term: it disappears from choices, and entries that use it still show it.
    pub async fn delete_term(&self, vocabulary: Vocabulary, id: i64) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET state = 3, is_default = 0 WHERE id = ? AND state = 1",
            vocabulary.table()
        );
        let n = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            Err(StoreError::NotFound(vocabulary.what()))
        } else {
            Ok(())
        }
    }

    /// Checks that `id` is a live term of `team_id` and `family`.
    pub async fn check_term(
        &self,
        vocabulary: Vocabulary,
        id: i64,
        team_id: i64,
        family: Family,
    ) -> Result<()> {
        let sql = format!(
            "SELECT 1 FROM {} WHERE id = ? AND team_id = ? AND family = ? AND state = 1",
            vocabulary.table()
        );
        let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(team_id)
            .bind(family.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match found {
            Some(_) => Ok(()),
            None => Err(invalid(
                vocabulary.what(),
                format!("no {} {id} in this team", vocabulary.what()),
            )),
        }
    }

    /// The defaults a category gives new entries (all `None` for a missing category).
    pub async fn category_defaults(&self, id: i64) -> Result<CategoryDefaults> {
        let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT default_canread_base, default_canwrite_base, default_template_id \
             FROM categories WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let (read, write, template) = row.unwrap_or_default();
        Ok(CategoryDefaults {
            canread: read.and_then(cahier_core::BaseLevel::from_code),
            canwrite: write.and_then(cahier_core::BaseLevel::from_code),
            template,
        })
    }

    /// Checks defaults for a resource category of `team_id` before anything is written: the
    /// template must be a live resource template of the team that the team may read, so every
    /// member can start from it.
    pub async fn check_category_defaults(
        &self,
        team_id: i64,
        defaults: &CategoryDefaults,
    ) -> Result<()> {
        if let Some(template) = defaults.template {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM entities WHERE id = ? AND kind = 'resource_template' AND team_id = ? \
                 AND state = 1 AND canread_base >= 30",
            )
            .bind(template)
            .bind(team_id)
            .fetch_optional(&self.pool)
            .await?;
            if found.is_none() {
                return Err(invalid(
                    "default_template",
                    format!(
                        "no resource template {template} shared with this team; share it with the team first"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Sets the defaults of a resource category of `team_id` (checked as
    /// [`Store::check_category_defaults`]).
    pub async fn set_category_defaults(
        &self,
        id: i64,
        team_id: i64,
        defaults: CategoryDefaults,
    ) -> Result<()> {
        self.check_term(Vocabulary::Category, id, team_id, Family::Resource)
            .await?;
        self.check_category_defaults(team_id, &defaults).await?;
        sqlx::query(
            "UPDATE categories SET default_canread_base = ?, default_canwrite_base = ?, \
             default_template_id = ? WHERE id = ?",
        )
        .bind(defaults.canread.map(cahier_core::BaseLevel::code))
        .bind(defaults.canwrite.map(cahier_core::BaseLevel::code))
        .bind(defaults.template)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The default term of a team and family, if any.
    pub async fn default_term(
        &self,
        vocabulary: Vocabulary,
        team_id: i64,
        family: Family,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE team_id = ? AND family = ? AND state = 1 AND is_default LIMIT 1",
            vocabulary.table()
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(team_id)
            .bind(family.as_str())
            .fetch_optional(&self.pool)
            .await?)
    }
}
