//! Secrets the compiler resolves `secretRef`s against: name -> key -> bytes.

use std::collections::BTreeMap;

/// The namespace's Secrets, already base64-decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets(pub BTreeMap<String, BTreeMap<String, Vec<u8>>>);

/// Why a secret reference could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretLookupError {
    NoSecret(String),
    NoKey { secret: String, key: String },
}

impl std::fmt::Display for SecretLookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSecret(s) => write!(f, "Secret {s:?} not found"),
            Self::NoKey { secret, key } => write!(f, "Secret {secret:?} has no key {key:?}"),
        }
    }
}

impl Secrets {
    pub fn insert(&mut self, name: impl Into<String>, data: BTreeMap<String, Vec<u8>>) {
        self.0.insert(name.into(), data);
    }

    pub fn secret(&self, name: &str) -> Result<&BTreeMap<String, Vec<u8>>, SecretLookupError> {
        self.0
            .get(name)
            .ok_or_else(|| SecretLookupError::NoSecret(name.to_owned()))
    }

    pub fn key(&self, name: &str, key: &str) -> Result<&[u8], SecretLookupError> {
        self.secret(name)?
            .get(key)
            .map(Vec::as_slice)
            .ok_or_else(|| SecretLookupError::NoKey {
                secret: name.to_owned(),
                key: key.to_owned(),
            })
    }
}
