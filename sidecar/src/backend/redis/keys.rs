//! The Redis key scheme. Every key of a topic carries the topic name as its hash tag
//! (`{chat.room-42}`), so they all live in one slot: the append script can touch the
//! metadata, the history stream, the idempotency keys and the sharded pub/sub channel
//! atomically on one node. Topic names are `[A-Za-z0-9_:-]` segments joined by dots
//! (see `eventcast_api::pattern`), so they never contain the `{`/`}` of a hash tag.

/// Prefix of every key Eventcast writes.
const PREFIX: &str = "ec:";

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

impl TopicKeys {
    pub fn new(topic: &str) -> Self {
        let tag = format!("{PREFIX}{{{topic}}}");
        Self {
            meta: format!("{tag}:meta"),
            log: format!("{tag}:log"),
            ids: format!("{tag}:ids"),
            id_times: format!("{tag}:idt"),
            presence: format!("{tag}:presence"),
            presence_expiry: format!("{tag}:presence-exp"),
            channel: tag,
        }
    }
}

/// The sharded channel of a topic.
pub fn channel(topic: &str) -> String {
    format!("{PREFIX}{{{topic}}}")
}

/// The topic a channel belongs to, if it is one of ours.
pub fn topic_of_channel(channel: &str) -> Option<&str> {
    channel
        .strip_prefix(PREFIX)?
        .strip_prefix('{')?
        .strip_suffix('}')
        .filter(|t| !t.is_empty() && !t.contains(['{', '}']))
}

/// Key of one distributed rate-limit bucket: `(scope, kind, key)` as the hash tag, so a
/// bucket is one key in one slot.
pub fn rate_limit(scope: &str, kind: &str, key: &str) -> String {
    format!("{PREFIX}rl:{{{scope}:{kind}:{key}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hash_tag_per_topic() {
        let k = TopicKeys::new("chat.room-42");
        assert_eq!(k.meta, "ec:{chat.room-42}:meta");
        assert_eq!(k.log, "ec:{chat.room-42}:log");
        assert_eq!(k.ids, "ec:{chat.room-42}:ids");
        assert_eq!(k.id_times, "ec:{chat.room-42}:idt");
        assert_eq!(k.presence, "ec:{chat.room-42}:presence");
        assert_eq!(k.presence_expiry, "ec:{chat.room-42}:presence-exp");
        assert_eq!(k.channel, "ec:{chat.room-42}");
        assert_eq!(channel("chat.room-42"), k.channel);
        let slot = fred::util::redis_keyslot(k.meta.as_bytes());
        for key in [&k.log, &k.ids, &k.id_times, &k.presence, &k.presence_expiry, &k.channel] {
            assert_eq!(fred::util::redis_keyslot(key.as_bytes()), slot, "{key}");
        }
        assert_eq!(slot, fred::util::redis_keyslot(b"chat.room-42"));
    }

    #[test]
    fn channel_round_trip() {
        assert_eq!(topic_of_channel("ec:{chat.room-42}"), Some("chat.room-42"));
        assert_eq!(topic_of_channel(&channel("a:b.c_d")), Some("a:b.c_d"));
        for bad in ["ec:{}", "ec:chat", "other:{chat}", "ec:{chat}:log", "ec:{a{b}"] {
            assert_eq!(topic_of_channel(bad), None, "{bad}");
        }
    }

    #[test]
    fn rate_limit_keys_are_one_slot_each() {
        assert_eq!(
            rate_limit("chat-policy", "user", "alice"),
            "ec:rl:{chat-policy:user:alice}"
        );
    }
}
