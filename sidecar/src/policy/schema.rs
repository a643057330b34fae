//! A topic's JSON Schema for event `data` (`Topic.spec.schema`), compiled once per
//! config and checked on every publish; failures become `422` replies listing the
//! first few violations.

use std::fmt;

use serde_json::Value;

/// How many violations a rejection lists.
const MAX_ERRORS: usize = 5;

/// Longest violation message (in characters); messages quote the offending value,
/// which may be a large part of the payload.
const MAX_MESSAGE_CHARS: usize = 200;

/// A compiled schema.
pub struct SchemaValidator {
    validator: jsonschema::Validator,
}

impl fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaValidator").finish_non_exhaustive()
    }
}

impl SchemaValidator {
    /// Compiles `schema` (any draft the document declares, 2020-12 by default). Remote
    /// `$ref`s are not fetched: a schema needing one fails to compile.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(|validator| Self { validator })
            .map_err(|e| format!("invalid JSON Schema: {}", truncate(&e.to_string())))
    }

    /// Ok, or up to 5 messages "<instance path or /> : <message>".
    pub fn validate(&self, data: &Value) -> Result<(), Vec<String>> {
        if self.validator.is_valid(data) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(data)
            .take(MAX_ERRORS)
            .map(|e| {
                let path = e.instance_path().as_str();
                let path = if path.is_empty() { "/" } else { path };
                format!("{path} : {}", truncate(&e.to_string()))
            })
            .collect();
        if errors.is_empty() {
            // `is_valid` and `iter_errors` disagreeing would be a library bug; refuse
            // rather than accept unchecked data.
            return Err(vec!["/ : does not match the topic's schema".to_owned()]);
        }
        Err(errors)
    }
}

fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chat_schema() -> Value {
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["text", "author"],
            "properties": {
                "text": {"type": "string", "maxLength": 20},
                "author": {"type": "string"},
                "lang": {"enum": ["en", "de", "fr"]},
                "attachments": {"type": "array", "items": {"type": "object", "required": ["url"]}}
            },
            "additionalProperties": false
        })
    }

    fn validator() -> SchemaValidator {
        SchemaValidator::compile(&chat_schema()).expect("schema compiles")
    }

    #[test]
    fn valid_data_passes() {
        let v = validator();
        assert_eq!(v.validate(&json!({"text": "hi", "author": "alice"})), Ok(()));
        assert_eq!(
            v.validate(&json!({"text": "hi", "author": "a", "lang": "de", "attachments": [{"url": "x"}]})),
            Ok(())
        );
    }

    #[test]
    fn missing_required_field() {
        let errors = validator().validate(&json!({"text": "hi"})).expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("/ : "), "{errors:?}");
        assert!(errors[0].contains("author"), "{errors:?}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let errors = validator()
            .validate(&json!({"text": 5, "author": "a"}))
            .expect_err("invalid");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("/text : "), "{errors:?}");
        assert!(errors[0].contains("string"), "{errors:?}");
    }

    #[test]
    fn max_length_and_enum() {
        let errors = validator()
            .validate(&json!({"text": "x".repeat(21), "author": "a", "lang": "xx"}))
            .expect_err("invalid");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("/text : ")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("/lang : ")), "{errors:?}");
    }

    #[test]
    fn nested_array_paths() {
        let errors = validator()
            .validate(&json!({"text": "t", "author": "a", "attachments": [{"url": "u"}, {}]}))
            .expect_err("invalid");
        assert!(errors[0].starts_with("/attachments/1 : "), "{errors:?}");
    }

    #[test]
    fn at_most_five_errors_and_short_messages() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        let v = SchemaValidator::compile(&schema).expect("schema compiles");
        let data: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("k{i}"), json!("y".repeat(1000)))).collect();
        let errors = v.validate(&Value::Object(data)).expect_err("invalid");
        assert_eq!(errors.len(), 5);
        assert!(
            errors.iter().all(|e| e.chars().count() < MAX_MESSAGE_CHARS + 40),
            "{errors:?}"
        );
    }

    #[test]
    fn non_object_data() {
        let errors = validator().validate(&json!("just text")).expect_err("invalid");
        assert!(errors[0].starts_with("/ : "), "{errors:?}");
    }

    #[test]
    fn invalid_schema_fails_to_compile() {
        let err = SchemaValidator::compile(&json!({"type": "strnig"})).expect_err("bad type");
        assert!(err.starts_with("invalid JSON Schema: "), "{err}");
        assert!(SchemaValidator::compile(&json!({"maxLength": -1})).is_err());
        assert!(SchemaValidator::compile(&json!({"pattern": "(unclosed"})).is_err());
        assert!(SchemaValidator::compile(&json!({"$ref": "https://example.com/remote.json"})).is_err());
    }

    #[test]
    fn permissive_schemas() {
        let v = SchemaValidator::compile(&json!(true)).expect("true schema");
        assert!(v.validate(&json!({"anything": [1, 2]})).is_ok());
        let v = SchemaValidator::compile(&json!({})).expect("empty schema");
        assert!(v.validate(&json!(null)).is_ok());
        let v = SchemaValidator::compile(&json!(false)).expect("false schema");
        assert!(v.validate(&json!(1)).is_err());
    }
}
