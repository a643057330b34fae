//! Compile errors: each names the resource, the field path and a reason a status
//! condition can carry.

use std::fmt;

use crate::config::ResourceRef;

/// Machine-readable reason, used as the `Accepted=False` condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidSpec,
    InvalidName,
    InvalidPattern,
    InvalidFilter,
    InvalidSchema,
    UnknownTopic,
    DuplicateTopic,
    PolicyConflict,
    SecretNotFound,
    InvalidKey,
    NoMatchingTopics,
    RoutingLoop,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidSpec => "InvalidSpec",
            Reason::InvalidName => "InvalidName",
            Reason::InvalidPattern => "InvalidPattern",
            Reason::InvalidFilter => "InvalidFilter",
            Reason::InvalidSchema => "InvalidSchema",
            Reason::UnknownTopic => "UnknownTopic",
            Reason::DuplicateTopic => "DuplicateTopic",
            Reason::PolicyConflict => "PolicyConflict",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidKey => "InvalidKey",
            Reason::NoMatchingTopics => "NoMatchingTopics",
            Reason::RoutingLoop => "RoutingLoop",
        }
    }
}

/// A semantic error in one resource.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    pub resource: ResourceRef,
    /// Field path, e.g. `spec.filter[0].value`.
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.resource, self.field, self.message)
    }
}

/// Collects errors for one resource.
pub(crate) struct Errors<'a> {
    resource: &'a ResourceRef,
    pub(crate) list: Vec<CompileError>,
}

impl<'a> Errors<'a> {
    pub(crate) fn new(resource: &'a ResourceRef) -> Self {
        Self {
            resource,
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, field: impl Into<String>, reason: Reason, message: impl Into<String>) {
        self.list.push(CompileError {
            resource: self.resource.clone(),
            field: field.into(),
            reason,
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
