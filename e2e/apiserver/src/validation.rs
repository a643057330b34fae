//! Validation of built-in kinds: the checks of the apiserver's per-kind validation that
//! an operator or chart most easily gets wrong, with the apiserver's field paths and
//! wording — Deployment selector/template agreement and immutable selector, containers
//! with names and images, Service ports, ConfigMap/Secret keys and base64 data,
//! immutable `roleRef` of bindings. Everything else of a built-in object is accepted
//! as sent (see the README's known differences).

use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;
use crate::status::Cause;

static CONFIG_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[-._a-zA-Z0-9]+$").expect("static regex"));
static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));

/// Renders a string map as Go's `%#v` of `map[string]string` does in these messages.
fn go_map(map: &Map<String, Value>) -> String {
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default()))
        .collect();
    format!("map[string]string{{{}}}", parts.join(", "))
}

fn containers(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let list = spec.get("containers").and_then(Value::as_array);
    match list {
        None => causes.push(Cause::required(format!("{path}.containers"))),
        Some(list) if list.is_empty() => causes.push(Cause::required(format!("{path}.containers"))),
        Some(list) => {
            let mut seen: Vec<&str> = Vec::new();
            for (i, c) in list.iter().enumerate() {
                let at = format!("{path}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => causes.push(Cause::required(format!("{at}.name"))),
                    Some(name) => {
                        if name.len() > 63 || !DNS_LABEL.is_match(name) {
                            causes.push(Cause::invalid(
                                format!("{at}.name"),
                                &json!(name),
                                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                            ));
                        }
                        if seen.contains(&name) {
                            causes.push(Cause::duplicate(format!("{at}.name"), &json!(name)));
                        }
                        seen.push(name);
                    }
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s.trim().is_empty())
                {
                    causes.push(Cause::required(format!("{at}.image")));
                }
                for (j, p) in c
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let port = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        causes.push(Cause::invalid(
                            format!("{at}.ports[{j}].containerPort"),
                            &json!(port),
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
            }
        }
    }
}

fn deployment(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    if let Some(r) = spec.get("replicas").and_then(Value::as_i64)
        && r < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &json!(r),
            "must be greater than or equal to 0",
        ));
    }
    let selector = spec.get("selector");
    let match_labels = selector.and_then(|s| s.get("matchLabels")).and_then(Value::as_object);
    let has_expressions = selector
        .and_then(|s| s.get("matchExpressions"))
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    if match_labels.is_none_or(Map::is_empty) && !has_expressions {
        causes.push(Cause::invalid(
            "spec.selector",
            selector.unwrap_or(&Value::Null),
            "empty selector is invalid for deployment",
        ));
    }
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(wanted) = match_labels
        && wanted.iter().any(|(k, v)| template_labels.get(k) != Some(v))
    {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            &json!(go_map(&template_labels)),
            "`selector` does not match template `labels`",
        ));
    }
    match spec.pointer("/template/spec") {
        Some(pod) => containers(pod, "spec.template.spec", causes),
        None => causes.push(Cause::required("spec.template.spec.containers")),
    }
    if let Some(old) = old
        && old.pointer("/spec/selector") != spec.get("selector")
    {
        causes.push(Cause::invalid("spec.selector", &json!("object"), "field is immutable"));
    }
}

fn service(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    let ports = spec.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if ports.is_empty() && kind != "ExternalName" && !headless {
        causes.push(Cause::required("spec.ports"));
    }
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.len() > 1 && p.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
    }
    if let Some(old) = old {
        let old_ip = old.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
        let new_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
        if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                &json!(new_ip),
                "may not change once set",
            ));
        }
    }
}

fn config_keys(obj: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    for field in fields {
        for key in obj
            .get(*field)
            .and_then(Value::as_object)
            .map(|m| m.keys().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if key.len() > 253 || !CONFIG_KEY.is_match(key) {
                causes.push(Cause::invalid(
                    format!("{field}[{key}]"),
                    &json!(key),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
}

/// Base64 data that does not decode is a request decoding error (400), not a 422.
pub fn undecodable_data(info: &ResourceInfo, obj: &Value) -> Option<String> {
    let fields: &[&str] = match (info.group.as_str(), info.resource.as_str()) {
        ("", "secrets") => &["data"],
        ("", "configmaps") => &["binaryData"],
        _ => return None,
    };
    for field in fields {
        for (key, value) in obj.get(*field).and_then(Value::as_object).into_iter().flatten() {
            let ok = value
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Some(format!("illegal base64 data in {field}[{key}]"));
            }
        }
    }
    None
}

/// The validation errors of a built-in object (`old` on update).
pub fn builtin_causes(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    match (info.group.as_str(), info.resource.as_str()) {
        ("apps", "deployments") => deployment(obj, old, &mut causes),
        ("", "pods") => match obj.get("spec") {
            Some(spec) => containers(spec, "spec", &mut causes),
            None => causes.push(Cause::required("spec.containers")),
        },
        ("", "services") => service(obj, old, &mut causes),
        ("", "configmaps") => config_keys(obj, &["data", "binaryData"], &mut causes),
        ("", "secrets") => config_keys(obj, &["data"], &mut causes),
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => {
            if obj.get("roleRef").is_none_or(Value::is_null) {
                causes.push(Cause::required("roleRef"));
            }
            if let Some(old) = old
                && old.get("roleRef") != obj.get("roleRef")
            {
                causes.push(Cause::invalid("roleRef", &json!("object"), "cannot change roleRef"));
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn info(group: &str, resource: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::default().find(group, "v1", resource).expect("builtin")
    }

    #[test]
    fn deployment_rules() {
        let d = info("apps", "deployments");
        let good = json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "i"}]}}}});
        assert!(builtin_causes(&d, &good, None).is_empty());
        let bad = json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "App"}]}}}});
        let lines: Vec<String> = builtin_causes(&d, &bad, Some(&good)).iter().map(Cause::line).collect();
        assert!(lines.contains(&"spec.template.metadata.labels: Invalid value: \"map[string]string{\\\"app\\\":\\\"db\\\"}\": `selector` does not match template `labels`".to_string()), "{lines:?}");
        assert!(
            lines.contains(&"spec.template.spec.containers[0].image: Required value".to_string()),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("spec.template.spec.containers[0].name: Invalid value: \"App\"")),
            "{lines:?}"
        );
        let moved = json!({"spec": {"selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "app", "image": "i"}]}}}});
        let lines: Vec<String> = builtin_causes(&d, &moved, Some(&good))
            .iter()
            .map(Cause::line)
            .collect();
        assert_eq!(lines, ["spec.selector: Invalid value: \"object\": field is immutable"]);
    }

    #[test]
    fn config_keys_services_and_bindings() {
        let cm = info("", "configmaps");
        let lines: Vec<String> = builtin_causes(&cm, &json!({"data": {"ok.key": "1", "bad key": "2"}}), None)
            .iter()
            .map(Cause::line)
            .collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("data[bad key]: Invalid value: \"bad key\": a valid config key"));
        let secret = info("", "secrets");
        assert_eq!(
            undecodable_data(&secret, &json!({"data": {"k": "not base64!"}})).as_deref(),
            Some("illegal base64 data in data[k]")
        );
        assert!(undecodable_data(&secret, &json!({"data": {"k": "dg=="}})).is_none());
        let svc = info("", "services");
        let lines: Vec<String> = builtin_causes(&svc, &json!({"spec": {"ports": [{"port": 80}, {"port": 0}]}}), None)
            .iter()
            .map(Cause::line)
            .collect();
        assert!(
            lines.contains(&"spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"spec.ports[0].name: Required value".to_string()),
            "{lines:?}"
        );
        let rb = info("rbac.authorization.k8s.io", "rolebindings");
        let old = json!({"roleRef": {"kind": "Role", "name": "a"}});
        let new = json!({"roleRef": {"kind": "Role", "name": "b"}});
        assert_eq!(builtin_causes(&rb, &new, Some(&old)).len(), 1);
    }
}
