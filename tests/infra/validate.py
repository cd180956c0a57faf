"""Offline validators for rendered objects: kubernetes-validate (strict) for core kinds, the kubeflow-training
SDK for TFJobs, hera for Argo objects. The SDK models ignore unknown keys, so those checks also demand that a
round trip through the model gives the object back unchanged: a misspelt or misplaced key fails."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate

# The oldest and a recent Kubernetes release the stack supports, both pinned.
K8S_VERSIONS = ("1.29.0", "1.33.0")
CRD_KINDS = {"TFJob", "Workflow", "WorkflowTemplate", "Dataset", "AlluxioRuntime", "DataLoad"}


def k8s(obj: dict, version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def pod(template: dict, version: str, name: str = "pod") -> None:
    """A pod template (inside a TFJob, or an Argo container) checked as a whole Pod."""
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **template.get("metadata", {})},
        "spec": template["spec"],
    }
    k8s(obj, version)


def _same(original: Any, back: Any, path: str = "") -> list[str]:
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [f"{path}: not an object after the round trip"]
        out = []
        for key, value in original.items():
            if key not in back:
                out.append(f"{path}.{key}: dropped by the model (unknown or misplaced)")
            else:
                out += _same(value, back[key], f"{path}.{key}")
        return out
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [f"{path}: list changed"]
        return [e for i, (a, b) in enumerate(zip(original, back, strict=True)) for e in _same(a, b, f"{path}[{i}]")]
    return [] if original == back else [f"{path}: {original!r} came back as {back!r}"]


def tfjob(obj: dict) -> None:
    from kubeflow.training import ApiClient

    client = ApiClient()

    class Response:
        data = json.dumps(obj)

    model = client.deserialize(Response(), "KubeflowOrgV1TFJob")
    problems = _same(obj, client.sanitize_for_serialization(model))
    assert not problems, problems


def argo(obj: dict) -> None:
    from hera.workflows.models import Workflow, WorkflowTemplate

    model = {"Workflow": Workflow, "WorkflowTemplate": WorkflowTemplate}[obj["kind"]]
    back = model.model_validate(obj).model_dump(by_alias=True, exclude_none=True, mode="json")
    problems = _same(obj, back)
    assert not problems, problems
