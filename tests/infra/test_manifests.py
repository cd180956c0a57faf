"""Every rendered manifest of both stacks (and of the variants) validates offline: core kinds with
kubernetes-validate in strict mode at pinned Kubernetes versions, the TFJob with the kubeflow-training SDK's
models, the Argo Workflow and WorkflowTemplate with hera's, and the pod templates inside them as Pods."""

from __future__ import annotations

import copy

import pytest
import yaml

from e2e import tools as e2e_tools

from . import validate
from .validate import CRD_KINDS, K8S_VERSIONS


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_manifests_validate_strictly(variant, version):
    checked = 0
    for m in variant.manifests:
        if m["kind"] not in CRD_KINDS:
            validate.k8s(m, version)
            checked += 1
    assert checked >= 15


def test_every_kind_is_covered(variant):
    import kubernetes_validate

    for m in variant.manifests:
        if m["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                validate.k8s(m, K8S_VERSIONS[-1])


def test_tfjob_validates_with_the_sdk(variant):
    job = variant.one("TFJob")
    validate.tfjob(job)
    for name, spec in job["spec"]["tfReplicaSpecs"].items():
        for version in K8S_VERSIONS:
            validate.pod(spec["template"], version, f"tfjob-{name.lower()}")


def test_sdk_check_catches_a_misplaced_key(dev):
    job = copy.deepcopy(dev.one("TFJob"))
    job["spec"]["tfReplicaSpecs"]["Worker"]["restart_policy"] = "OnFailure"  # snake case: unknown to the operator
    with pytest.raises(AssertionError, match="restart_policy"):
        validate.tfjob(job)


def argo_pods(obj: dict):
    """Each container template of a Workflow/WorkflowTemplate as a Pod, with the workflow's pod settings."""
    spec = obj["spec"]
    for t in spec["templates"]:
        if "container" in t:
            yield (
                t["name"],
                {
                    "metadata": t.get("metadata", {}),
                    "spec": {
                        "serviceAccountName": spec["serviceAccountName"],
                        "securityContext": spec["securityContext"],
                        "containers": [t["container"]],
                        "volumes": spec.get("volumes", []),
                    },
                },
            )


@pytest.mark.parametrize("name", ["prepare-data", "retrain-mnist"])
def test_argo_objects_validate_with_hera(variant, name):
    validate.argo(variant.one("Workflow"))
    obj = variant.one("WorkflowTemplate", name)
    validate.argo(obj)
    pods = list(argo_pods(obj))
    assert pods
    for name, template in pods:
        validate.pod(template, K8S_VERSIONS[-1], name)


def test_hera_check_catches_a_misplaced_key(dev):
    wf = copy.deepcopy(dev.one("WorkflowTemplate", "prepare-data"))
    wf["spec"]["templates"][0]["container"]["restart_policy"] = "Never"
    with pytest.raises(AssertionError, match="restart_policy"):
        validate.argo(wf)


def test_retraining_creates_a_valid_tfjob(variant):
    template = variant.one("WorkflowTemplate", "retrain-mnist")
    steps = {t["name"]: t for t in template["spec"]["templates"]}
    job = yaml.safe_load(steps["train"]["resource"]["manifest"])
    assert job["kind"] == "TFJob" and job["metadata"]["name"] == "{{workflow.name}}"
    validate.tfjob(job)
    validate.pod(job["spec"]["tfReplicaSpecs"]["Worker"]["template"], K8S_VERSIONS[-1])


def test_fluid_objects(prod):
    """No offline schema exists for Fluid's CRDs: check the fields its v1.0.8 CRDs require and the
    wiring between the three objects."""
    (dataset,) = [d for d in prod.find("Dataset", "mnist") if d["metadata"]["namespace"] == "kubeflow-e2e-cache"]
    runtime = prod.one("AlluxioRuntime", "mnist")
    load = prod.one("DataLoad")
    assert {m["apiVersion"] for m in (dataset, runtime, load)} == {"data.fluid.io/v1alpha1"}
    (mount,) = dataset["spec"]["mounts"]
    assert mount["mountPoint"] == prod.outputs["dataUrl"] and len(mount["mountPoint"]) >= 5
    assert all(
        set(o) == {"name", "valueFrom"} and o["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials-cache"
        for o in mount["encryptOptions"]
    )
    assert all(isinstance(v, str) for v in mount["options"].values())
    assert isinstance(runtime["spec"]["replicas"], int)
    level = runtime["spec"]["tieredstore"]["levels"][0]
    assert level["mediumtype"] == "MEM" and level["quota"] == "2Gi"
    assert load["spec"]["dataset"] == {"name": "mnist", "namespace": dataset["metadata"]["namespace"]}
    assert all("path" in t for t in load["spec"]["target"])
    assert load["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}  # awaited by its gate


def test_argo_chart_values(variant):
    (chart,) = [r for r in variant.by_type("kubernetes:helm.sh/v4:Chart") if r["name"] == "argo-workflows"]
    values = chart["inputs"]["values"]
    # Cluster-wide, as documented: no namespace list that would suggest otherwise, and the
    # CRDs (hence every Workflow in the cluster) survive our destroy.
    assert values["singleNamespace"] is False and "workflowNamespaces" not in values["controller"]
    assert values["crds"] == {"install": True, "full": False, "keep": True}
    assert values["server"]["serviceType"] == "ClusterIP"
    # The images run the Argo release the real-node e2e builds and runs, not the chart's appVersion.
    assert values["images"] == {"tag": e2e_tools.ARGO}
    assert "artifactRepository" not in values  # only our namespace's ConfigMap names the bucket
