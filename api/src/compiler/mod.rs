//! The compiler: a namespace's Topic, Subscription and BroadcastPolicy resources (plus
//! the Secrets they reference) -> one [`CompiledConfig`].
//!
//! Validation here covers what a CRD schema cannot: regexes, filter field paths,
//! JSON Schemas, references to topics and secrets, conflicting policies, routing loops.
//! A resource with errors is left out of the config and its errors are returned, so the
//! operator can report `Accepted=False` on it while the rest keeps working; callers
//! that want all-or-nothing (the sidecar's `--manifests` mode) use [`compile_strict`].
//! Output is deterministic: the same resources give the same config and version.

mod error;
mod policy;
mod secrets;
mod subscription;
mod topic;

use std::collections::BTreeMap;

use kube::ResourceExt;

pub use error::{CompileError, Reason};
pub use secrets::{SecretLookupError, Secrets};

use crate::config::{CompiledConfig, ResourceRef};
use crate::crd::{BroadcastPolicy, Subscription, Topic};

/// Everything in one namespace that feeds the config.
#[derive(Clone, Debug, Default)]
pub struct CompileInput {
    pub namespace: String,
    pub topics: Vec<Topic>,
    pub subscriptions: Vec<Subscription>,
    pub policies: Vec<BroadcastPolicy>,
    pub secrets: Secrets,
}

/// The config built from every valid resource, and the errors of the others.
#[derive(Clone, Debug)]
pub struct CompileOutput {
    pub config: CompiledConfig,
    pub errors: Vec<CompileError>,
    /// Accepted BroadcastPolicy name -> how many topics it selects.
    pub policy_selections: BTreeMap<String, u32>,
}

impl CompileOutput {
    /// Errors about one resource (kind + name), for its status.
    pub fn errors_for(&self, kind: &str, name: &str) -> impl Iterator<Item = &CompileError> {
        let kind = kind.to_owned();
        let name = name.to_owned();
        self.errors
            .iter()
            .filter(move |e| e.resource.kind == kind && e.resource.name == name)
    }
}

pub(crate) fn resource_ref<K: kube::Resource<DynamicType = ()>>(obj: &K, namespace: &str) -> ResourceRef {
    ResourceRef {
        kind: K::kind(&()).into_owned(),
        namespace: obj.namespace().unwrap_or_else(|| namespace.to_owned()),
        name: obj.name_any(),
        generation: obj.meta().generation,
    }
}

/// Compiles every resource it can; see the module docs.
pub fn compile(input: &CompileInput) -> CompileOutput {
    let mut errors = Vec::new();
    let mut sources = Vec::new();

    let mut topics = topic::compile_own(input, &mut errors);
    let policies = policy::compile_all(input, &topics, &mut errors);
    topic::apply_policies(&mut topics, &policies);
    let policy_selections = policies
        .iter()
        .map(|p| (p.name.clone(), u32::try_from(p.selected.len()).unwrap_or(u32::MAX)))
        .collect();
    topic::check_references(&mut topics, &mut errors);

    let topic_map: BTreeMap<String, crate::config::TopicConfig> =
        topics.into_iter().map(|t| (t.config.name.clone(), t.config)).collect();
    let subscriptions = subscription::compile_all(input, &topic_map, &mut errors);

    for t in &input.topics {
        sources.push(resource_ref(t, &input.namespace));
    }
    for s in &input.subscriptions {
        sources.push(resource_ref(s, &input.namespace));
    }
    for p in &input.policies {
        sources.push(resource_ref(p, &input.namespace));
    }
    // Only resources that made it in are sources of this config.
    sources.retain(|r| {
        !errors
            .iter()
            .any(|e| e.resource.kind == r.kind && e.resource.name == r.name)
    });
    sources.sort();

    let (auth, connection) = policy::pod_wide(&policies);
    errors.sort_by(|a, b| (&a.resource, &a.field).cmp(&(&b.resource, &b.field)));
    CompileOutput {
        config: CompiledConfig {
            namespace: input.namespace.clone(),
            topics: topic_map,
            subscriptions,
            auth,
            connection,
            sources,
        },
        errors,
        policy_selections,
    }
}

/// All-or-nothing compile: any error rejects the whole set.
pub fn compile_strict(input: &CompileInput) -> Result<CompiledConfig, Vec<CompileError>> {
    let out = compile(input);
    if out.errors.is_empty() {
        Ok(out.config)
    } else {
        Err(out.errors)
    }
}

#[cfg(test)]
mod tests;
