//! When to try the operator's config stream again: exponential backoff from 200 ms,
//! doubled per failed attempt up to 10 s, with "equal jitter" (uniform in the upper
//! half of the step) so the sidecars of a cluster do not reconnect in waves after an
//! operator restart. A connection that stayed up resets it.

use std::time::Duration;

use rand::Rng;

/// Backoff state of one reconnecting client.
#[derive(Clone, Debug)]
pub struct ReconnectBackoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(10))
    }
}

impl ReconnectBackoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Un-jittered step after `failures` failures: `initial * 2^(failures-1)`, at most `max`.
    pub fn step(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// Counts a failure (or a lost connection) and returns how long to wait: uniform in
    /// `[step/2, step]`.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let step = self.step(self.failures);
        let half = step / 2;
        let extra = rng.random_range(0..=u64::try_from((step - half).as_micros()).unwrap_or(u64::MAX));
        half + Duration::from_micros(extra)
    }

    /// The last connection stayed up: start again from the initial step.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn steps_double_from_200ms_to_10s() {
        let b = ReconnectBackoff::default();
        let ms: Vec<u128> = (1..=9).map(|n| b.step(n).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
        assert_eq!(b.step(u32::MAX), Duration::from_secs(10), "no overflow");
    }

    #[test]
    fn delays_are_jittered_within_the_upper_half_and_reset() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = ReconnectBackoff::default();
        let mut seen = Vec::new();
        for n in 1..=20u32 {
            let d = b.next_delay(&mut rng);
            let step = b.step(n);
            assert!(
                d >= step / 2 && d <= step,
                "attempt {n}: {d:?} outside [{:?}, {step:?}]",
                step / 2
            );
            seen.push(d);
        }
        // Jitter: the capped attempts do not all wait the same time.
        let mut capped = seen[7..].to_vec();
        capped.sort();
        capped.dedup();
        assert!(capped.len() > 1, "{seen:?}");
        b.reset();
        let d = b.next_delay(&mut rng);
        assert!(d <= Duration::from_millis(200), "{d:?} after reset");
    }
}
