"""Bounds on what the stack can take: a ResourceQuota that holds the stack at its peak, a LimitRange, finished
retrains cleaned up, TF Serving's models volume and request size capped."""

from __future__ import annotations

import yaml

from infra.configload import quantity_value
from infra.serving import MAX_REQUEST_BYTES, MODELS_BYTES, MODELS_SIZE

from .pods import pod_specs


def _sum(specs, field: str, what: str) -> int:
    return sum(
        quantity_value(c.get("resources", {}).get(field, {}).get(what, "0"))
        for _, spec in specs
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    )


def test_the_quota_holds_every_pod_the_stack_makes_twice_over(variant):
    """Every pod the render makes (each TFJob replica once) fits the quota with room for a retrain beside it."""
    quota = variant.one("ResourceQuota")
    assert quota["metadata"]["namespace"] == "kubeflow-e2e"
    hard = quota["spec"]["hard"]
    specs = list(pod_specs(variant))
    for field in ("requests", "limits"):
        for what in ("cpu", "memory"):
            assert _sum(specs, field, what) <= quantity_value(hard[f"{field}.{what}"]), (field, what)
    assert hard["services.loadbalancers"] == hard["services.nodeports"] == "0"
    processes = variant.one("TFJob")["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] + 1
    assert int(hard["pods"]) >= 2 * processes + 4
    chief = variant.one("TFJob")["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]
    gpus = int(chief["resources"]["limits"].get("nvidia.com/gpu", 0))
    assert int(hard.get("requests.nvidia.com/gpu", 0)) == 2 * processes * gpus


def test_the_limit_range_admits_every_container_of_the_stack(variant):
    (limits,) = variant.one("LimitRange")["spec"]["limits"]
    assert limits["type"] == "Container" and {"default", "defaultRequest", "max"} <= set(limits)
    for where, spec in pod_specs(variant):
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            for what in ("cpu", "memory"):
                limit = c.get("resources", {}).get("limits", {}).get(what)
                if limit is not None:
                    assert quantity_value(limit) <= quantity_value(limits["max"][what]), (where, c["name"])


def test_finished_retrains_go_and_leave_no_running_pods(stack):
    spec = stack.one("WorkflowTemplate", "retrain-mnist")["spec"]
    assert spec["podGC"] == {"strategy": "OnWorkflowSuccess"}
    assert spec["ttlStrategy"]["secondsAfterSuccess"] > 0 and spec["ttlStrategy"]["secondsAfterFailure"] > 0
    (train,) = [t for t in spec["templates"] if t["name"] == "train"]
    job = yaml.safe_load(train["resource"]["manifest"].replace("{{", "").replace("}}", ""))
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    assert job["spec"]["runPolicy"]["ttlSecondsAfterFinished"] >= spec["ttlStrategy"]["secondsAfterSuccess"]
    own = stack.one("TFJob")["spec"]["runPolicy"]
    assert own["cleanPodPolicy"] == "Running" and "ttlSecondsAfterFinished" not in own  # Pulumi's to delete


def test_serving_caps_its_models_volume_and_request_size(stack):
    spec = stack.one("Deployment", "serving")["spec"]["template"]["spec"]
    assert {"name": "models", "emptyDir": {"sizeLimit": MODELS_SIZE}} in spec["volumes"]
    assert quantity_value(MODELS_SIZE) == MODELS_BYTES
    for c in [*spec["initContainers"], spec["containers"][1]]:
        assert c["args"][c["args"].index("--max-bytes") + 1] == str(MODELS_BYTES)
    server = spec["containers"][0]
    assert f"--grpc_channel_arguments=grpc.max_receive_message_length={MAX_REQUEST_BYTES}" in server["args"]
