//! Field sets of `managedFields` (`fieldsType: FieldsV1`): the paths an object's fields
//! live at, in structured-merge-diff's vocabulary — `f:name` for a field, `k:{"name":"app"}`
//! for an item of an associative list, `v:"x"` for an item of a set, `.` for ownership of
//! an item or map itself — computed from objects with the list semantics of the kind
//! (CRD `x-kubernetes-list-type`/`x-kubernetes-list-map-keys`/`x-kubernetes-map-type`;
//! for built-ins the patch merge keys), and converted to and from the `fieldsV1` JSON.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::patch;
use crate::registry::ResourceInfo;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    /// A field of a map/struct.
    Field(String),
    /// An item of an associative list, by its key fields (compact JSON object, keys sorted).
    Key(String),
    /// An item of a set, by its value (compact JSON).
    Value(String),
    /// The node itself (`.`): ownership of a list item or map as a whole.
    Own,
}

/// A path from the object root.
pub type Path = Vec<Seg>;

/// A set of owned paths.
pub type FieldSet = BTreeSet<Path>;

/// How a list merges.
#[derive(Clone, Debug, PartialEq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// The list and map semantics of a kind, looked up by field path.
pub struct Shape<'a> {
    info: &'a ResourceInfo,
}

impl<'a> Shape<'a> {
    pub fn new(info: &'a ResourceInfo) -> Self {
        Self { info }
    }

    /// The schema node at a path of field names (CRDs only).
    fn schema_at(&self, fields: &[&str]) -> Option<Value> {
        let schema = self.info.crd.as_ref()?.schema.clone()?;
        let mut node: &Value = &schema;
        for f in fields {
            node = match f {
                &"[]" => node.get("items")?,
                name => node
                    .pointer(&format!("/properties/{name}"))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            };
        }
        Some(node.clone())
    }

    /// The list type of the list at `fields` (`[]` marks a list level).
    pub fn list_type(&self, fields: &[&str]) -> ListType {
        let field = fields.last().copied().unwrap_or("");
        if fields == ["metadata", "finalizers"] {
            return ListType::Set;
        }
        if fields == ["metadata", "ownerReferences"] {
            return ListType::Map(vec!["uid".into()]);
        }
        if self.info.is_custom() {
            let Some(schema) = self.schema_at(fields) else {
                return ListType::Atomic;
            };
            return match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") => ListType::Map(
                    schema
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|k| k.iter().filter_map(Value::as_str).map(String::from).collect())
                        .unwrap_or_default(),
                ),
                _ => ListType::Atomic,
            };
        }
        // The list this field sits in, if any (`containers` for a container's `ports`).
        let parent_list = fields
            .iter()
            .rposition(|f| *f == "[]")
            .and_then(|i| i.checked_sub(1))
            .map(|i| fields[i]);
        match patch::merge_key_name(field, parent_list) {
            Some(Some(key)) => ListType::Map(vec![key.to_string()]),
            Some(None) => ListType::Set,
            None => ListType::Atomic,
        }
    }

    /// Whether the map at `fields` is atomic (`x-kubernetes-map-type: atomic`).
    pub fn atomic_map(&self, fields: &[&str]) -> bool {
        self.info.is_custom()
            && self
                .schema_at(fields)
                .is_some_and(|s| s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic"))
    }

    /// Whether the map at `fields` is a free-form map (labels, annotations,
    /// `additionalProperties`), whose ownership includes `.`.
    fn granular_map(&self, fields: &[&str]) -> bool {
        if fields == ["metadata", "labels"] || fields == ["metadata", "annotations"] {
            return true;
        }
        self.info.is_custom()
            && self
                .schema_at(fields)
                .is_some_and(|s| s.get("additionalProperties").is_some_and(Value::is_object))
    }
}

/// Key of an associative-list item: its key fields as sorted compact JSON.
pub fn item_key(item: &Value, keys: &[String]) -> String {
    let m: Map<String, Value> = keys
        .iter()
        .filter_map(|k| item.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    Value::Object(m).to_string()
}

/// Top-level fields never tracked.
fn ignored(path_fields: &[&str]) -> bool {
    matches!(path_fields, ["apiVersion"] | ["kind"])
        || matches!(
            path_fields,
            [
                "metadata",
                "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "generation"
                    | "creationTimestamp"
                    | "managedFields"
                    | "selfLink"
                    | "deletionTimestamp"
                    | "deletionGracePeriodSeconds"
            ]
        )
}

/// Every owned path of an object (leaves, plus `.` for list items and free-form maps).
pub fn of_object(shape: &Shape<'_>, obj: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk(shape, obj, &mut Vec::new(), &mut Vec::new(), &mut set);
    set
}

fn walk<'v>(shape: &Shape<'_>, value: &'v Value, path: &mut Path, fields: &mut Vec<&'v str>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() && !shape.atomic_map(fields) => {
            if !path.is_empty() && shape.granular_map(fields) {
                let mut own = path.clone();
                own.push(Seg::Own);
                out.insert(own);
            }
            for (k, v) in map {
                fields.push(k.as_str());
                if !ignored(fields) {
                    path.push(Seg::Field(k.clone()));
                    walk(shape, v, path, fields, out);
                    path.pop();
                }
                fields.pop();
            }
        }
        // An empty free-form map or keyed list owns nothing; atomic ones are leaves below.
        Value::Object(map) if map.is_empty() && !shape.atomic_map(fields) => {}
        Value::Array(items) if items.is_empty() && shape.list_type(fields) != ListType::Atomic => {}
        Value::Array(items) if !items.is_empty() => match shape.list_type(fields) {
            ListType::Atomic => {
                out.insert(path.clone());
            }
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(Seg::Value(item.to_string()));
                    out.insert(p);
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    path.push(Seg::Key(item_key(item, &keys)));
                    let mut own = path.clone();
                    own.push(Seg::Own);
                    out.insert(own);
                    fields.push("[]");
                    if let Value::Object(m) = item {
                        for (k, v) in m {
                            fields.push(k.as_str());
                            path.push(Seg::Field(k.clone()));
                            walk(shape, v, path, fields, out);
                            path.pop();
                            fields.pop();
                        }
                    }
                    fields.pop();
                    path.pop();
                }
            }
        },
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// The value at a path, if present.
pub fn value_at<'v>(shape: &Shape<'_>, obj: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    let mut cur = obj;
    let mut fields: Vec<&str> = Vec::new();
    for seg in path {
        cur = match seg {
            Seg::Field(f) => {
                fields.push(f);
                cur.get(f.as_str())?
            }
            Seg::Key(k) => {
                let ListType::Map(keys) = shape.list_type(&fields) else {
                    return None;
                };
                fields.push("[]");
                cur.as_array()?.iter().find(|item| item_key(item, &keys) == *k)?
            }
            Seg::Value(v) => {
                let target: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|item| **item == target)?
            }
            Seg::Own => cur,
        };
    }
    Some(cur)
}

/// Removes the value at a path (a field, list item or set value).
pub fn remove_at(shape: &Shape<'_>, obj: &mut Value, path: &[Seg]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    if *last == Seg::Own {
        remove_at(shape, obj, parent_path);
        return;
    }
    let mut fields: Vec<String> = Vec::new();
    let mut cur = obj;
    for seg in parent_path {
        let next = match seg {
            Seg::Field(f) => {
                fields.push(f.clone());
                cur.get_mut(f.as_str())
            }
            Seg::Key(k) => {
                let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
                let ListType::Map(keys) = shape.list_type(&refs) else {
                    return;
                };
                fields.push("[]".into());
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|item| item_key(item, &keys) == *k))
            }
            Seg::Value(_) | Seg::Own => return,
        };
        let Some(next) = next else { return };
        cur = next;
    }
    match last {
        Seg::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f.as_str());
            }
        }
        Seg::Key(k) => {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            if let (ListType::Map(keys), Some(a)) = (shape.list_type(&refs), cur.as_array_mut()) {
                a.retain(|item| item_key(item, &keys) != *k);
            }
        }
        Seg::Value(v) => {
            let target: Option<Value> = serde_json::from_str(v).ok();
            if let Some(a) = cur.as_array_mut() {
                a.retain(|item| Some(item) != target.as_ref());
            }
        }
        Seg::Own => {}
    }
}

/// `fieldsV1` JSON of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for seg in path {
            let key = match seg {
                Seg::Field(f) => format!("f:{f}"),
                Seg::Key(k) => format!("k:{k}"),
                Seg::Value(v) => format!("v:{v}"),
                Seg::Own => ".".into(),
            };
            let entry = node.entry(key).or_insert_with(|| json!({}));
            match entry.as_object_mut() {
                Some(m) => node = m,
                None => break,
            }
        }
    }
    Value::Object(root)
}

/// A set from `fieldsV1` JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(map) = v.as_object() else { return };
        if map.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, child) in map {
            let seg = if k == "." {
                Seg::Own
            } else if let Some(f) = k.strip_prefix("f:") {
                Seg::Field(f.into())
            } else if let Some(key) = k.strip_prefix("k:") {
                Seg::Key(
                    serde_json::from_str::<Value>(key)
                        .map(|v| v.to_string())
                        .unwrap_or_else(|_| key.into()),
                )
            } else if let Some(val) = k.strip_prefix("v:") {
                Seg::Value(val.into())
            } else {
                continue;
            };
            path.push(seg);
            go(child, path, out);
            path.pop();
        }
    }
    go(v, &mut Vec::new(), &mut set);
    set
}

/// A path as conflict messages show it: `.spec.containers[name="app"].image`.
pub fn display(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            Seg::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Seg::Value(v) => out.push_str(&format!("[={v}]")),
            Seg::Own => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn deployment_fields_use_merge_keys() {
        let reg = Registry::default();
        let info = reg.find("apps", "v1", "deployments").expect("deploy");
        let shape = Shape::new(&info);
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "i", "ports": [{"containerPort": 80}]}]}}}});
        let set = of_object(&shape, &obj);
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:metadata"]["f:labels"]["."], json!({}));
        assert_eq!(v1["f:metadata"]["f:finalizers"]["v:\"a\""], json!({}));
        let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(c["f:ports"]["k:{\"containerPort\":80}"]["."], json!({}));
        assert!(v1["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&v1), set);
        let image = vec![
            Seg::Field("spec".into()),
            Seg::Field("template".into()),
            Seg::Field("spec".into()),
            Seg::Field("containers".into()),
            Seg::Key("{\"name\":\"app\"}".into()),
            Seg::Field("image".into()),
        ];
        assert_eq!(value_at(&shape, &obj, &image), Some(&json!("i")));
        assert_eq!(display(&image), ".spec.template.spec.containers[name=\"app\"].image");
        let mut o = obj;
        remove_at(&shape, &mut o, &image);
        assert!(o["spec"]["template"]["spec"]["containers"][0].get("image").is_none());
    }
}
