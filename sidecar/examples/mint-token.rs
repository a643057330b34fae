//! Mints an HS256 JWT for trying the sidecar's authenticated topics out with the demo
//! policy in `examples/` (issuer `https://auth.example.com`, audience `eventcast`).
//! Never use the demo secret outside a laptop.
//!
//! ```sh
//! cargo run -q -p eventcast-sidecar --example mint-token -- --sub alice --roles member,customer
//! cargo run -q -p eventcast-sidecar --example mint-token -- --secret "$SECRET" --sub bob --ttl 600
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const DEMO_SECRET: &str = "eventcast-demo-secret-change-me-0123456789";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secret = flag("--secret").unwrap_or_else(|| DEMO_SECRET.to_owned());
    let sub = flag("--sub").unwrap_or_else(|| "alice".to_owned());
    let roles: Vec<String> = flag("--roles")
        .map(|r| r.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let ttl: u64 = flag("--ttl").map(|t| t.parse()).transpose()?.unwrap_or(3600);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = json!({
        "iss": flag("--iss").unwrap_or_else(|| "https://auth.example.com".to_owned()),
        "aud": flag("--aud").unwrap_or_else(|| "eventcast".to_owned()),
        "sub": sub,
        "roles": roles,
        "iat": now,
        "exp": now + ttl,
    });
    if let Some(device) = flag("--device") {
        claims["device_id"] = json!(device);
    }
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?;
    println!("{token}");
    Ok(())
}
