//! Conversion between the stored form of an object and the version a request uses.
//!
//! Custom resources use the `None` strategy: only `apiVersion` changes. Events are one
//! resource with two APIs, as on a real apiserver: stored as `core/v1` Events and served
//! as `events.k8s.io/v1` with the field renames of that API (`regarding` ↔
//! `involvedObject`, `note` ↔ `message`, `reportingController` ↔ `reportingComponent`,
//! `deprecatedSource`/`deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`deprecatedCount`
//! ↔ `source`/`firstTimestamp`/`lastTimestamp`/`count`), so an event an operator records
//! through either API shows in `kubectl describe` and `kubectl get events`.

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// (events.k8s.io/v1 name, core/v1 name) of the renamed Event fields.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_new_event_api(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.resource == "events"
}

fn rename(map: &mut Map<String, Value>, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    for (from, to) in pairs {
        if let Some(v) = map.remove(from) {
            map.insert(to.to_string(), v);
        }
    }
}

/// The stored object as served through `info`'s version.
pub fn to_served(info: &ResourceInfo, stored: &Value) -> Value {
    let mut out = stored.clone();
    if let Some(map) = out.as_object_mut() {
        if is_new_event_api(info) {
            rename(map, EVENT_RENAMES.iter().map(|(new, old)| (*old, *new)));
            map.insert("kind".into(), Value::String(info.kind.clone()));
        }
        map.insert("apiVersion".into(), Value::String(info.api_version()));
    }
    out
}

/// A served-form object as stored.
pub fn to_storage(info: &ResourceInfo, served: Value) -> Value {
    let mut out = served;
    if is_new_event_api(info)
        && let Some(map) = out.as_object_mut()
    {
        rename(map, EVENT_RENAMES.iter().copied());
        map.insert("apiVersion".into(), Value::String("v1".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_apis() {
        let reg = Registry::default();
        let new_api = reg.find("events.k8s.io", "v1", "events").expect("events.k8s.io");
        assert_eq!(
            (new_api.storage_group.as_str(), new_api.storage_resource.as_str()),
            ("", "events")
        );
        let served = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Topic", "name": "orders"}, "note": "programmed", "reason": "Programmed",
            "reportingController": "eventcast.dev/operator", "type": "Normal"});
        let stored = to_storage(&new_api, served.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "orders");
        assert_eq!(stored["message"], "programmed");
        assert_eq!(stored["reportingComponent"], "eventcast.dev/operator");
        assert_eq!(to_served(&new_api, &stored), served);
    }
}
