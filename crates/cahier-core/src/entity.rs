//! Entity identity: the UUIDv7 made where an entity is created, and the kinds of entity that
//! share one document model (experiments, resources and their templates).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The stable identity of an entity, made on the device that created it (UUIDv7), so that
/// creation works offline. The server also gives each entity a small integer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityId(pub uuid::Uuid);

impl EntityId {
    /// A new UUIDv7 for the time `now_ms`, with `random` filling the rest.
    pub fn new(now_ms: i64, random: [u8; 10]) -> Self {
        let ms = u64::try_from(now_ms).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid())
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EntityId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// The kinds of entity. They share one document model and one set of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// An experiment (API v2 `experiments`).
    Experiment,
    /// A resource (API v2 `items`).
    Resource,
    /// An experiment template (API v2 `experiments_templates`).
    ExperimentTemplate,
    /// A resource template (API v2 `items_types`).
    ResourceTemplate,
}

impl EntityKind {
    /// The name stored in the database and in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Experiment => "experiment",
            Self::Resource => "resource",
            Self::ExperimentTemplate => "experiment_template",
            Self::ResourceTemplate => "resource_template",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "experiment" => Some(Self::Experiment),
            "resource" => Some(Self::Resource),
            "experiment_template" => Some(Self::ExperimentTemplate),
            "resource_template" => Some(Self::ResourceTemplate),
            _ => None,
        }
    }

    /// The API v2 path segment (`experiments`, `items`, …).
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Experiment => "experiments",
            Self::Resource => "items",
            Self::ExperimentTemplate => "experiments_templates",
            Self::ResourceTemplate => "items_types",
        }
    }

    /// eLabFTW's integer code for the kind (`created_from_type`).
    pub fn elab_code(self) -> i64 {
        match self {
            Self::Experiment => 1,
            Self::Resource => 2,
            Self::ExperimentTemplate => 3,
            Self::ResourceTemplate => 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_are_version_7_and_sort_by_time() {
        let a = EntityId::new(1_000, [1; 10]);
        let b = EntityId::new(2_000, [0; 10]);
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<EntityId>().ok(), Some(a));
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [
            EntityKind::Experiment,
            EntityKind::Resource,
            EntityKind::ExperimentTemplate,
            EntityKind::ResourceTemplate,
        ] {
            assert_eq!(EntityKind::parse(kind.as_str()), Some(kind));
        }
    }
}
