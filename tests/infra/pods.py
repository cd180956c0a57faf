"""Walks a render for every pod it would start: (where, pod spec), from Deployments, Jobs, TFJob replicas,
the TFJob inside the retraining template, and Argo container templates (with the workflow's pod settings)."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

# What a workflow's spec sets for every pod it starts (Argo's workflow-level pod settings).
POD_FIELDS = ("securityContext", "serviceAccountName", "automountServiceAccountToken")


def _argo(obj: dict, where: str) -> Iterator[tuple[str, dict]]:
    spec = obj["spec"]
    for t in spec.get("templates", []):  # a Workflow that references a template has none
        if "container" in t:
            yield (
                f"{where}/{t['name']}",
                {
                    **{k: spec[k] for k in POD_FIELDS if k in spec},
                    "containers": [t["container"]],
                    "volumes": spec.get("volumes", []),
                },
            )
        if "resource" in t:
            yield from _tfjob(yaml.safe_load(t["resource"]["manifest"]), f"{where}/{t['name']}")


def _tfjob(job: dict, where: str) -> Iterator[tuple[str, dict]]:
    for name, replica in job["spec"]["tfReplicaSpecs"].items():
        yield f"{where}/{name}", replica["template"]["spec"]


def pod_specs(rendered) -> Iterator[tuple[str, dict]]:
    for m in rendered.manifests:
        where = f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield where, m["spec"]["template"]["spec"]
        elif m["kind"] == "TFJob":
            yield from _tfjob(m, where)
        elif m["kind"] in ("Workflow", "WorkflowTemplate"):
            yield from _argo(m, where)


def containers(rendered) -> Iterator[tuple[str, dict, dict]]:
    for where, spec in pod_specs(rendered):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{where}/{c['name']}", c, spec


def env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}
