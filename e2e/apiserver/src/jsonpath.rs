//! The subset of kubectl JSONPath that printer columns and scale subresource paths use:
//! `.a.b`, `.a[0]`, `.a[*].b`, `.a['key.with.dots']`, and filters
//! `.a[?(@.type=="Ready")].status` (also `!=`), optionally wrapped in `{...}`.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter {
        path: Vec<String>,
        equals: bool,
        value: Value,
    },
}

/// A path that is not in the supported subset.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JSONPath {path:?}: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

fn parse(path: &str) -> Result<Vec<Step>, PathError> {
    let err = |reason: &str| PathError {
        path: path.into(),
        reason: reason.into(),
    };
    let mut s = path.trim();
    if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        s = inner.trim();
    }
    s = s.strip_prefix('$').unwrap_or(s);
    let chars: Vec<char> = s.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name.is_empty() {
                    if i < chars.len() {
                        continue;
                    }
                    break;
                }
                steps.push(if name == "*" { Step::Wildcard } else { Step::Field(name) });
            }
            '[' => {
                let close = find_close(&chars, i).ok_or_else(|| err("unclosed ["))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim()).ok_or_else(|| err("unsupported bracket expression"))?);
                i = close + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(steps)
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Some(Step::Index(n));
    }
    if let Some(q) = inner.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        return Some(Step::Field(q.into()));
    }
    if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        return Some(Step::Field(q.into()));
    }
    let expr = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, rhs, equals) = if let Some((l, r)) = expr.split_once("==") {
        (l, r, true)
    } else {
        let (l, r) = expr.split_once("!=")?;
        (l, r, false)
    };
    let lhs = lhs.trim().strip_prefix('@')?;
    let path: Vec<String> = lhs.split('.').filter(|s| !s.is_empty()).map(String::from).collect();
    let rhs = rhs.trim();
    let value = if let Some(s) = rhs.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Value::String(s.into())
    } else if let Some(s) = rhs.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        Value::String(s.into())
    } else {
        serde_json::from_str(rhs).ok()?
    };
    Some(Step::Filter { path, equals, value })
}

/// Every value the path selects in `root`, in document order.
pub fn evaluate(path: &str, root: &Value) -> Result<Vec<Value>, PathError> {
    let steps = parse(path)?;
    let mut current = vec![root.clone()];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => {
                    if let Some(x) = v.get(name) {
                        next.push(x.clone());
                    }
                }
                Step::Index(n) => {
                    if let Some(a) = v.as_array() {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                            next.push(x.clone());
                        }
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(m) => next.extend(m.into_iter().map(|(_, x)| x)),
                    _ => {}
                },
                Step::Filter { path, equals, value } => {
                    if let Some(a) = v.as_array() {
                        for item in a {
                            let mut field = Some(item);
                            for p in path {
                                field = field.and_then(|f| f.get(p));
                            }
                            let hit = field.is_some_and(|f| f == value);
                            if hit == *equals && field.is_some() {
                                next.push(item.clone());
                            }
                        }
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// The first value the path selects, if any.
pub fn first(path: &str, root: &Value) -> Option<Value> {
    evaluate(path, root).ok().and_then(|v| v.into_iter().next())
}

/// Sets the value at a simple field path (`.spec.replicas`), creating objects on the way.
pub fn set(path: &str, root: &mut Value, value: Value) -> Result<(), PathError> {
    let steps = parse(path)?;
    let mut cur = root;
    for (i, step) in steps.iter().enumerate() {
        let Step::Field(name) = step else {
            return Err(PathError {
                path: path.into(),
                reason: "only field paths can be written".into(),
            });
        };
        if !cur.is_object() {
            *cur = Value::Object(serde_json::Map::new());
        }
        let map = cur.as_object_mut().ok_or_else(|| PathError {
            path: path.into(),
            reason: "not an object".into(),
        })?;
        if i + 1 == steps.len() {
            map.insert(name.clone(), value);
            return Ok(());
        }
        cur = map
            .entry(name.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths() {
        let obj = json!({"spec": {"name": "t", "labels": {"a.b/c": "x"}},
            "status": {"conditions": [{"type": "Programmed", "status": "False"}, {"type": "Ready", "status": "True"}], "n": [1, 2, 3]}});
        assert_eq!(first(".spec.name", &obj), Some(json!("t")));
        assert_eq!(
            first(r#".status.conditions[?(@.type=="Ready")].status"#, &obj),
            Some(json!("True"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type!=\"Ready\")].type", &obj),
            Some(json!("Programmed"))
        );
        assert_eq!(first("{.status.n[-1]}", &obj), Some(json!(3)));
        assert_eq!(evaluate(".status.conditions[*].type", &obj).expect("ok").len(), 2);
        assert_eq!(first(".spec.labels['a.b/c']", &obj), Some(json!("x")));
        assert_eq!(first(".spec.missing", &obj), None);
    }

    #[test]
    fn set_creates_objects() {
        let mut obj = json!({});
        set(".spec.replicas", &mut obj, json!(3)).expect("set");
        assert_eq!(obj, json!({"spec": {"replicas": 3}}));
    }
}
