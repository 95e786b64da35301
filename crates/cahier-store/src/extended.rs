//! eLabFTW's advanced query grammar, used by the API's `extended` parameter and by `q` (API and
//! search box) when what was typed uses it.
//!
//! ```text
//! query   := or
//! or      := and (("OR" | "|") and)*
//! and     := not ([("AND" | "&")] not)*          -- a space alone means AND
//! not     := ("NOT" | "!") not | "(" or ")" | term
//! term    := name ":" value | "quoted phrase" | word
//! ```
//!
//! Fields: `author:` and `owner:` (name or e-mail, or a user id), `body:`, `title:`, `elabid:`
//! (text, `%` and `_` wildcards, otherwise "contains"), `category:` and `status:` (title or id),
//! `group:` (a team group the owner belongs to), `tag:`, `id:` and `rating:` (numbers with
//! `<`, `<=`, `>`, `>=`, `=`, `!=`), `date:`, `created_at:`, `locked_at:`, `timestamped_at:`
//! (days `YYYY-MM-DD` or `YYYYMMDD`, with the same comparisons or a range `A..B`; times are
//! UTC), `locked:`, `timestamped:` (yes/no), `state:` (normal, archived, deleted or 1–3, several
//! with commas), `visibility:` (public, organization, myteam, user, useronly),
//! `extrafield:Name:value` and `field:Name>20` (metadata fields). Operators are upper case so
//! that "and" stays a word; a word or phrase outside a field is a full-text search.
//!
//! Every value is bound, never spliced into SQL. Top-level full-text words and field filters
//! are handed to the list's planned search ([`split`]), so they stay as fast as plain `q`.

use crate::field_filter::{Cmp, FieldFilter};
use crate::{Result, invalid};
use sqlx::{QueryBuilder, Sqlite};

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every part must match.
    And(Vec<Expr>),
    /// Any part must match.
    Or(Vec<Expr>),
    /// Must not match.
    Not(Box<Expr>),
    /// One condition.
    Term(Term),
}

// Field numbers are finite (the parser refuses others).
impl Eq for Expr {}

/// A comparison of numbers or days, with `!=` (which metadata fields do not have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// One of `=`, `<`, `<=`, `>`, `>=`.
    Cmp(Cmp),
    /// `!=`
    Ne,
}

/// A condition on days: compared with one day, or within a range of days (both included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Days {
    /// Compared with a day (`YYYY-MM-DD`).
    Compare(Compare, time::Date),
    /// From the first day to the second, both included.
    Between(time::Date, time::Date),
}

/// Columns searched with a text pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextColumn {
    /// The title.
    Title,
    /// The body source.
    Body,
    /// The eLabFTW-style unique id.
    Elabid,
}

/// Columns holding a day or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayColumn {
    /// The entry's own date.
    Date,
    /// Creation.
    CreatedAt,
    /// Locking.
    LockedAt,
    /// Any trusted timestamp's time.
    TimestampedAt,
}

/// Something named by id or by a text pattern (users, categories, statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrId {
    /// The record's id.
    Id(i64),
    /// A LIKE pattern on its name.
    Name(String),
}

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// Full-text words; `phrase` when quoted (the words must follow each other).
    Text {
        /// What was typed.
        text: String,
        /// Quoted?
        phrase: bool,
    },
    /// A LIKE pattern on a text column.
    Like(TextColumn, String),
    /// The owner (`author:` and `owner:`).
    Owner(NameOrId),
    /// The category.
    Category(NameOrId),
    /// The status.
    Status(NameOrId),
    /// A team group the owner belongs to (LIKE pattern on its name).
    Group(String),
    /// A tag (LIKE pattern).
    Tag(String),
    /// The id.
    Id(Compare, i64),
    /// The rating.
    Rating(Compare, i64),
    /// States (1 normal, 2 archived, 3 deleted).
    State(Vec<i64>),
    /// The read base (`visibility:`).
    Visibility(i64),
    /// Locked or not.
    Locked(bool),
    /// Timestamped or not.
    Timestamped(bool),
    /// A condition on a day column.
    Day(DayColumn, Days),
    /// A metadata field (`field:` and exact `extrafield:`).
    Field(FieldFilter),
    /// A metadata field's text matching a LIKE pattern (`extrafield:Name:val%`).
    FieldLike(String, String),
}

/// Most terms in one query.
const MAX_TERMS: usize = 64;
/// Deepest nesting of parentheses and NOTs.
const MAX_DEPTH: usize = 16;
/// Longest query read.
const MAX_LEN: usize = 4_000;

fn bad(message: impl Into<String>) -> crate::StoreError {
    invalid(
        "extended",
        format!(
            "{}; see the query help: e.g. title:soil AND (status:Running OR tag:field) date:>2024-01-01",
            message.into()
        ),
    )
}

/// Parses a query; `None` when it has no term.
pub fn parse(input: &str) -> Result<Option<Expr>> {
    if input.len() > MAX_LEN {
        return Err(bad(format!(
            "the query is too long ({} characters, at most {MAX_LEN})",
            input.len()
        )));
    }
    let mut parser = Parser {
        s: input,
        pos: 0,
        terms: 0,
        depth: 0,
    };
    parser.skip_ws();
    if parser.at_end() {
        return Ok(None);
    }
    let expr = parser.or()?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(bad(format!(
            "unexpected {:?} at character {}",
            parser.rest().chars().next().unwrap_or(' '),
            parser.pos + 1
        )));
    }
    Ok(Some(expr))
}

/// Whether a search typed in `q` uses the grammar (operators, parentheses, quotes or a field
/// other than `field:`/`extrafield:`, which plain search already understands).
pub fn looks_advanced(q: &str) -> bool {
    if q.contains(['"', '(', ')', '|', '&']) {
        return true;
    }
    q.split_whitespace().any(|word| {
        matches!(word, "AND" | "OR" | "NOT")
            || word.starts_with('!')
            || word.split_once(':').is_some_and(|(name, _)| {
                FIELDS.contains(&name.to_ascii_lowercase().as_str())
                    && !matches!(name.to_ascii_lowercase().as_str(), "field" | "extrafield")
            })
    })
}

/// What a query asks, split for the list's planned search: top-level full-text words, top-level
/// metadata field filters, and the rest as one expression.
pub fn split(expr: Expr) -> (Vec<String>, Vec<FieldFilter>, Option<Expr>) {
    let parts = match expr {
        Expr::And(parts) => parts,
        other => vec![other],
    };
    let mut words = Vec::new();
    let mut fields = Vec::new();
    let mut rest = Vec::new();
    for part in parts {
        match part {
            Expr::Term(Term::Text {
                text,
                phrase: false,
            }) => words.push(text),
            Expr::Term(Term::Field(filter)) => fields.push(filter),
            other => rest.push(other),
        }
    }
    let rest = match rest.len() {
        0 => None,
        1 => rest.pop(),
        _ => Some(Expr::And(rest)),
    };
    (words, fields, rest)
}

/// Reads what was typed in a search box or the API's `q` into `query`: the grammar when it is
/// used ([`looks_advanced`]), otherwise words and `field:` filters.
///
/// A search box forgives stray quotes and parentheses (`q` then searches the words); a wrong
/// field value is still refused with what to write.
pub fn apply_q(query: &mut crate::listing::ListQuery, q: &str) -> Result<()> {
    if looks_advanced(q) {
        match parse(q) {
            Ok(Some(expr)) => add(query, expr),
            Ok(None) => {}
            Err(_) if !balanced(q) => {
                let words = q.replace(['"', '(', ')'], " ");
                let (words, filters) = crate::field_filter::parse(&words)?;
                query.q = words;
                query.fields = filters;
            }
            Err(error) => return Err(error),
        }
    } else {
        let (words, filters) = crate::field_filter::parse(q)?;
        query.q = words;
        query.fields = filters;
    }
    Ok(())
}

/// Whether quotes pair up and parentheses close.
fn balanced(q: &str) -> bool {
    let mut depth = 0i64;
    let mut quote = None;
    for c in q.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            (None, _) => {}
        }
    }
    depth == 0 && quote.is_none()
}

/// Adds a parsed query to what `query` already asks (both must match).
pub fn add(query: &mut crate::listing::ListQuery, expr: Expr) {
    let (words, fields, rest) = split(expr);
    if !words.is_empty() {
        let words = words.join(" ");
        query.q = Some(match query.q.take() {
            Some(q) => format!("{q} {words}"),
            None => words,
        });
    }
    query.fields.extend(fields);
    if let Some(rest) = rest {
        query.extended = Some(match query.extended.take() {
            Some(previous) => Expr::And(vec![previous, rest]),
            None => rest,
        });
    }
}

/// Whether the query says which states it wants (then the list's default, normal entries
/// only, does not apply).
pub fn mentions_state(expr: &Expr) -> bool {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => parts.iter().any(mentions_state),
        Expr::Not(inner) => mentions_state(inner),
        Expr::Term(Term::State(_)) => true,
        Expr::Term(_) => false,
    }
}

const FIELDS: &[&str] = &[
    "author",
    "body",
    "category",
    "created_at",
    "custom_id",
    "date",
    "elabid",
    "extrafield",
    "field",
    "group",
    "id",
    "locked",
    "locked_at",
    "owner",
    "rating",
    "state",
    "status",
    "tag",
    "timestamped",
    "timestamped_at",
    "title",
    "visibility",
];

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    terms: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// Consumes an operator keyword followed by a space or a parenthesis.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let rest = self.rest();
        if let Some(after) = rest.strip_prefix(keyword)
            && ends_keyword(after)
        {
            self.pos += keyword.len();
            return true;
        }
        false
    }

    fn or(&mut self) -> Result<Expr> {
        let mut parts = vec![self.and()?];
        loop {
            self.skip_ws();
            if self.eat_keyword("OR") || self.eat('|') {
                parts.push(self.and()?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr> {
        let mut parts = vec![self.not()?];
        loop {
            self.skip_ws();
            if self.at_end() || self.peek() == Some(')') || self.peek() == Some('|') {
                break;
            }
            let rest = self.rest();
            if let Some(after) = rest.strip_prefix("OR")
                && ends_keyword(after)
            {
                break;
            }
            if !self.eat_keyword("AND") {
                self.eat('&');
            }
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn not(&mut self) -> Result<Expr> {
        self.skip_ws();
        if self.eat_keyword("NOT") || self.eat('!') {
            self.deeper()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        if self.eat('(') {
            self.deeper()?;
            let inner = self.or()?;
            self.skip_ws();
            if !self.eat(')') {
                return Err(bad("a parenthesis is not closed"));
            }
            self.depth -= 1;
            return Ok(inner);
        }
        if self.at_end() || matches!(self.peek(), Some(')' | '|' | '&')) {
            return Err(bad("an operator is missing what it applies to"));
        }
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(bad(format!("the query has more than {MAX_TERMS} terms")));
        }
        Ok(Expr::Term(self.term()?))
    }

    fn deeper(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(bad(format!(
                "the query nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    /// A quoted string (the quote is next) or a bare word (up to a space or a parenthesis).
    fn value(&mut self) -> Result<(String, bool)> {
        for quote in ['"', '\''] {
            if self.eat(quote) {
                let rest = self.rest();
                let end = rest
                    .find(quote)
                    .ok_or_else(|| bad("a quote is not closed"))?;
                let value = rest[..end].to_owned();
                self.pos += end + 1;
                return Ok((value, true));
            }
        }
        let rest = self.rest();
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .unwrap_or(rest.len());
        self.pos += end;
        Ok((rest[..end].to_owned(), false))
    }

    fn term(&mut self) -> Result<Term> {
        let rest = self.rest();
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..name_len].to_ascii_lowercase();
        if rest[name_len..].starts_with(':') && FIELDS.contains(&name.as_str()) {
            self.pos += name_len + 1;
            return self.field(&name);
        }
        let (mut text, quoted) = self.value()?;
        if text.is_empty() {
            return Err(bad("an empty search term"));
        }
        // eLabFTW's wildcard at the end of a word is a prefix search.
        if !quoted && let Some(stem) = text.strip_suffix('%') {
            text = format!("{stem}*");
        }
        Ok(Term::Text {
            text,
            phrase: quoted,
        })
    }

    fn field(&mut self, name: &str) -> Result<Term> {
        match name {
            "field" => return self.metadata_field(),
            "extrafield" => return self.extrafield(),
            _ => {}
        }
        let (value, _) = self.value()?;
        if value.is_empty() {
            return Err(bad(format!("{name}: needs a value")));
        }
        Ok(match name {
            "author" | "owner" => Term::Owner(name_or_id(&value)),
            "body" => Term::Like(TextColumn::Body, pattern(&value)),
            "title" => Term::Like(TextColumn::Title, pattern(&value)),
            "elabid" => Term::Like(TextColumn::Elabid, exact_or_pattern(&value)),
            "category" => Term::Category(name_or_id(&value)),
            "status" => Term::Status(name_or_id(&value)),
            "group" => Term::Group(pattern(&value)),
            "tag" => Term::Tag(exact_or_pattern(&value)),
            "id" => {
                let (cmp, n) = number(name, &value)?;
                Term::Id(cmp, n)
            }
            "rating" => {
                let (cmp, n) = number(name, &value)?;
                Term::Rating(cmp, n)
            }
            "date" => Term::Day(DayColumn::Date, days(name, &value)?),
            "created_at" => Term::Day(DayColumn::CreatedAt, days(name, &value)?),
            "locked_at" => Term::Day(DayColumn::LockedAt, days(name, &value)?),
            "timestamped_at" => Term::Day(DayColumn::TimestampedAt, days(name, &value)?),
            "locked" => Term::Locked(yes_no(name, &value)?),
            "timestamped" => Term::Timestamped(yes_no(name, &value)?),
            "state" => Term::State(states(&value)?),
            "visibility" => Term::Visibility(visibility(&value)?),
            "custom_id" => {
                return Err(bad(
                    "custom_id: is not used here: entries have no custom ids; search by id: or elabid:",
                ));
            }
            other => return Err(bad(format!("unknown field {other}:"))),
        })
    }

    /// `field:Name<op>value`, as in plain search.
    fn metadata_field(&mut self) -> Result<Term> {
        let name = if self.peek() == Some('"') {
            self.value()?.0
        } else {
            let rest = self.rest();
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '=' | '(' | ')'))
                .unwrap_or(rest.len());
            self.pos += end;
            rest[..end].to_owned()
        };
        if name.trim().is_empty() {
            return Err(bad("field: needs a field name, as in field:Temperature>20"));
        }
        let cmp = [
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
            ("=", Cmp::Eq),
        ]
        .into_iter()
        .find(|(op, _)| self.rest().starts_with(op));
        let Some((op, cmp)) = cmp else {
            return Err(bad(format!("field:{name} needs =, <, <=, > or >=")));
        };
        self.pos += op.len();
        let (value, quoted) = self.value()?;
        let operand = crate::field_filter::operand_for(&name, cmp, value, quoted)?;
        Ok(Term::Field(FieldFilter { name, cmp, operand }))
    }

    /// eLabFTW's `extrafield:Name:value`: the field's value equals `value` (case ignored),
    /// or matches it as a pattern when it has `%`.
    fn extrafield(&mut self) -> Result<Term> {
        let name = if self.peek() == Some('"') || self.peek() == Some('\'') {
            self.value()?.0
        } else {
            let rest = self.rest();
            let end = rest
                .find(|c: char| c.is_whitespace() || matches!(c, ':' | '(' | ')'))
                .unwrap_or(rest.len());
            self.pos += end;
            rest[..end].to_owned()
        };
        if name.trim().is_empty() || !self.eat(':') {
            return Err(bad("write extrafield:Name:value"));
        }
        let (value, quoted) = self.value()?;
        if value.is_empty() {
            return Err(bad(format!("extrafield:{name}: needs a value")));
        }
        if value.contains('%') {
            return Ok(Term::FieldLike(name, value));
        }
        let operand = crate::field_filter::operand_for(&name, Cmp::Eq, value, quoted)?;
        Ok(Term::Field(FieldFilter {
            name,
            cmp: Cmp::Eq,
            operand,
        }))
    }
}

/// Whether what follows an operator's letters ends it (so `ORDER` stays a word).
fn ends_keyword(after: &str) -> bool {
    after.is_empty() || after.starts_with(|c: char| c.is_whitespace() || c == '(' || c == '!')
}

/// A "contains" pattern, or the user's own when it has wildcards.
fn pattern(value: &str) -> String {
    if value.contains(['%', '_']) {
        value.to_owned()
    } else {
        format!("%{value}%")
    }
}

/// An exact match (case ignored), or the user's pattern when it has wildcards.
fn exact_or_pattern(value: &str) -> String {
    value.to_owned()
}

fn name_or_id(value: &str) -> NameOrId {
    match value.parse::<i64>() {
        Ok(id) => NameOrId::Id(id),
        Err(_) => NameOrId::Name(pattern(value)),
    }
}

fn comparison(value: &str) -> (Compare, &str) {
    for (op, cmp) in [
        ("<=", Compare::Cmp(Cmp::Le)),
        (">=", Compare::Cmp(Cmp::Ge)),
        ("!=", Compare::Ne),
        ("<", Compare::Cmp(Cmp::Lt)),
        (">", Compare::Cmp(Cmp::Gt)),
        ("=", Compare::Cmp(Cmp::Eq)),
    ] {
        if let Some(rest) = value.strip_prefix(op) {
            return (cmp, rest);
        }
    }
    (Compare::Cmp(Cmp::Eq), value)
}

fn number(name: &str, value: &str) -> Result<(Compare, i64)> {
    let (cmp, digits) = comparison(value);
    let n = digits.parse().map_err(|_| {
        bad(format!(
            "{name}: expects a whole number, optionally after <, <=, >, >=, = or != (got {value:?})"
        ))
    })?;
    Ok((cmp, n))
}

fn day(name: &str, value: &str) -> Result<time::Date> {
    let digits: String = value.chars().filter(|c| *c != '-').collect();
    let parsed = (digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| {
            let year = digits[..4].parse::<i32>().ok()?;
            let month = digits[4..6].parse::<u8>().ok()?;
            let day = digits[6..].parse::<u8>().ok()?;
            let month = time::Month::try_from(month).ok()?;
            time::Date::from_calendar_date(year, month, day).ok()
        })
        .flatten();
    parsed.ok_or_else(|| {
        bad(format!(
            "{name}: expects a day as YYYY-MM-DD, optionally after <, <=, >, >=, = or !=, or a range A..B (got {value:?})"
        ))
    })
}

fn days(name: &str, value: &str) -> Result<Days> {
    if let Some((from, to)) = value.split_once("..") {
        let (from, to) = (day(name, from)?, day(name, to)?);
        if from > to {
            return Err(bad(format!(
                "{name}: the range {value} ends before it starts"
            )));
        }
        return Ok(Days::Between(from, to));
    }
    let (cmp, rest) = comparison(value);
    Ok(Days::Compare(cmp, day(name, rest)?))
}

fn yes_no(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "oui" => Ok(true),
        "no" | "false" | "0" | "non" => Ok(false),
        _ => Err(bad(format!("{name}: expects yes or no (got {value:?})"))),
    }
}

fn states(value: &str) -> Result<Vec<i64>> {
    value
        .split(',')
        .map(|s| match s.trim().to_ascii_lowercase().as_str() {
            "normal" | "1" => Ok(crate::entities::state::NORMAL),
            "archived" | "2" => Ok(crate::entities::state::ARCHIVED),
            "deleted" | "3" => Ok(crate::entities::state::DELETED),
            other => Err(bad(format!(
                "state: expects normal, archived or deleted (got {other:?})"
            ))),
        })
        .collect()
}

fn visibility(value: &str) -> Result<i64> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "public" => 50,
        "organization" | "organisation" => 40,
        "myteam" | "team" => 30,
        "user" => 20,
        "useronly" => 10,
        other => {
            return Err(bad(format!(
                "visibility: expects public, organization, myteam, user or useronly (got {other:?})"
            )));
        }
    })
}

/// Milliseconds since the epoch at the start (UTC) of a day.
fn day_start_ms(day: time::Date) -> i64 {
    day.midnight().assume_utc().unix_timestamp() * 1000
}

fn next_day(day: time::Date) -> time::Date {
    day.next_day().unwrap_or(day)
}

/// Pushes the SQL condition for `expr` over entities aliased `e`.
pub fn push(builder: &mut QueryBuilder<Sqlite>, expr: &Expr) {
    match expr {
        Expr::And(parts) | Expr::Or(parts) => {
            let joiner = if matches!(expr, Expr::And(_)) {
                " AND "
            } else {
                " OR "
            };
            builder.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    builder.push(joiner);
                }
                push(builder, part);
            }
            builder.push(")");
        }
        Expr::Not(inner) => {
            builder.push("NOT (");
            push(builder, inner);
            builder.push(")");
        }
        Expr::Term(term) => push_term(builder, term),
    }
}

fn push_compare(builder: &mut QueryBuilder<Sqlite>, column: &str, cmp: Compare, value: i64) {
    let op = match cmp {
        Compare::Cmp(Cmp::Eq) => "=",
        Compare::Cmp(Cmp::Lt) => "<",
        Compare::Cmp(Cmp::Le) => "<=",
        Compare::Cmp(Cmp::Gt) => ">",
        Compare::Cmp(Cmp::Ge) => ">=",
        Compare::Ne => "!=",
    };
    builder.push(format!("{column} {op} "));
    builder.push_bind(value);
}

fn push_name_or_id(
    builder: &mut QueryBuilder<Sqlite>,
    column: &str,
    table: &str,
    which: &NameOrId,
) {
    match which {
        NameOrId::Id(id) => {
            builder.push(format!("{column} = "));
            builder.push_bind(*id);
        }
        NameOrId::Name(pattern) => {
            builder.push(format!(
                "{column} IN (SELECT id FROM {table} WHERE title LIKE "
            ));
            builder.push_bind(pattern.clone()).push(")");
        }
    }
}

/// `[start, end)` in milliseconds, or in days (text) for the entry's own date, from a day
/// condition; `None` for an open side.
fn push_days(builder: &mut QueryBuilder<Sqlite>, column: DayColumn, days: Days) {
    // Instants are compared with the start of days, the entry's date with days as text.
    let (expr, text) = match column {
        DayColumn::Date => ("e.date", true),
        DayColumn::CreatedAt => ("e.created_at", false),
        DayColumn::LockedAt => ("e.locked_at", false),
        DayColumn::TimestampedAt => ("ts.gen_time_ms", false),
    };
    if column == DayColumn::TimestampedAt {
        builder.push("EXISTS (SELECT 1 FROM entity_timestamps ts WHERE ts.entity_id = e.id AND ");
    }
    let bind = |builder: &mut QueryBuilder<Sqlite>, day: time::Date| {
        if text {
            builder.push_bind(day.to_string());
        } else {
            builder.push_bind(day_start_ms(day));
        }
    };
    // Every condition is a half-open range of instants: [from, to).
    let (from, to, negate) = match days {
        Days::Between(a, b) => (Some(a), Some(next_day(b)), false),
        Days::Compare(Compare::Ne, d) => (Some(d), Some(next_day(d)), true),
        Days::Compare(Compare::Cmp(cmp), d) => match cmp {
            Cmp::Eq => (Some(d), Some(next_day(d)), false),
            Cmp::Gt => (Some(next_day(d)), None, false),
            Cmp::Ge => (Some(d), None, false),
            Cmp::Lt => (None, Some(d), false),
            Cmp::Le => (None, Some(next_day(d)), false),
        },
    };
    builder.push(if negate { "NOT (" } else { "(" });
    builder.push(format!("{expr} IS NOT NULL"));
    if let Some(from) = from {
        builder.push(format!(" AND {expr} >= "));
        bind(builder, from);
    }
    if let Some(to) = to {
        builder.push(format!(" AND {expr} < "));
        bind(builder, to);
    }
    builder.push(")");
    if column == DayColumn::TimestampedAt {
        builder.push(")");
    }
}

fn push_term(builder: &mut QueryBuilder<Sqlite>, term: &Term) {
    match term {
        Term::Text { text, phrase } => {
            let fts = if *phrase {
                phrase_query(text)
            } else {
                crate::listing::fts_query(text)
            };
            match fts {
                Some(fts) => {
                    builder.push("e.id IN (SELECT rowid FROM entity_fts WHERE entity_fts MATCH ");
                    builder.push_bind(fts).push(")");
                }
                // Nothing searchable (punctuation only): no condition.
                None => {
                    builder.push("1");
                }
            }
        }
        Term::Like(column, pattern) => {
            let column = match column {
                TextColumn::Title => "e.title",
                TextColumn::Body => "e.body",
                TextColumn::Elabid => "e.elabid",
            };
            builder.push(format!("{column} LIKE "));
            builder.push_bind(pattern.clone());
        }
        Term::Owner(NameOrId::Id(id)) => {
            builder.push("e.owner_id = ").push_bind(*id);
        }
        Term::Owner(NameOrId::Name(pattern)) => {
            builder.push(
                "e.owner_id IN (SELECT id FROM users WHERE (firstname || ' ' || lastname) LIKE ",
            );
            builder.push_bind(pattern.clone());
            builder.push(" OR email LIKE ").push_bind(pattern.clone());
            builder.push(")");
        }
        Term::Category(which) => push_name_or_id(builder, "e.category_id", "categories", which),
        Term::Status(which) => push_name_or_id(builder, "e.status_id", "statuses", which),
        Term::Group(pattern) => {
            builder.push(
                "e.owner_id IN (SELECT m.user_id FROM group_members m \
                 JOIN team_groups g ON g.id = m.group_id WHERE g.name LIKE ",
            );
            builder.push_bind(pattern.clone()).push(")");
        }
        Term::Tag(pattern) => {
            builder.push(
                "EXISTS (SELECT 1 FROM entity_tags t WHERE t.entity_id = e.id AND t.tag LIKE ",
            );
            builder.push_bind(pattern.clone()).push(")");
        }
        Term::Id(cmp, n) => push_compare(builder, "e.id", *cmp, *n),
        Term::Rating(cmp, n) => push_compare(builder, "e.rating", *cmp, *n),
        Term::State(states) => {
            builder.push("e.state IN (");
            let mut list = builder.separated(", ");
            for state in states {
                list.push_bind(*state);
            }
            builder.push(")");
        }
        Term::Visibility(base) => {
            builder.push("e.canread_base = ").push_bind(*base);
        }
        Term::Locked(yes) => {
            builder.push(if *yes {
                "e.locked_by IS NOT NULL"
            } else {
                "e.locked_by IS NULL"
            });
        }
        Term::Timestamped(yes) => {
            builder.push(if *yes { "" } else { "NOT " });
            builder.push("EXISTS (SELECT 1 FROM entity_timestamps ts WHERE ts.entity_id = e.id)");
        }
        Term::Day(column, days) => push_days(builder, *column, *days),
        Term::Field(filter) => {
            builder.push("e.id IN (SELECT f.entity_id FROM entity_fields f WHERE 1");
            crate::field_filter::push_match(builder, filter);
            builder.push(")");
        }
        Term::FieldLike(name, pattern) => {
            builder.push("e.id IN (SELECT f.entity_id FROM entity_fields f WHERE f.name = ");
            builder.push_bind(name.clone());
            builder
                .push(" AND f.value_text LIKE ")
                .push_bind(pattern.clone());
            builder.push(")");
        }
    }
}

/// An FTS5 phrase: the words, in order, next to each other.
fn phrase_query(text: &str) -> Option<String> {
    let words: Vec<String> = crate::listing::fts_query(&text.replace('*', " "))?
        .split(' ')
        .map(str::to_owned)
        .collect();
    Some(words.join(" + "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field_filter::FieldOperand;

    fn term(q: &str) -> Term {
        match parse(q).expect("parses").expect("a term") {
            Expr::Term(term) => term,
            other => panic!("{q}: not one term: {other:?}"),
        }
    }

    fn date(s: &str) -> time::Date {
        day("t", s).expect("a day")
    }

    #[test]
    fn operators_nest_with_the_usual_precedence() {
        let expr = parse("a b OR NOT c & (d | !e)")
            .expect("parses")
            .expect("expr");
        let text = |t: &str| {
            Expr::Term(Term::Text {
                text: t.into(),
                phrase: false,
            })
        };
        assert_eq!(
            expr,
            Expr::Or(vec![
                Expr::And(vec![text("a"), text("b")]),
                Expr::And(vec![
                    Expr::Not(Box::new(text("c"))),
                    Expr::Or(vec![text("d"), Expr::Not(Box::new(text("e")))]),
                ]),
            ])
        );
        // Lower-case operators are words.
        assert_eq!(
            parse("salt and pepper").expect("parses"),
            Some(Expr::And(vec![text("salt"), text("and"), text("pepper")]))
        );
    }

    #[test]
    fn every_field_parses() {
        assert_eq!(
            term("title:\"soil core\""),
            Term::Like(TextColumn::Title, "%soil core%".into())
        );
        assert_eq!(
            term("body:sed%nt"),
            Term::Like(TextColumn::Body, "sed%nt".into())
        );
        assert_eq!(
            term("author:Curie"),
            Term::Owner(NameOrId::Name("%Curie%".into()))
        );
        assert_eq!(term("owner:3"), Term::Owner(NameOrId::Id(3)));
        assert_eq!(term("category:7"), Term::Category(NameOrId::Id(7)));
        assert_eq!(
            term("status:'In progress'"),
            Term::Status(NameOrId::Name("%In progress%".into()))
        );
        assert_eq!(term("group:Soil"), Term::Group("%Soil%".into()));
        assert_eq!(term("tag:field"), Term::Tag("field".into()));
        assert_eq!(term("id:>=10"), Term::Id(Compare::Cmp(Cmp::Ge), 10));
        assert_eq!(term("rating:!=0"), Term::Rating(Compare::Ne, 0));
        assert_eq!(
            term("date:>2024-01-31"),
            Term::Day(
                DayColumn::Date,
                Days::Compare(Compare::Cmp(Cmp::Gt), date("2024-01-31"))
            )
        );
        assert_eq!(
            term("created_at:20240101..20240301"),
            Term::Day(
                DayColumn::CreatedAt,
                Days::Between(date("2024-01-01"), date("2024-03-01"))
            )
        );
        assert_eq!(term("locked:yes"), Term::Locked(true));
        assert_eq!(term("timestamped:no"), Term::Timestamped(false));
        assert_eq!(term("state:archived,deleted"), Term::State(vec![2, 3]));
        assert_eq!(term("visibility:myteam"), Term::Visibility(30));
        assert_eq!(
            term("extrafield:\"Sample type\":clay"),
            Term::Field(FieldFilter {
                name: "Sample type".into(),
                cmp: Cmp::Eq,
                operand: FieldOperand::Text("clay".into())
            })
        );
        assert_eq!(
            term("extrafield:Site:Cam%"),
            Term::FieldLike("Site".into(), "Cam%".into())
        );
        assert_eq!(
            term("field:Temperature>20"),
            Term::Field(FieldFilter {
                name: "Temperature".into(),
                cmp: Cmp::Gt,
                operand: FieldOperand::Number(20.0)
            })
        );
        // An unknown name before a colon is a word.
        assert_eq!(
            term("ratio:1"),
            Term::Text {
                text: "ratio:1".into(),
                phrase: false
            }
        );
    }

    #[test]
    fn mistakes_are_explained() {
        for (q, says) in [
            ("(a OR b", "not closed"),
            ("a OR", "missing"),
            ("title:", "needs a value"),
            ("date:2024-13-01", "YYYY-MM-DD"),
            ("date:2024-03-01..2024-01-01", "ends before"),
            ("id:many", "whole number"),
            ("locked:maybe", "yes or no"),
            ("state:gone", "normal, archived or deleted"),
            ("visibility:friends", "public"),
            ("custom_id:4", "no custom ids"),
            ("\"open", "not closed"),
            ("a )", "unexpected"),
            ("field:T", "needs ="),
            ("extrafield:T", "extrafield:Name:value"),
        ] {
            let error = parse(q).expect_err(q).to_string();
            assert!(error.contains(says), "{q}: {error}");
        }
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(
            parse(&deep)
                .expect_err("deep")
                .to_string()
                .contains("nests")
        );
        let many = "w ".repeat(100);
        assert!(
            parse(&many)
                .expect_err("many")
                .to_string()
                .contains("terms")
        );
    }

    #[test]
    fn plain_searches_are_not_advanced() {
        for q in [
            "sediment core",
            "batch-8 field:T>3",
            "extrafield:Site:Camargue",
            "ratio:1",
        ] {
            assert!(!looks_advanced(q), "{q}");
        }
        for q in [
            "a OR b",
            "\"soil core\"",
            "title:soil",
            "!draft",
            "(a)",
            "status:Done",
        ] {
            assert!(looks_advanced(q), "{q}");
        }
    }

    #[test]
    fn top_level_words_and_fields_join_the_planned_search() {
        let expr = parse("soil field:T>3 status:Done (a OR b)")
            .expect("parses")
            .expect("expr");
        let (words, fields, rest) = split(expr);
        assert_eq!(words, vec!["soil".to_owned()]);
        assert_eq!(fields.len(), 1);
        assert!(matches!(rest, Some(Expr::And(ref parts)) if parts.len() == 2));
        assert!(!mentions_state(&rest.expect("rest")));
        assert!(mentions_state(
            &parse("NOT state:deleted").expect("parses").expect("expr")
        ));
    }
}
