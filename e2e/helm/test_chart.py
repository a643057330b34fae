"""The Helm chart (charts/eventcast) driven by the real Helm engine (helm-python-sdk,
Helm 4's Go SDK through its C ABI) against the Kubernetes API test server, with the
real kubectl, and with the real operator and sidecar binaries started from the
container args and env the chart renders.

Run with scripts/test.sh, or by hand:

    cargo build -p eventcast-test-apiserver -p eventcast-operator -p eventcast-sidecar
    python3 -m venv target/helm-venv && target/helm-venv/bin/pip install helm-python-sdk
    target/helm-venv/bin/python -m unittest discover -s e2e/helm -v

EVENTCAST_BIN_DIR (default target/debug) is where the three binaries are.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

import helm_python as helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "eventcast"
BIN = Path(os.environ.get("EVENTCAST_BIN_DIR", ROOT / "target" / "debug"))
RELEASE = "ec"
RELEASE_NS = "eventcast-system"
APP_NS = "default"  # where examples/ live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


def serving(proc: subprocess.Popen, log: Path, url: str):
    """A check for wait_until: `url` answers 200; fails at once (with the log) if the
    process exited, e.g. because the chart rendered a flag the binary does not know."""

    def check() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return http_ok(url)

    return check


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def docs(manifest: str) -> list[str]:
    return [d for d in re.split(r"^---\s*$", manifest, flags=re.M) if d.strip()]


class ApiServer:
    """eventcast-test-apiserver on a free loopback port, with its kubeconfig."""

    def __init__(self, workdir: Path):
        self.kubeconfig = workdir / "kubeconfig"
        self.log = open(workdir / "apiserver.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN / "eventcast-test-apiserver"), "--listen", f"127.0.0.1:{free_port()}",
             "--write-kubeconfig", str(self.kubeconfig)],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until("the API test server's kubeconfig", self.kubeconfig.exists, 20)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                             capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}{out.stdout}")
        return out

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def loopback(args: list[str]) -> list[str]:
    """Listen on loopback instead of every interface: the test plays the pod network."""
    return [a.replace("=0.0.0.0:", "=127.0.0.1:") for a in args]


class ChartTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for b in ("eventcast-test-apiserver", "eventcast-operator", "eventcast-sidecar"):
            if not (BIN / b).exists():
                raise unittest.SkipTest(f"{BIN / b} missing: cargo build -p {b}")
        cls.chart = helm.Chart.load(str(CHART))

    def test_lint_passes_and_the_values_schema_rejects_bad_values_by_name(self):
        result = helm.lint(str(CHART))
        self.assertEqual(result["errors"], [], result)
        self.chart.validate_schema({})
        cases = [
            ({"operator": {"replicas": -1}}, "/operator/replicas"),
            ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
            ({"operator": {"statusInterval": "2 seconds"}}, "/operator/statusInterval"),
            ({"sidecar": {"backend": "redis"}}, "/sidecar/redisCluster"),
            ({"sidecar": {"redisCluster": ["no-port"]}}, "/sidecar/redisCluster/0"),
            ({"operatr": {}}, "operatr"),
        ]
        for values, named in cases:
            with self.subTest(values=values):
                with self.assertRaises(helm.HelmValuesError) as e:
                    self.chart.validate_schema(values)
                self.assertIn(named, str(e.exception))

    def test_watch_namespace_uses_a_role_and_passes_the_flag(self):
        out = self.chart.render({"operator": {"watchNamespace": "team-a"}}, name=RELEASE,
                                namespace=RELEASE_NS)
        rbac = out["eventcast/templates/rbac.yaml"]
        self.assertNotIn("ClusterRole", rbac)
        self.assertRegex(rbac, r"kind: Role\nmetadata:\n  name: ec-eventcast-operator\n  namespace: team-a")
        self.assertIn("- --namespace=team-a", out["eventcast/templates/operator.yaml"])

    def test_redis_backend_is_wired_into_the_sidecar(self):
        out = self.chart.render({"demo": {"enabled": True},
                                 "sidecar": {"backend": "redis", "redisCluster": ["r-0:6379", "r-1:6379"]}},
                                name=RELEASE, namespace=RELEASE_NS)
        demo = out["eventcast/templates/demo.yaml"]
        self.assertIn("- --backend=redis", demo)
        self.assertIn("- --redis-cluster=r-0:6379,r-1:6379", demo)

    def test_rbac_covers_what_the_operator_calls(self):
        out = self.chart.render({}, name=RELEASE, namespace=RELEASE_NS)
        rbac = out["eventcast/templates/rbac.yaml"]
        granted: set[tuple[str, str, str]] = set()
        for doc in docs(rbac):
            for rule in re.finditer(r"- apiGroups: \[(.*?)\]\n\s+resources: \[(.*?)\]\n\s+verbs: \[(.*?)\]", doc):
                for g in rule[1].split(","):
                    for r in rule[2].split(","):
                        for v in rule[3].split(","):
                            granted.add((g.strip().strip('"'), r.strip(), v.strip()))
        # Every API call of operator/src (README "Operator", RBAC).
        needed = [("eventcast.dev", r, v) for r in ("topics", "subscriptions", "broadcastpolicies")
                  for v in ("get", "list", "watch")]
        needed += [("eventcast.dev", "topics", "patch")]  # the finalizer
        needed += [("eventcast.dev", f"{r}/status", "patch") for r in ("topics", "subscriptions", "broadcastpolicies")]
        needed += [("", "secrets", v) for v in ("get", "list", "watch")]
        needed += [("events.k8s.io", "events", v) for v in ("create", "patch")]
        needed += [("apps", "deployments/scale", v) for v in ("get", "patch")]
        needed += [("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch", "update")]
        needed += [("", "configmaps", v) for v in ("list", "watch", "create", "patch", "delete")]
        missing = [n for n in needed if n not in granted]
        self.assertEqual(missing, [], f"granted: {sorted(granted)}")

    def test_install_runs_the_rendered_operator_and_sidecar_then_upgrade_rollback_uninstall(self):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            api = ApiServer(work)
            procs: list[subprocess.Popen] = []
            try:
                self._install_and_run(api, work, procs)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    try:
                        p.wait(15)
                    except subprocess.TimeoutExpired:
                        p.kill()
                api.close()

    def _install_and_run(self, api: ApiServer, work: Path, procs: list[subprocess.Popen]):
        ports = {k: free_port() for k in ("stream", "metrics", "public", "local", "smetrics")}
        values = {
            "operator": {"replicas": 1, "configStreamPort": ports["stream"], "metricsPort": ports["metrics"],
                         "startupGrace": "0s", "statusInterval": "500ms", "logFormat": "text"},
            "sidecar": {"publicPort": ports["public"], "localPort": ports["local"],
                        "metricsPort": ports["smetrics"], "logFormat": "text"},
            "demo": {"enabled": True},
        }
        cfg = helm.Config(kubeconfig_path=str(api.kubeconfig), namespace=RELEASE_NS)

        # Invalid values: refused before anything reaches the cluster.
        with self.assertRaises(helm.HelmError) as e:
            cfg.install(self.chart, RELEASE, {"operator": {"replicas": "two"}}, namespace=RELEASE_NS,
                        create_namespace=True, timeout=60)
        self.assertIn("/operator/replicas", str(e.exception))
        self.assertEqual(cfg.list(), [])

        release = cfg.install(self.chart, RELEASE, values, namespace=RELEASE_NS, create_namespace=True,
                              timeout=60)
        self.assertEqual(release["info"]["status"] if "info" in release else release["status"], "deployed")
        listed = cfg.list()
        self.assertEqual([(r["name"], r["status"], r["revision"]) for r in listed], [(RELEASE, "deployed", 1)])

        # crds/ went in first, and kubectl serves the kinds with their short names.
        for crd in ("topics.eventcast.dev", "subscriptions.eventcast.dev", "broadcastpolicies.eventcast.dev"):
            api.kubectl("get", "crd", crd)
        self.assertEqual(api.get("ect", "-A")["items"], [])
        sa = api.get("serviceaccount", "ec-eventcast-operator", "-n", RELEASE_NS)
        self.assertEqual(sa["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm")
        api.kubectl("get", "clusterrole/ec-eventcast-operator", "clusterrolebinding/ec-eventcast-operator")
        api.kubectl("get", "role/ec-eventcast-operator-coordination", "rolebinding/ec-eventcast-operator-coordination",
                    "service/ec-eventcast-operator", "service/ec-eventcast-demo", "-n", RELEASE_NS)
        operator = api.get("deployment", "ec-eventcast-operator", "-n", RELEASE_NS)
        self.assertEqual(operator["spec"]["replicas"], 1)
        self.assertEqual(operator["metadata"]["generation"], 1)

        # The operator, exactly as the chart runs it (listening on loopback; the
        # downward API's pod name given by hand).
        op = container(operator)
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig)}
        for e in op.get("env", []):
            env[e["name"]] = e.get("value") or "ec-eventcast-operator-0"
        operator_proc = start([str(BIN / "eventcast-operator"), *loopback(op["args"])], env, work / "operator.log")
        procs.append(operator_proc)
        wait_until("the operator's /readyz",
                   serving(operator_proc, work / "operator.log", f"http://127.0.0.1:{ports['metrics']}/readyz"), 60)

        # The sidecar, as the demo Deployment (the eventcast.sidecar template) runs it. The
        # Service's DNS name resolves to the operator on loopback here.
        demo = container(api.get("deployment", "ec-eventcast-demo", "-n", RELEASE_NS))
        args = [a.replace(f"ec-eventcast-operator.{RELEASE_NS}.svc", "127.0.0.1") for a in loopback(demo["args"])]
        args = [f"--state-dir={work / 'state'}" if a.startswith("--state-dir=") else a for a in args]
        sidecar_env = {**os.environ, "EVENTCAST_NAMESPACE": APP_NS, "EVENTCAST_POD_NAME": "demo-0"}
        self.assertEqual({e["name"] for e in demo["env"]}, {"EVENTCAST_NAMESPACE", "EVENTCAST_POD_NAME"})
        sidecar_proc = start([str(BIN / "eventcast-sidecar"), *args], sidecar_env, work / "sidecar.log")
        procs.append(sidecar_proc)

        # Users' resources: every Topic becomes Ready with the chart's sidecar counted.
        api.kubectl("apply", "-f", str(ROOT / "examples"))
        api.kubectl("wait", "--for=condition=Ready", "topics", "--all", "-n", APP_NS, "--timeout=60s")
        topics = api.get("topics", "-n", APP_NS)["items"]
        self.assertTrue(topics)
        for t in topics:
            self.assertEqual(t["status"]["sidecars"]["acked"], 1, t["status"])
        wait_until("the sidecar's /readyz",
                   serving(sidecar_proc, work / "sidecar.log", f"http://127.0.0.1:{ports['public']}/readyz"), 30)

        # Upgrade: a new revision changes the Deployment; rollback restores it.
        cfg.upgrade(self.chart, RELEASE, {**values, "operator": {**values["operator"], "replicas": 3}},
                    namespace=RELEASE_NS, timeout=60)
        operator = api.get("deployment", "ec-eventcast-operator", "-n", RELEASE_NS)
        self.assertEqual((operator["spec"]["replicas"], operator["metadata"]["generation"]), (3, 2))
        cfg.rollback(RELEASE, version=1, timeout=60)
        operator = api.get("deployment", "ec-eventcast-operator", "-n", RELEASE_NS)
        self.assertEqual(operator["spec"]["replicas"], 1)
        self.assertEqual([h["revision"] for h in cfg.history(RELEASE)], [1, 2, 3])
        self.assertEqual(cfg.get_values(RELEASE)["operator"]["replicas"], 1)

        # Uninstall removes what the release made; CRDs and users' Topics stay (Helm never
        # deletes crds/ content, so uninstalling cannot delete every Topic in the cluster).
        cfg.uninstall(RELEASE, timeout=60)
        self.assertEqual(cfg.list(), [])
        gone = api.kubectl("get", "deployment/ec-eventcast-operator", "-n", RELEASE_NS, check=False)
        self.assertNotEqual(gone.returncode, 0)
        self.assertIn("NotFound", gone.stderr)
        self.assertNotEqual(api.kubectl("get", "clusterrole/ec-eventcast-operator", check=False).returncode, 0)
        api.kubectl("get", "crd", "topics.eventcast.dev")
        self.assertEqual(len(api.get("topics", "-n", APP_NS)["items"]), len(topics))


if __name__ == "__main__":
    unittest.main()
