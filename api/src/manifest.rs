//! Parses Kubernetes manifests (multi-document YAML, as a user would `kubectl apply`)
//! into a [`CompileInput`]: Topics, Subscriptions, BroadcastPolicies and `v1` Secrets.
//! Fields the types do not know are errors, so a typo never passes silently.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::compiler::{CompileInput, Secrets};
use crate::crd::{API_VERSION, BroadcastPolicy, Subscription, Topic};

/// A document that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name} (document {document}): {message}")]
pub struct ManifestError {
    /// File (or other source) name.
    pub source_name: String,
    /// 1-based document index within the source.
    pub document: usize,
    pub message: String,
}

/// Parsed manifests plus notes about documents that were skipped on purpose.
#[derive(Debug, Clone, Default)]
pub struct ManifestSet {
    pub input: CompileInput,
    pub skipped: Vec<String>,
}

fn typed<T: DeserializeOwned>(value: serde_yaml::Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let parsed: T = serde_ignored::deserialize(value, |path| {
        let path = path.to_string();
        // The kube derive reads apiVersion/kind itself (already checked by the caller).
        if path != "apiVersion" && path != "kind" {
            unknown.push(path);
        }
    })
    .map_err(|e| e.to_string())?;
    if unknown.is_empty() {
        Ok(parsed)
    } else {
        Err(format!("unknown field(s): {}", unknown.join(", ")))
    }
}

/// Parses `sources` (name, YAML text) for `namespace`. Documents of other kinds and
/// resources of other namespaces are skipped with a note; anything malformed is an
/// error naming the source and document.
pub fn parse_manifests(namespace: &str, sources: &[(String, String)]) -> Result<ManifestSet, Vec<ManifestError>> {
    let mut set = ManifestSet::default();
    set.input.namespace = namespace.to_owned();
    let mut secrets = BTreeMap::new();
    let mut errors = Vec::new();
    // (apiVersion, kind, name) -> where it was first defined: a second definition would
    // make the result depend on file order, so it is an error.
    let mut defined: BTreeMap<(String, String, String), (String, usize)> = BTreeMap::new();
    for (source_name, text) in sources {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let document = i + 1;
            let err = |message: String| ManifestError {
                source_name: source_name.clone(),
                document,
                message,
            };
            let value = match serde_yaml::Value::deserialize(doc) {
                Ok(serde_yaml::Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    // The YAML stream is broken from here on; later documents can't be trusted.
                    errors.push(err(format!("invalid YAML: {e}")));
                    break;
                }
            };
            let api_version = value
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let kind = value
                .get("kind")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let name = value
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let ns = value
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            if kind.is_empty() || api_version.is_empty() {
                errors.push(err("missing apiVersion or kind".to_owned()));
                continue;
            }
            if name.is_empty() {
                errors.push(err(format!("{kind} has no metadata.name")));
                continue;
            }
            if let Some(ns) = &ns
                && ns != namespace
            {
                set.skipped.push(format!(
                    "{source_name}: {kind} {ns}/{name} is in another namespace than {namespace}"
                ));
                continue;
            }
            let what = format!("{kind} {name:?}");
            let mut value = value;
            // Every Topic field is optional, so `spec` may be left out entirely.
            if kind == "Topic"
                && let serde_yaml::Value::Mapping(m) = &mut value
            {
                m.entry("spec".into())
                    .or_insert_with(|| serde_yaml::Value::Mapping(serde_yaml::Mapping::new()));
            }
            if api_version == API_VERSION || (api_version == "v1" && kind == "Secret") {
                let key = (api_version.clone(), kind.clone(), name.clone());
                if let Some((first_source, first_document)) = defined.get(&key) {
                    errors.push(err(format!(
                        "{what} is already defined in {first_source} (document {first_document})"
                    )));
                    continue;
                }
                defined.insert(key, (source_name.clone(), document));
            }
            match (api_version.as_str(), kind.as_str()) {
                (API_VERSION, "Topic") => match typed::<Topic>(value) {
                    Ok(t) => set.input.topics.push(t),
                    Err(e) => errors.push(err(format!("{what}: {e}"))),
                },
                (API_VERSION, "Subscription") => match typed::<Subscription>(value) {
                    Ok(s) => set.input.subscriptions.push(s),
                    Err(e) => errors.push(err(format!("{what}: {e}"))),
                },
                (API_VERSION, "BroadcastPolicy") => match typed::<BroadcastPolicy>(value) {
                    Ok(p) => set.input.policies.push(p),
                    Err(e) => errors.push(err(format!("{what}: {e}"))),
                },
                (API_VERSION, other) => errors.push(err(format!("unknown kind {other:?} in {API_VERSION}"))),
                ("v1", "Secret") => match serde_yaml::from_value::<Secret>(value) {
                    Ok(s) => {
                        let mut data: BTreeMap<String, Vec<u8>> =
                            s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                        for (k, v) in s.string_data.unwrap_or_default() {
                            data.insert(k, v.into_bytes());
                        }
                        secrets.insert(name, data);
                    }
                    Err(e) => errors.push(err(format!("{what}: {e}"))),
                },
                _ => set.skipped.push(format!(
                    "{source_name}: {api_version} {kind} {name:?} is not used by Eventcast"
                )),
            }
        }
    }
    set.input.secrets = Secrets(secrets);
    if errors.is_empty() { Ok(set) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Vec<(String, String)> {
        vec![("test.yaml".to_owned(), text.to_owned())]
    }

    #[test]
    fn parses_all_kinds_and_secrets() {
        let yaml = r#"
apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: chat}
spec: {retention: {maxEvents: 10, maxAge: 1m}}
---
apiVersion: eventcast.dev/v1alpha1
kind: BroadcastPolicy
metadata: {name: p, namespace: demo}
spec: {topics: ["**"]}
---
apiVersion: v1
kind: Secret
metadata: {name: jwt}
data: {secret: c2VjcmV0}
stringData: {other: plain}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
"#;
        let set = parse_manifests("demo", &src(yaml)).expect("parses");
        assert_eq!(set.input.topics.len(), 1);
        assert_eq!(set.input.policies.len(), 1);
        assert_eq!(set.input.secrets.key("jwt", "secret").expect("key"), b"secret");
        assert_eq!(set.input.secrets.key("jwt", "other").expect("key"), b"plain");
        assert_eq!(set.skipped.len(), 1);
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_document() {
        let yaml = "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: a}\nspec: {retension: {maxEvents: 1}}\n---\napiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: b}\nspec: {retention: {maxAge: forever}}\n";
        let errs = parse_manifests("default", &src(yaml)).expect_err("rejects");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].document, 1);
        assert!(errs[0].message.contains("retension"), "{}", errs[0]);
        assert_eq!(errs[1].document, 2);
        assert!(errs[1].message.contains("forever"), "{}", errs[1]);
    }

    #[test]
    fn a_topic_needs_no_spec() {
        let set = parse_manifests(
            "default",
            &src("apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: bare}\n"),
        )
        .expect("parses");
        assert_eq!(set.input.topics.len(), 1);
        assert_eq!(set.input.topics[0].spec, crate::crd::TopicSpec::default());
    }

    #[test]
    fn other_namespaces_are_skipped_and_garbage_rejected() {
        let yaml = "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: a, namespace: other}\n";
        let set = parse_manifests("default", &src(yaml)).expect("parses");
        assert!(set.input.topics.is_empty());
        assert_eq!(set.skipped.len(), 1);
        assert!(parse_manifests("default", &src("kind: [unclosed")).is_err());
        assert!(
            parse_manifests(
                "default",
                &src("apiVersion: eventcast.dev/v1alpha1\nkind: Tpoic\nmetadata: {name: a}\n")
            )
            .is_err()
        );
        assert!(
            parse_manifests(
                "default",
                &src("apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {}\n")
            )
            .is_err()
        );
    }
}
