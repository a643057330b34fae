//! OpenAPI documents, as far as kubectl needs them:
//!
//! - `/openapi/v3` lists every served group version; `/openapi/v3/apis/G/V` has a path
//!   per resource whose PATCH operations carry `x-kubernetes-group-version-kind` and the
//!   `fieldValidation` parameter (kubectl checks this to use server-side field
//!   validation), and, for custom resources, the CRD schemas as components (what
//!   `kubectl explain` renders). Built-in kinds get paths but no schemas: kubectl then
//!   computes strategic merge patches from its compiled-in types, which carry the list
//!   merge keys a schema without patch extensions would lose.
//! - `/openapi/v2` is a minimal document with no definitions, in protobuf when asked
//!   (kubectl always fetches it, as protobuf, before `apply`/`create` with the default
//!   `--validate=strict`, and fails without it), else JSON.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::discovery::GIT_VERSION;
use crate::handlers::respond;
use crate::registry::{Registry, ResourceInfo};
use crate::server::App;
use crate::status::ApiError;

/// Media type of the protobuf OpenAPI v2 document as the apiserver labels it (clients
/// ask for `...spec.v2@v1.0+protobuf`, which is not a valid `Content-Type`).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited protobuf field.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The gnostic `openapi_v2.Document` with `swagger`, `info` and empty `paths` and
/// `definitions`, protobuf-encoded.
pub fn v2_protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    put_bytes(&mut info, 1, b"Kubernetes");
    put_bytes(&mut info, 2, GIT_VERSION.as_bytes());
    let mut doc = Vec::new();
    put_bytes(&mut doc, 1, b"2.0");
    put_bytes(&mut doc, 2, &info);
    put_bytes(&mut doc, 8, &[]);
    put_bytes(&mut doc, 9, &[]);
    doc
}

/// `GET /openapi/v2`.
pub fn v2(_app: &App, headers: &HeaderMap) -> Response {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("protobuf") {
        let mut response = (StatusCode::OK, v2_protobuf()).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(V2_PROTOBUF));
        return response;
    }
    respond(
        StatusCode::OK,
        &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": GIT_VERSION}, "paths": {}, "definitions": {}}),
    )
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable short hash of a document, for the `?hash=` the root advertises.
fn hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`.
pub fn v3_root(app: &App) -> Response {
    let paths: Map<String, Value> = app.store.read(|s| {
        let mut paths = Map::new();
        for (group, versions) in s.registry.groups() {
            for version in versions {
                let path = gv_path(&group, &version);
                let doc = group_version_document(&s.registry, &group, &version);
                let url = format!("/openapi/v3/{path}?hash={}", hash(&doc.to_string()));
                paths.insert(path, json!({"serverRelativeURL": url}));
            }
        }
        paths
    });
    respond(StatusCode::OK, &json!({"paths": paths}))
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/G/V`.
pub fn v3_document(app: &App, path: &str) -> Response {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return ApiError::no_route().into_response(),
    };
    let doc = app.store.read(|s| {
        s.registry
            .has_group_version(group, version)
            .then(|| group_version_document(&s.registry, group, version))
    });
    match doc {
        Some(doc) => respond(StatusCode::OK, &doc),
        None => ApiError::no_route().into_response(),
    }
}

/// The components key of a kind: reversed group, version, kind
/// (`dev.eventcast.v1alpha1.Topic`, `io.k8s.api.core.v1.ConfigMap`).
pub fn schema_name(info: &ResourceInfo, kind: &str) -> String {
    let prefix = match info.group.as_str() {
        "" => "io.k8s.api.core".to_string(),
        g if !g.contains('.') => format!("io.k8s.api.{g}"),
        g if g.ends_with(".k8s.io") => {
            let short = g.trim_end_matches(".k8s.io").replace('.', "");
            if g == "apiextensions.k8s.io" {
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_string()
            } else {
                format!("io.k8s.api.{short}")
            }
        }
        g => g.split('.').rev().collect::<Vec<_>>().join("."),
    };
    format!("{prefix}.{}.{kind}", info.version)
}

fn gvk(info: &ResourceInfo, kind: &str) -> Value {
    json!({"group": info.group, "version": info.version, "kind": kind})
}

fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        query_param(
            "fieldManager",
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "string",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        ),
    ]
}

fn operation(info: &ResourceInfo, action: &str, kind: &str, schema_ref: &str, params: Vec<Value>) -> Value {
    let mut op = json!({
        "description": format!("{action} {kind}"),
        "operationId": format!("{action}{}", kind),
        "parameters": Value::Array(params),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(info, &info.kind),
    });
    if matches!(action, "post" | "put" | "patch") {
        let media: Vec<&str> = if action == "patch" {
            // Custom resources do not take strategic merge patches; kubectl reads this list.
            let mut m = vec![
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
            ];
            if !info.is_custom() {
                m.push("application/strategic-merge-patch+json");
            }
            m
        } else {
            vec!["application/json"]
        };
        let content: Map<String, Value> = media
            .into_iter()
            .map(|m| (m.to_string(), json!({"schema": {"$ref": schema_ref}})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn resource_paths(info: &ResourceInfo, has_schema: bool, paths: &mut Map<String, Value>) {
    let base = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    let collection = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.resource)
    } else {
        format!("{base}/{}", info.resource)
    };
    let object_ref = if has_schema {
        format!("#/components/schemas/{}", schema_name(info, &info.kind))
    } else {
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string()
    };
    let list_ref = if has_schema {
        format!("#/components/schemas/{}", schema_name(info, &info.list_kind))
    } else {
        object_ref.clone()
    };
    let mut path_params = Vec::new();
    if info.namespaced {
        path_params.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    paths.insert(
        collection.clone(),
        json!({
            "get": operation(info, "list", &info.kind, &list_ref, vec![query_param("labelSelector", "string", "A selector to restrict the list of returned objects by their labels.")]),
            "post": operation(info, "post", &info.kind, &object_ref, write_params()),
            "delete": operation(info, "deletecollection", &info.kind, &object_ref, vec![]),
            "parameters": path_params.clone(),
        }),
    );
    let mut item_params = path_params;
    item_params.push(
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}),
    );
    let mut patch_params = write_params();
    patch_params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
    let item = |suffix: &str| {
        json!({
            "get": operation(info, "get", &info.kind, &object_ref, vec![]),
            "put": operation(info, "put", &info.kind, &object_ref, write_params()),
            "patch": operation(info, "patch", &info.kind, &object_ref, patch_params.clone()),
            "delete": if suffix.is_empty() { operation(info, "delete", &info.kind, &object_ref, vec![]) } else { Value::Null },
            "parameters": item_params.clone(),
        })
    };
    let strip_nulls = |mut v: Value| {
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
        v
    };
    paths.insert(format!("{collection}/{{name}}"), strip_nulls(item("")));
    for sub in info.subresources() {
        if sub != "finalize" {
            paths.insert(format!("{collection}/{{name}}/{sub}"), strip_nulls(item(sub)));
        }
    }
}

/// Schema of `metadata` (enough of ObjectMeta for `kubectl explain`).
fn object_meta_schema() -> Value {
    let s = |d: &str| json!({"type": "string", "description": d});
    let m = |d: &str| json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": d});
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "annotations": m("Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."),
            "creationTimestamp": s("CreationTimestamp is a timestamp representing the server time when this object was created."),
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64", "description": "Number of seconds allowed for this object to gracefully terminate before it will be removed from the system."},
            "deletionTimestamp": s("DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."),
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "description": "Must be empty before the object is deleted from the registry.", "x-kubernetes-list-type": "set"},
            "generateName": s("GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."),
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "labels": m("Map of string keys and values that can be used to organize and categorize (scope and select) objects."),
            "managedFields": {"type": "array", "items": {"type": "object"}, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."},
            "name": s("Name must be unique within a namespace."),
            "namespace": s("Namespace defines the space within which each name must be unique."),
            "ownerReferences": {"type": "array", "items": {"type": "object"}, "description": "List of objects depended by this object.", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
            "resourceVersion": s("An opaque value that represents the internal version of this object."),
            "selfLink": s("Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."),
            "uid": s("UID is the unique in time and space value for this object."),
        },
    })
}

/// The OpenAPI schema of a custom resource: its structural schema with `apiVersion`,
/// `kind` and `metadata` described, tagged with its group version kind.
fn custom_schema(info: &ResourceInfo, schema: &Value) -> Value {
    let mut s = schema.clone();
    if !s.is_object() {
        s = json!({"type": "object"});
    }
    let props = s
        .as_object_mut()
        .map(|m| m.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(props) = props {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
        props.insert("metadata".into(), json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "default": {}, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
    }
    s["x-kubernetes-group-version-kind"] = json!([gvk(info, &info.kind)]);
    s
}

fn custom_list_schema(info: &ResourceInfo) -> Value {
    json!({
        "description": format!("{} is a list of {}", info.list_kind, info.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", schema_name(info, &info.kind))}},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [gvk(info, &info.list_kind)],
    })
}

/// The OpenAPI v3 document of one group version.
pub fn group_version_document(registry: &Registry, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for info in registry.resources_of(group, version) {
        let schema = info.crd.as_ref().and_then(|c| c.schema.clone());
        resource_paths(&info, schema.is_some(), &mut paths);
        if let Some(schema) = schema {
            schemas.insert(schema_name(&info, &info.kind), custom_schema(&info, &schema));
            schemas.insert(schema_name(&info, &info.list_kind), custom_list_schema(&info));
        }
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into(),
        object_meta_schema(),
    );
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"description": "Status is a return value for calls that don't return other objects.", "type": "object"}),
    );
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_document_is_well_formed() {
        let doc = v2_protobuf();
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(doc[doc.len() - 4..], [0x42, 0, 0x4a, 0]);
    }

    #[test]
    fn builtin_patch_operations_declare_field_validation() {
        let reg = Registry::default();
        let doc = group_version_document(&reg, "apps", "v1");
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(
            patch["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let names: Vec<&String> = doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .keys()
            .collect();
        assert!(
            !names.iter().any(|n| n.ends_with(".Deployment")),
            "no built-in schemas: kubectl keeps its merge keys"
        );
    }

    #[test]
    fn schema_names_follow_kubernetes() {
        let reg = Registry::default();
        let d = reg.find("apps", "v1", "deployments").expect("deploy");
        assert_eq!(schema_name(&d, "Deployment"), "io.k8s.api.apps.v1.Deployment");
        let l = reg.find("coordination.k8s.io", "v1", "leases").expect("lease");
        assert_eq!(schema_name(&l, "Lease"), "io.k8s.api.coordination.v1.Lease");
    }
}
