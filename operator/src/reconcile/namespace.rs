//! One namespace's reconcile state and its compile step.
//!
//! What goes into the config is not simply "every object as it is now":
//! - a paused resource contributes the copy seen when it was paused;
//! - a resource whose current generation is rejected contributes its last accepted
//!   copy, so a bad edit never takes a working topic away from the sidecars (the
//!   rejection shows as `Accepted=False` on it);
//! - a resource being deleted contributes nothing.
//!
//! It also remembers which published config (sequence) first contained each resource's
//! generation, which is what `Programmed` counts sidecars against.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use eventcast_api::compiler::{CompileInput, CompileOutput, Secrets};
use eventcast_api::crd::{BroadcastPolicy, PAUSED_ANNOTATION, Subscription, Topic};
use eventcast_api::{CompileError, compile};
use kube::ResourceExt;

use crate::resource::{Kind, ResourceKey};

/// A reconciled object of any of the three kinds.
#[derive(Clone, Debug)]
pub enum Object {
    Topic(Arc<Topic>),
    Subscription(Arc<Subscription>),
    BroadcastPolicy(Arc<BroadcastPolicy>),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Topic(_) => Kind::Topic,
            Object::Subscription(_) => Kind::Subscription,
            Object::BroadcastPolicy(_) => Kind::BroadcastPolicy,
        }
    }

    pub fn meta(&self) -> &kube::api::ObjectMeta {
        match self {
            Object::Topic(o) => &o.metadata,
            Object::Subscription(o) => &o.metadata,
            Object::BroadcastPolicy(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> String {
        self.meta().name.clone().unwrap_or_default()
    }

    pub fn generation(&self) -> Option<i64> {
        self.meta().generation
    }

    pub fn key(&self, namespace: &str) -> ResourceKey {
        ResourceKey::new(self.kind(), namespace, &self.name())
    }

    pub fn is_paused(&self) -> bool {
        self.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub fn is_deleting(&self) -> bool {
        self.meta().deletion_timestamp.is_some()
    }

    /// Both are the same object at the same generation with the same labels and
    /// annotations: everything the compiler reads is equal.
    fn same_source(&self, other: &Object) -> bool {
        let (a, b) = (self.meta(), other.meta());
        self.kind() == other.kind()
            && a.uid == b.uid
            && a.generation.is_some()
            && a.generation == b.generation
            && a.labels == b.labels
            && a.annotations == b.annotations
            && a.deletion_timestamp.is_none()
            && b.deletion_timestamp.is_none()
    }

    fn same_allocation(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Topic(a), Object::Topic(b)) => Arc::ptr_eq(a, b),
            (Object::Subscription(a), Object::Subscription(b)) => Arc::ptr_eq(a, b),
            (Object::BroadcastPolicy(a), Object::BroadcastPolicy(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The objects of one namespace, as the caches hold them now.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<Object>,
    pub secrets: Secrets,
}

/// Per resource: the generation in the config and the first sequence that had it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Programmed {
    pub generation: Option<i64>,
    pub since: u64,
    /// Version of the config published as `since`.
    pub version: Arc<str>,
}

/// The result of compiling a namespace.
#[derive(Debug)]
pub struct Compiled {
    pub output: CompileOutput,
    /// Errors of each resource's current generation (before falling back to last good).
    pub errors: HashMap<ResourceKey, Vec<CompileError>>,
}

/// Reconcile state of one namespace.
#[derive(Debug, Default)]
pub struct NamespaceState {
    last_good: HashMap<ResourceKey, Object>,
    pinned: HashMap<ResourceKey, Object>,
    programmed: HashMap<ResourceKey, Programmed>,
}

fn input_of(namespace: &str, objects: &BTreeMap<ResourceKey, Object>, secrets: &Secrets) -> CompileInput {
    let mut input = CompileInput {
        namespace: namespace.to_owned(),
        secrets: secrets.clone(),
        ..CompileInput::default()
    };
    for o in objects.values() {
        match o {
            Object::Topic(t) => input.topics.push(Topic::clone(t)),
            Object::Subscription(s) => input.subscriptions.push(Subscription::clone(s)),
            Object::BroadcastPolicy(p) => input.policies.push(BroadcastPolicy::clone(p)),
        }
    }
    input
}

fn errors_by_key(namespace: &str, output: &CompileOutput) -> HashMap<ResourceKey, Vec<CompileError>> {
    let mut out: HashMap<ResourceKey, Vec<CompileError>> = HashMap::new();
    for e in &output.errors {
        let kind = match e.resource.kind.as_str() {
            "Topic" => Kind::Topic,
            "Subscription" => Kind::Subscription,
            _ => Kind::BroadcastPolicy,
        };
        out.entry(ResourceKey::new(kind, namespace, &e.resource.name))
            .or_default()
            .push(e.clone());
    }
    out
}

impl NamespaceState {
    /// Compiles the namespace from `snapshot` (see the module docs for what goes in).
    pub fn compile(&mut self, namespace: &str, snapshot: &Snapshot) -> Compiled {
        let live: HashMap<ResourceKey, &Object> = snapshot
            .objects
            .iter()
            .filter(|o| !o.is_deleting())
            .map(|o| (o.key(namespace), o))
            .collect();
        // Forget resources that are gone (or going).
        self.last_good.retain(|k, _| live.contains_key(k));
        self.pinned.retain(|k, _| live.contains_key(k));
        self.programmed.retain(|k, _| live.contains_key(k));

        let mut chosen: BTreeMap<ResourceKey, Object> = BTreeMap::new();
        for (key, obj) in &live {
            let used = if obj.is_paused() {
                // Paused after the operator (re)started: the current copy is all there is.
                self.pinned
                    .entry(key.clone())
                    .or_insert_with(|| self.last_good.get(key).cloned().unwrap_or_else(|| (*obj).clone()))
                    .clone()
            } else {
                self.pinned.remove(key);
                (*obj).clone()
            };
            chosen.insert(key.clone(), used);
        }

        let first = compile(&input_of(namespace, &chosen, &snapshot.secrets));
        let errors = errors_by_key(namespace, &first);
        // Rejected generations fall back to their last accepted copy.
        let mut substituted = false;
        for key in errors.keys() {
            if self.pinned.contains_key(key) {
                continue;
            }
            if let Some(good) = self.last_good.get(key)
                && let Some(current) = chosen.get(key)
                && good.generation() != current.generation()
            {
                chosen.insert(key.clone(), good.clone());
                substituted = true;
            }
        }
        let output = if substituted {
            compile(&input_of(namespace, &chosen, &snapshot.secrets))
        } else {
            first
        };
        let final_errors = errors_by_key(namespace, &output);
        for (key, obj) in &chosen {
            if !final_errors.contains_key(key) {
                self.last_good.insert(key.clone(), obj.clone());
            }
        }
        Compiled { output, errors }
    }

    /// Replaces remembered last-good copies by the cache's current ones where they differ
    /// only in what the config does not use (status, resourceVersion). Without this a
    /// status pass that did not recompile would leave every old copy alive beside the
    /// cache's new one: twice the memory per object.
    pub fn refresh(&mut self, namespace: &str, snapshot: &Snapshot) {
        if self.last_good.is_empty() {
            return;
        }
        for o in &snapshot.objects {
            if o.is_deleting() {
                continue;
            }
            let key = o.key(namespace);
            if let Some(good) = self.last_good.get_mut(&key)
                && !good.same_allocation(o)
                && good.same_source(o)
            {
                *good = o.clone();
            }
        }
    }

    /// Records that the config holding `output`'s sources was published as `seq`.
    pub fn record_published(&mut self, namespace: &str, output: &CompileOutput, seq: u64, version: &str) {
        let version: Arc<str> = Arc::from(version);
        for source in &output.config.sources {
            let kind = match source.kind.as_str() {
                "Topic" => Kind::Topic,
                "Subscription" => Kind::Subscription,
                _ => Kind::BroadcastPolicy,
            };
            let key = ResourceKey::new(kind, namespace, &source.name);
            let entry = self.programmed.entry(key).or_insert_with(|| Programmed {
                generation: source.generation,
                since: seq,
                version: version.clone(),
            });
            if entry.generation != source.generation {
                *entry = Programmed {
                    generation: source.generation,
                    since: seq,
                    version: version.clone(),
                };
            }
        }
        let in_config: std::collections::HashSet<(&str, &str)> = output
            .config
            .sources
            .iter()
            .map(|s| (s.kind.as_str(), s.name.as_str()))
            .collect();
        self.programmed
            .retain(|k, _| in_config.contains(&(k.kind.as_str(), k.name.as_str())));
    }

    /// Generation of a resource in the config and the sequence since which it is there.
    pub fn programmed(&self, key: &ResourceKey) -> Option<&Programmed> {
        self.programmed.get(key)
    }

    /// The copy of a resource the config was built from (for Topics being deleted: the
    /// wire name), if it was ever accepted.
    pub fn last_good(&self, key: &ResourceKey) -> Option<&Object> {
        self.last_good.get(key)
    }
}

/// Wire name of a Topic: `spec.name`, or its `metadata.name`.
pub fn topic_wire_name(t: &Topic) -> String {
    t.spec.name.clone().unwrap_or_else(|| t.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, generation: i64, spec: &str) -> Object {
        let yaml = format!(
            "apiVersion: eventcast.dev/v1alpha1\nkind: Topic\nmetadata: {{name: {name}, namespace: demo, generation: {generation}}}\nspec: {spec}\n"
        );
        Object::Topic(Arc::new(serde_yaml::from_str(&yaml).expect("topic yaml")))
    }

    fn snapshot(objects: Vec<Object>) -> Snapshot {
        Snapshot {
            objects,
            secrets: Secrets::default(),
        }
    }

    #[test]
    fn a_rejected_edit_keeps_the_last_good_copy_in_the_config() {
        let mut state = NamespaceState::default();
        let good = topic("t", 1, "{retention: {maxEvents: 10}}");
        let c = state.compile("demo", &snapshot(vec![good]));
        assert!(c.errors.is_empty());
        assert_eq!(c.output.config.topics["t"].retention.max_events, 10);
        state.record_published("demo", &c.output, 1, "v");

        let bad = topic(
            "t",
            2,
            r#"{retention: {maxEvents: 20}, schema: {type: "no-such-type"}}"#,
        );
        let c = state.compile("demo", &snapshot(vec![bad]));
        let key = ResourceKey::new(Kind::Topic, "demo", "t");
        assert!(c.errors.contains_key(&key), "the bad generation is reported");
        assert_eq!(
            c.output.config.topics["t"].retention.max_events, 10,
            "the last good copy keeps serving"
        );
        assert_eq!(c.output.config.sources[0].generation, Some(1));
        state.record_published("demo", &c.output, 1, "v");
        assert_eq!(state.programmed(&key).map(|p| p.generation), Some(Some(1)));
    }

    #[test]
    fn a_paused_resource_keeps_its_config_and_deletion_still_applies() {
        let mut state = NamespaceState::default();
        let c = state.compile("demo", &snapshot(vec![topic("t", 1, "{retention: {maxEvents: 10}}")]));
        state.record_published("demo", &c.output, 1, "v");
        let mut edited = topic("t", 2, "{retention: {maxEvents: 99}}");
        if let Object::Topic(t) = &mut edited {
            Arc::make_mut(t)
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(PAUSED_ANNOTATION.into(), "true".into());
        }
        let c = state.compile("demo", &snapshot(vec![edited]));
        assert_eq!(c.output.config.topics["t"].retention.max_events, 10);
        let c = state.compile("demo", &snapshot(vec![topic("t", 3, "{retention: {maxEvents: 99}}")]));
        assert_eq!(
            c.output.config.topics["t"].retention.max_events, 99,
            "unpausing applies the edit"
        );
        let c = state.compile("demo", &snapshot(vec![]));
        assert!(c.output.config.topics.is_empty());
    }

    #[test]
    fn programmed_since_moves_only_with_the_generation() {
        let mut state = NamespaceState::default();
        let key = ResourceKey::new(Kind::Topic, "demo", "a");
        let c = state.compile("demo", &snapshot(vec![topic("a", 1, "{}")]));
        state.record_published("demo", &c.output, 4, "v");
        // Another resource's change publishes seq 5; `a` is still programmed since 4.
        let c = state.compile("demo", &snapshot(vec![topic("a", 1, "{}"), topic("b", 1, "{}")]));
        state.record_published("demo", &c.output, 5, "v");
        assert_eq!(state.programmed(&key).map(|p| p.since), Some(4));
        let c = state.compile(
            "demo",
            &snapshot(vec![topic("a", 2, "{presence: true}"), topic("b", 1, "{}")]),
        );
        state.record_published("demo", &c.output, 6, "v");
        assert_eq!(
            state.programmed(&key).map(|p| (p.generation, p.since)),
            Some((Some(2), 6))
        );
    }

    #[test]
    fn refresh_swaps_only_copies_with_the_same_source() {
        let mut state = NamespaceState::default();
        let key = ResourceKey::new(Kind::Topic, "demo", "t");
        let first = topic("t", 1, "{}");
        state.compile("demo", &snapshot(vec![first]));
        // A status write: same generation, new allocation.
        let status_only = topic("t", 1, "{}");
        state.refresh("demo", &snapshot(vec![status_only.clone()]));
        assert!(state.last_good(&key).is_some_and(|g| g.same_allocation(&status_only)));
        // A new generation is not a refresh: the last good copy stays until it compiles.
        let edited = topic("t", 2, "{presence: true}");
        state.refresh("demo", &snapshot(vec![edited]));
        assert!(state.last_good(&key).is_some_and(|g| g.same_allocation(&status_only)));
        assert_eq!(state.last_good(&key).and_then(Object::generation), Some(1));
    }

    #[test]
    fn compiling_is_deterministic() {
        let objs = vec![topic("b", 1, "{}"), topic("a", 1, "{presence: true}")];
        let mut reversed = objs.clone();
        reversed.reverse();
        let v1 = NamespaceState::default()
            .compile("demo", &snapshot(objs))
            .output
            .config
            .version();
        let v2 = NamespaceState::default()
            .compile("demo", &snapshot(reversed))
            .output
            .config
            .version();
        assert_eq!(v1, v2);
    }
}
