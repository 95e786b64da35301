//! Stock of a resource: quantities in fixed point (thousandths of the unit, so 2.5 mL is 2500),
//! units, the kinds of stock events and what a resource's stock looks like once read out of its
//! document. Parsing here is the one place amounts typed by people or scripts become numbers;
//! it never rounds silently (a fourth decimal is refused).
//!
//! The document side (the counter, the event list, merging) is in `document/stock.rs`.

use crate::entity::EntityId;
use serde::{Deserialize, Serialize};

/// Thousandths per unit: quantities are stored as `i64` thousandths.
pub const MILLI: i64 = 1000;
/// Longest accepted unit, in characters.
pub const MAX_UNIT_CHARS: usize = 20;
/// Largest amount one event may move, in units (keeps every sum far from `i64` overflow).
pub const MAX_AMOUNT_UNITS: i64 = 1_000_000_000_000;
/// Longest accepted note of a stock event, in characters.
pub const MAX_STOCK_NOTE_CHARS: usize = 1000;

/// What a stock event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockKind {
    /// Some was used: the quantity goes down by the amount.
    Consume,
    /// Some was added: the quantity goes up by the amount.
    Restock,
    /// A correction (or the initial quantity): the quantity changes by a signed delta.
    Adjust,
}

impl StockKind {
    /// The name stored in documents and used by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consume => "consume",
            Self::Restock => "restock",
            Self::Adjust => "adjust",
        }
    }

    /// Parses [`StockKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "consume" => Some(Self::Consume),
            "restock" => Some(Self::Restock),
            "adjust" => Some(Self::Adjust),
            _ => None,
        }
    }

    /// The signed change of the quantity for an amount as people write it: consumption and
    /// restocking take a positive amount, an adjustment a non-zero signed one.
    pub fn delta(self, amount_milli: i64) -> Result<i64, String> {
        match self {
            Self::Consume | Self::Restock if amount_milli <= 0 => {
                Err("the amount must be greater than zero".into())
            }
            Self::Consume => Ok(-amount_milli),
            Self::Restock => Ok(amount_milli),
            Self::Adjust if amount_milli == 0 => Err(
                "an adjustment must change the quantity (use a negative amount to lower it)".into(),
            ),
            Self::Adjust => Ok(amount_milli),
        }
    }
}

/// Parses an amount written in units with at most three decimals (`2.5`, `-3`, `0,25`) into
/// thousandths. Refuses anything else with a message saying what to write.
pub fn parse_amount(text: &str) -> Result<i64, String> {
    let text = text.trim().replace(',', ".");
    let hint = "write a number with at most 3 decimals, like 12 or 2.5";
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(format!("\"{}\" is not a number; {hint}", text.trim()));
    }
    if fraction.len() > 3 {
        return Err(format!(
            "\"{}\" has more than 3 decimals; {hint}",
            text.trim()
        ));
    }
    let too_large = || format!("\"{}\" is too large", text.trim());
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    if whole > MAX_AMOUNT_UNITS {
        return Err(too_large());
    }
    let mut fraction_milli: i64 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        let scale = [100, 10, 1][i];
        fraction_milli += i64::from(b - b'0') * scale;
    }
    let value = whole * MILLI + fraction_milli;
    Ok(if negative { -value } else { value })
}

/// Formats thousandths as units with only the decimals needed (`2500` → `2.5`, `-3000` → `-3`).
pub fn format_amount(milli: i64) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let abs = milli.unsigned_abs();
    let whole = abs / 1000;
    let fraction = abs % 1000;
    if fraction == 0 {
        format!("{sign}{whole}")
    } else {
        let digits = format!("{fraction:03}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Checks and trims a unit (`mL`, `g`, `units`, `boîtes`).
pub fn clean_unit(unit: &str) -> Result<String, String> {
    let unit = unit.trim();
    if unit.is_empty() {
        return Err("give the unit the quantity is counted in, like mL, g or units".into());
    }
    if unit.chars().count() > MAX_UNIT_CHARS {
        return Err(format!("a unit has at most {MAX_UNIT_CHARS} characters"));
    }
    if unit.chars().any(char::is_control) {
        return Err("a unit cannot contain control characters".into());
    }
    Ok(unit.to_owned())
}

/// One recorded stock event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockEvent {
    /// Stable id (made where the event was recorded).
    pub id: String,
    /// What it did.
    pub kind: StockKind,
    /// Signed change of the quantity, thousandths.
    pub delta_milli: i64,
    /// Unit the amount was written in.
    pub unit: String,
    /// Who recorded it (user id).
    pub by: i64,
    /// The recording device's clock, ms (not proof of anteriority: the server's receive time is).
    pub at_ms: i64,
    /// The experiment it was used for.
    pub experiment: Option<EntityId>,
    /// Free note.
    pub note: String,
}

/// A resource's stock as its document holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Unit of the quantity.
    pub unit: String,
    /// At or below this quantity (thousandths) the resource is to reorder.
    pub threshold_milli: Option<i64>,
    /// Current quantity, thousandths: the sum of every event, never clipped at zero.
    pub quantity_milli: i64,
    /// Every event, oldest first (device time, then id).
    pub events: Vec<StockEvent>,
}

impl Stock {
    /// Whether the quantity is at or below the threshold.
    pub fn is_low(&self) -> bool {
        self.threshold_milli
            .is_some_and(|threshold| self.quantity_milli <= threshold)
    }

    /// Whether more was recorded as used than there was (allowed, but flagged).
    pub fn is_negative(&self) -> bool {
        self.quantity_milli < 0
    }

    /// Whether the counter equals the sum of the events, as it does when every change was made
    /// through [`crate::document::EntityOp::RecordStock`] (which moves both together).
    pub fn is_consistent(&self) -> bool {
        let sum = self
            .events
            .iter()
            .try_fold(0i64, |sum, e| sum.checked_add(e.delta_milli));
        sum == Some(self.quantity_milli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_to_thousandths_without_rounding() {
        assert_eq!(parse_amount("2.5"), Ok(2500));
        assert_eq!(parse_amount(" 0,25 "), Ok(250));
        assert_eq!(parse_amount("-3"), Ok(-3000));
        assert_eq!(parse_amount(".5"), Ok(500));
        assert_eq!(parse_amount("12.125"), Ok(12_125));
        assert!(parse_amount("1.2345").is_err_and(|m| m.contains("3 decimals")));
        assert!(parse_amount("abc").is_err_and(|m| m.contains("not a number")));
        assert!(parse_amount("").is_err());
        assert!(parse_amount("-").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("99999999999999999999").is_err());
    }

    #[test]
    fn amounts_format_with_only_the_decimals_needed() {
        assert_eq!(format_amount(2500), "2.5");
        assert_eq!(format_amount(-3000), "-3");
        assert_eq!(format_amount(12_125), "12.125");
        assert_eq!(format_amount(0), "0");
        assert_eq!(format_amount(-250), "-0.25");
    }

    #[test]
    fn consumption_and_restocking_need_a_positive_amount() {
        assert_eq!(StockKind::Consume.delta(2500), Ok(-2500));
        assert_eq!(StockKind::Restock.delta(2500), Ok(2500));
        assert_eq!(StockKind::Adjust.delta(-2500), Ok(-2500));
        assert!(StockKind::Consume.delta(-1).is_err());
        assert!(StockKind::Restock.delta(0).is_err());
        assert!(StockKind::Adjust.delta(0).is_err());
    }
}
