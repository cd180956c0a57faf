"""The capacity check before anything is created: every pod the stack runs must fit on some node.

Run by the program at `pulumi preview` and `up` when the cluster can be read (`infra.kubeapi`): per pod (the
TFJob's chief and workers, a serving replica, MinIO, data prep, TensorBoard) its CPU, memory and GPU requests
against each schedulable node's allocatable (nodes outside `training.nodeSelector` do not count for the
TFJob). A pod that fits on no node would stay Pending forever; the preview fails in one line naming it, the
key to change and the largest node instead. Taints and what already runs on the nodes are not counted: the
check only fails where the pod cannot fit on an empty node, so it never refuses a stack that could run.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from infra.config import StackConfig
from infra.configcheck import NS
from infra.configload import quantity_value


@dataclass(frozen=True)
class PodRequest:
    what: str  # "the TFJob's chief and workers"
    workload: str  # its resource keys' prefix (`training` -> training.cpu, training.memory)
    cpu: Decimal  # cores
    memory: Decimal  # bytes
    gpus: int = 0
    node_selector: tuple[tuple[str, str], ...] = ()


def _quantity(text: object) -> Decimal | None:
    try:
        return quantity_value(str(text))
    except (AssertionError, KeyError, ArithmeticError):
        return None


def pod_requests(cfg: StackConfig) -> list[PodRequest]:
    """One entry per kind of pod the stack creates, with what one such pod requests."""
    r = cfg.resources

    def req(what: str, *workloads: str, **more) -> PodRequest:
        return PodRequest(what, workloads[0], sum(quantity_value(r[w].cpu) for w in workloads),
                          sum(quantity_value(r[w].memory) for w in workloads), **more)

    pods = [
        req("the TFJob's chief and workers", "training", gpus=cfg.training.gpus,
            node_selector=cfg.training.node_selector),
        # TF Serving and its watching sidecar share the pod (the init container runs alone, before them).
        req("a serving pod (TF Serving and sync-model)", "serving", "sync"),
        req("data prep", "dataprep"),
        req("TensorBoard", "tensorboard"),
    ]
    if cfg.storage.mode == "minio":
        pods.append(req("MinIO", "minio"))
    return pods


def _show_cpu(cores: Decimal) -> str:
    return f"{cores.normalize():f} CPU"


def _show_memory(size: Decimal) -> str:
    return f"{size / 2**30:.2f} GiB"


def problem(pods: list[PodRequest], nodes: list[dict]) -> str | None:
    """The first pod that fits on no node, as one line (None: every pod fits somewhere). `nodes`:
    `infra.kubeapi.node_allocatable`'s list."""
    parsed = []
    for n in nodes:
        cpu, memory = _quantity(n.get("cpu")), _quantity(n.get("memory"))
        if cpu is None or memory is None:  # a quantity we cannot read: that node might fit anything
            return None
        parsed.append((n, cpu, memory, int(_quantity(n.get("gpus") or "0") or 0)))
    if not parsed:
        return None
    for pod in pods:
        candidates = [p for p in parsed if all(p[0].get("labels", {}).get(k) == v for k, v in pod.node_selector)]
        if not candidates:
            selector = ", ".join(f"{k}={v}" for k, v in pod.node_selector)
            return (f"capacity: no schedulable node has the labels {pod.what} select ({selector}): label a node, "
                    f"or change {NS}:training.nodeSelector")
        if any(cpu >= pod.cpu and memory >= pod.memory and gpus >= pod.gpus for _, cpu, memory, gpus in candidates):
            continue
        for need, index, show, key in (
            (pod.cpu, 1, _show_cpu, f"{pod.workload}.cpu"),
            (pod.memory, 2, _show_memory, f"{pod.workload}.memory"),
            (Decimal(pod.gpus), 3, lambda g: f"{g} GPUs", "training.gpus"),
        ):
            largest = max(candidates, key=lambda p: p[index])
            if largest[index] < need:
                return (f"capacity: {pod.what} ask for {show(need)} each; the largest node ({largest[0]['name']}) "
                        f"has {show(largest[index])} allocatable: lower {NS}:{key} or add a larger node")
        return (f"capacity: {pod.what} ask for {_show_cpu(pod.cpu)} and {_show_memory(pod.memory)} each, which no "
                f"single node has allocatable at once: lower {NS}:{pod.workload}.cpu or .memory, or add a larger node")
    return None
