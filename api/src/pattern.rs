//! Names and dotted name patterns for topics and event types.
//!
//! A name is dot-separated segments of `[A-Za-z0-9_:-]`. A pattern may use `*` for
//! exactly one segment and `**` for any number of segments (including none), so
//! `chat.*` matches `chat.room-42` but not `chat.room.42`, and `**` matches everything.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest topic or event-type name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// Why a name or pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("is empty")]
    Empty,
    #[error("{0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("{0:?} has an empty segment (leading, trailing or double dot)")]
    EmptySegment(String),
    #[error("{input:?} has invalid character {ch:?} (segments use letters, digits, '_', '-', ':')")]
    InvalidChar { input: String, ch: char },
    #[error("{0:?} mixes a wildcard with other characters in one segment; use `*` or `**` as a whole segment")]
    PartialWildcard(String),
    #[error("{0:?} contains a wildcard, which names may not")]
    WildcardInName(String),
}

fn valid_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')
}

/// Checks a concrete topic or event-type name (no wildcards).
pub fn validate_name(name: &str) -> Result<(), PatternError> {
    let pattern: Pattern = name.parse()?;
    if pattern.has_wildcard() {
        return Err(PatternError::WildcardInName(name.to_owned()));
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    One,
    Many,
}

/// A compiled dotted pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: String,
    segments: Vec<Segment>,
}

impl Pattern {
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn has_wildcard(&self) -> bool {
        self.segments.iter().any(|s| !matches!(s, Segment::Literal(_)))
    }

    /// The literal name when the pattern has no wildcard.
    pub fn literal(&self) -> Option<&str> {
        (!self.has_wildcard()).then_some(self.source.as_str())
    }

    /// Whether `name` matches. Allocation-free; `**` backtracks over segments.
    pub fn matches(&self, name: &str) -> bool {
        if let Some(lit) = self.literal() {
            return lit == name;
        }
        let parts: Vec<&str> = name.split('.').collect();
        match_from(&self.segments, &parts)
    }
}

fn match_from(pattern: &[Segment], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((Segment::Many, rest)) => (0..=name.len()).any(|skip| match_from(rest, &name[skip..])),
        Some((Segment::One, rest)) => !name.is_empty() && match_from(rest, &name[1..]),
        Some((Segment::Literal(lit), rest)) => name.first() == Some(&lit.as_str()) && match_from(rest, &name[1..]),
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(PatternError::Empty);
        }
        if input.len() > MAX_NAME_LEN {
            return Err(PatternError::TooLong(input.to_owned()));
        }
        let mut segments = Vec::new();
        for seg in input.split('.') {
            let s = match seg {
                "" => return Err(PatternError::EmptySegment(input.to_owned())),
                "*" => Segment::One,
                "**" => Segment::Many,
                _ if seg.contains('*') => return Err(PatternError::PartialWildcard(input.to_owned())),
                _ => {
                    if let Some(ch) = seg.chars().find(|c| !valid_segment_char(*c)) {
                        return Err(PatternError::InvalidChar {
                            input: input.to_owned(),
                            ch,
                        });
                    }
                    Segment::Literal(seg.to_owned())
                }
            };
            // `**.**` is the same as `**`; collapsing keeps matching linear-ish.
            if s == Segment::Many && segments.last() == Some(&Segment::Many) {
                continue;
            }
            segments.push(s);
        }
        Ok(Self {
            source: input.to_owned(),
            segments,
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of patterns; matches when any member does. Empty matches everything, which is
/// what "no `types` given" means on a subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PatternSet(pub Vec<Pattern>);

impl PatternSet {
    pub fn matches(&self, name: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(name))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<Self, (usize, PatternError)> {
        items
            .iter()
            .enumerate()
            .map(|(i, s)| s.as_ref().parse().map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        s.parse().expect("valid pattern")
    }

    #[test]
    fn literal_matches_only_itself() {
        assert!(p("chat.room-42").matches("chat.room-42"));
        assert!(!p("chat.room-42").matches("chat.room-4"));
        assert!(!p("chat").matches("chat.room"));
    }

    #[test]
    fn single_star_is_exactly_one_segment() {
        let pat = p("chat.*");
        assert!(pat.matches("chat.room-42"));
        assert!(!pat.matches("chat"));
        assert!(!pat.matches("chat.room.42"));
        assert!(!pat.matches("other.room"));
        assert!(p("*.typing").matches("room1.typing"));
        assert!(p("*").matches("x"));
        assert!(!p("*").matches("x.y"));
    }

    #[test]
    fn double_star_is_any_number_of_segments() {
        assert!(p("**").matches("a"));
        assert!(p("**").matches("a.b.c"));
        assert!(p("chat.**").matches("chat"));
        assert!(p("chat.**").matches("chat.a.b"));
        assert!(p("**.typing").matches("chat.room.typing"));
        assert!(p("**.typing").matches("typing"));
        assert!(!p("**.typing").matches("chat.room"));
        assert!(p("a.**.z").matches("a.b.c.z"));
        assert!(p("a.**.z").matches("a.z"));
        assert!(!p("a.**.z").matches("a.b"));
        assert!(p("a.**.**.z").matches("a.z"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert_eq!("".parse::<Pattern>(), Err(PatternError::Empty));
        assert!(matches!("a..b".parse::<Pattern>(), Err(PatternError::EmptySegment(_))));
        assert!(matches!("a.".parse::<Pattern>(), Err(PatternError::EmptySegment(_))));
        assert!(matches!(
            "room-*".parse::<Pattern>(),
            Err(PatternError::PartialWildcard(_))
        ));
        assert!(matches!(
            "a b".parse::<Pattern>(),
            Err(PatternError::InvalidChar { ch: ' ', .. })
        ));
        assert!(matches!(
            "a{b}".parse::<Pattern>(),
            Err(PatternError::InvalidChar { ch: '{', .. })
        ));
        assert!(matches!(
            "x".repeat(201).parse::<Pattern>(),
            Err(PatternError::TooLong(_))
        ));
    }

    #[test]
    fn names_reject_wildcards() {
        assert!(validate_name("chat.room-42").is_ok());
        assert!(matches!(validate_name("chat.*"), Err(PatternError::WildcardInName(_))));
    }

    #[test]
    fn empty_set_matches_all() {
        let set = PatternSet::default();
        assert!(set.matches("anything"));
        let set = PatternSet::parse_all(&["message.*", "typing"]).expect("valid");
        assert!(set.matches("message.sent"));
        assert!(set.matches("typing"));
        assert!(!set.matches("presence.join"));
        assert_eq!(
            PatternSet::parse_all(&["ok", "bad..x"])
                .map(|_| ())
                .expect_err("second is bad")
                .0,
            1
        );
    }
}
