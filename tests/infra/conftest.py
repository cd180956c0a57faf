"""Fixtures for the stack's tests: typed configs and the in-process Pulumi mocks for the component tests
(the renders, `dev`, `prod`, `stack`, `variant`, come from tests/conftest.py)."""

from __future__ import annotations

import pulumi
import pytest

from infra import configload
from infra.config import StackConfig
from infra.configcheck import NS
from infra.podspec import S3Access


def make_config(stack: str = "dev", **values) -> StackConfig:
    """A typed config from key=value pairs (dots in keys written as __: storage__mode="aws")."""
    raw = {k.replace("__", "."): v for k, v in values.items()}
    return configload.load(stack, raw.get, raw.get, [f"{NS}:{k}" for k in raw])


# An S3-compatible endpoint with keys (the Fluid cache is refused with MinIO).
EXTERNAL = {
    "storage__mode": "external",
    "storage__endpoint": "https://s3.example.com",
    "storage__accessKeyId": "k",
    "storage__secretAccessKey": "s",
}

# A MinIO bucket `b` in the pipeline namespace, as the pods see it with keys.
MINIO = S3Access(
    bucket="b",
    region="us-east-1",
    endpoint="http://minio.kubeflow-e2e.svc:9000",
    secret_name="s3-credentials",
)


def training_args(cfg: StackConfig, run_url: str = "s3://b/runs/r"):
    """The Training component's arguments as the program builds them, against MINIO's bucket `b`."""
    from infra.program import training_args  # imports pulumi_kubernetes: only for the tests that use it

    return training_args(
        cfg,
        namespace="kubeflow-e2e",
        access=MINIO,
        data_url="s3://b/data/mnist",
        run_url=run_url,
        model_url="s3://b/models/mnist",
    )


def namespace_args(cfg: StackConfig):
    from infra.program import namespace_args

    return namespace_args(cfg)


def storage_args(cfg: StackConfig):
    from infra.program import storage_args

    return storage_args(cfg)


def storage_component(cfg: StackConfig):
    """The Namespace and Storage components as the program declares them (call it under `declare`)."""
    from infra.namespace import Namespace
    from infra.storage import Storage

    return Storage("storage", args=storage_args(cfg), ns=Namespace("namespace", args=namespace_args(cfg)))


def argo_args(cfg: StackConfig, access: S3Access = MINIO):
    from infra.program import argo_args

    return argo_args(cfg, namespace="kubeflow-e2e", access=access)


def dataprep_args(cfg: StackConfig):
    """Data prep's arguments as the program builds them, writing to MINIO's bucket `b`."""
    from infra.program import dataprep_args

    return dataprep_args(cfg, namespace="kubeflow-e2e", access=MINIO, data_url="s3://b/data/mnist")


def fluid_args(cfg: StackConfig):
    from infra.program import fluid_args

    return fluid_args(cfg)


def retraining_args(cfg: StackConfig):
    from infra.program import retraining_args

    return retraining_args(
        cfg, namespace="kubeflow-e2e", prep=dataprep_args(cfg), training=training_args(cfg)
    )


def serving_args(cfg: StackConfig, model_url: str = "s3://b/models/mnist"):
    from infra.program import serving_args

    return serving_args(cfg, namespace="kubeflow-e2e", access=MINIO, model_url=model_url)


def tensorboard_args(cfg: StackConfig):
    from infra.program import tensorboard_args

    return tensorboard_args(cfg, namespace="kubeflow-e2e", access=MINIO, logdir="s3://b/runs/")


@pytest.fixture(scope="session")
def monitor():
    """The in-process mocks for component tests (process-global: set once, before any resource)."""
    from render import mocks

    return mocks.install(NS, "test")


@pytest.fixture
def declare(monitor):
    """declare(build) runs `build()` under the mocks and returns the resources it registered."""

    def run(build) -> list[dict]:
        start = len(monitor.records)
        result = {}

        @pulumi.runtime.test
        def program():
            result["value"] = build()
            return result["value"] if isinstance(result["value"], pulumi.Output) else None

        program()
        return monitor.records[start:]

    return run
