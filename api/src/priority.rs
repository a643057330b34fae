//! Event priority classes. Each connection keeps one outbound queue per class and always
//! writes a higher class first; under backpressure the lowest classes are shed first.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Priority of an event, highest first in declaration order of importance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Priority {
    /// Best effort; shed first.
    Background,
    Low,
    #[default]
    Normal,
    High,
    /// Never shed silently: if it cannot be queued the connection is closed so the
    /// client reconnects and recovers from history.
    Critical,
}

impl Priority {
    /// All classes, highest first: the order in which a connection drains its queues.
    pub const HIGHEST_FIRST: [Priority; 5] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Background,
    ];

    /// Dense index for per-class arrays; 0 is the highest class.
    pub const fn index(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
            Priority::Background => 4,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }

    /// Delivery latency target (seed figures from the design); `None` is best effort.
    pub const fn default_latency_target_ms(self) -> Option<u64> {
        match self {
            Priority::Critical => Some(25),
            Priority::High => Some(75),
            Priority::Normal => Some(200),
            Priority::Low => Some(1000),
            Priority::Background => None,
        }
    }

    /// Default per-connection queue length for the class.
    pub const fn default_queue_size(self) -> u32 {
        match self {
            Priority::Critical | Priority::High | Priority::Normal => 1024,
            Priority::Low => 256,
            Priority::Background => 128,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown priority name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?} (expected critical, high, normal, low or background)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "critical" => Priority::Critical,
            "high" => Priority::High,
            "normal" => Priority::Normal,
            "low" => Priority::Low,
            "background" => Priority::Background,
            other => return Err(UnknownPriority(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_matches_importance() {
        assert!(Priority::Critical > Priority::High);
        assert!(Priority::High > Priority::Normal);
        assert!(Priority::Low > Priority::Background);
        let idx: Vec<usize> = Priority::HIGHEST_FIRST.iter().map(|p| p.index()).collect();
        assert_eq!(idx, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn names_round_trip() {
        for p in Priority::HIGHEST_FIRST {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).expect("ser"), format!("\"{p}\""));
        }
        assert!("urgent".parse::<Priority>().is_err());
    }
}
