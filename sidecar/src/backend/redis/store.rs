//! A topic's history in Redis: appending and reading through the atomic scripts, and
//! the head position (epoch, last offset) the listener compares against. Replies are
//! checked field by field; data that does not parse is reported, never unwrapped.

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::{ClientLike, HashesInterface};
use fred::prelude::{Client, Options, Pool, Value};
use fred::types::{ClusterHash, CustomCommand};

use super::health::Health;
use super::keys::KeySpace;
use super::payload::parse_stored;
use super::scripts::Scripts;
use crate::backend::memory::new_epoch;
use crate::backend::{BackendError, HistoryRead};
use crate::event::{EncodedEvent, SharedEvent, StoredEvent, unix_ms};
use crate::live_config::LiveTopic;

/// Idempotency ids kept at most per topic (as the memory backend).
const MAX_IDEMPOTENCY_KEYS: u32 = 100_000;
const MIN_IDEMPOTENCY_KEYS: u32 = 1000;

/// What the append script answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendReply {
    pub offset: u64,
    pub epoch: Arc<str>,
    pub duplicate: bool,
}

/// Outcome of waiting for a replica after a durable append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaAck {
    Acked,
    /// No replica confirmed within the wait (the event is on the master only).
    NotAcked,
    /// WAIT itself failed (the append had succeeded).
    Failed,
}

impl ReplicaAck {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::NotAcked => "not_acked",
            Self::Failed => "failed",
        }
    }
}

/// Redis access of the backend: the shared client, the scripts and the health record.
#[derive(Debug)]
pub struct Store {
    /// Pipelined client for everything but durable appends.
    pub client: Client,
    /// Clients for appends followed by `WAIT`: `WAIT` counts the writes of its own
    /// connection and blocks it (fred sends nothing else on that client meanwhile), so
    /// these run on separate connections, spread over a small pool.
    pub durable: Pool,
    pub scripts: Scripts,
    pub health: Arc<Health>,
    pub timeout: Duration,
    /// `WAIT` timeout of durable appends.
    pub replica_wait: Duration,
    /// This namespace's key scheme.
    pub keys: KeySpace,
}

fn retention_cutoff(topic: &LiveTopic, now_ms: u64) -> u64 {
    now_ms.saturating_sub(topic.config.retention.max_age_ms)
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<Arc<str>> {
    match v {
        Value::String(s) => Some(Arc::from(&**s)),
        Value::Bytes(b) => std::str::from_utf8(b).ok().map(Arc::from),
        _ => None,
    }
}

/// Parses `{offset, epoch, duplicate}`.
pub fn parse_append_reply(v: Value) -> Result<AppendReply, &'static str> {
    let Value::Array(items) = v else {
        return Err("not an array");
    };
    match items.as_slice() {
        [offset, epoch, dup] => Ok(AppendReply {
            offset: int(offset).ok_or("offset")?,
            epoch: text(epoch).ok_or("epoch")?,
            duplicate: int(dup).ok_or("duplicate flag")? != 0,
        }),
        _ => Err("not 3 items"),
    }
}

/// Parses `{epoch, offset_1, duplicate_1, ...}` of `count` events.
pub fn parse_append_many_reply(v: Value, count: usize) -> Result<Vec<AppendReply>, &'static str> {
    let Value::Array(items) = v else {
        return Err("not an array");
    };
    let Some((epoch, rest)) = items.split_first() else {
        return Err("empty");
    };
    let epoch = text(epoch).ok_or("epoch")?;
    if rest.len() != count * 2 {
        return Err("wrong number of results");
    }
    rest.chunks_exact(2)
        .map(|pair| {
            Ok(AppendReply {
                offset: int(&pair[0]).ok_or("offset")?,
                epoch: epoch.clone(),
                duplicate: int(&pair[1]).ok_or("duplicate flag")? != 0,
            })
        })
        .collect()
}

/// The read script's reply before events are parsed.
#[derive(Debug, PartialEq)]
pub struct RawRead {
    pub epoch: Arc<str>,
    pub first: u64,
    pub last: u64,
    /// (offset, stored event JSON), oldest first.
    pub events: Vec<(u64, Arc<str>)>,
}

/// Parses `{epoch, first, last, {offset, json, ...}}`.
pub fn parse_read_reply(v: Value) -> Result<RawRead, &'static str> {
    let Value::Array(items) = v else {
        return Err("not an array");
    };
    let [epoch, first, last, events] = items.as_slice() else {
        return Err("not 4 items");
    };
    let flat: &[Value] = match events {
        Value::Array(e) => e,
        Value::Null => &[],
        _ => return Err("events not an array"),
    };
    if !flat.len().is_multiple_of(2) {
        return Err("odd event list");
    }
    let events = flat
        .chunks_exact(2)
        .map(|pair| Some((int(&pair[0])?, text(&pair[1])?)))
        .collect::<Option<Vec<_>>>()
        .ok_or("event entry")?;
    Ok(RawRead {
        epoch: text(epoch).ok_or("epoch")?,
        first: int(first).ok_or("first")?,
        last: int(last).ok_or("last")?,
        events,
    })
}

impl Store {
    pub(super) fn options(&self, attempts: Option<u32>) -> Options {
        Options {
            timeout: Some(self.timeout),
            max_attempts: attempts,
            ..Default::default()
        }
    }

    /// Runs the append script. Without an idempotency id the command is sent at most
    /// once: a retry after a lost reply could append the event twice.
    pub async fn append(
        &self,
        topic: &LiveTopic,
        stored: &StoredEvent,
        dedup: bool,
    ) -> Result<AppendReply, BackendError> {
        self.append_on(&self.client, topic, stored, dedup).await
    }

    /// Appends on one of the durable clients, then waits (bounded) until a replica has
    /// the write. The append stands whatever the wait says.
    pub async fn append_durable(
        &self,
        topic: &LiveTopic,
        stored: &StoredEvent,
        dedup: bool,
    ) -> Result<(AppendReply, ReplicaAck), BackendError> {
        let client = self.durable.next();
        let reply = self.append_on(client, topic, stored, dedup).await?;
        if reply.duplicate {
            return Ok((reply, ReplicaAck::Acked));
        }
        let ack = self.wait_replica(client, &self.keys.topic(&topic.name).meta).await;
        Ok((reply, ack))
    }

    async fn append_on(
        &self,
        client: &Client,
        topic: &LiveTopic,
        stored: &StoredEvent,
        dedup: bool,
    ) -> Result<AppendReply, BackendError> {
        let json = serde_json::to_string(stored).map_err(|e| BackendError::Protocol(format!("encoding event: {e}")))?;
        let keys = self.keys.topic(&topic.name);
        let retention = topic.config.retention;
        let max_ids = retention.max_events.clamp(MIN_IDEMPOTENCY_KEYS, MAX_IDEMPOTENCY_KEYS);
        let args: Vec<Value> = vec![
            Value::from(&*new_epoch()),
            Value::from(json),
            Value::from(if dedup { stored.event.id.as_str() } else { "" }),
            Value::from(stored.published_at_ms.to_string()),
            Value::from(retention_cutoff(topic, unix_ms()).to_string()),
            Value::from(retention.max_events.to_string()),
            Value::from(max_ids.to_string()),
        ];
        let client = client.with_options(&self.options(if dedup { None } else { Some(1) }));
        let reply = self
            .scripts
            .append
            .run(
                &client,
                vec![keys.meta, keys.log, keys.ids, keys.id_times, keys.channel],
                args,
            )
            .await
            .map_err(|e| self.health.failed("append", &e))?;
        self.health.succeeded();
        parse_append_reply(reply).map_err(|what| self.health.bad_reply("append", what))
    }

    /// Appends `events` (each with its dedup flag) to one topic in one script call, in
    /// order. Sent at most once unless every event has an idempotency id.
    pub async fn append_many(
        &self,
        topic: &LiveTopic,
        events: &[(EncodedEvent, bool)],
        durable: bool,
    ) -> Result<Vec<AppendReply>, BackendError> {
        let keys = self.keys.topic(&topic.name);
        let retention = topic.config.retention;
        let max_ids = retention.max_events.clamp(MIN_IDEMPOTENCY_KEYS, MAX_IDEMPOTENCY_KEYS);
        let mut args: Vec<Value> = Vec::with_capacity(4 + events.len() * 3);
        args.push(Value::from(&*new_epoch()));
        args.push(Value::from(retention_cutoff(topic, unix_ms()).to_string()));
        args.push(Value::from(retention.max_events.to_string()));
        args.push(Value::from(max_ids.to_string()));
        for (EncodedEvent { stored, .. }, dedup) in events {
            let json =
                serde_json::to_string(stored).map_err(|e| BackendError::Protocol(format!("encoding event: {e}")))?;
            args.push(Value::from(json));
            args.push(Value::from(if *dedup { stored.event.id.as_str() } else { "" }));
            args.push(Value::from(stored.published_at_ms.to_string()));
        }
        let all_dedup = events.iter().all(|(_, d)| *d);
        let base = if durable { self.durable.next() } else { &self.client };
        let client = base.with_options(&self.options(if all_dedup { None } else { Some(1) }));
        let reply = self
            .scripts
            .append_many
            .run(
                &client,
                vec![keys.meta.clone(), keys.log, keys.ids, keys.id_times, keys.channel],
                args,
            )
            .await
            .map_err(|e| self.health.failed("append", &e))?;
        self.health.succeeded();
        let replies =
            parse_append_many_reply(reply, events.len()).map_err(|what| self.health.bad_reply("append", what))?;
        if durable && replies.iter().any(|r| !r.duplicate) {
            let ack = self.wait_replica(base, &keys.meta).await;
            if ack != ReplicaAck::Acked {
                tracing::warn!(topic = %topic.name, events = events.len(), result = ack.as_str(), "no replica confirmed the batch append");
            }
        }
        Ok(replies)
    }

    /// Waits (bounded) until a replica of the slot of `key` has the writes made so far.
    async fn wait_replica(&self, client: &Client, key: &str) -> ReplicaAck {
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let wait_ms = u64::try_from(self.replica_wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let options = Options {
            timeout: Some(self.replica_wait + self.timeout),
            max_attempts: Some(1),
            ..Default::default()
        };
        let wait = client
            .with_options(&options)
            .custom::<Value, Value>(
                CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), true),
                vec![Value::from("1"), Value::from(wait_ms.to_string())],
            )
            .await;
        match wait {
            Ok(v) if int(&v).is_some_and(|n| n >= 1) => ReplicaAck::Acked,
            Ok(_) => ReplicaAck::NotAcked,
            Err(e) => {
                tracing::warn!(key, error = %e, "waiting for a replica");
                ReplicaAck::Failed
            }
        }
    }

    /// Runs the read script: position plus up to `limit` events after `after`.
    pub async fn read_raw(&self, topic: &LiveTopic, after: u64, limit: usize) -> Result<RawRead, BackendError> {
        let keys = self.keys.topic(&topic.name);
        let args: Vec<Value> = vec![
            Value::from(&*new_epoch()),
            Value::from(after.to_string()),
            Value::from(limit.to_string()),
            Value::from(retention_cutoff(topic, unix_ms()).to_string()),
            Value::from(topic.config.retention.max_events.to_string()),
        ];
        let client = self.client.with_options(&self.options(None));
        let reply = self
            .scripts
            .read
            .run(&client, vec![keys.meta, keys.log, keys.ids, keys.id_times], args)
            .await
            .map_err(|e| self.health.failed("read", &e))?;
        self.health.succeeded();
        parse_read_reply(reply).map_err(|what| self.health.bad_reply("read", what))
    }

    /// Reads history as the backend API returns it; entries that do not parse are
    /// skipped and logged.
    pub async fn read(&self, topic: &LiveTopic, after: u64, limit: usize) -> Result<HistoryRead, BackendError> {
        let raw = self.read_raw(topic, after, limit).await?;
        let events = raw
            .events
            .iter()
            .filter_map(|(offset, json)| match parse_stored(json) {
                Ok(stored) => Some(Arc::new(topic.shared_event(*offset, raw.epoch.clone(), stored))),
                Err(e) => {
                    tracing::error!(topic = %topic.name, offset, error = %e, "skipping unreadable history entry");
                    None
                }
            })
            .collect::<Vec<Arc<SharedEvent>>>();
        Ok(HistoryRead {
            epoch: raw.epoch,
            first: raw.first,
            last: raw.last,
            events,
        })
    }

    /// Epoch and last offset of a topic, `None` when it has no history yet.
    pub async fn head(&self, topic: &str) -> Result<Option<(Arc<str>, u64)>, BackendError> {
        let keys = self.keys.topic(topic);
        let reply: Vec<Value> = self
            .client
            .with_options(&self.options(None))
            .hmget(keys.meta, vec!["epoch", "offset"])
            .await
            .map_err(|e| self.health.failed("head", &e))?;
        self.health.succeeded();
        match reply.as_slice() {
            [Value::Null, _] | [] => Ok(None),
            [epoch, offset] => Ok(Some((
                text(epoch).ok_or_else(|| self.health.bad_reply("head", "epoch"))?,
                int(offset).unwrap_or(0),
            ))),
            _ => Err(self.health.bad_reply("head", "not 2 fields")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn append_reply() {
        let v = Value::Array(vec![Value::Integer(7), s("ep1"), Value::Integer(0)]);
        assert_eq!(
            parse_append_reply(v),
            Ok(AppendReply {
                offset: 7,
                epoch: "ep1".into(),
                duplicate: false
            })
        );
        let dup = Value::Array(vec![Value::Integer(3), s("ep1"), Value::Integer(1)]);
        assert!(parse_append_reply(dup).expect("dup").duplicate);
        assert_eq!(parse_append_reply(Value::Null), Err("not an array"));
        assert_eq!(
            parse_append_reply(Value::Array(vec![Value::Integer(-1), s("e"), Value::Integer(0)])),
            Err("offset")
        );
    }

    #[test]
    fn read_reply() {
        let v = Value::Array(vec![
            s("ep1"),
            Value::Integer(4),
            Value::Integer(6),
            Value::Array(vec![Value::Integer(5), s("{\"a\":1}"), Value::Integer(6), s("{}")]),
        ]);
        let r = parse_read_reply(v).expect("read");
        assert_eq!((r.first, r.last, &*r.epoch), (4, 6, "ep1"));
        assert_eq!(r.events, vec![(5, Arc::from("{\"a\":1}")), (6, Arc::from("{}"))]);
        let empty = Value::Array(vec![
            s("ep1"),
            Value::Integer(1),
            Value::Integer(0),
            Value::Array(vec![]),
        ]);
        assert!(parse_read_reply(empty).expect("empty").events.is_empty());
        let odd = Value::Array(vec![
            s("e"),
            Value::Integer(1),
            Value::Integer(1),
            Value::Array(vec![Value::Integer(1)]),
        ]);
        assert_eq!(parse_read_reply(odd), Err("odd event list"));
    }
}
