//! Test fixtures: an in-process server on an ephemeral loopback port with a kubeconfig
//! in a temporary directory, the real `kubectl` (`$KUBECTL` or `kubectl` on PATH) run
//! against it with its own cache directory, and a kube-rs client.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use eventcast_test_apiserver::{Options, RunningServer, kubeconfig, start};
use kube::CustomResourceExt;

/// A server and everything needed to talk to it.
pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

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

impl TestServer {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let server = start(options).await.expect("server starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        kubeconfig::write(&kubeconfig, &server.url()).expect("kubeconfig written");
        Self {
            server,
            dir,
            kubeconfig,
        }
    }

    /// Writes `text` to a file in the test directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("file written");
        path.display().to_string()
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
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
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

    /// Registers the Topic CRD through the API and waits until it is served.
    pub async fn install_topic_crd(&self) {
        let yaml = topic_crd_yaml();
        let path = self.file("topics-crd.yaml", &yaml);
        self.kubectl(&["apply", "-f", &path]).await.ok();
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// The Topic CRD generated from the eventcast-api types.
pub fn topic_crd_yaml() -> String {
    serde_yaml::to_string(&eventcast_api::crd::Topic::crd()).expect("crd yaml")
}

/// A small Topic manifest.
pub fn topic_yaml(name: &str, priority: &str) -> String {
    format!(
        "apiVersion: eventcast.dev/v1alpha1
kind: Topic
metadata:
  name: {name}
  labels: {{team: shop}}
spec:
  name: shop.{name}
  defaultPriority: {priority}
  delivery:
    guarantee: atLeastOnce
    maxRetries: 3
"
    )
}
