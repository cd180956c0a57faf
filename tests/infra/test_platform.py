"""The platform pieces (training operator, Argo, Fluid) are optional: with `<piece>.install: false` the stack
declares only its own objects and reads the CRDs they need from the cluster, so a cluster without them stops
the preview naming the missing CRD."""

from __future__ import annotations

import json

import pytest

from infra.crds import read_name

from .conftest import make_config
from .test_pipeline import graph

OFF = {"operator.install": False, "argo.install": False, "fluid.install": False}
CLUSTER_WIDE = ("kubernetes:helm.sh/", "kubernetes:kustomize/", "kubernetes:yaml/")


def crd_of(obj: dict) -> str:
    """The CRD that serves a custom object: `<plural>.<group>` (every kind here takes a plain -s plural)."""
    group = obj["apiVersion"].split("/")[0]
    return f"{obj['kind'].lower()}s.{group}"


def custom_objects(rendered) -> list[dict]:
    return [m for m in rendered.manifests if "." in m["apiVersion"].split("/")[0] and "k8s.io" not in m["apiVersion"]]


def test_install_keys_default_to_true():
    cfg = make_config()
    assert (cfg.operator.install, cfg.argo.install, cfg.fluid.install) == (True, True, True)
    off = make_config(operator__install="false", argo__install="false", fluid__install="false")
    assert (off.operator.install, off.argo.install, off.fluid.install) == (False, False, False)


def crd_reads(rendered) -> list[dict]:
    """The reads of CRDs (the other read, of the API server's endpoints, is in every stack: infra.namespace)."""
    return [x for x in rendered.reads() if x["type"] != "kubernetes:core/v1:Endpoints"]


def test_installed_by_default_reads_only_the_api_servers_endpoints(stack):
    assert [(x["type"], x["read"]) for x in stack.reads()] == [("kubernetes:core/v1:Endpoints", "default/kubernetes")]
    assert stack.by_type("kubernetes:kustomize/v2:Directory") and stack.by_type("kubernetes:helm.sh/v4:Chart")


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_all_off_declares_only_our_objects(renders, stack_name):
    r = renders(stack_name, OFF)
    assert [x["name"] for x in r.resources if x["type"].startswith(CLUSTER_WIDE)] == []
    namespaces = {m["metadata"]["name"] for m in r.find("Namespace")}
    # <namespace>-cache is ours: the Fluid cache runtime of our dataset (prod), not the platform's Fluid.
    assert namespaces - {"kubeflow-e2e-cache"} == {"kubeflow-e2e"}, (
        "the argo and fluid namespaces belong to the cluster's own installs"
    )
    # Every CRD our custom objects need is read, and nothing else.
    needed = {crd_of(m) for m in custom_objects(r)} | {"workflowtaskresults.argoproj.io"}
    assert {x["read"] for x in crd_reads(r)} == needed
    assert all(x["type"] == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition" for x in crd_reads(r))


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_each_custom_object_waits_for_the_read_of_its_crd(renders, stack_name):
    r = renders(stack_name, OFF)
    after = graph(r)
    reads = {x["read"]: x["urn"] for x in crd_reads(r)}
    for res in r.resources:
        if res in crd_reads(r) or not res["type"].startswith("kubernetes:") or "kind" not in res["inputs"]:
            continue
        obj = res["inputs"]
        if obj in custom_objects(r):
            assert reads[crd_of(obj)] in after[res["urn"]], (obj["kind"], crd_of(obj))


def test_read_names_say_which_setting_needs_them(renders):
    r = renders("prod", OFF)
    names = {x["read"]: x["name"] for x in crd_reads(r)}
    assert names["tfjobs.kubeflow.org"] == read_name("tfjobs.kubeflow.org", "operator.install")
    assert "operator.install" in names["tfjobs.kubeflow.org"]
    assert "argo.install" in names["workflows.argoproj.io"]
    assert "fluid.install" in names["dataloads.data.fluid.io"]


def test_each_piece_switches_alone(renders):
    r = renders("prod", {"operator.install": False})
    assert {x["read"] for x in crd_reads(r)} == {"tfjobs.kubeflow.org"}
    assert not r.by_type("kubernetes:kustomize/v2:Directory")
    assert {x["name"] for x in r.by_type("kubernetes:helm.sh/v4:Chart")} == {"argo-workflows", "fluid"}
    r = renders("prod", {"fluid.install": False})
    assert {x["read"] for x in crd_reads(r)} == {
        "datasets.data.fluid.io",
        "alluxioruntimes.data.fluid.io",
        "dataloads.data.fluid.io",
    }
    assert {x["name"] for x in r.by_type("kubernetes:helm.sh/v4:Chart")} == {"argo-workflows"}


def test_argo_gets_our_bucket_only_as_the_namespace_artifact_repository(renders):
    """Installed or the cluster's own, Argo finds our bucket in our namespace's `artifact-repositories`
    ConfigMap; the controller's configuration names no repository, so no other namespace's workflow pod mounts
    our Secret name or archives into our bucket."""
    import yaml

    installed = renders("prod")
    values = next(c for c in installed.by_type("kubernetes:helm.sh/v4:Chart") if c["name"] == "argo-workflows")
    values = values["inputs"]["values"]
    assert "artifactRepository" not in values and "useStaticCredentials" not in values
    assert "artifactRepository" not in json.dumps(values)
    for r in (installed, renders("prod", OFF)):
        cm = r.one("ConfigMap", "artifact-repositories")
        assert cm["metadata"]["namespace"] == "kubeflow-e2e"
        key = cm["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
        repo = yaml.safe_load(cm["data"][key])
        assert repo["archiveLogs"] is True and repo["s3"]["bucket"] == r.outputs["bucket"]
