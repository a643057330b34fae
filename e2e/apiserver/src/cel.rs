//! CEL evaluation of CRD `x-kubernetes-validations` rules (cel-rust), with `self` bound
//! to the value at the rule's schema node and `oldSelf` to the stored object's value
//! there on updates. Rules that use `oldSelf` (transition rules) are only evaluated when
//! an old value exists, as the apiserver does. The Kubernetes CEL libraries beyond the
//! CEL standard ones (quantity, IP, URL, format, optionals) are not available.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Program};
use serde_json::Value;

/// Errors compiling or evaluating a rule.
#[derive(Debug, thiserror::Error)]
pub enum CelError {
    #[error("{0}")]
    Compile(String),
    #[error("{0}")]
    Execute(String),
    #[error("rule evaluated to {0}, not a boolean")]
    NotBool(String),
}

/// Checks that a rule parses.
pub fn compile(rule: &str) -> Result<(), CelError> {
    Program::compile(rule)
        .map(|_| ())
        .map_err(|e| CelError::Compile(e.to_string()))
}

/// Whether a rule refers to `oldSelf` (a transition rule).
pub fn uses_old_self(rule: &str) -> bool {
    match Program::compile(rule) {
        Ok(p) => p.references().has_variable("oldSelf"),
        Err(_) => rule.contains("oldSelf"),
    }
}

/// A JSON value as a CEL value: integers as `int`, other numbers as `double`.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let entries: HashMap<Key, cel::Value> = map
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(Map { map: Arc::new(entries) })
        }
    }
}

fn run(rule: &str, self_value: &Value, old: Option<&Value>) -> Result<cel::Value, CelError> {
    let program = Program::compile(rule).map_err(|e| CelError::Compile(e.to_string()))?;
    let mut context = Context::default();
    context.add_variable_from_value("self", to_cel(self_value));
    if let Some(old) = old {
        context.add_variable_from_value("oldSelf", to_cel(old));
    }
    program.execute(&context).map_err(|e| CelError::Execute(e.to_string()))
}

/// Evaluates a validation rule. With `optionalOldSelf` and no old value the rule passes
/// (optional types are not supported).
pub fn evaluate(
    rule: &str,
    self_value: &Value,
    old: Option<&Value>,
    optional_old_self: bool,
) -> Result<bool, CelError> {
    if optional_old_self && old.is_none() && uses_old_self(rule) {
        return Ok(true);
    }
    match run(rule, self_value, old)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(CelError::NotBool(format!("{other:?}"))),
    }
}

/// Evaluates a `messageExpression` to its string.
pub fn evaluate_string(expr: &str, self_value: &Value, old: Option<&Value>) -> Result<String, CelError> {
    match run(expr, self_value, old)? {
        cel::Value::String(s) => Ok((*s).clone()),
        other => Err(CelError::NotBool(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_see_self_and_old_self() {
        let spec = json!({"replicas": 3, "max": 5, "name": "web-1", "tags": ["a", "b"]});
        assert!(evaluate("self.replicas <= self.max", &spec, None, false).expect("ok"));
        assert!(!evaluate("self.replicas > self.max", &spec, None, false).expect("ok"));
        assert!(evaluate("has(self.name) && self.name.startsWith('web')", &spec, None, false).expect("ok"));
        assert!(
            evaluate(
                "self.tags.all(t, size(t) == 1) && self.replicas >= 0",
                &spec,
                None,
                false
            )
            .expect("ok")
        );
        assert!(evaluate("self.name.matches('^[a-z]+-[0-9]$')", &spec, None, false).expect("ok"));
        let old = json!({"replicas": 3, "max": 5, "name": "web-0"});
        assert!(!evaluate("self.name == oldSelf.name", &spec, Some(&old), false).expect("ok"));
        assert!(uses_old_self("self == oldSelf"));
        assert!(!uses_old_self("self.x == 1"));
        assert!(compile("self.x ==").is_err());
        assert_eq!(
            evaluate_string("'replicas is ' + string(self.replicas)", &spec, None).expect("ok"),
            "replicas is 3"
        );
    }
}
