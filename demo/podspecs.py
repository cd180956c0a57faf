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

What must differ on one machine (Service names, ports, secrets, volumes, executables) is mapped in
`demo/localmap.py` and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from demo.localmap import Local, PodSpecError, Process
from infra.retraining import NAME as RETRAIN_TEMPLATE
from render import Rendered, render

STACK = "dev"
# From kubeflow/trainer v1.9.4 (the training-operator), pkg/apis/kubeflow.org/v1/tensorflow_types.go:
TF_CONTAINER = "tensorflow"  # TFJobDefaultContainerName
TF_PORT_NAME = "tfjob-port"  # TFJobDefaultPortName
TF_DEFAULT_PORT = 2222  # TFJobDefaultPort


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
        spec = wf["spec"]
        ref = spec.get("workflowTemplateRef")
        if ref:  # Argo runs the referenced template's spec, with the Workflow's own fields over it
            spec = {**self.rendered.one("WorkflowTemplate", ref["name"])["spec"],
                    **{k: v for k, v in spec.items() if k != "workflowTemplateRef"}}
        template = _template(spec, spec["entrypoint"])
        return self.local.process("prepare-data", "prepare-data", spec, template["container"],
                                  {"workflow.name": wf["metadata"]["name"]})

    def evaluate(self, run: str) -> Process:
        """The retraining WorkflowTemplate's `evaluate` step, as if a workflow named `run` ran it."""
        wt = self.rendered.one("WorkflowTemplate", RETRAIN_TEMPLATE)
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
