"""The mapping of the dev stack's pod specs onto one machine (`Local`), used by demo/podspecs.py.

Only what must differ on one machine is mapped, here and nowhere else:

- a Service DNS name (`minio.kubeflow-e2e.svc:9000`, a TFJob replica's `<job>-<type>-<i>.<ns>.svc:2222`, the
  port-forwarded `localhost:8501`) becomes `127.0.0.1:<port>`: the S3 server's, or a free port per listener;
- a container port given as a flag value (`--rest_api_port=8501`, `--port 6006`) becomes that local port, and
  `--bind_all` becomes `--host 127.0.0.1`, and sync-model's metrics get `--metrics-host 127.0.0.1` (nothing
  listens beyond loopback);
- `valueFrom.secretKeyRef` on one of the stack's S3 credentials Secrets (one per role) becomes the local S3
  server's keys (the embedded server has one user, so every role reads and writes all of the bucket here);
- each volume becomes a folder `<workdir>/pods/<pod>/<volume>` (a ConfigMap's keys written in it as files):
  mount paths in flags and env values are rewritten, and a pod whose scratch volume is mounted at /tmp gets
  TMPDIR there;
- the image's executable becomes this machine's: `python` is this interpreter (with the source tree on
  PYTHONPATH), `tensorflow_model_server` the stand-in `python -m demo.serving`, `tensorboard` the one given;
- Argo's `{{workflow.name}}` and `{{workflow.parameters.<p>}}` are filled in as Argo fills them.

The local processes start from this process's environment (PATH and the like) minus every variable of the
trainer's contract and any AWS_* variable, then the pod's own environment on top.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infra.s3identities import S3_ROLES, credentials_secret
from render import Rendered

CREDENTIAL_SECRETS = {credentials_secret(role) for role in S3_ROLES}

ROOT = Path(__file__).resolve().parents[1]
# The trainer's environment contract (docs/design.md): never inherited from the shell that runs the demo.
CONTRACT_VARS = ("TF_CONFIG", "DATA_URL", "RUN_URL", "MODEL_URL", "S3_ENDPOINT", "DATA_CACHE_DIR", "HOME", "TMPDIR")
# `<service>.<namespace>.svc[.cluster.local][:port]`, and the `localhost:<port>` of a port-forward.
_SERVICE = re.compile(r"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?"
                      r"(:(\d+))?\b")
_LOCALHOST = re.compile(r"\blocalhost:(\d+)\b")
_ARGO_VAR = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")


class PodSpecError(Exception):
    """The render lacks something the local pipeline needs, or holds something it cannot map."""


@dataclass
class Process:
    """One local process: what a container of the stack runs, mapped onto this machine."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    listens: dict[int, int] = field(default_factory=dict)  # container port -> local port

    def with_env(self, **env: str) -> Process:
        return Process(self.name, list(self.cmd), {**self.env, **env}, dict(self.listens))

    def with_args(self, *args: str) -> Process:
        return Process(self.name, [*self.cmd, *args], dict(self.env), dict(self.listens))


class Local:
    """Service names, ports, secrets, volumes and executables of the stack, onto this machine."""

    def __init__(self, rendered: Rendered, s3_endpoint: str, s3_keys: Mapping[str, str], workdir: Path,
                 port: Callable[[], int], tensorboard: str = "tensorboard"):
        self.rendered = rendered
        self.workdir = Path(workdir)
        self.port = port
        self.tensorboard = tensorboard
        self.s3_keys = dict(s3_keys)
        self.services: dict[str, str] = {}  # "name.namespace:port" -> "127.0.0.1:port"
        host, _, s3_port = s3_endpoint.removeprefix("http://").partition(":")
        minio = self._endpoint_service()
        if minio:
            self.services[minio] = f"{host}:{s3_port}"
        self.listeners: dict[tuple[str, int], int] = {}  # (pod, container port) -> local port

    def _endpoint_service(self) -> str | None:
        m = _SERVICE.search(str(self.rendered.outputs.get("endpoint", "")))
        return f"{m.group(1)}.{m.group(3)}:{m.group(7) or 80}" if m else None

    def listen(self, pod: str, container_port: int) -> int:
        """The local port a pod's container port gets (the same for every container of the pod)."""
        key = (pod, int(container_port))
        if key not in self.listeners:
            self.listeners[key] = self.port()
        return self.listeners[key]

    def forget(self, pod: str) -> None:
        """Drops a pod's ports and the Service names that led to them."""
        gone = {f"127.0.0.1:{v}" for (p, _), v in self.listeners.items() if p == pod}
        self.listeners = {k: v for k, v in self.listeners.items() if k[0] != pod}
        self.services = {k: v for k, v in self.services.items() if v not in gone}

    def expose(self, service: str, namespace: str, port: int, pod: str, target: int) -> None:
        """`service.namespace.svc:port` reaches `pod`'s container port `target` (a name already mapped, like
        the object store's, keeps its address)."""
        if f"{service}.{namespace}:{port}" in self.services:
            return
        self.services[f"{service}.{namespace}:{port}"] = f"127.0.0.1:{self.listen(pod, target)}"

    def address(self, text: str) -> str:
        """Every Service DNS name in `text` (a URL, TF_CONFIG) replaced by its local address."""

        def sub(m: re.Match) -> str:
            key = f"{m.group(1)}.{m.group(3)}:{m.group(7) or 80}"
            if key not in self.services:
                raise PodSpecError(f"no local process serves {m.group(0)} (known: {', '.join(sorted(self.services))})")
            return self.services[key]

        return _SERVICE.sub(sub, text)

    def forwarded(self, text: str) -> str:
        """`localhost:<port>` of a documented port-forward, replaced by the forwarded Service's local address."""
        forwards = {}
        for cmd in (self.rendered.outputs.get("portForward") or {}).values():
            m = re.match(r"kubectl -n (\S+) port-forward svc/(\S+) (\d+):(\d+)$", cmd)
            if m:
                forwards[m.group(3)] = f"{m.group(2)}.{m.group(1)}:{m.group(4)}"

        def sub(m: re.Match) -> str:
            target = forwards.get(m.group(1))
            if target not in self.services:
                raise PodSpecError(f"no port-forward reaches {m.group(0)} locally")
            return self.services[target]

        return _LOCALHOST.sub(sub, text)

    def executable(self, cmd: list[str]) -> list[str]:
        head, rest = cmd[0], cmd[1:]
        if head == "python":
            return [sys.executable, *rest]
        if head == "tensorflow_model_server":
            return [sys.executable, "-m", "demo.serving", *rest]
        if head == "tensorboard":
            return [self.tensorboard, *rest]
        raise PodSpecError(f"no local stand-in for the image command {head!r}")

    def process(self, name: str, pod: str, pod_spec: Mapping, container: Mapping,
                variables: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None) -> Process:
        """A container of a pod, as a local process. `variables`: Argo's `{{...}}` values;
        `extra_env`: what the controller adds (the operator's TF_CONFIG)."""
        mounts = self._mounts(pod, pod_spec, container)
        ports = {int(p["containerPort"]) for p in container.get("ports") or []}
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        if not argv:
            raise PodSpecError(f"{pod}/{container['name']} has no command: the image's entrypoint is not known here")
        out: list[str] = []
        previous = ""
        for token in argv:
            token = self._argo(token, variables)
            if token == "--bind_all":  # TensorBoard: every interface in a pod; loopback only here
                out += ["--host", "127.0.0.1"]
            elif token.startswith("--") and "=" in token:
                flag, _, value = token.partition("=")
                out.append(f"{flag}={self._arg(pod, flag, value, ports, mounts)}")
            elif token.startswith("--"):
                out.append(token)
            else:
                out.append(self._arg(pod, previous, token, ports, mounts))
            previous = token
        if "--metrics-port" in argv:  # sync-model's metrics: every interface in a pod; loopback only here
            out += ["--metrics-host", "127.0.0.1"]
        env = {k: v for k, v in os.environ.items() if k not in CONTRACT_VARS and not k.startswith("AWS_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        for var in container.get("env") or []:
            env[var["name"]] = self._value(var, mounts, variables)
        for key, value in (extra_env or {}).items():
            env[key] = self.address(value)
        if "/tmp" in mounts:
            env["TMPDIR"] = mounts["/tmp"]
        return Process(name, self.executable(out), env,
                       {p: self.listen(pod, p) for p in ports})

    def _arg(self, pod: str, flag: str, value: str, ports: set[int], mounts: Mapping[str, str]) -> str:
        if "port" in flag and value.isdigit() and int(value) in ports:
            return str(self.listen(pod, int(value)))
        return self.address(self._path(value, mounts))

    def _value(self, var: Mapping, mounts: Mapping[str, str], variables: Mapping[str, str] | None) -> str:
        if "value" in var:
            return self.address(self._path(self._argo(str(var["value"]), variables), mounts))
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref.get("name") in CREDENTIAL_SECRETS and ref.get("key") in self.s3_keys:
            return self.s3_keys[ref["key"]]
        raise PodSpecError(f"env {var['name']}: no local value for {json.dumps(var.get('valueFrom'))}")

    def _mounts(self, pod: str, pod_spec: Mapping, container: Mapping) -> dict[str, str]:
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        out = {}
        for m in container.get("volumeMounts") or []:
            if m["name"] not in volumes:
                raise PodSpecError(f"{pod}/{container['name']} mounts {m['name']!r}, which the pod does not declare")
            local = self.workdir / "pods" / pod / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            config_map = (volumes[m["name"]].get("configMap") or {}).get("name")
            if config_map:  # its keys as files, as the kubelet projects them
                for key, text in (self.rendered.one("ConfigMap", config_map).get("data") or {}).items():
                    (local / key).write_text(text)
            out[m["mountPath"].rstrip("/") or "/"] = str(local)
        return out

    @staticmethod
    def _path(value: str, mounts: Mapping[str, str]) -> str:
        for mount in sorted(mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount + "/"):
                return mounts[mount] + value[len(mount):]
        return value

    @staticmethod
    def _argo(value: str, variables: Mapping[str, str] | None) -> str:
        def sub(m: re.Match) -> str:
            if variables is None or m.group(1) not in variables:
                raise PodSpecError(f"no value for Argo's {m.group(0)} (known: {sorted(variables or {})})")
            return variables[m.group(1)]

        return _ARGO_VAR.sub(sub, value)
