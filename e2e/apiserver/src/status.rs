//! `metav1.Status` error bodies, shaped and worded as a real kube-apiserver returns them,
//! because clients branch on `code` and `reason` (kube-rs relists on 410 `Expired`,
//! kubectl prints `message`) and tests compare messages.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One entry of `details.causes` (a `field.Error` of the apiserver).
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    /// The message without the field prefix (`Required value`, `Invalid value: "x": ...`).
    pub message: String,
    /// Dotted field path (`spec.replicas`, `spec.items[2].name`).
    pub field: String,
}

impl Cause {
    /// A value that fails a rule: `field: Invalid value: VALUE: detail`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        Self {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {}", render_value(value), detail.as_ref()),
            field: field.into(),
        }
    }

    /// A required field is missing: `field: Required value`.
    pub fn required(field: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }

    /// A required field is missing, with a detail (`Required value: name or generateName is required`).
    pub fn required_detail(field: impl Into<String>, detail: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
            field: field.into(),
        }
    }

    /// A value outside an enumeration: `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[Value]) -> Self {
        let list: Vec<String> = supported.iter().map(render_value).collect();
        Self {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                list.join(", ")
            ),
            field: field.into(),
        }
    }

    /// A change to a field that may not change, or a rule that forbids a value.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {}", detail.into()),
            field: field.into(),
        }
    }

    /// A string or list over its maximum: `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max: u64) -> Self {
        Self {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
            field: field.into(),
        }
    }

    /// A list over its maximum item count.
    pub fn too_many(field: impl Into<String>, actual: usize, max: u64) -> Self {
        Self {
            reason: "FieldValueTooMany",
            message: format!("Too many: {actual}: must have at most {max} items"),
            field: field.into(),
        }
    }

    /// A duplicate entry in a set or map list.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", render_value(value)),
            field: field.into(),
        }
    }

    /// The `field: message` line used in the Status `message`.
    pub fn line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Renders a value the way Go's `%#v`-ish field errors do: strings quoted, scalars bare,
/// composites by type name.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// What a resource is called in messages: `pods`, `topics.eventcast.dev`.
pub fn qualified_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// An API error: rendered as a `Status` object with the HTTP status `code`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// `Retry-After` seconds, when the apiserver sends one.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 `pods "x" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", qualified_resource(group, resource)),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    /// 404 for a path that names no resource (`the server could not find the requested resource`).
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    /// 409 `AlreadyExists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified_resource(group, resource)),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    /// 409 `Conflict` on a stale `resourceVersion` (optimistic concurrency).
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict_msg(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 `Conflict` with a specific reason text.
    pub fn conflict_msg(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                qualified_resource(group, resource)
            ),
        )
        .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    /// 409 `Conflict` of a server-side apply: (manager as printed, field) per conflicting
    /// field, worded and grouped by manager as the apiserver's field manager does.
    pub fn apply_conflict(group: &str, kind: &str, name: &str, conflicts: &[(String, String)]) -> Self {
        let message = if let [(manager, field)] = conflicts {
            format!("Apply failed with 1 conflict: conflict with {manager}: {field}")
        } else {
            let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
            for (manager, field) in conflicts {
                match groups.iter_mut().find(|(m, _)| m == manager) {
                    Some((_, fields)) => fields.push(field),
                    None => groups.push((manager, vec![field])),
                }
            }
            let body: Vec<String> = groups
                .iter()
                .map(|(manager, fields)| {
                    let lines: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
                    format!("conflicts with {manager}:\n{}", lines.join("\n"))
                })
                .collect();
            format!("Apply failed with {} conflicts: {}", conflicts.len(), body.join("\n"))
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager}"), "field": field}))
            .collect();
        Self::new(409, "Conflict", message)
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// 422 `Invalid`: `Kind.group "name" is invalid: [causes]`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: &[Cause]) -> Self {
        let lines: Vec<String> = causes.iter().map(Cause::line).collect();
        let body = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let detail_causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        Self::new(422, "Invalid", format!("{qualified} {name:?} is invalid: {body}"))
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": detail_causes}))
    }

    /// 410 `Expired`: a watch or list from a resourceVersion older than the retained window.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 410 `Expired` for a `continue` token whose snapshot is gone.
    pub fn continue_expired() -> Self {
        Self::new(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        )
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 for a patch that cannot be applied to the object.
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 403 `Forbidden`.
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let what = qualified_resource(group, resource);
        Self::new(403, "Forbidden", format!("{what} {name:?} is forbidden: {why}"))
            .with_details(json!({"name": name, "group": group, "kind": resource}))
    }

    /// 405 `MethodNotAllowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415 `UnsupportedMediaType`.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
        .with_details(json!({"causes": [{"reason": "UnexpectedHeader", "message": format!("unsupported content type {content_type:?}")}]}))
    }

    /// 500 `InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".into(), details.clone());
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, self.to_status().to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A successful deletion without an object to return.
pub fn success_status(name: &str, group: &str, kind: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "group": group, "kind": kind});
    if let (Some(uid), Some(map)) = (uid, details.as_object_mut()) {
        map.insert("uid".into(), Value::String(uid.into()));
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_apiserver_wording() {
        let err = ApiError::not_found("eventcast.dev", "topics", "orders");
        let status = err.to_status();
        assert_eq!(status["message"], "topics.eventcast.dev \"orders\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["kind"], "topics");
        assert_eq!(ApiError::not_found("", "pods", "p").message, "pods \"p\" not found");
    }

    #[test]
    fn invalid_lists_causes() {
        let one = ApiError::invalid("eventcast.dev", "Topic", "t", &[Cause::required("spec.name")]);
        assert_eq!(
            one.message,
            "Topic.eventcast.dev \"t\" is invalid: spec.name: Required value"
        );
        let two = ApiError::invalid(
            "",
            "ConfigMap",
            "c",
            &[
                Cause::required("data"),
                Cause::invalid("metadata.name", &json!("A"), "bad"),
            ],
        );
        assert_eq!(
            two.message,
            "ConfigMap \"c\" is invalid: [data: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        assert_eq!(two.to_status()["details"]["causes"][1]["field"], "metadata.name");
    }

    #[test]
    fn conflict_and_expired() {
        let c = ApiError::conflict("apps", "deployments", "web");
        assert!(
            c.message
                .starts_with("Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified")
        );
        let e = ApiError::expired(3, 10);
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (410, "Expired", "too old resource version: 3 (10)")
        );
    }
}
