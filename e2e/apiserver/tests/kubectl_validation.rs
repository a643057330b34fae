//! Schema validation, defaulting, pruning and CEL rules of custom resources, and the
//! rejection of non-structural CRDs, seen through the real kubectl.

mod common;

use common::TestServer;

const BAD_TOPIC: &str = "apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata: {name: bad}
spec:
  name: has space
  defaultPriority: urgent
  maxEventBytes: 10
  delivery: {maxRetries: 200}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_rejected_with_every_cause() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let path = t.file("bad.yaml", BAD_TOPIC);
    let run = t.kubectl(&["apply", "-f", &path]).await.failed();
    let err = run.stderr;
    assert!(err.contains("The Topic \"bad\" is invalid:"), "{err}");
    assert!(err.contains("* spec.defaultPriority: Unsupported value: \"urgent\": supported values: \"low\", \"normal\", \"high\", \"background\", \"critical\""), "{err}");
    assert!(err.contains("* spec.delivery.maxRetries: Invalid value: 200: spec.delivery.maxRetries in body should be less than or equal to 100"), "{err}");
    assert!(
        err.contains(
            "* spec.maxEventBytes: Invalid value: 10: spec.maxEventBytes in body should be greater than or equal to 64"
        ),
        "{err}"
    );
    assert!(
        err.contains("* spec.name: Invalid value: \"has space\": spec.name in body should match"),
        "{err}"
    );
    t.kubectl(&["get", "topic", "bad"]).await.failed();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_rejected_strictly_or_pruned_with_a_warning() {
    let t = TestServer::start().await;
    t.install_topic_crd().await;
    let path = t.file(
        "unk.yaml",
        "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {name: unk}\nspec: {name: ok, colour: red}\n",
    );
    let strict = t.kubectl(&["apply", "-f", &path]).await.failed();
    assert!(
        strict.stderr.contains("Topic in version \"v1alpha1\" cannot be handled as a Topic: strict decoding error: unknown field \"spec.colour\""),
        "{}",
        strict.stderr
    );
    let warned = t.kubectl(&["apply", "--validate=warn", "-f", &path]).await.ok();
    assert!(
        warned.stderr.contains("Warning: unknown field \"spec.colour\""),
        "{}",
        warned.stderr
    );
    let spec = t.kubectl(&["get", "topic", "unk", "-o", "jsonpath={.spec}"]).await.ok();
    assert_eq!(spec.stdout, r#"{"name":"ok"}"#);
    t.stop().await;
}

const SCALER_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: scalers.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: scalers, singular: scaler, kind: Scaler, shortNames: [sc]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Mode, type: string, jsonPath: .spec.mode}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: self.replicas <= self.max
              message: replicas must not exceed max
            - rule: self.mode == oldSelf.mode
              message: mode is immutable
            - rule: size(self.tags) <= 3
              messageExpression: \"'at most 3 tags, got ' + string(size(self.tags))\"
            properties:
              replicas: {type: integer, default: 1, minimum: 0}
              max: {type: integer, default: 10}
              mode: {type: string, default: fast, enum: [fast, safe]}
              tags: {type: array, default: [], items: {type: string}, x-kubernetes-list-type: set}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              replicas: {type: integer}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_preserved_fields_cel_rules_and_scale() {
    let t = TestServer::start().await;
    let crd = t.file("crd.yaml", SCALER_CRD);
    t.kubectl(&["apply", "-f", &crd]).await.ok();
    let obj = t.file(
        "s.yaml",
        "apiVersion: example.com/v1\nkind: Scaler\nmetadata: {name: s}\nspec:\n  extra: {anything: [1, 2]}\n",
    );
    t.kubectl(&["apply", "-f", &obj]).await.ok();
    let spec = t.kubectl(&["get", "sc", "s", "-o", "jsonpath={.spec}"]).await.ok();
    let spec: serde_json::Value = serde_json::from_str(&spec.stdout).expect("json");
    assert_eq!(
        spec,
        serde_json::json!({"replicas": 1, "max": 10, "mode": "fast", "tags": [], "extra": {"anything": [1, 2]}})
    );

    let too_many = t
        .kubectl(&["patch", "sc", "s", "--type=merge", "-p", r#"{"spec":{"replicas":11}}"#])
        .await
        .failed();
    assert!(
        too_many
            .stderr
            .contains("spec: Invalid value: \"object\": replicas must not exceed max"),
        "{}",
        too_many.stderr
    );
    let immutable = t
        .kubectl(&["patch", "sc", "s", "--type=merge", "-p", r#"{"spec":{"mode":"safe"}}"#])
        .await
        .failed();
    assert!(immutable.stderr.contains("mode is immutable"), "{}", immutable.stderr);
    let tags = t
        .kubectl(&[
            "patch",
            "sc",
            "s",
            "--type=merge",
            "-p",
            r#"{"spec":{"tags":["a","b","c","d"]}}"#,
        ])
        .await
        .failed();
    assert!(tags.stderr.contains("at most 3 tags, got 4"), "{}", tags.stderr);

    t.kubectl(&["scale", "scaler/s", "--replicas=4"]).await.ok();
    let table = t.kubectl(&["get", "scalers"]).await.ok();
    let row: Vec<&str> = table.stdout.lines().nth(1).expect("row").split_whitespace().collect();
    assert_eq!(&row[..3], ["s", "4", "fast"]);
    let over = t.kubectl(&["scale", "scaler/s", "--replicas=40"]).await.failed();
    assert!(over.stderr.contains("replicas must not exceed max"), "{}", over.stderr);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_structural_and_invalid_crds_are_rejected() {
    let t = TestServer::start().await;
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            properties:
              size: {type: integer}
              rule:
                type: string
                x-kubernetes-validations: [{rule: 'self ==', message: broken}]
";
    let path = t.file("w.yaml", crd);
    let run = t.kubectl(&["apply", "-f", &path]).await.failed();
    assert!(
        run.stderr
            .contains("The CustomResourceDefinition \"widgets.example.com\" is invalid"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("x-kubernetes-validations[0].rule: Invalid value: \"self ==\": compilation failed"),
        "{}",
        run.stderr
    );
    let names = t
        .kubectl(&["api-resources", "--api-group=example.com", "-o", "name"])
        .await
        .ok();
    assert_eq!(names.stdout.trim(), "", "a rejected CRD serves nothing");
    t.stop().await;
}
