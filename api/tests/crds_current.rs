//! The checked-in CRDs in `crds/` (and their copy in the Helm chart) must be exactly
//! what the Rust types generate.

use std::path::PathBuf;

#[test]
fn checked_in_crds_match_the_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crds", "charts/eventcast/crds"] {
        for (file, yaml) in eventcast_api::crd::generated_crds() {
            let on_disk = std::fs::read_to_string(root.join(dir).join(&file)).unwrap_or_default();
            assert!(
                on_disk == yaml,
                "{dir}/{file} is out of date: run `cargo run -p eventcast-api --bin crdgen` and commit the result"
            );
        }
    }
}

#[test]
fn crds_have_names_status_printer_columns_and_validation() {
    let crds = eventcast_api::crd::crds();
    let names: Vec<_> = crds.iter().map(|c| c.spec.names.kind.as_str()).collect();
    assert_eq!(names, ["Topic", "Subscription", "BroadcastPolicy"]);
    for crd in &crds {
        assert_eq!(crd.spec.group, "eventcast.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["eventcast".to_owned()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(),
            "{}",
            crd.spec.names.kind
        );
        let columns: Vec<_> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(columns.contains(&"Ready") && columns.contains(&"Age"), "{columns:?}");
    }
    let short: Vec<_> = crds
        .iter()
        .map(|c| c.spec.names.short_names.clone().unwrap_or_default())
        .collect();
    assert_eq!(short, [vec!["ect"], vec!["ecs"], vec!["ecp"]]);
    let topic = serde_json::to_value(&crds[0]).expect("serializes");
    let schema = &topic["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert!(
        schema["required"]
            .as_array()
            .is_none_or(|r| !r.contains(&serde_json::json!("spec")))
    );
    assert_eq!(schema["properties"]["spec"]["default"], serde_json::json!({}));
    let sub = serde_yaml::to_string(&crds[1]).expect("yaml");
    assert!(sub.contains("has(self.webhook) != has(self.topic)"));
    let policy = serde_yaml::to_string(&crds[2]).expect("yaml");
    assert!(policy.contains("self.minReplicas <= self.maxReplicas"));
    assert!(policy.contains("duration(self.heartbeatInterval) < duration(self.idleTimeout)"));
}
