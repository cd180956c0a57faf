"""The program's own reads of the stack's cluster, from the config (through `infra.kubeapi`): the capacity
check before anything is declared, `metrics.serviceMonitor: auto`, and the cluster the gates read. Each read
that cannot reach the cluster (CI's credential-free render, no kubeconfig) is skipped with a note."""

from __future__ import annotations

import pulumi

from infra import capacity, kubeapi
from infra.config import StackConfig
from infra.serving import SERVICE_MONITOR_CRD
from infra.workload import RolloutGate


def rollout_gate(cfg: StackConfig) -> RolloutGate:
    """Deployments are awaited by gates that read the stack's cluster (`infra.workload`)."""
    return RolloutGate(cfg.cluster.kubeconfig, cfg.cluster.context)


def wants_service_monitor(cfg: StackConfig) -> bool:
    """`metrics.serviceMonitor`: `true`/`false` as set; `auto` asks the cluster whether the Prometheus
    Operator's CRD is there (at preview and up), and declares none when the cluster cannot be read."""
    choice = cfg.metrics.service_monitor
    if choice != "auto":
        return choice == "true"
    found = kubeapi.crd_exists(SERVICE_MONITOR_CRD, cfg.cluster.kubeconfig, cfg.cluster.context)
    if found is None:
        pulumi.log.info(f"metrics.serviceMonitor auto: cannot read the cluster to look for {SERVICE_MONITOR_CRD}; "
                        "no ServiceMonitor (set metrics.serviceMonitor true to declare one anyway)")
    return bool(found)


def check_capacity(cfg: StackConfig) -> None:
    """Fails the preview in one line when a pod the stack runs fits on no node (`infra.capacity`); says in a
    note that it skipped the check when the cluster's nodes cannot be read."""
    nodes = kubeapi.node_allocatable(cfg.cluster.kubeconfig, cfg.cluster.context)
    if nodes is None:
        pulumi.log.info("capacity check skipped: cannot read the cluster's nodes (no kubeconfig, unreachable, "
                        "or an offline render)")
        return
    found = capacity.problem(capacity.pod_requests(cfg), nodes)
    if found:
        raise pulumi.RunError(found)
