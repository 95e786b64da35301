//! The access policy: who may read, write and administer an entity. This is the only place the
//! rules are written; the store's SQL filter (`cahier-store`, `access_sql`) mirrors
//! [`EntityAccess::may_read`] and a matrix test proves the two agree.
//!
//! The model is eLabFTW's (`reference/elabftw.md` §2): `canread`/`canwrite` are each a base
//! level plus extra teams, team groups and users. The owner always has access. Sysadmins get no
//! bypass to entries. One deliberate difference: base level 30 ("team") grants every member of
//! the entity's team, whatever team the user has currently selected, so switching teams never
//! hides entries one may read.

use serde::{Deserialize, Serialize};

/// A base access level, with eLabFTW's integer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum BaseLevel {
    /// 10: the owner only.
    OwnerOnly,
    /// 20: the owner and the admins of the entity's team.
    OwnerAndAdmins,
    /// 30: every member of the entity's team.
    Team,
    /// 40: every signed-in user of the instance.
    Organization,
    /// 50: everyone, including anonymous visitors.
    Public,
}

impl BaseLevel {
    /// All levels, narrowest first.
    pub const ALL: [BaseLevel; 5] = [
        Self::OwnerOnly,
        Self::OwnerAndAdmins,
        Self::Team,
        Self::Organization,
        Self::Public,
    ];

    /// eLabFTW's integer code.
    pub fn code(self) -> i64 {
        match self {
            Self::OwnerOnly => 10,
            Self::OwnerAndAdmins => 20,
            Self::Team => 30,
            Self::Organization => 40,
            Self::Public => 50,
        }
    }

    /// Parses eLabFTW's integer code.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.code() == code)
    }

    /// The slug used by eLabFTW's advanced search (`visibility:`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::OwnerOnly => "useronly",
            Self::OwnerAndAdmins => "user",
            Self::Team => "myteam",
            Self::Organization => "organization",
            Self::Public => "public",
        }
    }
}

impl TryFrom<i64> for BaseLevel {
    type Error = String;
    fn try_from(code: i64) -> Result<Self, Self::Error> {
        Self::from_code(code)
            .ok_or_else(|| format!("{code} is not an access level (10, 20, 30, 40 or 50)"))
    }
}

impl From<BaseLevel> for i64 {
    fn from(level: BaseLevel) -> i64 {
        level.code()
    }
}

/// One access rule (`canread` or `canwrite`): a base level plus explicit grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// The base level.
    pub base: BaseLevel,
    /// Extra teams whose members are granted.
    #[serde(default)]
    pub teams: Vec<i64>,
    /// Extra team groups whose members are granted.
    #[serde(default)]
    pub teamgroups: Vec<i64>,
    /// Extra users who are granted.
    #[serde(default)]
    pub users: Vec<i64>,
}

impl AccessRule {
    /// A rule with only a base level.
    pub fn base(base: BaseLevel) -> Self {
        Self {
            base,
            teams: Vec::new(),
            teamgroups: Vec::new(),
            users: Vec::new(),
        }
    }

    /// The eLabFTW JSON form of the extra grants: `{"teams":[],"teamgroups":[],"users":[]}`.
    pub fn extras_json(&self) -> serde_json::Value {
        serde_json::json!({"teams": self.teams, "teamgroups": self.teamgroups, "users": self.users})
    }

    /// Sorts and dedupes the lists so equal rules compare equal.
    pub fn normalized(mut self) -> Self {
        for list in [&mut self.teams, &mut self.teamgroups, &mut self.users] {
            list.sort_unstable();
            list.dedup();
        }
        self
    }
}

/// Who is asking: a signed-in user with their memberships.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// The user's integer id.
    pub user_id: i64,
    /// Whether the user administers the whole instance.
    pub is_sysadmin: bool,
    /// Teams the user belongs to, with whether they administer each.
    pub teams: Vec<Membership>,
    /// Team groups the user belongs to.
    pub groups: Vec<i64>,
}

/// A user's membership of one team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The team.
    pub team_id: i64,
    /// Whether the user is an admin of that team.
    pub is_admin: bool,
}

impl Subject {
    /// Whether the subject is a member of `team_id`.
    pub fn is_member(&self, team_id: i64) -> bool {
        self.teams.iter().any(|m| m.team_id == team_id)
    }
    /// Whether the subject administers `team_id`.
    pub fn is_team_admin(&self, team_id: i64) -> bool {
        self.teams
            .iter()
            .any(|m| m.team_id == team_id && m.is_admin)
    }
}

/// What the policy needs to know about an entity (all from SQL, never from the document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityAccess {
    /// The owner's user id.
    pub owner_id: i64,
    /// The team the entity belongs to.
    pub team_id: i64,
    /// Who may read.
    pub canread: AccessRule,
    /// Who may write.
    pub canwrite: AccessRule,
    /// The user who locked it, if locked.
    pub locked_by: Option<i64>,
}

/// Why someone has access: one reason per grant that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// The subject owns the entity.
    Owner,
    /// The base level is public.
    Public,
    /// The base level is "every signed-in user".
    Organization,
    /// The base level is the entity's team, and the subject is a member.
    TeamMember(i64),
    /// The base level includes the team's admins, and the subject is one.
    TeamAdmin(i64),
    /// The subject belongs to a team listed explicitly.
    ExtraTeam(i64),
    /// The subject belongs to a team group listed explicitly.
    ExtraGroup(i64),
    /// The subject is listed explicitly.
    ExtraUser,
    /// Write access implies read access.
    Writer,
}

impl EntityAccess {
    /// The grants by which `rule` admits `subject` (empty: not admitted by this rule).
    pub fn grants(&self, rule: &AccessRule, subject: &Subject) -> Vec<Grant> {
        let mut grants = Vec::new();
        if self.owner_id == subject.user_id {
            grants.push(Grant::Owner);
        }
        match rule.base {
            BaseLevel::Public => grants.push(Grant::Public),
            BaseLevel::Organization => grants.push(Grant::Organization),
            BaseLevel::Team if subject.is_member(self.team_id) => {
                grants.push(Grant::TeamMember(self.team_id));
            }
            BaseLevel::Team | BaseLevel::OwnerAndAdmins if subject.is_team_admin(self.team_id) => {
                grants.push(Grant::TeamAdmin(self.team_id));
            }
            _ => {}
        }
        for team in &rule.teams {
            if subject.is_member(*team) {
                grants.push(Grant::ExtraTeam(*team));
            }
        }
        for group in &rule.teamgroups {
            if subject.groups.contains(group) {
                grants.push(Grant::ExtraGroup(*group));
            }
        }
        if rule.users.contains(&subject.user_id) {
            grants.push(Grant::ExtraUser);
        }
        grants
    }

    /// Why `subject` may read (empty: they may not).
    pub fn read_grants(&self, subject: &Subject) -> Vec<Grant> {
        let mut grants = self.grants(&self.canread, subject);
        if grants.is_empty() && !self.grants(&self.canwrite, subject).is_empty() {
            grants.push(Grant::Writer);
        }
        grants
    }

    /// May `subject` read this entity?
    pub fn may_read(&self, subject: &Subject) -> bool {
        !self.read_grants(subject).is_empty()
    }

    /// Does `subject` hold a write grant, whatever the lock? (What a lock is lifted for, and
    /// who may add a proof — a trusted timestamp — to a locked entity.)
    pub fn has_write_grant(&self, subject: &Subject) -> bool {
        !self.grants(&self.canwrite, subject).is_empty()
    }

    /// May `subject` change this entity's content now? Needs a write grant, and the entity
    /// must not be locked: a lock refuses every change, from anyone, until it is lifted.
    pub fn may_write(&self, subject: &Subject) -> bool {
        self.locked_by.is_none() && self.has_write_grant(subject)
    }

    /// May `subject` lock this entity? Its owner and the admins of its team.
    pub fn may_lock(&self, subject: &Subject) -> bool {
        self.may_admin(subject)
    }

    /// May `subject` lift this entity's lock? The person who locked it, its owner and the
    /// admins of its team.
    pub fn may_unlock(&self, subject: &Subject) -> bool {
        self.locked_by == Some(subject.user_id) || self.may_admin(subject)
    }

    /// May `subject` administer this entity: change its access rules, lock or unlock it,
    /// delete and restore it, transfer it? The owner and the admins of its team.
    pub fn may_admin(&self, subject: &Subject) -> bool {
        self.owner_id == subject.user_id || subject.is_team_admin(self.team_id)
    }

    /// May `subject` book this resource? eLabFTW's `canbook` rule: `None` means "same as
    /// `canread`". One must also be able to read it; its owner and team admins always may.
    pub fn may_book(&self, subject: &Subject, canbook: Option<&AccessRule>) -> bool {
        if !self.may_read(subject) {
            return false;
        }
        match canbook {
            None => true,
            Some(rule) => self.may_admin(subject) || !self.grants(rule, subject).is_empty(),
        }
    }

    /// Whether the entity is locked.
    pub fn is_locked(&self) -> bool {
        self.locked_by.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(user_id: i64, teams: &[(i64, bool)], groups: &[i64]) -> Subject {
        Subject {
            user_id,
            is_sysadmin: false,
            teams: teams
                .iter()
                .map(|&(team_id, is_admin)| Membership { team_id, is_admin })
                .collect(),
            groups: groups.to_vec(),
        }
    }

    fn entity(read: BaseLevel, write: BaseLevel) -> EntityAccess {
        EntityAccess {
            owner_id: 1,
            team_id: 10,
            canread: AccessRule::base(read),
            canwrite: AccessRule::base(write),
            locked_by: None,
        }
    }

    #[test]
    fn canbook_narrows_who_may_book_but_never_below_owner_and_admins() {
        let e = entity(BaseLevel::Team, BaseLevel::OwnerOnly);
        let member = subject(2, &[(10, false)], &[]);
        let admin = subject(3, &[(10, true)], &[]);
        let outsider = subject(4, &[(20, false)], &[]);
        assert!(e.may_book(&member, None));
        assert!(!e.may_book(&outsider, None));
        let only_owner = AccessRule::base(BaseLevel::OwnerOnly);
        assert!(!e.may_book(&member, Some(&only_owner)));
        assert!(e.may_book(&admin, Some(&only_owner)));
        let listed = AccessRule {
            users: vec![2],
            ..AccessRule::base(BaseLevel::OwnerOnly)
        };
        assert!(e.may_book(&member, Some(&listed)));
        // canbook does not widen reading.
        let everyone = AccessRule::base(BaseLevel::Organization);
        assert!(!e.may_book(&outsider, Some(&everyone)));
    }

    #[test]
    fn base_levels_admit_the_right_people() {
        let owner = subject(1, &[(10, false)], &[]);
        let member = subject(2, &[(10, false)], &[]);
        let admin = subject(3, &[(10, true)], &[]);
        let outsider = subject(4, &[(20, false)], &[]);
        let sysadmin = Subject {
            is_sysadmin: true,
            ..subject(5, &[(20, true)], &[])
        };
        let cases = [
            (BaseLevel::OwnerOnly, [true, false, false, false, false]),
            (BaseLevel::OwnerAndAdmins, [true, false, true, false, false]),
            (BaseLevel::Team, [true, true, true, false, false]),
            (BaseLevel::Organization, [true, true, true, true, true]),
            (BaseLevel::Public, [true, true, true, true, true]),
        ];
        for (level, expected) in cases {
            let e = entity(level, BaseLevel::OwnerOnly);
            let got = [&owner, &member, &admin, &outsider, &sysadmin].map(|s| e.may_read(s));
            assert_eq!(got, expected, "{level:?}");
        }
    }

    #[test]
    fn explicit_grants_add_teams_groups_and_users() {
        let mut e = entity(BaseLevel::OwnerOnly, BaseLevel::OwnerOnly);
        let other_team = subject(7, &[(30, false)], &[]);
        let grouped = subject(8, &[(40, false)], &[99]);
        let named = subject(9, &[], &[]);
        assert!(!e.may_read(&other_team) && !e.may_read(&grouped) && !e.may_read(&named));
        e.canread.teams.push(30);
        e.canread.teamgroups.push(99);
        e.canread.users.push(9);
        assert!(e.may_read(&other_team) && e.may_read(&grouped) && e.may_read(&named));
        assert!(!e.may_write(&named));
    }

    #[test]
    fn write_implies_read() {
        let mut e = entity(BaseLevel::OwnerOnly, BaseLevel::OwnerOnly);
        e.canwrite.users.push(9);
        let named = subject(9, &[], &[]);
        assert_eq!(e.read_grants(&named), vec![Grant::Writer]);
        assert!(e.may_write(&named));
    }

    #[test]
    fn a_lock_refuses_every_writer_and_only_the_locker_owner_or_admins_lift_it() {
        let mut e = entity(BaseLevel::Team, BaseLevel::Team);
        let owner = subject(1, &[(10, false)], &[]);
        let locker = subject(2, &[(10, false)], &[]);
        let member = subject(4, &[(10, false)], &[]);
        let admin = subject(3, &[(10, true)], &[]);
        assert!(e.may_lock(&owner) && e.may_lock(&admin));
        assert!(!e.may_lock(&member));
        e.locked_by = Some(2);
        for who in [&owner, &locker, &member, &admin] {
            assert!(!e.may_write(who));
            assert!(e.has_write_grant(who));
        }
        assert!(e.may_unlock(&locker) && e.may_unlock(&owner) && e.may_unlock(&admin));
        assert!(!e.may_unlock(&member));
    }

    #[test]
    fn base_level_codes_parse_strictly() {
        assert_eq!(BaseLevel::from_code(30), Some(BaseLevel::Team));
        assert_eq!(BaseLevel::from_code(35), None);
        assert!(serde_json::from_str::<BaseLevel>("25").is_err());
    }
}
