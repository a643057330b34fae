//! Access rules of a topic (`access.subscribe`, `access.publish`): whether a client,
//! anonymous or identified by its token, may do the thing the rule guards.
//!
//! Semantics:
//! - `anonymous: true` opens the action to everyone, with or without a token; the
//!   rule's `roles` and `claims` are then not checked at all (they only narrow who
//!   may act when anonymous access is off).
//! - Otherwise a client without a token is refused, and an authenticated client must
//!   hold at least one of `roles` (when any are listed) and carry every claim in
//!   `claims` with the given value.
//! - A claim value compares as a string: string claims by their text, numbers and
//!   booleans by their JSON text (`42`, `true`); null, arrays and objects never match.
//!   Claim names may be dotted paths into nested claims, as for the verifier's claims.

use eventcast_api::crd::common::AccessRule;
use serde_json::Value;

use super::auth::{Identity, claim};

/// Whether `identity` (`None`: anonymous) passes `rule`.
pub fn allows(rule: &AccessRule, identity: Option<&Identity>) -> bool {
    if rule.anonymous {
        return true;
    }
    let Some(identity) = identity else {
        return false;
    };
    let has_role = rule.roles.is_empty() || rule.roles.iter().any(|r| identity.roles.contains(r));
    has_role
        && rule
            .claims
            .iter()
            .all(|(name, want)| claim(&identity.claims, name).is_some_and(|v| claim_equals(v, want)))
}

fn claim_equals(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => (if *b { "true" } else { "false" }) == want,
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn rule(anonymous: bool, roles: &[&str], claims: &[(&str, &str)]) -> AccessRule {
        AccessRule {
            anonymous,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn identity(roles: &[&str], claims: Value) -> Identity {
        Identity {
            user: Some("alice".into()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            claims: match claims {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            provider: "p".into(),
            ..Identity::default()
        }
    }

    #[test]
    fn default_rule_is_private_but_open_to_any_authenticated_client() {
        let r = AccessRule::default();
        assert!(!allows(&r, None));
        assert!(allows(&r, Some(&identity(&[], json!({})))));
    }

    #[test]
    fn anonymous_rule_admits_everyone() {
        let r = rule(true, &[], &[]);
        assert!(allows(&r, None));
        assert!(allows(&r, Some(&identity(&[], json!({})))));
    }

    #[test]
    fn anonymous_true_overrides_roles_and_claims() {
        let r = rule(true, &["admin"], &[("tenant", "acme")]);
        assert!(allows(&r, None));
        // Documented choice: anonymous access means everyone, so an authenticated
        // client without the role is not worse off than an anonymous one.
        assert!(allows(&r, Some(&identity(&["member"], json!({"tenant": "other"})))));
    }

    #[test]
    fn roles_need_any_one_match() {
        let r = rule(false, &["admin", "member"], &[]);
        assert!(!allows(&r, None));
        assert!(allows(&r, Some(&identity(&["member"], json!({})))));
        assert!(allows(&r, Some(&identity(&["guest", "admin"], json!({})))));
        assert!(!allows(&r, Some(&identity(&["guest"], json!({})))));
        assert!(!allows(&r, Some(&identity(&[], json!({})))));
        // Role names are case-sensitive.
        assert!(!allows(&r, Some(&identity(&["Admin"], json!({})))));
    }

    #[test]
    fn claims_must_all_match() {
        let r = rule(false, &[], &[("tenant", "acme"), ("plan", "pro")]);
        assert!(allows(
            &r,
            Some(&identity(&[], json!({"tenant": "acme", "plan": "pro", "x": 1})))
        ));
        assert!(!allows(
            &r,
            Some(&identity(&[], json!({"tenant": "acme", "plan": "free"})))
        ));
        assert!(!allows(&r, Some(&identity(&[], json!({"tenant": "acme"})))));
        assert!(!allows(&r, None));
    }

    #[test]
    fn roles_and_claims_combine() {
        let r = rule(false, &["member"], &[("tenant", "acme")]);
        assert!(allows(&r, Some(&identity(&["member"], json!({"tenant": "acme"})))));
        assert!(!allows(&r, Some(&identity(&["member"], json!({"tenant": "other"})))));
        assert!(!allows(&r, Some(&identity(&["guest"], json!({"tenant": "acme"})))));
    }

    #[test]
    fn non_string_claims_compare_by_json_text() {
        let r = rule(false, &[], &[("level", "3"), ("verified", "true"), ("ratio", "0.5")]);
        assert!(allows(
            &r,
            Some(&identity(&[], json!({"level": 3, "verified": true, "ratio": 0.5})))
        ));
        assert!(allows(
            &r,
            Some(&identity(
                &[],
                json!({"level": "3", "verified": "true", "ratio": "0.5"})
            ))
        ));
        assert!(!allows(
            &r,
            Some(&identity(&[], json!({"level": 4, "verified": true, "ratio": 0.5})))
        ));
        assert!(!allows(
            &r,
            Some(&identity(&[], json!({"level": 3, "verified": false, "ratio": 0.5})))
        ));
        for odd in [json!(null), json!(["3"]), json!({"v": "3"})] {
            let r = rule(false, &[], &[("level", "3")]);
            assert!(!allows(&r, Some(&identity(&[], json!({"level": odd})))));
        }
    }

    #[test]
    fn nested_claims_by_dotted_path() {
        let r = rule(false, &[], &[("org.id", "acme")]);
        assert!(allows(&r, Some(&identity(&[], json!({"org": {"id": "acme"}})))));
        assert!(!allows(&r, Some(&identity(&[], json!({"org": {"id": "umbrella"}})))));
        assert!(!allows(&r, Some(&identity(&[], json!({"org": "acme"})))));
    }
}
