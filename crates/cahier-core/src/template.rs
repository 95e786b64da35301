//! Templates: which kind of entry a template makes, and who may share one. Team admins keep
//! the team's templates (readable by the team, written by their owner and the team's admins);
//! any user may keep private templates, which only they read and write.

use crate::access::{AccessRule, BaseLevel, Subject};
use crate::entity::EntityKind;

/// The kind of entry made from a template of `kind` (`None` when `kind` is not a template).
pub fn instance_kind(kind: EntityKind) -> Option<EntityKind> {
    match kind {
        EntityKind::ExperimentTemplate => Some(EntityKind::Experiment),
        EntityKind::ResourceTemplate => Some(EntityKind::Resource),
        EntityKind::Experiment | EntityKind::Resource => None,
    }
}

/// The kind of template entries of `kind` are made from (`None` for templates).
pub fn template_kind(kind: EntityKind) -> Option<EntityKind> {
    match kind {
        EntityKind::Experiment => Some(EntityKind::ExperimentTemplate),
        EntityKind::Resource => Some(EntityKind::ResourceTemplate),
        EntityKind::ExperimentTemplate | EntityKind::ResourceTemplate => None,
    }
}

/// Whether `kind` is a template kind.
pub fn is_template(kind: EntityKind) -> bool {
    instance_kind(kind).is_some()
}

/// The access rules a new template of `team_id` gets when its creator gives none: shared with
/// the team when a team admin makes it, private otherwise.
pub fn default_rules(subject: &Subject, team_id: i64) -> (AccessRule, AccessRule) {
    if subject.is_team_admin(team_id) || subject.is_sysadmin {
        (
            AccessRule::base(BaseLevel::Team),
            AccessRule::base(BaseLevel::OwnerAndAdmins),
        )
    } else {
        (
            AccessRule::base(BaseLevel::OwnerOnly),
            AccessRule::base(BaseLevel::OwnerOnly),
        )
    }
}

fn is_private(rule: &AccessRule) -> bool {
    rule.base == BaseLevel::OwnerOnly
        && rule.teams.is_empty()
        && rule.teamgroups.is_empty()
        && rule.users.is_empty()
}

/// Checks the rules of a template of `team_id`: only its team's admins (and sysadmins) may
/// share a template; anyone else's templates stay private (owner only).
pub fn check_rules(
    subject: &Subject,
    team_id: i64,
    canread: &AccessRule,
    canwrite: &AccessRule,
) -> Result<(), &'static str> {
    if subject.is_team_admin(team_id)
        || subject.is_sysadmin
        || (is_private(canread) && is_private(canwrite))
    {
        Ok(())
    } else {
        Err("only team admins can share a template; your own templates stay private (owner only)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Membership;

    fn subject(is_admin: bool) -> Subject {
        Subject {
            user_id: 5,
            is_sysadmin: false,
            teams: vec![Membership {
                team_id: 1,
                is_admin,
            }],
            groups: Vec::new(),
        }
    }

    #[test]
    fn only_team_admins_share_templates() {
        let private = AccessRule::base(BaseLevel::OwnerOnly);
        let team = AccessRule::base(BaseLevel::Team);
        assert!(check_rules(&subject(false), 1, &private, &private).is_ok());
        assert!(check_rules(&subject(false), 1, &team, &private).is_err());
        assert!(check_rules(&subject(true), 1, &team, &private).is_ok());
        assert!(
            check_rules(&subject(true), 2, &team, &private).is_err(),
            "admin of another team"
        );
        let (read, write) = default_rules(&subject(false), 1);
        assert!(check_rules(&subject(false), 1, &read, &write).is_ok());
        assert_eq!(default_rules(&subject(true), 1).0.base, BaseLevel::Team);
    }

    #[test]
    fn kinds_pair_up() {
        for kind in [EntityKind::Experiment, EntityKind::Resource] {
            assert_eq!(template_kind(kind).and_then(instance_kind), Some(kind));
        }
    }
}
