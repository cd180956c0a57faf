"""A Kubernetes control plane for `make e2e`: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, the binaries `make e2e-tools` built (`e2e/tools.py`). `e2e/node.py` adds the node (containerd,
kubelet, kube-proxy, CoreDNS) and binds it all to the node's address.

    with ControlPlane(tools_bin, run_dir) as cp:
        cp.kubeconfig   # Path of an admin kubeconfig (client certificate, system:masters)

Every run makes its own CA, serving and client certificates (e2e/pki.py), free ports, etcd data
dir and logs under `run_dir`; `stop()` (also on `__exit__` and on a failed start) terminates every process
(SIGTERM, then SIGKILL after 10 s). A component that dies or does not become healthy within its timeout
raises `ControlPlaneError` naming it, with the tail of its log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from e2e.pki import make_pki, write_kubeconfig

SERVICE_CIDR = "10.96.0.0/16"
START_TIMEOUT = 180.0  # seconds per component; generous: the machine is shared


class ControlPlaneError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControlPlane:
    # Where the API server listens and what it advertises; the real node (e2e/node.py) uses its own address.
    address = "127.0.0.1"

    def __init__(self, bin_dir: Path, run_dir: Path):
        self.bin = Path(bin_dir)
        self.dir = Path(run_dir)
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.kubeconfig = self.dir / "kubeconfig"
        self.server = ""

    # --- processes -------------------------------------------------------------------------------
    def _start(self, name: str, args: list[str]) -> None:
        binary = self.bin / args[0]
        if not binary.exists():
            raise ControlPlaneError(f"{binary} is missing: run `make e2e-tools` first")
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.logs[name] = log
        with open(log, "wb") as fh:
            self.procs[name] = subprocess.Popen(
                [str(binary), *args[1:]],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-lines:])
        except (KeyError, OSError):
            return "(no log)"

    def _wait(self, name: str, ready, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.returncode} during start-up; "
                    f"log {self.logs[name]}:\n{self.tail(name)}"
                )
            try:
                if ready():
                    return
            except Exception as exc:  # noqa: BLE001 - any failure here means "not ready yet"
                last = exc
            time.sleep(0.5)
        raise ControlPlaneError(
            f"{name} not ready after {timeout:.0f} s (last probe: {last!r}); "
            f"log {self.logs.get(name)}:\n{self.tail(name)}"
        )

    def check_alive(self) -> None:
        """Raises ControlPlaneError if a component has died since start-up."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} died (exit {proc.returncode}); log {self.logs[name]}:\n{self.tail(name)}"
                )

    def stop(self) -> None:
        """Stops the components one by one in reverse start order (etcd last, so the API server can shut down
        cleanly): SIGTERM, then SIGKILL after 10 s."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    # --- HTTP probes -----------------------------------------------------------------------------
    def _ssl(self, client: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki["ca.crt"]))
        if client:
            ctx.load_cert_chain(str(self.pki["admin.crt"]), str(self.pki["admin.key"]))
        return ctx

    def api(
        self, path: str, method: str = "GET", body: dict | None = None, content_type: str = "application/json",
        text: bool = False,
    ) -> dict:
        """One request to the API server as the admin; returns the decoded JSON body, or `{"raw": body}` for a
        body that is not a JSON object or when `text` is set (a pod log, which may itself be one JSON line).
        HTTP errors raise urllib.error.HTTPError (`.code`: 404 for a missing object)."""
        req = urllib.request.Request(
            self.server + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": content_type},
        )
        with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip().startswith(b"{") and not text else {"raw": raw.decode()}

    @staticmethod
    def _healthz(port: int) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=5) as resp:
            return resp.read().strip() == b"ok"

    # --- start-up --------------------------------------------------------------------------------
    def start(self) -> ControlPlane:
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self) -> None:
        self._start_control_plane()

    def _make_pki(self) -> dict[str, Path]:
        return make_pki(self.dir / "pki")

    def _apiserver_flags(self) -> list[str]:
        # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints reject; no pod uses it.
        return ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]

    def _start_control_plane(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = self._make_pki()
        p = {k: free_port() for k in ("etcd", "peer", "apiserver", "kcm", "scheduler")}
        self.ports = p
        etcd_url = f"http://127.0.0.1:{p['etcd']}"
        self._start(
            "etcd",
            [
                "etcd",
                "--name=node0",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{p['peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['peer']}",
                f"--initial-cluster=node0=http://127.0.0.1:{p['peer']}",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: urllib.request.urlopen(f"{etcd_url}/health", timeout=5).read().find(b"true") > 0)

        pki = self.pki
        self.server = f"https://{self.address}:{p['apiserver']}"
        self._start(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--etcd-servers={etcd_url}",
                *self._apiserver_flags(),
                f"--secure-port={p['apiserver']}",
                f"--tls-cert-file={pki['apiserver.crt']}",
                f"--tls-private-key-file={pki['apiserver.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        write_kubeconfig(self.kubeconfig, self.server, pki)
        self._wait("kube-apiserver", lambda: self.api("/readyz").get("raw", "").strip() == "ok")

        common = [
            f"--kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--profiling=false",
            "--v=1",
        ]
        self._start(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                *common,
                f"--secure-port={p['kcm']}",
                f"--cert-dir={self.dir / 'kcm-certs'}",
                f"--root-ca-file={pki['ca.crt']}",
                f"--service-account-private-key-file={pki['sa.key']}",
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs=5",
            ],
        )
        self._start(
            "kube-scheduler",
            [
                "kube-scheduler",
                *common,
                f"--secure-port={p['scheduler']}",
                f"--cert-dir={self.dir / 'sched-certs'}",
            ],
        )
        self._wait("kube-controller-manager", lambda: self._healthz(p["kcm"]))
        self._wait("kube-scheduler", lambda: self._healthz(p["scheduler"]))

    def version(self) -> str:
        return self.api("/version")["gitVersion"]

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

