"""The dev stack's own pod specs as local processes: the one place where `make demo`, `make bench` and the
pipeline tests get each process's command, args and environment.

Everything comes from `render.render("dev", overrides)` (the Pulumi program under mocks):

| process              | taken from                                                                  |
|----------------------|-----------------------------------------------------------------------------|
| prepare-data         | the `prepare-data` Workflow's template container                            |
| train (chief, worker)| the TFJob's replica specs, container `tensorflow`; TF_CONFIG as the operator |
| sync-model (once)    | the serving Deployment's init container                                     |
| sync-model (watch)   | the serving Deployment's sidecar                                            |
| serving              | the `tf-serving` container's flags, given to the stand-in `demo.serving`    |
| tensorboard          | the TensorBoard Deployment's container                                      |
| evaluate             | the retraining WorkflowTemplate's `evaluate` step                           |
| predict              | the stack output `predictCommand`, with the `evaluate` step's environment   |

Only what must differ on one machine is mapped, here and nowhere else (`Local`):

- a Service DNS name (`minio.kubeflow-e2e.svc:9000`, a TFJob replica's `<job>-<type>-<i>.<ns>.svc:2222`, the
  port-forwarded `localhost:8501`) becomes `127.0.0.1:<port>`: the S3 server's, or a free port per listener;
- a container port given as a flag value (`--rest_api_port=8501`, `--port 6006`) becomes that local port, and
  `--bind_all` becomes `--host 127.0.0.1` (nothing listens beyond loopback);
- `valueFrom.secretKeyRef` on one of the stack's S3 credentials Secrets (one per role) becomes the local S3
  server's keys (the embedded server has one user, so every role reads and writes all of the bucket here);
- each volume becomes a folder `<workdir>/pods/<pod>/<volume>`: mount paths in flags and env values are
  rewritten, and a pod whose scratch volume is mounted at /tmp gets TMPDIR there;
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
from typing import Any

from infra.podspec import S3_ROLES, credentials_secret
from render import Rendered, render

CREDENTIAL_SECRETS = {credentials_secret(role) for role in S3_ROLES}

ROOT = Path(__file__).resolve().parents[1]
STACK = "dev"
# The trainer's environment contract (docs/design.md): never inherited from the shell that runs the demo.
CONTRACT_VARS = ("TF_CONFIG", "DATA_URL", "RUN_URL", "MODEL_URL", "S3_ENDPOINT", "DATA_CACHE_DIR", "HOME", "TMPDIR")
# `<service>.<namespace>.svc[.cluster.local][:port]`, and the `localhost:<port>` of a port-forward.
_SERVICE = re.compile(r"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?"
                      r"(:(\d+))?\b")
_LOCALHOST = re.compile(r"\blocalhost:(\d+)\b")
_ARGO_VAR = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")

# From kubeflow/trainer v1.9.4 (the training-operator), pkg/apis/kubeflow.org/v1/tensorflow_types.go:
TF_CONTAINER = "tensorflow"  # TFJobDefaultContainerName
TF_PORT_NAME = "tfjob-port"  # TFJobDefaultPortName
TF_DEFAULT_PORT = 2222  # TFJobDefaultPort


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


# ---- TF_CONFIG, the way the training operator builds it --------------------------------------------------


def tf_config(tfjob: Mapping[str, Any], replica_type: str, index: int) -> str | None:
    """TF_CONFIG of replica `replica_type` (`Chief`, `Worker`, ...) number `index` of a TFJob (a dict in the
    wire format), as training-operator v1.9 writes it: kubeflow/trainer tag v1.9.4,
    `pkg/controller.v1/tensorflow/tensorflow.go` (`genTFConfigJSONStr`, `genClusterSpec`), with
    `isDistributed` and `GetPortFromTFJob` from `util.go` and `GenGeneralName` from
    `pkg/controller.v1/common/util.go`:

    - the cluster has one entry per replica type, lower-cased, listing `<job>-<type>-<i>.<namespace>.svc:<port>`
      for i in 0..replicas-1 (the operator's headless Service per replica; `CUSTOM_CLUSTER_DOMAIN` unset);
    - the port is the `tensorflow` container's port named `tfjob-port`, else 2222;
    - `task` is the lower-cased type and the index; `environment` is `"cloud"`;
    - keys come out sorted (Go's `json.Marshal` of a map and of the struct's field order);
    - a job of one replica in all is not distributed: no TF_CONFIG (None).

    `enableDynamicWorker` (the sparse form) is not used by this stack: PodSpecError if set."""
    spec = tfjob["spec"]
    meta = tfjob["metadata"]
    if spec.get("enableDynamicWorker"):
        raise PodSpecError("the TFJob sets enableDynamicWorker: the sparse TF_CONFIG is not built here")
    replicas = spec["tfReplicaSpecs"]
    if replica_type not in replicas:
        raise PodSpecError(f"the TFJob has no {replica_type} replicas: {sorted(replicas)}")
    if sum(int(r.get("replicas", 1)) for r in replicas.values()) == 1:
        return None
    cluster = {}
    for rtype, rspec in replicas.items():
        port = _tf_port(rspec)
        rt = rtype.lower()
        cluster[rt] = [
            f"{meta['name']}-{rt}-{i}.{meta['namespace']}.svc:{port}".replace("/", "-")
            for i in range(int(rspec.get("replicas", 1)))
        ]
    config = {"cluster": dict(sorted(cluster.items())), "task": {"type": replica_type.lower(), "index": index},
              "environment": "cloud"}
    return json.dumps(config, separators=(",", ":"))


def _tf_port(replica: Mapping[str, Any]) -> int:
    for c in replica["template"]["spec"]["containers"]:
        if c["name"] == TF_CONTAINER:
            for p in c.get("ports") or []:
                if p.get("name") == TF_PORT_NAME:
                    return int(p["containerPort"])
    return TF_DEFAULT_PORT


# ---- the mapping onto one machine -------------------------------------------------------------------------


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
        volumes = {v["name"] for v in pod_spec.get("volumes") or []}
        out = {}
        for m in container.get("volumeMounts") or []:
            if m["name"] not in volumes:
                raise PodSpecError(f"{pod}/{container['name']} mounts {m['name']!r}, which the pod does not declare")
            local = self.workdir / "pods" / pod / m["name"]
            local.mkdir(parents=True, exist_ok=True)
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


# ---- the pipeline's processes ----------------------------------------------------------------------------


class LocalStack:
    """The rendered dev stack, ready to start as local processes (see the module docstring)."""

    def __init__(self, rendered: Rendered, s3_endpoint: str, s3_keys: Mapping[str, str], workdir: Path,
                 port: Callable[[], int] | None = None, tensorboard: str = "tensorboard"):
        from demo.s3server import free_port

        self.rendered = rendered
        self.local = Local(rendered, s3_endpoint, s3_keys, workdir, port or free_port, tensorboard)
        self.namespace = rendered.outputs["namespace"]
        self.bucket = rendered.outputs["bucket"]
        (server,) = [c for c in self._pod("serving")["containers"] if c["name"] == "tf-serving"]
        (self.model_name,) = [a.split("=", 1)[1] for a in server["args"] if a.startswith("--model_name=")]
        for svc in rendered.find("Service"):
            selector = svc["spec"].get("selector") or {}
            pod = self._pod_of(selector)
            if pod:
                for p in svc["spec"]["ports"]:
                    self.local.expose(svc["metadata"]["name"], self.namespace, p["port"], pod,
                                      p.get("targetPort", p["port"]))

    @classmethod
    def render(cls, overrides: Mapping[str, Any] | None, s3_endpoint: str, s3_keys: Mapping[str, str],
               workdir: Path, **kw: Any) -> LocalStack:
        return cls(render(STACK, dict(overrides or {})), s3_endpoint, s3_keys, workdir, **kw)

    def _pod_of(self, selector: Mapping[str, str]) -> str | None:
        for d in self.rendered.find("Deployment"):
            labels = d["spec"]["template"]["metadata"].get("labels") or {}
            if selector and selector.items() <= labels.items():
                return d["metadata"]["name"]
        return None

    # -- Argo ------------------------------------------------------------------------------------------------

    def prepare_data(self) -> Process:
        wf = self.rendered.one("Workflow")
        template = _template(wf["spec"], wf["spec"]["entrypoint"])
        return self.local.process("prepare-data", "prepare-data", wf["spec"], template["container"],
                                  {"workflow.name": wf["metadata"]["name"]})

    def evaluate(self, run: str) -> Process:
        """The retraining WorkflowTemplate's `evaluate` step, as if a workflow named `run` ran it."""
        wt = self.rendered.one("WorkflowTemplate")
        spec = wt["spec"]
        variables = {"workflow.name": run}
        for p in (spec.get("arguments") or {}).get("parameters") or []:
            variables[f"workflow.parameters.{p['name']}"] = str(p.get("value", ""))
        return self.local.process("evaluate", "evaluate", spec, _template(spec, "evaluate")["container"], variables)

    # -- the TFJob ------------------------------------------------------------------------------------------

    def train(self, workers: int | None = None) -> list[Process]:
        """Chief first, then the workers: each replica's `tensorflow` container, with TF_CONFIG built from the
        TFJob as the operator builds it (`tf_config`). `workers` replaces the Worker replica count (0: the chief
        alone, which the operator runs without TF_CONFIG); by default the render's."""
        job = json.loads(json.dumps(self.tfjob))
        replicas = job["spec"]["tfReplicaSpecs"]
        if workers is not None:
            replicas["Worker"]["replicas"] = workers
        order = [t for t in ("Chief", "Master", "PS", "Worker", "Evaluator") if t in replicas]
        order += sorted(set(replicas) - set(order))
        pods = [(rtype, i, f"{job['metadata']['name']}-{rtype.lower()}-{i}")
                for rtype in order for i in range(int(replicas[rtype].get("replicas", 1)))]
        for rtype, _, pod in pods:  # each start gets fresh ports, as a restarted pod gets a new address
            port = _tf_port(replicas[rtype])
            self.local.forget(pod)
            self.local.expose(pod, self.namespace, port, pod, port)  # the operator's headless Service per pod
        procs = []
        for rtype, i, pod in pods:
            spec = replicas[rtype]["template"]["spec"]
            container = next(c for c in spec["containers"] if c["name"] == TF_CONTAINER)
            tf = tf_config(job, rtype, i)
            procs.append(self.local.process(f"train-{rtype.lower()}-{i}", pod, spec, container,
                                            extra_env={"TF_CONFIG": tf} if tf else None))
        return procs

    @property
    def tfjob(self) -> dict:
        return self.rendered.one("TFJob")

    # -- serving and TensorBoard ----------------------------------------------------------------------------

    def _pod(self, name: str) -> dict:
        return self.rendered.one("Deployment", name)["spec"]["template"]["spec"]

    def sync_model(self, watch: bool = False) -> Process:
        """The serving pod's init container (`watch=False`) or its watching sidecar."""
        spec = self._pod("serving")
        if watch:
            c = next(c for c in spec["containers"] if "--watch" in (c.get("args") or []))
        else:
            (c,) = spec["initContainers"]
        return self.local.process(f"sync-model{'-watch' if watch else ''}", "serving", spec, c)

    def serving(self) -> Process:
        """TF Serving's container flags, for the stand-in."""
        spec = self._pod("serving")
        (c,) = [c for c in spec["containers"] if c["name"] == "tf-serving"]
        return self.local.process("serving", "serving", spec, c)

    def model_dir(self) -> Path:
        """Where the serving pod's model volume is on this machine (`--model_base_path`)."""
        (flag,) = [a for a in self.serving().cmd if a.startswith("--model_base_path=")]
        return Path(flag.split("=", 1)[1])

    def tensorboard(self) -> Process:
        spec = self._pod("tensorboard")
        (c,) = spec["containers"]
        return self.local.process("tensorboard", "tensorboard", spec, c)

    def predict(self, *args: str) -> Process:
        """The documented client command (stack output `predictCommand`, through the serving port-forward),
        with the `evaluate` step's environment (DATA_URL holds the test images)."""
        cmd = self.local.forwarded(self.rendered.outputs["predictCommand"]).split()
        env = self.evaluate("predict").env
        return Process("predict", [*self.local.executable(cmd), *args], env)


def _template(spec: Mapping, name: str) -> dict:
    for t in spec["templates"]:
        if t["name"] == name:
            return t
    raise PodSpecError(f"no Argo template {name!r} (have: {[t['name'] for t in spec['templates']]})")
