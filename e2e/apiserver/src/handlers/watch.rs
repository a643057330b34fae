//! `watch`: a stream of `{"type": ..., "object": ...}` lines over one chunked response.
//!
//! Start points follow the API conventions: no `resourceVersion` (or `0`) sends the
//! current objects as synthetic ADDED events first; a version `N` sends every change
//! after `N`, or one ERROR event with a 410 `Expired` Status when `N` is older than the
//! retained window (the client relists); `sendInitialEvents=true` sends the current
//! objects and then a BOOKMARK annotated `k8s.io/initial-events-end`.
//! `allowWatchBookmarks` adds periodic BOOKMARKs carrying the version the stream has
//! reached (and one just before the stream ends), and `timeoutSeconds` ends the stream. Selectors apply to old and new state,
//! so an object that stops matching is seen as DELETED, as from the watch cache.
//!
//! The stream owns no task: it is polled by the response body, so a client that goes
//! away drops it. It receives committed changes from the store's broadcast channel
//! (subscribed atomically with reading its starting state); falling more than the
//! channel's capacity behind ends it with 410, as the apiserver closes slow watchers.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::present;
use crate::registry::ResourceInfo;
use crate::request::{Output, Params, Target};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::App;
use crate::status::ApiError;
use crate::store::{Change, EventType, State};
use crate::table::{self, Include};

/// Default watch length when the client sets no `timeoutSeconds` (the apiserver picks
/// 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Watcher {
    app: App,
    info: Arc<ResourceInfo>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    output: Output,
    include: Include,
    /// Version up to which the change log has been read.
    cursor: u64,
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Change>>,
    deadline: Instant,
    bookmark_every: Option<Duration>,
    next_bookmark: Instant,
    done: bool,
}

/// Starts a watch; errors in the request itself are plain error responses.
pub fn serve(app: &App, target: &Target, params: &Params, output: Output) -> Response {
    match Watcher::start(app, target, params, output) {
        Ok(watcher) => {
            let stream = futures_util::stream::unfold(watcher, |mut w| async move {
                w.next_chunk().await.map(|chunk| (Ok::<Bytes, Infallible>(chunk), w))
            });
            let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => e.into_response(),
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

impl Watcher {
    fn start(app: &App, target: &Target, params: &Params, output: Output) -> Result<Self, ApiError> {
        let info = target.info.clone();
        let labels = LabelSelector::parse(params.label_selector.as_deref().unwrap_or(""))?;
        let fields = FieldSelector::parse(params.field_selector.as_deref().unwrap_or(""), &info)?;
        let start_rv = match params.resource_version.as_deref() {
            None | Some("0") => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {text:?}: must be a non-negative integer"
                ))
            })?),
        };
        let initial = match params.send_initial_events {
            Some(explicit) => explicit,
            None => start_rv.is_none(),
        };
        if params.send_initial_events == Some(true) && !params.allow_watch_bookmarks {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[crate::status::Cause::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                )],
            ));
        }
        let timeout = params.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        let bookmark_every = params.allow_watch_bookmarks.then_some(app.config.bookmark_interval);
        let now = Instant::now();
        let namespace = if info.namespaced {
            target.namespace.clone()
        } else {
            None
        };
        // The starting state and the subscription are taken atomically.
        let (start, rx) = app.store.read_and_subscribe(|s| {
            if initial {
                s.snapshot(&info.storage_group, &info.storage_resource, namespace.as_deref(), None)
                    .map(|objects| (objects, Vec::new(), s.current_rv()))
            } else {
                let from = start_rv.unwrap_or(0);
                s.changes_since(from)
                    .map(|backlog| (Vec::new(), backlog, s.current_rv()))
            }
        });
        let mut w = Self {
            app: app.clone(),
            info,
            namespace,
            labels,
            fields,
            output,
            include: Include::from_param(params.include_object.as_deref()),
            cursor: 0,
            pending: VecDeque::new(),
            rx,
            deadline: now + timeout,
            bookmark_every,
            next_bookmark: now + bookmark_every.unwrap_or(DEFAULT_TIMEOUT),
            done: false,
        };
        match start {
            Err(expired) => {
                // As the watch cache does: a 200 stream with one ERROR event.
                w.pending.push_back(line("ERROR", &expired.to_status()));
                w.done = true;
            }
            Ok((objects, backlog, rv)) => {
                w.cursor = if initial {
                    start_rv.map_or(rv, |r| r.max(rv))
                } else {
                    start_rv.unwrap_or(0)
                };
                let lines: Vec<Bytes> = objects
                    .iter()
                    .filter(|(_, o)| w.matches(o))
                    .map(|(_, o)| line("ADDED", &w.render(o)))
                    .collect();
                w.pending.extend(lines);
                if params.send_initial_events == Some(true) {
                    let bookmark = w.bookmark(true);
                    w.pending.push_back(bookmark);
                }
                w.process(&backlog);
                w.cursor = w.cursor.max(rv);
            }
        }
        Ok(w)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && (self.fields.is_empty() || self.fields.matches(&present(&self.info, obj)))
    }

    fn render(&self, obj: &Value) -> Value {
        let obj = present(&self.info, obj);
        match self.output {
            Output::Object => obj,
            Output::Metadata => table::partial_metadata(&obj),
            Output::Table => {
                let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
                table::table(&self.info, &[obj], json!({"resourceVersion": rv}), self.include)
            }
        }
    }

    fn bookmark(&self, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": self.cursor.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": meta}),
        )
    }

    fn relevant(&self, change: &Change) -> bool {
        change.key.group == self.info.storage_group
            && change.key.resource == self.info.storage_resource
            && self.namespace.as_deref().is_none_or(|ns| change.key.namespace == ns)
    }

    /// Turns changes into watch events (skipping those already delivered).
    fn process(&mut self, changes: &[Arc<Change>]) {
        let mut lines = Vec::new();
        for change in changes.iter().filter(|c| c.rv > self.cursor && self.relevant(c)) {
            let now_matches = self.matches(&change.object);
            let was_matching = change.prev.as_deref().is_some_and(|p| self.matches(p));
            let kind = match (change.kind, was_matching, now_matches) {
                (EventType::Added, _, true) | (EventType::Modified, false, true) => "ADDED",
                (EventType::Modified, true, true) => "MODIFIED",
                (EventType::Modified, true, false) | (EventType::Deleted, _, true) => "DELETED",
                _ => continue,
            };
            lines.push(line(kind, &self.render(&change.object)));
        }
        if let Some(last) = changes.last() {
            self.cursor = self.cursor.max(last.rv);
        }
        self.pending.extend(lines);
    }

    /// Takes every change already published and the store's version, so a bookmark
    /// can carry the version this stream has fully caught up with.
    fn catch_up(&mut self) {
        let rx = &mut self.rx;
        let (drained, current) = self.app.store.read(|s| {
            let mut drained = Vec::new();
            let mut lagged = false;
            loop {
                match rx.try_recv() {
                    Ok(c) => drained.push(c),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            ((drained, lagged), s.current_rv())
        });
        let (drained, lagged) = drained;
        if lagged {
            self.lagged();
            return;
        }
        self.process(&drained);
        self.cursor = self.cursor.max(current);
    }

    /// Ends the stream of a watcher that fell behind the broadcast buffer.
    fn lagged(&mut self) {
        let oldest = self.app.store.read(State::oldest_rv);
        self.pending.push_back(line(
            "ERROR",
            &ApiError::expired(self.cursor, oldest.max(self.cursor + 1)).to_status(),
        ));
        self.done = true;
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if !self.pending.is_empty() {
                let mut out = Vec::new();
                while let Some(chunk) = self.pending.pop_front() {
                    out.extend_from_slice(&chunk);
                }
                return Some(Bytes::from(out));
            }
            if self.done {
                return None;
            }
            if Instant::now() >= self.deadline {
                // Like the apiserver, end with a bookmark so the client resumes from here.
                if self.bookmark_every.is_some() {
                    self.catch_up();
                    if !self.done {
                        let bookmark = self.bookmark(false);
                        self.pending.push_back(bookmark);
                    }
                }
                self.done = true;
                continue;
            }
            let wake = if self.bookmark_every.is_some() {
                self.deadline.min(self.next_bookmark)
            } else {
                self.deadline
            };
            let stop = self.app.shutdown.clone();
            tokio::select! {
                () = stop.cancelled() => return None,
                received = self.rx.recv() => match received {
                    Ok(change) => self.process(&[change]),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.lagged(),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(wake) => {
                    if let Some(every) = self.bookmark_every
                        && Instant::now() >= self.next_bookmark
                    {
                        self.catch_up();
                        if !self.done {
                            let bookmark = self.bookmark(false);
                            self.pending.push_back(bookmark);
                        }
                        self.next_bookmark = Instant::now() + every;
                    }
                }
            }
        }
    }
}
