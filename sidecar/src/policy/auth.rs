//! JWT authentication of WebSocket clients: verifies HS256 and RS256 tokens against
//! the verifiers (`auth.jwt` of BroadcastPolicies) in the compiled config and maps
//! their claims to an [`Identity`] (user, device, roles).
//!
//! Several policies may each define a verifier. A token is tried only against the
//! verifiers whose algorithm equals the token's `alg` and whose issuer (when set)
//! equals its `iss`, so a token minted for one policy's issuer never meets another's
//! key. Any other `alg` (including `none`) is rejected before a key is touched.
//!
//! Error messages ([`AuthError`]'s `Display`) are sent to clients: they say what was
//! wrong with the token, never anything about the keys.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use eventcast_api::config::{JwtKey, JwtProvider};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Longest token accepted; real tokens are a few hundred bytes to a few KiB.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Upper bound on a verifier's clock-skew leeway. Larger values would make the
/// `exp` check meaningless (and overflow the library's `now - leeway`).
const MAX_LEEWAY_SECS: u64 = 24 * 60 * 60;

/// Who a verified token says the client is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// From the verifier's user claim (`sub` by default); numbers become strings.
    pub user: Option<String>,
    /// From the verifier's device claim.
    pub device: Option<String>,
    /// From the verifier's roles claim: an array of strings, one string, or a
    /// space-separated string (OAuth `scope` style).
    pub roles: Vec<String>,
    /// All claims of the token, for access rules on claims.
    pub claims: Map<String, Value>,
    /// `exp` in unix seconds: the connection's credentials lapse then.
    pub expires_at: Option<u64>,
    /// Name of the BroadcastPolicy whose verifier accepted the token.
    pub provider: String,
}

/// Why a token was refused, or why a verifier could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token authentication is not configured")]
    NotConfigured,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("token signature is invalid")]
    InvalidSignature,
    #[error("token has expired")]
    Expired,
    /// `nbf` lies in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    /// A verifier's key in the config is unusable (a config error, not a client's).
    #[error("invalid JWT key of BroadcastPolicy {policy}: {message}")]
    InvalidKey { policy: String, message: String },
}

impl AuthError {
    /// Whether the token was good but has expired (a client should refresh it).
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired)
    }
}

/// Verifies tokens against every configured provider; cheap to share (`Arc`) and
/// rebuilt when the config changes.
pub struct Authenticator {
    providers: Vec<Provider>,
}

/// One provider, ready to verify: key decoded, validation rules fixed.
struct Provider {
    policy: String,
    alg: Algorithm,
    issuer: Option<String>,
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
    device_claim: String,
    roles_claim: String,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are deliberately left out.
        f.debug_list()
            .entries(
                self.providers
                    .iter()
                    .map(|p| (p.policy.as_str(), p.alg, p.issuer.as_deref())),
            )
            .finish()
    }
}

impl Authenticator {
    /// Builds verifiers for `providers`. Fails on the first unusable key, naming its
    /// policy.
    pub fn new(providers: &[JwtProvider]) -> Result<Self, AuthError> {
        let providers = providers.iter().map(Provider::new).collect::<Result<_, _>>()?;
        Ok(Self { providers })
    }

    /// Whether any verifier is configured (otherwise only anonymous access works).
    pub fn is_configured(&self) -> bool {
        !self.providers.is_empty()
    }

    /// Verifies `token` (compact JWS, without a `Bearer ` prefix) and maps its claims.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if self.providers.is_empty() {
            return Err(AuthError::NotConfigured);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed("token is empty".into()));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed(format!(
                "token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed(
                "expected three dot-separated parts (header.payload.signature)".into(),
            ));
        };
        let header = decode_json_part(header)
            .ok_or_else(|| AuthError::Malformed("header is not base64url-encoded JSON".into()))?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("HS256") => Algorithm::HS256,
            Some("RS256") => Algorithm::RS256,
            Some(_) => return Err(AuthError::UnsupportedAlgorithm),
            None => return Err(AuthError::Malformed("header has no alg".into())),
        };
        let claims = decode_json_part(payload)
            .ok_or_else(|| AuthError::Malformed("payload is not a base64url-encoded JSON object".into()))?;
        let issuer = claims.get("iss").and_then(Value::as_str);

        let mut any_alg = false;
        let mut failure: Option<AuthError> = None;
        for provider in &self.providers {
            if provider.alg != alg {
                continue;
            }
            any_alg = true;
            if provider.issuer.as_deref().is_some_and(|want| issuer != Some(want)) {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &provider.key, &provider.validation) {
                Ok(data) => return Ok(provider.identity(data.claims)),
                Err(e) => {
                    // The library checks the signature before the claims, so any other
                    // error comes from a provider whose key did sign the token: that one
                    // explains the refusal better than another key's signature mismatch.
                    let e = map_error(e.kind());
                    if failure.as_ref().is_none_or(|f| *f == AuthError::InvalidSignature) {
                        failure = Some(e);
                    }
                }
            }
        }
        if !any_alg {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        Err(failure.unwrap_or(AuthError::WrongIssuer))
    }
}

impl Provider {
    fn new(p: &JwtProvider) -> Result<Self, AuthError> {
        let invalid = |message: &str| AuthError::InvalidKey {
            policy: p.policy.clone(),
            message: message.to_owned(),
        };
        let (alg, key) = match &p.key {
            JwtKey::Hmac { secret } => {
                let bytes = STANDARD
                    .decode(secret.trim())
                    .map_err(|_| invalid("HS256 secret is not valid base64"))?;
                if bytes.is_empty() {
                    return Err(invalid("HS256 secret is empty"));
                }
                (Algorithm::HS256, DecodingKey::from_secret(&bytes))
            }
            JwtKey::Rsa { pem } => {
                // The library's error text is left out: it is about key material.
                let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|_| invalid("RS256 key is not an RSA public key in PEM form"))?;
                (Algorithm::RS256, key)
            }
        };

        let mut validation = Validation::new(alg);
        validation.leeway = p.leeway_secs.min(MAX_LEEWAY_SECS);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &p.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &p.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);

        Ok(Self {
            policy: p.policy.clone(),
            alg,
            issuer: p.issuer.clone(),
            key,
            validation,
            user_claim: p.user_claim.clone(),
            device_claim: p.device_claim.clone(),
            roles_claim: p.roles_claim.clone(),
        })
    }

    fn identity(&self, claims: Map<String, Value>) -> Identity {
        let user = claim(&claims, &self.user_claim).and_then(scalar_string);
        let device = claim(&claims, &self.device_claim).and_then(scalar_string);
        let roles = claim(&claims, &self.roles_claim).map(roles_of).unwrap_or_default();
        let expires_at = claims.get("exp").and_then(numeric_date);
        Identity {
            user,
            device,
            roles,
            claims,
            expires_at,
            provider: self.policy.clone(),
        }
    }
}

/// Looks up a claim by name: the top-level key `name` if present, otherwise a dotted
/// path into nested objects (`realm_access.roles`).
pub(crate) fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if name.is_empty() {
        return None;
    }
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    let mut segments = name.split('.');
    let mut current = claims.get(segments.next()?)?;
    for segment in segments {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

/// A string claim, or a number rendered as text; empty strings count as absent.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Roles from an array of strings (other elements ignored), or from one string
/// holding one or more space-separated roles.
fn roles_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A JWT NumericDate as whole unix seconds.
fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// Decodes a base64url token part holding a JSON object.
fn decode_json_part(part: &str) -> Option<Map<String, Value>> {
    // Some encoders pad; JWS forbids it but the padding carries no information.
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Maps the library's error to ours (without its text, which may quote the token).
fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::UnsupportedAlgorithm
        }
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => AuthError::WrongIssuer,
            "aud" => AuthError::WrongAudience,
            other => AuthError::Malformed(format!("token has no {other} claim")),
        },
        ErrorKind::InvalidClaimFormat(claim) => {
            AuthError::Malformed(format!("claim {claim} is not a valid NumericDate"))
        }
        ErrorKind::Base64(_) => AuthError::Malformed("token is not valid base64url".into()),
        ErrorKind::Json(_) => AuthError::Malformed("token is not valid JSON".into()),
        ErrorKind::Utf8(_) => AuthError::Malformed("token is not valid UTF-8".into()),
        ErrorKind::InvalidToken => AuthError::Malformed("token is not a valid JWT".into()),
        // Key-format errors at verification mean the signature could not be checked
        // with this key; say no more than that.
        _ => AuthError::InvalidSignature,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    /// RSA key pair A (generated once with `openssl genrsa 2048` / `openssl rsa -pubout`).
    const RSA_A_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC0pd8e0TkKeI7a
6ce6Kxw71xRDnJ+nucSkqy/afIdQlfVBU+LHxsHtGYfSrOytMEvrE3cwXgC6A/Ak
QcbFZ79xTyYTTyjxMoG6M9ZyPojoxUD8R2L6YPY1wKf1hcfMstcIYP+gsZKS4ERL
TVfUWlTLrXWncOVuLSg1OobDCuBTG+rlkSngPPBPdfliwa5VlY3JJftXE/USO+sd
yURbFcHI3jULqEWiPBVvT+wCEN+hN2Hfppr3ZIEhx42Du+Jdd/kPSMDMCrZavHIk
p9OgZUlRlKIfHIusuZqairpPT/VVQxKYDK3Xn2r0DHs8ZqG1UaWhk/M4Wh79PRdw
0FYs7FUVAgMBAAECggEASZyb1nF4VnF4+PCxoAWoLCRBECoXDuBOprFRPy1mcGqi
9Xtq2nB+HpE8PReVHB+lmAWnGHD9x88KAKRDDLbxlokjoVOtAdhMb6Vm+cfMv1l9
2S93wEJZod6/MnfQynOH11S7Ze5mJW64tZyvMQucKSEmY9RH0YUaMNKIDpt0fLie
j6W4lIY9AwLHwPhUY/nqvIiWniLdWJEsW6G3eUdz4IoIh6HYu7DevCyQj+OXCFii
DZesu+JHhY8yXE4P9WrjAkmJJdS+H3XaePrNSFdkeAv+ykSMDp5WQEjIgQBTkcfd
h+mfcl76B+ZPU8pOkCLmQgDUW81hroRx3zrdy61uUwKBgQD8j+CF6UdIpcFNgcLo
8kgFibPhQt6nplYWcrrnupUuYAhcU+WZ6W+EpvEKbgPpa0u1tBpoQQ3ilk26/kIj
UwBPLVjUyNW5W4MLYbBV2nchniEaYOc7FHkYF7um23D6v34Qc9DyWnAUoiKErFfK
fv3eKSEeiqUlPLsdC+28Wj4nRwKBgQC3G2PJejB+Y0itZVgUqpOwvpn2xrSK+9KI
5a8A8PpOtNlEoshWYbzYXHoUTGrgf7UiPAJt3zfILHscyNA+TPF9DnusMdqMmURv
gqzj5YxU0+3b+ReSLkswncO2uWBQInbppr2yS8ntapSQT/DBnFF7/a8g19mDUAiT
pjPAUfFGwwKBgF0PVpeBATcPfE5mxb63pzoDJziVPx1e+NGErMG9ykIwOGRstWkk
zmZ+bMp/Bwn28wqcti476jXXVATWst/5MV/7QYQGDFokEgEbmbHIsaS9c00Y75qh
TI1IEWjF6rc53+WIBzGFiU7Q/w8Lwb1nVXuKhB2Q0JEL85YcUxjX15b5AoGAKJ8H
7SuRVIicF/OSrcsFxsESEQAWD3s8QqiJwXC0Zv+R77sZLKi0J1+kqZomX7WVLooX
k95gVqUfjswx/pA9RpwO7a2FqYla+E4KIujK0ArQCuvgwcpJXfix8XiAmGZ88OrP
zJ0pp+TsHnPNmnYeUZ5+2o9oLsxziqXldzX2i9cCgYBZIAeR5H1BbasmWjDoB1KS
lwmki2SRjaDAy/7ODRt3lGvMgLf8szTBBoGTCqlpRXqRuSuAxXXVJRbVGZPkzbNb
DzVwLCCSihZwQqP5Fx5y8ZhwwNJe85czJv04Mv0GKFc3A6pizZaeGtYNpQnOTrEm
r8eSUKrg7GlVi0g3bqUT3A==
-----END PRIVATE KEY-----
";

    const RSA_A_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAtKXfHtE5CniO2unHuisc
O9cUQ5yfp7nEpKsv2nyHUJX1QVPix8bB7RmH0qzsrTBL6xN3MF4AugPwJEHGxWe/
cU8mE08o8TKBujPWcj6I6MVA/Edi+mD2NcCn9YXHzLLXCGD/oLGSkuBES01X1FpU
y611p3Dlbi0oNTqGwwrgUxvq5ZEp4DzwT3X5YsGuVZWNySX7VxP1EjvrHclEWxXB
yN41C6hFojwVb0/sAhDfoTdh36aa92SBIceNg7viXXf5D0jAzAq2WrxyJKfToGVJ
UZSiHxyLrLmamoq6T0/1VUMSmAyt159q9Ax7PGahtVGloZPzOFoe/T0XcNBWLOxV
FQIDAQAB
-----END PUBLIC KEY-----
";

    /// RSA key B: a different key, whose signatures key A's public key must refuse.
    const RSA_B_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCvBjZ/wtlC4eq3
rmNivIRMVjN/v5bC0Gp0qCHXtFYMkt5718qwBhg4+51dlzoDaaR5C3zoQsRbbxgM
OgvYvGw0qUjYMAmAyVpKHGNqN8CsIpMlMFf07YqqKCJ3ctrBuRCZYRclihO6erup
uiPLLQNEmMn+XgyNYyqqlL6qW22X2V9w8r38Gejw5T2WXBMqZbfDx6kWboHJEPk+
9fOXLt9+UAyASykwB5Cs0Ow7cqhck0C5XbHQsNI0sqDg7vo6tqZa7ZvZtWtEzloL
H1bEa+PqBlwac68WTVMiZDFcc9cCyo+kDLC0c9iY4z7EXxZyIoPEDVkCc09I2Syt
rqK4fOFJAgMBAAECggEAMONpYbKJgVcdewUpGbFSuwfxBqP7dptEwSUdnuTujECS
CMG0CgsJxRDzWesd90oQ+QaucyoDMw8LBo9IM9gd2W/Xuxtf7CtSHxVi545/MRXP
SDoCt5WKgBEJ35ejZy1MZ6tpDcFN1W7m8Hff+6atHQIYmganNu8WQeOehnNXX2yQ
A2eGURKDvvyYUjwGtIHTv3KIGVHkRHs5zHP1KyYCdD1cxLY1j2iCXlYr19992xuB
8xhYSHCMWi14jS1fIPYgFzPX4VOrYUrD2z4TpplhdN3JB69iuzPx8CTSII1baGJJ
VUdMKsgXUKumwtPuWMtDjX3b6PzqiXEjAHqWE6yQKQKBgQDfIDZHyBMBISxzYkc4
WRsMX/qrr0DwvhlqglLLAG9eVP5EpsQHFFXHP2UKQWk4pfZsmHBccZxY70fjWFqu
DJNnvWtpesrEQFGjro6XaztO85cHyOhmc2b4fH726XnKWps/eBhOzogqsR8zXa6U
gRpbRUqxLem34fihmDbpjwgZrwKBgQDIz7jGEwMP9DBIcZu8aGaNDbx+mAMPO87U
sRbta0SO+X69nK6Cfp6ov3JloEQJAL1CAqHwFbSrPdb/gNU8vJgVkPORXXDIHo1d
pNaSz/WmhhDvf29y46N23hMQz+WazIVSW/8aL0Bsh/yMwDyII/gD5rOIYZn1vHd8
UlV7Q1GKhwKBgQCOiFxEZInHWfK0Tp6iX0GJGTLfQ5ffcgB4aoILDd8WyoKXRlTJ
FPNq0ZNxBrH5rwMJAiQc2bJ/mXM5xrI+pufvCDC6c+ddkJzWS+bo0WZUnATpwyy6
bZPkvlq4zhKv8ktkMwqMJSEU7Iq63Ghukz5L+aqqHmNDxQV37O1/K5CIHwKBgQCg
5HWaFg+FD9RDpurtmQRZjaDyGR+SbAv6s+y3yxNCLrqSd2AG5CaA8+tXa4I3aGU6
51sSPoHkFgcV7gZrxHtiBCJy3NgJLxl65yCYvpCGnLIjAgqslaEaEzJZbQj871L+
uwD43NUUYBxENZ4KQi9sCMLdyb2OezOM43bj7Pr/LwKBgCfR917V7oCY6pnDmqK/
mMamyAK5rTLI9tu3FZRN9AA+7/uz3S6ZY7F0/DOmDsOAhBPzI1xkZRvI5C9/YiWt
nAGYYKkhjse7vfWCQsLk2IdiTtztGvjryukOXX9kVV2zZ2P9xbaS9sbn2N+hCkGw
rmMjfDE456zC+OW9gsZLYsaB
-----END PRIVATE KEY-----
";

    const SECRET: &[u8] = b"eventcast-test-secret-0123456789";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    }

    fn provider(policy: &str, key: JwtKey) -> JwtProvider {
        JwtProvider {
            policy: policy.into(),
            issuer: None,
            audience: None,
            key,
            user_claim: "sub".into(),
            device_claim: "device_id".into(),
            roles_claim: "roles".into(),
            leeway_secs: 0,
        }
    }

    fn hmac(secret: &[u8]) -> JwtKey {
        JwtKey::Hmac {
            secret: STANDARD.encode(secret),
        }
    }

    fn rsa_a() -> JwtKey {
        JwtKey::Rsa {
            pem: RSA_A_PUBLIC.into(),
        }
    }

    fn auth(providers: &[JwtProvider]) -> Authenticator {
        Authenticator::new(providers).expect("valid providers")
    }

    fn mint_hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).expect("encode")
    }

    fn mint_rs(private_pem: &str, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("RSA private key");
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("encode")
    }

    fn claims() -> Value {
        json!({"sub": "alice", "device_id": "phone-1", "roles": ["member", "mod"], "exp": now() + 600})
    }

    #[test]
    fn hs256_token_maps_identity() {
        let a = auth(&[provider("default", hmac(SECRET))]);
        let exp = now() + 600;
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "alice", "device_id": "phone-1", "roles": ["member", "mod"], "exp": exp, "team": "red"}),
        );
        let id = a.verify(&token).expect("valid token");
        assert_eq!(id.user.as_deref(), Some("alice"));
        assert_eq!(id.device.as_deref(), Some("phone-1"));
        assert_eq!(id.roles, vec!["member", "mod"]);
        assert_eq!(id.expires_at, Some(exp));
        assert_eq!(id.provider, "default");
        assert_eq!(id.claims.get("team"), Some(&json!("red")));
        // Surrounding whitespace (e.g. from a header) is tolerated.
        assert_eq!(a.verify(&format!(" {token}\n")).expect("trimmed"), id);
    }

    #[test]
    fn numeric_user_becomes_string_and_missing_claims_are_none() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": 42, "exp": now() + 60}));
        let id = a.verify(&token).expect("valid token");
        assert_eq!(id.user.as_deref(), Some("42"));
        assert_eq!(id.device, None);
        assert!(id.roles.is_empty());

        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "", "device_id": {"x": 1}, "exp": now() + 60}),
        );
        let id = a.verify(&token).expect("valid token");
        assert_eq!(id.user, None);
        assert_eq!(id.device, None);
    }

    #[test]
    fn roles_in_three_shapes() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let roles = |value: Value| {
            let token = mint_hs(
                Algorithm::HS256,
                SECRET,
                &json!({"sub": "u", "roles": value, "exp": now() + 60}),
            );
            a.verify(&token).expect("valid token").roles
        };
        assert_eq!(roles(json!(["admin", "member"])), vec!["admin", "member"]);
        assert_eq!(roles(json!("admin")), vec!["admin"]);
        assert_eq!(roles(json!("read:chat  write:chat")), vec!["read:chat", "write:chat"]);
        // Non-string array elements and other types are ignored.
        assert_eq!(roles(json!(["admin", 7, null, ""])), vec!["admin"]);
        assert!(roles(json!({"admin": true})).is_empty());
    }

    #[test]
    fn nested_claim_paths() {
        let mut p = provider("p", hmac(SECRET));
        p.roles_claim = "realm_access.roles".into();
        p.user_claim = "user.id".into();
        let a = auth(&[p]);
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"user": {"id": "u-7"}, "realm_access": {"roles": ["member"]}, "exp": now() + 60}),
        );
        let id = a.verify(&token).expect("valid token");
        assert_eq!(id.user.as_deref(), Some("u-7"));
        assert_eq!(id.roles, vec!["member"]);
        // A literal top-level key with a dot wins over the path.
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"user.id": "flat", "user": {"id": "nested"}, "exp": now() + 60}),
        );
        assert_eq!(a.verify(&token).expect("valid token").user.as_deref(), Some("flat"));
    }

    #[test]
    fn expired_token() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": "u", "exp": now() - 120}));
        let err = a.verify(&token).expect_err("expired");
        assert_eq!(err, AuthError::Expired);
        assert!(err.is_expired());
        assert_eq!(err.to_string(), "token has expired");

        // Within the provider's leeway it still passes.
        let mut p = provider("p", hmac(SECRET));
        p.leeway_secs = 300;
        assert!(auth(&[p]).verify(&token).is_ok());
    }

    #[test]
    fn huge_leeway_is_capped_not_overflowing() {
        let mut p = provider("p", hmac(SECRET));
        p.leeway_secs = u64::MAX;
        let a = auth(&[p]);
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": "u", "exp": 1000}));
        assert_eq!(a.verify(&token), Err(AuthError::Expired));
    }

    #[test]
    fn not_yet_valid_token() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "nbf": now() + 600, "exp": now() + 1200}),
        );
        assert_eq!(a.verify(&token), Err(AuthError::NotYetValid));
    }

    #[test]
    fn exp_is_required_and_must_be_numeric() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": "u"}));
        assert_eq!(
            a.verify(&token),
            Err(AuthError::Malformed("token has no exp claim".into()))
        );
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": "u", "exp": "tomorrow"}));
        assert!(matches!(a.verify(&token), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn wrong_secret_is_invalid_signature() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(Algorithm::HS256, b"another-secret-another-secret!!", &claims());
        assert_eq!(a.verify(&token), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn tampered_payload_is_invalid_signature() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(Algorithm::HS256, SECRET, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&json!({"sub": "admin", "roles": ["admin"], "exp": now() + 600})).expect("json"),
        );
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(a.verify(&tampered), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn wrong_issuer() {
        let mut p = provider("p", hmac(SECRET));
        p.issuer = Some("https://auth.example.com".into());
        let a = auth(&[p]);
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "iss": "https://evil.example.com", "exp": now() + 60}),
        );
        assert_eq!(a.verify(&token), Err(AuthError::WrongIssuer));
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": "u", "exp": now() + 60}));
        assert_eq!(a.verify(&token), Err(AuthError::WrongIssuer));
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "iss": "https://auth.example.com", "exp": now() + 60}),
        );
        assert!(a.verify(&token).is_ok());
    }

    #[test]
    fn wrong_audience() {
        let mut p = provider("p", hmac(SECRET));
        p.audience = Some("eventcast".into());
        let a = auth(&[p]);
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "aud": "billing", "exp": now() + 60}),
        );
        assert_eq!(a.verify(&token), Err(AuthError::WrongAudience));
        let token = mint_hs(Algorithm::HS256, SECRET, &json!({"sub": "u", "exp": now() + 60}));
        assert_eq!(a.verify(&token), Err(AuthError::WrongAudience));
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "aud": ["billing", "eventcast"], "exp": now() + 60}),
        );
        assert!(a.verify(&token).is_ok());

        // A provider without an audience does not judge a token's `aud`.
        let a = auth(&[provider("p", hmac(SECRET))]);
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "aud": "billing", "exp": now() + 60}),
        );
        assert!(a.verify(&token).is_ok());
    }

    #[test]
    fn alg_none_and_other_algorithms_are_rejected() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).expect("json"));
        assert_eq!(
            a.verify(&format!("{header}.{payload}.")),
            Err(AuthError::UnsupportedAlgorithm)
        );
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"None"}"#);
        assert_eq!(
            a.verify(&format!("{header}.{payload}.")),
            Err(AuthError::UnsupportedAlgorithm)
        );

        let hs384 = mint_hs(Algorithm::HS384, SECRET, &claims());
        assert_eq!(a.verify(&hs384), Err(AuthError::UnsupportedAlgorithm));

        // RS256 is a supported algorithm, but no RS256 verifier is configured here.
        let rs = mint_rs(RSA_A_PRIVATE, &claims());
        assert_eq!(a.verify(&rs), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn hs256_token_is_not_verified_with_an_rsa_public_key() {
        // Classic key-confusion attack: HMAC-sign with the RSA public key's bytes.
        let a = auth(&[provider("rsa", rsa_a())]);
        let token = mint_hs(Algorithm::HS256, RSA_A_PUBLIC.as_bytes(), &claims());
        assert_eq!(a.verify(&token), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn rs256_token_verified_with_public_key() {
        let mut p = provider("rsa", rsa_a());
        p.issuer = Some("https://auth.example.com".into());
        p.audience = Some("eventcast".into());
        let a = auth(&[p]);
        let token = mint_rs(
            RSA_A_PRIVATE,
            &json!({"sub": "bob", "iss": "https://auth.example.com", "aud": "eventcast", "roles": "member", "exp": now() + 60}),
        );
        let id = a.verify(&token).expect("valid RS256 token");
        assert_eq!(id.user.as_deref(), Some("bob"));
        assert_eq!(id.roles, vec!["member"]);
        assert_eq!(id.provider, "rsa");
    }

    #[test]
    fn rs256_token_signed_by_another_key_is_rejected() {
        let a = auth(&[provider("rsa", rsa_a())]);
        let token = mint_rs(RSA_B_PRIVATE, &claims());
        assert_eq!(a.verify(&token), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn token_for_second_provider_is_accepted() {
        let secret_b = b"policy-b-secret-policy-b-secret!";
        let a = auth(&[provider("a", hmac(SECRET)), provider("b", hmac(secret_b))]);
        let token = mint_hs(Algorithm::HS256, secret_b, &claims());
        assert_eq!(a.verify(&token).expect("valid for b").provider, "b");
        let token = mint_hs(Algorithm::HS256, SECRET, &claims());
        assert_eq!(a.verify(&token).expect("valid for a").provider, "a");

        // Selected by issuer, and across algorithms.
        let mut pa = provider("a", hmac(SECRET));
        pa.issuer = Some("issuer-a".into());
        let mut pb = provider("b", rsa_a());
        pb.issuer = Some("issuer-b".into());
        let a = auth(&[pa, pb]);
        let token = mint_rs(
            RSA_A_PRIVATE,
            &json!({"sub": "u", "iss": "issuer-b", "exp": now() + 60}),
        );
        assert_eq!(a.verify(&token).expect("valid for b").provider, "b");
        // Issuer b's RS256 token does not fit issuer a's HS256 verifier, and vice versa.
        let token = mint_hs(
            Algorithm::HS256,
            SECRET,
            &json!({"sub": "u", "iss": "issuer-b", "exp": now() + 60}),
        );
        assert_eq!(a.verify(&token), Err(AuthError::WrongIssuer));
    }

    #[test]
    fn claim_errors_of_the_signing_provider_win_over_other_signature_errors() {
        let secret_b = b"policy-b-secret-policy-b-secret!";
        let a = auth(&[provider("a", hmac(SECRET)), provider("b", hmac(secret_b))]);
        let token = mint_hs(Algorithm::HS256, secret_b, &json!({"sub": "u", "exp": now() - 120}));
        assert_eq!(a.verify(&token), Err(AuthError::Expired));
        let token = mint_hs(Algorithm::HS256, b"nobody-knows-this-secret-at-all", &claims());
        assert_eq!(a.verify(&token), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn not_configured() {
        let a = auth(&[]);
        assert!(!a.is_configured());
        let token = mint_hs(Algorithm::HS256, SECRET, &claims());
        assert_eq!(a.verify(&token), Err(AuthError::NotConfigured));
        assert!(auth(&[provider("p", hmac(SECRET))]).is_configured());
    }

    #[test]
    fn malformed_tokens() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let no_alg = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
        let array = URL_SAFE_NO_PAD.encode(b"[1,2]");
        let cases = [
            String::new(),
            "   ".into(),
            "abc".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!!.???.***".into(),
            format!("{header}.{array}.sig"),
            format!("{header}.not-base64!.sig"),
            format!("{no_alg}.{array}.sig"),
            format!("{header}.{}.sig", "A".repeat(MAX_TOKEN_BYTES)),
        ];
        for token in cases {
            let err = a.verify(&token).expect_err("malformed");
            assert!(matches!(err, AuthError::Malformed(_)), "{token:.40}: {err:?}");
        }
        // Valid shape, garbage signature.
        let token = mint_hs(Algorithm::HS256, SECRET, &claims());
        let (rest, _) = token.rsplit_once('.').expect("three parts");
        assert!(a.verify(&format!("{rest}.%%%")).is_err());
        assert_eq!(a.verify(&format!("{rest}.")), Err(AuthError::InvalidSignature));
    }

    #[test]
    fn invalid_keys_name_the_policy_without_leaking_the_key() {
        let bad_secret = JwtKey::Hmac {
            secret: "not base64 !!! s3cr3t".into(),
        };
        let err = Authenticator::new(&[provider("chat", bad_secret)]).expect_err("bad secret");
        let AuthError::InvalidKey { policy, .. } = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(policy, "chat");
        assert!(!err.to_string().contains("s3cr3t"), "{err}");

        let empty = JwtKey::Hmac { secret: String::new() };
        assert!(matches!(
            Authenticator::new(&[provider("e", empty)]),
            Err(AuthError::InvalidKey { .. })
        ));

        let garbage_pem = "-----BEGIN PUBLIC KEY-----\nAAAAsecretish\n-----END PUBLIC KEY-----\n";
        let err = Authenticator::new(&[
            provider("ok", hmac(SECRET)),
            provider(
                "r",
                JwtKey::Rsa {
                    pem: garbage_pem.into(),
                },
            ),
        ])
        .expect_err("bad pem");
        assert!(matches!(&err, AuthError::InvalidKey { policy, .. } if policy == "r"));
        assert!(!err.to_string().contains("secretish"), "{err}");
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let a = auth(&[provider("p", hmac(SECRET))]);
        let debug = format!("{a:?}");
        assert!(debug.contains("\"p\""), "{debug}");
        assert!(!debug.contains(&STANDARD.encode(SECRET)), "{debug}");
    }

    #[test]
    fn client_facing_messages() {
        assert_eq!(AuthError::InvalidSignature.to_string(), "token signature is invalid");
        assert_eq!(AuthError::WrongIssuer.to_string(), "token issuer is not accepted");
        assert_eq!(AuthError::WrongAudience.to_string(), "token audience is not accepted");
        assert_eq!(
            AuthError::UnsupportedAlgorithm.to_string(),
            "token algorithm is not accepted"
        );
        assert_eq!(AuthError::Malformed("x".into()).to_string(), "malformed token: x");
        assert!(!AuthError::WrongIssuer.is_expired());
    }
}
