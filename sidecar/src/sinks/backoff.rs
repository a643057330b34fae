//! The retry schedule of webhook deliveries: exponential backoff from `initialInterval`,
//! doubled per failed attempt and capped at `maxInterval`, with "equal jitter" (a
//! uniform pick in the upper half of the step) so that many sidecars retrying against
//! one recovering receiver spread out instead of arriving in waves.

use std::time::Duration;

use eventcast_api::config::RetryConfig;
use rand::Rng;

/// Backoff settings of one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
}

impl Backoff {
    pub fn new(retry: &RetryConfig) -> Self {
        Self {
            initial_ms: retry.initial_interval_ms,
            max_ms: retry.max_interval_ms.max(retry.initial_interval_ms),
        }
    }

    /// Un-jittered step after `failures` failed attempts (1 = after the first attempt):
    /// `initial * 2^(failures-1)`, at most `max`.
    pub fn step_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(63);
        self.initial_ms.saturating_mul(1u64 << doublings).min(self.max_ms)
    }

    /// Wait before the next attempt: uniform in `[step/2, step]`; when the receiver asked
    /// for more time (`Retry-After`), that, still capped at `max`.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let step = self.step_ms(failures);
        let half = step / 2;
        let jittered = half + rng.random_range(0..=step - half);
        let hinted = retry_after.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Duration::from_millis(jittered.max(hinted).min(self.max_ms))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff::new(&RetryConfig {
            max_attempts: 5,
            initial_interval_ms: initial_ms,
            max_interval_ms: max_ms,
        })
    }

    #[test]
    fn steps_double_up_to_the_cap() {
        let b = backoff(200, 1_000);
        let steps: Vec<u64> = (1..=6).map(|n| b.step_ms(n)).collect();
        assert_eq!(steps, [200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(b.step_ms(0), 200);
        // No overflow however many failures.
        assert_eq!(backoff(u64::MAX / 2, u64::MAX).step_ms(u32::MAX), u64::MAX);
    }

    #[test]
    fn jittered_delays_stay_within_half_step_and_cap() {
        let b = backoff(100, 10_000);
        let mut rng = StdRng::seed_from_u64(7);
        for failures in 1..=12 {
            let step = b.step_ms(failures);
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = u64::try_from(b.delay(failures, None, &mut rng).as_millis()).expect("small");
                assert!(
                    d >= step / 2 && d <= step,
                    "failures {failures}: {d} not in [{}, {step}]",
                    step / 2
                );
                assert!(d <= 10_000);
                seen.insert(d);
            }
            assert!(seen.len() > 1, "jitter varies the delay");
        }
    }

    #[test]
    fn retry_after_raises_the_delay_but_not_past_the_cap() {
        let b = backoff(100, 2_000);
        let mut rng = StdRng::seed_from_u64(1);
        let d = b.delay(1, Some(Duration::from_secs(1)), &mut rng);
        assert_eq!(d, Duration::from_secs(1));
        let d = b.delay(1, Some(Duration::from_secs(60)), &mut rng);
        assert_eq!(d, Duration::from_secs(2));
        let d = b.delay(1, Some(Duration::from_millis(1)), &mut rng);
        assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
    }

    #[test]
    fn zero_interval_retries_immediately() {
        let b = backoff(0, 0);
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(b.delay(3, None, &mut rng), Duration::ZERO);
    }
}
