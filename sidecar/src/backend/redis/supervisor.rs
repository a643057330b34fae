//! Keeps the fred clients' connection tasks running.
//!
//! Every fred client has one connection task (the "router") that writes commands and
//! reads replies; a command sent while it is not running waits in the client's channel
//! until its timeout, and the client still reports itself connected. fred 10.1 ends that
//! task on errors it should only report to the command at hand: after `-ASK` (a slot
//! migrating, e.g. `redis-cli --cluster reshard`) it sends `ASKING` to the target but
//! routes the command back to the slot's cached owner, which answers `-ASK` again, and
//! once the command's write attempts are used up `process_ask` returns "Max attempts
//! reached" to the router loop, which stops. Every later command on that client then
//! times out, for every topic, until the process restarts. No setting avoids it: the
//! command's attempts run out within a few ASK round trips while the slot is migrating.
//!
//! So a supervisor owns the connection tasks, and restarts a client's task when it ends
//! while the backend is open (`connect` again: fred keeps the command channel, so the
//! commands queued meanwhile run on the new task, and the new task syncs the cluster's
//! slots). The health probe asks for a restart of the command client as well when its
//! pings keep timing out while a new connection to the cluster answers (a task that is
//! running but stuck). Each restart is logged and counted in
//! `eventcast_redis_client_restarts_total{client, reason}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use fred::interfaces::ClientLike;
use fred::types::ConnectHandle;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Which client a connection task belongs to (the metric's `client` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The shared, pipelined command client.
    Commands,
    /// One of the clients of durable appends (followed by `WAIT`).
    Durable,
    /// The sharded pub/sub subscriber.
    Subscriber,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commands => "commands",
            Self::Durable => "durable",
            Self::Subscriber => "subscriber",
        }
    }
}

/// Why a connection task was restarted (the metric's `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The task ended by itself while the backend was open.
    TaskEnded,
    /// The task runs, but the client's commands time out while a new connection works.
    Unresponsive,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskEnded => "task_ended",
            Self::Unresponsive => "unresponsive",
        }
    }
}

/// Least time between two restarts.
const MIN_RESTART_INTERVAL: Duration = Duration::from_millis(200);

type Connect = Box<dyn Fn() -> ConnectHandle + Send + Sync>;

/// One supervised client.
struct Slot {
    role: Role,
    /// Starts the client's connection task (`ClientLike::connect`).
    connect: Connect,
    /// The running task; `None` once [`Supervisor::take_handles`] took it for closing.
    handle: Option<ConnectHandle>,
}

/// Owner of the fred clients' connection tasks.
pub struct Supervisor {
    slots: Mutex<Vec<Slot>>,
    /// The health probe's request to restart the command client (a permit is kept
    /// until the task takes it, so a request is never lost and never doubled).
    restart_commands: Notify,
    /// Cancelled when the backend closes: ended tasks are then not restarted.
    closing: CancellationToken,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let roles: Vec<Role> = self.slots.lock().iter().map(|s| s.role).collect();
        f.debug_struct("Supervisor")
            .field("clients", &roles)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Mutex::new(Vec::new()),
            restart_commands: Notify::new(),
            closing: CancellationToken::new(),
            metrics,
        }
    }

    /// Starts `client`'s connection task and supervises it from now on.
    pub fn start<C: ClientLike + Clone + 'static>(&self, role: Role, client: &C) {
        let client = client.clone();
        let connect: Connect = Box::new(move || client.connect());
        let handle = connect();
        self.slots.lock().push(Slot {
            role,
            connect,
            handle: Some(handle),
        });
    }

    /// Asks the supervisor task to restart the command client's connection task.
    pub fn restart_unresponsive(&self) {
        self.restart_commands.notify_one();
    }

    /// Restarts ended tasks, and the command client's when asked, until `shutdown` or
    /// [`Supervisor::take_handles`].
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_restart: Option<Instant> = None;
        loop {
            let (index, reason, ended) = tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.closing.cancelled() => return,
                (index, result) = self.next_ended() => (index, Reason::TaskEnded, Some(result)),
                () = self.restart_commands.notified() => {
                    match self.slots.lock().iter().position(|s| s.role == Role::Commands) {
                        Some(index) => (index, Reason::Unresponsive, None),
                        None => continue,
                    }
                }
            };
            // A task that ends as soon as it starts must not make this loop spin.
            if let Some(at) = last_restart {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.closing.cancelled() => return,
                    () = tokio::time::sleep_until((at + MIN_RESTART_INTERVAL).into()) => {}
                }
            }
            self.restart(index, reason, ended.as_ref());
            last_restart = Some(Instant::now());
        }
    }

    /// Resolves when a supervised task ends, with its slot and outcome. The lock is taken
    /// only inside each poll, never across an await.
    fn next_ended(&self) -> impl Future<Output = (usize, TaskResult)> + '_ {
        std::future::poll_fn(|cx| {
            let mut slots = self.slots.lock();
            for (index, slot) in slots.iter_mut().enumerate() {
                if let Some(handle) = slot.handle.as_mut()
                    && let Poll::Ready(result) = Pin::new(handle).poll(cx)
                {
                    slot.handle = None;
                    return Poll::Ready((index, result));
                }
            }
            Poll::Pending
        })
    }

    /// Starts the slot's task again (stopping the old one first, when it still runs).
    fn restart(&self, index: usize, reason: Reason, ended: Option<&TaskResult>) {
        if self.closing.is_cancelled() {
            return;
        }
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get_mut(index) else {
            return;
        };
        if let Some(old) = slot.handle.take() {
            // A stuck task holds the client's connections; its state is thrown away.
            old.abort();
        }
        let role = slot.role.as_str();
        match ended {
            Some(Ok(Err(e))) => {
                tracing::warn!(client = role, reason = reason.as_str(), error = %e, "redis connection task ended; restarting it");
            }
            Some(Err(e)) => {
                tracing::warn!(client = role, reason = reason.as_str(), error = %e, "redis connection task failed; restarting it");
            }
            Some(Ok(Ok(()))) | None => tracing::warn!(
                client = role,
                reason = reason.as_str(),
                "restarting redis connection task"
            ),
        }
        self.metrics
            .redis_client_restarts
            .with_label_values(&[role, reason.as_str()])
            .inc();
        slot.handle = Some((slot.connect)());
    }

    /// Stops restarting and hands the running tasks to the caller (closing the backend).
    pub fn take_handles(&self) -> Vec<ConnectHandle> {
        self.closing.cancel();
        self.slots.lock().iter_mut().filter_map(|s| s.handle.take()).collect()
    }
}

type TaskResult = Result<Result<(), fred::error::Error>, tokio::task::JoinError>;

impl Drop for Supervisor {
    /// A backend dropped without `close` (a test, a failed start) must not leave fred's
    /// connection tasks reconnecting forever.
    fn drop(&mut self) {
        for h in self.take_handles() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use fred::prelude::{Builder, Client, Config, ServerConfig};

    use super::*;

    /// A client whose connection task ends at once: nothing listens on its port, and
    /// with `fail_fast` and no reconnect policy fred gives up on the first try.
    fn dead_end_client() -> Client {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        Builder::from_config(Config {
            fail_fast: true,
            server: ServerConfig::new_centralized("127.0.0.1", port),
            ..Config::default()
        })
        .build()
        .expect("client")
    }

    fn restarts(metrics: &Metrics, reason: Reason) -> u64 {
        metrics
            .redis_client_restarts
            .with_label_values(&[Role::Commands.as_str(), reason.as_str()])
            .get()
    }

    #[tokio::test]
    async fn restarts_ended_and_unresponsive_tasks_until_closed() {
        let metrics = Metrics::new().expect("metrics");
        let supervisor = Arc::new(Supervisor::new(metrics.clone()));
        supervisor.start(Role::Commands, &dead_end_client());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(supervisor.clone().run(shutdown.clone()));

        let deadline = Instant::now() + Duration::from_secs(5);
        while restarts(&metrics, Reason::TaskEnded) < 2 {
            assert!(Instant::now() < deadline, "an ended task is restarted, again and again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        supervisor.restart_unresponsive();
        while restarts(&metrics, Reason::Unresponsive) < 1 {
            assert!(
                Instant::now() < deadline,
                "the probe's request restarts the command client"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Closing: the supervisor stops, and hands over the task it started last.
        let handles = supervisor.take_handles();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the supervisor stops when closing")
            .expect("supervisor task");
        let ended = restarts(&metrics, Reason::TaskEnded);
        tokio::time::sleep(MIN_RESTART_INTERVAL * 2).await;
        assert_eq!(restarts(&metrics, Reason::TaskEnded), ended, "no restart after closing");
        assert!(handles.len() <= 1, "one task per client: {}", handles.len());
        for h in handles {
            h.abort();
        }
    }

    #[tokio::test]
    async fn stops_on_shutdown() {
        let metrics = Metrics::new().expect("metrics");
        let supervisor = Arc::new(Supervisor::new(metrics));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(supervisor.clone().run(shutdown.clone()));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the supervisor stops on shutdown")
            .expect("supervisor task");
    }
}
