//! The built binary as CI and developers run it: `--listen 127.0.0.1:0
//! --write-kubeconfig PATH --state FILE`, driven with the real kubectl (including the
//! protobuf bodies of `kubectl create <generator>`), state surviving a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> Server {
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let child = Command::new(env!("CARGO_BIN_EXE_eventcast-test-apiserver"))
        .args(["--listen", "127.0.0.1:0", "--write-kubeconfig"])
        .arg(&kubeconfig)
        .arg("--state")
        .arg(dir.join("state.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(Instant::now() < deadline, "kubeconfig written in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

fn kubectl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let out = Command::new(&program)
        .args(args)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install kubectl): {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = kubectl(dir, args);
    assert_eq!(code, 0, "kubectl {args:?} failed: {stderr}");
    stdout
}

#[test]
fn generators_and_state_across_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let server = start(d);
    let version = ok(d, &["version", "-o", "json"]);
    assert!(version.contains("\"gitVersion\": \"v1.33.0\""), "{version}");
    // kubectl >= 1.32 sends these objects as protobuf.
    assert_eq!(
        ok(d, &["create", "namespace", "team-a"]).trim(),
        "namespace/team-a created"
    );
    ok(
        d,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "team-a",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
    );
    ok(
        d,
        &["create", "secret", "generic", "s", "-n", "team-a", "--from-literal=k=v"],
    );
    ok(
        d,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "team-a",
            "--image=nginx:1",
            "--replicas=2",
            "--port=80",
        ],
    );
    ok(
        d,
        &["create", "service", "clusterip", "web", "-n", "team-a", "--tcp=80:8080"],
    );
    ok(d, &["create", "serviceaccount", "bot", "-n", "team-a"]);
    ok(
        d,
        &[
            "create",
            "role",
            "reader",
            "-n",
            "team-a",
            "--verb=get,list",
            "--resource=configmaps",
        ],
    );
    ok(
        d,
        &[
            "create",
            "rolebinding",
            "reader",
            "-n",
            "team-a",
            "--role=reader",
            "--serviceaccount=team-a:bot",
        ],
    );
    let deploy = ok(
        d,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.strategy.type}",
        ],
    );
    assert_eq!(deploy, "2 nginx:1 80 RollingUpdate");
    let secret = ok(d, &["get", "secret", "s", "-n", "team-a", "-o", "jsonpath={.data.k}"]);
    assert_eq!(secret, "dg==");
    let binding = ok(
        d,
        &[
            "get",
            "rolebinding",
            "reader",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.subjects[0].kind}/{.subjects[0].name} {.roleRef.name}",
        ],
    );
    assert_eq!(binding, "ServiceAccount/bot reader");
    let rv_before = ok(
        d,
        &[
            "get",
            "cm",
            "cfg",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    drop(server);

    let _server = start(d);
    let data = ok(
        d,
        &[
            "get",
            "cm",
            "cfg",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.a}{.data.b} {.metadata.resourceVersion}",
        ],
    );
    assert_eq!(
        data,
        format!("12 {rv_before}"),
        "objects and versions survive a restart"
    );
    ok(d, &["label", "cm", "cfg", "-n", "team-a", "x=y"]);
    let rv_after: u64 = ok(
        d,
        &[
            "get",
            "cm",
            "cfg",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
    .parse()
    .expect("rv");
    assert!(
        rv_after > rv_before.parse::<u64>().expect("rv"),
        "versions keep increasing after a restart"
    );
}
