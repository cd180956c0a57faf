"""Every workload of the rendered stack is awaited by a gate that checks its pods (`infra.gate`): MinIO, its
bucket Job, TensorBoard, serving (where awaited), data prep and the TFJob. Each gate's pod selector selects
exactly its workload's pods, and what waited for the workload waits for its gate."""

from __future__ import annotations

import pytest

GATED = {  # gate -> (kind, object name, the pod template's labels)
    "gate-deployment-minio": ("Deployment", "minio"),
    "gate-job-minio-bucket": ("Job", "minio-bucket"),
    "gate-deployment-tensorboard": ("Deployment", "tensorboard"),
    "gate-deployment-serving": ("Deployment", "serving"),
    "gate-prepare-data": ("Workflow", "prepare-data"),
    "gate-tfjob": ("TFJob", "mnist-baseline"),
}


def gates(rendered) -> dict[str, dict]:
    return {r["name"]: r for r in rendered.by_type("pulumi-python:dynamic:Resource") if r["name"].startswith("gate-")}


def pod_labels(rendered, kind: str, name: str) -> dict:
    obj = rendered.one(kind, name)
    if kind in ("Deployment", "Job"):
        return obj["spec"]["template"]["metadata"]["labels"]
    # The labels the controllers add to the pods they start (Argo, the training operator).
    return {"Workflow": {"workflows.argoproj.io/workflow": name},
            "TFJob": {"training.kubeflow.org/job-name": name}}[kind]


def test_every_workload_has_a_gate_on_its_pods(dev):
    found = gates(dev)
    assert set(GATED) <= set(found)
    for gate_name, (kind, name) in GATED.items():
        props = found[gate_name]["inputs"]
        assert (props["kind"], props["name"]) == (kind, name)
        selector = dict(pair.split("=", 1) for pair in props["podSelector"].split(","))
        labels = {**pod_labels(dev, kind, name), "job-name": name} if kind == "Job" else pod_labels(dev, kind, name)
        assert selector.items() <= labels.items(), gate_name  # the Job controller adds job-name
        if kind in ("Deployment", "Job"):
            # The provider does not await it: the gate does, and fails fast.
            assert dev.one(kind, name)["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        # No other workload's pods match.
        others = [(k, n) for k, n in GATED.values() if (k, n) != (kind, name) and k in ("Deployment", "Job")]
        for k, n in others:
            assert not selector.items() <= pod_labels(dev, k, n).items(), (gate_name, n)


def test_what_needed_a_workload_now_waits_for_its_gate(dev):
    urns = {r["name"]: r["urn"] for r in dev.resources}
    by_name = {r["name"]: r for r in dev.resources}
    for app in ("minio", "tensorboard", "serving"):
        assert urns[f"gate-deployment-{app}"] in by_name[f"service-{app}"]["dependencies"]
    # The pipeline's S3 access (every pod that reads the bucket) waits for the bucket Job's gate.
    assert urns["gate-job-minio-bucket"] in by_name["workflow-prepare-data"]["dependencies"]


@pytest.mark.parametrize("variant", ["dev-nowait"])
def test_serving_that_is_not_awaited_gets_no_gate(renders, variant):
    rendered = renders.variant(variant)
    assert "gate-deployment-serving" not in gates(rendered)
    assert "pulumi.com/skipAwait" in rendered.one("Deployment", "serving")["metadata"]["annotations"]
