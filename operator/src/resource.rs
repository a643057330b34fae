//! Identity of the resources the operator reconciles.

use std::fmt;

/// The three reconciled kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Topic,
    Subscription,
    BroadcastPolicy,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "Topic",
            Kind::Subscription => "Subscription",
            Kind::BroadcastPolicy => "BroadcastPolicy",
        }
    }
}

/// One resource: kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}
