"""Fixtures for the stack's tests: renders (each stack and variant rendered once per session, in a fresh
interpreter as `python -m infra.render` does), typed configs, and the in-process Pulumi mocks for the
component tests."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pulumi
import pytest

from infra import config as config_mod
from infra.render import Rendered, render

# The variants several test modules render: started together, two at a time, at the first use.
VARIANTS: dict[str, tuple[str, dict]] = {
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    "dev-64": ("dev", {"workers": 64, "training.batchSize": 128}),  # batch >= processes
    "dev-aws": ("dev", {"storage.mode": "aws"}),
    "dev-nowait": ("dev", {"serving.waitForTraining": False}),
    "prod-irsa": (
        "prod",
        {
            "storage.credentials": "irsa",
            "data.source": "s3",
            "storage.oidcProviderArn": "arn:aws:iam::123456789012:oidc-provider/"
            "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE0123",
        },
    ),
    "dev-external": (
        "dev",
        {
            "storage.mode": "external",
            "storage.endpoint": "https://s3.example.com:9443",
            "storage.accessKeyId": {"secure": "x"},
            "storage.secretAccessKey": {"secure": "y"},
        },
    ),
}


class Renders:
    def __init__(self) -> None:
        self._cache: dict[str, Rendered] = {}
        self._prefetched = False

    def __call__(self, stack: str = "dev", overrides: dict | None = None) -> Rendered:
        key = f"{stack}:{json.dumps(overrides or {}, sort_keys=True)}"
        if key not in self._cache:
            self._cache[key] = render(stack, overrides)
        return self._cache[key]

    def variant(self, name: str) -> Rendered:
        if not self._prefetched:
            self._prefetched = True
            self.prefetch()
        stack, overrides = VARIANTS[name]
        return self(stack, overrides)

    def prefetch(self) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda v: self(*v), VARIANTS.values()))


@pytest.fixture(scope="session")
def renders() -> Renders:
    return Renders()


@pytest.fixture(scope="session")
def dev(renders) -> Rendered:
    return renders.variant("dev")


@pytest.fixture(scope="session")
def prod(renders) -> Rendered:
    return renders.variant("prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def stack(request, renders) -> Rendered:
    return renders.variant(request.param)


@pytest.fixture(scope="session", params=list(VARIANTS))
def variant(request, renders) -> Rendered:
    return renders.variant(request.param)


def make_config(stack: str = "dev", **values) -> config_mod.StackConfig:
    """A typed config from key=value pairs (dots in keys written as __: storage__mode="aws")."""
    raw = {k.replace("__", "."): v for k, v in values.items()}
    return config_mod.load(stack, raw.get, raw.get, [f"{config_mod.NS}:{k}" for k in raw])


@pytest.fixture(scope="session")
def monitor():
    """The in-process mocks for component tests (process-global: set once, before any resource)."""
    from infra import mocks

    return mocks.install(config_mod.NS, "test")


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
