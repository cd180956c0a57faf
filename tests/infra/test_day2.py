"""Day-2 safety of the stack: what `pulumi up` waits for, which regions a store accepts, and two
stacks sharing one cluster."""

from __future__ import annotations

import pytest

from infra.configcheck import ConfigError

from .conftest import make_config
from .test_pipeline import annotations

AWAITED = ("apps/v1:Deployment", "core/v1:Service", "batch/v1:Job", "apiextensions.k8s.io/v1:CustomResource")


def test_nothing_on_the_serving_path_waits_for_a_model_without_wait_for_training(renders):
    """The serving Service's endpoints need a ready pod, which needs a model: not awaited."""
    r = renders.variant("dev-nowait")
    for kind in ("Deployment", "Service"):
        assert annotations(r, kind, "serving").get("pulumi.com/skipAwait") == "true", kind
    assert annotations(r, "TFJob").get("pulumi.com/skipAwait") == "true"


def test_with_wait_for_training_serving_is_awaited(dev):
    # The Deployment by its rollout gate (which fails fast on a stuck pod), the Service by the provider.
    assert "pulumi.com/skipAwait" not in annotations(dev, "Service", "serving")
    assert any(r["name"] == "gate-deployment-serving" for r in dev.by_type("pulumi-python:dynamic:Resource"))


EXTERNAL = {
    "storage__mode": "external",
    "storage__endpoint": "https://s3.example.com",
    "storage__accessKeyId": "k",
    "storage__secretAccessKey": "s",
}


@pytest.mark.parametrize("region", ["fr-par", "nyc3", "auto", "us-west-004", "minio", "us-east-1"])
@pytest.mark.parametrize("mode", ["external", "minio"])
def test_s3_compatible_endpoints_keep_their_own_region_names(mode, region):
    """S3-compatible servers name their regions as they like (`fr-par`, `auto`, `minio`): kept as given."""
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
    """dev installs the platform; prod on the same cluster uses it and lives in its own namespace."""
    assert cluster_wide(dev) & cluster_wide(renders.variant("prod")), "the defaults do collide"
    second = renders("prod", SECOND_STACK)
    assert not cluster_wide(dev) & cluster_wide(second), cluster_wide(dev) & cluster_wide(second)
    # prod's Fluid is its own (dev does not run Fluid); the operator and Argo are dev's, read not created.
    assert {x["read"] for x in second.reads()} >= {"tfjobs.kubeflow.org", "workflows.argoproj.io"}
    assert {m["metadata"]["namespace"] for m in second.manifests if m["metadata"].get("namespace")} <= {
        "kubeflow-e2e-prod",
        "kubeflow-e2e-prod-cache",  # the Fluid cache's own namespace, named after ours
    }


# ---- the trainer's own rules, before anything is declared --------------------------------------------------------


def config_error(**values) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        make_config(**values)
    return e.value


@pytest.mark.parametrize("rate", ["inf", "nan", "-inf", "0", "-0.1"])
def test_learning_rate_the_trainer_would_refuse(rate):
    e = config_error(training__learningRate=rate)
    assert str(e) == (
        f"config kubeflow-e2e:training.learningRate must be a positive number ({rate}): "
        "pulumi config set --path kubeflow-e2e:training.learningRate 0.003"
    )


def test_learning_rate_that_is_no_number():
    assert "training.learningRate must be a number (fast)" in str(config_error(training__learningRate="fast"))


@pytest.mark.parametrize(("workers", "batch"), [(1, 1), (4, 4), (64, 32)])
def test_global_batch_smaller_than_the_processes(workers, batch):
    e = config_error(workers=workers, training__batchSize=batch)
    assert e.key == "training.batchSize"
    assert f"workers + the chief = {workers + 1}" in str(e) and f"({batch})" in str(e)
    assert e.fix == (
        f"pulumi config set --path kubeflow-e2e:training.batchSize {workers + 1}, or lower kubeflow-e2e:workers"
    )
    make_config(workers=workers, training__batchSize=workers + 1)  # the suggested value passes


def test_the_stack_and_the_trainer_share_one_definition(monkeypatch):
    """Change the trainer's rule, and the stack's check changes with it."""
    from common import rules

    real = rules.train_problems

    def stricter(**kw):
        found = real(**kw)
        if kw["epochs"] > 50:
            found.append(rules.Problem("--epochs", "must be at most 50", kw["epochs"], 50, "pass --epochs 50"))
        return found

    monkeypatch.setattr(rules, "train_problems", stricter)
    assert "training.epochs must be at most 50 (51)" in str(config_error(training__epochs=51))


def test_the_trainer_refuses_the_same_values(run_trainer, tmp_path):
    """The same values, given to the real trainer, fail with its one-line error (exit 2, before TensorFlow)."""
    env = {"DATA_URL": f"file://{tmp_path}", "RUN_URL": f"file://{tmp_path}/r", "MODEL_URL": f"file://{tmp_path}/m"}
    proc = run_trainer("train", "--learning-rate", "inf", env=env)
    assert proc.returncode == 2 and "error: --learning-rate must be a positive number (inf)" in proc.stderr


@pytest.mark.parametrize(("workers", "shards"), [(1, "4"), (2, "6"), (4, "5"), (64, "65")])
def test_data_prep_writes_shards_that_suit_the_workers(renders, workers, shards):
    """A shard count that is a multiple of the processes (chief + workers), at least 4."""
    r = renders("dev", {"workers": workers, "training.batchSize": 130})
    command = r.one("WorkflowTemplate", "prepare-data")["spec"]["templates"][0]["container"]["command"]
    assert command[command.index("--shards") + 1] == shards
