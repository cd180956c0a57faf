"""Fixtures of the dataset tests: the digits arrays, and the digits prepared on the real S3 server."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import sources
from trainer.prepare import prepare
from trainer.store import open_store


@pytest.fixture(scope="module")
def digits():
    return sources.digits_arrays()


@pytest.fixture
def prepared(bucket, digits, tmp_path):
    """The digits dataset under s3://<bucket>/data/mnist, written in-process (the CLI has its own test)."""
    np.savez(tmp_path / "digits.npz", **digits)
    store = open_store(f"s3://{bucket}/data/mnist", "DATA_URL")
    manifest = prepare(str(tmp_path / "digits.npz"), store, shards=4)
    return store, manifest
