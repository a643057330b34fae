//! Kubernetes-style duration strings (`200ms`, `5s`, `1h30m`) as used throughout the
//! custom resources. Parsed once at the edge into `std::time::Duration`; serialized back
//! in a canonical form so that compiled configs hash the same however a user wrote them.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Pattern accepted by the CRD schema; the parser below accepts exactly this language.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A non-negative duration written as a Kubernetes duration string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 200ms, 5s, 1m30s, 1h)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(StdDuration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(StdDuration::from_secs(s))
    }

    pub const fn as_std(self) -> StdDuration {
        self.0
    }

    /// Milliseconds, saturating; what the compiled config stores.
    pub fn as_millis_u64(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        let mut total_nanos: u128 = 0;
        let mut rest = input;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| err("missing unit"))?;
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(err("unknown unit")),
            };
            let (int_part, frac_part) = match num.split_once('.') {
                Some((i, f)) if !i.is_empty() && !f.is_empty() && !f.contains('.') => (i, f),
                Some(_) => return Err(err("malformed number")),
                None => (num, ""),
            };
            let int: u128 = int_part.parse().map_err(|_| err("number too large"))?;
            let mut nanos = int.checked_mul(unit_nanos).ok_or_else(|| err("number too large"))?;
            if !frac_part.is_empty() {
                // Fractions beyond nanosecond precision are truncated, as Go does.
                let digits = frac_part.len().min(18);
                let frac: u128 = frac_part[..digits].parse().map_err(|_| err("malformed number"))?;
                let scale = 10u128.pow(u32::try_from(digits).unwrap_or(18));
                nanos += frac * unit_nanos / scale;
            }
            total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| err("number too large"))?;
            rest = tail;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err("number too large"))?;
        let sub = u32::try_from(total_nanos % 1_000_000_000).unwrap_or(0);
        Ok(Self(StdDuration::new(secs, sub)))
    }
}

impl fmt::Display for Duration {
    /// Canonical form: the largest units that represent the value exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        if !nanos.is_multiple_of(1_000_000_000) {
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1_000) {
                write!(f, "{}us", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let mut secs = nanos / 1_000_000_000;
        let hours = secs / 3600;
        secs %= 3600;
        let mins = secs / 60;
        secs %= 60;
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if mins > 0 {
            write!(f, "{mins}m")?;
        }
        if secs > 0 {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as 200ms, 5s, 1m30s or 1h."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse().expect("valid duration")
    }

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(d("200ms").0, StdDuration::from_millis(200));
        assert_eq!(d("5s").0, StdDuration::from_secs(5));
        assert_eq!(d("1h").0, StdDuration::from_secs(3600));
        assert_eq!(d("1m30s").0, StdDuration::from_secs(90));
        assert_eq!(d("1.5s").0, StdDuration::from_millis(1500));
        assert_eq!(d("10us").0, StdDuration::from_micros(10));
        assert_eq!(d("0s").0, StdDuration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_reason() {
        for bad in [
            "",
            "5",
            "s",
            "5x",
            "1..5s",
            "-1s",
            "5 s",
            ".5s",
            "99999999999999999999999h",
        ] {
            let e = bad.parse::<Duration>().expect_err(bad);
            assert_eq!(e.input, bad);
        }
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (input, canon) in [
            ("90s", "1m30s"),
            ("3600s", "1h"),
            ("1500ms", "1500ms"),
            ("0ms", "0s"),
            ("2h0m5s", "2h5s"),
        ] {
            let v = d(input);
            assert_eq!(v.to_string(), canon);
            assert_eq!(d(canon), v);
        }
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).expect("pattern compiles");
        for ok in ["200ms", "5s", "1h30m", "1.5s", "10µs"] {
            assert!(re.is_match(ok), "{ok}");
            assert!(ok.parse::<Duration>().is_ok(), "{ok}");
        }
        for bad in ["5", "abc", "5 s"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let v: Duration = serde_json::from_str("\"250ms\"").expect("json");
        assert_eq!(serde_json::to_string(&v).expect("ser"), "\"250ms\"");
        assert!(serde_json::from_str::<Duration>("\"forever\"").is_err());
    }
}
