"""The typed config: defaults, both stack files, and every error naming the key, the bad value and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra import config as config_mod
from infra import configload
from infra.config import KEY_NAMES
from infra.configcheck import NS, ConfigError, with_path
from infra.s3identities import irsa_role_arn
from render import stack_config

from .conftest import make_config

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE0123"


def error(**values) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make_config(**values)
    return info.value


def test_defaults_are_a_valid_dev_setup():
    cfg = make_config()
    assert cfg.namespace == "kubeflow-e2e"
    assert cfg.workers == 1
    assert cfg.storage.mode == "minio"
    assert cfg.storage.bucket == "kubeflow-e2e-dev"
    assert cfg.data.source == "s3" and not cfg.fluid.enabled
    assert cfg.resources["training"].k8s() == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert (cfg.data_prefix, cfg.run_prefix, cfg.model_prefix) == (
        "data/mnist",
        f"runs/baseline-{cfg.run_digest}",
        "models/mnist",
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_load(stack):
    values, secrets = stack_config(stack)
    assert secrets == []
    raw = configload.stack_values(values)  # refuses unknown keys and fields itself
    assert set(raw) <= set(KEY_NAMES), set(raw) - set(KEY_NAMES)
    cfg = configload.load(stack, raw.get, raw.get)
    assert cfg.stack == stack


def test_prod_differs_from_dev_where_the_issue_says():
    raw = configload.stack_values(stack_config("prod")[0])
    cfg = configload.load("prod", raw.get)
    assert cfg.storage.mode == "aws" and cfg.storage.protect and cfg.storage.versioning
    assert cfg.fluid.enabled and cfg.data.source == "volume"
    assert cfg.workers > 1


def test_a_new_aws_bucket_is_protected_unless_said_otherwise():
    assert make_config(storage__mode="aws").storage.protect is True
    assert make_config(storage__mode="aws", storage__protect="false").storage.protect is False


def test_pulumi_strings_are_parsed():
    cfg = make_config(workers="3", storage__protect="true", storage__mode="aws", serving__waitForTraining="false")
    assert cfg.workers == 3 and cfg.storage.protect is True and cfg.serving.wait_for_training is False


def test_stack_files_use_the_project_namespace():
    for stack in ("dev", "prod"):
        keys = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert all(k.startswith(f"{NS}:") for k in keys), keys


def assert_names(e: ConfigError, key: str, value: str, fix: str):
    fix = with_path(fix)  # a dotted key is a field of a structured value: `pulumi config set --path`
    text = str(e)
    assert f"{NS}:{key}" in text, text
    assert f"({value})" in text, text
    assert fix in text, text
    assert e.key == key


@pytest.mark.parametrize("workers", [0, -1, 65, 1000])
def test_workers_out_of_bounds(workers):
    e = error(workers=workers)
    assert_names(e, "workers", str(workers), f"pulumi config set {NS}:workers")
    assert "between 1 and 64" in str(e)


def test_workers_not_a_number():
    assert_names(error(workers="two"), "workers", "two", f"pulumi config set {NS}:workers 1")


@pytest.mark.parametrize(
    "bucket, rule",
    [
        ("ab", "3 to 63 characters"),
        ("x" * 64, "3 to 63 characters"),
        ("My_Bucket", "lower-case letters, digits"),
        ("-bucket", "start and end with a letter or digit"),
        ("bucket-", "start and end with a letter or digit"),
        ("my..bucket", "'..'"),
        ("my.-bucket", "'..'"),
        ("192.168.1.10", "IP address"),
        ("xn--bucket", "xn--"),
        ("sthree-bucket", "sthree-"),
        ("bucket-s3alias", "-s3alias"),
        ("bucket--ol-s3", "--ol-s3"),
    ],
)
def test_bucket_naming_rules(bucket, rule):
    e = error(storage__bucket=bucket)
    assert_names(e, "storage.bucket", bucket, f"pulumi config set {NS}:storage.bucket ")
    assert "S3's bucket naming rules" in str(e) and rule in str(e)


def test_bucket_fix_suggests_a_valid_name():
    e = error(storage__bucket="My_Bucket")
    assert e.fix.endswith(" my-bucket")
    make_config(storage__bucket=e.fix.rsplit(" ", 1)[1])


@pytest.mark.parametrize(
    "key", ["image.trainer", "image.sidecar", "image.tensorboard", "image.serving", "image.minio", "image.mc"]
)
@pytest.mark.parametrize(
    "image, problem",
    [
        ("kubeflow-e2e/trainer", "has no tag"),
        ("registry.local:5000/trainer", "has no tag"),
        ("kubeflow-e2e/trainer:latest", "moving tag latest"),
        ("tensorflow/serving@sha256:abc", "malformed digest"),
    ],
)
def test_images_must_be_pinned(key, image, problem):
    e = error(**{key.replace(".", "__"): image})
    assert_names(e, key, image, "REPOSITORY:TAG (a fixed version) or REPOSITORY@sha256:DIGEST")
    assert problem in str(e)


def test_pinned_images_pass():
    cfg = make_config(
        image__trainer="registry.local:5000/trainer:1.2.3",
        image__serving="tensorflow/serving@sha256:" + "a" * 64,
    )
    assert cfg.image.trainer.endswith(":1.2.3")


@pytest.mark.parametrize("stack", ["prod", "staging"])
@pytest.mark.parametrize(
    "image", ["kubeflow-e2e/trainer:0.1.0", "trainer:0.1.0", "tensorflow/serving@sha256:" + "a" * 64]
)
def test_outside_dev_an_image_needs_a_registry_host(stack, image):
    with pytest.raises(ConfigError) as info:
        make_config(stack, image__trainer=image)
    e = info.value
    assert_names(e, "image.trainer", image, f"pulumi config set {NS}:image.trainer REGISTRY/{image}")
    assert f"names no registry host, so on stack {stack} it would pull from Docker Hub" in str(e)
    assert len(str(e).splitlines()) == 1


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/trainer:0.1.0",
        "registry.local:5000/trainer:1.2.3",
        "localhost/trainer:1",
        "docker.io/kubeflow-e2e/trainer@sha256:" + "a" * 64,
    ],
)
def test_registry_hosts_that_pass_outside_dev(image):
    hosted = {f"image__{n}": f"ghcr.io/acme/{n}:0.1.0" for n in ("sidecar", "tensorboard")}
    assert make_config("prod", image__trainer=image, **hosted).image.trainer == image
    with pytest.raises(ConfigError, match="image.sidecar names no registry host"):
        make_config("prod", image__trainer=image)  # the sidecar's default is a bare name


def test_dev_takes_bare_names_for_a_local_cluster():
    assert make_config("dev").image.trainer == KEY_NAMES["image.trainer"].default == "kubeflow-e2e/trainer:0.1.0"


def test_prod_sets_its_images_to_a_placeholder_registry_the_user_replaces():
    raw = configload.stack_values(stack_config("prod")[0])
    for name in ("trainer", "sidecar", "tensorboard"):
        assert raw[f"image.{name}"] == f"registry.example.com/kubeflow-e2e/{name}:0.1.0"  # RFC 2606: never resolves
    assert "replace it with your registry" in (ROOT / "Pulumi.prod.yaml").read_text()
    # Every other image of prod names its registry too (the defaults carry docker.io / quay.io).
    cfg = configload.load("prod", raw.get)
    assert all(ref.split("/", 1)[0] in ("registry.example.com", "docker.io", "quay.io") for ref in (
        cfg.image.trainer, cfg.image.sidecar, cfg.image.tensorboard, cfg.image.serving, cfg.image.minio,
        cfg.image.mc))


def test_unknown_storage_mode():
    e = error(storage__mode="gcs")
    assert_names(e, "storage.mode", "gcs", f"pulumi config set {NS}:storage.mode minio")
    assert "minio, aws, external" in str(e)


def test_external_storage_needs_an_endpoint():
    e = error(storage__mode="external", storage__accessKeyId="k", storage__secretAccessKey="s")
    assert_names(e, "storage.endpoint", "unset", f"pulumi config set {NS}:storage.endpoint https://")


@pytest.mark.parametrize("endpoint", ["minio:9000", "ftp://minio:9000", "http://minio:9000/bucket"])
def test_external_endpoint_must_be_a_full_url(endpoint):
    e = error(
        storage__mode="external",
        storage__endpoint=endpoint,
        storage__accessKeyId="k",
        storage__secretAccessKey="s",
    )
    assert_names(e, "storage.endpoint", endpoint, "https://s3.example.com:9000")


def test_plain_http_endpoint_only_on_dev():
    external = {"storage__mode": "external", "storage__accessKeyId": "k", "storage__secretAccessKey": "s"}
    assert make_config(storage__endpoint="http://minio.lab:9000", **external).storage.endpoint == (
        "http://minio.lab:9000"
    )
    with pytest.raises(ConfigError) as info:
        make_config("prod", storage__endpoint="http://minio.lab:9000", **external)
    assert_names(info.value, "storage.endpoint", "http://minio.lab:9000", "https://minio.lab:9000")
    assert "plain http on stack prod (only the dev stack takes http)" in str(info.value)


def test_external_storage_needs_secret_keys():
    e = error(storage__mode="external", storage__endpoint="https://s3.example.com")
    assert_names(e, "storage.accessKeyId", "unset", f"pulumi config set --secret {NS}:storage.accessKeyId")


def test_endpoint_outside_external_mode_is_refused():
    e = error(storage__endpoint="https://s3.example.com")
    assert_names(e, "storage.endpoint", "set", f"{NS}:storage.mode external")


@pytest.mark.parametrize(
    "key, value, kind",
    [
        ("training.cpu", "1.5 cores", "CPU"),
        ("training.cpu", "2x", "CPU"),
        ("serving.cpuLimit", "-1", "CPU"),
        ("training.memory", "2GB", "memory"),
        ("tensorboard.memoryLimit", "lots", "memory"),
        ("minio.size", "10 Gi", "memory"),
    ],
)
def test_malformed_quantities(key, value, kind):
    e = error(**{key.replace(".", "__"): value})
    assert_names(e, key, value, f"pulumi config set {NS}:{key}")
    assert f"is not a {kind} quantity" in str(e)


def test_request_above_limit():
    e = error(training__memory="8Gi", training__memoryLimit="4Gi")
    assert_names(e, "training.memory", "8Gi", f"pulumi config set {NS}:training.memoryLimit 8Gi")
    e = error(serving__cpu="2", serving__cpuLimit="1500m")
    assert_names(e, "serving.cpu", "2", f"{NS}:serving.cpuLimit")


@pytest.mark.parametrize("key", ["argo.chartVersion", "fluid.chartVersion"])
@pytest.mark.parametrize("version", ["^1.0.18", "~1.0", "1.0", "latest", "1.x", ">=1.0.0"])
def test_chart_versions_must_be_pinned(key, version):
    e = error(**{key.replace(".", "__"): version})
    assert_names(e, key, version, f"pulumi config set {NS}:{key} {KEY_NAMES[key].default}")
    assert "not a pinned chart version" in str(e)


@pytest.mark.parametrize(
    "version, problem",
    [
        ("master", "not a pinned release tag"),
        ("1.9.4", "not a pinned release tag"),
        ("v1.9", "not a pinned release tag"),
        ("v2.0.0", "Trainer v2 dropped TFJob"),
        ("v1.6.0", "older than v1.7"),
    ],
)
def test_operator_version_must_be_a_pinned_v1_release(version, problem):
    e = error(operator__version=version)
    assert_names(e, "operator.version", version, f"pulumi config set {NS}:operator.version v1.9.4")
    assert problem in str(e)


def test_irsa_needs_the_oidc_provider():
    e = error(storage__mode="aws", storage__credentials="irsa")
    assert_names(e, "storage.oidcProviderArn", "unset", "aws eks describe-cluster")


def test_irsa_rejects_a_malformed_arn():
    e = error(storage__mode="aws", storage__credentials="irsa", storage__oidcProviderArn="arn:aws:iam::1:role/x")
    assert_names(e, "storage.oidcProviderArn", "arn:aws:iam::1:role/x", "oidc-provider/")


def test_irsa_only_on_aws():
    e = error(storage__credentials="irsa", storage__oidcProviderArn=ARN)
    assert_names(e, "storage.credentials", "irsa", f"pulumi config set {NS}:storage.credentials access-key")


def test_irsa_role_arn_comes_from_the_provider_account():
    cfg = make_config(storage__mode="aws", storage__credentials="irsa", storage__oidcProviderArn=ARN)
    assert irsa_role_arn(cfg, "pipeline") == "arn:aws:iam::123456789012:role/kubeflow-e2e-dev-kubeflow-e2e"
    assert irsa_role_arn(cfg, "serving") == "arn:aws:iam::123456789012:role/kubeflow-e2e-dev-kubeflow-e2e-serving"


def test_volume_needs_fluid():
    e = error(data__source="volume")
    assert_names(e, "data.source", "volume", f"pulumi config set {NS}:fluid.enabled true")


def test_volume_cannot_use_irsa():
    e = error(
        data__source="volume",
        fluid__enabled=True,
        storage__mode="aws",
        storage__credentials="irsa",
        storage__oidcProviderArn=ARN,
    )
    assert_names(e, "data.source", "volume", f"{NS}:storage.credentials access-key")


def test_unknown_data_source():
    assert_names(error(data__source="nfs"), "data.source", "nfs", f"pulumi config set {NS}:data.source s3")


def test_misspelt_key_gets_a_suggestion():
    e = error(wokers=2)
    assert_names(e, "wokers", "2", f"did you mean {NS}:workers?")


@pytest.mark.parametrize(
    "key, value",
    [
        ("namespace", "Kubeflow"),
        ("namespace", "a" * 64),
        ("training.run", "run_1"),
        ("serving.modelName", "-m"),
    ],
)
def test_names_must_be_dns_labels(key, value):
    assert_names(error(**{key.replace(".", "__"): value}), key, value, f"pulumi config set {NS}:{key}")


def test_booleans():
    assert_names(error(storage__protect="yes"), "storage.protect", "yes", f"pulumi config set {NS}:storage.protect")


def test_learning_rate_must_be_positive():
    assert_names(
        error(training__learningRate="-0.1"), "training.learningRate", "-0.1", f"{NS}:training.learningRate 0.003"
    )


def test_argo_namespace_must_differ():
    assert_names(error(argo__namespace="kubeflow-e2e"), "argo.namespace", "kubeflow-e2e", "argo")


@pytest.mark.parametrize(
    "values, controller",
    [
        ({"namespace": "kubeflow"}, "training operator"),
        ({"namespace": "argo"}, None),  # the clash is named on argo.namespace, which defaults to argo
        ({"namespace": "fluid-system", "fluid__enabled": True}, "Fluid"),
        ({"namespace": "data-cache", "fluid__enabled": True, "fluid__namespace": "data-cache"}, "Fluid"),
    ],
)
def test_pipeline_namespace_must_not_be_a_controllers(values, controller):
    """Our default-deny policy in the operator's, Argo's or Fluid's namespace would cut that controller off."""
    e = error(**values)
    if controller is None:
        assert_names(e, "argo.namespace", values["namespace"], "argo.namespace")
    else:
        assert_names(e, "namespace", values["namespace"], f"{NS}:namespace kubeflow-e2e")
        assert controller in str(e)


def test_fluid_namespace_is_free_while_fluid_is_off():
    assert make_config(namespace="fluid-system").namespace == "fluid-system"


def test_every_key_has_a_meaning_and_workload_resources():
    assert all(k.meaning for k in config_mod.KEYS)
    for workload in config_mod.WORKLOADS:
        for suffix in ("cpu", "memory", "cpuLimit", "memoryLimit"):
            assert f"{workload}.{suffix}" in KEY_NAMES


def test_access_namespace_is_a_dns_label_and_optional():
    assert make_config().access.from_namespace is None
    assert make_config(access__fromNamespace="ingress-nginx").access.from_namespace == "ingress-nginx"
    e = error(access__fromNamespace="Ingress_NGINX")
    assert e.key == "access.fromNamespace" and "(Ingress_NGINX)" in str(e)
    assert "access.fromNamespace name-of-the-namespace" in str(e)


def test_promotion_gate_and_signing_keys():
    cfg = make_config()
    assert (cfg.serving.min_accuracy, cfg.serving.max_regression, cfg.serving.public_key) == ("0.5", "0.02", None)
    e = error(serving__minAccuracy="1.5")
    assert e.key == "serving.minAccuracy" and "must be between 0 and 1" in str(e)
    e = error(serving__maxRegression="a lot")
    assert e.key == "serving.maxRegression" and "must be a number" in str(e)
    public = "Ht3bH6OtO4UbCxQ6vXlFd5Yq3Yq5a1Jx2c3lQ5VjZ0s="
    e = error(training__signingKey="pem")
    assert e.key == "serving.publicKey" and "must be set with training.signingKey" in str(e)
    e = error(serving__publicKey=public)
    assert e.key == "training.signingKey" and "must be set with serving.publicKey" in str(e)
    e = error(training__signingKey="pem", serving__publicKey="c2hvcnQ=")
    assert e.key == "serving.publicKey" and "32-byte Ed25519 public key" in str(e)
    assert make_config(training__signingKey="pem", serving__publicKey=public).serving.public_key == public


def test_the_cache_is_refused_with_minio():
    """MinIO admits only the stack's own pods; the cache runs in its own namespace."""
    e = error(data__source="volume", fluid__enabled="true")
    assert_names(e, "data.source", "volume", f"pulumi config set {NS}:data.source s3")
    assert "storage.mode minio" in str(e)
