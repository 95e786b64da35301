//! What a signature means. The codes are eLabFTW's (`PATCH {"action":"sign","meaning":..}`),
//! so scripts written for it work unchanged; witness (60) is ours. Pure: the signing itself is
//! `cahier-trace`'s job.

/// The meaning a signer gives their signature; it is part of the signed trusted comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Meaning {
    /// 10: I approve this version.
    Approval,
    /// 11: I do not approve this version.
    Disapproval,
    /// 20: I wrote this.
    Authorship,
    /// 30: I take responsibility for this.
    Responsibility,
    /// 40: I reviewed this.
    Review,
    /// 50: I checked it for safety.
    Safety,
    /// 60: I witnessed this work (not in eLabFTW).
    Witness,
}

impl Meaning {
    /// Every meaning, in code order.
    pub const ALL: [Meaning; 7] = [
        Meaning::Approval,
        Meaning::Disapproval,
        Meaning::Authorship,
        Meaning::Responsibility,
        Meaning::Review,
        Meaning::Safety,
        Meaning::Witness,
    ];

    /// The integer code.
    pub fn code(self) -> i64 {
        match self {
            Meaning::Approval => 10,
            Meaning::Disapproval => 11,
            Meaning::Authorship => 20,
            Meaning::Responsibility => 30,
            Meaning::Review => 40,
            Meaning::Safety => 50,
            Meaning::Witness => 60,
        }
    }

    /// The meaning of a code.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The English name, as written in the trusted comment and used as an i18n key suffix.
    pub fn name(self) -> &'static str {
        match self {
            Meaning::Approval => "approval",
            Meaning::Disapproval => "disapproval",
            Meaning::Authorship => "authorship",
            Meaning::Responsibility => "responsibility",
            Meaning::Review => "review",
            Meaning::Safety => "safety",
            Meaning::Witness => "witness",
        }
    }

    /// A code (`"40"`) or a name (`"review"`, any case).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        match text.parse::<i64>() {
            Ok(code) => Self::from_code(code),
            Err(_) => Self::ALL
                .into_iter()
                .find(|m| m.name().eq_ignore_ascii_case(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Meaning;

    #[test]
    fn codes_and_names_round_trip() {
        for meaning in Meaning::ALL {
            assert_eq!(Meaning::from_code(meaning.code()), Some(meaning));
            assert_eq!(Meaning::parse(meaning.name()), Some(meaning));
            assert_eq!(Meaning::parse(&meaning.code().to_string()), Some(meaning));
        }
        assert_eq!(Meaning::parse("Review"), Some(Meaning::Review));
        assert_eq!(Meaning::parse("12"), None);
        assert_eq!(Meaning::parse("vibes"), None);
    }
}
