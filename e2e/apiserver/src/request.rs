//! A request as the apiserver sees it: the resource path (`/apis/G/V/namespaces/NS/R/NAME/SUB`)
//! resolved against the registry, the query parameters of the API conventions, and the
//! response form the `Accept` header asks for (object, Table, or PartialObjectMetadata).

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};

use crate::registry::{Registry, ResourceInfo};
use crate::status::ApiError;

/// The resource (and optionally object and subresource) a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub info: Arc<ResourceInfo>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    /// Resolves the path segments after `/api/v1` or `/apis/G/V`.
    pub fn resolve(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Result<Self, ApiError> {
        let namespaced_form = rest.len() >= 3
            && rest[0] == "namespaces"
            && registry.find(group, version, rest[2]).is_some_and(|r| r.namespaced);
        let (namespace, parts) = if namespaced_form {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
        if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(ApiError::no_route());
        }
        let info = registry.find(group, version, parts[0]).ok_or_else(ApiError::no_route)?;
        let name = parts.get(1).map(|s| (*s).to_string());
        let subresource = parts.get(2).map(|s| (*s).to_string());
        if info.namespaced && namespace.is_none() && name.is_some() {
            return Err(ApiError::no_route());
        }
        if let Some(sub) = &subresource
            && !info.subresources().contains(&sub.as_str())
        {
            return Err(ApiError::no_route());
        }
        Ok(Self {
            info,
            namespace,
            name,
            subresource,
        })
    }

    /// The object name, or 400 for verbs that need one.
    pub fn name(&self) -> Result<&str, ApiError> {
        self.name
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("a name is required for this request"))
    }
}

/// Query parameters of the API conventions.
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    pub timeout_seconds: Option<u64>,
    pub send_initial_events: Option<bool>,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    pub field_validation: Option<String>,
    pub propagation_policy: Option<String>,
    pub include_object: Option<String>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True")
}

impl Params {
    /// Parses a raw query string; repeated keys keep the last value (`dryRun` any).
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut p = Self::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let v = v.into_owned();
            match k.as_ref() {
                "labelSelector" => p.label_selector = Some(v).filter(|s| !s.is_empty()),
                "fieldSelector" => p.field_selector = Some(v).filter(|s| !s.is_empty()),
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?;
                    p.limit = usize::try_from(n).ok().filter(|n| *n > 0);
                }
                "continue" => p.continue_token = Some(v).filter(|s| !s.is_empty()),
                "resourceVersion" => p.resource_version = Some(v).filter(|s| !s.is_empty()),
                "resourceVersionMatch" => p.resource_version_match = Some(v).filter(|s| !s.is_empty()),
                "watch" => p.watch = truthy(&v),
                "allowWatchBookmarks" => p.allow_watch_bookmarks = truthy(&v),
                "timeoutSeconds" => {
                    p.timeout_seconds = Some(
                        v.parse()
                            .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {v:?}")))?,
                    );
                }
                "sendInitialEvents" => p.send_initial_events = Some(truthy(&v)),
                "dryRun" => {
                    if v != "All" {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: Unsupported value: {v:?}: supported values: \"All\""
                        )));
                    }
                    p.dry_run = true;
                }
                "fieldManager" => p.field_manager = Some(v).filter(|s| !s.is_empty()),
                "force" => p.force = truthy(&v),
                "fieldValidation" => p.field_validation = Some(v).filter(|s| !s.is_empty()),
                "propagationPolicy" => p.propagation_policy = Some(v),
                "includeObject" => p.include_object = Some(v),
                _ => {}
            }
        }
        Ok(p)
    }

    /// Whether `fieldValidation=Strict` was asked for (unknown fields are errors).
    pub fn strict(&self) -> bool {
        self.field_validation.as_deref() == Some("Strict")
    }
}

/// The response representation asked for by `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The object(s) themselves.
    Object,
    /// `meta.k8s.io/v1` Table (what `kubectl get` prints).
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// The media-type parameters of one `Accept` entry.
fn media_params(entry: &str) -> (String, Vec<(String, String)>) {
    let mut parts = entry.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect();
    (media, params)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

impl Output {
    /// The first representation in `Accept` this server can produce.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        for entry in accept.split(',') {
            let (media, params) = media_params(entry);
            if media != "application/json" && media != "*/*" && media != "application/*" {
                continue;
            }
            match (param(&params, "as"), param(&params, "g")) {
                (Some("Table"), Some("meta.k8s.io")) => return Self::Table,
                (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                    return Self::Metadata;
                }
                (Some(_), _) => continue,
                (None, _) => return Self::Object,
            }
        }
        Self::Object
    }
}

/// Whether `Accept` asks for aggregated discovery (`apidiscovery.k8s.io/v2`).
pub fn wants_aggregated_discovery(headers: &HeaderMap) -> bool {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for entry in accept.split(',') {
        let (media, params) = media_params(entry);
        if media != "application/json" {
            continue;
        }
        if param(&params, "g") == Some("apidiscovery.k8s.io")
            && param(&params, "v") == Some("v2")
            && param(&params, "as") == Some("APIGroupDiscoveryList")
        {
            return true;
        }
        if param(&params, "as").is_none() {
            return false;
        }
    }
    false
}

/// The request body's media type, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    let raw = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    media_params(raw).0
}

/// Decodes a JSON or YAML request body.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let media = content_type(headers);
    if media == "application/vnd.kubernetes.protobuf" {
        return crate::protobuf::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(
                &media,
                &[
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf",
                ],
            );
            err.message = e.to_string();
            err
        });
    }
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(ApiError::unsupported_media_type(
            &media,
            &[
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf",
            ],
        ));
    }
    if media.contains("yaml") {
        serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{}': {e}",
                String::from_utf8_lossy(body).chars().take(200).collect::<String>()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn resolves_namespaced_and_cluster_paths() {
        let reg = Registry::default();
        let t = Target::resolve(&reg, "", "v1", &["namespaces", "default", "configmaps", "a"]).expect("cm");
        assert_eq!(
            (t.info.resource.as_str(), t.namespace.as_deref(), t.name.as_deref()),
            ("configmaps", Some("default"), Some("a"))
        );
        let t = Target::resolve(&reg, "", "v1", &["namespaces", "default", "status"]).expect("ns status");
        assert_eq!(
            (t.info.resource.as_str(), t.name.as_deref(), t.subresource.as_deref()),
            ("namespaces", Some("default"), Some("status"))
        );
        let t = Target::resolve(&reg, "", "v1", &["pods"]).expect("all pods");
        assert!(t.namespace.is_none() && t.name.is_none());
        assert!(Target::resolve(&reg, "", "v1", &["pods", "x"]).is_err());
        assert!(Target::resolve(&reg, "", "v1", &["namespaces", "d", "configmaps", "a", "scale"]).is_err());
        let t =
            Target::resolve(&reg, "apps", "v1", &["namespaces", "d", "deployments", "web", "scale"]).expect("scale");
        assert_eq!(t.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn negotiates_table_and_discovery() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"));
        assert_eq!(Output::negotiate(&h), Output::Table);
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf, */*"),
        );
        assert_eq!(Output::negotiate(&h), Output::Object);
        h.insert(ACCEPT, HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(wants_aggregated_discovery(&h));
        h.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_aggregated_discovery(&h));
    }

    #[test]
    fn parses_params() {
        let p = Params::parse(Some("limit=2&continue=abc&dryRun=All&labelSelector=app%3Dweb&watch=1")).expect("ok");
        assert_eq!(p.limit, Some(2));
        assert!(p.dry_run && p.watch);
        assert_eq!(p.label_selector.as_deref(), Some("app=web"));
        assert!(Params::parse(Some("dryRun=Some")).is_err());
    }
}
