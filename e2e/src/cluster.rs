//! A Kubernetes API test server on an ephemeral loopback port, with a kubeconfig in a
//! temporary directory, the real `kubectl` (`$KUBECTL` or `kubectl` on PATH) and kube-rs
//! clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use eventcast_test_apiserver::{Options, RunningServer, kubeconfig, start};

/// What a kubectl run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with the output unless kubectl succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "kubectl failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics with the output unless kubectl failed.
    #[track_caller]
    pub fn failed(self) -> Self {
        assert_ne!(self.code, 0, "kubectl unexpectedly succeeded\nstdout:\n{}", self.stdout);
        self
    }
}

/// The API server and everything needed to talk to it.
#[derive(Debug)]
pub struct Cluster {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr")
}

/// The workspace root (for `crds/` and `examples/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

impl Cluster {
    /// Starts the server and installs the Eventcast CRDs with `kubectl apply -f crds/`.
    pub async fn start() -> Self {
        let server = start(Options::default()).await.expect("API test server starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        kubeconfig::write(&kubeconfig, &server.url()).expect("kubeconfig written");
        let cluster = Self {
            server,
            dir,
            kubeconfig,
        };
        let crds = workspace_root().join("crds");
        cluster
            .kubectl(&["apply", "-f", &crds.display().to_string()])
            .await
            .ok();
        cluster
    }

    /// Writes `text` to a file in the test directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("file written");
        path.display().to_string()
    }

    /// `kubectl apply -f -` with `yaml` on stdin.
    pub async fn apply(&self, yaml: &str) -> Run {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml)).await
    }

    /// Runs kubectl with this server's kubeconfig (and a private HOME for its cache).
    pub async fn kubectl(&self, args: &[&str]) -> Run {
        self.kubectl_stdin(args, None).await
    }

    /// Runs kubectl with `stdin` piped in.
    pub async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        use tokio::io::AsyncWriteExt;
        let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} (install kubectl): {e}"));
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.expect("stdin written");
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .expect("kubectl ran");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A kube-rs client for this server.
    pub fn client(&self) -> kube::Client {
        let url = self.server.url().parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("client")
    }

    /// Starts an operator replica against this server on ephemeral loopback ports.
    pub async fn operator(&self, identity: &str) -> eventcast_operator::Running {
        let mut settings = eventcast_operator::Settings::for_tests();
        settings.identity = Some(identity.to_owned());
        eventcast_operator::start(settings, self.client())
            .await
            .expect("operator starts")
    }

    /// Starts an operator replica whose config stream listens on `addr` (a fixed port, so
    /// sidecars find a restarted operator where the old one was).
    pub async fn operator_on(&self, identity: &str, addr: std::net::SocketAddr) -> eventcast_operator::Running {
        let mut settings = eventcast_operator::Settings::for_tests();
        settings.identity = Some(identity.to_owned());
        settings.config_stream = addr;
        eventcast_operator::start(settings, self.client())
            .await
            .expect("operator starts")
    }

    /// `jsonpath` of one object, via `kubectl get -o jsonpath`.
    pub async fn jsonpath(&self, resource: &str, namespace: &str, path: &str) -> String {
        self.kubectl(&["get", resource, "-n", namespace, "-o", &format!("jsonpath={path}")])
            .await
            .ok()
            .stdout
    }
}
