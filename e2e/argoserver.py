"""A real `argo server` (the `argo` CLI that `make e2e-tools` builds from the Argo module) run as a process
against the e2e's cluster, under the account the stack's chart values give it (`infra.argo`): `client` auth
(every request runs with the caller's own token) and TLS (the certificate the server makes itself at start).

    with ArgoServer(cluster, folder, rules=SERVER_RULES) as server:
        alice = account_token(cluster, NAMESPACE, "alice", role="retrain-submitter")
        code, body = server.request(f"/api/v1/workflows/{NAMESPACE}", alice)

`cluster` is a ControlPlane (or the real node): `.api`, `.server`, `.bin`, `.pki`. The server's account gets
only the Role (`rules`, in `namespace`) and ClusterRole (`cluster_rules`) passed in, so a test sees exactly
what those rules let it do; its log says `forbidden` where they fall short.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from e2e.controlplane import free_port

ARGO_NAMESPACE = "argo"
SERVER_SA = "argo-workflows-server"  # the chart's, as the stack names it (infra.s3identities.ARGO_SERVER_SA)
START_TIMEOUT = 90.0


def create(cluster, path: str, body: dict) -> None:
    """POST one object; one that exists already is left as it is."""
    try:
        cluster.api(path, "POST", body)
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise RuntimeError(f"POST {path}: {exc.code} {exc.read()[:500]!r}") from exc


def token(cluster, namespace: str, sa: str, seconds: int = 3600) -> str:
    """A bound token of a ServiceAccount (TokenRequest API)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}}
    return cluster.api(f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token", "POST", body)["status"]["token"]


def account_token(
    cluster, namespace: str, sa: str, *, rules: list[dict] | None = None, role: str | None = None,
    cluster_rules: list[dict] | None = None,
) -> str:
    """Makes ServiceAccount `sa` in `namespace`, bound to Role `role` (made from `rules` when given, else an
    existing one) and to a ClusterRole made from `cluster_rules` when given; returns a token of it."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    create(cluster, f"/api/v1/namespaces/{namespace}/serviceaccounts",
           {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}})
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    role = role or sa
    if rules is not None:
        create(cluster, f"{rbac}/namespaces/{namespace}/roles",
               {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": role},
                "rules": rules})
    create(cluster, f"{rbac}/namespaces/{namespace}/rolebindings",
           {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": f"{sa}-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": subject})
    if cluster_rules:
        name = f"e2e-{namespace}-{sa}"
        create(cluster, f"{rbac}/clusterroles",
               {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
                "rules": cluster_rules})
        create(cluster, f"{rbac}/clusterrolebindings",
               {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": subject})
    return token(cluster, namespace, sa)


def token_kubeconfig(path: Path, server: str, ca: Path, bearer: str, namespace: str) -> Path:
    """A kubeconfig with a bearer token and nothing else: the server gets no admin certificate."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "argo-server", "user": {"token": bearer}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "argo-server", "namespace": namespace}}],
        "current-context": "e2e",
    }))
    path.chmod(0o600)
    return path


class ArgoServer:
    def __init__(self, cluster, folder: Path, *, rules: list[dict], cluster_rules: list[dict] | None = None,
                 namespace: str = ARGO_NAMESPACE, argo: Path | None = None, args: tuple[str, ...] = ()):
        self.cluster = cluster
        self.dir = Path(folder)
        self.rules = rules
        self.cluster_rules = cluster_rules
        self.namespace = namespace
        self.argo = argo or cluster.bin / "argo"
        self.args = args  # more `argo server` flags
        self.log = self.dir / "argo-server.log"
        self.port = 0
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def start(self) -> ArgoServer:
        """Starts the server as the chart does with `singleNamespace: false` (no `--namespaced`) and waits until
        it answers HTTPS; raises RuntimeError with its log's tail if it does not within START_TIMEOUT."""
        self.dir.mkdir(parents=True, exist_ok=True)
        bearer = account_token(self.cluster, self.namespace, SERVER_SA, rules=self.rules,
                               cluster_rules=self.cluster_rules)
        kubeconfig = token_kubeconfig(self.dir / "kubeconfig", self.cluster.server, self.cluster.pki["ca.crt"],
                                      bearer, self.namespace)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(
                [str(self.argo), "server", f"--kubeconfig={kubeconfig}", f"--namespace={self.namespace}",
                 "--auth-mode=client", "--secure", f"--port={self.port}", *self.args],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                # No other credentials, no ARGO_* client settings. KUBECONFIG: under `client` auth the server
                # takes the API server's address and CA for each caller's token from the default loading rules
                # (util/kubeconfig's restConfigWithoutAuth; in a pod, the in-cluster config), not from --kubeconfig.
                env={"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir), "KUBECONFIG": str(kubeconfig)},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"argo server exited ({self.proc.returncode}):\n{self.tail()}")
            # Its REST gateway answers 503 until the gRPC server behind it, on the same port, accepts.
            if "Argo Server started successfully" in self.text():
                try:
                    if self.request("/api/v1/version", None)[0] != 503:
                        return self
                except OSError:
                    pass
            time.sleep(0.5)
        raise RuntimeError(f"argo server not serving after {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def request(self, path: str, bearer: str | None, method: str = "GET", body: dict | None = None
                ) -> tuple[int, dict]:
        """One HTTPS request to the server's REST API; returns (HTTP status, decoded body)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the server's own self-signed certificate
        headers = {"Content-Type": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        req = urllib.request.Request(self.url + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                code, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, {"raw": raw.decode(errors="replace")}

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def forbidden(self) -> list[str]:
        """The log's lines where the API server refused the server's own account."""
        return [line for line in self.text().splitlines() if "forbidden" in line.lower() and SERVER_SA in line]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> ArgoServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
