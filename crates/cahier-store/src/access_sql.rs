//! The SQL form of the access policy: "entities this subject may read", for lists, search,
//! exports and the sync feed. It mirrors `cahier_core::access::EntityAccess::read_grants`
//! exactly; the policy matrix test (`tests/it/policy_matrix.rs`) checks both on every
//! combination of base levels, grants and roles.

use cahier_core::Subject;

fn id_list(ids: impl Iterator<Item = i64>) -> String {
    let list: Vec<String> = ids.map(|id| id.to_string()).collect();
    if list.is_empty() {
        "NULL".to_owned()
    } else {
        list.join(",")
    }
}

/// A boolean SQL expression over the entity table aliased `e`, true when `subject` may read
/// the row. Only integers from the subject are inlined, so it is safe to splice into SQL.
pub fn readable_by(subject: &Subject) -> String {
    let user = subject.user_id;
    let teams = id_list(subject.teams.iter().map(|m| m.team_id));
    let admin_teams = id_list(
        subject
            .teams
            .iter()
            .filter(|m| m.is_admin)
            .map(|m| m.team_id),
    );
    let groups = id_list(subject.groups.iter().copied());
    format!(
        "(e.owner_id = {user} \
         OR e.canread_base >= 40 OR e.canwrite_base >= 40 \
         OR ((e.canread_base = 30 OR e.canwrite_base = 30) AND e.team_id IN ({teams})) \
         OR ((e.canread_base IN (20, 30) OR e.canwrite_base IN (20, 30)) AND e.team_id IN ({admin_teams})) \
         OR EXISTS (SELECT 1 FROM entity_acl a WHERE a.entity_id = e.id AND ( \
              (a.grantee = 't' AND a.ref_id IN ({teams})) \
              OR (a.grantee = 'g' AND a.ref_id IN ({groups})) \
              OR (a.grantee = 'u' AND a.ref_id = {user}))))"
    )
}

/// A boolean SQL expression over `e`, true when `subject` may see the row in the bin: a deleted
/// entity is shown only to those who may restore it (its owner and its team's admins), and
/// only if they may also read it, as `Store::entity` decides for one entity.
pub fn deleted_visible_to(subject: &Subject) -> String {
    let user = subject.user_id;
    let admin_teams = id_list(
        subject
            .teams
            .iter()
            .filter(|m| m.is_admin)
            .map(|m| m.team_id),
    );
    format!("(e.state != 3 OR e.owner_id = {user} OR e.team_id IN ({admin_teams}))")
}
