//! Filters on metadata field values typed in the search box or the API's `q`:
//! `field:Temperature>20`, `field:Temperature<=4.5`, `field:Temperature=20`,
//! `field:"Sample type"=soil` (text is matched exactly, ignoring case), and eLabFTW's
//! `extrafield:Name:value` (the same as `field:Name=value`). They combine with the
//! other words of the search, which stay full-text. Each filter becomes one indexed lookup in
//! `entity_fields` (migration 0006): `name = ? AND value_num <op> ?` or `name = ? AND value_text = ?`.

use crate::{Result, invalid};
use sqlx::{QueryBuilder, Sqlite};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// The value a field is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldOperand {
    /// A number: compared with the field's numeric value.
    Number(f64),
    /// A text: equal to the field's text, ignoring case (`=` only).
    Text(String),
}

// Numbers are always finite (the parser refuses others), so equality is an equivalence.
impl Eq for FieldOperand {}

/// One `field:` filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldFilter {
    /// The field's name (case-insensitive).
    pub name: String,
    /// The comparison.
    pub cmp: Cmp,
    /// What it is compared with.
    pub operand: FieldOperand,
}

/// Splits a search into its `field:` filters and the remaining full-text words.
pub fn parse(input: &str) -> Result<(Option<String>, Vec<FieldFilter>)> {
    let mut words = String::new();
    let mut filters = Vec::new();
    let mut rest = input;
    loop {
        let Some((at, is_extrafield)) = find_field(rest) else {
            words.push_str(rest);
            break;
        };
        words.push_str(&rest[..at]);
        words.push(' ');
        let (filter, after) = if is_extrafield {
            parse_extrafield(&rest[at + "extrafield:".len()..])?
        } else {
            parse_one(&rest[at + "field:".len()..])?
        };
        filters.push(filter);
        rest = after;
    }
    let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((Some(words).filter(|w| !w.is_empty()), filters))
}

/// The byte offset of the next word starting with `field:` (false) or eLabFTW's
/// `extrafield:` (true).
fn find_field(s: &str) -> Option<(usize, bool)> {
    let lower = s.to_ascii_lowercase();
    let mut at = lower.len() - lower.trim_start().len();
    while at < lower.len() {
        let word = &lower[at..];
        if word.starts_with("field:") {
            return Some((at, false));
        }
        if word.starts_with("extrafield:") {
            return Some((at, true));
        }
        let end = word.find(char::is_whitespace)?;
        let after = &word[end..];
        at += end + (after.len() - after.trim_start().len());
    }
    None
}

/// eLabFTW's `extrafield:Name:value`: the same as `field:Name=value`.
fn parse_extrafield(s: &str) -> Result<(FieldFilter, &str)> {
    let (name, rest) = token(s, &[':'])?;
    if name.trim().is_empty() {
        return Err(bad("a field filter needs a field name"));
    }
    let rest = rest
        .strip_prefix(':')
        .ok_or_else(|| bad(&format!("extrafield:{name} needs :value")))?;
    let quoted = rest.starts_with('"');
    let (value, rest) = token(rest, &[])?;
    let operand = operand_for(&name, Cmp::Eq, value, quoted)?;
    Ok((
        FieldFilter {
            name,
            cmp: Cmp::Eq,
            operand,
        },
        rest,
    ))
}

fn bad(message: &str) -> crate::StoreError {
    invalid(
        "q",
        format!(
            "{message}; write a field filter like field:Temperature>20 or field:\"Sample type\"=soil"
        ),
    )
}

/// A quoted or bare token; bare ones end at whitespace or at one of `stops`.
fn token<'a>(s: &'a str, stops: &[char]) -> Result<(String, &'a str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted
            .find('"')
            .ok_or_else(|| bad("a quote is not closed"))?;
        return Ok((quoted[..end].to_owned(), &quoted[end + 1..]));
    }
    let end = s
        .find(|c: char| c.is_whitespace() || stops.contains(&c))
        .unwrap_or(s.len());
    Ok((s[..end].to_owned(), &s[end..]))
}

fn parse_one(s: &str) -> Result<(FieldFilter, &str)> {
    let (name, rest) = token(s, &['<', '>', '='])?;
    if name.trim().is_empty() {
        return Err(bad("a field filter needs a field name"));
    }
    let (cmp, rest) = if let Some(r) = rest.strip_prefix("<=") {
        (Cmp::Le, r)
    } else if let Some(r) = rest.strip_prefix(">=") {
        (Cmp::Ge, r)
    } else if let Some(r) = rest.strip_prefix('<') {
        (Cmp::Lt, r)
    } else if let Some(r) = rest.strip_prefix('>') {
        (Cmp::Gt, r)
    } else if let Some(r) = rest.strip_prefix('=') {
        (Cmp::Eq, r)
    } else {
        return Err(bad(&format!("field:{name} needs =, <, <=, > or >=")));
    };
    let quoted = rest.starts_with('"');
    let (value, rest) = token(rest, &[])?;
    let operand = operand_for(&name, cmp, value, quoted)?;
    Ok((FieldFilter { name, cmp, operand }, rest))
}

/// What a value typed after a comparison means: a number unless quoted; text only with `=`.
pub(crate) fn operand_for(
    name: &str,
    cmp: Cmp,
    value: String,
    quoted: bool,
) -> Result<FieldOperand> {
    let number = if quoted {
        None
    } else {
        value.parse::<f64>().ok().filter(|n| n.is_finite())
    };
    match (number, cmp) {
        (Some(n), _) => Ok(FieldOperand::Number(n)),
        (None, Cmp::Eq) if !value.is_empty() => Ok(FieldOperand::Text(value)),
        (None, Cmp::Eq) => Err(bad(&format!("field:{name}= needs a value"))),
        (None, _) => Err(bad(&format!(
            "field:{name} compares with a number only with = (got {value:?})"
        ))),
    }
}

/// How a field filter finds its entries, chosen from a bounded count of the matching values
/// (as for full-text search, listing.rs; figures in BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldPlan {
    /// Few matches: read them (an index-only scan) into a set, which SQLite may also use to
    /// look their rows up directly.
    Few,
    /// More: each walked row's values are looked up by entity (a few microseconds each), which
    /// stops as soon as the page is full. A set of 12,000 matches cost 10 ms to build; the
    /// lookups for a page 0.3 ms.
    Many,
}

pub(crate) fn push_match(builder: &mut QueryBuilder<Sqlite>, filter: &FieldFilter) {
    builder.push(" AND f.name = ");
    builder.push_bind(filter.name.clone());
    match &filter.operand {
        FieldOperand::Number(n) => {
            builder.push(format!(" AND f.value_num {} ", filter.cmp.sql()));
            builder.push_bind(*n);
        }
        FieldOperand::Text(text) => {
            builder.push(" AND f.value_text = ");
            builder.push_bind(text.clone());
        }
    }
}

/// Adds ` AND e.id IN (…)` for one filter to a query over entities aliased `e`. The subquery
/// is not correlated, so SQLite runs it once through the (name, value, entity) index.
pub fn push_condition(builder: &mut QueryBuilder<Sqlite>, filter: &FieldFilter) {
    push_planned(builder, filter, FieldPlan::Few);
}

/// Adds one filter's condition as `plan` says.
pub fn push_planned(builder: &mut QueryBuilder<Sqlite>, filter: &FieldFilter, plan: FieldPlan) {
    match plan {
        FieldPlan::Few => {
            builder.push(" AND e.id IN (SELECT f.entity_id FROM entity_fields f WHERE 1")
        }
        // The entity index: left alone, SQLite scans the (name, value) range for every row.
        FieldPlan::Many => builder.push(
            " AND EXISTS (SELECT 1 FROM entity_fields f INDEXED BY entity_fields_entity \
             WHERE f.entity_id = e.id",
        ),
    };
    push_match(builder, filter);
    builder.push(")");
}

/// Counts the values matching a filter, up to `limit` (an index-only range scan).
pub fn push_count(builder: &mut QueryBuilder<Sqlite>, filter: &FieldFilter, limit: i64) {
    builder.push("SELECT count(*) FROM (SELECT 1 FROM entity_fields f WHERE 1");
    push_match(builder, filter);
    builder.push(" LIMIT ");
    builder.push_bind(limit);
    builder.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(q: &str) -> FieldFilter {
        let (_, filters) = parse(q).expect("parses");
        filters.into_iter().next().expect("a filter")
    }

    #[test]
    fn filters_are_split_from_words() {
        let (words, filters) =
            parse("soil field:Temperature>20 pH field:\"Sample type\"=Clay").expect("parses");
        assert_eq!(words.as_deref(), Some("soil pH"));
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0].name, "Temperature");
        assert_eq!(filters[0].cmp, Cmp::Gt);
        assert_eq!(filters[0].operand, FieldOperand::Number(20.0));
        assert_eq!(filters[1].name, "Sample type");
        assert_eq!(filters[1].operand, FieldOperand::Text("Clay".into()));
    }

    #[test]
    fn every_comparison_parses() {
        assert_eq!(one("field:T<=4.5").cmp, Cmp::Le);
        assert_eq!(one("field:T>=4.5").cmp, Cmp::Ge);
        assert_eq!(one("field:T<4.5").cmp, Cmp::Lt);
        assert_eq!(one("field:T=20").operand, FieldOperand::Number(20.0));
        assert_eq!(
            one("field:T=\"20\"").operand,
            FieldOperand::Text("20".into())
        );
        assert_eq!(
            parse("plain words").expect("parses"),
            (Some("plain words".into()), vec![])
        );
        assert_eq!(
            parse("afield:x").expect("parses").1,
            vec![],
            "only at a word start"
        );
        let (words, filters) =
            parse("soil extrafield:\"Sample type\":clay extrafield:T:20").expect("parses");
        assert_eq!(words.as_deref(), Some("soil"));
        assert_eq!(filters[0].name, "Sample type");
        assert_eq!(filters[0].operand, FieldOperand::Text("clay".into()));
        assert_eq!(filters[1].operand, FieldOperand::Number(20.0));
        assert!(parse("extrafield:T").is_err());
    }

    /// The filters must be index range scans, not a walk over every field row (the list page
    /// and API search stay fast on large instances).
    #[tokio::test]
    async fn filters_use_the_field_indexes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = std::sync::Arc::new(cahier_core::FixedClock::new(1_700_000_000_000));
        let store = crate::Store::open_sqlite(&dir.path().join("t.db"), clock)
            .await
            .expect("store");
        for (q, index) in [
            ("field:Temperature>20", "entity_fields_num"),
            ("field:Temperature<=4.5", "entity_fields_num"),
            ("field:\"Sample type\"=soil", "entity_fields_text"),
        ] {
            let (_, filters) = parse(q).expect("parses");
            let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
                "EXPLAIN QUERY PLAN SELECT e.id FROM entities e WHERE e.kind = 'experiment'",
            );
            for filter in &filters {
                push_condition(&mut builder, filter);
            }
            let rows: Vec<(i64, i64, i64, String)> = builder
                .build_query_as()
                .fetch_all(&store.pool)
                .await
                .expect("plan");
            let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
            assert!(
                plan.iter()
                    .any(|d| d.contains(&format!("USING INDEX {index}"))
                        || d.contains(&format!("USING COVERING INDEX {index}"))),
                "{q}: {plan:?}"
            );
        }
    }

    #[test]
    fn bad_filters_say_how_to_write_them() {
        for q in [
            "field:T",
            "field:>3",
            "field:T>warm",
            "field:\"T=3",
            "field:T=",
        ] {
            let error = parse(q).expect_err(q);
            assert!(
                error.to_string().contains("field:Temperature>20"),
                "{q}: {error}"
            );
        }
    }
}
