//! Status of one resource, computed from what the operator knows: its compile errors,
//! which config first contained its generation, and which connected sidecars acked or
//! rejected what. Pure functions: the writer decides whether anything changed.

use eventcast_api::CompileError;
use eventcast_api::crd::SidecarCounts;
use eventcast_api::crd::status::condition_type::{ACCEPTED, PAUSED, PROGRAMMED, READY};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::stream::NamespaceView;

/// Longest condition message written (the API allows 32 KiB).
const MAX_MESSAGE: usize = 4096;

/// What the operator knows about one resource when computing its status.
#[derive(Debug)]
pub struct Facts<'a> {
    pub namespace: &'a str,
    pub generation: Option<i64>,
    /// Semantic errors of the current generation.
    pub errors: &'a [&'a CompileError],
    /// Sequence of the first published config that contains this generation; None
    /// when the generation is not in the config (rejected) or nothing was published yet.
    pub programmed_since: Option<u64>,
    /// Version of the config `programmed_since` names: the one that first carried this
    /// generation (stays the same while other resources change the namespace config).
    pub programmed_version: Option<&'a str>,
    /// When the current generation was rejected: the generation still served.
    pub serving_generation: Option<i64>,
    pub view: &'a NamespaceView,
}

/// The common part of every kind's status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommonStatus {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub config_version: Option<String>,
    pub sidecars: Option<SidecarCounts>,
    pub last_error: Option<String>,
}

/// Now, to the second (Kubernetes `Time` has second precision).
pub fn now() -> Time {
    let now = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Sets condition `type_`, keeping `lastTransitionTime` unless the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let message = truncate(message);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
                c.status = status.to_owned();
            }
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// Counts the namespace's connected sidecars against the config containing this generation.
pub fn count_sidecars(view: &NamespaceView, programmed_since: Option<u64>) -> SidecarCounts {
    let current = view.current.as_ref().map(|(v, _)| v.as_str());
    let mut counts = SidecarCounts {
        connected: u32::try_from(view.sidecars.len()).unwrap_or(u32::MAX),
        ..SidecarCounts::default()
    };
    for s in &view.sidecars {
        let acked = matches!((s.acked_seq, programmed_since), (Some(a), Some(since)) if a >= since);
        let nacked = s.nacked.as_ref().is_some_and(|(v, _)| Some(v.as_str()) == current);
        if acked {
            counts.acked += 1;
        } else if nacked {
            counts.nacked += 1;
        } else {
            counts.stale += 1;
        }
    }
    counts
}

/// Status of a resource that is reconciled (not paused).
pub fn compute(existing: &CommonStatus, facts: &Facts<'_>, now: &Time) -> CommonStatus {
    let generation = facts.generation;
    let version = facts
        .programmed_version
        .map(str::to_owned)
        .or_else(|| facts.view.current.as_ref().map(|(v, _)| v.clone()));
    let version_text = version.as_deref().unwrap_or("(none yet)");
    let counts = count_sidecars(facts.view, facts.programmed_since);
    let mut conditions = existing.conditions.clone();
    conditions.retain(|c| c.type_ != PAUSED);
    let mut last_error = None;

    let accepted = facts.errors.is_empty();
    if accepted {
        set_condition(
            &mut conditions,
            ACCEPTED,
            true,
            "Accepted",
            "the spec is valid".to_owned(),
            generation,
            now,
        );
    } else {
        let reason = facts.errors[0].reason.as_str();
        let message = facts
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        last_error = Some(truncate(message.clone()));
        set_condition(&mut conditions, ACCEPTED, false, reason, message, generation, now);
    }

    let gen_text = generation.map_or_else(|| "this generation".to_owned(), |g| format!("generation {g}"));
    let (programmed, reason, message) = if !accepted {
        let serving = match facts.serving_generation {
            Some(g) => format!("sidecars keep serving generation {g}"),
            None => "it is not in the config".to_owned(),
        };
        (false, "Invalid", format!("{gen_text} was rejected; {serving}"))
    } else if facts.programmed_since.is_none() {
        (false, "Pending", format!("{gen_text} is not published yet"))
    } else if counts.connected == 0 {
        (
            false,
            "NoSidecars",
            format!(
                "no sidecar of namespace {} is connected; sidecars get config {version_text} when they connect",
                facts.namespace
            ),
        )
    } else if counts.nacked > 0 {
        let error = facts
            .view
            .sidecars
            .iter()
            .find_map(|s| s.nacked.as_ref().map(|(_, e)| format!("{}: {e}", s.pod)))
            .unwrap_or_default();
        last_error = Some(truncate(format!("sidecar rejected config {version_text}: {error}")));
        (
            false,
            "Rejected",
            format!(
                "{} of {} sidecars rejected config {version_text} ({error})",
                counts.nacked, counts.connected
            ),
        )
    } else if counts.acked == counts.connected {
        (
            true,
            "Programmed",
            format!(
                "{}/{} sidecars run config {version_text} or newer",
                counts.acked, counts.connected
            ),
        )
    } else {
        (
            false,
            "Pending",
            format!(
                "{}/{} sidecars run config {version_text} or newer",
                counts.acked, counts.connected
            ),
        )
    };
    set_condition(
        &mut conditions,
        PROGRAMMED,
        programmed,
        reason,
        message,
        generation,
        now,
    );

    // Ready is what GitOps tools wait on: valid and served by every connected sidecar.
    // With no sidecar connected there is nothing left to do for this resource (sidecars
    // get the config as they connect), so it is Ready; Programmed tells the difference.
    let (ready, reason, message) = if !accepted {
        (
            false,
            "Invalid",
            "the spec was rejected; see the Accepted condition".to_owned(),
        )
    } else if programmed {
        (
            true,
            "Ready",
            "accepted and programmed on every connected sidecar".to_owned(),
        )
    } else if reason == "NoSidecars" {
        (true, "NoSidecars", "accepted; no sidecar is connected yet".to_owned())
    } else {
        (
            false,
            reason,
            "waiting for sidecars; see the Programmed condition".to_owned(),
        )
    };
    set_condition(&mut conditions, READY, ready, reason, message, generation, now);
    sort_conditions(&mut conditions);

    CommonStatus {
        observed_generation: generation,
        conditions,
        config_version: version,
        sidecars: Some(counts),
        last_error,
    }
}

/// A paused resource: everything stays as it was, plus `Paused=True`.
pub fn paused(existing: &CommonStatus, generation: Option<i64>, now: &Time) -> CommonStatus {
    let mut out = existing.clone();
    set_condition(
        &mut out.conditions,
        PAUSED,
        true,
        "Paused",
        format!(
            "reconciling is paused by the {} annotation; the last programmed config stays",
            eventcast_api::crd::PAUSED_ANNOTATION
        ),
        generation,
        now,
    );
    sort_conditions(&mut out.conditions);
    out
}

/// A stable order keeps status diffs quiet.
fn sort_conditions(conditions: &mut [Condition]) {
    let rank = |t: &str| match t {
        ACCEPTED => 0,
        PROGRAMMED => 1,
        READY => 2,
        PAUSED => 3,
        _ => 4,
    };
    conditions.sort_by(|a, b| rank(&a.type_).cmp(&rank(&b.type_)).then(a.type_.cmp(&b.type_)));
}

#[cfg(test)]
mod tests {
    use eventcast_api::compiler::Reason;
    use eventcast_api::config::ResourceRef;

    use super::*;
    use crate::stream::SidecarView;

    fn view(sidecars: &[(Option<u64>, Option<&str>)]) -> NamespaceView {
        NamespaceView {
            current: Some(("v-2".into(), 2)),
            sidecars: sidecars
                .iter()
                .enumerate()
                .map(|(i, (acked, nack))| SidecarView {
                    pod: format!("pod-{i}"),
                    acked_seq: *acked,
                    nacked: nack.map(|e| ("v-2".to_owned(), e.to_owned())),
                })
                .collect(),
        }
    }

    fn cond<'a>(s: &'a CommonStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).expect("condition present")
    }

    fn facts<'a>(view: &'a NamespaceView, errors: &'a [&'a CompileError], since: Option<u64>) -> Facts<'a> {
        Facts {
            namespace: "demo",
            generation: Some(3),
            errors,
            programmed_since: since,
            programmed_version: None,
            serving_generation: None,
            view,
        }
    }

    #[test]
    fn all_sidecars_acked_is_programmed_and_ready() {
        let v = view(&[(Some(2), None), (Some(3), None), (Some(2), None)]);
        let s = compute(&CommonStatus::default(), &facts(&v, &[], Some(2)), &now());
        assert_eq!(cond(&s, ACCEPTED).status, "True");
        assert_eq!(cond(&s, PROGRAMMED).status, "True");
        assert_eq!(cond(&s, PROGRAMMED).message, "3/3 sidecars run config v-2 or newer");
        assert_eq!(cond(&s, READY).status, "True");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.config_version.as_deref(), Some("v-2"));
        assert_eq!(
            s.sidecars,
            Some(SidecarCounts {
                connected: 3,
                acked: 3,
                nacked: 0,
                stale: 0
            })
        );
        assert_eq!(s.last_error, None);
    }

    #[test]
    fn a_sidecar_on_an_older_config_is_stale() {
        let v = view(&[(Some(2), None), (Some(1), None), (None, None)]);
        let s = compute(&CommonStatus::default(), &facts(&v, &[], Some(2)), &now());
        assert_eq!(cond(&s, PROGRAMMED).status, "False");
        assert_eq!(cond(&s, PROGRAMMED).reason, "Pending");
        assert_eq!(cond(&s, PROGRAMMED).message, "1/3 sidecars run config v-2 or newer");
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(s.sidecars.as_ref().map(|c| c.stale), Some(2));
    }

    #[test]
    fn a_nack_is_reported_apart_with_its_error() {
        let v = view(&[(Some(2), None), (Some(1), Some("schema of topic x: bad"))]);
        let s = compute(&CommonStatus::default(), &facts(&v, &[], Some(2)), &now());
        assert_eq!(cond(&s, PROGRAMMED).reason, "Rejected");
        assert!(cond(&s, PROGRAMMED).message.contains("1 of 2 sidecars rejected"));
        assert_eq!(
            s.sidecars.as_ref().map(|c| (c.acked, c.nacked, c.stale)),
            Some((1, 1, 0))
        );
        assert!(s.last_error.as_deref().is_some_and(|e| e.contains("schema of topic x")));
    }

    #[test]
    fn a_semantic_error_names_the_field_and_keeps_the_served_generation() {
        let err = CompileError {
            resource: ResourceRef {
                kind: "Topic".into(),
                namespace: "demo".into(),
                name: "t".into(),
                generation: Some(3),
            },
            field: "spec.schema".into(),
            reason: Reason::InvalidSchema,
            message: "not a valid JSON Schema".into(),
        };
        let errors = [&err];
        let v = view(&[(Some(2), None)]);
        let mut f = facts(&v, &errors, None);
        f.serving_generation = Some(2);
        let s = compute(&CommonStatus::default(), &f, &now());
        assert_eq!(cond(&s, ACCEPTED).status, "False");
        assert_eq!(cond(&s, ACCEPTED).reason, "InvalidSchema");
        assert_eq!(cond(&s, ACCEPTED).message, "spec.schema: not a valid JSON Schema");
        assert_eq!(
            cond(&s, PROGRAMMED).message,
            "generation 3 was rejected; sidecars keep serving generation 2"
        );
        assert_eq!(cond(&s, READY).status, "False");
        assert_eq!(s.last_error.as_deref(), Some("spec.schema: not a valid JSON Schema"));
    }

    #[test]
    fn no_sidecars_is_ready_but_not_programmed() {
        let v = NamespaceView {
            current: Some(("v-1".into(), 1)),
            sidecars: Vec::new(),
        };
        let s = compute(&CommonStatus::default(), &facts(&v, &[], Some(1)), &now());
        assert_eq!(cond(&s, PROGRAMMED).reason, "NoSidecars");
        assert_eq!(cond(&s, READY).status, "True");
    }

    #[test]
    fn transition_time_changes_only_when_the_status_flips() {
        let old = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("valid"));
        let v = view(&[(Some(2), None)]);
        let first = compute(&CommonStatus::default(), &facts(&v, &[], Some(2)), &old);
        let later = now();
        let same = compute(&first, &facts(&v, &[], Some(2)), &later);
        assert_eq!(same, first, "recomputing an unchanged state changes nothing");
        let v2 = view(&[(Some(2), None), (None, None)]);
        let flipped = compute(&first, &facts(&v2, &[], Some(2)), &later);
        assert_eq!(cond(&flipped, PROGRAMMED).last_transition_time, later);
        assert_eq!(cond(&flipped, ACCEPTED).last_transition_time, old);
    }

    #[test]
    fn pausing_adds_a_condition_and_keeps_the_rest() {
        let v = view(&[(Some(2), None)]);
        let s = compute(&CommonStatus::default(), &facts(&v, &[], Some(2)), &now());
        let p = paused(&s, Some(4), &now());
        assert_eq!(cond(&p, PAUSED).status, "True");
        assert_eq!(p.observed_generation, Some(3));
        assert_eq!(cond(&p, READY), cond(&s, READY));
        let resumed = compute(&p, &facts(&v, &[], Some(2)), &now());
        assert!(resumed.conditions.iter().all(|c| c.type_ != PAUSED));
    }
}
