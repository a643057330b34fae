//! Presence shared by all sidecars: per topic a hash of entries (session -> JSON) and a
//! sorted set of their expiry times. The sidecar that holds a session's connection owns
//! its entry and extends its expiry every third of the TTL ([`Presence::refresh`]); a
//! sidecar that dies stops doing so, and any sidecar's periodic sweep
//! ([`Presence::sweep`]) then removes the entry and announces `presence.leave`. Entries
//! past their expiry are hidden from lists even before a sweep removed them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::prelude::{Options, Value};
use parking_lot::Mutex;

use super::store::Store;
use crate::backend::{BackendError, PresenceEntry};
use crate::event::unix_ms;

/// Most entries one sweep call removes per topic.
const SWEEP_BATCH: usize = 500;

/// Sessions (session, entry JSON) this sidecar owns on one topic.
type OwnedSessions = Vec<(String, String)>;

/// Presence entries of one backend instance, and the ones this sidecar owns.
#[derive(Debug)]
pub struct Presence {
    store: Arc<Store>,
    ttl: Duration,
    /// topic -> session -> entry JSON, for the sessions connected to this sidecar.
    owned: Mutex<HashMap<Arc<str>, HashMap<String, String>>>,
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(Value::into_string).collect(),
        _ => Vec::new(),
    }
}

fn parse_entries(v: Value, topic: &str) -> Vec<PresenceEntry> {
    strings(v)
        .iter()
        .filter_map(|json| match serde_json::from_str::<PresenceEntry>(json) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(topic, error = %e, "skipping unreadable presence entry");
                None
            }
        })
        .collect()
}

impl Presence {
    pub fn new(store: Arc<Store>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            owned: Mutex::new(HashMap::new()),
        }
    }

    /// How often owned entries are refreshed, and expired ones swept.
    pub fn refresh_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    fn keys(&self, topic: &str) -> Vec<String> {
        let k = self.store.keys.topic(topic);
        vec![k.presence, k.presence_expiry]
    }

    async fn run(
        &self,
        op: &'static str,
        script: &super::scripts::LuaScript,
        topic: &str,
        args: Vec<Value>,
    ) -> Result<Value, BackendError> {
        let client = self.store.client.with_options(&Options {
            timeout: Some(self.store.timeout),
            ..Default::default()
        });
        let reply = script
            .run(&client, self.keys(topic), args)
            .await
            .map_err(|e| self.store.health.failed(op, &e))?;
        self.store.health.succeeded();
        Ok(reply)
    }

    /// Records an entry owned by this sidecar; true when it is new.
    pub async fn join(&self, topic: &str, entry: &PresenceEntry) -> Result<bool, BackendError> {
        let json = serde_json::to_string(entry).map_err(|e| BackendError::Protocol(e.to_string()))?;
        let expires = unix_ms().saturating_add(ttl_ms(self.ttl));
        let args = vec![
            Value::from(entry.session.as_str()),
            Value::from(json.as_str()),
            Value::from(expires.to_string()),
        ];
        self.owned
            .lock()
            .entry(Arc::from(topic))
            .or_default()
            .insert(entry.session.clone(), json);
        let reply = self
            .run("presence_join", &self.store.scripts.presence_join, topic, args)
            .await?;
        Ok(matches!(reply, Value::Integer(1)))
    }

    /// Removes an entry; true when it was present.
    pub async fn leave(&self, topic: &str, session: &str) -> Result<bool, BackendError> {
        {
            let mut owned = self.owned.lock();
            if let Some(sessions) = owned.get_mut(topic) {
                sessions.remove(session);
                if sessions.is_empty() {
                    owned.remove(topic);
                }
            }
        }
        let reply = self
            .run(
                "presence_leave",
                &self.store.scripts.presence_leave,
                topic,
                vec![Value::from(session)],
            )
            .await?;
        Ok(matches!(reply, Value::Integer(1)))
    }

    /// Entries not expired, oldest connection first.
    pub async fn list(&self, topic: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        let reply = self
            .run(
                "presence_list",
                &self.store.scripts.presence_list,
                topic,
                vec![Value::from(unix_ms().to_string())],
            )
            .await?;
        let mut list = parse_entries(reply, topic);
        list.sort_by(|a, b| (a.connected_at, &a.session).cmp(&(b.connected_at, &b.session)));
        Ok(list)
    }

    /// Extends the expiry of every owned entry; returns entries that had vanished and
    /// were added again (their `presence.join` is announced again).
    pub async fn refresh(&self) -> Vec<(Arc<str>, PresenceEntry)> {
        let owned: Vec<(Arc<str>, OwnedSessions)> = self
            .owned
            .lock()
            .iter()
            .map(|(t, s)| (t.clone(), s.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
            .collect();
        let expires = unix_ms().saturating_add(ttl_ms(self.ttl));
        let mut rejoined = Vec::new();
        for (topic, sessions) in owned {
            let mut args = Vec::with_capacity(1 + sessions.len() * 2);
            args.push(Value::from(expires.to_string()));
            for (session, json) in &sessions {
                args.push(Value::from(session.as_str()));
                args.push(Value::from(json.as_str()));
            }
            match self
                .run("presence_refresh", &self.store.scripts.presence_refresh, &topic, args)
                .await
            {
                Ok(reply) => {
                    for session in strings(reply) {
                        let entry = sessions
                            .iter()
                            .find(|(s, _)| *s == session)
                            .and_then(|(_, json)| serde_json::from_str::<PresenceEntry>(json).ok());
                        if let Some(entry) = entry {
                            rejoined.push((topic.clone(), entry));
                        }
                    }
                }
                Err(e) => tracing::debug!(topic = %topic, error = %e, "refreshing presence"),
            }
        }
        rejoined
    }

    /// Removes expired entries of a topic; the caller announces their leave.
    pub async fn sweep(&self, topic: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        let reply = self
            .run(
                "presence_sweep",
                &self.store.scripts.presence_sweep,
                topic,
                vec![Value::from(unix_ms().to_string()), Value::from(SWEEP_BATCH.to_string())],
            )
            .await?;
        Ok(parse_entries(reply, topic))
    }

    /// Forgets owned entries of topics no longer configured.
    pub fn retain_topics(&self, keep: &dyn Fn(&str) -> bool) {
        self.owned.lock().retain(|t, _| keep(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_skip_garbage() {
        let v = Value::Array(vec![
            Value::from(r#"{"session":"s1","user":"alice","connectedAt":5}"#),
            Value::from("not json"),
            Value::from(r#"{"session":"s2","connectedAt":1}"#),
        ]);
        let list = parse_entries(v, "t");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].user.as_deref(), Some("alice"));
        assert_eq!(list[1].device, None);
        assert!(parse_entries(Value::Null, "t").is_empty());
    }
}
