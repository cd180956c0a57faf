"""The program's own reads of the cluster, with the kubeconfig and context the stack's Kubernetes provider
uses: the gates' status polls (`infra.gate`), and what `pulumi preview` checks before it declares anything
(whether a CRD exists, the nodes' allocatable CPU and memory).

A read at preview time is a convenience, never a requirement: CI's credential-free render and a preview
without the cluster get None ("unknown") and the program goes on. `python -m render` sets OFFLINE_ENV, so an
offline render never reads whatever cluster this machine's kubeconfig happens to reach (and stays the same
everywhere)."""

from __future__ import annotations

import os
from typing import Any

OFFLINE_ENV = "KUBEFLOW_E2E_OFFLINE"
LOOKUP_TIMEOUT_S = 5  # per request: an unreachable cluster must not hold a preview up


def api_client(kubeconfig: str | None, context: str | None) -> Any:
    """A `kubernetes` ApiClient for the stack's cluster (raises when the kubeconfig or context is missing)."""
    from kubernetes import config

    return config.new_client_from_config(config_file=kubeconfig or None, context=context or None)


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV) == "1"


def crd_exists(name: str, kubeconfig: str | None, context: str | None) -> bool | None:
    """Whether the CustomResourceDefinition `name` (`servicemonitors.monitoring.coreos.com`) exists; None when
    the cluster cannot be read (offline, no kubeconfig or context, unreachable, forbidden)."""
    if offline():
        return None
    try:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = client.ApiextensionsV1Api(api_client(kubeconfig, context))
        try:
            api.read_custom_resource_definition(name, _request_timeout=LOOKUP_TIMEOUT_S)
            return True
        except ApiException as e:
            return False if e.status == 404 else None
    except Exception:  # no kubeconfig, unknown context, connection refused, timeout: all "unknown"
        return None


def node_allocatable(kubeconfig: str | None, context: str | None) -> list[dict] | None:
    """[{"name", "cpu", "memory", "gpus", "labels", "taints"}] of the schedulable nodes, `cpu`, `memory` and
    `gpus` (`nvidia.com/gpu`) as the node's `status.allocatable` quantities (strings); None when the cluster
    cannot be read."""
    if offline():
        return None
    try:
        from kubernetes import client

        nodes = client.CoreV1Api(api_client(kubeconfig, context)).list_node(_request_timeout=LOOKUP_TIMEOUT_S)
    except Exception:
        return None
    out = []
    for n in nodes.items:
        if n.spec and n.spec.unschedulable:
            continue
        alloc = (n.status.allocatable if n.status else None) or {}
        out.append({
            "name": n.metadata.name,
            "cpu": alloc.get("cpu", "0"),
            "memory": alloc.get("memory", "0"),
            "gpus": alloc.get("nvidia.com/gpu", "0"),
            "labels": dict(n.metadata.labels or {}),
            "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in (n.spec.taints or [])]
            if n.spec else [],
        })
    return out
