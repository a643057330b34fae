//! Structural OpenAPI v3 schemas of CustomResourceDefinitions, as the apiextensions
//! apiserver applies them:
//!
//! - the structural check of a CRD's schema (non-empty types, no types inside
//!   `allOf`/`anyOf`/`oneOf`/`not`, `properties` xor `additionalProperties`, metadata
//!   restricted to name/generateName, list-map keys, no `uniqueItems`), with the same
//!   field paths and wording;
//! - for custom objects, in the apiserver's order: pruning of unknown fields (kept under
//!   `x-kubernetes-preserve-unknown-fields`, reported as warnings or, with
//!   `fieldValidation=Strict`, rejected) and of nulls in non-nullable fields, defaulting,
//!   then validation (types, `x-kubernetes-int-or-string`, enums, formats,
//!   minimum/maximum, lengths, patterns, required, item and property counts,
//!   `x-kubernetes-list-type` set/map uniqueness, and `x-kubernetes-validations` CEL rules
//!   through [`crate::cel`]). Updates ratchet: an error on a value that did not change
//!   since the stored object is not reported.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use base64::Engine;
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::cel;
use crate::object::Part;
use crate::registry::ResourceInfo;
use crate::status::{ApiError, Cause};

fn str_field<'a>(schema: &'a Value, key: &str) -> Option<&'a str> {
    schema.get(key).and_then(Value::as_str)
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

// ---------------------------------------------------------------- structural check

const JUNCTORS: &[&str] = &["allOf", "anyOf", "oneOf"];

/// Why a schema is not structural (or has invalid CEL rules); `path` is the field path of
/// the schema in the CRD (`spec.versions[0].schema.openAPIV3Schema`).
pub fn structural_causes(schema: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    match str_field(schema, "type") {
        None | Some("") => causes.push(Cause::required_detail(
            format!("{path}.type"),
            "must not be empty at the root",
        )),
        Some("object") => {}
        Some(other) => causes.push(Cause::invalid(
            format!("{path}.type"),
            &json!(other),
            "must be object at the root",
        )),
    }
    if let Some(meta) = schema.pointer("/properties/metadata") {
        let extra_keys = meta
            .as_object()
            .is_some_and(|m| m.keys().any(|k| k != "type" && k != "properties"));
        let extra_props = meta
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.keys().any(|k| k != "name" && k != "generateName"));
        if extra_keys || extra_props {
            causes.push(Cause::forbidden(
                format!("{path}.properties[metadata]"),
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    check_node(schema, path, Context::Root, &mut causes);
    causes
}

#[derive(Clone, Copy, PartialEq)]
enum Context {
    Root,
    Property,
    Items,
    AdditionalProperties,
    Junctor,
}

fn check_node(schema: &Value, path: &str, ctx: Context, causes: &mut Vec<Cause>) {
    let Some(map) = schema.as_object() else {
        causes.push(Cause::invalid(path, schema, "must be a schema object"));
        return;
    };
    let typ = str_field(schema, "type").unwrap_or("");
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    if ctx == Context::Junctor {
        for key in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-int-or-string",
        ] {
            if map.contains_key(key) {
                causes.push(Cause::forbidden(
                    format!("{path}.{key}"),
                    "must be empty to be structural",
                ));
            }
        }
    } else if typ.is_empty() && !int_or_string && !preserve && ctx != Context::Root {
        let detail = match ctx {
            Context::Items => "must not be empty for specified array items",
            _ => "must not be empty for specified object fields",
        };
        causes.push(Cause::required_detail(format!("{path}.type"), detail));
    }
    if let Some(t) = map.get("type").and_then(Value::as_str)
        && !["object", "array", "string", "integer", "number", "boolean"].contains(&t)
    {
        causes.push(Cause::not_supported(
            format!("{path}.type"),
            &json!(t),
            &[
                json!("array"),
                json!("boolean"),
                json!("integer"),
                json!("number"),
                json!("object"),
                json!("string"),
            ],
        ));
    }
    if map.contains_key("properties") && map.get("additionalProperties").is_some_and(|a| a != &json!(false)) {
        causes.push(Cause::forbidden(
            format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if flag(schema, "uniqueItems") {
        causes.push(Cause::forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if let Some(pattern) = str_field(schema, "pattern")
        && Regex::new(pattern).is_err()
    {
        causes.push(Cause::invalid(
            format!("{path}.pattern"),
            &json!(pattern),
            "must be a valid regular expression",
        ));
    }
    if str_field(schema, "x-kubernetes-list-type") == Some("map") {
        let keys = schema.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
        if keys.is_none_or(Vec::is_empty) {
            causes.push(Cause::required_detail(
                format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
    }
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, rule) in rules.iter().enumerate() {
            let text = str_field(rule, "rule").unwrap_or("");
            if text.is_empty() {
                causes.push(Cause::required(format!("{path}.x-kubernetes-validations[{i}].rule")));
            } else if let Err(e) = cel::compile(text) {
                causes.push(Cause::invalid(
                    format!("{path}.x-kubernetes-validations[{i}].rule"),
                    &json!(text),
                    format!("compilation failed: {e}"),
                ));
            }
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            check_node(sub, &format!("{path}.properties[{name}]"), Context::Property, causes);
        }
    }
    match map.get("items") {
        Some(items @ Value::Object(_)) => check_node(items, &format!("{path}.items"), Context::Items, causes),
        Some(Value::Array(_)) => causes.push(Cause::forbidden(
            format!("{path}.items"),
            "items must be a schema object and not an array",
        )),
        _ => {}
    }
    if let Some(ap @ Value::Object(_)) = map.get("additionalProperties") {
        check_node(
            ap,
            &format!("{path}.additionalProperties"),
            Context::AdditionalProperties,
            causes,
        );
    }
    for junctor in JUNCTORS {
        if let Some(list) = map.get(*junctor).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                if !(int_or_string && is_int_or_string_branch(sub)) {
                    check_node(sub, &format!("{path}.{junctor}[{i}]"), Context::Junctor, causes);
                }
            }
        }
    }
    if let Some(not) = map.get("not") {
        check_node(not, &format!("{path}.not"), Context::Junctor, causes);
    }
}

/// `{type: integer}` / `{type: string}` branches are allowed under int-or-string.
fn is_int_or_string_branch(schema: &Value) -> bool {
    schema
        .as_object()
        .is_some_and(|m| m.len() == 1 && matches!(str_field(schema, "type"), Some("integer" | "string")))
}

// ---------------------------------------------------------------- pruning and defaulting

/// Drops fields the schema does not declare (recording their paths) and nulls of
/// non-nullable fields.
fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded = flag(schema, "x-kubernetes-embedded-resource");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let system = (root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                let child_schema = props.and_then(|p| p.get(&key)).or(additional);
                match child_schema {
                    Some(s) => {
                        let nullable = flag(s, "nullable");
                        if map.get(&key).is_some_and(Value::is_null) && !nullable {
                            map.remove(&key);
                            continue;
                        }
                        if let Some(child) = map.get_mut(&key) {
                            prune(s, child, &child_path, false, unknown);
                        }
                    }
                    None if system => {}
                    None if preserve => {}
                    None => {
                        map.remove(&key);
                        unknown.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item_schema, item, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of missing (or pruned-null) fields, depth first.
fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if !map.contains_key(name)
                        && let Some(default) = sub.get("default")
                    {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(sub, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- validation

/// A validation error with the JSON pointer of the value it is about (for ratcheting).
struct Finding {
    cause: Cause,
    pointer: String,
}

struct Validator<'a> {
    findings: Vec<Finding>,
    old_root: Option<&'a Value>,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

static REGEX_CACHE: LazyLock<Mutex<HashMap<String, Option<Regex>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn pattern_matches(pattern: &str, text: &str) -> bool {
    let mut cache = REGEX_CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    re.as_ref().is_none_or(|r| r.is_match(text))
}

static DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$").expect("static regex")
});
static DATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("static regex"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
        .expect("static regex")
});
static HOSTNAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,62})?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,62})?)*$").expect("static regex")
});
static EMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[^@\s]+@[^@\s]+$").expect("static regex"));
static GO_DURATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-+]?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$").expect("static regex"));

/// Whether `text` satisfies a known string `format` (unknown formats always pass).
fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => DATE_TIME.is_match(text),
        "date" => DATE.is_match(text),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => UUID.is_match(text),
        "byte" => base64::engine::general_purpose::STANDARD.decode(text).is_ok(),
        "ipv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => text
            .split_once('/')
            .is_some_and(|(ip, bits)| ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()),
        "hostname" => text.len() <= 253 && HOSTNAME.is_match(text),
        "email" => EMAIL.is_match(text),
        "duration" => GO_DURATION.is_match(text),
        "uri" => text.contains(':'),
        _ => true,
    }
}

fn pointer_child(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

impl Validator<'_> {
    fn push(&mut self, cause: Cause, pointer: &str) {
        self.findings.push(Finding {
            cause,
            pointer: pointer.to_string(),
        });
    }

    fn validate(&mut self, schema: &Value, value: &Value, path: &str, pointer: &str) {
        let nullable = flag(schema, "nullable");
        if value.is_null() && nullable {
            return;
        }
        let int_or_string = flag(schema, "x-kubernetes-int-or-string");
        let detail_path = if path.is_empty() {
            "body".to_string()
        } else {
            path.to_string()
        };
        if int_or_string {
            if !(value.is_string() || type_matches("integer", value)) {
                self.push(
                    Cause::invalid(
                        path,
                        &json!(type_name(value)),
                        format!(
                            "{detail_path} in body must be of type int-or-string: {:?}",
                            type_name(value)
                        ),
                    ),
                    pointer,
                );
                return;
            }
        } else if let Some(expected) = str_field(schema, "type").filter(|t| !t.is_empty())
            && !type_matches(expected, value)
        {
            self.push(
                Cause::invalid(
                    path,
                    &json!(type_name(value)),
                    format!(
                        "{detail_path} in body must be of type {expected}: {:?}",
                        type_name(value)
                    ),
                ),
                pointer,
            );
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| a == value)
        {
            let shown: Vec<Value> = allowed.iter().filter(|a| !a.is_null()).cloned().collect();
            self.push(Cause::not_supported(path, value, &shown), pointer);
        }
        match value {
            Value::Number(n) => {
                let number = n.as_f64().unwrap_or(0.0);
                self.validate_number(schema, value, number, path, &detail_path, pointer);
            }
            Value::String(s) => self.validate_string(schema, value, s, path, &detail_path, pointer),
            Value::Array(items) => self.validate_array(schema, value, items, path, &detail_path, pointer),
            Value::Object(map) => self.validate_object(schema, value, map, path, &detail_path, pointer),
            _ => {}
        }
        for junctor in JUNCTORS {
            if let Some(list) = schema.get(*junctor).and_then(Value::as_array) {
                let passing = list.iter().filter(|sub| self.passes(sub, value, path, pointer)).count();
                let ok = match *junctor {
                    "allOf" => passing == list.len(),
                    "anyOf" => passing > 0 || int_or_string,
                    _ => passing == 1,
                };
                if !ok {
                    let rule = if *junctor == "oneOf" {
                        "must validate one and only one schema (oneOf)"
                    } else if *junctor == "anyOf" {
                        "must validate at least one schema (anyOf)"
                    } else {
                        "must validate all the schemas (allOf)"
                    };
                    self.push(
                        Cause::invalid(path, &json!(type_name(value)), format!("{detail_path} in body {rule}")),
                        pointer,
                    );
                }
            }
        }
        if let Some(not) = schema.get("not")
            && self.passes(not, value, path, pointer)
        {
            self.push(
                Cause::invalid(
                    path,
                    &json!(type_name(value)),
                    format!("{detail_path} in body must not validate the schema (not)"),
                ),
                pointer,
            );
        }
        self.validate_rules(schema, value, path, pointer);
    }

    /// Whether `value` satisfies `schema` (for junctors; findings are discarded).
    fn passes(&self, schema: &Value, value: &Value, path: &str, pointer: &str) -> bool {
        let mut probe = Validator {
            findings: Vec::new(),
            old_root: None,
        };
        probe.validate(schema, value, path, pointer);
        probe.findings.is_empty()
    }

    fn validate_number(&mut self, schema: &Value, value: &Value, n: f64, path: &str, detail_path: &str, pointer: &str) {
        let exclusive_max = flag(schema, "exclusiveMaximum");
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && (n > max || (exclusive_max && n >= max))
        {
            let rel = if exclusive_max {
                "less than"
            } else {
                "less than or equal to"
            };
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body should be {rel} {}", trim_float(max)),
                ),
                pointer,
            );
        }
        let exclusive_min = flag(schema, "exclusiveMinimum");
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && (n < min || (exclusive_min && n <= min))
        {
            let rel = if exclusive_min {
                "greater than"
            } else {
                "greater than or equal to"
            };
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body should be {rel} {}", trim_float(min)),
                ),
                pointer,
            );
        }
        if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
            && m > 0.0
            && (n / m).fract().abs() > f64::EPSILON
        {
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body should be a multiple of {}", trim_float(m)),
                ),
                pointer,
            );
        }
        if let Some(format) = str_field(schema, "format") {
            let ok = match format {
                "int32" => n >= f64::from(i32::MIN) && n <= f64::from(i32::MAX),
                _ => true,
            };
            if !ok {
                self.push(
                    Cause::invalid(
                        path,
                        value,
                        format!("{detail_path} in body must be of type {format}: {}", trim_float(n)),
                    ),
                    pointer,
                );
            }
        }
    }

    fn validate_string(
        &mut self,
        schema: &Value,
        value: &Value,
        s: &str,
        path: &str,
        detail_path: &str,
        pointer: &str,
    ) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            self.push(Cause::too_long(path, max), pointer);
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body should be at least {min} chars long"),
                ),
                pointer,
            );
        }
        if let Some(pattern) = str_field(schema, "pattern")
            && !pattern_matches(pattern, s)
        {
            self.push(
                Cause::invalid(path, value, format!("{detail_path} in body should match '{pattern}'")),
                pointer,
            );
        }
        if let Some(format) = str_field(schema, "format")
            && !format_ok(format, s)
        {
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body must be of type {format}: {s:?}"),
                ),
                pointer,
            );
        }
    }

    fn validate_array(
        &mut self,
        schema: &Value,
        value: &Value,
        items: &[Value],
        path: &str,
        detail_path: &str,
        pointer: &str,
    ) {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            self.push(Cause::too_many(path, items.len(), max), pointer);
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body should have at least {min} items"),
                ),
                pointer,
            );
        }
        match str_field(schema, "x-kubernetes-list-type") {
            Some("set") => {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        self.push(
                            Cause::duplicate(format!("{path}[{i}]"), item),
                            &format!("{pointer}/{i}"),
                        );
                    }
                }
            }
            Some("map") => {
                let keys: Vec<&str> = schema
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let key_of = |item: &Value| -> Vec<Value> {
                    keys.iter()
                        .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                        .collect()
                };
                for (i, item) in items.iter().enumerate() {
                    let k = key_of(item);
                    if items[..i].iter().any(|prev| key_of(prev) == k) {
                        let shown: Map<String, Value> =
                            keys.iter().zip(k).map(|(n, v)| ((*n).to_string(), v)).collect();
                        self.push(
                            Cause::duplicate(format!("{path}[{i}]"), &Value::Object(shown)),
                            &format!("{pointer}/{i}"),
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
            for (i, item) in items.iter().enumerate() {
                self.validate(item_schema, item, &format!("{path}[{i}]"), &format!("{pointer}/{i}"));
            }
        }
    }

    fn validate_object(
        &mut self,
        schema: &Value,
        value: &Value,
        map: &Map<String, Value>,
        path: &str,
        detail_path: &str,
        pointer: &str,
    ) {
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(req) {
                let field = if path.is_empty() {
                    req.to_string()
                } else {
                    format!("{path}.{req}")
                };
                self.push(Cause::required(field), &pointer_child(pointer, req));
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
            && map.len() as u64 > max
        {
            self.push(Cause::too_many(path, map.len(), max), pointer);
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
            && (map.len() as u64) < min
        {
            self.push(
                Cause::invalid(
                    path,
                    value,
                    format!("{detail_path} in body should have at least {min} properties"),
                ),
                pointer,
            );
        }
        let props = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, child) in map {
            let child_schema = props.and_then(|p| p.get(key)).or(additional);
            if let Some(s) = child_schema {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                self.validate(s, child, &child_path, &pointer_child(pointer, key));
            }
        }
    }

    fn validate_rules(&mut self, schema: &Value, value: &Value, path: &str, pointer: &str) {
        let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) else {
            return;
        };
        let old = self.old_root.and_then(|o| o.pointer(pointer));
        for rule in rules {
            let Some(text) = str_field(rule, "rule") else { continue };
            let optional_old = flag(rule, "optionalOldSelf");
            if cel::uses_old_self(text) && old.is_none() && !optional_old {
                continue;
            }
            let outcome = cel::evaluate(text, value, old, optional_old);
            let failed_message = match outcome {
                Ok(true) => continue,
                Ok(false) => cel_message(rule, value, old).unwrap_or_else(|| format!("failed rule: {text}")),
                Err(e) => format!("{text}: evaluation error: {e}"),
            };
            let field = match str_field(rule, "fieldPath") {
                Some(fp) => format!("{path}{fp}"),
                None => path.to_string(),
            };
            let type_shown = json!(type_name(value));
            let cause = match str_field(rule, "reason") {
                Some("FieldValueRequired") => Cause {
                    reason: "FieldValueRequired",
                    message: format!("Required value: {failed_message}"),
                    field,
                },
                Some("FieldValueForbidden") => Cause::forbidden(field, failed_message),
                Some("FieldValueDuplicate") => Cause {
                    reason: "FieldValueDuplicate",
                    message: format!("Duplicate value: {failed_message}"),
                    field,
                },
                _ => Cause::invalid(field, &type_shown, failed_message),
            };
            self.push(cause, pointer);
        }
    }
}

/// The message of a failed rule: `messageExpression`, else `message`.
fn cel_message(rule: &Value, value: &Value, old: Option<&Value>) -> Option<String> {
    if let Some(expr) = str_field(rule, "messageExpression")
        && let Ok(text) = cel::evaluate_string(expr, value, old)
        && !text.trim().is_empty()
    {
        return Some(text);
    }
    str_field(rule, "message").map(String::from)
}

fn trim_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// Prunes, defaults and validates a custom object against its version's schema (see the
/// module docs). Returns the warnings for the `Warning` header; unknown fields are an
/// error with `strict`.
pub fn admit(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
    part: Part,
) -> Result<Vec<String>, ApiError> {
    let _ = part;
    let Some(schema) = info.crd.as_ref().and_then(|c| c.schema.clone()) else {
        return Ok(Vec::new());
    };
    let name = crate::object::name_of(obj).to_string();
    let mut unknown = Vec::new();
    prune(&schema, obj, "", true, &mut unknown);
    let warnings: Vec<String> = unknown.iter().map(|u| format!("unknown field {u:?}")).collect();
    if strict && !warnings.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {list}",
            kind = info.kind,
            version = info.version,
            list = warnings.join(", ")
        )));
    }
    apply_defaults(&schema, obj);
    // Metadata is checked by the object rules; the schema covers the rest of the body.
    let mut body = obj.clone();
    if let Some(m) = body.as_object_mut() {
        for system in ["metadata", "apiVersion", "kind"] {
            m.remove(system);
        }
    }
    let mut schema_body = (*schema).clone();
    if let Some(props) = schema_body.get_mut("properties").and_then(Value::as_object_mut) {
        props.remove("metadata");
    }
    let mut v = Validator {
        findings: Vec::new(),
        old_root: old,
    };
    v.validate(&schema_body, &body, "", "");
    let causes: Vec<Cause> = v
        .findings
        .into_iter()
        .filter(|f| {
            // Ratcheting: an error on a value unchanged since the stored object is not reported.
            let unchanged = old.is_some_and(|o| {
                !f.pointer.is_empty()
                    && o.pointer(&f.pointer).is_some()
                    && o.pointer(&f.pointer) == body.pointer(&f.pointer)
            });
            !unchanged
        })
        .map(|f| f.cause)
        .collect();
    if !causes.is_empty() {
        return Err(ApiError::invalid(&info.group, &info.kind, &name, &causes));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "port": {"x-kubernetes-int-or-string": true},
                "tags": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "when": {"type": "string", "format": "date-time"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "opt": {"type": "string", "nullable": false}
            }}
        }})
    }

    fn run(obj: Value) -> (Value, Vec<String>, Vec<String>) {
        let s = schema();
        let mut obj = obj;
        let mut unknown = Vec::new();
        prune(&s, &mut obj, "", true, &mut unknown);
        apply_defaults(&s, &mut obj);
        let mut v = Validator {
            findings: Vec::new(),
            old_root: None,
        };
        v.validate(&s, &obj, "", "");
        (obj, unknown, v.findings.into_iter().map(|f| f.cause.line()).collect())
    }

    #[test]
    fn prunes_defaults_and_accepts_valid() {
        let (obj, unknown, errors) = run(json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"name": "abc", "extra": 1, "free": {"anything": [1]}, "port": "http", "opt": null}}));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(unknown, ["spec.extra"]);
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["free"]["anything"][0], 1);
        assert!(
            obj["spec"].get("opt").is_none(),
            "nulls of non-nullable fields are pruned"
        );
        assert_eq!(obj["kind"], "K");
    }

    #[test]
    fn reports_violations_like_the_apiserver() {
        let (_, _, errors) = run(
            json!({"spec": {"replicas": 11, "mode": "c", "tags": ["x", "x", "y"], "when": "yesterday", "port": true}}),
        );
        assert!(errors.contains(&"spec.name: Required value".to_string()), "{errors:?}");
        assert!(
            errors.contains(
                &"spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
                    .to_string()
            ),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"spec.tags: Too many: 3: must have at most 2 items".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(&"spec.tags[1]: Duplicate value: \"x\"".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(
                &"spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\""
                    .to_string()
            ),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.port: Invalid value: \"boolean\"")),
            "{errors:?}"
        );
        let (_, _, errors) = run(json!({"spec": {"name": "ABCDEFG", "replicas": "3"}}));
        assert!(
            errors.contains(&"spec.name: Too long: may not be more than 5 bytes".to_string()),
            "{errors:?}"
        );
        assert!(
            errors.contains(
                &"spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'".to_string()
            ),
            "{errors:?}"
        );
        assert!(
            errors.contains(
                &"spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
                    .to_string()
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn structural_check_names_paths() {
        let p = "spec.versions[0].schema.openAPIV3Schema";
        let bad = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}},
            "list": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
            "m": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "any": {"anyOf": [{"type": "string"}]}}});
        let lines: Vec<String> = structural_causes(&bad, p).iter().map(Cause::line).collect();
        assert!(
            lines.contains(&format!(
                "{p}.properties[spec].type: Required value: must not be empty for specified object fields"
            )),
            "{lines:?}"
        );
        assert!(lines.contains(&format!("{p}.properties[list].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")), "{lines:?}");
        assert!(lines.contains(&format!("{p}.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive")), "{lines:?}");
        assert!(
            lines.contains(&format!(
                "{p}.properties[any].anyOf[0].type: Forbidden: must be empty to be structural"
            )),
            "{lines:?}"
        );
        assert!(structural_causes(&schema(), p).is_empty());
        let ios = json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}}});
        assert!(structural_causes(&ios, p).is_empty());
    }
}
