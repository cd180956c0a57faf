"""Renders shared by the test session: each stack and variant rendered once, in a fresh interpreter as
`python -m render` does (the fixtures in tests/conftest.py hand them out; `RENDERS` is the one cache)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from render import Rendered

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
    # GPU training: one GPU per process, on a GPU node pool (its label), its taint tolerated.
    "dev-gpu": ("dev", {"training.gpus": 1, "training.nodeSelector": {"nvidia.com/gpu.present": "true"}}),
    "prod-gpu": (
        "prod",
        {
            "training.gpus": 1,
            "training.nodeSelector": {"nvidia.com/gpu.present": "true"},
            "image.trainerGpu": "registry.example.com/kubeflow-e2e/trainer-gpu:0.1.0",
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
            from render import render  # imports Pulumi: only for the tests that render

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


# The session's one cache: the `renders` fixture hands it out, and helpers that are not fixtures use it directly.
# A render is shared, so a test copies one before changing it.
RENDERS = Renders()
