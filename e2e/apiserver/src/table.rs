//! `meta.k8s.io/v1` Table and PartialObjectMetadata responses: what `kubectl get` asks
//! for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) and prints. Cells follow
//! the apiextensions table convertor: `date` columns become ages (`5m`, `3h2m`), missing
//! values are null.

use serde_json::{Value, json};

use crate::jsonpath;
use crate::registry::{CellSource, Column, ResourceInfo};

/// How much of each object a Table row carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    /// From the `includeObject` parameter (default `Metadata`).
    pub fn from_param(p: Option<&str>) -> Self {
        match p {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// An object reduced to `PartialObjectMetadata`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A list of objects reduced to `PartialObjectMetadataList`.
pub fn partial_metadata_list(objects: &[Value], list_meta: Value) -> Value {
    let mut list = json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "items": objects.iter().map(partial_metadata).collect::<Vec<_>>(),
    });
    list["metadata"] = list_meta;
    list
}

/// The `duration.HumanDuration` of the apimachinery: `45s`, `3m20s`, `2h5m`, `4d`, `2y`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn age(timestamp: &str) -> Value {
    let parsed = time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) => Value::String(human_duration((time::OffsetDateTime::now_utc() - t).whole_seconds())),
        Err(_) => Value::String("<invalid>".into()),
    }
}

fn cell(column: &Column, obj: &Value) -> Value {
    let value = match &column.source {
        CellSource::JsonPath(path) => jsonpath::first(path, obj),
        CellSource::DataCount => {
            let count = |k: &str| obj.get(k).and_then(Value::as_object).map_or(0, serde_json::Map::len);
            Some(json!(count("data") + count("binaryData")))
        }
        CellSource::Name => obj.pointer("/metadata/name").cloned(),
        CellSource::PodReady => {
            let total = obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| s.iter().filter(|c| c.get("ready") == Some(&json!(true))).count());
            Some(json!(format!("{ready}/{total}")))
        }
        CellSource::PodRestarts => {
            let restarts: i64 = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |s| {
                    s.iter()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                        .sum()
                });
            Some(json!(restarts.to_string()))
        }
        CellSource::EventLastSeen => [
            "/series/lastObservedTime",
            "/lastTimestamp",
            "/eventTime",
            "/metadata/creationTimestamp",
        ]
        .iter()
        .find_map(|p| obj.pointer(p).and_then(Value::as_str))
        .map(age),
        CellSource::EventObject => {
            let kind = obj
                .pointer("/involvedObject/kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            let name = obj
                .pointer("/involvedObject/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some(json!(format!("{kind}/{name}")))
        }
        CellSource::DeploymentReady => {
            let ready = obj
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let want = obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            Some(json!(format!("{ready}/{want}")))
        }
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column.kind.as_str() {
        "date" => value.as_str().map_or(Value::Null, age),
        "integer" => match &value {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| json!(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => {
            if value.is_number() {
                value
            } else {
                Value::Null
            }
        }
        "boolean" => {
            if value.is_boolean() {
                value
            } else {
                Value::Null
            }
        }
        _ => match value {
            Value::String(_) => value,
            Value::Array(_) | Value::Object(_) => Value::String(value.to_string()),
            other => Value::String(other.to_string()),
        },
    }
}

/// Whether the printer places `Name` itself (else it is the first column).
fn names_itself(info: &ResourceInfo) -> bool {
    info.columns.iter().any(|c| c.source == CellSource::Name)
}

fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
        "priority": 0,
    })];
    if names_itself(info) {
        defs.clear();
    }
    defs.extend(info.columns.iter().map(|c| {
        let kind = if c.kind == "timestamp" {
            "string"
        } else {
            c.kind.as_str()
        };
        json!({"name": c.name, "type": kind, "format": c.format, "description": c.description, "priority": c.priority})
    }));
    defs
}

fn row(info: &ResourceInfo, obj: &Value, include: Include) -> Value {
    let mut cells = Vec::new();
    if !names_itself(info) {
        cells.push(obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null));
    }
    cells.extend(info.columns.iter().map(|c| cell(c, obj)));
    let mut row = json!({"cells": cells});
    match include {
        Include::None => {}
        Include::Metadata => row["object"] = partial_metadata(obj),
        Include::Object => row["object"] = obj.clone(),
    }
    row
}

/// A Table of `objects` with the resource's columns.
pub fn table(info: &ResourceInfo, objects: &[Value], list_meta: Value, include: Include) -> Value {
    let mut table = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": column_definitions(info),
        "rows": objects.iter().map(|o| row(info, o, include)).collect::<Vec<_>>(),
    });
    table["metadata"] = list_meta;
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn human_durations_match_apimachinery() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(800 * 86400), "2y70d");
    }

    #[test]
    fn table_has_name_first_and_typed_cells() {
        let reg = Registry::default();
        let deploy = reg.find("apps", "v1", "deployments").expect("deploy");
        let obj = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2, "updatedReplicas": 3}});
        let t = table(&deploy, &[obj], json!({"resourceVersion": "7"}), Include::Metadata);
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[2], 3);
        assert_eq!(cells[3], Value::Null);
        assert!(cells[4].as_str().is_some_and(|s| s.contains('y')), "{}", cells[4]);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
