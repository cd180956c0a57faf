"""Bounds on what the namespace can hold: a ResourceQuota sized from the config to what the stack runs at its
peak (the stack's TFJob and a retrain's side by side, serving during a rolling update, Argo's executor
containers), and a LimitRange that gives any container without resources small defaults and caps one
container at the largest the config asks for. So a runaway submitter or a leaked pod stops at the quota
instead of draining the cluster."""

from __future__ import annotations

from decimal import Decimal

from infra.config import ResourcesConfig, StackConfig
from infra.configload import quantity_value

# Argo's executor containers per workflow pod (init and wait; a resource step's main is argoexec too), each
# with the chart values' `executor.resources` (infra.argo).
EXECUTOR = ResourcesConfig(cpu="50m", memory="64Mi", cpu_limit="500m", memory_limit="512Mi")
EXECUTORS_PER_POD = 3
HEADROOM = Decimal("1.25")  # for pods that are terminating while their replacements start


def _peak(cfg: StackConfig) -> list[tuple[ResourcesConfig, int]]:
    """(a container's resources, how many such containers) at the stack's peak."""
    r = cfg.resources
    processes = cfg.workers + 1
    workflow_pods = 3  # the stack's data prep, and one retrain's prepare/evaluate and train step
    peak = [
        (r["training"], 2 * processes),  # the stack's TFJob and one retrain's
        (r["dataprep"], workflow_pods),
        (EXECUTOR, EXECUTORS_PER_POD * workflow_pods),
        (r["serving"], 2 * cfg.serving.replicas),  # a rolling update: old and new side by side
        (r["sync"], 2 * 2 * cfg.serving.replicas),  # the init and the watching container
        (r["tensorboard"], 2),
    ]
    if cfg.storage.mode == "minio":
        peak += [(r["minio"], 1), (r["sync"], 1)]  # MinIO and its bucket Job
    return peak


def _quantity(value: Decimal, unit: str) -> str:
    if unit == "cpu":
        return f"{int((value * 1000).to_integral_value(rounding='ROUND_CEILING'))}m"
    return f"{int((value / 2**20).to_integral_value(rounding='ROUND_CEILING'))}Mi"


def quota_spec(cfg: StackConfig) -> dict:
    """The ResourceQuota's spec: requests and limits summed over the peak, times `HEADROOM`; pod and PVC
    counts; no LoadBalancer or NodePort Service; GPUs for two TFJobs when training uses them."""
    peak = _peak(cfg)
    hard: dict[str, str] = {}
    for field, unit, attr in (
        ("requests.cpu", "cpu", "cpu"),
        ("requests.memory", "memory", "memory"),
        ("limits.cpu", "cpu", "cpu_limit"),
        ("limits.memory", "memory", "memory_limit"),
    ):
        total = sum((quantity_value(getattr(res, attr)) * n for res, n in peak), Decimal(0))
        hard[field] = _quantity(total * HEADROOM, unit)
    processes = cfg.workers + 1
    pods = 2 * processes + 4 * cfg.serving.replicas + 10
    hard |= {
        "pods": str(pods),
        "persistentvolumeclaims": "4",
        "services.loadbalancers": "0",
        "services.nodeports": "0",
    }
    if cfg.training.gpus:
        hard["requests.nvidia.com/gpu"] = str(2 * processes * cfg.training.gpus)
    return {"hard": hard}


def limit_range_spec(cfg: StackConfig) -> dict:
    """Defaults for a container that sets no resources (data prep's), and the largest one container may ask
    for (the largest the config asks for any workload)."""
    small = cfg.resources["dataprep"]
    every = [res for res, _ in _peak(cfg)]
    biggest = {
        "cpu": _quantity(max(quantity_value(x.cpu_limit) for x in every), "cpu"),
        "memory": _quantity(max(quantity_value(x.memory_limit) for x in every), "memory"),
    }
    return {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": small.cpu_limit, "memory": small.memory_limit},
                "defaultRequest": {"cpu": small.cpu, "memory": small.memory},
                "max": biggest,
            }
        ]
    }
