//! Object metadata rules of the API conventions, applied on every create, update and
//! delete: system fields (`uid`, `creationTimestamp`, `generation`), names, labels,
//! immutable fields, `status`/spec isolation between the main resource and its `status`
//! subresource, finalizers and `deletionTimestamp`, and the few defaults of built-in
//! kinds that clients rely on (Namespace phase, Service cluster IP, Secret `stringData`).

use std::sync::LazyLock;

use base64::Engine;
use rand::Rng;
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;
use crate::status::{ApiError, Cause};

/// The server's clock as an RFC 3339 timestamp with second precision (`metav1.Time`).
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Suffix for `generateName` (the apiserver's alphabet without vowels and confusables).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("static regex")
});
static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static DNS_1035: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("static regex"));
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("static regex"));
static QUALIFIED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("static regex"));

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS_1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Checks an object name the way the resource's validation does.
fn name_causes(info: &ResourceInfo, name: &str) -> Vec<Cause> {
    let field = "metadata.name";
    let v = Value::String(name.into());
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "namespaces") => {
            if name.len() > 63 {
                vec![Cause::too_long(field, 63)]
            } else if !DNS_LABEL.is_match(name) {
                vec![Cause::invalid(field, &v, LABEL_MSG)]
            } else {
                vec![]
            }
        }
        ("", "services") => {
            if name.len() > 63 {
                vec![Cause::too_long(field, 63)]
            } else if !DNS_1035.is_match(name) {
                vec![Cause::invalid(field, &v, DNS_1035_MSG)]
            } else {
                vec![]
            }
        }
        ("rbac.authorization.k8s.io", _) => {
            if name == "." || name == ".." || name.contains('/') || name.contains('%') {
                vec![Cause::invalid(
                    field,
                    &v,
                    "may not contain '/' or '%' and may not be '.' or '..'",
                )]
            } else {
                vec![]
            }
        }
        _ => {
            if name.len() > 253 {
                vec![Cause::too_long(field, 253)]
            } else if !DNS_SUBDOMAIN.is_match(name) {
                vec![Cause::invalid(field, &v, SUBDOMAIN_MSG)]
            } else {
                vec![]
            }
        }
    }
}

/// Validates `metadata.labels` keys and values and `metadata.annotations` keys.
fn label_causes(meta: &Map<String, Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (map_name, check_values) in [("labels", true), ("annotations", false)] {
        let Some(map) = meta.get(map_name) else { continue };
        let Some(map) = map.as_object() else {
            causes.push(Cause::invalid(
                format!("metadata.{map_name}"),
                map,
                "must be a map of string to string",
            ));
            continue;
        };
        for (k, v) in map {
            if let Some(cause) = qualified_name_cause(&format!("metadata.{map_name}"), k) {
                causes.push(cause);
            }
            let field = format!("metadata.{map_name}");
            match v.as_str() {
                None => causes.push(Cause::invalid(field, v, "must be a string")),
                Some(s) if check_values && (s.len() > 63 || !LABEL_VALUE.is_match(s)) => causes.push(Cause::invalid(
                    field,
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )),
                Some(_) => {}
            }
        }
    }
    causes
}

fn qualified_name_cause(field: &str, key: &str) -> Option<Cause> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let bad_prefix = prefix.is_some_and(|p| p.is_empty() || p.len() > 253 || !DNS_SUBDOMAIN.is_match(p));
    if bad_prefix || name.is_empty() || name.len() > 63 || !QUALIFIED_NAME.is_match(name) {
        return Some(Cause::invalid(
            field,
            &Value::String(key.into()),
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ));
    }
    None
}

fn meta_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// `metadata.name` of an object, or "".
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

/// Checks `apiVersion`/`kind` of a request body against the endpoint and fills them in.
pub fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let map = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    let want_av = info.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            // Another served version of the same resource is converted (conversion strategy None).
            let same_group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("") == info.group;
            if !same_group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if kind != info.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            )));
        }
        _ => {}
    }
    map.insert("apiVersion".into(), Value::String(want_av));
    map.insert("kind".into(), Value::String(info.kind.clone()));
    Ok(())
}

/// Fields that are neither type, metadata nor (with a status subresource) status: what
/// `generation` tracks.
fn spec_part<'a>(info: &ResourceInfo, obj: &'a Value) -> Vec<(&'a String, &'a Value)> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !(matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || (info.status && *k == "status"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Prepares a new object: type, namespace, name (or `generateName`), system fields,
/// create-time defaults; validates metadata.
pub fn prepare_create(info: &ResourceInfo, namespace: Option<&str>, mut obj: Value) -> Result<Value, ApiError> {
    check_type(info, &mut obj)?;
    let meta = meta_mut(&mut obj)?;
    match (info.namespaced, namespace) {
        (true, Some(ns)) => {
            if let Some(given) = meta.get("namespace").and_then(Value::as_str).filter(|g| !g.is_empty())
                && given != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), Value::String(ns.into()));
        }
        (true, None) => return Err(ApiError::bad_request("a namespaced resource needs a namespace")),
        (false, _) => {
            meta.remove("namespace");
        }
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        match meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty())
        {
            Some(prefix) => {
                let generated = format!("{prefix}{}", random_suffix());
                meta.insert("name".into(), Value::String(generated));
            }
            None => {
                return Err(ApiError::invalid(
                    &info.group,
                    &info.kind,
                    "",
                    &[Cause::required_detail(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
        }
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let mut causes = name_causes(info, &name);
    causes.extend(label_causes(meta));
    if !causes.is_empty() {
        return Err(ApiError::invalid(&info.group, &info.kind, &name, &causes));
    }
    for system in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(system);
    }
    meta.insert("uid".into(), Value::String(new_uid()));
    meta.insert("creationTimestamp".into(), Value::String(now()));
    if info.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if info.status
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    create_defaults(info, &mut obj);
    Ok(obj)
}

/// Defaults of built-in kinds that clients rely on.
fn create_defaults(info: &ResourceInfo, obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else { return };
    match (info.group.as_str(), info.resource.as_str()) {
        ("", "namespaces") => {
            map.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            map.insert("status".into(), json!({"phase": "Active"}));
        }
        ("", "pods") => {
            map.insert("status".into(), json!({"phase": "Pending", "qosClass": "BestEffort"}));
        }
        ("", "services") => {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("type").or_insert_with(|| json!("ClusterIP"));
                spec.entry("sessionAffinity").or_insert_with(|| json!("None"));
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    let mut rng = rand::rng();
                    let ip = format!("10.96.{}.{}", rng.random_range(0..=255u8), rng.random_range(1..=254u8));
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
                spec.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
                spec.entry("internalTrafficPolicy").or_insert_with(|| json!("Cluster"));
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                        port.entry("protocol").or_insert_with(|| json!("TCP"));
                        if let Some(p) = port.get("port").cloned() {
                            port.entry("targetPort").or_insert(p);
                        }
                    }
                }
            }
            map.insert("status".into(), json!({"loadBalancer": {}}));
        }
        ("", "secrets") => {
            map.entry("type").or_insert_with(|| json!("Opaque"));
            fold_string_data(map);
        }
        ("apps", "deployments") => {
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("replicas").or_insert_with(|| json!(1));
                spec.entry("revisionHistoryLimit").or_insert_with(|| json!(10));
                spec.entry("progressDeadlineSeconds").or_insert_with(|| json!(600));
                let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
                if let Some(strategy) = strategy.as_object_mut()
                    && strategy
                        .get("type")
                        .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
                {
                    strategy.insert("type".into(), json!("RollingUpdate"));
                    strategy
                        .entry("rollingUpdate")
                        .or_insert_with(|| json!({"maxSurge": "25%", "maxUnavailable": "25%"}));
                }
            }
        }
        _ => {}
    }
}

/// Secret `stringData` is write-only: merged into `data` (base64) and dropped.
fn fold_string_data(map: &mut Map<String, Value>) {
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v.as_str().unwrap_or_default();
            data.insert(k, Value::String(base64::engine::general_purpose::STANDARD.encode(text)));
        }
    }
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status (when a status subresource exists).
    Main,
    /// The `status` subresource: status only.
    Status,
    /// The `scale` subresource: the main resource's replica count only.
    Scale,
}

/// Merges an update into the stored object: checks the version precondition, keeps
/// immutable and system fields, isolates status from spec, bumps `generation` on spec
/// changes, validates metadata. `rv_required` rejects updates without a
/// `resourceVersion` (custom resources), as their strategies do.
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    part: Part,
    rv_required: bool,
) -> Result<Value, ApiError> {
    check_type(info, &mut new)?;
    let name = name_of(old).to_string();
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let meta = meta_mut(&mut new)?;
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if let Some(ns) = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        && old_meta.get("namespace").and_then(Value::as_str) != Some(ns)
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    match meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(rv) if Some(rv) != old_meta.get("resourceVersion").and_then(Value::as_str) => {
            return Err(ApiError::conflict(&info.group, &info.resource, &name));
        }
        None if rv_required => {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                &name,
                &[Cause::invalid(
                    "metadata.resourceVersion",
                    &json!(0),
                    "must be specified for an update",
                )],
            ));
        }
        _ => {}
    }
    if let Some(uid) = meta.get("uid").and_then(Value::as_str).filter(|s| !s.is_empty())
        && Some(uid) != old_meta.get("uid").and_then(Value::as_str)
    {
        return Err(ApiError::conflict_msg(
            &info.group,
            &info.resource,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old_meta.get("uid").and_then(Value::as_str).unwrap_or("")
            ),
        ));
    }
    // System fields always come from the stored object.
    for system in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        match old_meta.get(system) {
            Some(v) => meta.insert(system.into(), v.clone()),
            None => meta.remove(system),
        };
    }
    meta.remove("selfLink");
    if old_meta.contains_key("deletionTimestamp") {
        let old_f: Vec<&Value> = old_meta
            .get("finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if let Some(added) = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .and_then(|f| f.iter().find(|x| !old_f.contains(x)).cloned())
        {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                &name,
                &[Cause::forbidden(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers [{}]",
                        added.as_str().unwrap_or("")
                    ),
                )],
            ));
        }
    }
    let causes = label_causes(meta);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&info.group, &info.kind, &name, &causes));
    }
    match part {
        Part::Main | Part::Scale => {
            if info.status
                && let Some(map) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(s) => map.insert("status".into(), s.clone()),
                    None => map.remove("status"),
                };
            }
        }
        Part::Status => {
            let status = new.get("status").cloned();
            let managed = new.pointer("/metadata/managedFields").cloned();
            new = old.clone();
            if let Some(map) = new.as_object_mut() {
                match status {
                    Some(s) => map.insert("status".into(), s),
                    None => map.remove("status"),
                };
            }
            if let (Some(m), Ok(meta)) = (managed, meta_mut(&mut new)) {
                meta.insert("managedFields".into(), m);
            }
        }
    }
    if let (true, Some(map)) = (info.resource == "secrets" && info.group.is_empty(), new.as_object_mut()) {
        fold_string_data(map);
    }
    if info.generation && spec_part(info, old) != spec_part(info, &new) {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        meta_mut(&mut new)?.insert("generation".into(), json!(generation));
    }
    Ok(new)
}

/// Whether an update changed nothing but `resourceVersion` (a no-op is not written;
/// field ownership changes are changes).
pub fn unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(old) == strip(new)
}

/// Finalizers of an object.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// Whether an object has `deletionTimestamp` set.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Marks an object deleted-pending-finalizers: `deletionTimestamp`, grace period 0, and
/// a `generation` bump as the apiserver does.
pub fn mark_deleting(info: &ResourceInfo, obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("deletionTimestamp".into(), Value::String(now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if info.generation {
            let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            meta.insert("generation".into(), json!(g + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    fn info(group: &str, version: &str, resource: &str) -> std::sync::Arc<ResourceInfo> {
        Registry::default().find(group, version, resource).expect("builtin")
    }

    #[test]
    fn create_sets_system_fields_and_generate_name() {
        let deploy = info("apps", "v1", "deployments");
        let obj = prepare_create(
            &deploy,
            Some("default"),
            json!({"metadata": {"generateName": "web-"}, "spec": {}, "status": {"replicas": 9}}),
        )
        .expect("valid");
        let name = name_of(&obj);
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert_eq!(obj["spec"]["replicas"], 1);
        assert!(obj.get("status").is_none(), "status is dropped on create");
        assert_eq!(obj["kind"], "Deployment");
        assert_eq!(new_uid().len(), 36);
    }

    #[test]
    fn create_rejects_bad_names_and_labels() {
        let cm = info("", "v1", "configmaps");
        let err = prepare_create(&cm, Some("default"), json!({"metadata": {"name": "Bad_Name"}})).expect_err("invalid");
        assert_eq!(err.code, 422);
        assert!(err.message.starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        let err = prepare_create(
            &cm,
            Some("default"),
            json!({"metadata": {"name": "ok", "labels": {"a": "b c"}}}),
        )
        .expect_err("invalid label");
        assert!(
            err.message.contains("metadata.labels: Invalid value: \"b c\""),
            "{}",
            err.message
        );
        let err = prepare_create(&cm, Some("default"), json!({"metadata": {}})).expect_err("no name");
        assert!(
            err.message
                .ends_with("metadata.name: Required value: name or generateName is required")
        );
    }

    #[test]
    fn update_isolates_status_and_bumps_generation_on_spec_only() {
        let deploy = info("apps", "v1", "deployments");
        let old = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 1, "resourceVersion": "5"},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = old.clone();
        new["status"]["replicas"] = json!(3);
        new["metadata"]["labels"] = json!({"a": "b"});
        let out = prepare_update(&deploy, &old, new.clone(), Part::Main, false).expect("update");
        assert_eq!(out["status"]["replicas"], 1, "main resource ignores status");
        assert_eq!(out["metadata"]["generation"], 1, "labels do not bump generation");
        let out = prepare_update(&deploy, &old, new.clone(), Part::Status, false).expect("status");
        assert_eq!(out["status"]["replicas"], 3);
        assert!(out["metadata"].get("labels").is_none(), "status ignores metadata");
        new["spec"]["replicas"] = json!(2);
        let out = prepare_update(&deploy, &old, new.clone(), Part::Main, false).expect("spec");
        assert_eq!(out["metadata"]["generation"], 2);
        new["metadata"]["resourceVersion"] = json!("4");
        let err = prepare_update(&deploy, &old, new, Part::Main, false).expect_err("stale");
        assert_eq!((err.code, err.reason), (409, "Conflict"));
    }

    #[test]
    fn secrets_fold_string_data() {
        let secret = info("", "v1", "secrets");
        let obj = prepare_create(
            &secret,
            Some("default"),
            json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
        )
        .expect("valid");
        assert_eq!(obj["data"]["k"], "dg==");
        assert_eq!(obj["type"], "Opaque");
        assert!(obj.get("stringData").is_none());
    }
}
