//! Filter conditions on events (`{field: data.lang, op: eq, value: en}`), shared by
//! Subscription resources and WebSocket `subscribe` frames.
//!
//! Conditions are validated and compiled once (regexes built, field paths split, value
//! types checked) so that evaluation on the fan-out path is a few comparisons.

use std::borrow::Cow;
use std::cmp::Ordering;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::priority::Priority;

/// Comparison operator of a filter condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FilterOp {
    Eq,
    Ne,
    In,
    NotIn,
    Contains,
    Regex,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
}

/// One condition as written by a user. All conditions of a filter must hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilterCondition {
    /// Field path: `type`, `id`, `source`, `topic`, `priority`, `correlationId`,
    /// `causationId`, `data`, or `data.<path>` (numeric segments index arrays).
    pub field: String,
    /// Operator: eq ne in notIn contains regex gt gte lt lte exists.
    pub op: FilterOp,
    /// Operand: any JSON for eq/ne/contains, an array for in/notIn, a regex string for
    /// regex, a number or string for gt/gte/lt/lte, a boolean (default true) for exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::any_json")]
    pub value: Option<Value>,
}

/// Why a condition was rejected; `part` names the offending key (`field`, `op`, `value`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{index}].{part}: {message}")]
pub struct FilterError {
    pub index: usize,
    pub part: &'static str,
    pub message: String,
}

/// A resolved field reference.
#[derive(Clone, Debug, PartialEq)]
enum FieldRef {
    Topic,
    Id,
    Type,
    Source,
    Priority,
    CorrelationId,
    CausationId,
    Data(Vec<String>),
}

impl FieldRef {
    fn parse(path: &str) -> Result<Self, String> {
        Ok(match path {
            "topic" => FieldRef::Topic,
            "id" => FieldRef::Id,
            "type" => FieldRef::Type,
            "source" => FieldRef::Source,
            "priority" => FieldRef::Priority,
            "correlationId" => FieldRef::CorrelationId,
            "causationId" => FieldRef::CausationId,
            "data" => FieldRef::Data(Vec::new()),
            _ => {
                let Some(rest) = path.strip_prefix("data.") else {
                    return Err(format!(
                        "unknown field {path:?}: use type, id, source, topic, priority, correlationId, causationId, data or data.<path>"
                    ));
                };
                let segs: Vec<String> = rest.split('.').map(str::to_owned).collect();
                if segs.iter().any(String::is_empty) {
                    return Err(format!("field {path:?} has an empty path segment"));
                }
                FieldRef::Data(segs)
            }
        })
    }
}

#[derive(Clone, Debug)]
enum Operand {
    Value(Value),
    List(Vec<Value>),
    Regex(regex::Regex),
    Exists(bool),
}

#[derive(Clone, Debug)]
struct CompiledCondition {
    field: FieldRef,
    op: FilterOp,
    operand: Operand,
}

/// The fields of an event a filter can look at, borrowed from wherever the event lives.
#[derive(Clone, Copy, Debug)]
pub struct EventView<'a> {
    pub topic: &'a str,
    pub id: &'a str,
    pub event_type: &'a str,
    pub source: Option<&'a str>,
    pub priority: Priority,
    pub correlation_id: Option<&'a str>,
    pub causation_id: Option<&'a str>,
    pub data: &'a Value,
}

/// A validated, compiled conjunction of conditions.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    conditions: Vec<CompiledCondition>,
}

/// Longest regex source accepted, to bound compile cost of client-supplied filters.
const MAX_REGEX_LEN: usize = 512;

impl Filter {
    /// Validates and compiles `conditions`; errors name the condition index and key.
    pub fn compile(conditions: &[FilterCondition]) -> Result<Self, FilterError> {
        let mut out = Vec::with_capacity(conditions.len());
        for (index, c) in conditions.iter().enumerate() {
            let err = |part: &'static str, message: String| FilterError { index, part, message };
            let field = FieldRef::parse(&c.field).map_err(|m| err("field", m))?;
            let operand = match c.op {
                FilterOp::Eq | FilterOp::Ne | FilterOp::Contains => Operand::Value(
                    c.value
                        .clone()
                        .ok_or_else(|| err("value", format!("operator {:?} needs a value", c.op)))?,
                ),
                FilterOp::In | FilterOp::NotIn => match &c.value {
                    Some(Value::Array(items)) => Operand::List(items.clone()),
                    _ => return Err(err("value", format!("operator {:?} needs an array value", c.op))),
                },
                FilterOp::Regex => match &c.value {
                    Some(Value::String(src)) if src.len() <= MAX_REGEX_LEN => Operand::Regex(
                        regex::RegexBuilder::new(src)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|e| err("value", format!("invalid regex: {e}")))?,
                    ),
                    Some(Value::String(_)) => {
                        return Err(err("value", format!("regex longer than {MAX_REGEX_LEN} characters")));
                    }
                    _ => return Err(err("value", "operator regex needs a string value".to_owned())),
                },
                FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => match &c.value {
                    Some(v @ (Value::Number(_) | Value::String(_))) => {
                        if field == FieldRef::Priority {
                            let name = v.as_str().unwrap_or_default();
                            name.parse::<Priority>().map_err(|e| err("value", e.to_string()))?;
                        }
                        Operand::Value(v.clone())
                    }
                    _ => {
                        return Err(err(
                            "value",
                            format!("operator {:?} needs a number or string value", c.op),
                        ));
                    }
                },
                FilterOp::Exists => match &c.value {
                    None => Operand::Exists(true),
                    Some(Value::Bool(b)) => Operand::Exists(*b),
                    Some(_) => return Err(err("value", "operator exists takes true or false".to_owned())),
                },
            };
            out.push(CompiledCondition {
                field,
                op: c.op,
                operand,
            });
        }
        Ok(Self { conditions: out })
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// True when every condition holds. A missing field satisfies only `ne`, `notIn`
    /// and `exists: false`.
    pub fn matches(&self, ev: &EventView<'_>) -> bool {
        self.conditions.iter().all(|c| c.matches(ev))
    }
}

fn lookup<'a>(ev: &EventView<'a>, field: &FieldRef) -> Option<Cow<'a, Value>> {
    let s = |v: &str| Some(Cow::Owned(Value::String(v.to_owned())));
    match field {
        FieldRef::Topic => s(ev.topic),
        FieldRef::Id => s(ev.id),
        FieldRef::Type => s(ev.event_type),
        FieldRef::Source => ev.source.and_then(s),
        FieldRef::Priority => s(ev.priority.as_str()),
        FieldRef::CorrelationId => ev.correlation_id.and_then(s),
        FieldRef::CausationId => ev.causation_id.and_then(s),
        FieldRef::Data(path) => {
            let mut cur = ev.data;
            for seg in path {
                cur = match cur {
                    Value::Object(map) => map.get(seg)?,
                    Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
                    _ => return None,
                };
            }
            Some(Cow::Borrowed(cur))
        }
    }
}

/// JSON equality where numbers compare by value (`1 == 1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(field: &FieldRef, actual: &Value, operand: &Value) -> Option<Ordering> {
    if *field == FieldRef::Priority {
        let a: Priority = actual.as_str()?.parse().ok()?;
        let b: Priority = operand.as_str()?.parse().ok()?;
        return Some(a.cmp(&b));
    }
    match (actual, operand) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

impl CompiledCondition {
    fn matches(&self, ev: &EventView<'_>) -> bool {
        let actual = lookup(ev, &self.field);
        match (&self.operand, actual) {
            (Operand::Exists(want), actual) => actual.is_some() == *want,
            (Operand::Value(_), None) | (Operand::List(_), None) => matches!(self.op, FilterOp::Ne | FilterOp::NotIn),
            (Operand::Regex(_), None) => false,
            (Operand::Value(v), Some(actual)) => match self.op {
                FilterOp::Eq => json_eq(&actual, v),
                FilterOp::Ne => !json_eq(&actual, v),
                FilterOp::Contains => match (actual.as_ref(), v) {
                    (Value::String(hay), Value::String(needle)) => hay.contains(needle.as_str()),
                    (Value::Array(items), needle) => items.iter().any(|i| json_eq(i, needle)),
                    _ => false,
                },
                FilterOp::Gt => compare(&self.field, &actual, v) == Some(Ordering::Greater),
                FilterOp::Gte => matches!(
                    compare(&self.field, &actual, v),
                    Some(Ordering::Greater | Ordering::Equal)
                ),
                FilterOp::Lt => compare(&self.field, &actual, v) == Some(Ordering::Less),
                FilterOp::Lte => matches!(compare(&self.field, &actual, v), Some(Ordering::Less | Ordering::Equal)),
                _ => false,
            },
            (Operand::List(items), Some(actual)) => {
                let found = items.iter().any(|i| json_eq(i, &actual));
                if self.op == FilterOp::In { found } else { !found }
            }
            (Operand::Regex(re), Some(actual)) => actual.as_str().is_some_and(|s| re.is_match(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(field: &str, op: FilterOp, value: Option<Value>) -> FilterCondition {
        FilterCondition {
            field: field.to_owned(),
            op,
            value,
        }
    }

    fn view(data: &Value) -> EventView<'_> {
        EventView {
            topic: "chat.room-1",
            id: "ev-1",
            event_type: "message.sent",
            source: Some("app"),
            priority: Priority::High,
            correlation_id: None,
            causation_id: None,
            data,
        }
    }

    fn check(c: FilterCondition, data: &Value) -> bool {
        Filter::compile(&[c]).expect("valid").matches(&view(data))
    }

    #[test]
    fn equality_and_membership() {
        let d = json!({"lang": "en", "n": 3, "tags": ["a", "b"], "nested": {"x": [10, 20]}});
        assert!(check(cond("data.lang", FilterOp::Eq, Some(json!("en"))), &d));
        assert!(!check(cond("data.lang", FilterOp::Eq, Some(json!("fr"))), &d));
        assert!(check(cond("data.n", FilterOp::Eq, Some(json!(3.0))), &d));
        assert!(check(cond("data.lang", FilterOp::Ne, Some(json!("fr"))), &d));
        assert!(check(cond("data.missing", FilterOp::Ne, Some(json!("fr"))), &d));
        assert!(check(cond("data.lang", FilterOp::In, Some(json!(["en", "de"]))), &d));
        assert!(!check(cond("data.lang", FilterOp::NotIn, Some(json!(["en"]))), &d));
        assert!(check(cond("data.missing", FilterOp::NotIn, Some(json!(["en"]))), &d));
        assert!(!check(cond("data.missing", FilterOp::In, Some(json!(["en"]))), &d));
        assert!(check(cond("data.nested.x.1", FilterOp::Eq, Some(json!(20))), &d));
    }

    #[test]
    fn contains_regex_and_order() {
        let d = json!({"text": "hello world", "tags": ["a", "b"], "n": 5, "s": "m"});
        assert!(check(cond("data.text", FilterOp::Contains, Some(json!("lo w"))), &d));
        assert!(check(cond("data.tags", FilterOp::Contains, Some(json!("b"))), &d));
        assert!(!check(cond("data.tags", FilterOp::Contains, Some(json!("z"))), &d));
        assert!(check(cond("data.text", FilterOp::Regex, Some(json!("^hel+o"))), &d));
        assert!(!check(cond("data.n", FilterOp::Regex, Some(json!("5"))), &d));
        assert!(check(cond("data.n", FilterOp::Gt, Some(json!(4))), &d));
        assert!(check(cond("data.n", FilterOp::Gte, Some(json!(5))), &d));
        assert!(!check(cond("data.n", FilterOp::Lt, Some(json!(5))), &d));
        assert!(check(cond("data.n", FilterOp::Lte, Some(json!(5.0))), &d));
        assert!(check(cond("data.s", FilterOp::Gt, Some(json!("a"))), &d));
        assert!(
            !check(cond("data.s", FilterOp::Gt, Some(json!(1))), &d),
            "type mismatch never matches"
        );
    }

    #[test]
    fn envelope_fields_and_exists() {
        let d = json!({"a": null});
        assert!(check(cond("type", FilterOp::Regex, Some(json!("^message\\."))), &d));
        assert!(check(cond("source", FilterOp::Eq, Some(json!("app"))), &d));
        assert!(check(cond("topic", FilterOp::Eq, Some(json!("chat.room-1"))), &d));
        assert!(check(cond("priority", FilterOp::Gte, Some(json!("normal"))), &d));
        assert!(!check(cond("priority", FilterOp::Gt, Some(json!("high"))), &d));
        assert!(check(cond("data.a", FilterOp::Exists, None), &d));
        assert!(check(cond("data.b", FilterOp::Exists, Some(json!(false))), &d));
        assert!(!check(cond("correlationId", FilterOp::Exists, None), &d));
    }

    #[test]
    fn all_conditions_must_hold() {
        let d = json!({"lang": "en", "n": 1});
        let f = Filter::compile(&[
            cond("data.lang", FilterOp::Eq, Some(json!("en"))),
            cond("data.n", FilterOp::Gt, Some(json!(1))),
        ])
        .expect("valid");
        assert!(!f.matches(&view(&d)));
        assert!(Filter::default().matches(&view(&d)));
    }

    #[test]
    fn invalid_conditions_name_index_and_part() {
        let e = Filter::compile(&[
            cond("data.x", FilterOp::Eq, Some(json!(1))),
            cond("payload.x", FilterOp::Eq, Some(json!(1))),
        ])
        .expect_err("unknown field");
        assert_eq!((e.index, e.part), (1, "field"));
        assert!(e.message.contains("payload.x"));
        let e = Filter::compile(&[cond("data.x", FilterOp::Regex, Some(json!("(")))]).expect_err("bad regex");
        assert_eq!((e.index, e.part), (0, "value"));
        assert!(e.message.contains("invalid regex"));
        let e = Filter::compile(&[cond("data.x", FilterOp::In, Some(json!("a")))]).expect_err("in needs array");
        assert_eq!(e.part, "value");
        assert!(Filter::compile(&[cond("data.x", FilterOp::Eq, None)]).is_err());
        assert!(Filter::compile(&[cond("data.x", FilterOp::Gt, Some(json!(true)))]).is_err());
        assert!(Filter::compile(&[cond("data.x", FilterOp::Exists, Some(json!("yes")))]).is_err());
        assert!(Filter::compile(&[cond("priority", FilterOp::Gt, Some(json!("urgent")))]).is_err());
        assert!(Filter::compile(&[cond("data..x", FilterOp::Exists, None)]).is_err());
    }

    #[test]
    fn condition_wire_format() {
        let c: FilterCondition =
            serde_json::from_value(json!({"field": "data.lang", "op": "notIn", "value": ["en"]})).expect("parse");
        assert_eq!(c.op, FilterOp::NotIn);
        assert!(serde_json::from_value::<FilterCondition>(json!({"field": "x", "op": "like"})).is_err());
    }
}
