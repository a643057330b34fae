//! CustomResourceDefinitions: validation and defaulting of the CRD object itself, the
//! status the apiextensions controllers would write (`NamesAccepted`, `Established`,
//! `acceptedNames`, `storedVersions`), and the served resources derived from the stored
//! CRDs, so that registering a CRD serves its resources at once.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::object::now;
use crate::registry::{CellSource, Column, CrdVersion, ResourceInfo, STANDARD_VERBS, ScaleInfo};
use crate::schema;
use crate::status::Cause;

/// The finalizer the apiserver puts on every CRD: its custom resources are deleted
/// before the CRD goes away.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Fills in the defaults of a CRD spec (`singular`, `listKind`, `conversion`) and adds
/// the cleanup finalizer on create.
pub fn default_crd(crd: &mut Value, creating: bool) {
    let kind = str_at(crd, "/spec/names/kind").to_string();
    if let Some(names) = crd.pointer_mut("/spec/names").and_then(Value::as_object_mut) {
        names
            .entry("singular")
            .or_insert_with(|| Value::String(kind.to_ascii_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| Value::String(format!("{kind}List")));
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion").or_insert_with(|| json!({"strategy": "None"}));
    }
    if creating && let Some(meta) = crd.get_mut("metadata").and_then(Value::as_object_mut) {
        let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == CLEANUP_FINALIZER)
        {
            list.push(json!(CLEANUP_FINALIZER));
        }
    }
}

/// Validates a CRD the way the apiextensions validation does (names, versions, scope,
/// schemas structural). `old` is the stored CRD on update.
pub fn validate_crd(crd: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    let name = str_at(crd, "/metadata/name");
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &json!(group),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    } else if !is_dns_label(plural) {
        causes.push(Cause::invalid("spec.names.plural", &json!(plural), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let kind = str_at(crd, "/spec/names/kind");
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    for (i, short) in crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !short.as_str().is_some_and(is_dns_label) {
            causes.push(Cause::invalid(format!("spec.names.shortNames[{i}]"), short, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
        }
    }
    let scope = str_at(crd, "/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        causes.push(Cause::not_supported(
            "spec.scope",
            &json!(scope),
            &[json!("Cluster"), json!("Namespaced")],
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &json!(versions),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, version) in versions.iter().enumerate() {
        let vname = str_at(version, "/name");
        if !is_dns_label(vname) {
            causes.push(Cause::invalid(format!("spec.versions[{i}].name"), &json!(vname), "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"));
        }
        match version.pointer("/schema/openAPIV3Schema") {
            None => causes.push(Cause::required_detail(
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(s) => causes.extend(schema::structural_causes(
                s,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
            )),
        }
    }
    if let Some(old) = old {
        if str_at(old, "/spec/group") != group {
            causes.push(Cause::invalid("spec.group", &json!(group), "field is immutable"));
        }
        if str_at(old, "/spec/scope") != scope {
            causes.push(Cause::invalid("spec.scope", &json!(scope), "field is immutable"));
        }
        if let Some(stored) = old.pointer("/status/storedVersions").and_then(Value::as_array) {
            for s in stored.iter().filter_map(Value::as_str) {
                if !versions.iter().any(|v| str_at(v, "/name") == s) {
                    causes.push(Cause::invalid(
                        "status.storedVersions",
                        &json!(stored),
                        format!("must appear in spec.versions: {s}"),
                    ));
                }
            }
        }
    }
    causes
}

/// The status the apiextensions controllers converge a CRD to, or `None` if it already
/// has it (so reconciling does not write again).
pub fn desired_status(crd: &Value) -> Option<Value> {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v.get("storage") == Some(&json!(true))))
        .map(|v| str_at(v, "/name").to_string())
        .unwrap_or_default();
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !storage.is_empty() && !stored.iter().any(|s| s == &json!(storage)) {
        stored.push(json!(storage));
    }
    let terminating = crate::object::is_deleting(crd);
    let old_conditions = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        let since = old_conditions
            .iter()
            .find(|c| c["type"] == kind && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now()));
        json!({"type": kind, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let mut conditions = vec![
        condition("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        condition(
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ),
    ];
    if terminating {
        conditions.push(condition(
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        ));
    }
    let desired = json!({"conditions": conditions, "acceptedNames": names, "storedVersions": stored});
    let current = crd.get("status");
    let same = current.is_some_and(|c| {
        c.get("acceptedNames") == desired.get("acceptedNames")
            && c.get("storedVersions") == desired.get("storedVersions")
            && c.get("conditions").and_then(Value::as_array).map(Vec::len) == Some(conditions.len())
    });
    (!same).then_some(desired)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// The resources served for the stored CRDs (every served version of every CRD whose
/// names were accepted).
pub fn served_resources<'a>(crds: impl Iterator<Item = &'a Value>) -> Vec<Arc<ResourceInfo>> {
    let mut out = Vec::new();
    for crd in crds {
        if crd.pointer("/status/acceptedNames/plural").is_none() {
            continue;
        }
        let group = str_at(crd, "/spec/group");
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let kind = str_at(&names, "/kind");
        let plural = str_at(&names, "/plural");
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for version in versions.iter().filter(|v| v.get("served") != Some(&json!(false))) {
            let columns = printer_columns(version);
            let scale = version.pointer("/subresources/scale").map(|s| ScaleInfo {
                spec_replicas_path: str_at(s, "/specReplicasPath").into(),
                status_replicas_path: str_at(s, "/statusReplicasPath").into(),
                label_selector_path: s.get("labelSelectorPath").and_then(Value::as_str).map(String::from),
            });
            let selectable = version
                .get("selectableFields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                        .map(|p| p.trim_start_matches('.').to_string())
                        .collect()
                })
                .unwrap_or_default();
            out.push(Arc::new(ResourceInfo {
                group: group.into(),
                version: str_at(version, "/name").into(),
                resource: plural.into(),
                singular: str_at(&names, "/singular").into(),
                kind: kind.into(),
                list_kind: str_at(&names, "/listKind").into(),
                namespaced: str_at(crd, "/spec/scope") == "Namespaced",
                short_names: strings(names.get("shortNames")),
                categories: strings(names.get("categories")),
                verbs: STANDARD_VERBS.iter().map(|s| (*s).to_string()).collect(),
                status: version.pointer("/subresources/status").is_some(),
                scale,
                generation: true,
                columns,
                selectable_fields: selectable,
                storage_group: group.into(),
                storage_resource: plural.into(),
                crd: Some(CrdVersion {
                    crd_name: str_at(crd, "/metadata/name").into(),
                    schema: version.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new),
                    storage: version.get("storage") == Some(&json!(true)),
                }),
            }));
        }
    }
    out
}

fn printer_columns(version: &Value) -> Vec<Column> {
    let declared = version.get("additionalPrinterColumns").and_then(Value::as_array);
    match declared {
        Some(cols) if !cols.is_empty() => cols
            .iter()
            .map(|c| Column {
                name: str_at(c, "/name").into(),
                kind: str_at(c, "/type").into(),
                format: str_at(c, "/format").into(),
                description: str_at(c, "/description").into(),
                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                source: CellSource::JsonPath(str_at(c, "/jsonPath").into()),
            })
            .collect(),
        _ => vec![Column::age()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object"}}}}}]}
        })
    }

    #[test]
    fn valid_crd_is_served_after_status() {
        let mut c = crd();
        default_crd(&mut c, true);
        assert!(validate_crd(&c, None).is_empty());
        assert_eq!(c["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(c["metadata"]["finalizers"][0], CLEANUP_FINALIZER);
        assert!(
            served_resources([&c].into_iter()).is_empty(),
            "not served before names are accepted"
        );
        c["status"] = desired_status(&c).expect("status");
        assert!(desired_status(&c).is_none(), "converged");
        let served = served_resources([&c].into_iter());
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].short_names, vec!["wd"]);
        assert!(served[0].status);
        assert_eq!(served[0].columns[0].name, "Age");
    }

    #[test]
    fn invalid_crd_names_the_fields() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong.example.com");
        c["spec"]["versions"][0]["storage"] = json!(false);
        c["spec"]["versions"][0].as_object_mut().map(|m| m.remove("schema"));
        let fields: Vec<String> = validate_crd(&c, None).into_iter().map(|c| c.field).collect();
        assert!(fields.contains(&"metadata.name".to_string()));
        assert!(fields.contains(&"spec.versions".to_string()));
        assert!(fields.contains(&"spec.versions[0].schema.openAPIV3Schema".to_string()));
    }
}
