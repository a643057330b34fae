//! HS256 tokens for test clients, and the manifests of a BroadcastPolicy that verifies
//! them ([`AUTH_MANIFESTS`]).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// HMAC key of the test policy (the `stringData` of the Secret in [`AUTH_MANIFESTS`]).
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";
/// `iss` the test policy requires.
pub const TEST_ISSUER: &str = "https://issuer.test";
/// `aud` the test policy requires.
pub const TEST_AUDIENCE: &str = "eventcast-tests";

/// A Secret with [`TEST_SECRET`] and a BroadcastPolicy `auth` that selects every topic
/// and sets only JWT verification, so a test can add its own policy for limits, queues
/// or content rules without a conflict.
pub const AUTH_MANIFESTS: &str = r"
apiVersion: v1
kind: Secret
metadata: {name: test-jwt}
type: Opaque
stringData:
  secret: integration-test-secret-0123456789abcdef
---
apiVersion: eventcast.dev/v1alpha1
kind: BroadcastPolicy
metadata: {name: auth}
spec:
  auth:
    jwt:
      issuer: https://issuer.test
      audience: eventcast-tests
      secretRef: {name: test-jwt, key: secret}
      claims: {user: sub, device: device_id, roles: roles}
";

/// Mints HS256 tokens.
#[derive(Clone, Debug)]
pub struct Jwt {
    secret: Vec<u8>,
    issuer: String,
    audience: String,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Jwt {
    /// Tokens the policy of [`AUTH_MANIFESTS`] accepts.
    pub fn test() -> Self {
        Self::new(TEST_SECRET, TEST_ISSUER, TEST_AUDIENCE)
    }

    pub fn new(secret: &str, issuer: &str, audience: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// A token for `sub` with `roles`, valid for an hour.
    pub fn user(&self, sub: &str, roles: &[&str]) -> String {
        self.mint(&json!({"sub": sub, "roles": roles}))
    }

    /// A token with `claims`; `iss`, `aud` and `exp` (an hour from now) are added unless
    /// given.
    pub fn mint(&self, claims: &Value) -> String {
        let mut claims = claims.clone();
        let obj = claims.as_object_mut().expect("claims must be a JSON object");
        obj.entry("iss").or_insert_with(|| json!(self.issuer));
        obj.entry("aud").or_insert_with(|| json!(self.audience));
        obj.entry("exp").or_insert_with(|| json!(now_secs() + 3600));
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .expect("encode JWT")
    }

    /// A token that expired `ago_secs` seconds ago (beyond any sensible leeway).
    pub fn expired(&self, sub: &str, ago_secs: u64) -> String {
        self.mint(&json!({"sub": sub, "exp": now_secs().saturating_sub(ago_secs)}))
    }
}
