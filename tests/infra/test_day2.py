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
