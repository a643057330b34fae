//! The Redis key scheme. Every key of a topic carries the topic name as its hash tag
//! (`{chat.room-42}`), so they all live in one slot: the append script can touch the
//! metadata, the history stream, the idempotency keys and the sharded pub/sub channel
//! atomically on one node. Keys start with `ec:<namespace>:` so that namespaces sharing
//! one cluster never share a topic's state. Topic names are `[A-Za-z0-9_:-]` segments
//! joined by dots and namespaces are DNS labels (see `eventcast_api::pattern`), so
//! neither contains the `{`/`}` of a hash tag.

/// The keys of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    /// `ec:<namespace>:`
    prefix: String,
}

/// Keys and channel of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicKeys {
    /// Hash: `epoch` (random, chosen when the topic's history starts) and `offset` (last assigned).
    pub meta: String,
    /// Stream of history; entry id `<offset>-1`, fields `e` (stored event JSON) and `t` (published at, unix ms).
    pub log: String,
    /// Hash: idempotency id -> offset.
    pub ids: String,
    /// Sorted set: idempotency id scored by publish time, for trimming `ids`.
    pub id_times: String,
    /// Hash: session -> presence entry JSON.
    pub presence: String,
    /// Sorted set: session scored by the unix ms its presence entry expires.
    pub presence_expiry: String,
    /// Sharded pub/sub channel of delivery payloads.
    pub channel: String,
}

impl KeySpace {
    pub fn new(namespace: &str) -> Self {
        Self {
            prefix: format!("ec:{namespace}:"),
        }
    }

    /// Keys of a topic.
    pub fn topic(&self, topic: &str) -> TopicKeys {
        let tag = self.channel(topic);
        TopicKeys {
            meta: format!("{tag}:meta"),
            log: format!("{tag}:log"),
            ids: format!("{tag}:ids"),
            id_times: format!("{tag}:idt"),
            presence: format!("{tag}:presence"),
            presence_expiry: format!("{tag}:presence-exp"),
            channel: tag,
        }
    }

    /// The sharded channel of a topic.
    pub fn channel(&self, topic: &str) -> String {
        format!("{}{{{topic}}}", self.prefix)
    }

    /// The topic a channel belongs to, if it is one of this namespace's.
    pub fn topic_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('{')?
            .strip_suffix('}')
            .filter(|t| !t.is_empty() && !t.contains(['{', '}']))
    }

    /// Key of one distributed rate-limit bucket: `(scope, kind, key)` as the hash tag,
    /// so a bucket is one key in one slot.
    pub fn rate_limit(&self, scope: &str, kind: &str, key: &str) -> String {
        format!("{}rl:{{{scope}:{kind}:{key}}}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hash_tag_per_topic() {
        let ks = KeySpace::new("demo");
        let k = ks.topic("chat.room-42");
        assert_eq!(k.meta, "ec:demo:{chat.room-42}:meta");
        assert_eq!(k.log, "ec:demo:{chat.room-42}:log");
        assert_eq!(k.ids, "ec:demo:{chat.room-42}:ids");
        assert_eq!(k.id_times, "ec:demo:{chat.room-42}:idt");
        assert_eq!(k.presence, "ec:demo:{chat.room-42}:presence");
        assert_eq!(k.presence_expiry, "ec:demo:{chat.room-42}:presence-exp");
        assert_eq!(k.channel, "ec:demo:{chat.room-42}");
        assert_eq!(ks.channel("chat.room-42"), k.channel);
        let slot = fred::util::redis_keyslot(k.meta.as_bytes());
        for key in [&k.log, &k.ids, &k.id_times, &k.presence, &k.presence_expiry, &k.channel] {
            assert_eq!(fred::util::redis_keyslot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(slot, fred::util::redis_keyslot(b"chat.room-42"));
    }

    #[test]
    fn namespaces_never_share_keys() {
        let a = KeySpace::new("team-a").topic("chat");
        let b = KeySpace::new("team-b").topic("chat");
        assert_ne!(a.meta, b.meta);
        assert_ne!(a.channel, b.channel);
        assert_eq!(
            KeySpace::new("team-b").topic_of_channel(&a.channel),
            None,
            "another namespace's channel is not ours"
        );
    }

    #[test]
    fn channel_round_trip() {
        let ks = KeySpace::new("default");
        assert_eq!(ks.topic_of_channel("ec:default:{chat.room-42}"), Some("chat.room-42"));
        assert_eq!(ks.topic_of_channel(&ks.channel("a:b.c_d")), Some("a:b.c_d"));
        for bad in [
            "ec:default:{}",
            "ec:default:chat",
            "other:{chat}",
            "ec:{chat}",
            "ec:default:{chat}:log",
            "ec:default:{a{b}",
        ] {
            assert_eq!(ks.topic_of_channel(bad), None, "{bad}");
        }
    }

    #[test]
    fn rate_limit_keys_are_one_slot_each() {
        assert_eq!(
            KeySpace::new("default").rate_limit("chat-policy", "user", "alice"),
            "ec:default:rl:{chat-policy:user:alice}"
        );
    }
}
