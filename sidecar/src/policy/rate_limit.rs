//! Rate limits of BroadcastPolicies: publish limits per user, device and client IP,
//! and the pod-wide limit on new WebSocket connections per IP. Each limit is a GCRA
//! bucket ([`governor`]) keyed by `(scope, kind, key)`, so a retry-after can be
//! computed exactly for `429` replies.
//!
//! The scope is the policy a topic's limits come from: all topics of one policy share
//! a user's buckets, as the policy's `perUser` limit is meant for the user, not per
//! topic. Limiters live in a map keyed by scope, kind and rate spec, read under a
//! read lock on the hot path; when a policy's spec changes the new spec gets a fresh
//! limiter (its buckets start full) and the old one is dropped by [`RateLimits::retain_recent`]
//! once idle.
//!
//! A publish passes its limits in order user, device, IP. `governor` has no way to
//! test a bucket without taking a token or to give one back, so a publish refused by
//! a later bucket has already used a token of the earlier ones (a client hammering
//! its device limit also drains its user limit). This errs on the strict side.
//!
//! Specs the compiler would reject (a rate that is zero, negative or NaN) are not
//! enforced; a burst of 0 counts as 1.
//!
//! With a shared backend (Redis) publish limits must hold across every sidecar of a
//! deployment: [`PublishLimiter::Shared`] takes the tokens from [`SharedBuckets`]
//! (the same GCRA, kept in the backend) instead of the local limiters, in the same
//! order and with the same refusal semantics. A shared store that fails lets the
//! publish through (the append that follows reports the outage). The pod-wide limit on
//! new connections stays local.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use eventcast_api::config::{RateSpec, TopicLimits};
use futures_util::future::BoxFuture;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use parking_lot::RwLock;

/// Shortest retry-after reported: a client told to retry after 0 ms would spin.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);

/// Longest replenish period: keeps absurdly slow rates inside governor's range.
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Which limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    User,
    Device,
    Ip,
    Connection,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Device => "device",
            Self::Ip => "ip",
            Self::Connection => "connection",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: which limit, and when a retry can pass (at least 1 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rate limit per {kind} exceeded, retry after {} ms", retry_after.as_millis())]
pub struct Limited {
    pub kind: LimitKind,
    pub retry_after: Duration,
}

/// A bucket's key within one limiter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BucketKey {
    Name(String),
    Ip(IpAddr),
}

/// Identifies a limiter within a scope: a changed spec means a different limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LimiterKey {
    kind: LimitKind,
    per_second_bits: u64,
    burst: u32,
}

impl LimiterKey {
    fn new(kind: LimitKind, spec: &RateSpec) -> Self {
        Self {
            kind,
            per_second_bits: spec.per_second.to_bits(),
            burst: spec.burst,
        }
    }
}

type KeyedLimiter<C> = RateLimiter<BucketKey, DashMapStateStore<BucketKey>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters of one scope.
type ScopeLimiters<C> = HashMap<LimiterKey, Arc<KeyedLimiter<C>>>;

/// Scope used for the pod-wide connection limit (policy names are never empty).
const POD_SCOPE: &str = "";

/// All rate-limit buckets of a sidecar. `C` is the clock (real by default; tests use
/// governor's `FakeRelativeClock`).
pub struct RateLimits<C: Clock = DefaultClock> {
    clock: C,
    /// scope -> (kind, spec) -> limiter.
    limiters: RwLock<HashMap<String, ScopeLimiters<C>>>,
}

impl<C: Clock> fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limiters = self.limiters.read();
        f.debug_struct("RateLimits")
            .field("scopes", &limiters.len())
            .field("limiters", &limiters.values().map(HashMap::len).sum::<usize>())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new() -> Self {
        Self::with_clock(DefaultClock::default())
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits measured by `clock`.
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            limiters: RwLock::new(HashMap::new()),
        }
    }

    /// Publish limits of a topic (limits.scope names the policy: topics with the same
    /// scope share buckets). Limits without a key (no user, no device, no IP) are
    /// skipped.
    pub fn check_publish(
        &self,
        limits: &TopicLimits,
        user: Option<&str>,
        device: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<(), Limited> {
        let scope = limits.scope.as_deref().unwrap_or(POD_SCOPE);
        let named = |key: Option<&str>| key.filter(|k| !k.is_empty()).map(|k| BucketKey::Name(k.to_owned()));
        let checks = [
            (LimitKind::User, limits.per_user.as_ref(), named(user)),
            (LimitKind::Device, limits.per_device.as_ref(), named(device)),
            (LimitKind::Ip, limits.per_ip.as_ref(), ip.map(BucketKey::Ip)),
        ];
        for (kind, spec, key) in checks {
            if let (Some(spec), Some(key)) = (spec, key) {
                self.check(scope, kind, spec, &key)?;
            }
        }
        Ok(())
    }

    /// New WebSocket connection from `ip` under the pod-wide spec.
    pub fn check_connection(&self, spec: Option<&RateSpec>, ip: IpAddr) -> Result<(), Limited> {
        match spec {
            Some(spec) => self.check(POD_SCOPE, LimitKind::Connection, spec, &BucketKey::Ip(ip)),
            None => Ok(()),
        }
    }

    /// Drops idle keys (buckets that have refilled completely, so forgetting them
    /// changes nothing) and limiters left without keys; called periodically by a
    /// maintenance task.
    pub fn retain_recent(&self) {
        let mut any_empty = false;
        for limiter in self.limiters.read().values().flat_map(HashMap::values) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            any_empty |= limiter.is_empty();
        }
        if !any_empty {
            return;
        }
        let mut limiters = self.limiters.write();
        for scoped in limiters.values_mut() {
            // Under the write lock nobody can take a new reference, so a limiter only the
            // map holds cannot gain a key between this test and its removal.
            scoped.retain(|_, l| !(l.is_empty() && Arc::strong_count(l) == 1));
        }
        limiters.retain(|_, scoped| !scoped.is_empty());
    }

    /// Number of tracked keys, for tests and metrics.
    pub fn len(&self) -> usize {
        self.limiters
            .read()
            .values()
            .flat_map(HashMap::values)
            .map(|l| l.len())
            .sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, scope: &str, kind: LimitKind, spec: &RateSpec, key: &BucketKey) -> Result<(), Limited> {
        let Some(limiter) = self.limiter(scope, kind, spec) else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| Limited {
            kind,
            retry_after: not_until.wait_time_from(limiter.clock().now()).max(MIN_RETRY_AFTER),
        })
    }

    /// The limiter of `(scope, kind, spec)`, created on first use; `None` when the spec
    /// is not enforceable.
    fn limiter(&self, scope: &str, kind: LimitKind, spec: &RateSpec) -> Option<Arc<KeyedLimiter<C>>> {
        let key = LimiterKey::new(kind, spec);
        if let Some(limiter) = self.limiters.read().get(scope).and_then(|m| m.get(&key)) {
            return Some(Arc::clone(limiter));
        }
        let quota = quota(spec)?;
        let mut limiters = self.limiters.write();
        let limiter = limiters
            .entry(scope.to_owned())
            .or_default()
            .entry(key)
            .or_insert_with(|| Arc::new(RateLimiter::dashmap_with_clock(quota, self.clock.clone())));
        Some(Arc::clone(limiter))
    }
}

/// One bucket of a shared publish limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedBucket<'a> {
    /// Policy the limit comes from (`""` for none).
    pub scope: &'a str,
    pub kind: LimitKind,
    /// The user, device or IP.
    pub key: &'a str,
    /// Time per token (at least 1 µs).
    pub interval: Duration,
    /// Tokens available at once (at least 1).
    pub burst: u32,
}

/// Publish-limit buckets kept outside this process, shared by all sidecars.
pub trait SharedBuckets: fmt::Debug + Send + Sync {
    /// Takes one token: `Ok(None)` when allowed, `Ok(Some(wait))` when refused until
    /// `wait` has passed, `Err` when the store failed.
    fn take<'a>(&'a self, bucket: SharedBucket<'a>) -> BoxFuture<'a, Result<Option<Duration>, String>>;
}

/// Where publish limits are enforced.
#[derive(Clone, Debug)]
pub enum PublishLimiter {
    /// In this process (memory backend): [`RateLimits::check_publish`].
    Local(Arc<RateLimits>),
    /// In a store shared by all sidecars.
    Shared(Arc<dyn SharedBuckets>),
}

impl PublishLimiter {
    /// Publish limits of a topic, with the semantics of [`RateLimits::check_publish`].
    pub async fn check_publish(
        &self,
        limits: &TopicLimits,
        user: Option<&str>,
        device: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<(), Limited> {
        let shared = match self {
            Self::Local(local) => return local.check_publish(limits, user, device, ip),
            Self::Shared(shared) => shared,
        };
        let scope = limits.scope.as_deref().unwrap_or(POD_SCOPE);
        let ip = ip.map(|ip| ip.to_string());
        let checks = [
            (LimitKind::User, limits.per_user.as_ref(), user),
            (LimitKind::Device, limits.per_device.as_ref(), device),
            (LimitKind::Ip, limits.per_ip.as_ref(), ip.as_deref()),
        ];
        for (kind, spec, key) in checks {
            let (Some(spec), Some(key)) = (spec, key.filter(|k| !k.is_empty())) else {
                continue;
            };
            let Some((interval, burst)) = gcra(spec) else {
                continue;
            };
            let bucket = SharedBucket {
                scope,
                kind,
                key,
                interval,
                burst,
            };
            // Boxed so that the local path's future stays small (see `Backend::append`).
            match Box::pin(shared.take(bucket)).await {
                Ok(None) => {}
                Ok(Some(wait)) => {
                    return Err(Limited {
                        kind,
                        retry_after: wait.max(MIN_RETRY_AFTER),
                    });
                }
                Err(e) => tracing::warn!(kind = %kind, error = %e, "shared rate limit unavailable; allowing"),
            }
        }
        Ok(())
    }
}

/// GCRA parameters of a spec (time per token, burst), `None` when not enforceable.
pub fn gcra(spec: &RateSpec) -> Option<(Duration, u32)> {
    if spec.per_second.is_nan() || spec.per_second <= 0.0 {
        return None;
    }
    let interval = Duration::try_from_secs_f64(spec.per_second.recip())
        .unwrap_or(MAX_PERIOD)
        .clamp(Duration::from_micros(1), MAX_PERIOD);
    Some((interval, spec.burst.max(1)))
}

/// `per_second` tokens per second (fractions allowed), up to `burst` at once.
fn quota(spec: &RateSpec) -> Option<Quota> {
    if spec.per_second.is_nan() || spec.per_second <= 0.0 {
        return None;
    }
    let period = Duration::try_from_secs_f64(spec.per_second.recip())
        .unwrap_or(MAX_PERIOD)
        .clamp(Duration::from_nanos(1), MAX_PERIOD);
    let burst = NonZeroU32::new(spec.burst).unwrap_or(NonZeroU32::MIN);
    Some(Quota::with_period(period)?.allow_burst(burst))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn spec(per_second: f64, burst: u32) -> RateSpec {
        RateSpec { per_second, burst }
    }

    fn limits(scope: &str, user: Option<RateSpec>, device: Option<RateSpec>, ip: Option<RateSpec>) -> TopicLimits {
        TopicLimits {
            scope: Some(scope.into()),
            per_user: user,
            per_device: device,
            per_ip: ip,
        }
    }

    fn fake() -> (FakeRelativeClock, RateLimits<FakeRelativeClock>) {
        let clock = FakeRelativeClock::default();
        (clock.clone(), RateLimits::with_clock(clock))
    }

    const IP_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const IP_B: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    #[test]
    fn burst_then_reject_with_retry_after() {
        let (_clock, rl) = fake();
        let l = limits("p", Some(spec(1.0, 3)), None, None);
        for i in 0..3 {
            assert!(rl.check_publish(&l, Some("alice"), None, None).is_ok(), "call {i}");
        }
        let err = rl.check_publish(&l, Some("alice"), None, None).expect_err("over burst");
        assert_eq!(err.kind, LimitKind::User);
        assert_eq!(err.retry_after, Duration::from_secs(1));
        assert_eq!(err.to_string(), "rate limit per user exceeded, retry after 1000 ms");
    }

    #[test]
    fn tokens_return_after_waiting() {
        let (clock, rl) = fake();
        let l = limits("p", Some(spec(2.0, 2)), None, None);
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        let err = rl.check_publish(&l, Some("u"), None, None).expect_err("empty");
        assert_eq!(err.retry_after, Duration::from_millis(500));
        clock.advance(Duration::from_millis(250));
        let err = rl.check_publish(&l, Some("u"), None, None).expect_err("still empty");
        assert_eq!(err.retry_after, Duration::from_millis(250));
        clock.advance(Duration::from_millis(250));
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&l, Some("u"), None, None).is_err());
        // A full period refills the whole burst.
        clock.advance(Duration::from_secs(5));
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&l, Some("u"), None, None).is_err());
    }

    #[test]
    fn fractional_rates() {
        let (clock, rl) = fake();
        let l = limits("p", Some(spec(0.5, 1)), None, None);
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        let err = rl.check_publish(&l, Some("u"), None, None).expect_err("limited");
        assert_eq!(err.retry_after, Duration::from_secs(2));
        clock.advance(Duration::from_secs(2));
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
    }

    #[test]
    fn retry_after_is_at_least_one_millisecond() {
        let (_clock, rl) = fake();
        let l = limits("p", Some(spec(100_000.0, 1)), None, None);
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        let err = rl.check_publish(&l, Some("u"), None, None).expect_err("limited");
        assert_eq!(err.retry_after, MIN_RETRY_AFTER);
    }

    #[test]
    fn separate_users_are_independent() {
        let (_clock, rl) = fake();
        let l = limits("p", Some(spec(1.0, 1)), None, None);
        assert!(rl.check_publish(&l, Some("alice"), None, None).is_ok());
        assert!(rl.check_publish(&l, Some("alice"), None, None).is_err());
        assert!(rl.check_publish(&l, Some("bob"), None, None).is_ok());
        assert_eq!(rl.len(), 2);
    }

    #[test]
    fn limits_without_a_key_are_skipped() {
        let (_clock, rl) = fake();
        let l = limits("p", Some(spec(1.0, 1)), Some(spec(1.0, 1)), Some(spec(1.0, 1)));
        for _ in 0..5 {
            assert!(rl.check_publish(&l, None, None, None).is_ok());
            assert!(rl.check_publish(&l, Some(""), Some(""), None).is_ok());
        }
        assert!(rl.is_empty());
        // No limits at all.
        assert!(
            rl.check_publish(&TopicLimits::default(), Some("u"), Some("d"), Some(IP_A))
                .is_ok()
        );
    }

    #[test]
    fn device_and_ip_limits() {
        let (_clock, rl) = fake();
        let l = limits("p", None, Some(spec(1.0, 2)), Some(spec(1.0, 3)));
        assert!(rl.check_publish(&l, None, Some("phone"), Some(IP_A)).is_ok());
        assert!(rl.check_publish(&l, None, Some("phone"), Some(IP_A)).is_ok());
        let err = rl
            .check_publish(&l, None, Some("phone"), Some(IP_A))
            .expect_err("device");
        assert_eq!(err.kind, LimitKind::Device);
        // Another device behind the same IP: the IP has one token left.
        assert!(rl.check_publish(&l, None, Some("laptop"), Some(IP_A)).is_ok());
        let err = rl.check_publish(&l, None, Some("tablet"), Some(IP_A)).expect_err("ip");
        assert_eq!(err.kind, LimitKind::Ip);
        assert!(rl.check_publish(&l, None, Some("tablet"), Some(IP_B)).is_ok());
    }

    #[test]
    fn earlier_buckets_pay_for_a_later_refusal() {
        // Documented behaviour: governor cannot refund, so the user bucket loses the
        // token of a publish the device bucket refused.
        let (_clock, rl) = fake();
        let l = limits("p", Some(spec(1.0, 3)), Some(spec(1.0, 1)), None);
        assert!(rl.check_publish(&l, Some("u"), Some("d"), None).is_ok());
        assert_eq!(
            rl.check_publish(&l, Some("u"), Some("d"), None).map_err(|e| e.kind),
            Err(LimitKind::Device)
        );
        assert!(rl.check_publish(&l, Some("u"), Some("d2"), None).is_ok());
        assert_eq!(
            rl.check_publish(&l, Some("u"), Some("d3"), None).map_err(|e| e.kind),
            Err(LimitKind::User)
        );
    }

    #[test]
    fn topics_of_one_scope_share_buckets() {
        let (_clock, rl) = fake();
        let chat_a = limits("chat-policy", Some(spec(1.0, 2)), None, None);
        let chat_b = limits("chat-policy", Some(spec(1.0, 2)), None, None);
        let other = limits("other-policy", Some(spec(1.0, 2)), None, None);
        assert!(rl.check_publish(&chat_a, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&chat_b, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&chat_a, Some("u"), None, None).is_err());
        assert!(rl.check_publish(&chat_b, Some("u"), None, None).is_err());
        assert!(rl.check_publish(&other, Some("u"), None, None).is_ok());
    }

    #[test]
    fn changed_spec_gets_a_fresh_limiter() {
        let (_clock, rl) = fake();
        let old = limits("p", Some(spec(1.0, 1)), None, None);
        assert!(rl.check_publish(&old, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&old, Some("u"), None, None).is_err());
        let new = limits("p", Some(spec(1.0, 2)), None, None);
        assert!(rl.check_publish(&new, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&new, Some("u"), None, None).is_ok());
        assert!(rl.check_publish(&new, Some("u"), None, None).is_err());
    }

    #[test]
    fn connection_limits_per_ip() {
        let (clock, rl) = fake();
        let s = spec(5.0, 2);
        assert!(rl.check_connection(Some(&s), IP_A).is_ok());
        assert!(rl.check_connection(Some(&s), IP_A).is_ok());
        let err = rl.check_connection(Some(&s), IP_A).expect_err("limited");
        assert_eq!(err.kind, LimitKind::Connection);
        assert_eq!(err.retry_after, Duration::from_millis(200));
        assert!(rl.check_connection(Some(&s), IP_B).is_ok());
        clock.advance(Duration::from_millis(200));
        assert!(rl.check_connection(Some(&s), IP_A).is_ok());
        // No spec: unlimited.
        for _ in 0..100 {
            assert!(rl.check_connection(None, IP_A).is_ok());
        }
    }

    #[test]
    fn connection_and_publish_ip_buckets_are_separate() {
        let (_clock, rl) = fake();
        let s = spec(1.0, 1);
        let l = limits("p", None, None, Some(s));
        assert!(rl.check_connection(Some(&s), IP_A).is_ok());
        assert!(rl.check_publish(&l, None, None, Some(IP_A)).is_ok());
    }

    #[test]
    fn retain_recent_drops_idle_keys_and_limiters() {
        let (clock, rl) = fake();
        let l = limits("p", Some(spec(1.0, 2)), None, None);
        for user in ["a", "b", "c"] {
            assert!(rl.check_publish(&l, Some(user), None, None).is_ok());
        }
        assert!(rl.check_connection(Some(&spec(1.0, 1)), IP_A).is_ok());
        assert_eq!(rl.len(), 4);
        rl.retain_recent();
        assert_eq!(rl.len(), 4, "recently used keys stay");

        clock.advance(Duration::from_secs(10));
        assert!(rl.check_publish(&l, Some("d"), None, None).is_ok());
        rl.retain_recent();
        assert_eq!(rl.len(), 1, "only the fresh key stays");
        assert_eq!(rl.limiters.read().len(), 1, "empty limiters are dropped");

        clock.advance(Duration::from_secs(10));
        rl.retain_recent();
        assert!(rl.is_empty());
        assert!(rl.limiters.read().is_empty());
        // And limits still work afterwards.
        assert!(rl.check_publish(&l, Some("a"), None, None).is_ok());
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn unenforceable_specs_are_skipped() {
        let (_clock, rl) = fake();
        for per_second in [0.0, -1.0, f64::NAN] {
            let l = limits("p", Some(spec(per_second, 1)), None, None);
            for _ in 0..10 {
                assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
            }
        }
        // Extreme but valid values are clamped rather than rejected.
        let l = limits("p", Some(spec(1e-300, 0)), None, None);
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        let err = rl
            .check_publish(&l, Some("u"), None, None)
            .expect_err("one token a year");
        assert_eq!(err.retry_after, MAX_PERIOD);
        let l = limits("p", Some(spec(f64::INFINITY, 1)), None, None);
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
    }

    #[test]
    fn real_clock_replenishes() {
        let rl = RateLimits::new();
        let l = limits("p", Some(spec(50.0, 1)), None, None);
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
        let err = rl.check_publish(&l, Some("u"), None, None).expect_err("limited");
        assert!(err.retry_after <= Duration::from_millis(20), "{err:?}");
        std::thread::sleep(Duration::from_millis(25));
        assert!(rl.check_publish(&l, Some("u"), None, None).is_ok());
    }

    /// Shared buckets kept in a map, with a fake clock: the semantics the Redis script
    /// implements.
    #[derive(Debug, Default)]
    struct FakeShared {
        now: parking_lot::Mutex<Duration>,
        tat: parking_lot::Mutex<HashMap<String, Duration>>,
        fail: bool,
    }

    impl SharedBuckets for FakeShared {
        fn take<'a>(&'a self, b: SharedBucket<'a>) -> BoxFuture<'a, Result<Option<Duration>, String>> {
            Box::pin(async move {
                if self.fail {
                    return Err("down".into());
                }
                let now = *self.now.lock();
                let mut tats = self.tat.lock();
                let key = format!("{}:{}:{}", b.scope, b.kind, b.key);
                let tat = tats.get(&key).copied().unwrap_or(now).max(now);
                let new_tat = tat + b.interval;
                let allow_at = new_tat.saturating_sub(b.interval * b.burst);
                if allow_at > now {
                    return Ok(Some(allow_at - now));
                }
                tats.insert(key, new_tat);
                Ok(None)
            })
        }
    }

    #[tokio::test]
    async fn shared_limits_follow_the_local_semantics() {
        let fake = Arc::new(FakeShared::default());
        let shared = PublishLimiter::Shared(fake.clone());
        let l = limits("p", Some(spec(1.0, 3)), Some(spec(1.0, 1)), None);
        assert!(shared.check_publish(&l, Some("u"), Some("d"), None).await.is_ok());
        let err = shared
            .check_publish(&l, Some("u"), Some("d"), None)
            .await
            .expect_err("device bucket empty");
        assert_eq!(err.kind, LimitKind::Device);
        assert_eq!(err.retry_after, Duration::from_secs(1));
        assert!(shared.check_publish(&l, Some("u"), Some("d2"), None).await.is_ok());
        let err = shared
            .check_publish(&l, Some("u"), Some("d3"), None)
            .await
            .expect_err("user bucket paid for the refusal");
        assert_eq!(err.kind, LimitKind::User);
        *fake.now.lock() += Duration::from_secs(1);
        assert!(shared.check_publish(&l, Some("u"), Some("d3"), None).await.is_ok());
        // Missing keys and unenforceable specs are skipped, as locally.
        let skip = limits("p", Some(spec(0.0, 1)), Some(spec(1.0, 1)), Some(spec(1.0, 1)));
        for _ in 0..3 {
            assert!(shared.check_publish(&skip, Some("x"), None, None).await.is_ok());
        }
        // A failing store lets publishes through.
        let down = PublishLimiter::Shared(Arc::new(FakeShared {
            fail: true,
            ..FakeShared::default()
        }));
        for _ in 0..3 {
            assert!(down.check_publish(&l, Some("u"), None, Some(IP_A)).await.is_ok());
        }
        // The local variant is the existing limiter.
        let local = PublishLimiter::Local(Arc::new(RateLimits::new()));
        let one = limits("p", Some(spec(1.0, 1)), None, None);
        assert!(local.check_publish(&one, Some("u"), None, None).await.is_ok());
        assert!(local.check_publish(&one, Some("u"), None, None).await.is_err());
    }

    #[test]
    fn gcra_parameters() {
        assert_eq!(gcra(&spec(20.0, 40)), Some((Duration::from_millis(50), 40)));
        assert_eq!(gcra(&spec(0.5, 0)), Some((Duration::from_secs(2), 1)));
        assert_eq!(gcra(&spec(1e9, 1)), Some((Duration::from_micros(1), 1)));
        assert_eq!(gcra(&spec(0.0, 1)), None);
        assert_eq!(gcra(&spec(f64::NAN, 1)), None);
    }

    #[test]
    fn kind_names() {
        let names: Vec<String> = [LimitKind::User, LimitKind::Device, LimitKind::Ip, LimitKind::Connection]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["user", "device", "ip", "connection"]);
    }
}
