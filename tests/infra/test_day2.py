"""Day-2 safety of the stack (issue 9): what `pulumi up` waits for, which regions a store accepts, and two
stacks sharing one cluster."""

from __future__ import annotations

import pytest

from infra.config import ConfigError

from .conftest import make_config
from .test_pipeline import annotations

AWAITED = ("apps/v1:Deployment", "core/v1:Service", "batch/v1:Job", "apiextensions.k8s.io/v1:CustomResource")


def test_nothing_on_the_serving_path_waits_for_a_model_without_wait_for_training(renders):
    """Item 4: the serving Service's endpoints need a ready pod, which needs a model: not awaited."""
    r = renders.variant("dev-nowait")
    for kind in ("Deployment", "Service"):
        assert annotations(r, kind, "serving").get("pulumi.com/skipAwait") == "true", kind
    assert annotations(r, "TFJob").get("pulumi.com/skipAwait") == "true"


def test_with_wait_for_training_serving_is_awaited(dev):
    for kind in ("Deployment", "Service"):
        assert "pulumi.com/skipAwait" not in annotations(dev, kind, "serving"), kind


EXTERNAL = {
    "storage__mode": "external",
    "storage__endpoint": "https://s3.example.com",
    "storage__accessKeyId": "k",
    "storage__secretAccessKey": "s",
}


@pytest.mark.parametrize("region", ["fr-par", "nyc3", "auto", "us-west-004", "minio", "us-east-1"])
@pytest.mark.parametrize("mode", ["external", "minio"])
def test_s3_compatible_endpoints_keep_their_own_region_names(mode, region):
    """Item 9."""
    extra = EXTERNAL if mode == "external" else {}
    assert make_config(**extra, storage__region=region).storage.region == region


@pytest.mark.parametrize("region", ["fr-par", "auto", "minio", "us east 1"])
def test_aws_mode_needs_an_aws_region(region):
    with pytest.raises(ConfigError, match=r"storage.region is not an AWS region such as us-east-1"):
        make_config(storage__mode="aws", storage__region=region)


@pytest.mark.parametrize("region", ["fr par", "-x", "a/b"])
def test_other_modes_still_refuse_a_malformed_name(region):
    with pytest.raises(ConfigError, match=r"storage.region is not a region name .*pulumi config set"):
        make_config(storage__region=region)


SECOND_STACK = {"operator.install": False, "argo.install": False, "namespace": "kubeflow-e2e-prod"}


def cluster_wide(rendered) -> set[str]:
    """What a stack creates that is not inside its own namespace: namespaces, and the charts and kustomize
    manifests that install CRDs, cluster roles and controllers."""
    out = {f"Namespace/{m['metadata']['name']}" for m in rendered.find("Namespace")}
    for r in rendered.resources:
        if r["type"].startswith(("kubernetes:helm.sh/", "kubernetes:kustomize/")):
            out.add(f"{r['type'].split(':')[1]}/{r['name']}")
    return out


def test_two_stacks_on_one_cluster_share_nothing_cluster_wide(dev, renders):
    """Item 12: dev installs the platform; prod on the same cluster uses it and lives in its own namespace."""
    assert cluster_wide(dev) & cluster_wide(renders.variant("prod")), "the defaults do collide"
    second = renders("prod", SECOND_STACK)
    assert not cluster_wide(dev) & cluster_wide(second), cluster_wide(dev) & cluster_wide(second)
    # prod's Fluid is its own (dev does not run Fluid); the operator and Argo are dev's, read not created.
    assert {x["read"] for x in second.reads()} >= {"tfjobs.kubeflow.org", "workflows.argoproj.io"}
    assert {m["metadata"]["namespace"] for m in second.manifests if m["metadata"].get("namespace")} <= {
        "kubeflow-e2e-prod"
    }
