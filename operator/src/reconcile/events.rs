//! Kubernetes Events about reconciled resources (accepted, rejected, purged), sent by
//! one task from a bounded queue so a slow API server never blocks reconciling.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One Event to publish.
#[derive(Debug)]
pub struct Note {
    pub object: ObjectReference,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// Queue of Events.
#[derive(Clone, Debug)]
pub struct Events {
    tx: mpsc::Sender<Note>,
}

impl Events {
    /// Starts the sending task; it ends on shutdown.
    pub fn start(
        client: kube::Client,
        identity: String,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()>) {
        let (tx, mut rx) = mpsc::channel::<Note>(512);
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: "eventcast-operator".into(),
                instance: Some(identity),
            },
        );
        let task = async move {
            loop {
                let note = tokio::select! {
                    () = shutdown.cancelled() => return,
                    note = rx.recv() => note,
                };
                let Some(note) = note else { return };
                let event = Event {
                    type_: if note.warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: note.reason.into(),
                    note: Some(truncate(note.message)),
                    action: note.action.into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &note.object).await {
                    tracing::warn!(error = %e, reason = note.reason, "publishing a Kubernetes Event");
                }
            }
        };
        (Self { tx }, task)
    }

    /// Queues an Event; dropped (and logged) when the queue is full.
    pub fn send(&self, note: Note) {
        if let Err(e) = self.tx.try_send(note) {
            tracing::warn!(error = %e, "event queue full; dropping a Kubernetes Event");
        }
    }
}

/// Event notes are limited to 1 KiB.
fn truncate(mut s: String) -> String {
    if s.len() > 1000 {
        let mut cut = 997;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}
