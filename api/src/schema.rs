//! Schema fragments the derive cannot express: free-form JSON that Kubernetes must keep
//! as written (`x-kubernetes-preserve-unknown-fields`) while the schema stays structural.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Any JSON value (string, number, object, ...), kept verbatim by the apiserver.
pub fn any_json(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A free-form JSON object (e.g. a JSON Schema document), kept verbatim.
pub fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
