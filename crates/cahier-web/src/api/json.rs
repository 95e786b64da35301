//! Reading JSON request bodies field by field, so every bad value gets a message that names its
//! field (422) and unparseable bodies get a 400, never a panic.

use crate::error::AppError;
use axum::extract::{FromRequest, Request};
use cahier_core::{AccessRule, BaseLevel};
use serde_json::{Map, Value};

/// A JSON object body. An empty body is an empty object.
#[derive(Debug, Default)]
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::TooLarge("the request body is larger than this server accepts".into())
                } else {
                    AppError::BadRequest(format!("could not read the request body: {rejection}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(AppError::BadRequest(
                "the body must be a JSON object".into(),
            )),
            Err(error) => Err(AppError::BadRequest(format!(
                "the body is not valid JSON: {error}"
            ))),
        }
    }
}

impl JsonBody {
    /// Whether a field is present.
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// A string field (numbers are accepted and turned into text).
    pub fn string(&self, field: &str) -> Result<Option<String>, AppError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(AppError::invalid(field, "expected a string")),
        }
    }

    /// An integer field (numeric strings are accepted, as PHP clients send them).
    pub fn int(&self, field: &str) -> Result<Option<i64>, AppError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => as_int(value)
                .map(Some)
                .ok_or_else(|| AppError::invalid(field, "expected a whole number")),
        }
    }

    /// An integer field where `null` (or an empty string) means "clear": `Some(None)`.
    pub fn nullable_int(&self, field: &str) -> Result<Option<Option<i64>>, AppError> {
        match self.0.get(field) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
            Some(value) => as_int(value)
                .map(|v| Some(Some(v)))
                .ok_or_else(|| AppError::invalid(field, "expected a whole number or null")),
        }
    }

    /// A list of strings: a JSON array, or a string with `|` or `,` separators.
    pub fn strings(&self, field: &str) -> Result<Option<Vec<String>>, AppError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(AppError::invalid(field, "expected a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::String(s)) => Ok(Some(
                s.split(['|', ','])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Some(_) => Err(AppError::invalid(field, "expected a list of strings")),
        }
    }

    /// An access rule from `canread`/`canwrite` (a JSON string or an object with `teams`,
    /// `teamgroups`, `users` and optionally `base`) and `<field>_base`. Returns `None` when
    /// neither is present. `current` fills what the request leaves out.
    pub fn access_rule(
        &self,
        field: &str,
        current: Option<&AccessRule>,
    ) -> Result<Option<AccessRule>, AppError> {
        let base_field = format!("{field}_base");
        let object = match self.0.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                serde_json::from_str::<Value>(s).map_err(|_| AppError::invalid(field, "expected a JSON object such as {\"base\":30,\"teams\":[],\"teamgroups\":[],\"users\":[]}"))?,
            ),
            Some(value @ Value::Object(_)) => Some(value.clone()),
            Some(_) => return Err(AppError::invalid(field, "expected a JSON object or a string holding one")),
        };
        let base_value = self.int(&base_field)?;
        if object.is_none() && base_value.is_none() {
            return Ok(None);
        }
        let mut rule = current
            .cloned()
            .unwrap_or_else(|| AccessRule::base(BaseLevel::Team));
        if let Some(object) = object {
            let Value::Object(map) = object else {
                return Err(AppError::invalid(field, "expected a JSON object"));
            };
            let list = |key: &str| -> Result<Vec<i64>, AppError> {
                match map.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| {
                            as_int(v).ok_or_else(|| {
                                AppError::invalid(field, format!("{key} must list whole numbers"))
                            })
                        })
                        .collect(),
                    Some(_) => Err(AppError::invalid(field, format!("{key} must be a list"))),
                }
            };
            rule.teams = list("teams")?;
            rule.teamgroups = list("teamgroups")?;
            rule.users = list("users")?;
            // Older scripts put "base" inside the JSON (eLabFTW example 14); honour it.
            if let Some(base) = map.get("base") {
                let code = as_int(base)
                    .ok_or_else(|| AppError::invalid(field, "base must be 10, 20, 30, 40 or 50"))?;
                rule.base = BaseLevel::from_code(code)
                    .ok_or_else(|| AppError::invalid(field, "base must be 10, 20, 30, 40 or 50"))?;
            }
        }
        if let Some(code) = base_value {
            rule.base = BaseLevel::from_code(code)
                .ok_or_else(|| AppError::invalid(&base_field, "expected 10, 20, 30, 40 or 50"))?;
        }
        Ok(Some(rule))
    }
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> JsonBody {
        match v {
            Value::Object(map) => JsonBody(map),
            _ => JsonBody::default(),
        }
    }

    #[test]
    fn access_rules_accept_strings_objects_and_legacy_base() {
        let b = body(
            serde_json::json!({"canread": "{\"base\":20,\"teams\":[1],\"teamgroups\":[],\"users\":[3]}"}),
        );
        let rule = b.access_rule("canread", None).ok().flatten().expect("rule");
        assert_eq!(rule.base, BaseLevel::OwnerAndAdmins);
        assert_eq!((rule.teams, rule.users), (vec![1], vec![3]));
        let b = body(serde_json::json!({"canwrite_base": 10}));
        assert_eq!(
            b.access_rule("canwrite", None)
                .ok()
                .flatten()
                .map(|r| r.base),
            Some(BaseLevel::OwnerOnly)
        );
        let b = body(serde_json::json!({"canread_base": 35}));
        assert!(
            matches!(b.access_rule("canread", None), Err(AppError::Invalid { field, .. }) if field == "canread_base")
        );
    }

    #[test]
    fn integers_accept_numeric_strings_and_name_the_field_otherwise() {
        let b = body(serde_json::json!({"category": "3", "status": "x", "rating": null}));
        assert_eq!(b.int("category").ok().flatten(), Some(3));
        assert!(
            matches!(b.int("status"), Err(AppError::Invalid { field, .. }) if field == "status")
        );
        assert_eq!(b.nullable_int("rating").ok(), Some(Some(None)));
    }
}
