//! What the server serves: one [`ResourceInfo`] per (group, version, resource), the
//! built-in kinds the operator and chart use plus those registered by
//! CustomResourceDefinitions. Built-ins are stored generically (no per-kind validation
//! beyond object metadata); their discovery entries match a v1.33 apiserver's.

use std::sync::Arc;

use serde_json::Value;

/// Verbs of an ordinary namespaced or cluster-scoped collection.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of the `status` and `scale` subresources.
pub const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// Where the replica count lives for the `scale` subresource.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleInfo {
    /// JSONPath of the desired replicas (`.spec.replicas`).
    pub spec_replicas_path: String,
    /// JSONPath of the observed replicas (`.status.replicas`).
    pub status_replicas_path: String,
    /// JSONPath of the label selector string, if any (`.status.selector`).
    pub label_selector_path: Option<String>,
}

/// How a printer column's cell is computed.
#[derive(Clone, Debug, PartialEq)]
pub enum CellSource {
    /// A simple JSONPath (`.spec.x`, `.status.conditions[?(@.type=="Ready")].status`).
    JsonPath(String),
    /// `ready/desired` of a Deployment.
    DeploymentReady,
    /// The number of keys of `.data` (plus `.binaryData`), as kubectl shows for ConfigMaps.
    DataCount,
    /// `metadata.name`, where a printer does not put it first.
    Name,
    /// `ready/total` containers of a Pod.
    PodReady,
    /// Sum of a Pod's container restarts.
    PodRestarts,
    /// Age of an Event's last occurrence (series, `lastTimestamp`, `eventTime`).
    EventLastSeen,
    /// `kind/name` of an Event's object, kind lowercased.
    EventObject,
}

/// A Table column (`additionalPrinterColumns` for CRDs, fixed printers for built-ins).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean`, `date` (shown as an age), `timestamp` (shown raw).
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub source: CellSource,
}

impl Column {
    fn path(name: &str, kind: &str, path: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            format: String::new(),
            description: description.into(),
            priority: 0,
            source: CellSource::JsonPath(path.into()),
        }
    }

    /// The `Age` column every default printer ends with.
    pub fn age() -> Self {
        Self::path(
            "Age",
            "date",
            ".metadata.creationTimestamp",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        )
    }
}

/// Facts about a served custom resource version that the CRD declared.
#[derive(Clone, Debug)]
pub struct CrdVersion {
    /// `metadata.name` of the CRD (`topics.eventcast.dev`).
    pub crd_name: String,
    /// The version's `schema.openAPIV3Schema`, if any.
    pub schema: Option<Arc<Value>>,
    /// Whether this is the storage version.
    pub storage: bool,
}

/// One served resource of one group version.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    /// Plural resource name (`topics`).
    pub resource: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub status: bool,
    pub scale: Option<ScaleInfo>,
    /// `metadata.generation` is maintained (bumped on spec changes).
    pub generation: bool,
    pub columns: Vec<Column>,
    /// Field selector labels beyond `metadata.name` / `metadata.namespace`.
    pub selectable_fields: Vec<String>,
    /// Group and resource the objects are stored under (the same for all versions).
    pub storage_group: String,
    pub storage_resource: String,
    /// Set for resources served by a CustomResourceDefinition.
    pub crd: Option<CrdVersion>,
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Subresources served for this resource.
    pub fn subresources(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.status {
            out.push("status");
        }
        if self.scale.is_some() {
            out.push("scale");
        }
        if self.group.is_empty() && self.resource == "namespaces" {
            out.push("finalize");
        }
        out
    }

    /// Whether this resource is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    fields: &'static [&'static str],
    storage: Option<(&'static str, &'static str)>,
}

const fn builtin(group: &'static str, version: &'static str, resource: &'static str, kind: &'static str) -> Builtin {
    Builtin {
        group,
        version,
        resource,
        kind,
        namespaced: true,
        short_names: &[],
        categories: &[],
        status: false,
        scale: false,
        generation: false,
        fields: &[],
        storage: None,
    }
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const BUILTINS: &[Builtin] = &[
    Builtin {
        namespaced: false,
        short_names: &["ns"],
        status: true,
        fields: &["status.phase"],
        ..builtin("", "v1", "namespaces", "Namespace")
    },
    Builtin {
        short_names: &["po"],
        categories: &["all"],
        status: true,
        fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ..builtin("", "v1", "pods", "Pod")
    },
    Builtin {
        short_names: &["svc"],
        categories: &["all"],
        status: true,
        ..builtin("", "v1", "services", "Service")
    },
    Builtin {
        short_names: &["cm"],
        ..builtin("", "v1", "configmaps", "ConfigMap")
    },
    Builtin {
        fields: &["type"],
        ..builtin("", "v1", "secrets", "Secret")
    },
    Builtin {
        short_names: &["ev"],
        fields: EVENT_FIELDS,
        ..builtin("", "v1", "events", "Event")
    },
    Builtin {
        short_names: &["sa"],
        ..builtin("", "v1", "serviceaccounts", "ServiceAccount")
    },
    Builtin {
        short_names: &["deploy"],
        categories: &["all"],
        status: true,
        scale: true,
        generation: true,
        ..builtin("apps", "v1", "deployments", "Deployment")
    },
    Builtin {
        short_names: &["hpa"],
        categories: &["all"],
        status: true,
        generation: true,
        ..builtin(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
        )
    },
    builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    Builtin {
        short_names: &["ev"],
        fields: &[
            "reason",
            "type",
            "reportingController",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
        ],
        storage: Some(("", "events")),
        ..builtin("events.k8s.io", "v1", "events", "Event")
    },
    builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Builtin {
        namespaced: false,
        ..builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole")
    },
    builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Builtin {
        namespaced: false,
        ..builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
        )
    },
    Builtin {
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status: true,
        generation: true,
        ..builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
        )
    },
];

/// Printer columns of a built-in, after `Name`.
fn builtin_columns(group: &str, resource: &str) -> Vec<Column> {
    let mut cols = match (group, resource) {
        ("", "namespaces") => vec![Column::path(
            "Status",
            "string",
            ".status.phase",
            "The phase of the namespace.",
        )],
        ("", "pods") => vec![
            Column {
                source: CellSource::PodReady,
                ..Column::path(
                    "Ready",
                    "string",
                    "",
                    "The aggregate readiness state of this pod for accepting traffic.",
                )
            },
            Column::path(
                "Status",
                "string",
                ".status.phase",
                "The aggregate status of the containers in this pod.",
            ),
            Column {
                source: CellSource::PodRestarts,
                ..Column::path(
                    "Restarts",
                    "string",
                    "",
                    "The number of times the containers in this pod have been restarted.",
                )
            },
        ],
        ("", "services") => vec![
            Column::path("Type", "string", ".spec.type", "The type of the service."),
            Column::path(
                "Cluster-IP",
                "string",
                ".spec.clusterIP",
                "The cluster IP of the service.",
            ),
        ],
        ("", "configmaps") => vec![Column {
            source: CellSource::DataCount,
            ..Column::path("Data", "integer", "", "The number of keys in data.")
        }],
        ("", "secrets") => vec![
            Column::path("Type", "string", ".type", "The type of the secret."),
            Column {
                source: CellSource::DataCount,
                ..Column::path("Data", "integer", "", "The number of keys in data.")
            },
        ],
        ("apps", "deployments") => vec![
            Column {
                source: CellSource::DeploymentReady,
                ..Column::path("Ready", "string", "", "Number of the pod with ready state.")
            },
            Column::path(
                "Up-to-date",
                "integer",
                ".status.updatedReplicas",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            Column::path(
                "Available",
                "integer",
                ".status.availableReplicas",
                "Total number of available pods targeted by this deployment.",
            ),
        ],
        ("autoscaling", "horizontalpodautoscalers") => vec![
            Column::path(
                "Minpods",
                "integer",
                ".spec.minReplicas",
                "Lower limit for the number of pods.",
            ),
            Column::path(
                "Maxpods",
                "integer",
                ".spec.maxReplicas",
                "Upper limit for the number of pods.",
            ),
            Column::path(
                "Replicas",
                "integer",
                ".status.currentReplicas",
                "Current number of replicas.",
            ),
        ],
        ("coordination.k8s.io", "leases") => {
            vec![Column::path(
                "Holder",
                "string",
                ".spec.holderIdentity",
                "The holder of the lease.",
            )]
        }
        ("", "events") => {
            return vec![
                Column {
                    source: CellSource::EventLastSeen,
                    ..Column::path("Last Seen", "string", "", "Time when this Event was last seen")
                },
                Column::path(
                    "Type",
                    "string",
                    ".type",
                    "Type of this event (Normal, Warning), new types could be added in the future.",
                ),
                Column::path("Reason", "string", ".reason", "Why the action was taken."),
                Column {
                    source: CellSource::EventObject,
                    ..Column::path("Object", "string", "", "The object that this event is about.")
                },
                Column::path(
                    "Message",
                    "string",
                    ".message",
                    "A human-readable description of the status of this operation.",
                ),
                Column {
                    source: CellSource::Name,
                    priority: 1,
                    ..Column::path("Name", "string", "", "Name of the event.")
                },
            ];
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            return vec![Column::path(
                "Created At",
                "timestamp",
                ".metadata.creationTimestamp",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            )];
        }
        _ => Vec::new(),
    };
    cols.push(Column::age());
    cols
}

/// The built-in resources, in discovery order.
pub fn builtins() -> Vec<Arc<ResourceInfo>> {
    BUILTINS
        .iter()
        .map(|b| {
            let (storage_group, storage_resource) = b.storage.unwrap_or((b.group, b.resource));
            Arc::new(ResourceInfo {
                group: b.group.into(),
                version: b.version.into(),
                resource: b.resource.into(),
                singular: b.kind.to_ascii_lowercase(),
                kind: b.kind.into(),
                list_kind: format!("{}List", b.kind),
                namespaced: b.namespaced,
                short_names: b.short_names.iter().map(|s| (*s).to_string()).collect(),
                categories: b.categories.iter().map(|s| (*s).to_string()).collect(),
                verbs: STANDARD_VERBS
                    .iter()
                    .filter(|v| !(b.resource == "namespaces" && **v == "deletecollection"))
                    .map(|s| (*s).to_string())
                    .collect(),
                status: b.status,
                scale: b.scale.then(|| ScaleInfo {
                    spec_replicas_path: ".spec.replicas".into(),
                    status_replicas_path: ".status.replicas".into(),
                    label_selector_path: Some(".status.selector".into()),
                }),
                generation: b.generation,
                columns: builtin_columns(b.group, b.resource),
                selectable_fields: b.fields.iter().map(|s| (*s).to_string()).collect(),
                storage_group: storage_group.into(),
                storage_resource: storage_resource.into(),
                crd: None,
            })
        })
        .collect()
}

/// The set of served resources: built-ins plus those of established CRDs.
#[derive(Clone, Debug)]
pub struct Registry {
    builtins: Vec<Arc<ResourceInfo>>,
    custom: Vec<Arc<ResourceInfo>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            builtins: builtins(),
            custom: Vec::new(),
        }
    }
}

impl Registry {
    /// Replaces the custom resources (recomputed from the stored CRDs after each CRD write).
    pub fn set_custom(&mut self, custom: Vec<Arc<ResourceInfo>>) {
        self.custom = custom;
    }

    /// Every served resource, built-ins first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.builtins.iter().chain(self.custom.iter())
    }

    /// The resource `resource` of `group/version`.
    pub fn find(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        self.all()
            .find(|r| r.group == group && r.version == version && r.resource == resource)
            .cloned()
    }

    /// Whether `group/version` is served at all.
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.all().any(|r| r.group == group && r.version == version)
    }

    /// Served groups in discovery order, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.all() {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// Resources of one group version.
    pub fn resources_of(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.all()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    /// All versions served for a stored group/resource.
    pub fn versions_of(&self, storage_group: &str, storage_resource: &str) -> Vec<Arc<ResourceInfo>> {
        self.all()
            .filter(|r| r.storage_group == storage_group && r.storage_resource == storage_resource)
            .cloned()
            .collect()
    }
}

/// Kubernetes version ordering: GA > beta > alpha, then by number (`v2` > `v1` > `v1beta2`).
pub fn version_priority(version: &str) -> (u8, u64, u64) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    let (stage, minor_text) = if tail.is_empty() {
        (3, "")
    } else if let Some(m) = tail.strip_prefix("beta") {
        (2, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (1, m)
    } else {
        return (0, 0, 0);
    };
    let minor = if minor_text.is_empty() {
        0
    } else {
        minor_text.parse().unwrap_or(0)
    };
    (stage, major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_have_discovery_facts() {
        let reg = Registry::default();
        let deploy = reg.find("apps", "v1", "deployments").expect("deployments");
        assert_eq!(deploy.short_names, vec!["deploy"]);
        assert_eq!(deploy.subresources(), vec!["status", "scale"]);
        let ns = reg.find("", "v1", "namespaces").expect("namespaces");
        assert!(!ns.namespaced);
        assert!(!ns.verbs.iter().any(|v| v == "deletecollection"));
        assert!(reg.has_group_version("apiextensions.k8s.io", "v1"));
    }

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "v2", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, vec!["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]);
    }
}
