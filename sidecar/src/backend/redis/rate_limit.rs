//! Publish rate limits shared by all sidecars: each bucket is one key
//! (`ec:rl:{scope:kind:key}`) updated by the GCRA script on Redis' clock, so a user's
//! limit holds whichever sidecars their publishes go through.

use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::ClientLike;
use fred::prelude::{Options, Value};
use futures_util::future::BoxFuture;

use super::store::Store;
use crate::policy::rate_limit::{SharedBucket, SharedBuckets};

/// Buckets in Redis.
#[derive(Debug)]
pub struct RedisBuckets {
    store: Arc<Store>,
}

impl RedisBuckets {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

impl SharedBuckets for RedisBuckets {
    fn take<'a>(&'a self, b: SharedBucket<'a>) -> BoxFuture<'a, Result<Option<Duration>, String>> {
        Box::pin(async move {
            let key = self.store.keys.rate_limit(b.scope, b.kind.as_str(), b.key);
            let interval_us = u64::try_from(b.interval.as_micros()).unwrap_or(u64::MAX).max(1);
            let args = vec![Value::from(interval_us.to_string()), Value::from(b.burst.to_string())];
            let client = self.store.client.with_options(&Options {
                timeout: Some(self.store.timeout),
                ..Default::default()
            });
            match self.store.scripts.rate_limit.run(&client, vec![key], args).await {
                Ok(Value::Integer(0)) => {
                    self.store.health.succeeded();
                    Ok(None)
                }
                Ok(Value::Integer(wait_us)) => {
                    self.store.health.succeeded();
                    Ok(Some(Duration::from_micros(u64::try_from(wait_us).unwrap_or(0))))
                }
                Ok(other) => Err(self
                    .store
                    .health
                    .bad_reply("rate_limit", &format!("{other:?}"))
                    .to_string()),
                Err(e) => Err(self.store.health.failed("rate_limit", &e).to_string()),
            }
        })
    }
}
