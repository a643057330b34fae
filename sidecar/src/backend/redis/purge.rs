//! Purging a topic: the operator asks one sidecar of a namespace to delete a deleted
//! Topic's stored data (`deletionPolicy: Delete`). All of a topic's keys share its hash
//! tag, hence one slot, so a single `DEL` removes them together. With the metadata gone
//! the append script starts a new epoch at offset 1 (see `ensure_epoch` in
//! `prelude.lua`), so clients recovering from an old position learn `recovered: false`.

use fred::interfaces::{ClientLike, KeysInterface};

use super::keys::{KeySpace, TopicKeys};
use super::store::Store;
use crate::backend::BackendError;

/// Every stored key of a topic (the pub/sub channel is not a key).
pub fn stored_keys(keys: &KeySpace, topic: &str) -> Vec<String> {
    let TopicKeys {
        meta,
        log,
        ids,
        id_times,
        presence,
        presence_expiry,
        channel: _,
    } = keys.topic(topic);
    vec![meta, log, ids, id_times, presence, presence_expiry]
}

impl Store {
    /// Deletes all of a topic's keys in one `DEL` (retried on outage: deleting twice is harmless).
    pub async fn purge(&self, topic: &str) -> Result<(), BackendError> {
        let keys = stored_keys(&self.keys, topic);
        let _deleted: i64 = self
            .client
            .with_options(&self.options(None))
            .del(keys)
            .await
            .map_err(|e| self.health.failed("purge", &e))?;
        self.health.succeeded();
        tracing::info!(topic, "topic data purged");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_covers_every_stored_key_in_one_slot() {
        let ks = KeySpace::new("demo");
        let keys = stored_keys(&ks, "chat.room-42");
        assert_eq!(
            keys,
            [
                "ec:demo:{chat.room-42}:meta",
                "ec:demo:{chat.room-42}:log",
                "ec:demo:{chat.room-42}:ids",
                "ec:demo:{chat.room-42}:idt",
                "ec:demo:{chat.room-42}:presence",
                "ec:demo:{chat.room-42}:presence-exp",
            ]
        );
        let slot = fred::util::redis_keyslot(keys[0].as_bytes());
        assert!(keys.iter().all(|k| fred::util::redis_keyslot(k.as_bytes()) == slot));
    }
}
