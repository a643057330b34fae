//! The topics of a run (`--topic`, `--topics`): one topic named `--topic`, or
//! `--topics N` topics named `{topic}-0` … `{topic}-{N-1}`. Client `i`
//! subscribes to topic `i mod N` (so N topics × k subscribers each is
//! `--subscribers N*k`) and event `k` of the publisher goes to topic `k mod N`
//! (uniform publishing).
//!
//! Systems that name the channel in the WebSocket URL (nchan) take the URL as
//! a template: `{topic}` in `--ws` is replaced by each client's topic,
//! percent-encoded.

use std::fmt;

use crate::endpoint::percent_encode;

/// The placeholder in a `--ws` URL replaced by a client's topic.
pub const PLACEHOLDER: &str = "{topic}";

/// The names of the topics of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSet {
    base: String,
    count: usize,
}

impl TopicSet {
    /// `count` topics derived from `base` (at least one; one topic is `base` itself).
    pub fn new(base: &str, count: usize) -> Self {
        Self {
            base: base.to_owned(),
            count: count.max(1),
        }
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a set has at least one topic.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Name of topic `index` (`index < len()`).
    pub fn name(&self, index: usize) -> String {
        if self.count == 1 {
            self.base.clone()
        } else {
            format!("{}-{index}", self.base)
        }
    }

    /// All names, in index order.
    pub fn names(&self) -> Vec<String> {
        (0..self.count).map(|i| self.name(i)).collect()
    }

    /// The topic index client `i` subscribes to.
    pub fn of_client(&self, client: usize) -> usize {
        client % self.count
    }

    /// The topic index event `k` of a run is published to.
    pub fn of_event(&self, event: u64) -> usize {
        // The remainder is below `count`, which is a usize.
        usize::try_from(event % self.count as u64).unwrap_or(0)
    }

    /// How many of `clients` clients (numbered from 0) subscribe to each topic.
    pub fn clients_per_topic(&self, clients: usize) -> Vec<u64> {
        let mut per = vec![0u64; self.count];
        for i in 0..clients {
            per[self.of_client(i)] += 1;
        }
        per
    }
}

impl fmt::Display for TopicSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 1 {
            write!(f, "{:?}", self.base)
        } else {
            write!(
                f,
                "{} topics {:?} .. {:?}",
                self.count,
                self.name(0),
                self.name(self.count - 1)
            )
        }
    }
}

/// `url` with every [`PLACEHOLDER`] replaced by `topic`, percent-encoded.
pub fn expand_url(url: &str, topic: &str) -> String {
    if url.contains(PLACEHOLDER) {
        url.replace(PLACEHOLDER, &percent_encode(topic))
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_topic_is_the_base_name() {
        let t = TopicSet::new("bench", 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.name(0), "bench");
        assert_eq!(t.of_client(7), 0);
        assert_eq!(t.of_event(9), 0);
        assert_eq!(t.clients_per_topic(3), vec![3]);
        assert_eq!(TopicSet::new("bench", 0).len(), 1);
    }

    #[test]
    fn many_topics_spread_clients_and_events() {
        let t = TopicSet::new("bench", 3);
        assert_eq!(t.names(), vec!["bench-0", "bench-1", "bench-2"]);
        assert_eq!((t.of_client(0), t.of_client(4), t.of_client(5)), (0, 1, 2));
        assert_eq!((t.of_event(3), t.of_event(7)), (0, 1));
        assert_eq!(t.clients_per_topic(7), vec![3, 2, 2]);
        assert_eq!(t.to_string(), "3 topics \"bench-0\" .. \"bench-2\"");
    }

    #[test]
    fn urls_are_templates() {
        assert_eq!(
            expand_url("ws://127.0.0.1:8090/sub/{topic}", "a b"),
            "ws://127.0.0.1:8090/sub/a%20b"
        );
        assert_eq!(
            expand_url("ws://127.0.0.1:8080/v1/ws", "x"),
            "ws://127.0.0.1:8080/v1/ws"
        );
    }
}
