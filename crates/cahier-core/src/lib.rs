//! The domain of Cahier: entity identifiers and kinds, the Automerge document that holds an
//! entity's content, its projection into plain values, the access policy, and Markdown rendering.
//!
//! Nothing here does IO or reads the clock: time, actors and ids are passed in, so every rule can
//! be tested deterministically and shared by the lab instance and the field replica.

pub mod access;
pub mod booking;
pub mod clock;
pub mod document;
pub mod entity;
pub mod fields;
pub mod markdown;
pub mod search_terms;
pub mod signature;
pub mod stock;
pub mod template;
pub mod text_splice;
pub mod trace;
pub mod version_diff;
pub mod zone;

pub use access::{AccessRule, BaseLevel, EntityAccess, Subject};
pub use clock::{Clock, FixedClock, SystemClock};
pub use document::{DocError, EntityContent, EntityDoc, EntityPatch};
pub use entity::{EntityId, EntityKind};
