//! How many replicas a BroadcastPolicy's target should run, from its sidecars' load.
//! Like the HPA: the usage ratio (load / (target per pod × current replicas)) of the
//! most loaded signal scales the current count, a ±10% band around 1 changes nothing
//! (hysteresis), the result stays within min/max, and a change waits for its
//! direction's cooldown since the last scale.

use std::time::Duration;

use eventcast_api::config_stream::SidecarLoad;
use eventcast_api::crd::broadcast_policy::Autoscaling;

/// Usage ratios within this distance of 1 keep the current count.
const TOLERANCE: f64 = 0.1;
const DEFAULT_UP_COOLDOWN: Duration = Duration::from_secs(180);
const DEFAULT_DOWN_COOLDOWN: Duration = Duration::from_secs(300);

/// The outcome for one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Replicas the load asks for (within min/max).
    pub desired: i32,
    /// Whether to set the target's scale to `desired` now.
    pub scale: bool,
    /// Why, for status.
    pub reason: String,
}

/// Decides for `spec` given the current replicas, the reporting sidecars' loads, and
/// the time since the last scale change this operator made (None: never).
pub fn decide(spec: &Autoscaling, current: i32, loads: &[SidecarLoad], since_last_scale: Option<Duration>) -> Decision {
    let (min, max) = (
        spec.min_replicas.max(0),
        spec.max_replicas.max(spec.min_replicas).max(1),
    );
    if current < min || current > max {
        let desired = current.clamp(min, max);
        return Decision {
            desired,
            scale: true,
            reason: format!("{current} replicas is outside {min}..={max}"),
        };
    }
    if loads.is_empty() {
        return Decision {
            desired: current,
            scale: false,
            reason: "no sidecar reports load yet".to_owned(),
        };
    }
    let connections: u64 = loads.iter().map(|l| l.connections).sum();
    let events: f64 = loads
        .iter()
        .map(|l| l.events_in_per_second + l.events_out_per_second)
        .sum();
    let per_pod = f64::from(current.max(1));
    let mut ratio: f64 = 0.0;
    let mut signals = Vec::new();
    if let Some(t) = spec.target_connections_per_pod {
        let r = connections as f64 / (f64::from(t) * per_pod);
        ratio = ratio.max(r);
        signals.push(format!("{connections} connections (target {t}/pod)"));
    }
    if let Some(t) = spec.target_events_per_second_per_pod {
        let r = events / (f64::from(t) * per_pod);
        ratio = ratio.max(r);
        signals.push(format!("{events:.0} events/s (target {t}/pod)"));
    }
    if signals.is_empty() {
        return Decision {
            desired: current,
            scale: false,
            reason: "no target per pod is set".to_owned(),
        };
    }
    let load = signals.join(", ");
    let raw = if (ratio - 1.0).abs() <= TOLERANCE {
        current
    } else {
        let wanted = (per_pod * ratio).ceil();
        if wanted >= f64::from(i32::MAX) {
            i32::MAX
        } else {
            wanted as i32
        }
    };
    let desired = raw.clamp(min, max);
    if desired == current {
        return Decision {
            desired,
            scale: false,
            reason: format!("{current} replicas fit the load: {load}"),
        };
    }
    let up = desired > current;
    let cooldown = if up {
        spec.scale_up_cooldown.map_or(DEFAULT_UP_COOLDOWN, |d| d.as_std())
    } else {
        spec.scale_down_cooldown.map_or(DEFAULT_DOWN_COOLDOWN, |d| d.as_std())
    };
    if let Some(since) = since_last_scale
        && since < cooldown
    {
        return Decision {
            desired,
            scale: false,
            reason: format!(
                "waiting for the scale-{} cooldown ({}s left) to go from {current} to {desired}: {load}",
                if up { "up" } else { "down" },
                (cooldown - since).as_secs()
            ),
        };
    }
    Decision {
        desired,
        scale: true,
        reason: format!("scaling from {current} to {desired}: {load}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(conns: Option<u32>, events: Option<u32>) -> Autoscaling {
        serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Deployment", "name": "app"},
            "minReplicas": 2, "maxReplicas": 10,
            "targetConnectionsPerPod": conns, "targetEventsPerSecondPerPod": events,
            "scaleUpCooldown": "1m", "scaleDownCooldown": "5m",
        }))
        .expect("autoscaling spec")
    }

    fn load(connections: u64, events: f64) -> SidecarLoad {
        SidecarLoad {
            connections,
            events_in_per_second: 0.0,
            events_out_per_second: events,
            queue_depth: 0,
        }
    }

    #[test]
    fn scales_up_to_the_most_loaded_signal_within_bounds() {
        let s = spec(Some(1000), Some(5000));
        // 3 pods, 4,500 connections: 1.5x -> 5 pods; events are light.
        let d = decide(&s, 3, &[load(1500, 10.0), load(1500, 10.0), load(1500, 10.0)], None);
        assert_eq!((d.desired, d.scale), (5, true), "{}", d.reason);
        // Events dominate: 60,000/s on 3 pods at 5,000/pod -> 12, capped at 10.
        let d = decide(&s, 3, &[load(10, 60_000.0)], None);
        assert_eq!(d.desired, 10);
    }

    #[test]
    fn a_load_near_the_target_changes_nothing() {
        let s = spec(Some(1000), None);
        let d = decide(&s, 4, &[load(4300, 0.0)], None);
        assert_eq!((d.desired, d.scale), (4, false), "{}", d.reason);
    }

    #[test]
    fn cooldowns_hold_changes_per_direction() {
        let s = spec(Some(1000), None);
        let d = decide(&s, 4, &[load(8000, 0.0)], Some(Duration::from_secs(30)));
        assert_eq!((d.desired, d.scale), (8, false));
        assert!(d.reason.contains("scale-up cooldown"), "{}", d.reason);
        let d = decide(&s, 4, &[load(8000, 0.0)], Some(Duration::from_secs(61)));
        assert!(d.scale);
        let d = decide(&s, 8, &[load(1000, 0.0)], Some(Duration::from_secs(120)));
        assert_eq!((d.desired, d.scale), (2, false), "scale-down waits 5m: {}", d.reason);
        let d = decide(&s, 8, &[load(1000, 0.0)], Some(Duration::from_secs(301)));
        assert_eq!((d.desired, d.scale), (2, true));
    }

    #[test]
    fn out_of_bounds_is_corrected_and_no_load_keeps_the_count() {
        let s = spec(Some(1000), None);
        assert_eq!(
            decide(&s, 1, &[], None),
            Decision {
                desired: 2,
                scale: true,
                reason: "1 replicas is outside 2..=10".into()
            }
        );
        let d = decide(&s, 3, &[], None);
        assert_eq!((d.desired, d.scale), (3, false));
    }
}
