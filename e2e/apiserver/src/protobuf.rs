//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded to
//! the JSON the same object has. kubectl 1.32+ sends typed objects this way from its
//! generator commands (`kubectl create namespace|configmap|secret|deployment|service|...`,
//! `kubectl run`); responses are always JSON, which clients accept.
//!
//! The envelope is the magic `k8s\0` followed by a `runtime.Unknown` message (type meta,
//! raw object bytes). Objects are decoded with a table of the protobuf field numbers of
//! the kinds those commands create (from `k8s.io/api` `generated.proto`); a field the
//! table does not know is an error unless it holds a zero value (Go writes those for
//! non-pointer fields; its JSON encoding omits them, and so does this decoder).

use base64::Engine;
use serde_json::{Map, Value, json};

/// A protobuf body this server cannot decode.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf envelope (missing k8s\\0 magic)")]
    Magic,
    #[error("truncated or malformed protobuf")]
    Malformed,
    #[error("protobuf bodies of kind {0:?} are not supported by this test server; send JSON (kubectl apply/create -f)")]
    UnsupportedKind(String),
    #[error(
        "protobuf field {field} of {message} is not supported by this test server; send JSON (kubectl apply/create -f)"
    )]
    UnsupportedField { message: &'static str, field: u64 },
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    /// An integer of a non-pointer Go field (0 omitted).
    Int,
    /// An integer of a pointer Go field (0 kept).
    IntP,
    Bool,
    /// A bool of a pointer Go field (false kept).
    BoolP,
    Msg(&'static str),
    RepStr,
    RepMsg(&'static str),
    MapStr,
    MapBytes,
    MapQuantity,
    Time,
    IntOrString,
    /// Read-only parts (status) the server resets anyway.
    Skip,
}

use Kind::*;

type Fields = &'static [(u64, &'static str, Kind)];

const OBJECT_META: Fields = &[
    (1, "name", Str),
    (2, "generateName", Str),
    (3, "namespace", Str),
    (4, "selfLink", Str),
    (5, "uid", Str),
    (6, "resourceVersion", Str),
    (7, "generation", Int),
    (8, "creationTimestamp", Time),
    (9, "deletionTimestamp", Time),
    (10, "deletionGracePeriodSeconds", IntP),
    (11, "labels", MapStr),
    (12, "annotations", MapStr),
    (13, "ownerReferences", RepMsg("OwnerReference")),
    (14, "finalizers", RepStr),
    (17, "managedFields", Skip),
];

fn message(name: &str) -> Option<Fields> {
    Some(match name {
        "ObjectMeta" => OBJECT_META,
        "OwnerReference" => &[
            (1, "kind", Str),
            (3, "name", Str),
            (4, "uid", Str),
            (5, "apiVersion", Str),
            (6, "controller", BoolP),
            (7, "blockOwnerDeletion", BoolP),
        ],
        // client-go (Helm 4 among others) sends the options of a delete as protobuf too.
        "DeleteOptions" => &[
            (1, "gracePeriodSeconds", IntP),
            (2, "preconditions", Msg("Preconditions")),
            (3, "orphanDependents", BoolP),
            (4, "propagationPolicy", Str),
            (5, "dryRun", RepStr),
            (6, "ignoreStoreReadErrorWithClusterBreakingPotential", BoolP),
        ],
        "Preconditions" => &[(1, "uid", Str), (2, "resourceVersion", Str)],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "data", MapStr),
            (3, "binaryData", MapBytes),
            (4, "immutable", BoolP),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "data", MapBytes),
            (3, "type", Str),
            (4, "stringData", MapStr),
            (5, "immutable", BoolP),
        ],
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("NamespaceSpec")),
            (3, "status", Skip),
        ],
        "NamespaceSpec" => &[(1, "finalizers", RepStr)],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "secrets", RepMsg("ObjectReference")),
            (3, "imagePullSecrets", RepMsg("LocalObjectReference")),
            (4, "automountServiceAccountToken", BoolP),
        ],
        "ObjectReference" => &[
            (1, "kind", Str),
            (2, "namespace", Str),
            (3, "name", Str),
            (4, "uid", Str),
            (5, "apiVersion", Str),
            (6, "resourceVersion", Str),
            (7, "fieldPath", Str),
        ],
        "LocalObjectReference" => &[(1, "name", Str)],
        "Role" | "ClusterRole" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "rules", RepMsg("PolicyRule")),
            (3, "aggregationRule", Msg("AggregationRule")),
        ],
        "AggregationRule" => &[(1, "clusterRoleSelectors", RepMsg("LabelSelector"))],
        "PolicyRule" => &[
            (1, "verbs", RepStr),
            (2, "apiGroups", RepStr),
            (3, "resources", RepStr),
            (4, "resourceNames", RepStr),
            (5, "nonResourceURLs", RepStr),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "subjects", RepMsg("Subject")),
            (3, "roleRef", Msg("RoleRef")),
        ],
        "Subject" => &[
            (1, "kind", Str),
            (2, "apiGroup", Str),
            (3, "name", Str),
            (4, "namespace", Str),
        ],
        "RoleRef" => &[(1, "apiGroup", Str), (2, "kind", Str), (3, "name", Str)],
        "Deployment" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("DeploymentSpec")),
            (3, "status", Skip),
        ],
        "DeploymentSpec" => &[
            (1, "replicas", IntP),
            (2, "selector", Msg("LabelSelector")),
            (3, "template", Msg("PodTemplateSpec")),
            (4, "strategy", Msg("DeploymentStrategy")),
            (5, "minReadySeconds", Int),
            (6, "revisionHistoryLimit", IntP),
            (7, "paused", Bool),
            (9, "progressDeadlineSeconds", IntP),
        ],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr),
            (2, "matchExpressions", RepMsg("LabelSelectorRequirement")),
        ],
        "LabelSelectorRequirement" => &[(1, "key", Str), (2, "operator", Str), (3, "values", RepStr)],
        "DeploymentStrategy" => &[(1, "type", Str), (2, "rollingUpdate", Msg("RollingUpdateDeployment"))],
        "RollingUpdateDeployment" => &[(1, "maxUnavailable", IntOrString), (2, "maxSurge", IntOrString)],
        "PodTemplateSpec" => &[(1, "metadata", Msg("ObjectMeta")), (2, "spec", Msg("PodSpec"))],
        "Pod" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("PodSpec")),
            (3, "status", Skip),
        ],
        "PodSpec" => &[
            (2, "containers", RepMsg("Container")),
            (3, "restartPolicy", Str),
            (4, "terminationGracePeriodSeconds", IntP),
            (5, "activeDeadlineSeconds", IntP),
            (6, "dnsPolicy", Str),
            (7, "nodeSelector", MapStr),
            (8, "serviceAccountName", Str),
            (9, "serviceAccount", Str),
            (10, "nodeName", Str),
            (11, "hostNetwork", Bool),
            (15, "imagePullSecrets", RepMsg("LocalObjectReference")),
            (16, "hostname", Str),
            (17, "subdomain", Str),
            (19, "schedulerName", Str),
            (20, "initContainers", RepMsg("Container")),
        ],
        "Container" => &[
            (1, "name", Str),
            (2, "image", Str),
            (3, "command", RepStr),
            (4, "args", RepStr),
            (5, "workingDir", Str),
            (6, "ports", RepMsg("ContainerPort")),
            (7, "env", RepMsg("EnvVar")),
            (8, "resources", Msg("ResourceRequirements")),
            (13, "terminationMessagePath", Str),
            (14, "imagePullPolicy", Str),
            (16, "stdin", Bool),
            (17, "stdinOnce", Bool),
            (18, "tty", Bool),
            (20, "terminationMessagePolicy", Str),
        ],
        "ContainerPort" => &[
            (1, "name", Str),
            (2, "hostPort", Int),
            (3, "containerPort", Int),
            (4, "protocol", Str),
            (5, "hostIP", Str),
        ],
        "EnvVar" => &[(1, "name", Str), (2, "value", Str)],
        "ResourceRequirements" => &[(1, "limits", MapQuantity), (2, "requests", MapQuantity)],
        "Service" => &[
            (1, "metadata", Msg("ObjectMeta")),
            (2, "spec", Msg("ServiceSpec")),
            (3, "status", Skip),
        ],
        "ServiceSpec" => &[
            (1, "ports", RepMsg("ServicePort")),
            (2, "selector", MapStr),
            (3, "clusterIP", Str),
            (4, "type", Str),
            (5, "externalIPs", RepStr),
            (7, "sessionAffinity", Str),
            (8, "loadBalancerIP", Str),
            (10, "externalName", Str),
            (11, "externalTrafficPolicy", Str),
            (17, "ipFamilyPolicy", Str),
            (18, "clusterIPs", RepStr),
            (19, "ipFamilies", RepStr),
            (22, "internalTrafficPolicy", Str),
        ],
        "ServicePort" => &[
            (1, "name", Str),
            (2, "protocol", Str),
            (3, "port", Int),
            (4, "targetPort", IntOrString),
            (5, "nodePort", Int),
            (6, "appProtocol", Str),
        ],
        _ => return None,
    })
}

/// A protobuf wire-format reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(ProtobufError::Malformed)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ProtobufError::Malformed)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed)?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(ProtobufError::Malformed)?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Reads the next (field number, value) pair; values are varints or byte strings.
    fn field(&mut self) -> Result<(u64, Wire<'a>), ProtobufError> {
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => Wire::Bytes(self.bytes()?),
            1 => {
                self.pos += 8;
                Wire::Fixed
            }
            5 => {
                self.pos += 4;
                Wire::Fixed
            }
            _ => return Err(ProtobufError::Malformed),
        };
        if self.pos > self.buf.len() {
            return Err(ProtobufError::Malformed);
        }
        Ok((tag >> 3, value))
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn int(v: u64) -> i64 {
    v as i64
}

/// Decodes a two-field message (`map` entry, `IntOrString` parts) into its fields.
fn entry(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ProtobufError> {
    let mut r = Reader::new(bytes);
    let (mut key, mut value) = (Vec::new(), Vec::new());
    while !r.done() {
        match r.field()? {
            (1, Wire::Bytes(b)) => key = b.to_vec(),
            (2, Wire::Bytes(b)) => value = b.to_vec(),
            _ => return Err(ProtobufError::Malformed),
        }
    }
    Ok((key, value))
}

fn quantity(bytes: &[u8]) -> Result<String, ProtobufError> {
    let mut r = Reader::new(bytes);
    let mut out = String::new();
    while !r.done() {
        if let (1, Wire::Bytes(b)) = r.field()? {
            out = text(b);
        }
    }
    Ok(out)
}

fn time(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut r = Reader::new(bytes);
    let mut seconds = 0i64;
    while !r.done() {
        if let (1, Wire::Varint(v)) = r.field()? {
            seconds = int(v);
        }
    }
    if seconds == 0 {
        return Ok(Value::Null);
    }
    let t = time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| ProtobufError::Malformed)?;
    Ok(t.format(&time::format_description::well_known::Rfc3339)
        .map(Value::String)
        .unwrap_or(Value::Null))
}

fn int_or_string(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut r = Reader::new(bytes);
    let (mut is_string, mut n, mut s) = (false, 0i64, String::new());
    while !r.done() {
        match r.field()? {
            (1, Wire::Varint(v)) => is_string = v == 1,
            (2, Wire::Varint(v)) => n = int(v),
            (3, Wire::Bytes(b)) => s = text(b),
            _ => {}
        }
    }
    Ok(if is_string { json!(s) } else { json!(n) })
}

fn decode_message(name: &'static str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let fields = message(name).ok_or_else(|| ProtobufError::UnsupportedKind(name.into()))?;
    let mut out = Map::new();
    let mut r = Reader::new(bytes);
    while !r.done() {
        let (number, wire) = r.field()?;
        let Some((_, field, kind)) = fields.iter().find(|(n, _, _)| *n == number) else {
            // Go's protobuf encoding writes zero values of non-pointer fields; JSON omits them.
            match wire {
                Wire::Varint(0) => continue,
                Wire::Bytes([]) => continue,
                _ => {
                    return Err(ProtobufError::UnsupportedField {
                        message: name,
                        field: number,
                    });
                }
            }
        };
        let key = (*field).to_string();
        match (kind, wire) {
            (Str, Wire::Bytes(b)) if !b.is_empty() => {
                out.insert(key, Value::String(text(b)));
            }
            (Int, Wire::Varint(v)) if v != 0 => {
                out.insert(key, json!(int(v)));
            }
            (IntP, Wire::Varint(v)) => {
                out.insert(key, json!(int(v)));
            }
            (Bool, Wire::Varint(v)) if v != 0 => {
                out.insert(key, json!(true));
            }
            (BoolP, Wire::Varint(v)) => {
                out.insert(key, json!(v != 0));
            }
            (Msg(m), Wire::Bytes(b)) => {
                out.insert(key, decode_message(m, b)?);
            }
            (RepStr, Wire::Bytes(b)) => push(&mut out, key, Value::String(text(b))),
            (RepMsg(m), Wire::Bytes(b)) => push(&mut out, key, decode_message(m, b)?),
            (MapStr | MapBytes | MapQuantity, Wire::Bytes(b)) => {
                let (k, v) = entry(b)?;
                let value = match kind {
                    MapBytes => base64::engine::general_purpose::STANDARD.encode(v),
                    MapQuantity => quantity(&v)?,
                    _ => text(&v),
                };
                let map = out.entry(key).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(text(&k), Value::String(value));
                }
            }
            (Time, Wire::Bytes(b)) => {
                let t = time(b)?;
                if !t.is_null() {
                    out.insert(key, t);
                }
            }
            (IntOrString, Wire::Bytes(b)) => {
                out.insert(key, int_or_string(b)?);
            }
            (Skip, _) | (Str | Int | Bool, _) => {}
            _ => return Err(ProtobufError::Malformed),
        }
    }
    Ok(Value::Object(out))
}

fn push(out: &mut Map<String, Value>, key: String, value: Value) {
    let list = out.entry(key).or_insert_with(|| json!([]));
    if let Some(a) = list.as_array_mut() {
        a.push(value);
    }
}

/// Decodes a protobuf request body to the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let rest = body.strip_prefix(b"k8s\0").ok_or(ProtobufError::Magic)?;
    let mut r = Reader::new(rest);
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while !r.done() {
        match r.field()? {
            (1, Wire::Bytes(type_meta)) => {
                let (av, k) = entry(type_meta)?;
                api_version = text(&av);
                kind = text(&k);
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let name: &'static str = [
        "DeleteOptions",
        "ConfigMap",
        "Secret",
        "Namespace",
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "Pod",
        "Service",
    ]
    .into_iter()
    .find(|k| *k == kind)
    .ok_or_else(|| ProtobufError::UnsupportedKind(kind.clone()))?;
    let mut obj = decode_message(name, raw)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        out.push(((number << 3) | 2) as u8);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let mut meta = Vec::new();
        field(&mut meta, 1, b"settings");
        field(&mut meta, 8, &[]);
        let mut entry = Vec::new();
        field(&mut entry, 1, b"a");
        field(&mut entry, 2, b"1");
        let mut cm = Vec::new();
        field(&mut cm, 1, &meta);
        field(&mut cm, 2, &entry);
        let mut type_meta = Vec::new();
        field(&mut type_meta, 1, b"v1");
        field(&mut type_meta, 2, b"ConfigMap");
        let mut unknown = Vec::new();
        field(&mut unknown, 1, &type_meta);
        field(&mut unknown, 2, &cm);
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&unknown);
        let obj = decode(&body).expect("decodes");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}})
        );
        assert_eq!(decode(b"{}"), Err(ProtobufError::Magic));
    }

    #[test]
    fn decodes_delete_options_with_preconditions_and_dry_run() {
        let mut pre = Vec::new();
        field(&mut pre, 1, b"u-1");
        let mut opts = Vec::new();
        field(&mut opts, 2, &pre);
        field(&mut opts, 4, b"Background");
        field(&mut opts, 5, b"All");
        let mut type_meta = Vec::new();
        field(&mut type_meta, 1, b"v1");
        field(&mut type_meta, 2, b"DeleteOptions");
        let mut unknown = Vec::new();
        field(&mut unknown, 1, &type_meta);
        field(&mut unknown, 2, &opts);
        let mut body = b"k8s\0".to_vec();
        body.extend_from_slice(&unknown);
        assert_eq!(
            decode(&body).expect("decodes"),
            json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "u-1"},
                   "propagationPolicy": "Background", "dryRun": ["All"]})
        );
    }

    #[test]
    fn unknown_fields_are_errors_unless_zero() {
        let mut cm = Vec::new();
        field(&mut cm, 9, b"");
        assert_eq!(decode_message("ConfigMap", &cm), Ok(json!({})));
        field(&mut cm, 9, b"x");
        assert!(matches!(
            decode_message("ConfigMap", &cm),
            Err(ProtobufError::UnsupportedField { field: 9, .. })
        ));
    }
}
